//! Which mTLS mode a workload accepts (SPEC §9): PeerAuthentication at workload, namespace and mesh
//! scope over `Mesh.spec.mtls.mode`, the oldest policy of a scope winning, `UNSET` inheriting.

use std::collections::BTreeMap;
use std::sync::Arc;

use meshd_api::mesh::MtlsMode;
use meshd_api::names::SYSTEM_NAMESPACE;
use meshd_api::security::peer_authentication::PeerMtlsMode;

use crate::facts::{ObjectKey, PeerAuthentication};

/// Every PeerAuthentication by namespace/name.
pub(crate) type PeerPolicies = imbl::OrdMap<ObjectKey, Arc<PeerAuthentication>>;

/// A workload's modes: its own, and those of the target ports `portLevelMtls` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WorkloadMtls {
    pub mode: MtlsMode,
    pub ports: BTreeMap<u16, MtlsMode>,
}

impl WorkloadMtls {
    /// Everything in one mode (no PeerAuthentication applies).
    pub fn uniform(mode: MtlsMode) -> Self {
        Self {
            mode,
            ports: BTreeMap::new(),
        }
    }

    /// The mode of one target port.
    pub fn port(&self, port: u16) -> MtlsMode {
        self.ports.get(&port).copied().unwrap_or(self.mode)
    }
}

pub(crate) fn known(mode: PeerMtlsMode) -> Option<MtlsMode> {
    match mode {
        PeerMtlsMode::Unset => None,
        PeerMtlsMode::Disable => Some(MtlsMode::Disable),
        PeerMtlsMode::Permissive => Some(MtlsMode::Permissive),
        PeerMtlsMode::Strict => Some(MtlsMode::Strict),
    }
}

/// The policies of one namespace.
fn of_namespace<'a>(
    policies: &'a PeerPolicies,
    namespace: &'a str,
) -> impl Iterator<Item = (&'a ObjectKey, &'a Arc<PeerAuthentication>)> {
    policies
        .range(ObjectKey::new(namespace, String::new())..)
        .take_while(move |(k, _)| k.namespace == namespace)
}

/// The oldest of a scope (then by name, so that equal ages still give one answer).
fn oldest<'a>(
    candidates: impl Iterator<Item = (&'a ObjectKey, &'a Arc<PeerAuthentication>)>,
) -> Option<(&'a ObjectKey, &'a PeerAuthentication)> {
    candidates
        .min_by(|(ka, a), (kb, b)| (&a.age, *ka).cmp(&(&b.age, *kb)))
        .map(|(k, p)| (k, &**p))
}

/// One scope's deciding PeerAuthentication and its name.
pub(crate) type Deciding<'a> = Option<(&'a ObjectKey, &'a PeerAuthentication)>;

/// The mesh-wide PeerAuthentication: the oldest in meshd-system without selector.
pub(crate) fn mesh_wide(policies: &PeerPolicies) -> Deciding<'_> {
    oldest(of_namespace(policies, SYSTEM_NAMESPACE).filter(|(_, p)| p.selector.is_empty()))
}

/// The policies that decide a workload's modes, widest first: mesh, namespace, workload.
pub(crate) fn deciding<'a>(
    policies: &'a PeerPolicies,
    namespace: &'a str,
    labels: &BTreeMap<String, String>,
) -> [Deciding<'a>; 3] {
    let mesh = mesh_wide(policies);
    // In meshd-system the namespace policy is the mesh-wide one.
    let namespace_wide = if namespace == SYSTEM_NAMESPACE {
        None
    } else {
        oldest(of_namespace(policies, namespace).filter(|(_, p)| p.selector.is_empty()))
    };
    let workload = oldest(of_namespace(policies, namespace).filter(|(_, p)| {
        !p.selector.is_empty() && p.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    }));
    [mesh, namespace_wide, workload]
}

/// The mode in force mesh-wide: the mesh-wide PeerAuthentication's, else `Mesh.spec.mtls.mode`.
pub(crate) fn mesh_mode(policies: &PeerPolicies, mesh_default: MtlsMode) -> MtlsMode {
    mesh_wide(policies)
        .and_then(|(_, p)| known(p.mode))
        .unwrap_or(mesh_default)
}

