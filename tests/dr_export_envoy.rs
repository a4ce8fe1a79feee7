//! DestinationRules per client namespace through real Envoy (SPEC §8, Istio's lookup): a rule of the
//! client's namespace for another namespace's host replaces the service namespace's rule for that
//! namespace's clients only. Both rules define subset `pick` with other labels, so the subset
//! cluster of one name has other endpoints in each client's Envoy; a VirtualService routes every
//! request to it. Deleting the client namespace's rule sends its client back to the service's
//! subset; with the service's rule private to its namespace, the client has no such subset and gets
//! 503, as Istio's. The testbed's mesh (file-fed `meshd controlplane`, pods in network namespaces with
//! capture, `meshd agent` + Envoy); traffic by the reviews VIP, counted by which pod answered;
//! Envoy's own stats prove that it rejected nothing.
//!
//! Needs root, `ip netns`, iptables, setpriv and the Envoy venv; prints SKIP otherwise, fails under CI=true.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use meshd_testbed::mesh::{APP, APP_PORT, Mesh, REVIEWS_VIP, wait_for};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const READY: Duration = Duration::from_secs(30);
const FRONTEND: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 10);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 14);
/// reviews-0 is `version: v1`, reviews-1 `version: v2`.
const REVIEWS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 44, 0, 11), Ipv4Addr::new(10, 44, 0, 12)];
const PICK: &str = "outbound|80|pick|reviews.demo.svc.cluster.local";

/// demo's rule picks v1 for everyone; the VirtualService sends everything to `pick`.
const SERVICE_RULES: &str = "apiVersion: networking.meshd.io/v1alpha1
kind: DestinationRule
metadata: {name: reviews, namespace: demo}
spec:
  host: reviews
  subsets:
  - {name: pick, labels: {version: v1}}
---
apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {name: reviews, namespace: demo}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: pick}}]
";

/// `other`'s own rule for demo's host: its `pick` is v2.
const CLIENT_RULE: &str = "apiVersion: networking.meshd.io/v1alpha1
kind: DestinationRule
metadata: {name: reviews-for-other, namespace: other}
spec:
  host: reviews.demo.svc.cluster.local
  exportTo: [.]
  subsets:
  - {name: pick, labels: {version: v2}}
";

/// Waits until `pod`'s requests reach `want` (its clusters arrived), then checks 30 more all do.
fn all_answered_by(mesh: &Mesh, pod: &str, want: &str) {
    let pod = mesh.pod(pod).unwrap();
    let target: SocketAddr = (REVIEWS_VIP, 80).into();
    let answers = |n| meshd_testbed::load::answers(&pod.ns, APP, target, n);
    wait_for(&format!("{} routed to {want}", pod.name), READY, || {
        Ok(answers(1).is_ok_and(|a| a.keys().eq([want])))
    })
    .unwrap();
    let got = answers(30).unwrap();
    assert!(got.keys().eq([want]), "{}: {got:?}", pod.name);
}

#[test]
fn a_client_namespaces_destination_rule_applies_to_its_clients_only() {
    let test = "a_client_namespaces_destination_rule_applies_to_its_clients_only";
    let Some(envoy) = meshd_testbed::prereq::require_envoy(
        test,
        &["iptables", "setpriv"],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    ) else {
        return;
    };
    let mut mesh = Mesh::start(Path::new(MESHD), &envoy).expect("control plane and bridge");
    mesh.declare_pod("frontend-0", "frontend", FRONTEND)
        .unwrap();
    mesh.declare_pod_in("client-0", "client", "other", CLIENT)
        .unwrap();
    for (i, ip) in REVIEWS.iter().enumerate() {
        let name = format!("reviews-{i}");
        mesh.declare_pod(&name, "reviews", *ip).unwrap();
        mesh.label_pod(&name, "version", &format!("v{}", i + 1))
            .unwrap();
    }
    mesh.start_pod("frontend-0", "frontend", FRONTEND).unwrap();
    mesh.start_pod_in("client-0", "client", "other", CLIENT)
        .unwrap();
    for (i, ip) in REVIEWS.iter().enumerate() {
        mesh.start_pod(&format!("reviews-{i}"), "reviews", *ip)
            .unwrap();
    }
    mesh.wait_ready(READY).expect("every sidecar ready");
    let both = format!("{SERVICE_RULES}---\n{CLIENT_RULE}");
    mesh.write_config_file("rules.yaml", Some(&both)).unwrap();
    let endpoint = |i: usize| SocketAddr::from((REVIEWS[i], APP_PORT));
    mesh.wait_endpoint("frontend-0", PICK, endpoint(0), READY)
        .expect("demo's subset in demo's client");
    mesh.wait_endpoint("client-0", PICK, endpoint(1), READY)
        .expect("other's subset in other's client");

    // One subset name, two rules: each client's namespace decides which pods it reaches.
    all_answered_by(&mesh, "frontend-0", "reviews-0");
    all_answered_by(&mesh, "client-0", "reviews-1");

    // Without its own rule, other's client gets the service namespace's (a push of its variant's end).
    mesh.write_config_file("rules.yaml", Some(SERVICE_RULES))
        .unwrap();
    all_answered_by(&mesh, "client-0", "reviews-0");
    all_answered_by(&mesh, "frontend-0", "reviews-0");

    // demo's rule private to demo: other's client sees no rule, so no `pick` cluster, and the
    // route naming it gets Envoy's 503 (Istio's outcome), while Envoy accepts the config.
    let private = SERVICE_RULES.replace("  host: reviews\n", "  host: reviews\n  exportTo: [.]\n");
    mesh.write_config_file("rules.yaml", Some(&private))
        .unwrap();
    let client = mesh.pod("client-0").unwrap();
    let target: SocketAddr = (REVIEWS_VIP, 80).into();
    wait_for("other's client without the subset", READY, || {
        Ok(meshd_testbed::load::answers(&client.ns, APP, target, 1)
            .is_err_and(|e| e.to_string().contains(": 503 ")))
    })
    .unwrap();
    all_answered_by(&mesh, "frontend-0", "reviews-0");

    mesh.assert_no_rejections();
}
