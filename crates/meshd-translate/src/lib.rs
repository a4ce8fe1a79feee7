//! xDS translation, pure: [`facts`] about the mesh (Services, EndpointSlices, Workloads, Mesh settings,
//! reduced from Kubernetes objects by meshd-index) → each proxy's Envoy listeners, route
//! configurations, clusters and load assignments; and the Envoy bootstrap. No I/O: same facts,
//! byte-identical output.
//!
//! [`Translator`] is incremental: it keeps what it compiled per Service and recompiles only what a
//! change of facts touches (one endpoint change: that cluster's load assignment). Work that does not
//! depend on the proxy is shared by every proxy ([`CompiledMesh`]); a proxy then only costs its inbound
//! side ([`CompiledMesh::proxy_config`]).

#![forbid(unsafe_code)]

mod authz;
mod bootstrap;
mod configs;
mod credentials;
mod envoy;
pub mod facts;
mod gateway;
mod inbound;
mod mesh_mtls;
mod mtls;
mod naming;
mod node;
mod outbound;
mod peer;
mod protocol;
mod proxy;
mod resources;
pub mod synthetic;
mod traffic;
mod translator;

pub use bootstrap::{
    BootstrapFormat, BootstrapParams, SDS_CLUSTER, SDS_DEFAULT, SDS_ROOTCA, SDS_SOCKET_FILE,
    STATS_LISTENER, XdsAddress, XdsApi, bootstrap, sds_secret_config,
};
pub use configs::Verdicts;
pub use credentials::{
    CREDENTIAL_CA_SUFFIX, CREDENTIAL_SDS_PREFIX, Credentials, credential_ca_sds_name,
    credential_sds_config, credential_sds_name,
};
pub use gateway::{GatewayConfig, credential_sds_names, is_gateway};
pub use mtls::{
    MATCH_MESH, MATCH_PLAINTEXT, MESH_ALPN, TLS_MODE_KEY, TLS_MODE_MESH,
    mesh_mtls_transport_socket, mesh_sni, spiffe_id,
};
pub use naming::{
    BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER, INBOUND_PASSTHROUGH_SOURCE,
    PASSTHROUGH_CLUSTER, VIRTUAL_INBOUND, VIRTUAL_OUTBOUND, inbound_cluster_name,
    outbound_cluster_name,
};
pub use node::NodeId;
pub use protocol::Protocol;
pub use proxy::{CompiledMesh, ProxyConfig};
pub use resources::{Resource, ResourceSet, ResourceType, fnv1a};
pub use translator::{ChangeSet, TranslateSettings, Translator};

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
