//! `meshd proxy-status` as a process against fixture `/debug/syncz` answers: straight at control planes'
//! metrics ports (`--control-plane`), and through a kubeconfig whose API server is a fake that lists the
//! EndpointSlices of Service meshd and proxies to each replica's pod. Tables are golden files
//! (`MESHD_BLESS=1` rewrites them); exit codes are 0 in sync, 1 out of sync or incomplete, 64 bad flags.

mod fake_http;

use std::process::{Command, Output};

use fake_http::{FakeHttp, route};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/syncz");
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/proxy-status");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture")
}

fn control_plane(fixture_name: &str) -> FakeHttp {
    FakeHttp::start(vec![route("/debug/syncz", 200, fixture(fixture_name))])
}

fn proxy_status(args: &[&str]) -> Output {
    Command::new(MESHD)
        .arg("proxy-status")
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("meshd runs")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// Compares with `tests/golden/proxy-status/NAME`; `MESHD_BLESS=1` writes it instead.
fn golden(name: &str, actual: &str) {
    let path = format!("{GOLDEN}/{name}");
    if std::env::var_os("MESHD_BLESS").is_some() {
        std::fs::create_dir_all(GOLDEN).expect("golden dir");
        std::fs::write(&path, actual).expect("bless");
        return;
    }
    let want =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e} (MESHD_BLESS=1)"));
    assert_eq!(actual, want, "{path}");
}

