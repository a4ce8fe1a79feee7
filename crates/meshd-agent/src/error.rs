use std::path::PathBuf;
use std::time::Duration;

/// Everything that can stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A flag (or its `MESHD_<FLAG>` env var) has a bad value.
    #[error("{flag} {value:?}: {reason}")]
    Invalid {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("{flag} is required (or its MESHD_ environment variable)")]
    Missing { flag: &'static str },
    #[error("writing the Envoy bootstrap {path}")]
    WriteBootstrap {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting Envoy {path}")]
    SpawnEnvoy {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Envoy keeps dying: {deaths} exits within {window:?}, the last {last}; giving up")]
    EnvoyKeepsDying {
        deaths: usize,
        window: Duration,
        last: String,
    },
    #[error("listening on {addr}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving SDS on {path}")]
    Sds {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serving the xDS proxy on {path}")]
    XdsProxy {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("installing the signal handler")]
    Signal(#[source] std::io::Error),
    #[error("Envoy's supervisor stopped unexpectedly")]
    SupervisorGone,
    #[error("{url} did not answer 200 within {timeout:?} (last: {last})")]
    NotReady {
        url: String,
        timeout: Duration,
        last: String,
    },
    #[error("Envoy admin {path}: {reason}")]
    Admin { path: String, reason: String },
}

impl AgentError {
    /// Bad flags exit 64 (EX_USAGE); everything else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Invalid { .. } | Self::Missing { .. } => 64,
            _ => 1,
        }
    }
}

/// An error with its causes, for logs: tonic and hyper say "transport error" on top and the reason
/// ("Connection refused", a certificate problem) only in the sources.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
