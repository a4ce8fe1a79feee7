//! `status.connectedProxies` and `status.injectedPods`, following reality within seconds.
//!
//! Every replica serves xDS behind Service meshd, so each knows only its own proxies. Each replica
//! publishes its count in its own Lease `meshd-xds-<identity>` in meshd-system (label `meshd.io/mesh`,
//! annotation `meshd.io/connected-proxies`), written when the count changed (at most every
//! [`PUBLISH_INTERVAL`]) and renewed every [`RENEW_INTERVAL`]; a replica that stops deletes it, one that
//! dies leaves it to expire after [`LEASE_SECONDS`]. The leader sums the fresh Leases per mesh, and counts
//! injected pods (label `meshd.io/mesh`, gateways excluded) from a metadata-only watch. A [`Tally`] tick
//! every [`TALLY_INTERVAL`] requeues the Meshes whose counts changed; the reconcile writes them with the
//! rest of the status, so counts are batched and unchanged counts write nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;
use meshd_api::names;
use tokio_util::sync::CancellationToken;

/// Annotation on a replica's Lease: the proxies connected to it.
pub const ANNOTATION_CONNECTED: &str = "meshd.io/connected-proxies";
/// Label on every replica's Lease (the leader's watch selects it).
pub const LABEL_XDS_REPLICA: &str = "meshd.io/xds-replica";
pub const LEASE_PREFIX: &str = "meshd-xds-";
/// A changed count is written at most this often.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(2);
/// An unchanged count is renewed this often, so the Lease stays fresh.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// A Lease not renewed for this long is stale: its replica died.
pub const LEASE_SECONDS: i32 = 30;
/// How often the leader compares the counts with what it last saw.
pub const TALLY_INTERVAL: Duration = Duration::from_secs(2);
/// Pods counted as injected: carrying the mesh label, gateways excluded.
pub const INJECTED_POD_SELECTOR: &str = "meshd.io/mesh,!meshd.io/gateway";

/// One Mesh's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub connected_proxies: i64,
    pub injected_pods: i64,
}

