//! `/debug/syncz`: what one control-plane replica knows about the proxies connected to it, as JSON on its
//! metrics port (15014). The control plane serves a [`SyncReport`]; `meshd proxy-status` asks every replica,
//! [`merge`]s the answers and computes each xDS type's [`SyncState`]. Plain serde types, so both sides use
//! them without pulling kube or tonic into each other; the contract is written down in docs/design.md.
//!
//! Times are RFC 3339 (`2025-01-02T03:04:05.678Z`). A type's state is computed against the answering
//! replica's own clock (`generatedAt`), so a skewed clock on the user's machine cannot make a proxy stale.

mod merge;
mod state;

use std::collections::BTreeMap;

/// The contract's time type, for the control plane that fills the records without naming jiff itself.
pub use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use merge::{MergedProxy, Superseded, merge};
pub use state::{SyncState, age, format_age};

/// The path on the metrics port.
pub const PATH: &str = "/debug/syncz";

/// One replica's answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    pub control_plane: ControlPlane,
    /// When this replica answered; the "now" of every age in its answer.
    pub generated_at: Timestamp,
    /// One entry per open ADS stream (a proxy reconnecting may briefly hold two).
    #[serde(default)]
    pub proxies: Vec<ProxySync>,
}

/// Who answered.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlane {
    /// The replica's pod name in a cluster (`MESHD_POD_NAME`, else the hostname); the host name for
    /// `meshd controlplane`.
    pub name: String,
    /// The meshd version it runs.
    #[serde(default)]
    pub version: String,
}

/// One connected proxy: one ADS stream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProxySync {
    /// `<pod>.<namespace>` as the proxy sent it.
    pub node_id: String,
    /// The node id's parts (split at the last dot: namespaces have none).
    pub pod: String,
    pub namespace: String,
    /// The proxy's Mesh (its pod's `meshd.io/mesh` label, or the file-fed Mesh); null when unknown.
    #[serde(default)]
    pub mesh: Option<String>,
    /// Whether a Pod in the control plane's view matches the node id (without one the proxy gets no
    /// inbound config).
    pub pod_found: bool,
    pub api: XdsApi,
    pub connected_at: Timestamp,
    /// Per xDS type; a type the stream never asked for is absent (shown as NOT SENT).
    #[serde(default)]
    pub types: BTreeMap<XdsType, TypeSync>,
}

impl ProxySync {
    /// This type's record, or an empty one (nothing sent) when the stream has none.
    pub fn type_sync(&self, ty: XdsType) -> TypeSync {
        self.types.get(&ty).cloned().unwrap_or_default()
    }
}

/// Splits a node id `<pod>.<namespace>` at its last dot; `None` without one.
pub fn split_node_id(node_id: &str) -> Option<(&str, &str)> {
    node_id
        .rsplit_once('.')
        .filter(|(pod, ns)| !pod.is_empty() && !ns.is_empty())
}

/// Which ADS protocol the stream speaks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum XdsApi {
    Delta,
    Sotw,
}

impl XdsApi {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delta => "delta",
            Self::Sotw => "sotw",
        }
    }
}

/// The xDS types `proxy-status` shows, in its column order.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "UPPERCASE")]
pub enum XdsType {
    Cds,
    Lds,
    Eds,
    Rds,
    Sds,
}

impl XdsType {
    pub const ALL: [Self; 5] = [Self::Cds, Self::Lds, Self::Eds, Self::Rds, Self::Sds];

    /// `CDS`, `LDS`, … as in the table and the JSON keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cds => "CDS",
            Self::Lds => "LDS",
            Self::Eds => "EDS",
            Self::Rds => "RDS",
            Self::Sds => "SDS",
        }
    }

    pub fn type_url(self) -> &'static str {
        match self {
            Self::Cds => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            Self::Lds => "type.googleapis.com/envoy.config.listener.v3.Listener",
            Self::Eds => "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            Self::Rds => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            Self::Sds => "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        }
    }

    pub fn from_type_url(url: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.type_url() == url)
    }
}

/// One xDS type on one stream: the last response sent and the proxy's last answers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct TypeSync {
    /// The last response the control plane sent.
    pub last_sent: Option<Sent>,
    /// The last response the proxy accepted (a request whose nonce names it, without an error).
    pub last_ack: Option<Answer>,
    /// The last response the proxy rejected; kept after a later ACK, which is what clears the state.
    pub last_nack: Option<Nack>,
    /// NACKs on this stream for this type.
    pub nack_count: u64,
}

/// A response as sent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Sent {
    /// `version_info` (SotW) or `system_version_info` (delta).
    pub version: String,
    pub nonce: String,
    pub at: Timestamp,
}

/// An ACK: the proxy answered `nonce` and applied `version`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    /// The version of the response `nonce` names.
    pub version: String,
    pub nonce: String,
    pub at: Timestamp,
}

/// A NACK: the proxy answered `nonce` with `error_detail`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Nack {
    /// The version of the rejected response (the one `nonce` names, not the proxy's `version_info`,
    /// which is the version it still runs).
    pub version: String,
    pub nonce: String,
    /// Envoy's `error_detail.message`.
    pub detail: String,
    pub at: Timestamp,
}

/// A proxy began rejecting a type's config: its first NACK on the stream since the type was last ACKed
/// (or since the stream opened). The control plane hands these to whoever reports them (the controller
/// turns them into a Warning Event on the Pod); later NACKs of the same episode are only counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NackNotice {
    /// `<pod>.<namespace>` as the proxy sent it.
    pub node_id: String,
    pub pod: String,
    pub namespace: String,
    /// Whether a Pod in the control plane's view matches the node id.
    pub pod_found: bool,
    pub xds_type: XdsType,
    pub nack: Nack,
}
