//! Delta ADS: only changed resources and the names of removed ones are sent.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as XdsResource,
};
use futures::StreamExt;
use meshd_translate::{Resource, ResourceType, fnv1a};
use tokio::sync::mpsc;
use tonic::Status;

use crate::registry::XdsApiKind;
use crate::stream::{Scope, Shared, StreamCtx, open_stream};

type Tx = mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>;

/// Resource bytes per delta response before the rest goes into another one.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Keys are already FNV hashes of names: no need to hash them again.
#[derive(Default)]
struct NameHashHasher(u64);

impl Hasher for NameHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv1a(bytes);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Per type and proxy. Kept small on purpose (thousands of streams × thousands of resources): names
/// are shared with the compiled config, and what the proxy holds is a pointer per resource.
#[derive(Default)]
struct TypeState {
    /// Subscribed to everything of the type (LDS/CDS with no names or `*`).
    wildcard: bool,
    /// Names subscribed explicitly.
    names: Names,
    /// What the proxy holds (sent by us, or declared on reconnect), by name hash.
    held: Held,
    /// Nonce of the last response, to match ACKs and NACKs.
    last_nonce: Option<String>,
}

/// What a proxy holds of one type: a pointer per resource, sorted by name hash. A sorted `Vec` costs
/// 8 bytes per resource where a hash map cost ~17 plus spare buckets; with thousands of streams that
/// was the largest part of meshd's own per-stream state.
#[derive(Default)]
struct Held(Vec<Arc<Resource>>);

impl Held {
    fn find(&self, hash: u64) -> Result<usize, usize> {
        self.0.binary_search_by_key(&hash, |r| r.name_hash)
    }
    fn get(&self, hash: &u64) -> Option<&Arc<Resource>> {
        self.find(*hash).ok().map(|i| &self.0[i])
    }
    fn insert(&mut self, hash: u64, r: Arc<Resource>) {
        match self.find(hash) {
            Ok(i) => self.0[i] = r,
            Err(i) => self.0.insert(i, r),
        }
    }
    fn remove(&mut self, hash: &u64) {
        if let Ok(i) = self.find(*hash) {
            self.0.remove(i);
        }
    }
    fn iter(&self) -> impl Iterator<Item = (u64, &Arc<Resource>)> {
        self.0.iter().map(|r| (r.name_hash, r))
    }
}

/// Names subscribed explicitly, sorted: 16 bytes per name (shared with the config) instead of a
/// B-tree's nodes.
#[derive(Default)]
struct Names(Vec<Arc<str>>);

impl Names {
    /// Whether the name is new.
    fn insert(&mut self, name: Arc<str>) -> bool {
        match self.0.binary_search_by(|n| (**n).cmp(&*name)) {
            Ok(_) => false,
            Err(i) => {
                self.0.insert(i, name);
                true
            }
        }
    }
    fn remove(&mut self, name: &str) {
        if let Ok(i) = self.0.binary_search_by(|n| (**n).cmp(name)) {
            self.0.remove(i);
        }
    }
    fn contains(&self, name: &str) -> bool {
        self.0.binary_search_by(|n| (**n).cmp(name)).is_ok()
    }
    fn iter(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter()
    }
}

