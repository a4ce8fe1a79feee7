//! `AuthorizationPolicy` (`security.meshd.io/v1alpha1`, short name `ap`): who may call a workload, and
//! how. Istio's evaluation order: any matching DENY denies; no ALLOW policy allows; otherwise a matching
//! ALLOW is needed; an ALLOW with no rules denies everything (SPEC §9).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::selector::{PolicyTargetReference, WorkloadSelector};
use crate::status::ConfigStatus;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "security.meshd.io",
    version = "v1alpha1",
    kind = "AuthorizationPolicy",
    namespaced,
    shortname = "ap",
    category = "meshd",
    status = "ConfigStatus",
    printcolumn = r#"{"name":"ACTION","type":"string","jsonPath":".spec.action"}"#,
    printcolumn = r#"{"name":"ACCEPTED","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [
    crate::schema::at_most_one(&["selector", "targetRef", "targetRefs"]),
    {
        "rule": "(has(self.action) && self.action == 'CUSTOM') == has(self.provider)",
        "message": "provider is set exactly when action is CUSTOM",
        "fieldPath": ".provider",
    }
]))]
pub struct AuthorizationPolicySpec {
    /// The workloads this applies to; none means every workload of the namespace (of the mesh, in
    /// meshd-system).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub target_refs: Vec<PolicyTargetReference>,
    /// ORed; a request matching any rule matches the policy. None: ALLOW denies all, DENY denies nothing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub rules: Vec<Rule>,
    /// ALLOW when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The external authorizer of a CUSTOM policy. Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ExtensionProvider>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    #[default]
    Allow,
    Deny,
    /// Marks matching requests for auditing; never denies.
    Audit,
    /// Delegates to an external authorizer. Accepted for Istio compatibility; meshd does not act on it.
    Custom,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "ALLOW",
            Self::Deny => "DENY",
            Self::Audit => "AUDIT",
            Self::Custom => "CUSTOM",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ExtensionProvider {
    #[schemars(length(max = 253))]
    pub name: String,
}

/// `from`, `to` and `when` are ANDed; the entries inside each are ORed. An empty rule matches everything.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Rule {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub from: Vec<From>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub to: Vec<To>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub when: Vec<Condition>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct From {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct To {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

/// Who is calling. Every field set must match; within a field, any value.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Source {
    /// Peer identities `<trustDomain>/ns/<ns>/sa/<sa>` (known only under mTLS); `*` prefix/suffix allowed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 320)))]
    pub principals: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 320)))]
    pub not_principals: Vec<String>,
    /// Accepted for Istio compatibility; meshd does not act on it (no RequestAuthentication).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 320)))]
    pub request_principals: Vec<String>,
    /// Accepted for Istio compatibility; meshd does not act on it (no RequestAuthentication).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 320)))]
    pub not_request_principals: Vec<String>,
    /// Namespaces of the peer identity (mTLS only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    pub namespaces: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    pub not_namespaces: Vec<String>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 320)))]
    pub service_accounts: Vec<String>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 320)))]
    pub not_service_accounts: Vec<String>,
    /// Peer IPs or CIDRs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 43)))]
    #[schemars(extend("x-kubernetes-validations" = [crate::schema::ips_or_cidrs("ipBlocks")]))]
    pub ip_blocks: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 43)))]
    #[schemars(extend("x-kubernetes-validations" = [crate::schema::ips_or_cidrs("notIpBlocks")]))]
    pub not_ip_blocks: Vec<String>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 43)))]
    #[schemars(extend("x-kubernetes-validations" = [crate::schema::ips_or_cidrs("remoteIpBlocks")]))]
    pub remote_ip_blocks: Vec<String>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 43)))]
    #[schemars(extend("x-kubernetes-validations" = [crate::schema::ips_or_cidrs("notRemoteIpBlocks")]))]
    pub not_remote_ip_blocks: Vec<String>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub trust_domains: Vec<String>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub not_trust_domains: Vec<String>,
}

/// What is being called. Every field set must match; within a field, any value.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Operation {
    /// Host header values (HTTP only); `*` prefix/suffix allowed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub hosts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub not_hosts: Vec<String>,
    /// Destination ports, as strings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 5), regex(pattern = r"^[0-9]+$")))]
    pub ports: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 5), regex(pattern = r"^[0-9]+$")))]
    pub not_ports: Vec<String>,
    /// HTTP methods (HTTP only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 64)))]
    pub methods: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 64)))]
    pub not_methods: Vec<String>,
    /// Paths (HTTP only): exact, `prefix*`, `*suffix` or `*`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    pub paths: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    pub not_paths: Vec<String>,
}

/// An attribute condition: `key` among [`CONDITION_KEYS`] (or `request.headers[<name>]`), any of
/// `values`, none of `notValues`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("required" = ["key"]))]
pub struct Condition {
    #[schemars(length(min = 1, max = 320))]
    pub key: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    pub values: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    pub not_values: Vec<String>,
}

/// `when` keys SPEC §9 names (besides `request.headers[<name>]`).
pub const CONDITION_KEYS: [&str; 4] = [
    "source.ip",
    "source.namespace",
    "source.principal",
    "destination.port",
];

/// Further `when` keys Istio has: accepted, meshd does not act on them.
pub const ISTIO_ONLY_CONDITION_KEYS: [&str; 7] = [
    "remote.ip",
    "destination.ip",
    "connection.sni",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "source.serviceAccount",
];

/// Prefixes of further Istio `when` keys: accepted, meshd does not act on them.
pub const ISTIO_ONLY_CONDITION_PREFIXES: [&str; 2] = ["request.auth.claims[", "experimental."];
