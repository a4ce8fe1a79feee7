//! `Gateway` (`networking.meshd.io/v1alpha1`, short name `gw`): the ports, protocols, hosts and TLS of
//! gateway pods at the mesh's edge. Istio's `networking.istio.io/v1` Gateway, SPEC §10.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Protocol, TlsProtocol};
use crate::status::ConfigStatus;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "networking.meshd.io",
    version = "v1alpha1",
    kind = "Gateway",
    namespaced,
    shortname = "gw",
    category = "meshd",
    status = "ConfigStatus",
    printcolumn = r#"{"name":"SERVERS","type":"string","jsonPath":".spec.servers[*].port.number"}"#,
    printcolumn = r#"{"name":"ACCEPTED","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewaySpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub servers: Vec<Server>,
    /// Gateway pods (in any namespace) whose labels include all of these.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::schema::label_map")]
    pub selector: BTreeMap<String, String>,
}

/// One listener's worth of config: a port, the hosts served on it, and TLS.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend(
    "required" = ["port", "hosts"],
    "x-kubernetes-validations" = [{
        "rule": "!has(self.port) || !has(self.port.protocol) || !(self.port.protocol.upperAscii() in ['HTTPS', 'TLS']) || has(self.tls)",
        "message": "tls: HTTPS and TLS servers need tls settings",
        "fieldPath": ".tls",
    }]
))]
pub struct Server {
    pub port: ServerPort,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub bind: Option<String>,
    /// `[namespace/]host`: `ns/` binds VirtualServices of ns only, `./` of the Gateway's namespace, `*/`
    /// (the default) of any; `*.domain` matches subdomains, `*` every host.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 64), inner(length(max = 317), regex(pattern = crate::schema::GATEWAY_HOST_PATTERN)))]
    pub hosts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub default_endpoint: Option<String>,
    /// A name for the server, shown in logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("required" = ["number", "protocol", "name"]))]
pub struct ServerPort {
    #[schemars(range(min = 1, max = 65535))]
    pub number: u32,
    /// Required; HTTP, HTTPS, HTTP2, GRPC, TCP or TLS (and Istio's other names, served as TCP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Deprecated. Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub target_port: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [
    crate::schema::at_most_one(&["credentialName", "credentialNames", "tlsCertificates"]),
]))]
pub struct ServerTlsSettings {
    /// Answer every plain-HTTP request with a 301 to `https://`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_redirect: Option<bool>,
    /// PASSTHROUGH when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<ServerTlsMode>,
    /// Accepted for Istio compatibility; meshd does not act on it (use credentialName).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub server_certificate: Option<String>,
    /// Accepted for Istio compatibility; meshd does not act on it (use credentialName).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub private_key: Option<String>,
    /// Accepted for Istio compatibility; meshd does not act on it (use credentialName).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub ca_certificates: Option<String>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub ca_crl: Option<String>,
    /// A `kubernetes.io/tls` Secret in the gateway pods' namespace: `tls.crt`, `tls.key`, and for
    /// MUTUAL the client CA in `ca.crt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub credential_name: Option<String>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2), inner(length(max = 253)))]
    pub credential_names: Vec<String>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub ca_cert_credential_name: Option<String>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::opaque_list")]
    pub tls_certificates: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    pub subject_alt_names: Vec<String>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 256)))]
    pub verify_certificate_spki: Vec<String>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 256)))]
    pub verify_certificate_hash: Vec<String>,
    /// TLSV1_2 when unset; TLS 1.0 and 1.1 are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_protocol_version: Option<TlsProtocol>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_protocol_version: Option<TlsProtocol>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 128)))]
    pub cipher_suites: Vec<String>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerTlsMode {
    /// Forward by SNI without terminating TLS.
    Passthrough,
    /// Terminate TLS with the `credentialName` certificate.
    Simple,
    /// Terminate TLS and require a client certificate signed by `ca.crt`.
    Mutual,
    /// Accepted for Istio compatibility; meshd does not act on it.
    AutoPassthrough,
    /// The mesh's own mTLS (workload certificate of the gateway).
    MeshMutual,
    /// Istio's name for MESH_MUTUAL; the same.
    IstioMutual,
    /// Accepted for Istio compatibility; meshd does not act on it.
    OptionalMutual,
}

impl ServerTlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passthrough => "PASSTHROUGH",
            Self::Simple => "SIMPLE",
            Self::Mutual => "MUTUAL",
            Self::AutoPassthrough => "AUTO_PASSTHROUGH",
            Self::MeshMutual => "MESH_MUTUAL",
            Self::IstioMutual => "ISTIO_MUTUAL",
            Self::OptionalMutual => "OPTIONAL_MUTUAL",
        }
    }
}
