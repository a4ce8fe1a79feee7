//! More of VirtualService and DestinationRule through real Envoy (SPEC §8), beside
//! `tests/traffic_envoy.rs`: the connection pool's pending-request overflow answered 503 by Envoy,
//! rewrite, redirect and header operations as the backend and the client see them, and a bad
//! resource beside them that changes nothing any proxy has. The
//! testbed's mesh (file-fed `meshd controlplane`, pods in network namespaces with capture,
//! `meshd agent` + Envoy); traffic by the reviews VIP from frontend-0's app. Envoy's own stats prove
//! that it rejected nothing.
//!
//! Needs root, `ip netns`, iptables, setpriv and the Envoy venv; prints SKIP otherwise, fails under CI=true.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use meshd_testbed::app::{HttpConn, Response};
use meshd_testbed::mesh::{APP, APP_PORT, Mesh, Pod, REVIEWS_OUTBOUND, REVIEWS_VIP, wait_for};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const READY: Duration = Duration::from_secs(30);
const FRONTEND: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 10);
const REVIEWS: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 11);
const TARGET: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(REVIEWS_VIP), 80);

/// One connection to reviews and one request waiting for it: a third concurrent request overflows.
const SMALL_POOL: &str = "apiVersion: networking.meshd.io/v1alpha1
kind: DestinationRule
metadata: {name: reviews, namespace: demo}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1}
";

fn start(envoy: &Path) -> Mesh {
    let mut mesh = Mesh::start(Path::new(MESHD), envoy).expect("control plane and bridge");
    mesh.start_frontend_and_reviews(FRONTEND, &[REVIEWS], false, READY)
        .expect("every sidecar ready");
    mesh.wait_endpoint(
        "frontend-0",
        REVIEWS_OUTBOUND,
        (REVIEWS, APP_PORT).into(),
        READY,
    )
    .expect("reviews-0 in frontend-0's cluster");
    mesh
}

/// `n` requests at once, each on its own connection from frontend-0's app: every answer.
fn concurrent(pod: &Pod, n: usize) -> Vec<Response> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            pod.ns
                .spawn(Some(APP), || {
                    HttpConn::connect(TARGET)?.exchange("GET", "/", &[])
                })
                .expect("a client thread in frontend-0")
        })
        .collect();
    calls
        .into_iter()
        .map(|c| {
            c.join()
                .expect("client thread")
                .expect("an answer through the VIP")
        })
        .collect()
}

#[test]
fn requests_beyond_the_connection_pool_get_envoys_503_overflow() {
    let test = "requests_beyond_the_connection_pool_get_envoys_503_overflow";
    let Some(envoy) = meshd_testbed::prereq::require_envoy(
        test,
        &["iptables", "setpriv"],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    ) else {
        return;
    };
    let mesh = start(&envoy);
    // A slow backend: concurrent requests pile up at frontend-0's sidecar.
    mesh.pod("reviews-0")
        .unwrap()
        .answer_after(Duration::from_millis(1500));
    let frontend = mesh.pod("frontend-0").unwrap();

    // Without a DestinationRule (Envoy's default thresholds): every one answered.
    let got = concurrent(frontend, 6);
    assert!(
        got.iter().all(|r| r.status == 200),
        "{:?}",
        got.iter().map(|r| r.status).collect::<Vec<_>>()
    );

    mesh.write_config_file("pool.yaml", Some(SMALL_POOL))
        .unwrap();
    wait_for("the circuit breakers", READY, || {
        Ok(frontend
            .admin("/config_dump?resource=dynamic_active_clusters")
            .is_ok_and(|d| d.contains("\"max_pending_requests\": 1")))
    })
    .unwrap();
    let got = concurrent(frontend, 6);
    let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
    let overflowed: Vec<&Response> = got.iter().filter(|r| r.status == 503).collect();
    println!("6 concurrent requests, 1 connection + 1 pending allowed: {statuses:?}");
    // At most one on the connection and one waiting for it (the first may itself be pending while
    // the connection opens): four or five overflow.
    assert!(
        (4..=5).contains(&overflowed.len()),
        "6 at once, 1 in flight and 1 pending allowed: {statuses:?}"
    );
    assert!(
        overflowed
            .iter()
            .all(|r| r.header("x-envoy-overloaded") == Some("true")),
        "Envoy's overflow answer: {overflowed:?}"
    );
    assert!(got.iter().any(|r| r.status == 200), "{statuses:?}");
    let pending_overflow = frontend
        .cluster_stat(REVIEWS_OUTBOUND, "upstream_rq_pending_overflow")
        .unwrap();
    assert_eq!(pending_overflow, overflowed.len() as u64);

    for pod in mesh.pods() {
        assert_eq!(pod.rejections(), Vec::<String>::new(), "{}", pod.name);
    }
}

