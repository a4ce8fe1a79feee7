//! State-of-the-world ADS: each response carries the whole set of a type (or of the names asked for).

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
                // Clusters before endpoints, listeners before routes.
                for ty in ResourceType::ALL {
                    if let Some(state) = types.get_mut(&ty)
                        && touches(&scope, ty, state)
                        && respond(&mut ctx, ty, state, &tx, false, true).await.is_err()
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
        respond(ctx, ty, state, tx, true, false).await?;
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

/// Sends the type's current set if it differs from what was sent (or `force`).
async fn respond(
    ctx: &mut StreamCtx,
    ty: ResourceType,
    state: &mut TypeState,
    tx: &Tx,
    force: bool,
    by_change: bool,
) -> Result<(), ()> {
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
    if unchanged && !force {
        return Ok(());
    }
    let hook = &ctx.shared.resource_hook;
    let resources = selected
        .iter()
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
    Ok(())
}
