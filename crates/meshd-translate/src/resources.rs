//! Encoded Envoy resources and the sets they are kept in.

use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::EdsClusterConfig;
use envoy_types::pb::envoy::config::core::v3::ConfigSource;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};

use crate::envoy::{pack, type_url};

/// The xDS resource types, in the order they are pushed: clusters before their endpoints, secrets
/// (SDS, a gateway's certificates) before the listeners that name them, listeners before their routes
/// (Envoy's warming order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Cluster,
    Endpoint,
    Secret,
    Listener,
    Route,
}

impl ResourceType {
    /// How many types there are: the size of per-type arrays.
    pub const COUNT: usize = 5;

    pub const ALL: [ResourceType; Self::COUNT] = [
        Self::Cluster,
        Self::Endpoint,
        Self::Secret,
        Self::Listener,
        Self::Route,
    ];

    pub fn type_url(self) -> String {
        match self {
            Self::Cluster => Cluster::type_url(),
            Self::Endpoint => ClusterLoadAssignment::type_url(),
            Self::Secret => Secret::type_url(),
            Self::Listener => Listener::type_url(),
            Self::Route => RouteConfiguration::type_url(),
        }
    }

    pub fn from_type_url(url: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// `cds`, `eds`, `sds`, `lds`, `rds`: for logs and metric labels.
    pub fn short(self) -> &'static str {
        match self {
            Self::Cluster => "cds",
            Self::Endpoint => "eds",
            Self::Secret => "sds",
            Self::Listener => "lds",
            Self::Route => "rds",
        }
    }

    /// Whether Envoy subscribes to all of them (LDS, CDS) rather than by name (EDS, SDS, RDS).
    pub fn is_wildcard(self) -> bool {
        matches!(self, Self::Cluster | Self::Listener)
    }