const REWRITES: &str = "apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {name: reviews, namespace: demo}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /old}}]
    rewrite: {uri: /new, authority: reviews.internal}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /moved}}]
    redirect: {uri: /elsewhere, authority: shop.example.com, scheme: https, port: 8443, redirectCode: 308}
  - match: [{uri: {exact: /gone}}]
    redirect: {uri: /here}
  - headers:
      request:
        set: {x-set: one}
        add: {x-added: two}
        remove: [x-drop]
      response:
        set: {x-answer: three}
        add: {x-answer-added: four}
        remove: [content-type]
    retries: {attempts: 2, retryRemoteLocalities: true}
    route:
    - destination: {host: reviews}
      headers: {request: {set: {x-destination: five}}}
";

/// A VirtualService for frontend naming a subset nobody defines.
const BAD: &str = "apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {name: frontend, namespace: demo}
spec:
  hosts: [frontend]
  http:
  - route: [{destination: {host: frontend, subset: v9}}]
";

#[test]
fn rewrites_redirects_and_header_operations_reach_the_backend_and_the_client() {
    let test = "rewrites_redirects_and_header_operations_reach_the_backend_and_the_client";
    let Some(envoy) = meshd_testbed::prereq::require_envoy(
        test,
        &["iptables", "setpriv"],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    ) else {
        return;
    };
    let mesh = start(&envoy);
    mesh.write_config_file("rewrites.yaml", Some(REWRITES))
        .unwrap();
    let frontend = mesh.pod("frontend-0").unwrap();
    wait_for("the VirtualService's routes", READY, || {
        Ok(frontend
            .admin("/config_dump?resource=dynamic_route_configs")
            .is_ok_and(|d| d.contains("reviews.internal")))
    })
    .unwrap();
    let reviews = mesh.pod("reviews-0").unwrap();
    let seen = |path: &str| {
        reviews
            .received()
            .into_iter()
            .rev()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("reviews-0 never received {path}: {:?}", reviews.received()))
    };

    // rewrite: the backend sees the new prefix and Host; the client an ordinary answer.
    let r = frontend.call(TARGET, "GET", "/old/page-1", &[]).unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "reviews-0"));
    assert_eq!(seen("/new/page-1").header("host"), Some("reviews.internal"));

    // redirect: Envoy answers; nothing reaches the backend.
    let before = reviews.received().len();
    let r = frontend.call(TARGET, "GET", "/moved/a", &[]).unwrap();
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some("https://shop.example.com:8443/elsewhere")
    );
    let r = frontend
        .call(TARGET, "GET", "/gone", &[("host", "reviews")])
        .unwrap();
    assert_eq!(r.status, 301, "Istio's default redirect code: {r:?}");
    assert_eq!(r.header("location"), Some("http://reviews/here"));
    assert!(
        !reviews.received()[before..]
            .iter()
            .any(|r| r.path.starts_with("/moved") || r.path == "/gone"),
        "a redirect reached the backend"
    );

    // Header operations: request ones as the backend sees them, response ones as the client does.
    let sent = [("x-set", "zero"), ("x-added", "client"), ("x-drop", "yes")];
    let r = frontend.call(TARGET, "GET", "/headers-1", &sent).unwrap();
    assert_eq!(r.status, 200);
    let got = seen("/headers-1");
    let values = |name: &str| -> Vec<&str> {
        got.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values("x-set"), ["one"], "set replaces: {got:?}");
    assert_eq!(values("x-added"), ["client", "two"], "add appends: {got:?}");
    assert!(values("x-drop").is_empty(), "remove: {got:?}");
    assert_eq!(
        values("x-destination"),
        ["five"],
        "the destination's: {got:?}"
    );
    assert_eq!(r.header("x-answer"), Some("three"), "{r:?}");
    assert_eq!(r.header("x-answer-added"), Some("four"), "{r:?}");
    assert_eq!(r.header("content-type"), None, "response remove: {r:?}");

    // A bad resource beside them: refused, and nothing is pushed to any proxy.
    let pushes = |pod: &Pod| -> u64 {
        pod.stats("update_success")
            .map(|s| s.values().sum())
            .unwrap_or_default()
    };
    let before: Vec<u64> = mesh.pods().iter().map(pushes).collect();
    assert!(before.iter().all(|n| *n > 0), "pushes counted: {before:?}");
    mesh.write_config_file("bad.yaml", Some(BAD)).unwrap();
    wait_for("the bad VirtualService refused", READY, || {
        Ok(mesh.control_plane_log().contains(
            "bad.yaml: VirtualService demo/frontend: spec.http[0].route[0].destination.subset",
        ))
    })
    .unwrap();
    // Past the debounce (50 ms) and a push's way to Envoy.
    std::thread::sleep(Duration::from_secs(1));
    let after: Vec<u64> = mesh.pods().iter().map(pushes).collect();
    assert_eq!(after, before, "xDS updates accepted by each pod");
    let r = frontend.call(TARGET, "GET", "/old/page-2", &[]).unwrap();
    assert_eq!(r.status, 200);
    seen("/new/page-2");

    for pod in mesh.pods() {
        assert_eq!(pod.rejections(), Vec::<String>::new(), "{}", pod.name);
    }
}