/// The replica's Lease name: `meshd-xds-` + the identity as a DNS label.
pub fn lease_name(identity: &str) -> String {
    let label: String = identity
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let label = label.trim_matches('-');
    let mut name = format!("{LEASE_PREFIX}{label}");
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// The Lease a replica applies.
pub fn replica_lease(identity: &str, mesh: &str, connected: i64, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(lease_name(identity)),
            namespace: Some(names::SYSTEM_NAMESPACE.into()),
            labels: Some(
                [
                    (names::LABEL_MANAGED_BY, "meshd"),
                    (LABEL_XDS_REPLICA, "true"),
                    (names::LABEL_MESH, mesh),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ),
            annotations: Some([(ANNOTATION_CONNECTED.to_string(), connected.to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(identity.into()),
            lease_duration_seconds: Some(LEASE_SECONDS),
            renew_time: Some(MicroTime(now)),
            ..LeaseSpec::default()
        }),
    }
}

/// `(mesh, connected)` of a replica Lease that is still fresh at `now`; None for a stale or foreign one.
pub fn fresh_count(lease: &Lease, now: Timestamp) -> Option<(String, i64)> {
    let meta = &lease.metadata;
    let mesh = meta.labels.as_ref()?.get(names::LABEL_MESH)?.clone();
    let count = meta
        .annotations
        .as_ref()?
        .get(ANNOTATION_CONNECTED)?
        .parse()
        .ok()?;
    let spec = lease.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref()?.0;
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
    (renewed + SignedDuration::from_secs(seconds) >= now).then_some((mesh, count))
}

/// Publishes this replica's connected proxies for `mesh` until `shutdown`, then deletes its Lease.
pub async fn publish(
    client: kube::Client,
    identity: String,
    mesh: String,
    connected: Arc<dyn Fn() -> i64 + Send + Sync>,
    shutdown: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, names::SYSTEM_NAMESPACE);
    let name = lease_name(&identity);
    let params = PatchParams::apply(names::FIELD_MANAGER).force();
    let mut published: Option<(i64, Instant)> = None;
    let mut last_error: Option<String> = None;
    loop {
        let count = connected();
        let due = match published {
            None => true,
            Some((n, at)) => {
                (n != count && at.elapsed() >= PUBLISH_INTERVAL) || at.elapsed() >= RENEW_INTERVAL
            }
        };
        if due {
            let lease = replica_lease(&identity, &mesh, count, Timestamp::now());
            match api.patch(&name, &params, &Patch::Apply(&lease)).await {
                Ok(_) => {
                    published = Some((count, Instant::now()));
                    last_error = None;
                }
                Err(error) => {
                    // Once per distinct error: a missing namespace or RBAC would repeat every tick.
                    let text = error.to_string();
                    if last_error.as_ref() != Some(&text) {
                        tracing::warn!(lease = %name, error = %text, "cannot publish this replica's connected proxies; retrying");
                        last_error = Some(text);
                    }
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    if published.is_some() {
        let params = DeleteParams::default();
        let delete = api.delete(&name, &params);
        match tokio::time::timeout(Duration::from_secs(1), delete).await {
            Ok(Ok(_)) | Ok(Err(kube::Error::Api(_))) => {}
            Ok(Err(error)) => tracing::debug!(lease = %name, %error, "replica Lease not deleted"),
            Err(_) => tracing::debug!(lease = %name, "replica Lease not deleted in time"),
        }
    }
}

/// The leader's view: replica Leases and injected pods, from watches.
#[derive(Clone)]
pub struct Tally {
    pub leases: Store<Lease>,
    pub pods: Store<PartialObjectMeta<Pod>>,
}

impl Tally {
    /// Every mesh that has proxies or pods at `now`.
    pub fn all(&self, now: Timestamp) -> BTreeMap<String, Counts> {
        let mut out: BTreeMap<String, Counts> = BTreeMap::new();
        for lease in self.leases.state() {
            if let Some((mesh, n)) = fresh_count(&lease, now) {
                out.entry(mesh).or_default().connected_proxies += n;
            }
        }
        for pod in self.pods.state() {
            if let Some(mesh) = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(names::LABEL_MESH))
            {
                out.entry(mesh.clone()).or_default().injected_pods += 1;
            }
        }
        out
    }

    pub fn counts(&self, mesh: &str, now: Timestamp) -> Counts {
        self.all(now).remove(mesh).unwrap_or_default()
    }

    /// Waits (at most `limit`) until both watches listed once, so a first status does not say 0.
    pub async fn wait_until_ready(&self, limit: Duration) {
        let both = async {
            let _ = self.leases.wait_until_ready().await;
            let _ = self.pods.wait_until_ready().await;
        };
        if tokio::time::timeout(limit, both).await.is_err() {
            tracing::warn!("replica Leases or injected pods not listed yet; status counts may lag");
        }
    }
}

/// Meshes whose counts differ between two tallies.
pub fn changed(before: &BTreeMap<String, Counts>, after: &BTreeMap<String, Counts>) -> Vec<String> {
    let mut meshes: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|m| before.get(*m) != after.get(*m))
        .cloned()
        .collect();
    meshes.sort();
    meshes.dedup();
    meshes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_are_dns_labels() {
        assert_eq!(lease_name("meshd-7d9f-abc12"), "meshd-xds-meshd-7d9f-abc12");
        assert_eq!(lease_name("My_Laptop.local"), "meshd-xds-my-laptop-local");
        let long = lease_name(&"x".repeat(100));
        assert_eq!(long.len(), 63);
    }

    #[test]
    fn a_fresh_lease_counts_and_a_stale_one_does_not() {
        let now = Timestamp::now();
        let lease = replica_lease("meshd-0", "blue", 4, now);
        assert_eq!(fresh_count(&lease, now), Some(("blue".into(), 4)));
        let later = now + SignedDuration::from_secs(i64::from(LEASE_SECONDS) + 1);
        assert_eq!(fresh_count(&lease, later), None, "its replica died");
        let mut foreign = lease.clone();
        foreign.metadata.annotations = None;
        assert_eq!(fresh_count(&foreign, now), None);
    }

    #[test]
    fn changed_names_each_mesh_once() {
        let c = |p, i| Counts {
            connected_proxies: p,
            injected_pods: i,
        };
        let before = [("a".to_string(), c(1, 1)), ("b".to_string(), c(2, 2))].into();
        let after = [("b".to_string(), c(2, 3)), ("c".to_string(), c(0, 1))].into();
        assert_eq!(changed(&before, &after), ["a", "b", "c"]);
        assert!(changed(&after, &after).is_empty());
    }
}
