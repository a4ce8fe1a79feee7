//! VirtualService and DestinationRule through real Envoy (SPEC §8): the testbed's mesh (file-fed
//! `meshd controlplane`, pods in network namespaces with capture, `meshd agent` + Envoy), traffic by
//! the reviews VIP from frontend-0's app, counted by which pod answered. Envoy's own stats prove
//! that it rejected nothing.
//!
//! Needs root, `ip netns`, iptables, setpriv and the Envoy venv; prints SKIP otherwise, fails under CI=true.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use meshd_testbed::app::HttpConn;
use meshd_testbed::mesh::{APP, APP_PORT, INBOUND, Mesh, Pod, REVIEWS_VIP, wait_for};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const READY: Duration = Duration::from_secs(30);
const FRONTEND: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 10);
const REVIEWS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 44, 0, 11), Ipv4Addr::new(10, 44, 0, 12)];
const V2: &str = "outbound|80|v2|reviews.demo.svc.cluster.local";

const CANARY: &str = "apiVersion: networking.meshd.io/v1alpha1
kind: DestinationRule
metadata: {name: reviews, namespace: demo}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 2s}
      http: {http1MaxPendingRequests: 100, maxRetries: 3, idleTimeout: 30s, maxRequestsPerConnection: 1000}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
---
apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {name: reviews, namespace: demo}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /only-v1}}]
    route: [{destination: {host: reviews, subset: v1}}]
    corsPolicy: {allowOrigins: [{exact: 'https://shop.example'}], allowMethods: [GET], maxAge: 1h}
  - match: [{uri: {prefix: /mirrored}}]
    route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v2}
  - match: [{uri: {prefix: /teapot}}]
    route: [{destination: {host: reviews}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
  - match: [{uri: {prefix: /slow}}]
    route: [{destination: {host: reviews}}]
    fault: {delay: {fixedDelay: 400ms, percentage: {value: 100}}}
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v2}, weight: 10}
";

/// An update of the VirtualService naming a subset nobody defines: rejected, the canary stays.
const BAD_UPDATE: &str = "apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {name: reviews, namespace: demo}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v3}}]
";

/// `n` requests on one keep-alive connection from frontend-0's app; the answering pods.
fn answers(
    pod: &Pod,
    path: &str,
    headers: &[(&'static str, &'static str)],
    n: usize,
) -> Vec<String> {
    let target: SocketAddr = (REVIEWS_VIP, 80).into();
    let path = path.to_string();
    let headers = headers.to_vec();
    pod.ns
        .run_in(Some(APP), move || {
            let mut conn = HttpConn::connect(target)?;
            let mut out = Vec::new();
            for _ in 0..n {
                let (status, body) = conn.get_with(&path, &headers)?;
                anyhow::ensure!(status == 200, "status {status}: {body}");
                out.push(body);
            }
            Ok(out)
        })
        .expect("requests through the VIP")
}