#[test]
fn a_synced_control_plane_is_a_table_and_exit_0() {
    let cp = control_plane("synced.json");
    let out = proxy_status(&["--control-plane", &cp.url()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    golden("synced.txt", &text(&out.stdout));
    assert_eq!(cp.requests(), ["GET /debug/syncz"]);
}

#[test]
fn json_output_carries_the_states_for_scripts() {
    let cp = control_plane("synced.json");
    let out = proxy_status(&["--control-plane", &cp.url(), "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["controlPlanes"][0]["name"], "meshd-7d9f6-a1b2c");
    assert_eq!(v["controlPlanes"][0]["source"], cp.url());
    assert_eq!(v["controlPlanes"][0]["proxies"], 2);
    let names: Vec<&str> = v["proxies"]
        .as_array()
        .expect("proxies")
        .iter()
        .map(|p| p["nodeId"].as_str().expect("nodeId"))
        .collect();
    assert_eq!(names, ["db-0.data", "web-1.shop"], "sorted by name");
    let web = &v["proxies"][1];
    assert_eq!(web["states"]["CDS"], json!({"state": "SYNCED"}));
    assert_eq!(web["states"]["SDS"], json!({"state": "NOT_SENT"}));
    assert_eq!(
        web["version"], "9be04d1f0a3c7712",
        "the newest sent, in full"
    );
    assert_eq!(web["controlPlane"], "meshd-7d9f6-a1b2c");
    assert_eq!(v["proxies"][0]["mesh"], Value::Null);
    assert_eq!(v["proxies"][0]["podFound"], false);
}

#[test]
fn one_proxy_shows_versions_and_the_nack_detail_and_exits_1_when_nacked() {
    let cp = control_plane("replica-a.json");
    let out = proxy_status(&["--control-plane", &cp.url(), "reviews-1.shop"]);
    assert_eq!(out.status.code(), Some(1), "LDS is NACKED");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("filter chain 'inbound|8080||' has a duplicate match"),
        "{stdout}"
    );
    golden("one-proxy.txt", &stdout);
    let out = proxy_status(&["--control-plane", &cp.url(), "reviews-1.shop", "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["states"]["LDS"]["state"], "NACKED");
    assert_eq!(v["types"]["LDS"]["nackCount"], 3);
    assert_eq!(
        v["states"]["EDS"],
        json!({"state": "STALE", "ageMillis": 12000})
    );
}

#[test]
fn a_proxy_that_is_not_connected_exits_1_saying_so() {
    let cp = control_plane("synced.json");
    let out = proxy_status(&["--control-plane", &cp.url(), "gone-1.shop"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("proxy gone-1.shop is not connected to control plane meshd-7d9f6-a1b2c"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn stale_beyond_the_bound_exits_1_and_within_it_0() {
    // replica-b: api-0.shop's EDS was sent 45 s before the replica answered.
    let cp = control_plane("replica-b.json");
    let out = proxy_status(&["--control-plane", &cp.url()]);
    assert_eq!(out.status.code(), Some(1), "45s > the default 30s");
    assert!(
        text(&out.stdout).contains("STALE (45s)"),
        "{}",
        text(&out.stdout)
    );
    let out = proxy_status(&["--control-plane", &cp.url(), "--stale-after", "1m"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = Command::new(MESHD)
        .args(["proxy-status", "--control-plane", &cp.url()])
        .env("MESHD_STALE_AFTER", "50s")
        .output()
        .expect("meshd runs");
    assert_eq!(out.status.code(), Some(0), "the flag reads its env var");
}

#[test]
fn two_replicas_are_merged_and_the_newest_connection_wins() {
    let (a, b) = (
        control_plane("replica-a.json"),
        control_plane("replica-b.json"),
    );
    let out = proxy_status(&["--control-plane", &a.url(), "--control-plane", &b.url()]);
    assert_eq!(out.status.code(), Some(1), "reviews-1.shop is NACKED");
    golden("two-replicas.txt", &text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("api-0.shop reconnected: shown from meshd-7d9f6-x9y8z; an older stream on meshd-7d9f6-a1b2c"),
        "{stderr}"
    );
}

#[test]
fn a_replica_that_does_not_answer_is_named_and_exits_1() {
    let good = control_plane("synced.json");
    let missing = FakeHttp::start(vec![]);
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://127.0.0.1:{}", l.local_addr().expect("addr").port())
    };
    let out = proxy_status(&[
        "--control-plane",
        &format!("{},{},{refused}", good.url(), missing.url()),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an incomplete answer is not 'in sync'"
    );
    assert!(
        text(&out.stdout).contains("web-1.shop"),
        "the answers there are shown"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "control plane {}: GET {}/debug/syncz: 404: this control plane does not serve /debug/syncz",
            missing.url(),
            missing.url()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
    // No replica answered: the table prints nothing; JSON still says who did not answer.
    let out = proxy_status(&["--control-plane", &refused]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let out = proxy_status(&["--control-plane", &refused, "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["controlPlanes"][0]["source"], refused);
    assert!(
        v["controlPlanes"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("Connection refused")),
        "{v}"
    );
    assert_eq!(v["proxies"], json!([]));
}

#[test]
fn bad_flags_exit_64_naming_the_flag() {
    let cases: [(&[&str], &str); 5] = [
        (&["--control-plane", "ftp://x"], "--control-plane"),
        (&["--control-plane", "https://x:15014"], "plain HTTP"),
        (&["--stale-after", "30"], "--stale-after"),
        (&["-o", "yaml"], "--output"),
        (
            &["--kubeconfig", "k", "--control-plane", "http://x:1"],
            "--control-plane",
        ),
    ];
    for (args, flag) in cases {
        let out = proxy_status(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(
            stderr.contains(flag),
            "{args:?} does not name {flag}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}

const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/meshd-system/endpointslices";

/// Service meshd's EndpointSlice with two replicas (one not ready: it is asked anyway).
fn endpoint_slices(metrics_port: u16) -> String {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
        "metadata": {"resourceVersion": "9"},
        "items": [{
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "meshd-abcde", "namespace": "meshd-system",
                         "labels": {"kubernetes.io/service-name": "meshd"}},
            "addressType": "IPv4",
            "ports": [
                {"name": "https-webhook", "port": 9443, "protocol": "TCP"},
                {"name": "http-metrics", "port": metrics_port, "protocol": "TCP"}
            ],
            "endpoints": [
                {"addresses": ["10.0.0.5"], "conditions": {"ready": true},
                 "targetRef": {"kind": "Pod", "name": "meshd-7d9f6-a1b2c", "namespace": "meshd-system"}},
                {"addresses": ["10.0.0.6"], "conditions": {"ready": false},
                 "targetRef": {"kind": "Pod", "name": "meshd-7d9f6-x9y8z", "namespace": "meshd-system"}}
            ]
        }]
    })
    .to_string()
}

fn pod_proxy(pod: &str, port: u16) -> String {
    format!("/api/v1/namespaces/meshd-system/pods/{pod}:{port}/proxy/debug/syncz")
}

#[test]
fn through_the_api_server_each_replica_is_asked_by_its_pod_and_merged() {
    let api = FakeHttp::start(vec![
        route(SLICES, 200, endpoint_slices(15014)),
        route(
            &pod_proxy("meshd-7d9f6-a1b2c", 15014),
            200,
            fixture("replica-a.json"),
        ),
        route(
            &pod_proxy("meshd-7d9f6-x9y8z", 15014),
            200,
            fixture("replica-b.json"),
        ),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = api.kubeconfig(dir.path());
    let out = proxy_status(&["--kubeconfig", kubeconfig.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // The same answers give the same table as asking the metrics ports directly.
    golden("two-replicas.txt", &text(&out.stdout));
    let mut requests = api.requests();
    requests.sort();
    assert_eq!(
        requests,
        [
            format!("GET {}", pod_proxy("meshd-7d9f6-a1b2c", 15014)),
            format!("GET {}", pod_proxy("meshd-7d9f6-x9y8z", 15014)),
            format!("GET {SLICES}?&labelSelector=kubernetes.io%2Fservice-name%3Dmeshd"),
        ]
    );
    // The default kubeconfig is $KUBECONFIG.
    let out = Command::new(MESHD)
        .args(["proxy-status", "-o", "json"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("meshd runs");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["controlPlanes"][1]["source"], "pods/meshd-7d9f6-x9y8z");
    assert_eq!(v["proxies"][0]["nodeId"], "api-0.shop");
    assert_eq!(v["proxies"][0]["controlPlane"], "meshd-7d9f6-x9y8z");
    assert_eq!(
        v["proxies"][0]["superseded"][0]["controlPlane"],
        "meshd-7d9f6-a1b2c"
    );
}

#[test]
fn the_metrics_port_comes_from_the_endpoint_slice() {
    let api = FakeHttp::start(vec![
        route(SLICES, 200, endpoint_slices(9090)),
        route(
            &pod_proxy("meshd-7d9f6-a1b2c", 9090),
            200,
            fixture("synced.json"),
        ),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = api.kubeconfig(dir.path());
    let out = proxy_status(&["--kubeconfig", kubeconfig.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "one replica did not answer");
    assert!(text(&out.stdout).contains("web-1.shop"));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("control plane pods/meshd-7d9f6-x9y8z: GET pods/meshd-7d9f6-x9y8z:9090/proxy/debug/syncz: 404 (the server could not find the requested resource): the pod is gone, or its control plane does not serve /debug/syncz"),
        "{stderr}"
    );
}

#[test]
fn forbidden_and_empty_answers_from_the_api_server_say_what_to_do() {
    let forbidden = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"endpointslices.discovery.k8s.io is forbidden: User \"dev\" cannot list resource \"endpointslices\" in API group \"discovery.k8s.io\" in the namespace \"meshd-system\"","reason":"Forbidden","code":403}"#;
    let api = FakeHttp::start(vec![route(SLICES, 403, forbidden)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = api.kubeconfig(dir.path());
    let out = proxy_status(&["--kubeconfig", kubeconfig.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("forbidden: needs list endpointslices.discovery.k8s.io in meshd-system"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let empty = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
                       "metadata": {}, "items": []});
    let api = FakeHttp::start(vec![route(SLICES, 200, empty.to_string())]);
    let kubeconfig = api.kubeconfig(dir.path());
    let out = proxy_status(&["--kubeconfig", kubeconfig.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Service meshd in meshd-system has no endpoints"),
        "{}",
        text(&out.stderr)
    );
}
