//! The Mesh operator: desired state of a Mesh as pure functions, and the kube-runtime reconcile loop that applies it
