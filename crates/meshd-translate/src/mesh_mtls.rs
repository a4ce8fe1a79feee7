//! `Mesh.status.mtls` (SPEC §9): the mode in force mesh-wide and the PeerAuthentications that give a
//! meshed pod another one, from the same PeerAuthentications, pods and Mesh a generation compiles
//! the proxies' inbound sides from, and by the same resolution ([`crate::peer::resolve`]), so the
//! status and the proxies cannot disagree.

use std::collections::BTreeMap;

use meshd_api::mesh::MtlsMode;
use meshd_api::security::mesh_mtls::{MAX_LISTED_OVERRIDES, summary};
use meshd_api::security::{MeshMtlsStatus, MtlsOverride};

use crate::facts::ObjectKey;
use crate::peer::{deciding, known, mesh_mode, mesh_wide, resolve};
use crate::proxy::CompiledMesh;

impl CompiledMesh {
    /// Whether [`CompiledMesh::mtls_status`] reads the same inputs in both generations (cheap: the
    /// persistent maps are compared by pointer, so an unrelated change costs no recount).
    pub fn same_mtls_inputs(&self, other: &CompiledMesh) -> bool {
        std::sync::Arc::ptr_eq(&self.mesh, &other.mesh)
            && self.peers.ptr_eq(&other.peers)
            && self.workloads.ptr_eq(&other.workloads)
    }

    /// What `Mesh.status.mtls` says for mesh `mesh_name`: counted over the pods of that mesh.
    pub fn mtls_status(&self, mesh_name: &str) -> MeshMtlsStatus {
        let default = self.mesh.mtls.mode;
        let mode = mesh_mode(&self.peers, default);
        let source = match mesh_wide(&self.peers) {
            Some((key, p)) if known(p.mode).is_some() => {
                format!("PeerAuthentication {}/{}", key.namespace, key.name)
            }
            _ => "spec.mtls.mode".to_string(),
        };
        let mut overrides: BTreeMap<&ObjectKey, MtlsOverride> = BTreeMap::new();
        let mut overridden_pods = 0;
        let meshed = self
            .workloads
            .iter()
            .filter(|(_, w)| w.mesh.as_deref() == Some(mesh_name));
        for (pod, w) in meshed {
            let modes = resolve(&self.peers, default, &pod.namespace, &w.labels);
            if modes.mode == mode && modes.ports.values().all(|m| *m == mode) {
                continue;
            }
            overridden_pods += 1;
            let [_, namespace_wide, workload] = deciding(&self.peers, &pod.namespace, &w.labels);
            let namespace_mode = namespace_wide.and_then(|(_, p)| known(p.mode));
            if let Some((key, p)) = workload {
                let own = known(p.mode);
                let inherited = own.or(namespace_mode).unwrap_or(mode);
                let ports: BTreeMap<String, MtlsMode> = p
                    .ports
                    .iter()
                    .map(|(port, m)| (port.to_string(), known(*m).unwrap_or(inherited)))
                    .collect();
                if own.is_some_and(|m| m != mode) || ports.values().any(|m| *m != mode) {
                    overrides
                        .entry(key)
                        .or_insert_with(|| entry(key, "Workload", inherited, ports));
                }
                if own.is_some() {
                    continue;
                }
            }
            if let (Some((key, _)), Some(m)) = (namespace_wide, namespace_mode)
                && m != mode
            {
                overrides
                    .entry(key)
                    .or_insert_with(|| entry(key, "Namespace", m, BTreeMap::new()));
            }
        }
        let count = overrides.len();
        MeshMtlsStatus {
            mode,
            source,
            overrides: i64::try_from(count).unwrap_or(i64::MAX),
            overridden_pods,
            overridden_by: overrides.into_values().take(MAX_LISTED_OVERRIDES).collect(),
            summary: summary(mode, count),
        }
    }
}

fn entry(
    key: &ObjectKey,
    scope: &str,
    mode: MtlsMode,
    ports: BTreeMap<String, MtlsMode>,
) -> MtlsOverride {
    MtlsOverride {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        scope: scope.into(),
        mode,
        ports,
    }
}
