//! Sidecar injection as a pure function: pod + mesh settings -> injection plan -> JSON patch, and the AdmissionReview answer
