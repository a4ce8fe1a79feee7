//! xDS translation as a pure function: a [`MeshSnapshot`] (Services, EndpointSlices, Pods, the resolved Mesh
//! settings) → each proxy's Envoy listeners, route configurations, clusters and load assignments; and the
//! Envoy bootstrap. No I/O: same input, byte-identical output.
//!
//! Work that does not depend on the proxy (every outbound cluster, load assignment, route and the
//! `virtualOutbound` listener) is done once per snapshot in [`CompiledMesh::compile`]; a proxy then only costs
//! its inbound side ([`CompiledMesh::proxy_config`]).

mod bootstrap;
mod compile;
mod envoy;
mod inbound;
mod naming;
mod outbound;
mod protocol;
mod snapshot;
pub mod synthetic;

pub use bootstrap::{
    BootstrapFormat, BootstrapParams, SDS_CLUSTER, SDS_DEFAULT, SDS_ROOTCA, SDS_SOCKET_FILE,
    XdsAddress, XdsApi, bootstrap, sds_secret_config,
};
pub use compile::{CompiledMesh, ProxyConfig, Resource, ResourceType, TypedResources, fnv1a};
pub use naming::{
    BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER, INBOUND_PASSTHROUGH_SOURCE,
    PASSTHROUGH_CLUSTER, VIRTUAL_INBOUND, VIRTUAL_OUTBOUND, inbound_cluster_name,
    outbound_cluster_name,
};
pub use protocol::Protocol;
pub use snapshot::{MeshSnapshot, NodeId};

/// Why something could not be translated.
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    #[error("node id {0:?} is not <pod>.<namespace>")]
    BadNodeId(String),
    #[error("xDS address {value:?} is not HOST:PORT or unix:PATH: {reason}")]
    BadXdsAddress { value: String, reason: String },
    #[error("cannot render the bootstrap: {0}")]
    Render(#[source] serde_json::Error),
}

impl TranslateError {
    /// A fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::BadNodeId(_) => "bad_node_id",
            Self::BadXdsAddress { .. } => "bad_xds_address",
            Self::Render(_) => "render",
        }
    }
}