/// A workload's modes: workload > namespace > mesh-wide PeerAuthentication > `Mesh.spec.mtls.mode`;
/// `portLevelMtls` of the workload policy per target port (its `UNSET` inherits the workload's mode).
pub(crate) fn resolve(
    policies: &PeerPolicies,
    mesh_default: MtlsMode,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> WorkloadMtls {
    if policies.is_empty() {
        return WorkloadMtls::uniform(mesh_default);
    }
    let [mesh, namespace_wide, workload] = deciding(policies, namespace, labels);
    let mut mode = mesh_default;
    for (_, policy) in [mesh, namespace_wide, workload].into_iter().flatten() {
        if let Some(m) = known(policy.mode) {
            mode = m;
        }
    }
    let ports = workload
        .map(|(_, w)| {
            w.ports
                .iter()
                .map(|(port, m)| (*port, known(*m).unwrap_or(mode)))
                .collect()
        })
        .unwrap_or_default();
    WorkloadMtls { mode, ports }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Age;

    fn policy(
        selector: &[(&str, &str)],
        mode: PeerMtlsMode,
        ports: &[(u16, PeerMtlsMode)],
        created: i64,
    ) -> Arc<PeerAuthentication> {
        Arc::new(PeerAuthentication {
            selector: selector
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mode,
            ports: ports.iter().copied().collect(),
            age: Age {
                untimed: false,
                created,
                file: String::new(),
            },
        })
    }

    fn labels(app: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("app".to_string(), app.to_string())])
    }

    use PeerMtlsMode::{Disable, Permissive, Strict, Unset};

    #[test]
    fn workload_beats_namespace_beats_mesh_beats_the_mesh_default() {
        let mut p = PeerPolicies::new();
        let web = labels("web");
        assert_eq!(
            resolve(&p, MtlsMode::Disable, "shop", &web),
            WorkloadMtls::uniform(MtlsMode::Disable)
        );
        p.insert(
            ObjectKey::new(SYSTEM_NAMESPACE, "mesh"),
            policy(&[], Strict, &[], 1),
        );
        assert_eq!(
            resolve(&p, MtlsMode::Disable, "shop", &web).mode,
            MtlsMode::Strict
        );
        p.insert(
            ObjectKey::new("shop", "ns"),
            policy(&[], Permissive, &[], 1),
        );
        assert_eq!(
            resolve(&p, MtlsMode::Disable, "shop", &web).mode,
            MtlsMode::Permissive
        );
        assert_eq!(
            resolve(&p, MtlsMode::Disable, "other", &web).mode,
            MtlsMode::Strict,
            "another namespace keeps the mesh-wide policy"
        );
        p.insert(
            ObjectKey::new("shop", "web"),
            policy(
                &[("app", "web")],
                Disable,
                &[(8080, Strict), (9090, Unset)],
                1,
            ),
        );
        let w = resolve(&p, MtlsMode::Strict, "shop", &web);
        assert_eq!(w.mode, MtlsMode::Disable);
        assert_eq!(w.port(8080), MtlsMode::Strict);
        assert_eq!(
            w.port(9090),
            MtlsMode::Disable,
            "UNSET inherits the workload mode"
        );
        assert_eq!(w.port(7070), MtlsMode::Disable);
        assert_eq!(
            resolve(&p, MtlsMode::Strict, "shop", &labels("db")).mode,
            MtlsMode::Permissive,
            "the selector does not match db"
        );
    }

    #[test]
    fn unset_inherits_and_the_oldest_of_a_scope_wins() {
        let mut p = PeerPolicies::new();
        p.insert(
            ObjectKey::new("shop", "b-new"),
            policy(&[], Strict, &[], 20),
        );
        p.insert(
            ObjectKey::new("shop", "a-old"),
            policy(&[], Disable, &[], 10),
        );
        let web = labels("web");
        assert_eq!(
            resolve(&p, MtlsMode::Permissive, "shop", &web).mode,
            MtlsMode::Disable
        );
        p.insert(ObjectKey::new("shop", "a-old"), policy(&[], Unset, &[], 10));
        assert_eq!(
            resolve(&p, MtlsMode::Permissive, "shop", &web).mode,
            MtlsMode::Permissive,
            "the oldest is UNSET: it inherits, the newer one does not count"
        );
        // Without timestamps (file-fed), the file name decides; a timestamp sorts first.
        let untimed = |file: &str, mode| {
            let mut pa = (*policy(&[], mode, &[], 0)).clone();
            pa.age = Age {
                untimed: true,
                created: 0,
                file: file.into(),
            };
            Arc::new(pa)
        };
        let mut p = PeerPolicies::new();
        p.insert(ObjectKey::new("shop", "x"), untimed("/c/b.yaml", Strict));
        p.insert(ObjectKey::new("shop", "y"), untimed("/c/a.yaml", Disable));
        assert_eq!(
            resolve(&p, MtlsMode::Permissive, "shop", &web).mode,
            MtlsMode::Disable
        );
        p.insert(
            ObjectKey::new("shop", "z"),
            policy(&[], Permissive, &[], 99),
        );
        assert_eq!(
            resolve(&p, MtlsMode::Strict, "shop", &web).mode,
            MtlsMode::Permissive
        );
    }

    #[test]
    fn in_meshd_system_a_policy_without_selector_is_mesh_wide() {
        let mut p = PeerPolicies::new();
        p.insert(
            ObjectKey::new(SYSTEM_NAMESPACE, "default"),
            policy(&[], Strict, &[], 1),
        );
        p.insert(
            ObjectKey::new(SYSTEM_NAMESPACE, "sel"),
            policy(&[("app", "web")], Disable, &[], 1),
        );
        // A selector in meshd-system selects meshd-system's own pods only.
        assert_eq!(
            resolve(&p, MtlsMode::Permissive, "shop", &labels("web")).mode,
            MtlsMode::Strict
        );
        assert_eq!(
            resolve(&p, MtlsMode::Permissive, SYSTEM_NAMESPACE, &labels("web")).mode,
            MtlsMode::Disable
        );
    }
}
