//! Where the mesh snapshot comes from: Kubernetes watches or a directory of YAML files
