//! Where the mesh snapshot comes from: a directory of Kubernetes-style YAML files
//! ([`FileSource`], `meshd controlplane --config-dir`) or the cluster's API server ([`run_kube_source`],
//! inside `meshd controller`). Both publish into the same `watch::Sender<Arc<MeshSnapshot>>`, and both
//! build it with [`MeshObjects::snapshot`], so the same objects give the same Envoy config.

mod files;
mod kube_source;
mod objects;

pub use files::{FileSource, parse_documents};
pub use kube_source::{KubeIndex, WatchedKind, run_kube_source};
pub use objects::{MeshObjects, ParsedObject};

/// What can go wrong reading the mesh.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read config directory {path}: {source}")]
    ReadDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot read: {source}")]
    ReadFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: document {document}: {source}")]
    Parse {
        path: String,
        document: usize,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{path}: document {document} has no kind")]
    NoKind { path: String, document: usize },
    #[error("{path}: document {document}: Mesh is invalid: {errors}")]
    InvalidMesh {
        path: String,
        document: usize,
        errors: String,
    },
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: String,
        #[source]
        source: notify::Error,
    },
    #[error("{kind} {name}: cannot decode: {source}")]
    Decode {
        kind: &'static str,
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

impl SourceError {
    /// A fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ReadDir { .. } => "read_dir",
            Self::ReadFile { .. } => "read_file",
            Self::Parse { .. } => "parse",
            Self::NoKind { .. } => "no_kind",
            Self::InvalidMesh { .. } => "invalid_mesh",
            Self::Watch { .. } => "watch",
            Self::Decode { .. } => "decode",
        }
    }
}
