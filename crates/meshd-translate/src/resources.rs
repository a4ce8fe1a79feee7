//! Encoded Envoy resources and the sets they are kept in.

use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::google::protobuf::Any;
use prost::Name;

use crate::envoy::pack;

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
        let body = pack(message);
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
