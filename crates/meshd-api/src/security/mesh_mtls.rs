//! `Mesh.status.mtls`: the mTLS mode in force mesh-wide and the PeerAuthentications that give some
//! workload another one (SPEC §9: `kubectl get mesh` MTLS and the proxies' config agree). The control
//! plane derives it from the same PeerAuthentications, pods and Mesh it compiles the proxies' config
//! from.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::mesh::MtlsMode;

/// At most this many overriding PeerAuthentications are listed (all are counted).
pub const MAX_LISTED_OVERRIDES: usize = 20;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeshMtlsStatus {
    /// The mode in force mesh-wide: the mesh-wide PeerAuthentication's (in meshd-system, without
    /// selector; the oldest), else `spec.mtls.mode`.
    pub mode: MtlsMode,
    /// Where `mode` comes from: `spec.mtls.mode`, or `PeerAuthentication meshd-system/<name>`.
    pub source: String,
    /// Namespace-wide and workload PeerAuthentications that give a meshed pod (or one of its ports)
    /// a mode other than `mode`.
    pub overrides: i64,
    /// Meshed pods with another mode than `mode` on some port.
    pub overridden_pods: i64,
    /// The overriding PeerAuthentications, by namespace and name (the first 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overridden_by: Vec<MtlsOverride>,
    /// `mode`, and the number of overrides when there are any: `STRICT`, `STRICT (2 overrides)`. The
    /// MTLS column of `kubectl get mesh`.
    pub summary: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MtlsOverride {
    pub namespace: String,
    pub name: String,
    /// `Namespace` (no selector) or `Workload`.
    pub scope: String,
    /// The mode it gives (inherited from the enclosing scope when its own is UNSET).
    pub mode: MtlsMode,
    /// `portLevelMtls`: target port → mode.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, MtlsMode>,
}

/// The MTLS column's text.
pub fn summary(mode: MtlsMode, overrides: usize) -> String {
    match overrides {
        0 => mode.as_str().to_string(),
        1 => format!("{} (1 override)", mode.as_str()),
        n => format!("{} ({n} overrides)", mode.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_column_names_the_mode_and_counts_overrides() {
        assert_eq!(summary(MtlsMode::Strict, 0), "STRICT");
        assert_eq!(summary(MtlsMode::Strict, 1), "STRICT (1 override)");
        assert_eq!(summary(MtlsMode::Permissive, 3), "PERMISSIVE (3 overrides)");
    }
}