#[test]
fn a_canary_splits_by_weight_and_header_mirrors_faults_inject_and_a_bad_update_changes_nothing() {
    let test =
        "a_canary_splits_by_weight_and_header_faults_inject_and_a_bad_update_changes_nothing";
    let Some(envoy) = meshd_testbed::prereq::require_envoy(
        test,
        &["iptables", "setpriv"],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    ) else {
        return;
    };
    let mut mesh = Mesh::start(Path::new(MESHD), &envoy).expect("control plane and bridge");
    mesh.start_frontend_and_reviews(FRONTEND, &REVIEWS, true, READY)
        .expect("every sidecar ready");
    mesh.write_config_file("canary.yaml", Some(CANARY)).unwrap();
    let endpoint: SocketAddr = (REVIEWS[1], APP_PORT).into();
    mesh.wait_endpoint("frontend-0", V2, endpoint, READY)
        .expect("the v2 subset cluster holds reviews-1 only");
    let frontend = mesh.pod("frontend-0").unwrap();
    wait_for("the canary's routes", READY, || {
        Ok(frontend
            .admin("/config_dump?resource=dynamic_route_configs")
            .is_ok_and(|d| d.contains("only-v1")))
    })
    .unwrap();

    // 90/10 over 400 requests, within a few points.
    let got = answers(frontend, "/", &[], 400);
    let v2 = got.iter().filter(|p| *p == "reviews-1").count();
    assert!(got.iter().all(|p| p.starts_with("reviews-")), "{got:?}");
    assert!((20..=60).contains(&v2), "v2 got {v2} of 400 (10% expected)");
    // The header canary and the path route: every request to its subset.
    let jason = answers(frontend, "/", &[("end-user", "jason")], 30);
    assert!(jason.iter().all(|p| p == "reviews-1"), "{jason:?}");
    let v1 = answers(frontend, "/only-v1/x", &[], 30);
    assert!(v1.iter().all(|p| p == "reviews-0"), "{v1:?}");

    // Mirroring: v1 answers every /mirrored request, and v2's sidecar receives a copy of each.
    let v2_pod = mesh.pod("reviews-1").unwrap();
    let copies_before = v2_pod.cluster_stat(INBOUND, "upstream_rq_total").unwrap();
    let mirrored = answers(frontend, "/mirrored", &[], 20);
    assert!(mirrored.iter().all(|p| p == "reviews-0"), "{mirrored:?}");
    wait_for("20 copies at v2", READY, || {
        Ok(v2_pod.cluster_stat(INBOUND, "upstream_rq_total")? >= copies_before + 20)
    })
    .unwrap();

    // Fault injection: every /teapot request aborted with 418, every /slow one delayed.
    let target: SocketAddr = (REVIEWS_VIP, 80).into();
    let (status, _) = frontend
        .ns
        .run_in(Some(APP), move || HttpConn::connect(target)?.get("/teapot"))
        .unwrap();
    assert_eq!(status, 418);
    // Each /slow request is timed on its own against 390 ms, not 400: Envoy's timer may fire a
    // fraction of a millisecond early (two delays once measured 799.25 ms). An undelayed
    // request here takes a few milliseconds, so the bound still tells the fault from none.
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let slow = answers(frontend, "/slow", &[], 1);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(390), "/slow took {took:?}");
        assert!(slow.iter().all(|p| p.starts_with("reviews-")), "{slow:?}");
    }

    // A rejected update: logged with its file, and the canary still in force.
    mesh.write_config_file(
        "canary.yaml",
        Some(&format!(
            "{}---\n{BAD_UPDATE}",
            CANARY.split("---\n").next().unwrap()
        )),
    )
    .unwrap();
    wait_for("the rejection logged", READY, || {
        let log = mesh.control_plane_log();
        Ok(
            log.contains("VirtualService demo/reviews: spec.http[0].route[0].destination.subset")
                && log.contains("is not a subset of any DestinationRule"),
        )
    })
    .unwrap();
    assert!(
        mesh.control_plane_log()
            .contains("canary.yaml: VirtualService demo/reviews")
    );
    let jason = answers(frontend, "/", &[("end-user", "jason")], 10);
    assert!(
        jason.iter().all(|p| p == "reviews-1"),
        "the last accepted version stays: {jason:?}"
    );

    mesh.assert_no_rejections();
}

/// `n` requests on fresh connections from frontend-0's app: (status, answering pod) of each.
fn statuses(pod: &Pod, n: usize) -> Vec<(u16, String)> {
    let target: SocketAddr = (REVIEWS_VIP, 80).into();
    pod.ns
        .run_in(Some(APP), move || {
            let mut conn = HttpConn::connect(target)?;
            (0..n).map(|_| conn.get("/")).collect()
        })
        .expect("requests through the VIP")
}

const RETRIES: &str = "apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {name: reviews, namespace: demo}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    retries: {attempts: 3, retryOn: 5xx}
";

const EJECT: &str = "apiVersion: networking.meshd.io/v1alpha1
kind: DestinationRule
metadata: {name: reviews, namespace: demo}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1m, maxEjectionPercent: 100}
";