    pub fn index(self) -> usize {
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
    pub(crate) fn new<M: prost::Message + Name>(name: String, message: &M) -> Arc<Self> {
        Self::packed(name, pack(message))
    }

    fn packed(name: String, body: Any) -> Arc<Self> {
        let body_hash = hash_bytes(&body.value);
        Arc::new(Self {
            name_hash: fnv1a(name.as_bytes()),
            name: name.into(),
            body,
            body_hash,
            version: meshd_api::text::hex16(body_hash),
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

    /// Same name and bytes.
    pub fn same(&self, other: &Resource) -> bool {
        self.name_hash == other.name_hash
            && self.body_hash == other.body_hash
            && self.name == other.name
            && self.body.value == other.body.value
    }

    /// This resource's share of its type's version: order-independent, so a set's version is the XOR
    /// of its members' and one change updates it in O(1).
    fn version_share(&self) -> u64 {
        mix(self.name_hash ^ self.body_hash.rotate_left(17))
    }
}

/// A cluster encoded once without its name and its EDS service name, for the clusters that differ
/// from it in those two fields alone: a Service port's cluster and its subset clusters that have no
/// policy or mTLS of their own (the subset's pods differ, which only its load assignment says).
/// Each is its two fields encoded with these bytes after them, instead of a whole cluster encoded
/// again (a third of a mesh's clusters' encoding at 1,000 Services with two subsets each). Protobuf
/// takes fields in any order, and neither field is in these bytes, so none is repeated (a repeated
/// message field would be merged, not replaced).
pub(crate) struct RenamedClusters {
    rest: Vec<u8>,
    eds_config: Option<ConfigSource>,
}

impl RenamedClusters {
    pub(crate) fn new(cluster: &mut Cluster) -> Self {
        // Taken out for the encoding and put back: no clone of the whole cluster.
        let name = std::mem::take(&mut cluster.name);
        let eds = cluster.eds_cluster_config.take();
        let rest = cluster.encode_to_vec();
        cluster.name = name;
        let eds_config = eds.as_ref().and_then(|e| e.eds_config.clone());
        cluster.eds_cluster_config = eds;
        Self { rest, eds_config }
    }

    /// The cluster named `name`, with `name` as its EDS service name too (as `rename_cluster`).
    pub(crate) fn named(&self, name: &str) -> Arc<Resource> {
        use prost::encoding::{message, string};
        let eds = EdsClusterConfig {
            eds_config: self.eds_config.clone(),
            service_name: name.to_string(),
        };
        let mut value = Vec::with_capacity(
            string::encoded_len(NAME, &eds.service_name)
                + message::encoded_len(EDS_CLUSTER_CONFIG, &eds)
                + self.rest.len(),
        );
        string::encode(NAME, &eds.service_name, &mut value);
        message::encode(EDS_CLUSTER_CONFIG, &eds, &mut value);
        value.extend_from_slice(&self.rest);
        let body = Any {
            type_url: type_url::<Cluster>(),
            value,
        };
        Resource::packed(eds.service_name, body)
    }
}

/// `Cluster`'s field numbers for `name` and `eds_cluster_config` (envoy/config/cluster/v3/cluster.proto).
const NAME: u32 = 1;
const EDS_CLUSTER_CONFIG: u32 = 3;

/// FNV-1a: stable across runs and platforms (unlike `std`'s hasher), fast enough for MBs of config.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A resource body's hash: FNV-1a's scheme eight bytes at a time, then mixed. Stable across runs and
/// platforms; several times faster than byte-wise FNV over the megabytes a large mesh encodes to.
fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of eight"));
        h = (h ^ word)
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(23);
    }
    for b in chunks.remainder() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// splitmix64's finaliser: spreads a hash so that XORs of many do not cancel by accident.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Resources of every type by name, with a version per type. A persistent map: cloning it (every
/// compiled generation, every proxy's config) copies a pointer, and one change copies a path of the
/// tree, not the set.
#[derive(Clone, Debug, Default)]
pub struct ResourceSet {
    by_type: [imbl::OrdMap<Arc<str>, Arc<Resource>>; ResourceType::COUNT],
    versions: [u64; ResourceType::COUNT],
}

impl ResourceSet {
    /// Every resource of a type, sorted by name.
    pub fn of(&self, ty: ResourceType) -> impl Iterator<Item = &Arc<Resource>> {
        self.by_type[ty.index()].values()
    }

    pub fn get(&self, ty: ResourceType, name: &str) -> Option<&Arc<Resource>> {
        self.by_type[ty.index()].get(name)
    }

    pub fn len(&self, ty: ResourceType) -> usize {
        self.by_type[ty.index()].len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_type.iter().all(imbl::OrdMap::is_empty)
    }

    pub fn version(&self, ty: ResourceType) -> u64 {
        self.versions[ty.index()]
    }

    /// Adds or replaces a resource; whether anything changed (same bytes under the same name: no).
    pub(crate) fn put(&mut self, ty: ResourceType, resource: Arc<Resource>) -> bool {
        let map = &mut self.by_type[ty.index()];
        let share = resource.version_share();
        match map.insert(Arc::clone(&resource.name), resource) {
            // Unchanged: keep the old allocation, which proxies may already hold.
            Some(old) if old.same(&map[&*old.name]) => {
                map.insert(Arc::clone(&old.name), old);
                false
            }
            old => {
                self.versions[ty.index()] ^= share ^ old.map_or(0, |o| o.version_share());
                true
            }
        }
    }

    /// Removes a resource; whether it was there.
    pub(crate) fn remove(&mut self, ty: ResourceType, name: &str) -> bool {
        match self.by_type[ty.index()].remove(name) {
            Some(old) => {
                self.versions[ty.index()] ^= old.version_share();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::cluster::v3::{CircuitBreakers, OutlierDetection, cluster};

    use super::*;
    use crate::envoy::{ads, seconds};

    fn port_cluster(name: &str) -> Cluster {
        Cluster {
            name: name.into(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32,
            )),
            eds_cluster_config: Some(EdsClusterConfig {
                eds_config: Some(ads()),
                service_name: name.into(),
            }),
            connect_timeout: Some(seconds(10)),
            lb_policy: cluster::LbPolicy::LeastRequest as i32,
            circuit_breakers: Some(CircuitBreakers {
                thresholds: vec![Default::default()],
                ..Default::default()
            }),
            outlier_detection: Some(OutlierDetection {
                consecutive_5xx: Some(envoy_types::pb::google::protobuf::UInt32Value { value: 5 }),
                ..Default::default()
            }),
            typed_extension_protocol_options: [("options".to_string(), pack(&seconds(1)))].into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_renamed_cluster_decodes_to_the_cluster_built_under_that_name() {
        let port = "outbound|80||svc.ns.svc.cluster.local";
        let subset = "outbound|80|v1|svc.ns.svc.cluster.local";
        let mut cluster = port_cluster(port);
        let renamed = RenamedClusters::new(&mut cluster);
        assert_eq!(
            cluster,
            port_cluster(port),
            "the port's cluster is left as it was"
        );
        for name in [port, subset] {
            let spliced = renamed.named(name);
            assert_eq!(&*spliced.name, name);
            assert_eq!(spliced.body.type_url, Cluster::type_url());
            let decoded = Cluster::decode(spliced.body.value.as_slice()).unwrap();
            assert_eq!(decoded, port_cluster(name));
            // The same fields, each once: as long as the message encoded whole.
            assert_eq!(spliced.body.value.len(), port_cluster(name).encoded_len());
        }
        assert_ne!(
            renamed.named(port).body_hash,
            renamed.named(subset).body_hash
        );
    }
}
