//! `DestinationRule` (`networking.meshd.io/v1alpha1`, short name `dr`): what happens to traffic for a host
//! once routing chose it: subsets, load balancing, connection limits, outlier detection, upstream TLS.
//! Istio's `networking.istio.io/v1` DestinationRule, SPEC §8.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::PortSelector;
use crate::duration::Duration;
use crate::selector::WorkloadSelector;
use crate::status::ConfigStatus;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "networking.meshd.io",
    version = "v1alpha1",
    kind = "DestinationRule",
    namespaced,
    shortname = "dr",
    category = "meshd",
    status = "ConfigStatus",
    printcolumn = r#"{"name":"HOST","type":"string","jsonPath":".spec.host"}"#,
    printcolumn = r#"{"name":"SUBSETS","type":"string","jsonPath":".spec.subsets[*].name"}"#,
    printcolumn = r#"{"name":"ACCEPTED","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend(
    "required" = ["host"],
    "x-kubernetes-validations" = [{
        "rule": "!has(self.subsets) || self.subsets.all(s, self.subsets.exists_one(t, t.name == s.name))",
        "message": "subsets: each subset needs a unique name",
        "fieldPath": ".subsets",
        "reason": "FieldValueDuplicate",
    }]
))]
pub struct DestinationRuleSpec {
    /// The service: a short name (resolved in this namespace), an FQDN or `*.domain`.
    #[schemars(length(max = 253), regex(pattern = crate::schema::HOST_PATTERN))]
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named groups of the host's endpoints, selected by their pods' labels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub subsets: Vec<Subset>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 63), regex(pattern = crate::schema::EXPORT_TO_PATTERN)))]
    pub export_to: Vec<String>,
    /// Accepted for Istio compatibility; meshd does not act on it (the rule applies to every client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct TrafficPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
    /// Overrides per destination port.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::opaque_object")]
    pub tunnel: Option<serde_json::Map<String, serde_json::Value>>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::opaque_object")]
    pub proxy_protocol: Option<serde_json::Map<String, serde_json::Value>>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::opaque_object")]
    pub retry_budget: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A traffic policy for one port (`port` required) of the host.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("required" = ["port"]))]
pub struct PortTrafficPolicy {
    pub port: PortSelector,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
}

/// Endpoints of the host whose pods carry all of `labels`; their cluster is
/// `outbound|<port>|<name>|<FQDN>`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("required" = ["name"]))]
pub struct Subset {
    #[schemars(length(min = 1, max = 63), regex(pattern = crate::schema::DNS_LABEL_PATTERN))]
    pub name: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::schema::label_map")]
    pub labels: BTreeMap<String, String>,
    /// Overrides the DestinationRule's policy for this subset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [crate::schema::at_most_one(&["simple", "consistentHash"])]))]
pub struct LoadBalancerSettings {
    /// LEAST_REQUEST when neither this nor `consistentHash` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simple: Option<SimpleLb>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHashLb>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::opaque_object")]
    pub locality_lb_setting: Option<serde_json::Map<String, serde_json::Value>>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::opaque_object")]
    pub zone_aware_lb_setting: Option<serde_json::Map<String, serde_json::Value>>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_duration_secs: Option<Duration>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::opaque_object")]
    pub warmup: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleLb {
    /// Same as LEAST_REQUEST.
    Unspecified,
    /// Deprecated name of LEAST_REQUEST.
    LeastConn,
    Random,
    /// Straight to the address the caller asked for (no load balancing).
    Passthrough,
    RoundRobin,
    LeastRequest,
}

/// Sticky sessions: exactly one hash key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [
    crate::schema::exactly_one(&["httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName"]),
    crate::schema::at_most_one(&["ringHash", "maglev"]),
]))]
pub struct ConsistentHashLb {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub http_header_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_cookie: Option<HttpCookie>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_source_ip: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub http_query_parameter_name: Option<String>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::opaque_object")]
    pub ring_hash: Option<serde_json::Map<String, serde_json::Value>>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::opaque_object")]
    pub maglev: Option<serde_json::Map<String, serde_json::Value>>,
    /// Deprecated. Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_ring_size: Option<u64>,
}