#[test]
fn a_retry_hides_a_failing_pod_and_outlier_detection_ejects_it() {
    let test = "a_retry_hides_a_failing_pod_and_outlier_detection_ejects_it";
    let Some(envoy) = meshd_testbed::prereq::require_envoy(
        test,
        &["iptables", "setpriv"],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    ) else {
        return;
    };
    let mut mesh = Mesh::start(Path::new(MESHD), &envoy).expect("control plane and bridge");
    mesh.start_frontend_and_reviews(FRONTEND, &REVIEWS, false, READY)
        .expect("every sidecar ready");
    let cluster = "outbound|80||reviews.demo.svc.cluster.local";
    for ip in REVIEWS {
        mesh.wait_endpoint("frontend-0", cluster, (ip, APP_PORT).into(), READY)
            .unwrap();
    }
    mesh.pod("reviews-1").unwrap().answer_with(503);
    let frontend = mesh.pod("frontend-0").unwrap();

    // Without a retry policy a 503 is not retried (Istio's default): about half fail.
    let failed = statuses(frontend, 100)
        .iter()
        .filter(|(s, _)| *s == 503)
        .count();
    assert!(
        (15..=85).contains(&failed),
        "{failed} of 100 failed without retries"
    );

    // With retries on 5xx (and previous_hosts) every request succeeds, from the healthy pod.
    mesh.write_config_file("retries.yaml", Some(RETRIES))
        .unwrap();
    wait_for("the retry policy", READY, || {
        Ok(frontend
            .admin("/config_dump?resource=dynamic_route_configs")
            .is_ok_and(|d| d.contains("\"retry_on\": \"5xx,retriable-status-codes\"")))
    })
    .unwrap();
    let got = statuses(frontend, 100);
    assert!(
        got.iter().all(|(s, p)| *s == 200 && p == "reviews-0"),
        "{got:?}"
    );

    // No retries, but outlier detection: the failing pod is ejected after its first 5xx.
    mesh.write_config_file("retries.yaml", None).unwrap();
    mesh.write_config_file("eject.yaml", Some(EJECT)).unwrap();
    wait_for("the outlier detection", READY, || {
        Ok(frontend
            .admin("/config_dump?resource=dynamic_active_clusters")
            .is_ok_and(|d| d.contains("outlier_detection"))
            && frontend
                .admin("/config_dump?resource=dynamic_route_configs")
                .is_ok_and(|d| !d.contains("5xx,retriable")))
    })
    .unwrap();
    let _ = statuses(frontend, 10);
    wait_for("reviews-1 ejected", READY, || {
        Ok(frontend
            .cluster_stat(cluster, "outlier_detection.ejections_active")
            .is_ok_and(|n| n >= 1))
    })
    .unwrap();
    let got = statuses(frontend, 50);
    assert!(
        got.iter().all(|(s, p)| *s == 200 && p == "reviews-0"),
        "{got:?}"
    );

    mesh.assert_no_rejections();
}

const TIMEOUT_AND_HASH: &str = "apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {name: reviews, namespace: demo}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /hurry}}]
    route: [{destination: {host: reviews}}]
    timeout: 200ms
  - route: [{destination: {host: reviews}}]
---
apiVersion: networking.meshd.io/v1alpha1
kind: DestinationRule
metadata: {name: reviews, namespace: demo}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: x-user}}
";

/// One request on a fresh connection: (status, body).
fn one(pod: &Pod, path: &'static str, headers: &[(&'static str, &'static str)]) -> (u16, String) {
    let target: SocketAddr = (REVIEWS_VIP, 80).into();
    let headers = headers.to_vec();
    pod.ns
        .run_in(Some(APP), move || {
            HttpConn::connect(target)?.get_with(path, &headers)
        })
        .expect("a request through the VIP")
}

