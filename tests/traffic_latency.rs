//! What a route with a retry policy and a fault filter (0%) costs in real Envoy against a plain route
//! (issue 10's figure): the testbed's mesh (file-fed `meshd controlplane`, pods in network namespaces
//! with capture, `meshd agent` + Envoy), one VirtualService with three routes to the same reviews pod,
//! requests interleaved one by one over three keep-alive connections from frontend-0's app. Prints
//! p50/p99 per route (`-- --nocapture`; `MESHD_LATENCY_REQUESTS`, default 2,000 per route); asserts
//! only that every request succeeded on the route it names and that Envoy rejected nothing.
//!
//! Needs root, `ip netns`, iptables, setpriv and the Envoy venv; prints SKIP otherwise, fails under CI=true.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use meshd_testbed::app::HttpConn;
use meshd_testbed::load::quantile;
use meshd_testbed::mesh::{APP, Mesh, REVIEWS_VIP, wait_for};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const READY: Duration = Duration::from_secs(30);
const FRONTEND: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 10);
const REVIEWS: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 11);
const WARMUP: usize = 100;

/// `/policy`: retries (3 attempts, per-try timeout) and a fault filter injecting nothing (0% abort,
/// 0% delay); `/bare`: no retry policy at all (`attempts: 0`); everything else, the plain route: no
/// fields but the destination, so Istio's default retry policy (SPEC §8), as every route has.
const ROUTES: &str = "apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {name: reviews, namespace: demo}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /policy}}]
    route: [{destination: {host: reviews}}]
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: 5xx}
    fault:
      abort: {httpStatus: 503, percentage: {value: 0}}
      delay: {fixedDelay: 1s, percentage: {value: 0}}
  - match: [{uri: {prefix: /bare}}]
    route: [{destination: {host: reviews}}]
    retries: {attempts: 0}
  - route: [{destination: {host: reviews}}]
";

const PATHS: [&str; 3] = ["/plain", "/policy", "/bare"];

#[test]
fn a_route_with_retries_and_a_zero_percent_fault_against_a_plain_route() {
    let test = "a_route_with_retries_and_a_zero_percent_fault_against_a_plain_route";
    let Some(envoy) = meshd_testbed::prereq::require_envoy(
        test,
        &["iptables", "setpriv"],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    ) else {
        return;
    };
    let n: usize = std::env::var("MESHD_LATENCY_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut mesh = Mesh::start(Path::new(MESHD), &envoy).expect("control plane and bridge");
    mesh.declare_pod("frontend-0", "frontend", FRONTEND)
        .unwrap();
    mesh.start_pod("frontend-0", "frontend", FRONTEND).unwrap();
    mesh.declare_pod("reviews-0", "reviews", REVIEWS).unwrap();
    mesh.start_pod("reviews-0", "reviews", REVIEWS).unwrap();
    mesh.wait_ready(READY).expect("every sidecar ready");
    mesh.write_config_file("routes.yaml", Some(ROUTES)).unwrap();
    let frontend = mesh.pod("frontend-0").unwrap();
    wait_for("the three routes", READY, || {
        Ok(frontend
            .admin("/config_dump?resource=dynamic_route_configs")
            .is_ok_and(|d| {
                d.contains("\"prefix\": \"/policy\"")
                    && d.contains("envoy.filters.http.fault")
                    && d.contains("\"prefix\": \"/bare\"")
            }))
    })
    .unwrap();

    let target: SocketAddr = (REVIEWS_VIP, 80).into();
    let samples = frontend
        .ns
        .run_in(Some(APP), move || {
            let mut conns = PATHS
                .iter()
                .map(|_| HttpConn::connect(target))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut out: [Vec<Duration>; 3] = Default::default();
            for i in 0..WARMUP + n {
                // Rotate which route goes first, so no route always follows another.
                for k in 0..PATHS.len() {
                    let r = (i + k) % PATHS.len();
                    let started = Instant::now();
                    let (status, body) = conns[r].get(PATHS[r])?;
                    let took = started.elapsed();
                    anyhow::ensure!(
                        status == 200 && body == "reviews-0",
                        "{}: {status} {body}",
                        PATHS[r]
                    );
                    if i >= WARMUP {
                        out[r].push(took);
                    }
                }
            }
            Ok(out)
        })
        .expect("requests through the VIP");

    let [plain, policy, bare] = &samples;
    let q = |s: &[Duration]| (quantile(s, 0.5), quantile(s, 0.99));
    let ((p50, p99), (r50, r99), (b50, b99)) = (q(plain), q(policy), q(bare));
    println!(
        "{n} requests per route, interleaved over three keep-alive connections (frontend-0 app -> reviews VIP -> both sidecars -> reviews-0):"
    );
    println!("plain route (Istio's default retry policy):      p50 {p50:?}  p99 {p99:?}");
    println!("no retry policy (attempts: 0):                    p50 {b50:?}  p99 {b99:?}");
    println!("retries + fault filter at 0% (abort and delay):   p50 {r50:?}  p99 {r99:?}");
    let delta = |a: Duration, b: Duration| a.as_secs_f64() * 1e6 - b.as_secs_f64() * 1e6;
    println!(
        "retries + fault add over the plain route: p50 {:+.0} µs ({:+.1}%)  p99 {:+.0} µs ({:+.1}%)",
        delta(r50, p50),
        100.0 * delta(r50, p50) / (p50.as_secs_f64() * 1e6),
        delta(r99, p99),
        100.0 * delta(r99, p99) / (p99.as_secs_f64() * 1e6),
    );
    for s in &samples {
        assert_eq!(s.len(), n, "every timed request answered");
    }
    mesh.assert_no_rejections();
}