/// Hash on a cookie; Envoy sets it (with `ttl`) when the request has none.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("required" = ["name"]))]
pub struct HttpCookie {
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub path: Option<String>,
    /// `0s` makes a session cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::duration::any_duration_schema")]
    pub ttl: Option<Duration>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::opaque_list")]
    pub attributes: Vec<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ConnectionPoolSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct TcpSettings {
    /// Connections to each endpoint cluster-wide, per proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_connections: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::opaque_object")]
    pub tcp_keepalive: Option<serde_json::Map<String, serde_json::Value>>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connection_duration: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub http1_max_pending_requests: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub http2_max_requests: Option<i32>,
    /// 0 means unlimited; 1 disables keep-alive.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_requests_per_connection: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_retries: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h2_upgrade_policy: Option<H2UpgradePolicy>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_client_protocol: Option<bool>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_concurrent_streams: Option<i32>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::opaque_object")]
    pub http2_keep_alive: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum H2UpgradePolicy {
    Default,
    DoNotUpgrade,
    Upgrade,
}

/// Ejects endpoints that keep failing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct OutlierDetection {
    /// Deprecated (use consecutive5xxErrors). Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub consecutive_errors: Option<i32>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split_external_local_origin_errors: Option<bool>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failures: Option<u32>,
    /// 502, 503 and 504 answers in a row (0 disables).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    /// 5xx answers in a row (0 disables).
    #[serde(
        rename = "consecutive5xxErrors",
        skip_serializing_if = "Option::is_none"
    )]
    pub consecutive_5xx_errors: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_ejection_percent: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub min_health_percent: Option<i32>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(range(min = 100, max = 599)))]
    pub outlier_detection_http_error_codes: Vec<u32>,
}

/// TLS from the proxy to the host's endpoints.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.credentialName) || !(has(self.clientCertificate) || has(self.privateKey) || has(self.caCertificates))",
    "message": "credentialName and file paths (clientCertificate, privateKey, caCertificates) cannot both be set"
}]))]
pub struct ClientTlsSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<ClientTlsMode>,
    /// MUTUAL: file path (in the proxy's filesystem) of the client certificate chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub client_certificate: Option<String>,
    /// MUTUAL: file path (in the proxy's filesystem) of the client's private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub private_key: Option<String>,
    /// File path of the CA bundle that verifies the server (SIMPLE, MUTUAL; default the system roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub ca_certificates: Option<String>,
    /// SIMPLE, MUTUAL: a `kubernetes.io/tls` Secret in the proxy's own namespace, served over SDS
    /// instead of files: `tls.crt`/`tls.key` the client certificate (MUTUAL), `ca.crt` (or the Secret
    /// `<name>-cacert`) the CA that verifies the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub credential_name: Option<String>,
    /// Identities the server's certificate must carry one of (DNS names, or URIs such as SPIFFE ids);
    /// for MESH_MUTUAL they replace the destination's SPIFFE ids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    pub subject_alt_names: Vec<String>,
    /// The SNI sent to the server (MESH_MUTUAL default: `outbound_.<port>_._.<host>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub sni: Option<String>,
    /// SIMPLE, MUTUAL: do not verify the server's certificate (nor its SANs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// File path of a certificate revocation list checked with caCertificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub ca_crl: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientTlsMode {
    Disable,
    Simple,
    Mutual,
    /// The mesh's own mTLS (workload certificates from the mesh CA).
    MeshMutual,
    /// Istio's name for MESH_MUTUAL; the same.
    IstioMutual,
}

impl ClientTlsMode {
    /// ISTIO_MUTUAL is MESH_MUTUAL.
    pub fn is_mesh_mutual(self) -> bool {
        matches!(self, Self::MeshMutual | Self::IstioMutual)
    }
}