#[test]
fn a_route_timeout_answers_504_and_a_consistent_hash_keeps_a_user_on_one_pod() {
    let test = "a_route_timeout_answers_504_and_a_consistent_hash_keeps_a_user_on_one_pod";
    let Some(envoy) = meshd_testbed::prereq::require_envoy(
        test,
        &["iptables", "setpriv"],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    ) else {
        return;
    };
    let mut mesh = Mesh::start(Path::new(MESHD), &envoy).expect("control plane and bridge");
    mesh.start_frontend_and_reviews(FRONTEND, &REVIEWS, false, READY)
        .expect("every sidecar ready");
    mesh.write_config_file("reviews.yaml", Some(TIMEOUT_AND_HASH))
        .unwrap();
    let frontend = mesh.pod("frontend-0").unwrap();
    let cluster = "outbound|80||reviews.demo.svc.cluster.local";
    wait_for("the ring hash and the routes", READY, || {
        Ok(frontend
            .admin("/config_dump?resource=dynamic_active_clusters")
            .is_ok_and(|d| d.contains("RING_HASH"))
            && frontend
                .admin("/config_dump?resource=dynamic_route_configs")
                .is_ok_and(|d| d.contains("/hurry")))
    })
    .unwrap();
    for ip in REVIEWS {
        mesh.wait_endpoint("frontend-0", cluster, (ip, APP_PORT).into(), READY)
            .unwrap();
    }

    // One user always reaches one pod; several users reach both.
    let users: [&'static str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let mut seen = std::collections::BTreeSet::new();
    for user in users {
        let first = one(frontend, "/", &[("x-user", user)]).1;
        for _ in 0..5 {
            assert_eq!(
                one(frontend, "/", &[("x-user", user)]).1,
                first,
                "user {user} moved"
            );
        }
        seen.insert(first);
    }
    assert_eq!(seen.len(), 2, "eight users all on one pod: {seen:?}");

    // Slow pods: the route with a 200 ms timeout answers 504, the other one waits.
    for pod in ["reviews-0", "reviews-1"] {
        mesh.pod(pod)
            .unwrap()
            .answer_after(Duration::from_millis(600));
    }
    let (status, _) = one(frontend, "/hurry", &[]);
    assert_eq!(status, 504);
    let (status, _) = one(frontend, "/", &[]);
    assert_eq!(
        status, 200,
        "no timeout unless set (not Envoy's 15 s either)"
    );

    mesh.assert_no_rejections();
}

/// A TCP Service beside `reviews` (same pods, port 9000 to the app's port), with subsets and a
/// VirtualService whose `tcp[]` route splits connections 70/30 between them.
const TCP_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
const TCP_SPLIT: &str = "apiVersion: v1
kind: Service
metadata: {name: reviews-tcp, namespace: demo}
spec:
  clusterIP: 10.96.0.20
  selector: {app: reviews}
  ports: [{name: tcp-echo, port: 9000, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: reviews-tcp-1
  namespace: demo
  labels: {kubernetes.io/service-name: reviews-tcp}
addressType: IPv4
ports: [{name: tcp-echo, port: 8080}]
endpoints:
- addresses: [10.44.0.11]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: reviews-0, namespace: demo}
- addresses: [10.44.0.12]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: reviews-1, namespace: demo}
---
apiVersion: networking.meshd.io/v1alpha1
kind: DestinationRule
metadata: {name: reviews-tcp, namespace: demo}
spec:
  host: reviews-tcp
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {name: reviews-tcp, namespace: demo}
spec:
  hosts: [reviews-tcp]
  tcp:
  - route:
    - {destination: {host: reviews-tcp, subset: v1}, weight: 70}
    - {destination: {host: reviews-tcp, subset: v2}, weight: 30}
";

#[test]
fn a_tcp_route_splits_connections_by_weight() {
    let test = "a_tcp_route_splits_connections_by_weight";
    let Some(envoy) = meshd_testbed::prereq::require_envoy(
        test,
        &["iptables", "setpriv"],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    ) else {
        return;
    };
    let mut mesh = Mesh::start(Path::new(MESHD), &envoy).expect("control plane and bridge");
    mesh.start_frontend_and_reviews(FRONTEND, &REVIEWS, true, READY)
        .expect("every sidecar ready");
    mesh.write_config_file("tcp.yaml", Some(TCP_SPLIT)).unwrap();
    let v2: SocketAddr = (REVIEWS[1], APP_PORT).into();
    mesh.wait_endpoint(
        "frontend-0",
        "outbound|9000|v2|reviews-tcp.demo.svc.cluster.local",
        v2,
        READY,
    )
    .expect("the v2 subset cluster holds reviews-1");
    let frontend = mesh.pod("frontend-0").unwrap();
    wait_for("the weighted tcp_proxy", READY, || {
        Ok(frontend
            .admin("/config_dump?resource=dynamic_listeners")
            .is_ok_and(|d| d.contains("outbound|9000|v1|reviews-tcp.demo.svc.cluster.local")))
    })
    .unwrap();

    // 300 connections, one request each: the split is per connection, within a few points of 70/30.
    let target: SocketAddr = (TCP_VIP, 9000).into();
    let got: Vec<String> = frontend
        .ns
        .run_in(Some(APP), move || {
            (0..300)
                .map(|_| {
                    let (status, body) = HttpConn::connect(target)?.get("/")?;
                    anyhow::ensure!(status == 200, "status {status}: {body}");
                    Ok(body)
                })
                .collect()
        })
        .expect("connections through the TCP VIP");
    let to_v2 = got.iter().filter(|p| *p == "reviews-1").count();
    println!("tcp[] 70/30: v2 (reviews-1) got {to_v2} of 300 connections");
    assert!(got.iter().all(|p| p.starts_with("reviews-")), "{got:?}");
    assert!(
        (60..=120).contains(&to_v2),
        "v2 got {to_v2} of 300 connections (90 expected)"
    );
    mesh.assert_no_rejections();
}
