//! The control plane's verdicts as `status.conditions[type=Accepted]` of the traffic and security
//! resources (SPEC §8): one status server-side apply per resource whose verdict differs from what its
//! status already says, none when nothing changed. Generic over the kinds: a verdict names its kind, and
//! [`api_resource`] knows the six (VirtualService, DestinationRule, ServiceEntry, Gateway,
//! PeerAuthentication, AuthorizationPolicy).
//!
//! Every replica computes the same verdicts; each compares with the object's status before writing, so
//! replicas agree instead of taking turns (a second replica finds the status already written).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use meshd_api::names;
use meshd_api::networking::{DestinationRule, Gateway, ServiceEntry, VirtualService};
use meshd_api::security::{AuthorizationPolicy, PeerAuthentication};
use meshd_api::status::{ACCEPTED, ConfigStatus, Verdict, VerdictKey};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// After a failed write, the next attempt (every failed one again).
const RETRY: Duration = Duration::from_secs(5);

/// The API resource of a kind with a verdict, by its `kind:` name.
pub fn api_resource(kind: &str) -> Option<ApiResource> {
    Some(match kind {
        "VirtualService" => ApiResource::erase::<VirtualService>(&()),
        "DestinationRule" => ApiResource::erase::<DestinationRule>(&()),
        "ServiceEntry" => ApiResource::erase::<ServiceEntry>(&()),
        "Gateway" => ApiResource::erase::<Gateway>(&()),
        "PeerAuthentication" => ApiResource::erase::<PeerAuthentication>(&()),
        "AuthorizationPolicy" => ApiResource::erase::<AuthorizationPolicy>(&()),
        _ => return None,
    })
}

/// What one attempt to record a verdict did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The status already said so.
    Unchanged,
    Applied,
    /// The object is gone (deleted since the verdict).
    Gone,
}

/// Whether `old` already says what `verdict` says (lastTransitionTime aside).
fn same(old: &Condition, verdict: &Verdict) -> bool {
    let new = verdict.condition(old.last_transition_time.clone());
    *old == new
}

/// Records one verdict in its resource's status, if it differs.
pub async fn write_one(
    client: &kube::Client,
    key: &VerdictKey,
    verdict: &Verdict,
) -> Result<Written, kube::Error> {
    let Some(ar) = api_resource(key.kind) else {
        tracing::warn!(kind = key.kind, "no status to write for this kind");
        return Ok(Written::Unchanged);
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &key.namespace, &ar);
    let Some(object) = api.get_opt(&key.name).await? else {
        return Ok(Written::Gone);
    };
    let status: ConfigStatus = object
        .data
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default();
    let old = status.accepted();
    if old.is_some_and(|c| same(c, verdict)) {
        return Ok(Written::Unchanged);
    }
    // The transition time moves only when True/False does.
    let since = old
        .filter(|c| c.status == verdict.condition(c.last_transition_time.clone()).status)
        .map_or_else(
            || Time(Timestamp::now()),
            |c| c.last_transition_time.clone(),
        );
    let mut conditions: Vec<Condition> = status
        .conditions
        .iter()
        .filter(|c| c.type_ != ACCEPTED)
        .cloned()
        .collect();
    conditions.push(verdict.condition(since));
    let body = json!({
        "apiVersion": ar.api_version,
        "kind": ar.kind,
        "metadata": {"name": key.name, "namespace": key.namespace},
        "status": ConfigStatus {
            observed_generation: verdict.generation,
            conditions,
        },
    });
    let params = PatchParams::apply(names::FIELD_MANAGER).force();
    match api
        .patch_status(&key.name, &params, &Patch::Apply(&body))
        .await
    {
        Ok(_) => Ok(Written::Applied),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Written::Gone),
        Err(e) => Err(e),
    }
}

/// Writes every verdict that changed, from the first one on, until `cancel`; a failed write is retried
/// every [`RETRY`] until it succeeds or its verdict changes.
pub async fn write_verdicts<V>(
    client: kube::Client,
    mut verdicts: watch::Receiver<V>,
    cancel: CancellationToken,
) where
    V: Clone + Send + Sync + 'static,
    for<'a> &'a V: IntoIterator<Item = (&'a VerdictKey, &'a Arc<Verdict>)>,
{
    // What each resource's status says, as far as this writer knows.
    let mut written: HashMap<VerdictKey, Arc<Verdict>> = HashMap::new();
    loop {
        let now = verdicts.borrow_and_update().clone();
        let mut failed = false;
        let mut seen = std::collections::HashSet::new();
        for (key, verdict) in &now {
            seen.insert(key.clone());
            if written
                .get(key)
                .is_some_and(|w| Arc::ptr_eq(w, verdict) || w == verdict)
            {
                continue;
            }
            match write_one(&client, key, verdict).await {
                Ok(outcome) => {
                    tracing::debug!(resource = %key, ?outcome, accepted = verdict.accepted, "verdict recorded");
                    written.insert(key.clone(), Arc::clone(verdict));
                }
                Err(error) => {
                    failed = true;
                    tracing::warn!(resource = %key, %error, "cannot write the verdict into status; retrying");
                }
            }
        }
        written.retain(|k, _| seen.contains(k));
        let retry = async {
            if failed {
                tokio::time::sleep(RETRY).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = retry => {}
            r = verdicts.changed() => if r.is_err() { return },
        }
    }
}
