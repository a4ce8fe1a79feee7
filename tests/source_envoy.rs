//! Per-proxy routes through real Envoy (SPEC §8): a VirtualService match's `sourceLabels` applies
//! only to the clients whose pods carry them, a VirtualService exported to its own namespace (`.`)
//! routes only that namespace's clients, and relabelling a pod moves it to the other routes. The
//! testbed's mesh (file-fed `meshd controlplane`, pods in network namespaces with capture, `meshd
//! agent` + Envoy); traffic by the reviews VIP, counted by which pod answered; Envoy's own stats
//! prove that it rejected nothing.
//!
//! Needs root, `ip netns`, iptables, setpriv and the Envoy venv; prints SKIP otherwise, fails under CI=true.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use meshd_testbed::app::HttpConn;
use meshd_testbed::mesh::{APP, APP_PORT, Mesh, Pod, REVIEWS_VIP, wait_for};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const READY: Duration = Duration::from_secs(30);
/// frontend-0 (labelled `track: a`) and frontend-1 in `demo`; client-0 in `other`.
const CLIENTS: [(&str, &str, &str, Ipv4Addr); 3] = [
    (
        "frontend-0",
        "frontend",
        "demo",
        Ipv4Addr::new(10, 44, 0, 10),
    ),
    (
        "frontend-1",
        "frontend",
        "demo",
        Ipv4Addr::new(10, 44, 0, 13),
    ),
    ("client-0", "client", "other", Ipv4Addr::new(10, 44, 0, 14)),
];
const REVIEWS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 44, 0, 11), Ipv4Addr::new(10, 44, 0, 12)];
const V1: &str = "outbound|80|v1|reviews.demo.svc.cluster.local";
const V2: &str = "outbound|80|v2|reviews.demo.svc.cluster.local";

const ROUTES: &str = "apiVersion: networking.meshd.io/v1alpha1
kind: DestinationRule
metadata: {name: reviews, namespace: demo}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {name: reviews, namespace: demo}
spec:
  hosts: [reviews]
  http:
  - match: [{sourceLabels: {track: a}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {name: reviews-here, namespace: other}
spec:
  hosts: [reviews.demo.svc.cluster.local]
  exportTo: [.]
  http:
  - route: [{destination: {host: reviews.demo.svc.cluster.local, subset: v2}}]
";

/// `n` requests on one keep-alive connection from a pod's app: the answering pods.
fn answers(pod: &Pod, n: usize) -> anyhow::Result<Vec<String>> {
    let target: SocketAddr = (REVIEWS_VIP, 80).into();
    pod.ns.run_in(Some(APP), move || {
        let mut conn = HttpConn::connect(target)?;
        let mut out = Vec::new();
        for _ in 0..n {
            let (status, body) = conn.get("/")?;
            anyhow::ensure!(status == 200, "status {status}: {body}");
            out.push(body);
        }
        Ok(out)
    })
}

/// Waits until `pod`'s requests reach `want` (its routes arrived), then checks 30 more all do.
fn all_answered_by(mesh: &Mesh, pod: &str, want: &str) {
    let pod = mesh.pod(pod).unwrap();
    wait_for(&format!("{} routed to {want}", pod.name), READY, || {
        Ok(answers(pod, 1).is_ok_and(|a| a == [want]))
    })
    .unwrap();
    let got = answers(pod, 30).unwrap();
    assert!(got.iter().all(|p| p == want), "{}: {got:?}", pod.name);
}

#[test]
fn source_labels_and_a_private_export_route_each_client_by_its_pod() {
    let test = "source_labels_and_a_private_export_route_each_client_by_its_pod";
    let Some(envoy) = meshd_testbed::prereq::require_envoy(
        test,
        &["iptables", "setpriv"],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    ) else {
        return;
    };
    let mut mesh = Mesh::start(Path::new(MESHD), &envoy).expect("control plane and bridge");
    for (name, app, namespace, ip) in CLIENTS {
        if namespace == meshd_testbed::mesh::NAMESPACE {
            mesh.declare_pod(name, app, ip).unwrap();
        } else {
            mesh.declare_pod_in(name, app, namespace, ip).unwrap();
        }
    }
    mesh.label_pod("frontend-0", "track", "a").unwrap();
    for (i, ip) in REVIEWS.iter().enumerate() {
        let name = format!("reviews-{i}");
        mesh.declare_pod(&name, "reviews", *ip).unwrap();
        mesh.label_pod(&name, "version", &format!("v{}", i + 1))
            .unwrap();
    }
    for (name, app, namespace, ip) in CLIENTS {
        mesh.start_pod_in(name, app, namespace, ip).unwrap();
    }
    for (i, ip) in REVIEWS.iter().enumerate() {
        mesh.start_pod(&format!("reviews-{i}"), "reviews", *ip)
            .unwrap();
    }
    mesh.wait_ready(READY).expect("every sidecar ready");
    mesh.write_config_file("routes.yaml", Some(ROUTES)).unwrap();
    for (name, ..) in CLIENTS {
        for (cluster, ip) in [(V1, REVIEWS[0]), (V2, REVIEWS[1])] {
            mesh.wait_endpoint(name, cluster, (ip, APP_PORT).into(), READY)
                .expect("the subset clusters");
        }
    }

    // The labelled client's match; the other demo client the rest; `other`'s client its own
    // namespace's VirtualService, which demo's clients never see.
    all_answered_by(&mesh, "frontend-0", "reviews-1");
    all_answered_by(&mesh, "frontend-1", "reviews-0");
    all_answered_by(&mesh, "client-0", "reviews-1");

    // Relabelled, frontend-1 moves to the match's route (a push to its Envoy alone).
    mesh.label_pod("frontend-1", "track", "a").unwrap();
    all_answered_by(&mesh, "frontend-1", "reviews-1");
    all_answered_by(&mesh, "frontend-0", "reviews-1");

    mesh.assert_no_rejections();
}
