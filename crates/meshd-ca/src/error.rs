//! What can go wrong in the CA. Key material never appears in a message.

/// One error type for the crate; [`CaError::label`] is its fixed metric label.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{what}: {reason}")]
    Material { what: String, reason: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the CSR is refused: {0}")]
    Csr(String),
    #[error("cannot sign: {0}")]
    Sign(#[source] rcgen::Error),
    #[error("Kubernetes API: {action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "Secret {namespace}/{name} does not exist yet and this replica is not the leader; waiting for the leader to create it"
    )]
    NotYetCreated { namespace: String, name: String },
    #[error("the mesh CA is not loaded yet")]
    NotLoaded,
    #[error("gRPC: {0}")]
    Transport(#[source] tonic::transport::Error),
}

impl CaError {
    /// A fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Material { .. } => "material",
            Self::Io { .. } => "io",
            Self::Csr(_) => "csr",
            Self::Sign(_) => "sign",
            Self::Kube { .. } => "kube",
            Self::NotYetCreated { .. } => "not_yet_created",
            Self::NotLoaded => "not_loaded",
            Self::Transport(_) => "transport",
        }
    }

    pub(crate) fn material(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Material {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
