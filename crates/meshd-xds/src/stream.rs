//! What SotW and delta streams share: the proxy's identity and config, nonces, ACK/NACK bookkeeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{Stream, StreamExt};
use meshd_translate::{NodeId, ProxyConfig, ResourceType};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::auth::{Caller, authorize};
use crate::generation::Generation;
use crate::metrics::XdsMetrics;
use crate::registry::{ProxyRegistry, XdsApiKind};

/// Handles every stream task gets.
#[derive(Debug)]
pub(crate) struct Shared {
    pub generations: watch::Receiver<Arc<Generation>>,
    pub verdicts: watch::Receiver<meshd_translate::Verdicts>,
    pub mesh_mtls: watch::Receiver<Option<meshd_api::security::MeshMtlsStatus>>,
    pub registry: ProxyRegistry,
    pub metrics: XdsMetrics,
    pub cancel: CancellationToken,
    pub next_stream: AtomicU64,
    /// Admission for large pushes (a proxy's first config, SotW full sets); see [`LARGE_PUSHES`].
    pub large_pushes: Arc<tokio::sync::Semaphore>,
    /// Tests only: rewrites resources on the wire (see [`crate::test_hook`]).
    pub resource_hook: crate::test_hook::ResourceHook,
}

/// Large pushes in flight at once. When thousands of proxies connect together, each first config
/// would otherwise sit in its connection's buffers at the same time; the allocator keeps that peak
/// as resident memory long after. Small updates (an endpoint change) never wait for this.
pub(crate) const LARGE_PUSHES: usize = 64;

/// How long a large push holds its admission waiting for the proxy to take it; a slow proxy then
/// goes on without one, so it cannot hold up others.
const LARGE_PUSH_HOLD: std::time::Duration = std::time::Duration::from_millis(500);

impl Shared {
    pub async fn throttle_large_push(
        &self,
        large: bool,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if !large {
            return None;
        }
        Arc::clone(&self.large_pushes).acquire_owned().await.ok()
    }
}

/// Waits (bounded) until the transport has taken what was queued on the stream.
pub(crate) async fn wait_taken<T>(tx: &tokio::sync::mpsc::Sender<T>) {
    let _ = tokio::time::timeout(LARGE_PUSH_HOLD, tx.reserve()).await;
}

/// One open ADS stream, registered for as long as it lives.
pub(crate) struct StreamCtx {
    pub shared: Arc<Shared>,
    pub id: u64,
    pub node: NodeId,
    pub generations: watch::Receiver<Arc<Generation>>,
    pub generation: Arc<Generation>,
    /// Shared with what each type last sent (see delta's `TypeState`).
    pub config: Arc<ProxyConfig>,
    nonce: u64,
    /// Who opened the stream: checked against the node's Pod whenever the config moves on.
    caller: Caller,
}

/// The start every ADS stream shares, SotW and delta alike: wait for the first request (or the server's
/// shutdown), require its `node.id`, check that `caller` may speak for that node, and register the
/// proxy. `None` when the stream is over; a refusal has then been sent to the proxy. `request` names
/// the request type in the refusal.
pub(crate) async fn open_stream<Req, Resp>(
    shared: Arc<Shared>,
    caller: Caller,
    requests: &mut (impl Stream<Item = Result<Req, Status>> + Unpin),
    tx: &mpsc::Sender<Result<Resp, Status>>,
    api: XdsApiKind,
    request: &str,
    node_id: impl Fn(&Req) -> Option<String>,
) -> Option<(StreamCtx, Req)> {
    let cancel = shared.cancel.clone();
    let first = tokio::select! {
        () = cancel.cancelled() => return None,
        m = requests.next() => match m { Some(Ok(r)) => r, _ => return None },
    };
    let Some(node) = node_id(&first) else {
        let message = format!("the first {request} must carry node.id");
        let _ = tx.send(Err(Status::invalid_argument(message))).await;
        return None;
    };
    match StreamCtx::open(shared, &node, api, caller) {
        Ok(ctx) => Some((ctx, first)),
        Err(status) => {
            let _ = tx.send(Err(status)).await;
            None
        }
    }
}

impl StreamCtx {
    pub fn open(
        shared: Arc<Shared>,
        node_id: &str,
        api: XdsApiKind,
        caller: Caller,
    ) -> Result<Self, Status> {
        let node = NodeId::parse(node_id).map_err(|e| {
            tracing::warn!(node = node_id, error = %e, "ADS stream refused");
            Status::invalid_argument(format!("{e}; meshd expects node.id = <pod>.<namespace>"))
        })?;
        let mut generations = shared.generations.clone();
        let generation = Arc::clone(&generations.borrow_and_update());
        if let Err(status) = authorize(&caller, &node, &generation.mesh) {
            tracing::warn!(node = %node, reason = status.message(), "ADS stream refused: permission denied");
            shared.metrics.refused("permission_denied");
            return Err(status);
        }
        let id = shared.next_stream.fetch_add(1, Ordering::Relaxed);
        let config = Arc::new(generation.mesh.proxy_config(&node));
        let api_name = match api {
            XdsApiKind::Sotw => "sotw",
            XdsApiKind::Delta => "delta",
        };
        if config.known {
            tracing::info!(node = %node, stream = id, api = api_name, "proxy connected");
        } else {
            tracing::warn!(
                node = %node, stream = id, api = api_name,
                "proxy connected but no Pod {} exists in namespace {}; sending it an empty config until one does",
                node.pod, node.namespace
            );
        }
        shared
            .registry
            .connect(id, &node, api, &generation.mesh, config.known);
        shared.metrics.connected_proxies.inc();
        Ok(Self {
            shared,
            id,
            node,
            generations,
            generation,
            config,
            nonce: 0,
            caller,
        })
    }

