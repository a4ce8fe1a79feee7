//! Who is connected and whether each proxy has ACKed what it was sent: for `meshd proxy-status`,
//! `status.connectedProxies` and tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use meshd_translate::ResourceType;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdsApiKind {
    Sotw,
    Delta,
}

/// One xDS type on one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TypeStatus {
    /// Version of the last response sent, and its nonce.
    pub sent_version: String,
    pub sent_nonce: String,
    /// Nonce of the last response the proxy ACKed.
    pub acked_nonce: String,
    /// The proxy's error for the last NACKed response, until a later response is ACKed.
    pub last_nack: Option<String>,
    pub nacks: u64,
}

impl TypeStatus {
    pub fn in_sync(&self) -> bool {
        self.sent_nonce == self.acked_nonce && self.last_nack.is_none()
    }
}

/// One connected proxy (one ADS stream).
#[derive(Clone, Debug)]
pub struct ProxyStatus {
    pub stream_id: u64,
    /// `<pod>.<namespace>` as the proxy sent it.
    pub node_id: String,
    /// Whether a Pod in the snapshot matches the node id.
    pub known: bool,
    pub api: XdsApiKind,
    pub connected_at: SystemTime,
    pub generation: u64,
    pub types: BTreeMap<ResourceType, TypeStatus>,
}

impl ProxyStatus {
    /// Everything sent was ACKed and nothing is NACKed.
    pub fn in_sync(&self) -> bool {
        self.types.values().all(TypeStatus::in_sync)
    }
}

/// Shared, cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ProxyRegistry {
    inner: Arc<Mutex<BTreeMap<u64, ProxyStatus>>>,
}

impl ProxyRegistry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, ProxyStatus>> {
        // A panic while holding this lock leaves plain data behind; keep serving it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// All connected proxies, by stream id.
    pub fn list(&self) -> Vec<ProxyStatus> {
        self.lock().values().cloned().collect()
    }

    pub fn connected(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn insert(&self, status: ProxyStatus) {
        self.lock().insert(status.stream_id, status);
    }

    pub(crate) fn update(&self, stream_id: u64, f: impl FnOnce(&mut ProxyStatus)) {
        if let Some(s) = self.lock().get_mut(&stream_id) {
            f(s);
        }
    }

    pub(crate) fn remove(&self, stream_id: u64) {
        self.lock().remove(&stream_id);
    }
}
