//! One compiled generation of the mesh, and each proxy's configuration from it.

use std::collections::BTreeSet;
use std::sync::Arc;

use meshd_api::MeshSpec;

use crate::authz::{AuthzPolicies, workload_rbac};
use crate::credentials::{
    Credentials, credential_ca_sds_name, credential_names, credential_resources,
    credential_sds_name,
};
use crate::facts::{ObjectKey, Workload};
use crate::gateway::{GatewayInputs, gateway_config, is_gateway, namespace_services, pod_ports};
use crate::inbound::{InboundPolicy, inbound_cluster, inbound_ports, virtual_inbound};
use crate::node::NodeId;
use crate::peer::{PeerPolicies, resolve};
use crate::resources::{Resource, ResourceSet, ResourceType};
use crate::translator::CompiledService;

/// The mesh translated as far as it can be without knowing the proxy. Cheap to clone and to keep
/// many of: every part is a persistent map shared with the previous generation.
#[derive(Clone, Debug)]
pub struct CompiledMesh {
    pub(crate) shared: ResourceSet,
    pub(crate) services: imbl::OrdMap<ObjectKey, Arc<CompiledService>>,
    pub(crate) workloads: imbl::OrdMap<ObjectKey, Arc<Workload>>,
    /// The Mesh in force (its mTLS mode and trust domain), PeerAuthentications and
    /// AuthorizationPolicies: what a proxy's inbound side enforces.
    pub(crate) mesh: Arc<MeshSpec>,
    pub(crate) peers: PeerPolicies,
    pub(crate) authz: AuthzPolicies,
    /// What gateway proxies' listeners and routes are built from (SPEC §10).
    pub(crate) gateways: Arc<GatewayInputs>,
    /// Whether a Mesh of the configured name exists (else its defaults apply).
    pub mesh_found: bool,
    /// Things that were skipped or are not implemented, for the caller to log.
    pub warnings: Vec<String>,
    /// The verdict on every traffic resource (SPEC §8).
    pub verdicts: crate::Verdicts,
    /// TLS credentials by Secret (`kubernetes.io/tls`), for gateway proxies' SDS and sidecars'.
    pub(crate) credentials: Credentials,
    /// The Secrets DestinationRules name (`tls.credentialName`): the only ones a sidecar gets, from
    /// its own namespace.
    pub(crate) upstream_credentials: Arc<BTreeSet<String>>,
    /// The sidecars whose routes differ from the shared ones (`exportTo`, source matches): their
    /// versions of those resources, under the shared names.
    pub(crate) variants: imbl::OrdMap<ObjectKey, Arc<crate::translator::Variant>>,
}

/// A proxy's own resources (a few): a sorted `Vec` per type.
#[derive(Clone, Debug, Default)]
struct OwnResources {
    by_type: [Vec<Arc<Resource>>; ResourceType::COUNT],
    /// How many of a type's own resources have a shared namesake, which they replace.
    shadowing: [usize; ResourceType::COUNT],
}

impl OwnResources {
    /// Counts the own resources that replace shared ones of their name.
    fn shadow(&mut self, shared: &ResourceSet) {
        for ty in ResourceType::ALL {
            self.shadowing[ty.index()] = self.by_type[ty.index()]
                .iter()
                .filter(|r| shared.get(ty, &r.name).is_some())
                .count();
        }
    }

    fn push(&mut self, ty: ResourceType, r: Arc<Resource>) {
        let list = &mut self.by_type[ty.index()];
        let at = list.partition_point(|x| x.name < r.name);
        list.insert(at, r);
    }

    fn get(&self, ty: ResourceType, name: &str) -> Option<&Arc<Resource>> {
        let list = &self.by_type[ty.index()];
        list.binary_search_by(|r| (*r.name).cmp(name))
            .ok()
            .map(|i| &list[i])
    }

    fn version(&self, ty: ResourceType) -> u64 {
        self.by_type[ty.index()]
            .iter()
            .fold(0xcbf2_9ce4_8422_2325, |h: u64, r| {
                (h.rotate_left(5) ^ r.name_hash ^ r.body_hash.rotate_left(17))
                    .wrapping_mul(0x0100_0000_01b3)
            })
    }
}