    /// Takes the newest generation and moves this proxy's config to it: the shared part is a pointer
    /// copy, its own part is recomputed only when the generation's changes touch it. Returns what may
    /// differ from the config before; the refusal to end the stream with when the node's Pod (new, or
    /// made anew) runs as another service account than the stream's token proved.
    pub fn refresh(&mut self) -> Result<Scope, Status> {
        let generation = Arc::clone(&self.generations.borrow_and_update());
        if let Err(status) = authorize(&self.caller, &self.node, &generation.mesh) {
            tracing::warn!(node = %self.node, reason = status.message(), "ADS stream closed: permission denied");
            self.shared.metrics.refused("permission_denied");
            return Err(status);
        }
        let changes = generation.changes_since(self.generation.number);
        let own_changed = changes.is_none_or(|cs| cs.iter().any(|c| c.affects_proxy(&self.node)));
        let config = Arc::new(generation.mesh.refresh(&self.config, own_changed));
        if config.known != self.config.known {
            if config.known {
                tracing::info!(node = %self.node, "a Pod now matches this proxy; sending its config");
            } else {
                tracing::warn!(node = %self.node, "the Pod of this proxy is gone; sending an empty config");
            }
        }
        let scope = match changes {
            Some(changes) if config.known == self.config.known => {
                let mut names: [Vec<Arc<str>>; ResourceType::COUNT] = Default::default();
                for ty in ResourceType::ALL {
                    let list = &mut names[ty.index()];
                    for c in changes {
                        list.extend(c.names(ty).iter().cloned());
                    }
                    if own_changed {
                        let own = self.config.own(ty).iter().chain(config.own(ty));
                        list.extend(own.map(|r| Arc::clone(&r.name)));
                    }
                    list.sort();
                    list.dedup();
                }
                Scope::Names(names)
            }
            _ => Scope::Full,
        };
        self.shared
            .registry
            .refreshed(self.id, &self.node, &generation.mesh, config.known);
        self.generation = generation;
        self.config = config;
        Ok(scope)
    }

    pub fn next_nonce(&mut self) -> String {
        self.nonce += 1;
        format!("{}-{}", self.id, self.nonce)
    }

    /// Books a response: registry, counters and, for pushes caused by a mesh change, latency.
    pub fn record_sent(
        &self,
        ty: ResourceType,
        version: &str,
        nonce: &str,
        pushed_by_change: bool,
    ) {
        self.shared
            .metrics
            .pushes
            .get_or_create(&vec![("type", ty.short())])
            .inc();
        if pushed_by_change {
            self.shared
                .metrics
                .push_seconds
                .observe(self.generation.changed_at.elapsed().as_secs_f64());
        }
        self.shared.registry.sent(self.id, ty, version, nonce);
    }

    pub fn record_ack(&self, ty: ResourceType, nonce: &str) {
        tracing::debug!(node = %self.node, r#type = ty.short(), nonce, "ACK");
        self.shared.registry.ack(self.id, ty, nonce);
    }

    /// A NACK is logged with Envoy's reason and counted; the rejected config is not sent again (only a
    /// later change produces a new response), so a bad resource cannot cause a push loop.
    pub fn record_nack(&self, ty: ResourceType, nonce: &str, detail: &str) {
        tracing::warn!(node = %self.node, r#type = ty.short(), nonce, error = detail, "proxy rejected its config (NACK)");
        self.shared
            .metrics
            .nacks
            .get_or_create(&vec![("type", ty.short())])
            .inc();
        self.shared.registry.nack(self.id, ty, nonce, detail);
    }
}

impl Drop for StreamCtx {
    fn drop(&mut self) {
        self.shared.metrics.connected_proxies.dec();
        self.shared.registry.remove(self.id);
        tracing::info!(node = %self.node, stream = self.id, "proxy disconnected");
    }
}

/// What may have changed in a proxy's config between two generations.
pub(crate) enum Scope {
    /// Only resources of these names (per type, sorted): the others are the same objects as before.
    Names([Vec<Arc<str>>; ResourceType::COUNT]),
    /// Anything: compare the whole config (the stream fell behind, or the proxy's Pod came or went).
    Full,
}

impl Scope {
    /// The names of a type that may differ; `None`: any.
    pub fn names(&self, ty: ResourceType) -> Option<&[Arc<str>]> {
        match self {
            Self::Names(names) => Some(&names[ty.index()]),
            Self::Full => None,
        }
    }
}

/// Version of a set of resources: stable, changes when any name or version does.
pub(crate) fn set_version<'a>(items: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, version) in items {
        for b in name.bytes().chain([0]).chain(version.bytes()).chain([0xff]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}
