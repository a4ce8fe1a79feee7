//! From a snapshot to ready-to-send resources: the shared part once per snapshot, then per proxy.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::google::protobuf::Any;
use k8s_openapi::api::core::v1::Pod;
use meshd_api::mesh::MtlsMode;
use prost::Name;

use crate::envoy::pack;
use crate::inbound::{inbound_cluster, inbound_ports, virtual_inbound};
use crate::outbound::{
    ServicePortView, load_assignment, outbound_cluster, route_configuration, service_ports,
    slices_by_service, special_clusters, virtual_outbound,
};
use crate::snapshot::{MeshSnapshot, NodeId};

/// The four xDS resource types, in the order they are pushed: clusters before their endpoints,
/// listeners before their routes (Envoy's warming order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Cluster,
    Endpoint,
    Listener,
    Route,
}

impl ResourceType {
    pub const ALL: [ResourceType; 4] = [Self::Cluster, Self::Endpoint, Self::Listener, Self::Route];

    pub fn type_url(self) -> String {
        match self {
            Self::Cluster => Cluster::type_url(),
            Self::Endpoint => ClusterLoadAssignment::type_url(),
            Self::Listener => Listener::type_url(),
            Self::Route => RouteConfiguration::type_url(),
        }
    }

    pub fn from_type_url(url: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// `cds`, `eds`, `lds`, `rds`: for logs and metric labels.
    pub fn short(self) -> &'static str {
        match self {
            Self::Cluster => "cds",
            Self::Endpoint => "eds",
            Self::Listener => "lds",
            Self::Route => "rds",
        }
    }

    /// Whether Envoy subscribes to all of them (LDS, CDS) rather than by name (EDS, RDS).
    pub fn is_wildcard(self) -> bool {
        matches!(self, Self::Cluster | Self::Listener)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One named resource, encoded once, with a version that changes exactly when its bytes do.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    /// Shared with every proxy's bookkeeping, so thousands of streams do not copy names.
    pub name: Arc<str>,
    /// FNV-1a of `name`: the key streams use to remember what a proxy holds.
    pub name_hash: u64,
    pub body: Any,
    /// FNV-1a of the encoded body, and the same as hex (the xDS resource version).
    pub body_hash: u64,
    pub version: String,
}

impl Resource {
    fn new<M: prost::Message + Name>(name: String, message: &M) -> Arc<Self> {
        let body = pack(message);
        let body_hash = fnv1a(&body.value);
        Arc::new(Self {
            name_hash: fnv1a(name.as_bytes()),
            name: name.into(),
            body,
            body_hash,
            version: format!("{body_hash:016x}"),
        })
    }

    /// A resource known only by name and version: what a reconnecting proxy says it holds.
    pub fn declared(name: &str, version: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            name_hash: fnv1a(name.as_bytes()),
            body: Any::default(),
            body_hash: 0,
            version: version.to_string(),
        })
    }
}

/// FNV-1a: stable across runs and platforms (unlike `std`'s hasher), fast enough for MBs of config.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Resources of every type, each list sorted by name, with a version per type.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TypedResources {
    by_type: [Vec<Arc<Resource>>; 4],
    versions: [u64; 4],
}

impl TypedResources {
    pub fn of(&self, ty: ResourceType) -> &[Arc<Resource>] {
        &self.by_type[ty.index()]
    }

    pub fn get(&self, ty: ResourceType, name: &str) -> Option<&Arc<Resource>> {
        let list = self.of(ty);
        list.binary_search_by(|r| (*r.name).cmp(name))
            .ok()
            .map(|i| &list[i])
    }

    fn push(&mut self, ty: ResourceType, resource: Arc<Resource>) {
        self.by_type[ty.index()].push(resource);
    }

    fn sort(&mut self) {
        for (list, version) in self.by_type.iter_mut().zip(&mut self.versions) {
            list.sort_by(|a, b| a.name.cmp(&b.name));
            list.dedup_by(|a, b| a.name == b.name);
            *version = list.iter().fold(0xcbf2_9ce4_8422_2325, |h: u64, r| {
                (h.rotate_left(5) ^ r.name_hash ^ r.body_hash.rotate_left(17))
                    .wrapping_mul(0x0100_0000_01b3)
            });
        }
    }
}

/// A snapshot translated as far as it can be without knowing the proxy.
#[derive(Debug)]
pub struct CompiledMesh {
    shared: Arc<TypedResources>,
    views_by_namespace: BTreeMap<String, Vec<ServicePortView>>,
    pods: BTreeMap<NodeId, Pod>,
    /// Things in the snapshot that were skipped or are not implemented, for the caller to log.
    pub warnings: Vec<String>,
}

/// One proxy's complete configuration.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub node: NodeId,
    /// False when no Pod matches the node id: the config is then empty.
    pub known: bool,
    shared: Arc<TypedResources>,
    own: TypedResources,
}

