//! Where the mesh comes from: a directory of Kubernetes-style YAML files ([`FileSource`],
//! `meshd controlplane --config-dir`) or the cluster's API server ([`run_kube_source`], inside
//! `meshd controller`). Both reduce every object with the same kinds of [`meshd_index::visit_kinds`] and
//! set the facts in the same [`meshd_index::SharedIndex`], so the same objects give the same Envoy config.

#![forbid(unsafe_code)]

mod documents;
mod files;
mod kube_source;
mod mtls_log;
mod verdict_log;

pub use documents::{ParsedFact, parse_documents};
pub use files::{FileSource, Origins};
pub use kube_source::{KindEvent, WatchFeed, run_kube_source, watch_all};
pub use mtls_log::{log_mesh_mtls, mtls_line};
pub use verdict_log::{log_verdicts, verdict_line};

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
    /// A document that does not parse, or an object meshd cannot use (the problem names the field).
    #[error("{path}: document {document}: {problem}")]
    Document {
        path: String,
        document: usize,
        problem: String,
    },
    #[error("{path}: document {document} has no kind")]
    NoKind { path: String, document: usize },
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: String,
        #[source]
        source: notify::Error,
    },
}

impl SourceError {
    /// A fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ReadDir { .. } => "read_dir",
            Self::ReadFile { .. } => "read_file",
            Self::Document { .. } => "document",
            Self::NoKind { .. } => "no_kind",
            Self::Watch { .. } => "watch",
        }
    }
}
