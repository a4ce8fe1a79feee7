//! Who is connected and what each proxy was sent and answered, in the `/debug/syncz` contract's own
//! types (`meshd_api::syncz`): for `meshd proxy-status`, `status.connectedProxies`, NACK Events and tests.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use meshd_api::syncz::{
    ControlPlane, NackNotice, ProxySync, SyncReport, Timestamp, TypeSync, XdsType,
};
use meshd_translate::{CompiledMesh, NodeId, ResourceType};
use tokio::sync::broadcast;

/// Which ADS protocol a stream speaks: the contract's `delta` / `sotw`.
pub use meshd_api::syncz::XdsApi as XdsApiKind;

/// Responses per type whose versions a stream remembers, for answers that name an older nonce (a
/// delta proxy may NACK one chunk of an update while the next is on its way).
const RECENT_NONCES: usize = 16;

/// NACK notices queued for a slow subscriber before the oldest are dropped.
const NACK_QUEUE: usize = 256;

/// The contract's name for a type meshd translates.
pub(crate) fn xds_type(ty: ResourceType) -> XdsType {
    match ty {
        ResourceType::Cluster => XdsType::Cds,
        ResourceType::Endpoint => XdsType::Eds,
        ResourceType::Secret => XdsType::Sds,
        ResourceType::Listener => XdsType::Lds,
        ResourceType::Route => XdsType::Rds,
    }
}

/// One stream: its record as `/debug/syncz` shows it, and what it takes to keep that record.
struct Entry {
    sync: ProxySync,
    /// Per type, the last responses sent: (nonce, version), oldest first.
    recent: BTreeMap<XdsType, VecDeque<(String, String)>>,
    /// The types whose last answer was a NACK: an episode is open, further NACKs are not news.
    nacking: BTreeSet<XdsType>,
}

impl Entry {
    fn version_of(&self, ty: XdsType, nonce: &str) -> String {
        self.recent
            .get(&ty)
            .and_then(|r| r.iter().rev().find(|(n, _)| n == nonce))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    fn type_sync(&mut self, ty: XdsType) -> &mut TypeSync {
        self.sync.types.entry(ty).or_default()
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.sync.fmt(f)
    }
}

/// Shared, cheap to clone.
#[derive(Clone, Debug)]
pub struct ProxyRegistry {
    inner: Arc<Mutex<BTreeMap<u64, Entry>>>,
    /// The Mesh a known proxy without a `meshd.io/mesh` label belongs to: the one translated.
    mesh: Arc<str>,
    nacks: broadcast::Sender<NackNotice>,
}

impl ProxyRegistry {
    pub(crate) fn new(mesh: &str) -> Self {
        Self {
            inner: Arc::default(),
            mesh: mesh.into(),
            nacks: broadcast::channel(NACK_QUEUE).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        // A panic while holding this lock leaves plain data behind; keep serving it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every open stream's record, in the order the streams opened.
    pub fn list(&self) -> Vec<ProxySync> {
        self.lock().values().map(|e| e.sync.clone()).collect()
    }

    /// This replica's `/debug/syncz` answer, as of now.
    pub fn report(&self, control_plane: &ControlPlane) -> SyncReport {
        SyncReport {
            control_plane: control_plane.clone(),
            generated_at: Timestamp::now(),
            proxies: self.list(),
        }
    }

    /// Open ADS streams (what `status.connectedProxies` sums over the replicas).
    pub fn connected(&self) -> usize {
        self.lock().len()
    }

    /// The NACKs that begin an episode (see [`NackNotice`]), from now on. A subscriber that falls more
    /// than 256 behind loses the oldest.
    pub fn subscribe_nacks(&self) -> broadcast::Receiver<NackNotice> {
        self.nacks.subscribe()
    }

    /// The proxy's Mesh: its Pod's label, else the Mesh translated; unknown without a Pod.
    fn mesh_of(&self, mesh: &CompiledMesh, node: &NodeId) -> Option<String> {
        let workload = mesh.workload(node)?;
        Some(
            workload
                .mesh
                .clone()
                .unwrap_or_else(|| self.mesh.to_string()),
        )
    }

    pub(crate) fn connect(
        &self,
        stream: u64,
        node: &NodeId,
        api: XdsApiKind,
        mesh: &CompiledMesh,
        pod_found: bool,
    ) {
        let sync = ProxySync {
            node_id: node.to_string(),
            pod: node.pod.clone(),
            namespace: node.namespace.clone(),
            mesh: self.mesh_of(mesh, node),
            pod_found,
            api,
            connected_at: Timestamp::now(),
            types: BTreeMap::new(),
        };
        let entry = Entry {
            sync,
            recent: BTreeMap::new(),
            nacking: BTreeSet::new(),
        };
        self.lock().insert(stream, entry);
    }

    /// The stream moved to a new generation: its Pod may have come, gone or changed Mesh.
    pub(crate) fn refreshed(
        &self,
        stream: u64,
        node: &NodeId,
        mesh: &CompiledMesh,
        pod_found: bool,
    ) {
        let name = self.mesh_of(mesh, node);
        if let Some(e) = self.lock().get_mut(&stream) {
            e.sync.pod_found = pod_found;
            e.sync.mesh = name;
        }
    }

    pub(crate) fn sent(&self, stream: u64, ty: ResourceType, version: &str, nonce: &str) {
        let ty = xds_type(ty);
        let mut streams = self.lock();
        let Some(e) = streams.get_mut(&stream) else {
            return;
        };
        e.type_sync(ty)
            .record_sent(version, nonce, Timestamp::now());
        let recent = e.recent.entry(ty).or_default();
        if recent.len() == RECENT_NONCES {
            recent.pop_front();
        }
        recent.push_back((nonce.to_string(), version.to_string()));
    }

    /// The proxy applied the response `nonce`.
    pub(crate) fn ack(&self, stream: u64, ty: ResourceType, nonce: &str) {
        let ty = xds_type(ty);
        let mut streams = self.lock();
        let Some(e) = streams.get_mut(&stream) else {
            return;
        };
        let version = e.version_of(ty, nonce);
        e.type_sync(ty)
            .record_ack(&version, nonce, Timestamp::now());
        e.nacking.remove(&ty);
    }

    /// The proxy rejected the response `nonce` with `detail`. The first NACK since the type was last
    /// ACKed on this stream is published to [`ProxyRegistry::subscribe_nacks`].
    pub(crate) fn nack(&self, stream: u64, ty: ResourceType, nonce: &str, detail: &str) {
        let ty = xds_type(ty);
        let notice = {
            let mut streams = self.lock();
            let Some(e) = streams.get_mut(&stream) else {
                return;
            };
            let version = e.version_of(ty, nonce);
            let t = e.type_sync(ty);
            t.record_nack(&version, nonce, detail, Timestamp::now());
            let nack = t.last_nack.clone();
            match nack {
                Some(nack) if e.nacking.insert(ty) => Some(NackNotice {
                    node_id: e.sync.node_id.clone(),
                    pod: e.sync.pod.clone(),
                    namespace: e.sync.namespace.clone(),
                    pod_found: e.sync.pod_found,
                    xds_type: ty,
                    nack,
                }),
                _ => None,
            }
        };
        // No subscriber (file-fed mode): nothing to tell.
        if let Some(notice) = notice {
            let _ = self.nacks.send(notice);
        }
    }

    pub(crate) fn remove(&self, stream: u64) {
        self.lock().remove(&stream);
    }
}