impl CompiledMesh {
    pub fn compile(snapshot: &MeshSnapshot) -> Self {
        let mut warnings = Vec::new();
        if snapshot.mesh.mtls.mode != MtlsMode::Disable {
            warnings.push(format!(
                "spec.mtls.mode is {}, but mTLS (certificates over SDS) is not implemented yet: proxies talk plaintext",
                snapshot.mesh.mtls.mode.as_str()
            ));
        }
        let views = service_ports(snapshot, &mut warnings);
        let slices = slices_by_service(snapshot);
        let mut shared = TypedResources::default();
        for view in &views {
            shared.push(
                ResourceType::Cluster,
                Resource::new(view.cluster.clone(), &outbound_cluster(view)),
            );
            let key = (view.namespace.clone(), view.service.clone());
            let service_slices = slices.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            shared.push(
                ResourceType::Endpoint,
                Resource::new(view.cluster.clone(), &load_assignment(view, service_slices)),
            );
            if view.protocol.is_http() && !view.vips.is_empty() {
                let route = route_configuration(view);
                shared.push(
                    ResourceType::Route,
                    Resource::new(route.name.clone(), &route),
                );
            }
        }
        for cluster in special_clusters() {
            shared.push(
                ResourceType::Cluster,
                Resource::new(cluster.name.clone(), &cluster),
            );
        }
        let outbound =
            virtual_outbound(&views, snapshot.mesh.outbound_traffic_policy, &mut warnings);
        shared.push(
            ResourceType::Listener,
            Resource::new(outbound.name.clone(), &outbound),
        );
        shared.sort();

        let mut views_by_namespace: BTreeMap<String, Vec<ServicePortView>> = BTreeMap::new();
        for view in views {
            views_by_namespace
                .entry(view.namespace.clone())
                .or_default()
                .push(view);
        }
        let mut pods = BTreeMap::new();
        for pod in &snapshot.pods {
            if let (Some(name), Some(ns)) = (&pod.metadata.name, &pod.metadata.namespace) {
                pods.insert(
                    NodeId {
                        pod: name.clone(),
                        namespace: ns.clone(),
                    },
                    pod.clone(),
                );
            }
        }
        Self {
            shared: Arc::new(shared),
            views_by_namespace,
            pods,
            warnings,
        }
    }

    /// The Pod behind a node id, if the snapshot has it.
    pub fn pod(&self, node: &NodeId) -> Option<&Pod> {
        self.pods.get(node)
    }

    /// One proxy's resources: the shared ones plus its inbound side. Unknown node → empty config.
    pub fn proxy_config(&self, node: &NodeId) -> ProxyConfig {
        let Some(pod) = self.pods.get(node) else {
            return ProxyConfig {
                node: node.clone(),
                known: false,
                shared: Arc::default(),
                own: TypedResources::default(),
            };
        };
        let views = self
            .views_by_namespace
            .get(&node.namespace)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let pod_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        let ports = match &pod_ip {
            Some(_) => inbound_ports(pod, views.iter()),
            None => Vec::new(),
        };
        let mut own = TypedResources::default();
        if let Some(ip) = &pod_ip {
            for port in &ports {
                let cluster = inbound_cluster(ip, port);
                own.push(
                    ResourceType::Cluster,
                    Resource::new(cluster.name.clone(), &cluster),
                );
            }
        }
        let listener = virtual_inbound(&ports);
        own.push(
            ResourceType::Listener,
            Resource::new(listener.name.clone(), &listener),
        );
        own.sort();
        ProxyConfig {
            node: node.clone(),
            known: true,
            shared: Arc::clone(&self.shared),
            own,
        }
    }
}

impl ProxyConfig {
    /// Every resource of a type: the shared ones, then the proxy's own (each part sorted by name).
    pub fn resources(&self, ty: ResourceType) -> impl Iterator<Item = &Arc<Resource>> {
        self.shared.of(ty).iter().chain(self.own.of(ty))
    }

    pub fn get(&self, ty: ResourceType, name: &str) -> Option<&Arc<Resource>> {
        self.own.get(ty, name).or_else(|| self.shared.get(ty, name))
    }

    /// The version of a whole type for this proxy (SotW `version_info`, delta `system_version_info`):
    /// changes when any name or body does. O(1): each part's version is computed once.
    pub fn type_version(&self, ty: ResourceType) -> String {
        let (shared, own) = (
            self.shared.versions[ty.index()],
            self.own.versions[ty.index()],
        );
        format!(
            "{:016x}",
            shared.rotate_left(29) ^ own ^ fnv1a(ty.short().as_bytes())
        )
    }

    pub fn count(&self, ty: ResourceType) -> usize {
        self.shared.of(ty).len() + self.own.of(ty).len()
    }
}
