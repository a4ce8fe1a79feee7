//! Lease leader election against the fake API server.

mod common;

use common::FakeApi;
use meshd_operator::leader::{Elector, LEASE_NAME};
use serde_json::json;

/// `Operator::run` as replica meshd-a, against `fake`: its metrics, its shutdown, its task.
fn start_operator(
    fake: &FakeApi,
) -> (
    prometheus_client::registry::Registry,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<Result<(), meshd_operator::Error>>,
) {
    let (registry, shutdown, task, _) = start_operator_watched(fake);
    (registry, shutdown, task)
}

/// [`start_operator`], and the operator's leadership watch.
fn start_operator_watched(
    fake: &FakeApi,
) -> (
    prometheus_client::registry::Registry,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<Result<(), meshd_operator::Error>>,
    tokio::sync::watch::Receiver<bool>,
) {
    let mut registry = prometheus_client::registry::Registry::default();
    let op = meshd_operator::Operator::new(
        fake.client(),
        meshd_operator::OperatorConfig::new("meshd-a"),
        &mut registry,
    );
    let leading = op.leading();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(op.run(shutdown.clone()));
    (registry, shutdown, task, leading)
}

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
    fake.refuse("GET", "/apis/meshd.io/v1alpha1/meshes", 404);
    let (_registry, shutdown, task) = start_operator(&fake);
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

/// A replica that finds the lease held by another (it was partitioned and the lease moved on) stops its
/// Controller (`meshd_controller_leader` goes 1 → 0) and leaves the other's lease alone.
#[tokio::test]
async fn losing_the_lease_stops_the_controller() {
    let fake = FakeApi::default();
    let (registry, shutdown, task, leading) = start_operator_watched(&fake);
    let mesh_requests = || {
        fake.log()
            .iter()
            .filter(|r| r.path == "/apis/meshd.io/v1alpha1/meshes")
            .count()
    };
    for _ in 0..200 {
        if mesh_requests() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(mesh_requests() > 0, "the leader's Controller runs");
    let leader_gauge = |registry: &prometheus_client::registry::Registry| {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text.lines()
            .find(|l| l.starts_with("meshd_controller_leader "))
            .map(String::from)
    };
    assert_eq!(
        leader_gauge(&registry).as_deref(),
        Some("meshd_controller_leader 1")
    );
    assert!(
        *leading.borrow(),
        "leading() says so (the CA Secret may be created)"
    );
    let mut lease = fake.get(LEASE).unwrap();
    lease["spec"]["holderIdentity"] = json!("meshd-b");
    lease["spec"]["renewTime"] = json!("2999-01-01T00:00:00.000000Z");
    fake.put(LEASE, lease);
    // Next renewal (≤ 5 s) sees meshd-b; stopping takes at most SHUTDOWN_GRACE (5 s).
    for _ in 0..150 {
        if leader_gauge(&registry).as_deref() == Some("meshd_controller_leader 0") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        leader_gauge(&registry).as_deref(),
        Some("meshd_controller_leader 0"),
        "the Controller stopped"
    );
    assert!(!*leading.borrow(), "leading() follows the lease");
    assert_eq!(
        fake.get(LEASE).unwrap()["spec"]["holderIdentity"],
        "meshd-b",
        "the loser does not write the lease"
    );
    shutdown.cancel();
    let result = tokio::time::timeout(std::time::Duration::from_secs(10), task)
        .await
        .expect("run stops");
    assert!(result.expect("no panic").is_ok());
    assert_eq!(
        fake.get(LEASE).unwrap()["spec"]["holderIdentity"],
        "meshd-b",
        "release leaves another's lease alone"
    );
}

const NAMESPACES: &str = "/api/v1/namespaces";

fn lease_requests(fake: &FakeApi) -> usize {
    fake.log()
        .iter()
        .filter(|r| r.path.contains("/leases/meshd-controller") || r.path.ends_with("/leases"))
        .count()
}

/// Out of cluster the controller may be the first thing there: it creates meshd-system, then competes.
#[tokio::test]
async fn a_missing_system_namespace_is_created_before_the_lease() {
    let fake = FakeApi::default();
    let (_registry, shutdown, task) = start_operator(&fake);
    common::eventually("the lease taken", 10, || fake.get(LEASE).is_some()).await;
    let created: Vec<String> = fake
        .writes()
        .iter()
        .filter(|w| w.method == "POST")
        .map(|w| w.path.clone())
        .collect();
    assert_eq!(
        created[..2],
        [
            NAMESPACES.to_string(),
            LEASE.trim_end_matches("/meshd-controller").to_string()
        ],
        "namespace first: {created:?}"
    );
    assert!(fake.get("/api/v1/namespaces/meshd-system").is_some());
    shutdown.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(15), task).await;
}

/// Not allowed to create it: one error line saying what to run, retries with backoff, no Lease requests
/// meanwhile; once the namespace may be created, it is, and the Lease follows.
#[tokio::test]
async fn a_forbidden_namespace_creation_says_what_to_do_and_retries() {
    let logs = common::Logs::default();
    let _guard = logs.capture();
    let fake = FakeApi::default();
    fake.refuse("POST", NAMESPACES, 403);
    let (_registry, shutdown, task) = start_operator(&fake);
    let attempts = || {
        fake.log()
            .iter()
            .filter(|r| r.method == "POST" && r.path == NAMESPACES)
            .count()
    };
    common::eventually("a retry after the first refusal", 5, || attempts() >= 2).await;
    assert_eq!(
        lease_requests(&fake),
        0,
        "no election without the namespace"
    );
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("ERROR"))
        .unwrap_or_else(|| panic!("an error is logged: {text}"));
    assert!(
        line.contains("kubectl create namespace meshd-system") && line.contains("retrying in 1s"),
        "{line}"
    );
    // Backoff: the third try waits 2 s.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(attempts(), 2, "backoff doubles");
    fake.allow_all();
    common::eventually("namespace created, then the lease", 10, || {
        fake.get("/api/v1/namespaces/meshd-system").is_some() && fake.get(LEASE).is_some()
    })
    .await;
    shutdown.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(15), task).await;
}
