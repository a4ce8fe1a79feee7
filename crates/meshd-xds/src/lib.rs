//! The ADS gRPC server: Envoy's listeners, routes, clusters and endpoints over one stream, both
//! state-of-the-world and delta, with per-proxy versions and nonces, ACK/NACK tracking, warming order
//! (CDS before EDS, LDS before RDS) and debounced pushes. Never imports kube: it takes what changed
//! from a [`meshd_index::SharedIndex`] that any source fills, and translates it incrementally.
//!
//! Fan-out: the one debounce of the pipeline ([`XdsOptions`]) lets a burst of index changes settle,
//! translation recompiles what they touch, and one [`Generation`] is published on a `watch` with the
//! names of the resources that changed. Every stream is its own task that picks up the latest
//! generation when it is ready for it and looks only at those names (its own part only when its Pod or
//! a Service selecting it changed), so a slow proxy only delays itself and never queues stale configs.

#![deny(unsafe_code)] // one exception: heap sets and collects the allocator (mimalloc)

mod auth;
mod delta;
mod generation;
mod health;
pub mod heap;
mod mesh_mtls;
mod metrics;
mod names;
mod raw;
mod registry;
mod server;
mod sotw;
mod stream;
#[doc(hidden)]
pub mod test_hook;
mod tls;

pub use generation::{Generation, XdsOptions};
pub use health::{Syncz, serve_health};
pub use metrics::XdsMetrics;
pub use registry::{ProxyRegistry, XdsApiKind};
pub use server::{AdsRoutes, TlsFiles, XdsServer};
pub use tls::{ServingCertificate, certified_key, fixed as fixed_certificate};

/// What can go wrong serving xDS.
#[derive(Debug, thiserror::Error)]
pub enum XdsError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} exists and is not a socket; refusing to remove it")]
    NotASocket { path: String },
    #[error("cannot read TLS file {path}: {source}")]
    TlsFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("gRPC server failed: {0}")]
    Transport(#[source] tonic::transport::Error),
}

impl XdsError {
    /// A fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Listen { .. } => "listen",
            Self::NotASocket { .. } => "not_a_socket",
            Self::TlsFile { .. } => "tls_file",
            Self::Tls(_) => "tls",
            Self::Transport(_) => "transport",
        }
    }
}
