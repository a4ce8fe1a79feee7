//! Delta ADS: only changed resources and the names of removed ones are sent.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as XdsResource,
};
use meshd_translate::ResourceType;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use crate::registry::XdsApiKind;
use crate::stream::{Shared, StreamCtx};

type Tx = mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>;

#[derive(Default)]
struct TypeState {
    /// Subscribed to everything of the type (LDS/CDS with no names or `*`).
    wildcard: bool,
    /// Names subscribed explicitly.
    names: BTreeSet<String>,
    /// What the proxy holds (sent by us or declared on reconnect): name → version.
    held: HashMap<String, String>,
    /// Nonce of the last response, to match ACKs and NACKs.
    last_nonce: Option<String>,
}

/// Serves one delta stream until the proxy leaves or the server shuts down.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    mut requests: Streaming<DeltaDiscoveryRequest>,
    tx: Tx,
) {
    let cancel = shared.cancel.clone();
    let first = tokio::select! {
        () = cancel.cancelled() => return,
        m = requests.message() => match m { Ok(Some(r)) => r, _ => return },
    };
    let Some(node) = first.node.as_ref().map(|n| n.id.clone()) else {
        let _ = tx
            .send(Err(Status::invalid_argument(
                "the first DeltaDiscoveryRequest must carry node.id",
            )))
            .await;
        return;
    };
    let mut ctx = match StreamCtx::open(shared, &node, XdsApiKind::Delta) {
        Ok(ctx) => ctx,
        Err(status) => {
            let _ = tx.send(Err(status)).await;
            return;
        }
    };
    let mut types: BTreeMap<ResourceType, TypeState> = BTreeMap::new();
    if handle(&mut ctx, &mut types, first, &tx).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            m = requests.message() => match m {
                Ok(Some(req)) => if handle(&mut ctx, &mut types, req, &tx).await.is_err() { return },
                Ok(None) => return,
                Err(status) => {
                    tracing::debug!(node = %ctx.node, %status, "delta ADS stream ended");
                    return;
                }
            },
            changed = ctx.generations.changed() => {
                if changed.is_err() { return }
                ctx.refresh();
                for ty in ResourceType::ALL {
                    if let Some(state) = types.get_mut(&ty)
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
        state.held = req.initial_resource_versions.clone().into_iter().collect();
    }
    if !req.response_nonce.is_empty()
        && state.last_nonce.as_deref() == Some(req.response_nonce.as_str())
    {
        match &req.error_detail {
            Some(err) => ctx.record_nack(ty, &req.response_nonce, &err.message),
            None => ctx.record_ack(ty, &req.response_nonce),
        }
    }
    let mut subscription_changed = false;
    for name in req.resource_names_subscribe {
        if name == "*" {
            subscription_changed |= !state.wildcard;
            state.wildcard = true;
        } else {
            subscription_changed |= state.names.insert(name);
        }
    }
    for name in req.resource_names_unsubscribe {
        if name == "*" {
            state.wildcard = false;
        } else {
            state.names.remove(&name);
        }
        state.held.remove(&name); // the proxy drops what it unsubscribes from
    }
    if first || subscription_changed {
        respond(ctx, ty, state, tx, first, false).await?;
    }
    Ok(())
}

/// Sends what changed for this type since the proxy last heard: new or changed resources, and the names
/// of ones it holds that are gone. Nothing to say → nothing sent (unless `force`: first answer).
async fn respond(
    ctx: &mut StreamCtx,
    ty: ResourceType,
    state: &mut TypeState,
    tx: &Tx,
    force: bool,
    by_change: bool,
) -> Result<(), ()> {
    let mut resources = Vec::new();
    let mut wanted: BTreeSet<&str> = BTreeSet::new();
    let desired: Vec<_> = if state.wildcard {
        ctx.config.resources(ty).collect()
    } else {
        state
            .names
            .iter()
            .filter_map(|n| ctx.config.get(ty, n))
            .collect()
    };
    for r in &desired {
        wanted.insert(r.name.as_str());
        if state.held.get(&r.name) != Some(&r.version) {
            resources.push(XdsResource {
                name: r.name.clone(),
                version: r.version.clone(),
                resource: Some(r.body.clone()),
                ..Default::default()
            });
        }
    }
    let mut removed: Vec<String> = state
        .held
        .keys()
        .filter(|name| !wanted.contains(name.as_str()))
        .cloned()
        .collect();
    removed.sort();
    if resources.is_empty() && removed.is_empty() && !force {
        return Ok(());
    }
    let version = ctx.config.type_version(ty);
    drop(desired);
    let nonce = ctx.next_nonce();
    for r in &resources {
        state.held.insert(r.name.clone(), r.version.clone());
    }
    for name in &removed {
        state.held.remove(name);
    }
    let response = DeltaDiscoveryResponse {
        system_version_info: version.clone(),
        resources,
        type_url: ty.type_url(),
        removed_resources: removed,
        nonce: nonce.clone(),
        ..Default::default()
    };
    tx.send(Ok(response)).await.map_err(|_| ())?;
    ctx.record_sent(ty, &version, &nonce, by_change);
    state.last_nonce = Some(nonce);
    Ok(())
}
