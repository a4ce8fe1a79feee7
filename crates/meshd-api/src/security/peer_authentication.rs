//! `PeerAuthentication` (`security.meshd.io/v1alpha1`, short name `pa`): which mTLS mode a workload's
//! inbound traffic gets. In `meshd-system` without selector it is mesh-wide, elsewhere without selector
//! namespace-wide, with selector per workload (SPEC §9).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::selector::WorkloadSelector;
use crate::status::ConfigStatus;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "security.meshd.io",
    version = "v1alpha1",
    kind = "PeerAuthentication",
    namespaced,
    shortname = "pa",
    category = "meshd",
    status = "ConfigStatus",
    printcolumn = r#"{"name":"MODE","type":"string","jsonPath":".spec.mtls.mode"}"#,
    printcolumn = r#"{"name":"ACCEPTED","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.portLevelMtls) || size(self.portLevelMtls) == 0 || (has(self.selector) && has(self.selector.matchLabels) && size(self.selector.matchLabels) > 0)",
    "message": "portLevelMtls needs a selector (ports belong to a workload)",
    "fieldPath": ".portLevelMtls",
}]))]
pub struct PeerAuthenticationSpec {
    /// The workloads this applies to; none means the namespace (or the mesh, in meshd-system).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtls: Option<PeerMtls>,
    /// Port number → mode, overriding `mtls` on that (container) port.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 64,
        "x-kubernetes-validations" = [{
            "rule": "self.all(k, k.matches('^[0-9]{1,5}$') && int(k) >= 1 && int(k) <= 65535)",
            "messageExpression": "'portLevelMtls: ' + self.filter(k, !(k.matches('^[0-9]{1,5}$') && int(k) >= 1 && int(k) <= 65535)).map(k, '\"' + k + '\"').join(', ') + ' is not a port number (1-65535)'",
        }]
    ))]
    pub port_level_mtls: BTreeMap<String, PeerMtls>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct PeerMtls {
    /// UNSET inherits from the enclosing scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<PeerMtlsMode>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PeerMtlsMode {
    /// Inherit from the enclosing scope (workload < namespace < mesh < Mesh.spec.mtls.mode).
    #[default]
    Unset,
    /// Plaintext only.
    Disable,
    /// mTLS and plaintext.
    Permissive,
    /// mTLS only: plaintext connections are closed.
    Strict,
}

impl PeerMtlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unset => "UNSET",
            Self::Disable => "DISABLE",
            Self::Permissive => "PERMISSIVE",
            Self::Strict => "STRICT",
        }
    }
}