/// Serves one delta stream until the proxy leaves or the server shuts down.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    mut requests: impl futures::Stream<Item = Result<DeltaDiscoveryRequest, Status>> + Unpin,
    tx: Tx,
) {
    let cancel = shared.cancel.clone();
    let Some((mut ctx, first)) = open_stream(
        shared,
        &mut requests,
        &tx,
        XdsApiKind::Delta,
        "DeltaDiscoveryRequest",
        |r: &DeltaDiscoveryRequest| r.node.as_ref().map(|n| n.id.clone()),
    )
    .await
    else {
        return;
    };
    let mut types: BTreeMap<ResourceType, TypeState> = BTreeMap::new();
    if handle(&mut ctx, &mut types, first, &tx).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            m = requests.next() => match m {
                Some(Ok(req)) => if handle(&mut ctx, &mut types, req, &tx).await.is_err() { return },
                None => return,
                Some(Err(status)) => {
                    tracing::debug!(node = %ctx.node, %status, "delta ADS stream ended");
                    return;
                }
            },
            changed = ctx.generations.changed() => {
                if changed.is_err() { return }
                let scope = ctx.refresh();
                for ty in ResourceType::ALL {
                    if let Some(state) = types.get_mut(&ty)
                        && respond(&mut ctx, ty, state, &tx, false, Some(&scope)).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    }
}

async fn handle(
    ctx: &mut StreamCtx,
    types: &mut BTreeMap<ResourceType, TypeState>,
    req: DeltaDiscoveryRequest,
    tx: &Tx,
) -> Result<(), ()> {
    let Some(ty) = ResourceType::from_type_url(&req.type_url) else {
        tracing::debug!(node = %ctx.node, type_url = req.type_url, "request for a type meshd does not serve");
        return Ok(());
    };
    let first = !types.contains_key(&ty);
    let state = types.entry(ty).or_default();
    if first {
        state.wildcard = ty.is_wildcard()
            && (req.resource_names_subscribe.is_empty()
                || req.resource_names_subscribe.iter().any(|n| n == "*"));
        // A reconnecting proxy says what it already holds; unchanged resources are not sent again.
        for (name, version) in &req.initial_resource_versions {
            state
                .held
                .insert(fnv1a(name.as_bytes()), Resource::declared(name, version));
        }
    }
    // A NACK of any of our responses (an update may span several) is recorded; an ACK counts once it
    // is for the newest.
    match &req.error_detail {
        Some(err) if !req.response_nonce.is_empty() => {
            ctx.record_nack(ty, &req.response_nonce, &err.message)
        }
        None if state.last_nonce.as_deref() == Some(req.response_nonce.as_str()) => {
            ctx.record_ack(ty, &req.response_nonce)
        }
        _ => {}
    }
    let mut subscription_changed = false;
    for name in req.resource_names_subscribe {
        if name == "*" {
            subscription_changed |= !state.wildcard;
            state.wildcard = true;
        } else {
            // Share the config's copy of the name when there is one.
            let name = ctx
                .config
                .get(ty, &name)
                .map(|r| Arc::clone(&r.name))
                .unwrap_or_else(|| name.into());
            subscription_changed |= state.names.insert(name);
        }
    }
    for name in req.resource_names_unsubscribe {
        if name == "*" {
            state.wildcard = false;
        } else {
            state.names.remove(name.as_str());
        }
        state.held.remove(&fnv1a(name.as_bytes())); // the proxy drops what it unsubscribes from
    }
    if first || subscription_changed {
        respond(ctx, ty, state, tx, first, None).await?;
    }
    Ok(())
}

/// The proxy's config against what it holds, resource by resource: (to send, names to remove).
fn diff_all(
    ctx: &StreamCtx,
    state: &TypeState,
    ty: ResourceType,
) -> (Vec<Arc<Resource>>, Vec<String>) {
    let desired: Vec<&Arc<Resource>> = if state.wildcard {
        ctx.config.resources(ty).collect()
    } else {
        state
            .names
            .iter()
            .filter_map(|n| ctx.config.get(ty, n))
            .collect()
    };
    let mut wanted: HashSet<u64, BuildHasherDefault<NameHashHasher>> = HashSet::default();
    wanted.reserve(desired.len());
    let mut changed: Vec<Arc<Resource>> = Vec::new();
    for r in desired {
        wanted.insert(r.name_hash);
        let held = state.held.get(&r.name_hash);
        if !held.is_some_and(|h| Arc::ptr_eq(h, r) || h.version == r.version) {
            changed.push(Arc::clone(r));
        }
    }
    let mut removed: Vec<String> = state
        .held
        .iter()
        .filter(|(hash, _)| !wanted.contains(hash))
        .map(|(_, r)| r.name.to_string())
        .collect();
    removed.sort();
    (changed, removed)
}

/// The same, for the named resources only (a generation's changes).
fn diff_names(
    ctx: &StreamCtx,
    state: &TypeState,
    ty: ResourceType,
    names: &[Arc<str>],
) -> (Vec<Arc<Resource>>, Vec<String>) {
    let mut changed = Vec::new();
    let mut removed = Vec::new();
    for name in names {
        let wanted = state.wildcard || state.names.contains(name);
        let desired = if wanted {
            ctx.config.get(ty, name)
        } else {
            None
        };
        let held = state.held.get(&fnv1a(name.as_bytes()));
        match (desired, held) {
            (Some(r), held) => {
                if !held.is_some_and(|h| Arc::ptr_eq(h, r) || h.version == r.version) {
                    changed.push(Arc::clone(r));
                }
            }
            (None, Some(h)) => removed.push(h.name.to_string()),
            (None, None) => {}
        }
    }
    (changed, removed)
}

/// Sends what changed for this type since the proxy last heard: new or changed resources, and the names
/// of ones it holds that are gone. Nothing to say → nothing sent (unless `force`: first answer).
/// `by_change`: the generation's [`Scope`], whose names are the only ones looked at when it has them.
async fn respond(
    ctx: &mut StreamCtx,
    ty: ResourceType,
    state: &mut TypeState,
    tx: &Tx,
    force: bool,
    by_change: Option<&Scope>,
) -> Result<(), ()> {
    let (changed, removed) = match by_change.and_then(|s| s.names(ty)) {
        Some(names) => diff_names(ctx, state, ty, names),
        None => diff_all(ctx, state, ty),
    };
    let by_change = by_change.is_some();
    if changed.is_empty() && removed.is_empty() && !force {
        return Ok(());
    }
    let version = ctx.config.type_version(ty);
    for name in &removed {
        state.held.remove(&fnv1a(name.as_bytes()));
    }
    // Large updates (a proxy's first config) go out in chunks: each response is built only when the
    // stream can take it, so memory per stream stays near one chunk, not the whole config.
    let mut chunks: Vec<Vec<Arc<Resource>>> = vec![Vec::new()];
    let mut bytes = 0;
    for r in changed {
        if bytes + r.body.value.len() > MAX_RESPONSE_BYTES
            && !chunks.last().is_some_and(Vec::is_empty)
        {
            chunks.push(Vec::new());
            bytes = 0;
        }
        bytes += r.body.value.len();
        chunks.last_mut().expect("chunks starts non-empty").push(r);
    }
    let last = chunks.len() - 1;
    let mut removed = Some(removed);
    let _throttle = ctx.shared.throttle_large_push(last > 0).await;
    for (i, chunk) in chunks.into_iter().enumerate() {
        let permit = tx.reserve().await.map_err(|_| ())?;
        let resources = chunk
            .iter()
            .map(|r| XdsResource {
                name: r.name.to_string(),
                version: r.version.clone(),
                resource: Some(r.body.clone()),
                ..Default::default()
            })
            .collect();
        let nonce = ctx.next_nonce();
        permit.send(Ok(DeltaDiscoveryResponse {
            system_version_info: version.clone(),
            resources,
            type_url: ty.type_url(),
            removed_resources: if i == last {
                removed.take().unwrap_or_default()
            } else {
                Vec::new()
            },
            nonce: nonce.clone(),
            ..Default::default()
        }));
        for r in chunk {
            state.held.insert(r.name_hash, r);
        }
        ctx.record_sent(ty, &version, &nonce, by_change && i == last);
        state.last_nonce = Some(nonce);
    }
    crate::stream::wait_taken(tx).await;
    Ok(())
}