/// One proxy's complete configuration: the shared resources plus its own.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub node: NodeId,
    /// False when no Pod matches the node id: the config is then empty.
    pub known: bool,
    /// A gateway proxy (SPEC §10): the shared listeners (`virtualOutbound`) are not its.
    pub gateway: bool,
    shared: ResourceSet,
    own: OwnResources,
}

impl CompiledMesh {
    /// The Workload behind a node id, if there is one.
    pub fn workload(&self, node: &NodeId) -> Option<&Arc<Workload>> {
        self.workloads
            .get(&ObjectKey::new(node.namespace.clone(), node.pod.clone()))
    }

    /// One proxy's resources: the shared ones plus its inbound side. Unknown node → empty config.
    pub fn proxy_config(&self, node: &NodeId) -> ProxyConfig {
        let Some(workload) = self.workload(node) else {
            return ProxyConfig {
                node: node.clone(),
                known: false,
                gateway: false,
                shared: ResourceSet::default(),
                own: OwnResources::default(),
            };
        };
        if is_gateway(workload) {
            return self.gateway_proxy(node, workload);
        }
        let from = ObjectKey::new(node.namespace.clone(), String::new());
        let services = self
            .services
            .range(from..)
            .take_while(|(k, _)| k.namespace == node.namespace)
            .map(|(_, s)| &*s.fact);
        let ip = workload.ips.first();
        let ports = match ip {
            Some(_) => inbound_ports(workload, services),
            None => Vec::new(),
        };
        let mut own = OwnResources::default();
        if let Some(ip) = ip {
            for port in &ports {
                let cluster = inbound_cluster(ip, port);
                own.push(
                    ResourceType::Cluster,
                    Resource::new(cluster.name.clone(), &cluster),
                );
            }
        }
        let ns = &node.namespace;
        let mtls = resolve(&self.peers, self.mesh.mtls.mode, ns, &workload.labels);
        let rbac = workload_rbac(&self.authz, ns, &workload.labels);
        let policy = InboundPolicy {
            mtls: &mtls,
            trust_domain: &self.mesh.trust_domain,
            rbac: &rbac,
        };
        let listener = virtual_inbound(&ports, &policy);
        own.push(
            ResourceType::Listener,
            Resource::new(listener.name.clone(), &listener),
        );
        // The credentials DestinationRules name, from its own namespace (Istio's rule); a name its
        // namespace has no Secret for is left unanswered (see `upstream_credential_sds_config`).
        let names = self
            .upstream_credentials
            .iter()
            .flat_map(|n| [credential_sds_name(n), credential_ca_sds_name(n)])
            .collect();
        for secret in self.credential_resources(&node.namespace, &names) {
            own.push(ResourceType::Secret, secret);
        }
        let key = ObjectKey::new(node.namespace.clone(), node.pod.clone());
        if let Some(variant) = self.variants.get(&key) {
            for (ty, r) in variant.iter() {
                own.push(*ty, Arc::clone(r));
            }
            own.shadow(&self.shared);
        }
        ProxyConfig {
            node: node.clone(),
            known: true,
            gateway: false,
            shared: self.shared.clone(),
            own,
        }
    }

    /// A gateway proxy's resources: the shared clusters, load assignments and routes, and its own
    /// listeners and route tables from the Gateways selecting it (no inbound side).
    fn gateway_proxy(&self, node: &NodeId, workload: &Workload) -> ProxyConfig {
        let gw = self.gateway_of(&node.namespace, workload);
        let mut own = OwnResources::default();
        for l in &gw.listeners {
            own.push(ResourceType::Listener, Resource::new(l.name.clone(), l));
        }
        for r in &gw.routes {
            own.push(ResourceType::Route, Resource::new(r.name.clone(), r));
        }
        // Its own namespace's credentials only (SPEC §10); Envoy asks for those its listeners name,
        // so a listener waits for a Secret until it exists (even one whose Gateway is not in force).
        let names = credential_names(&self.credentials, &node.namespace);
        for secret in self.credential_resources(&node.namespace, &names) {
            own.push(ResourceType::Secret, secret);
        }
        ProxyConfig {
            node: node.clone(),
            known: true,
            gateway: true,
            shared: self.shared.clone(),
            own,
        }
    }

