//! State-of-the-world ADS: a listener or cluster response carries the whole set of its type; a route or
//! load assignment response the names asked for, and after a change only those that changed (the xDS
//! protocol groups RDS and EDS resources as delta does: Envoy keeps the ones a response leaves out).
//! An updated EDS cluster warms until its load assignment comes again, so the assignments of the
//! clusters a push sends are sent again, changed or not (as delta does).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use futures::StreamExt;
use meshd_translate::ResourceType;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use crate::auth::Caller;
use crate::registry::XdsApiKind;
use crate::stream::{Scope, Shared, StreamCtx, open_stream, set_version};

type Tx = mpsc::Sender<Result<DiscoveryResponse, Status>>;

#[derive(Default)]
struct TypeState {
    /// Names asked for (EDS, RDS); ignored for the wildcard types.
    names: BTreeSet<String>,
    /// What the last response covered: its version and nonce, and the names it answered.
    sent: Option<(String, String)>,
    sent_names: BTreeSet<String>,
}

/// Serves one SotW stream until the proxy leaves or the server shuts down.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    caller: Caller,
    mut requests: Streaming<DiscoveryRequest>,
    tx: Tx,
) {
    let cancel = shared.cancel.clone();
    let Some((mut ctx, first)) = open_stream(
        shared,
        caller,
        &mut requests,
        &tx,
        XdsApiKind::Sotw,
        "DiscoveryRequest",
        |r: &DiscoveryRequest| r.node.as_ref().map(|n| n.id.clone()),
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
                    tracing::debug!(node = %ctx.node, %status, "ADS stream ended");
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
                if push_changes(&mut ctx, &mut types, &scope, &tx).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Pushes what a generation changed, type by type: clusters before endpoints, listeners before
/// routes.
async fn push_changes(
    ctx: &mut StreamCtx,
    types: &mut BTreeMap<ResourceType, TypeState>,
    scope: &Scope,
    tx: &Tx,
) -> Result<(), ()> {
    let mut clusters_sent: Vec<Arc<str>> = Vec::new();
    for ty in ResourceType::ALL {
        let Some(state) = types.get_mut(&ty) else {
            continue;
        };
        let resend = ty == ResourceType::Endpoint
            && clusters_sent.iter().any(|n| state.names.contains(&**n));
        if !touches(scope, ty, state) && !resend {
            continue;
        }
        // Routes and load assignments: only the changed ones (all of them on a full refresh), and
        // the re-sent assignments.
        let only: Option<Vec<Arc<str>>> = match scope.names(ty) {
            Some(names) if !ty.is_wildcard() => {
                let mut only = names.to_vec();
                if resend {
                    only.extend(clusters_sent.iter().cloned());
                    only.sort();
                    only.dedup();
                }
                Some(only)
            }
            _ => None,
        };
        let push = Push {
            force: resend,
            only: only.as_deref(),
        };
        let sent = respond(ctx, ty, state, tx, Some(push)).await?;
        if sent && ty == ResourceType::Cluster {
            clusters_sent = match scope.names(ty) {
                Some(names) => names.to_vec(),
                None => ctx
                    .config
                    .resources(ty)
                    .map(|r| Arc::clone(&r.name))
                    .collect(),
            };
        }
    }
    Ok(())
}

async fn handle(
    ctx: &mut StreamCtx,
    types: &mut BTreeMap<ResourceType, TypeState>,
    req: DiscoveryRequest,
    tx: &Tx,
) -> Result<(), ()> {
    let Some(ty) = ResourceType::from_type_url(&req.type_url) else {
        tracing::debug!(node = %ctx.node, type_url = req.type_url, "request for a type meshd does not serve");
        return Ok(());
    };
    let state = types.entry(ty).or_default();
    if !req.response_nonce.is_empty() {
        let current = state.sent.as_ref().map(|(_, n)| n.as_str());
        if current != Some(req.response_nonce.as_str()) {
            return Ok(()); // about an older response; a newer one is on its way
        }
        match &req.error_detail {
            Some(err) => ctx.record_nack(ty, &req.response_nonce, &err.message),
            None => ctx.record_ack(ty, &req.response_nonce),
        }
    }
    state.names = req.resource_names.into_iter().collect();
    let first = state.sent.is_none();
    let names_changed = !ty.is_wildcard() && state.names != state.sent_names;
    if first || names_changed {
        respond(ctx, ty, state, tx, None).await?;
    }
    Ok(())
}

/// Whether a generation's changes can change what this type's last response covered: any change of a
/// wildcard type, a change of a name asked for otherwise.
fn touches(scope: &Scope, ty: ResourceType, state: &TypeState) -> bool {
    match scope.names(ty) {
        None => true,
        Some(names) if ty.is_wildcard() => !names.is_empty(),
        Some(names) => names.iter().any(|n| state.names.contains(&**n)),
    }
}

/// A push after a change (not an answer to a request).
struct Push<'a> {
    /// Send even if the version is what was sent (load assignments re-sent for warming clusters).
    force: bool,
    /// Send only these names (of those asked for; sorted); `None`: all of them.
    only: Option<&'a [Arc<str>]>,
}

/// Sends the type's current set if it differs from what was sent, or always when answering a request
/// (`push` is `None`); whether it sent.
async fn respond(
    ctx: &mut StreamCtx,
    ty: ResourceType,
    state: &mut TypeState,
    tx: &Tx,
    push: Option<Push<'_>>,
) -> Result<bool, ()> {
    let selected: Vec<_> = if ty.is_wildcard() {
        ctx.config.resources(ty).collect()
    } else {
        state
            .names
            .iter()
            .filter_map(|n| ctx.config.get(ty, n))
            .collect()
    };
    let version = if ty.is_wildcard() {
        ctx.config.type_version(ty)
    } else {
        set_version(selected.iter().map(|r| (&*r.name, r.version.as_str())))
    };
    let unchanged =
        state.sent.as_ref().is_some_and(|(v, _)| *v == version) && state.sent_names == state.names;
    if unchanged && push.as_ref().is_some_and(|p| !p.force) {
        return Ok(false);
    }
    let by_change = push.is_some();
    let only = push.and_then(|p| p.only);
    let hook = &ctx.shared.resource_hook;
    let resources = selected
        .iter()
        .filter(|r| only.is_none_or(|names| names.binary_search(&r.name).is_ok()))
        .map(|r| hook.outgoing(ty, &r.body))
        .collect();
    let nonce = ctx.next_nonce();
    let response = DiscoveryResponse {
        version_info: version.clone(),
        resources,
        type_url: ty.type_url(),
        nonce: nonce.clone(),
        ..Default::default()
    };
    let large = response
        .resources
        .iter()
        .map(|r| r.value.len())
        .sum::<usize>()
        > 64 * 1024;
    let _throttle = ctx.shared.throttle_large_push(large).await;
    tx.send(Ok(response)).await.map_err(|_| ())?;
    crate::stream::wait_taken(tx).await;
    ctx.record_sent(ty, &version, &nonce, by_change);
    state.sent = Some((version, nonce));
    state.sent_names = state.names.clone();
    Ok(true)
}
