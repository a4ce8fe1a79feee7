//! The demo's mesh as a test (meshd-testbed's `Mesh`): real `meshd controlplane` on a Unix socket, pods
//! in network namespaces on a bridge with `meshd init` capture, `meshd agent` running real Envoy as uid
//! 1337, and apps as uid 1000. Proof comes from Envoy's own stats and from which pod answered.
//!
//! Needs root, `ip netns`, iptables, setpriv and the Envoy venv; prints SKIP otherwise, fails under CI=true.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use meshd_testbed::load::answers;
use meshd_testbed::mesh::{APP, APP_PORT, INBOUND, Mesh, REVIEWS_OUTBOUND, REVIEWS_VIP};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const READY: Duration = Duration::from_secs(30);
const FRONTEND: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 10);
const REVIEWS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 44, 0, 11), Ipv4Addr::new(10, 44, 0, 12)];

/// One mesh at a time: the machine is small (each pod runs an Envoy).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn prerequisites(test: &str) -> Option<PathBuf> {
    meshd_testbed::prereq::require_envoy(
        test,
        &["iptables", "setpriv"],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    )
}

/// frontend-0 and `reviews` pods reviews-0.. declared and started, all sidecars ready.
fn mesh(envoy: &Path, reviews: usize) -> Mesh {
    let mut mesh = Mesh::start(Path::new(MESHD), envoy).expect("control plane and bridge");
    mesh.declare_pod("frontend-0", "frontend", FRONTEND)
        .expect("config");
    mesh.start_pod("frontend-0", "frontend", FRONTEND)
        .expect("frontend pod");
    for (i, ip) in REVIEWS.iter().take(reviews).enumerate() {
        let name = format!("reviews-{i}");
        mesh.declare_pod(&name, "reviews", *ip).expect("config");
        mesh.start_pod(&name, "reviews", *ip).expect("reviews pod");
    }
    mesh.wait_ready(READY).expect("every sidecar ready");
    mesh
}

fn vip() -> SocketAddr {
    (REVIEWS_VIP, 80).into()
}

#[test]
fn vip_traffic_crosses_both_sidecars_and_fails_without_the_client_sidecar() {
    let Some(envoy) =
        prerequisites("vip_traffic_crosses_both_sidecars_and_fails_without_the_client_sidecar")
    else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut mesh = mesh(&envoy, 2);
    let frontend = mesh.pod("frontend-0").unwrap();
    let out_before = frontend
        .cluster_stat(REVIEWS_OUTBOUND, "upstream_rq_total")
        .unwrap();
    let in_before: Vec<u64> = ["reviews-0", "reviews-1"]
        .map(|p| {
            mesh.pod(p)
                .unwrap()
                .cluster_stat(INBOUND, "upstream_rq_total")
                .unwrap()
        })
        .to_vec();

    let by_pod =
        answers(&frontend.ns, APP, vip(), 60).expect("60 requests by VIP from the app's uid");

    let out = frontend
        .cluster_stat(REVIEWS_OUTBOUND, "upstream_rq_total")
        .unwrap()
        - out_before;
    assert_eq!(
        out, 60,
        "every request leaves through the frontend's outbound cluster"
    );
    for (i, pod) in ["reviews-0", "reviews-1"].iter().enumerate() {
        let inbound = mesh
            .pod(pod)
            .unwrap()
            .cluster_stat(INBOUND, "upstream_rq_total")
            .unwrap()
            - in_before[i];
        let answered = by_pod.get(*pod).copied().unwrap_or(0);
        assert_eq!(
            inbound, answered,
            "{pod}: every answer came in through its sidecar ({by_pod:?})"
        );
        assert!(answered > 0, "{pod} got none of 60 requests: {by_pod:?}");
    }
    assert_eq!(by_pod.values().sum::<u64>(), 60, "{by_pod:?}");

    mesh.pod_mut("frontend-0")
        .unwrap()
        .stop_sidecar()
        .expect("sidecar stops");
    let frontend = mesh.pod("frontend-0").unwrap();
    let result = answers(&frontend.ns, APP, vip(), 1);
    assert!(
        result.is_err(),
        "with the frontend's sidecar stopped the VIP call must fail, got {result:?}"
    );
}

#[test]
fn endpoint_change_reaches_the_client_envoy() {
    let Some(envoy) = prerequisites("endpoint_change_reaches_the_client_envoy") else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut mesh = mesh(&envoy, 1);
    let before =
        answers(&mesh.pod("frontend-0").unwrap().ns, APP, vip(), 20).expect("requests by VIP");
    assert_eq!(
        before.get("reviews-0"),
        Some(&20),
        "one endpoint: {before:?}"
    );

    mesh.declare_pod("reviews-1", "reviews", REVIEWS[1])
        .expect("config change");
    mesh.start_pod("reviews-1", "reviews", REVIEWS[1])
        .expect("new pod");
    mesh.wait_ready(READY).expect("new sidecar ready");
    mesh.wait_endpoint(
        "frontend-0",
        REVIEWS_OUTBOUND,
        (REVIEWS[1], APP_PORT).into(),
        READY,
    )
    .expect("the new endpoint reaches frontend-0's Envoy");

    let after =
        answers(&mesh.pod("frontend-0").unwrap().ns, APP, vip(), 60).expect("requests by VIP");
    assert!(
        after.get("reviews-1").copied().unwrap_or(0) > 0,
        "the new pod answers: {after:?}"
    );
    assert!(
        after.get("reviews-0").copied().unwrap_or(0) > 0,
        "the old pod still answers: {after:?}"
    );
}
