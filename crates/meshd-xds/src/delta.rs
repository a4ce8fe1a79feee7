//! Delta ADS: only changed resources and the names of removed ones are sent.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as XdsResource,
};
use futures::StreamExt;
use meshd_translate::{ProxyConfig, Resource, ResourceType, fnv1a};
use tokio::sync::mpsc;
use tonic::Status;

use crate::auth::Caller;
use crate::registry::XdsApiKind;
use crate::stream::{Scope, Shared, StreamCtx, open_stream};

type Tx = mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>;

/// Resource bytes per delta response before the rest goes into another one.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Per type and proxy. Kept small on purpose (thousands of streams × thousands of resources): what
/// the proxy holds is, after every complete answer, exactly this stream's config of that moment within
/// the subscription, so it is kept as a pointer to that config (`sent`) plus the few differences
/// (`overrides`), not a pointer per resource; and the explicit subscription is interned, shared by every
/// stream that subscribes to the same names (every proxy of a namespace, typically).
#[derive(Default)]
struct TypeState {
    /// Subscribed to everything of the type (LDS/CDS with no names or `*`).
    wildcard: bool,
    /// Names subscribed explicitly.
    names: Names,
    /// The config of the last complete answer: within the subscription, the proxy holds its resources.
    sent: Option<Arc<ProxyConfig>>,
    /// Where the proxy holds something else (declared on reconnect, sent in an unfinished answer) or
    /// nothing (subscribed since), by name hash.
    overrides: Overrides,
    /// Nonce of the last response, to match ACKs and NACKs.
    last_nonce: Option<String>,
}

