//! `status.connectedProxies` (summed over the replicas' Leases) and `status.injectedPods` (a metadata
//! watch of labelled pods) follow the cluster within seconds, batched into one status write, with no
//! write while nothing changes. The whole Operator runs against the fake API server.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use common::{FakeApi, eventually};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use meshd_operator::counts::{self, TALLY_INTERVAL};
use meshd_operator::{Operator, OperatorConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const MESH: &str = "/apis/meshd.io/v1alpha1/meshes/default";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/meshd-system/leases";

fn example_mesh() -> Value {
    serde_json::to_value(common::example_mesh()).expect("json")
}

fn pod(fake: &FakeApi, ns: &str, name: &str, labels: Value) {
    fake.put(
        &format!("/api/v1/namespaces/{ns}/pods/{name}"),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels}}),
    );
}

fn counts_in_status(fake: &FakeApi) -> Option<(i64, i64)> {
    let status = fake.get(MESH)?.get("status")?.clone();
    Some((
        status["connectedProxies"].as_i64()?,
        status["injectedPods"].as_i64()?,
    ))
}

fn status_writes(fake: &FakeApi) -> usize {
    fake.writes()
        .iter()
        .filter(|w| w.path == format!("{MESH}/status"))
        .count()
}

#[tokio::test]
async fn counts_follow_the_cluster_batched_and_summed_over_replicas() {
    let fake = FakeApi::default();
    fake.put(MESH, example_mesh());
    // Another replica with 4 proxies, and one that died long ago with 100.
    let other = counts::replica_lease("meshd-b", "default", 4, Timestamp::now());
    fake.put(
        &format!("{LEASES}/meshd-xds-meshd-b"),
        serde_json::to_value(other).unwrap(),
    );
    let dead = counts::replica_lease(
        "meshd-c",
        "default",
        100,
        Timestamp::now() - SignedDuration::from_secs(3600),
    );
    fake.put(
        &format!("{LEASES}/meshd-xds-meshd-c"),
        serde_json::to_value(dead).unwrap(),
    );
    // A pod of another mesh and a gateway pod do not count.
    pod(
        &fake,
        "shop",
        "other-mesh",
        json!({"meshd.io/mesh": "blue"}),
    );
    pod(
        &fake,
        "meshd-system",
        "ingress-1",
        json!({"meshd.io/mesh": "default", "meshd.io/gateway": "ingress"}),
    );

    let own = Arc::new(AtomicI64::new(2));
    let mut config = OperatorConfig::new("meshd-a");
    config.connected_proxies = {
        let own = own.clone();
        Arc::new(move || own.load(Ordering::SeqCst))
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let operator = Operator::new(fake.client(), config, &mut registry);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(operator.run(shutdown.clone()));

    eventually("status counts 2 + 4 proxies, 0 pods", 15, || {
        counts_in_status(&fake) == Some((6, 0))
    })
    .await;
    let lease = fake
        .get(&format!("{LEASES}/meshd-xds-meshd-a"))
        .expect("own Lease");
    assert_eq!(
        lease["metadata"]["annotations"]["meshd.io/connected-proxies"],
        "2"
    );
    assert_eq!(lease["metadata"]["labels"]["meshd.io/mesh"], "default");
    assert_eq!(lease["spec"]["holderIdentity"], "meshd-a");

    // Five pods at once: one status write carries them all.
    tokio::time::sleep(TALLY_INTERVAL * 2).await;
    fake.clear_log();
    for i in 0..5 {
        pod(
            &fake,
            "shop",
            &format!("web-{i}"),
            json!({"meshd.io/mesh": "default", "app": "web"}),
        );
    }
    eventually("5 injected pods in status", 10, || {
        counts_in_status(&fake) == Some((6, 5))
    })
    .await;
    assert_eq!(status_writes(&fake), 1, "batched: {:?}", fake.writes());

    // This replica's proxies change: its Lease, then the status, follow within seconds.
    fake.clear_log();
    own.store(7, Ordering::SeqCst);
    eventually("status counts 7 + 4 proxies", 10, || {
        counts_in_status(&fake) == Some((11, 5))
    })
    .await;
    assert_eq!(status_writes(&fake), 1, "{:?}", fake.writes());

    // Nothing changes: no status write.
    fake.clear_log();
    tokio::time::sleep(TALLY_INTERVAL * 3).await;
    assert_eq!(status_writes(&fake), 0, "{:?}", fake.writes());

    // The other replica goes away (deletes its Lease) and a pod is deleted.
    fake.remove(&format!("{LEASES}/meshd-xds-meshd-b"));
    fake.remove("/api/v1/namespaces/shop/pods/web-0");
    eventually("status follows removals", 10, || {
        counts_in_status(&fake) == Some((7, 4))
    })
    .await;

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("stops")
        .expect("no panic")
        .expect("ok");
    assert!(
        fake.get(&format!("{LEASES}/meshd-xds-meshd-a")).is_none(),
        "a replica that stops deletes its Lease"
    );
}

/// Deleting a Mesh: its owned objects' deletions still reach the Controller, for a Mesh no longer in
/// its store. That is a normal deletion, logged at info once, not a WARN per object.
#[tokio::test]
async fn a_mesh_deletion_is_info_not_a_warning() {
    let logs = common::Logs::default();
    let _guard = logs.capture();
    let fake = FakeApi::default();
    fake.put(MESH, example_mesh());
    let mut registry = prometheus_client::registry::Registry::default();
    let operator = Operator::new(fake.client(), OperatorConfig::new("meshd-a"), &mut registry);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(operator.run(shutdown.clone()));
    eventually("reconciled", 15, || counts_in_status(&fake).is_some()).await;
    // What the garbage collector does after `kubectl delete mesh default`.
    fake.remove(MESH);
    for path in [
        "/apis/apps/v1/namespaces/meshd-system/deployments/ingress",
        "/api/v1/namespaces/meshd-system/services/ingress",
        "/api/v1/namespaces/meshd-system/configmaps/meshd-mesh-default",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/meshd-injector-default",
    ] {
        fake.remove(path);
    }
    eventually("the deletion logged", 5, || {
        logs.text().contains("Mesh deleted")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    let text = logs.text();
    assert_eq!(
        text.lines().filter(|l| l.contains("Mesh deleted")).count(),
        1,
        "{text}"
    );
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains(" WARN ")).collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}
