//! Lease leader election against the fake API server.

mod common;

use common::FakeApi;
use meshd_operator::leader::{Elector, LEASE_NAME};
use serde_json::json;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/meshd-system/leases/meshd-controller";

#[tokio::test]
async fn one_holder_renews_others_wait_and_an_expired_lease_is_taken_over() {
    let fake = FakeApi::default();
    let a = Elector::new(fake.client(), "meshd-a");
    let b = Elector::new(fake.client(), "meshd-b");
    assert!(
        a.try_acquire_or_renew().await.unwrap(),
        "a creates the lease"
    );
    let created = fake.writes();
    assert_eq!(created.len(), 1);
    assert_eq!(
        (created[0].method.as_str(), created[0].path.as_str()),
        (
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/meshd-system/leases"
        )
    );
    assert_eq!(created[0].body["metadata"]["name"], LEASE_NAME);
    assert_eq!(created[0].body["spec"]["holderIdentity"], "meshd-a");
    assert_eq!(created[0].body["spec"]["leaseDurationSeconds"], 15);

    assert!(
        !b.try_acquire_or_renew().await.unwrap(),
        "b waits while a's lease is fresh"
    );
    assert_eq!(fake.writes().len(), 1, "a waiting replica does not write");

    fake.clear_log();
    assert!(a.try_acquire_or_renew().await.unwrap(), "a renews");
    let renew = fake.writes();
    assert_eq!(
        (renew[0].method.as_str(), renew[0].path.as_str()),
        ("PUT", LEASE)
    );
    assert_eq!(renew[0].body["spec"]["holderIdentity"], "meshd-a");

    // a stops renewing: once renewTime + 15 s is past, b takes over and counts a transition.
    let mut lease = fake.get(LEASE).unwrap();
    lease["spec"]["renewTime"] = json!("2020-01-01T00:00:00.000000Z");
    fake.put(LEASE, lease);
    assert!(
        b.try_acquire_or_renew().await.unwrap(),
        "b takes the expired lease"
    );
    let lease = fake.get(LEASE).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "meshd-b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    assert!(!a.try_acquire_or_renew().await.unwrap(), "a lost it");

    // b releases on shutdown: a can take it at once.
    b.release().await;
    assert!(
        fake.get(LEASE).unwrap()["spec"]
            .get("holderIdentity")
            .is_none()
    );
    assert!(a.try_acquire_or_renew().await.unwrap());
}

/// `Operator::run`: takes the lease, starts the Controller, and on shutdown stops it and releases the lease —
/// even while the Controller still waits for its first Mesh list (here the fake has no Mesh CRD: 404), which
/// kube-runtime's graceful shutdown alone never ends (bounded by `reconcile::SHUTDOWN_GRACE`).
#[tokio::test]
async fn run_holds_the_lease_until_shutdown_then_releases_it() {
    let fake = FakeApi::default();
    let mut registry = prometheus_client::registry::Registry::default();
    let op = meshd_operator::Operator::new(
        fake.client(),
        meshd_operator::OperatorConfig::new("meshd-a"),
        &mut registry,
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(op.run(shutdown.clone()));
    for _ in 0..200 {
        if fake.get(LEASE).is_some()
            && fake
                .log()
                .iter()
                .any(|r| r.path == "/apis/meshd.io/v1alpha1/meshes")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        fake.get(LEASE).expect("lease taken")["spec"]["holderIdentity"],
        "meshd-a"
    );
    assert!(
        fake.log()
            .iter()
            .any(|r| r.method == "GET" && r.path == "/apis/meshd.io/v1alpha1/meshes"),
        "the leader's Controller lists Meshes"
    );
    shutdown.cancel();
    let result = tokio::time::timeout(std::time::Duration::from_secs(15), task)
        .await
        .expect("run stops on shutdown");
    assert!(result.expect("no panic").is_ok());
    assert!(
        fake.get(LEASE).unwrap()["spec"]
            .get("holderIdentity")
            .is_none(),
        "lease released"
    );
}