    /// The gateway config of a node's proxy, when it is a gateway's (its credentials' SDS names, for
    /// one).
    pub fn gateway_config(&self, node: &NodeId) -> Option<crate::GatewayConfig> {
        let workload = self.workload(node).filter(|w| is_gateway(w))?;
        Some(self.gateway_of(&node.namespace, workload))
    }

    /// A gateway pod's config, its listeners bound where its namespace's Services selecting it
    /// target their ports.
    fn gateway_of(&self, namespace: &str, workload: &Workload) -> crate::GatewayConfig {
        let targets = pod_ports(namespace_services(&self.services, namespace), workload);
        gateway_config(&self.gateways, namespace, workload, &targets)
    }

    /// `config` moved to this generation: the shared part replaced (a pointer copy), its own part
    /// recomputed only when `own_changed`.
    pub fn refresh(&self, config: &ProxyConfig, own_changed: bool) -> ProxyConfig {
        if own_changed || !config.known {
            return self.proxy_config(&config.node);
        }
        ProxyConfig {
            node: config.node.clone(),
            known: true,
            gateway: config.gateway,
            shared: self.shared.clone(),
            own: config.own.clone(),
        }
    }

    /// The SDS `Secret`s for `names` (`kubernetes://<secret>`, `kubernetes://<secret>-cacert`) from
    /// the `kubernetes.io/tls` Secrets of `namespace` only; names it cannot answer are skipped.
    pub fn credential_resources(
        &self,
        namespace: &str,
        names: &BTreeSet<String>,
    ) -> Vec<Arc<Resource>> {
        credential_resources(&self.credentials, namespace, names)
    }

    /// Every shared resource of a type, sorted by name.
    pub fn shared(&self, ty: ResourceType) -> impl Iterator<Item = &Arc<Resource>> {
        self.shared.of(ty)
    }
}

impl ProxyConfig {
    /// Whether the shared resources of a type are this proxy's: all but the listeners for gateways.
    fn has_shared(&self, ty: ResourceType) -> bool {
        !(self.gateway && ty == ResourceType::Listener)
    }

    /// Every resource of a type: the shared ones (but those an own one replaces), then the proxy's
    /// own (each part sorted by name).
    pub fn resources(&self, ty: ResourceType) -> impl Iterator<Item = &Arc<Resource>> {
        let shared = self.has_shared(ty).then(|| self.shared.of(ty));
        let shadowing = self.own.shadowing[ty.index()] > 0;
        shared
            .into_iter()
            .flatten()
            .filter(move |r| !shadowing || self.own.get(ty, &r.name).is_none())
            .chain(&self.own.by_type[ty.index()])
    }

    /// The proxy's own resources of a type (its inbound side, and its versions of shared ones).
    pub fn own(&self, ty: ResourceType) -> &[Arc<Resource>] {
        &self.own.by_type[ty.index()]
    }

    pub fn get(&self, ty: ResourceType, name: &str) -> Option<&Arc<Resource>> {
        self.own
            .get(ty, name)
            .or_else(|| self.shared.get(ty, name).filter(|_| self.has_shared(ty)))
    }

    /// The version of a whole type for this proxy (SotW `version_info`, delta `system_version_info`):
    /// changes when any name or body does. O(1) for the shared part, which keeps its version as it
    /// changes.
    pub fn type_version(&self, ty: ResourceType) -> String {
        let shared = if self.has_shared(ty) {
            self.shared.version(ty)
        } else {
            0
        };
        format!(
            "{:016x}",
            shared.rotate_left(29) ^ self.own.version(ty) ^ crate::fnv1a(ty.short().as_bytes())
        )
    }

    pub fn count(&self, ty: ResourceType) -> usize {
        let shared = if self.has_shared(ty) {
            self.shared.len(ty) - self.own.shadowing[ty.index()]
        } else {
            0
        };
        shared + self.own.by_type[ty.index()].len()
    }
}