impl TypeState {
    fn in_scope(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// What the proxy holds under a name.
    fn held(&self, ty: ResourceType, name: &str, hash: u64) -> Option<&Arc<Resource>> {
        if let Some(o) = self.overrides.get(hash) {
            return o.as_ref();
        }
        if !self.in_scope(name) {
            return None;
        }
        self.sent.as_ref()?.get(ty, name)
    }

    /// Every name the proxy holds something under.
    fn held_names(&self, ty: ResourceType) -> BTreeSet<Arc<str>> {
        let mut out: BTreeSet<Arc<str>> = BTreeSet::new();
        if let Some(sent) = &self.sent {
            let in_sent: Vec<&Arc<Resource>> = if self.wildcard {
                sent.resources(ty).collect()
            } else {
                self.names.iter().filter_map(|n| sent.get(ty, n)).collect()
            };
            for r in in_sent {
                if self.overrides.get(r.name_hash).is_none() {
                    out.insert(Arc::clone(&r.name));
                }
            }
        }
        for r in self.overrides.held() {
            out.insert(Arc::clone(&r.name));
        }
        out
    }

    /// The answer was complete: the proxy holds `config` within the subscription.
    fn settled(&mut self, config: &Arc<ProxyConfig>) {
        self.sent = Some(Arc::clone(config));
        self.overrides = Overrides::default();
    }

    /// Makes what the proxy holds explicit (before the scope's meaning changes).
    fn materialize(&mut self, ty: ResourceType) {
        let names = self.held_names(ty);
        let mut overrides = Overrides::default();
        for name in names {
            let hash = fnv1a(name.as_bytes());
            overrides.set(hash, self.held(ty, &name, hash).cloned());
        }
        self.sent = None;
        self.overrides = overrides;
    }
}

/// Sorted by name hash; `None`: holds nothing under that name.
#[derive(Default)]
struct Overrides(Vec<(u64, Option<Arc<Resource>>)>);

impl Overrides {
    fn find(&self, hash: u64) -> Result<usize, usize> {
        self.0.binary_search_by_key(&hash, |(h, _)| *h)
    }
    fn get(&self, hash: u64) -> Option<&Option<Arc<Resource>>> {
        self.find(hash).ok().map(|i| &self.0[i].1)
    }
    fn set(&mut self, hash: u64, r: Option<Arc<Resource>>) {
        match self.find(hash) {
            Ok(i) => self.0[i].1 = r,
            Err(i) => self.0.insert(i, (hash, r)),
        }
    }
    fn remove(&mut self, hash: u64) {
        if let Ok(i) = self.find(hash) {
            self.0.remove(i);
        }
    }
    fn held(&self) -> impl Iterator<Item = &Arc<Resource>> {
        self.0.iter().filter_map(|(_, r)| r.as_ref())
    }
}

/// Names subscribed explicitly, sorted, interned: streams with the same subscription share one list.
#[derive(Default)]
struct Names(Option<Arc<[Arc<str>]>>);

impl Names {
    fn list(&self) -> &[Arc<str>] {
        self.0.as_deref().unwrap_or(&[])
    }
    fn contains(&self, name: &str) -> bool {
        self.list().binary_search_by(|n| (**n).cmp(name)).is_ok()
    }
    fn iter(&self) -> impl Iterator<Item = &Arc<str>> {
        self.list().iter()
    }
    /// Adds and removes names at once; the names that were not subscribed before.
    fn update(&mut self, add: Vec<Arc<str>>, remove: &[String]) -> Vec<Arc<str>> {
        let new: Vec<Arc<str>> = add.into_iter().filter(|n| !self.contains(n)).collect();
        let remove: HashSet<&str> = remove.iter().map(String::as_str).collect();
        let gone = remove.iter().any(|n| self.contains(n));
        if new.is_empty() && !gone {
            return new;
        }
        let mut list: Vec<Arc<str>> = self
            .iter()
            .filter(|n| !remove.contains(&***n))
            .cloned()
            .collect();
        list.extend(new.iter().cloned());
        list.sort();
        list.dedup();
        self.0 = Some(crate::names::intern(list));
        new
    }
}

/// Serves one delta stream until the proxy leaves or the server shuts down.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    caller: Caller,
    mut requests: impl futures::Stream<Item = Result<DeltaDiscoveryRequest, Status>> + Unpin,
    tx: Tx,
) {
    let cancel = shared.cancel.clone();
    let Some((mut ctx, first)) = open_stream(
        shared,
        caller,
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
                let scope = match ctx.refresh() {
                    Ok(scope) => scope,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                // An updated EDS cluster warms until it gets its endpoints again, and Envoy asks for
                // nothing new (the name is subscribed already): the load assignments of the clusters
                // sent now are sent again, changed or not (Istio does the same).
                let mut clusters_sent: Vec<Arc<str>> = Vec::new();
                for ty in ResourceType::ALL {
                    let Some(state) = types.get_mut(&ty) else { continue };
                    let mut by_change = Some(&scope);
                    if ty == ResourceType::Cluster {
                        clusters_sent = sending(&ctx, state, ty, &scope);
                    } else if ty == ResourceType::Endpoint && !clusters_sent.is_empty() {
                        for name in &clusters_sent {
                            if state.in_scope(name) {
                                state.overrides.set(fnv1a(name.as_bytes()), None);
                            }
                        }
                        by_change = None;
                    }
                    if respond(&mut ctx, ty, state, &tx, false, by_change).await.is_err() {
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
        let mut declared: Vec<(u64, Option<Arc<Resource>>)> = req
            .initial_resource_versions
            .iter()
            .map(|(name, version)| {
                (
                    fnv1a(name.as_bytes()),
                    Some(Resource::declared(name, version)),
                )
            })
            .collect();
        declared.sort_by_key(|(hash, _)| *hash);
        declared.dedup_by_key(|(hash, _)| *hash);
        state.overrides = Overrides(declared);
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
    let wildcard = (state.wildcard || req.resource_names_subscribe.iter().any(|n| n == "*"))
        && !req.resource_names_unsubscribe.iter().any(|n| n == "*");
    let mut subscription_changed = false;
    if wildcard != state.wildcard && !first {
        state.materialize(ty);
        state.wildcard = wildcard;
        subscription_changed = true;
    }
    // The proxy drops what it unsubscribes from (under a wildcard, it holds nothing by that name
    // until it is sent again).
    for name in req.resource_names_unsubscribe.iter().filter(|n| *n != "*") {
        let hash = fnv1a(name.as_bytes());
        if state.wildcard {
            state.overrides.set(hash, None);
        } else {
            state.overrides.remove(hash);
        }
    }
    let add: Vec<Arc<str>> = req
        .resource_names_subscribe
        .into_iter()
        .filter(|n| n != "*")
        .map(|name| {
            // Share the config's copy of the name when there is one.
            ctx.config
                .get(ty, &name)
                .map(|r| Arc::clone(&r.name))
                .unwrap_or_else(|| name.into())
        })
        .collect();
    // A name subscribed now that the last answer's config has was not held (it was not subscribed):
    // it still is not. (Usually there is none: a proxy subscribes to what it has just learnt of.)
    let not_held: Vec<u64> = add
        .iter()
        .filter(|n| !state.in_scope(n))
        .filter(|n| state.sent.as_ref().is_some_and(|s| s.get(ty, n).is_some()))
        .map(|n| fnv1a(n.as_bytes()))
        .filter(|h| state.overrides.get(*h).is_none())
        .collect();
    let added = state.names.update(add, &req.resource_names_unsubscribe);
    subscription_changed |= !added.is_empty();
    for hash in not_held {
        state.overrides.set(hash, None);
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
    let mut changed: Vec<Arc<Resource>> = Vec::new();
    for r in desired {
        let held = state.held(ty, &r.name, r.name_hash);
        if !held.is_some_and(|h| Arc::ptr_eq(h, r) || h.version == r.version) {
            changed.push(Arc::clone(r));
        }
    }
    let removed: Vec<String> = state
        .held_names(ty)
        .into_iter()
        .filter(|n| !state.in_scope(n) || ctx.config.get(ty, n).is_none())
        .map(|n| n.to_string())
        .collect();
    (changed, removed)
}

/// The names of the resources [`respond`] will send for this generation.
fn sending(ctx: &StreamCtx, state: &TypeState, ty: ResourceType, scope: &Scope) -> Vec<Arc<str>> {
    let (changed, _) = match scope.names(ty) {
        Some(names) => diff_names(ctx, state, ty, names),
        None => diff_all(ctx, state, ty),
    };
    changed.iter().map(|r| Arc::clone(&r.name)).collect()
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
        let desired = if state.in_scope(name) {
            ctx.config.get(ty, name)
        } else {
            None
        };
        match (desired, state.held(ty, name, fnv1a(name.as_bytes()))) {
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
        state.settled(&ctx.config);
        return Ok(());
    }
    let version = ctx.config.type_version(ty);
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
                resource: Some(ctx.shared.resource_hook.outgoing(ty, &r.body)),
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
        ctx.record_sent(ty, &version, &nonce, by_change && i == last);
        state.last_nonce = Some(nonce);
    }
    // Every chunk sent (a failure above ends the stream): the proxy now holds the config.
    state.settled(&ctx.config);
    crate::stream::wait_taken(tx).await;
    Ok(())
}
