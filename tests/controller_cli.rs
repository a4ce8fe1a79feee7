//! `meshd controller` as a process, without a cluster: bad flags exit 64 naming the flag; an API server
//! that cannot be reached is a one-line error naming it; and against a small mock API server (plain
//! HTTP, answering the lists and holding the watches open) the controller serves the webhook
//! certificate from the Secret (straight from the watch, no file), injects with the Mesh ConfigMap's settings over real TLS, records an
//! Event on the pod's owner, serves xDS, runs the operator (which competes for the Lease as
//! `--pod-name`), turns `/ready`, and exits 0 on SIGTERM within 5 s.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use meshd_tools::pki::DevCa;
use serde_json::{Value, json};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/admission");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kubeconfig(dir: &std::path::Path, server: &str) -> String {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"{server}\"}}\n\
             users:\n- name: u\n  user: {{token: test}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\n\
             current-context: x\n"
        ),
    )
    .expect("write kubeconfig");
    path.to_str().expect("utf-8 path").to_string()
}

#[test]
fn bad_flags_exit_64_naming_the_flag() {
    let cases: [(&[&str], &str); 4] = [
        (&["--xds-listen", "nope"], "--xds-listen"),
        (&["--webhook-url", "http://x/inject"], "--webhook-url"),
        (&["--webhook-listen", "9443"], "--webhook-listen"),
        (&["--discovery-address", "meshd"], "--discovery-address"),
    ];
    for (args, flag) in cases {
        let out = Command::new(MESHD)
            .arg("controller")
            .args(args)
            .output()
            .expect("meshd runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(
            stderr.contains(flag),
            "{args:?} does not name {flag}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
    let out = Command::new(MESHD)
        .arg("controller")
        .env("MESHD_XDS_LISTEN", "nope")
        .output()
        .expect("meshd runs");
    assert_eq!(out.status.code(), Some(64), "from the environment too");
}

#[test]
fn an_unreachable_api_server_is_a_one_line_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(dir.path(), "https://127.0.0.1:1");
    let out = Command::new(MESHD)
        .args(["--log-level", "off", "controller", "--kubeconfig", &config])
        .output()
        .expect("meshd runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("meshd: cannot reach the API server https://127.0.0.1:1/"),
        "{stderr}"
    );

    let out = Command::new(MESHD)
        .args(["controller", "--kubeconfig", "/nonexistent/kubeconfig"])
        .output()
        .expect("meshd runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--kubeconfig /nonexistent/kubeconfig"),
        "{stderr}"
    );
}

/// Just enough of an API server: `/version`, lists, watches held open, Event creation.
struct MockApi {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for MockApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl MockApi {
    fn start(objects: Vec<(&'static str, Value)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let objects = Arc::new(objects);
        let (log, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (objects, log, stopped) = (objects.clone(), log.clone(), stopped.clone());
                std::thread::spawn(move || serve_connection(conn, &objects, &log, &stopped));
            }
        });
        Self {
            port,
            requests,
            stop,
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

fn serve_connection(
    conn: TcpStream,
    objects: &[(&'static str, Value)],
    log: &Mutex<Vec<String>>,
    stop: &AtomicBool,
) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        log.lock().expect("lock").push(format!(
            "{method} {target} {}",
            String::from_utf8_lossy(&body)
        ));
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        if query.contains("watch=true") || query.contains("watch=1") {
            // A watch with nothing to say: held open until the test ends.
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
            }
            return;
        }
        let (status, answer) = if path == "/version" {
            (
                200,
                json!({"major": "1", "minor": "30", "gitVersion": "v1.30.2", "platform": "linux/amd64"}),
            )
        } else if method == "POST" {
            (201, serde_json::from_slice(&body).unwrap_or(Value::Null))
        } else if method == "GET" && (!query.is_empty() || objects.iter().any(|(p, _)| *p == path))
        {
            // A list (watchers page with `limit=`); a GET of one named object is a 404 below.
            let items: Vec<Value> = objects
                .iter()
                .filter(|(p, _)| *p == path)
                .map(|(_, o)| o.clone())
                .collect();
            (
                200,
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "7"}, "items": items}),
            )
        } else {
            // Includes the Lease the operator looks for before it creates one.
            (
                404,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
            )
        };
        let text = answer.to_string();
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            text.len()
        );
        if conn.write_all(head.as_bytes()).is_err() || conn.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn against_a_mock_api_server_it_serves_webhook_and_xds_and_exits_on_sigterm() {
    let ca = DevCa::new().expect("ca");
    let leaf = ca.issue(&["localhost"]).expect("leaf");
    let b64 = |s: &str| B64.encode(s.as_bytes());
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "meshd-webhook-tls", "namespace": "meshd-system", "resourceVersion": "5"},
        "data": {"tls.crt": b64(&leaf.cert_pem), "tls.key": b64(&leaf.key_pem), "ca.crt": b64(&ca.ca_pem())},
    });
    let configmap = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "meshd-mesh-default", "namespace": "meshd-system", "resourceVersion": "6"},
        "data": {"mesh.yaml": "proxy:\n  image: example.org/meshd-proxy:from-configmap\n"},
    });
    let api = MockApi::start(vec![
        ("/api/v1/namespaces/meshd-system/secrets", secret),
        ("/api/v1/namespaces/meshd-system/configmaps", configmap),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(dir.path(), &format!("http://127.0.0.1:{}", api.port));
    let (webhook, xds, metrics) = (free_port(), free_port(), free_port());
    // MESHD_CONTROLLER_BIN: measure another build (e.g. target/release/meshd) with the same scenario.
    let bin = std::env::var("MESHD_CONTROLLER_BIN").unwrap_or_else(|_| MESHD.to_string());
    let started = Instant::now();
    let child = Command::new(&bin)
        .args([
            "controller",
            "--kubeconfig",
            &config,
            "--pod-name",
            "meshd-test-0",
        ])
        .args(["--webhook-listen", &format!("127.0.0.1:{webhook}")])
        .args(["--xds-listen", &format!("127.0.0.1:{xds}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .args(["--discovery-address", "cp.example.org:15012"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("meshd controller starts");
    let mut child = Killed(child);

    wait_for("/ready answers 200", Duration::from_secs(30), || {
        http_get(metrics, "/ready").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    });
    let to_ready = started.elapsed();
    assert!(http_get(metrics, "/live").is_some_and(|r| r.starts_with("HTTP/1.1 200")));
    assert_eq!(
        common::served_leaf(webhook, &ca.ca_pem()).expect("TLS handshake"),
        common::der_of(&leaf.cert_pem),
        "the webhook serves the Secret's certificate"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", xds)).is_ok(),
        "xDS listens"
    );

    // Settings from the ConfigMap (a watch event may land just after /ready: retry briefly).
    let body = std::fs::read(format!("{FIXTURES}/deployment-reviews-pod.json")).expect("fixture");
    let mut patch = String::new();
    wait_for(
        "the ConfigMap's proxy image in the patch",
        Duration::from_secs(10),
        || {
            let (status, answer) =
                common::post_review(webhook, &ca.ca_pem(), &body).expect("webhook answers");
            assert_eq!(status, 200);
            let answer: Value = serde_json::from_slice(&answer).expect("json answer");
            assert_eq!(answer["response"]["allowed"], true, "{answer}");
            let encoded = answer["response"]["patch"].as_str().unwrap_or_default();
            patch = String::from_utf8(B64.decode(encoded).expect("base64 patch")).expect("utf-8");
            patch.contains("example.org/meshd-proxy:from-configmap")
        },
    );
    assert!(
        patch.contains("cp.example.org:15012"),
        "discovery address: {patch}"
    );

    wait_for(
        "an Event on the ReplicaSet",
        Duration::from_secs(10),
        || {
            api.requests()
                .iter()
                .any(|r| r.starts_with("POST /apis/events.k8s.io/v1/namespaces/shop/events"))
        },
    );
    wait_for(
        "the operator competing for the Lease as --pod-name",
        Duration::from_secs(10),
        || {
            api.requests().iter().any(|r| {
                r.starts_with("POST /apis/coordination.k8s.io/v1/namespaces/meshd-system/leases")
                    && r.contains(r#""holderIdentity":"meshd-test-0""#)
            })
        },
    );
    let metrics_text = http_get(metrics, "/metrics").expect("metrics");
    // One registry on 15014: the webhook's, the xDS server's and the operator's metrics.
    for family in [
        "meshd_injections_total{result=\"injected\"",
        "meshd_proxies_connected",
        "meshd_reconcile",
    ] {
        assert!(metrics_text.contains(family), "no {family}: {metrics_text}");
    }
    // The same server answers /debug/syncz for `meshd proxy-status`, named after --pod-name.
    let syncz = http_get(metrics, "/debug/syncz").expect("/debug/syncz");
    assert!(
        syncz.starts_with("HTTP/1.1 200")
            && syncz.contains(r#""controlPlane":{"name":"meshd-test-0""#),
        "{syncz}"
    );

    // The figure for docs/perf-controller.md: resident memory after 2 s idle with every watch open.
    std::thread::sleep(Duration::from_secs(2));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.0.id())).expect("status");
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    let requests = api.requests();
    let watches = requests.iter().filter(|r| r.contains("watch=true")).count();
    println!(
        "controller ({bin}): ready after {to_ready:?}; idle RSS {:.1} MiB; {} API requests by then, {watches} of them watches",
        rss_kib as f64 / 1024.0,
        requests.len()
    );

    let started = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .expect("kill")
            .success()
    );
    let code = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status.code();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still running 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
}

#[test]
fn without_the_webhook_secret_it_is_live_but_not_ready_and_a_bad_configmap_is_logged() {
    let configmap = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "meshd-mesh-default", "namespace": "meshd-system", "resourceVersion": "6"},
        "data": {"mesh.yaml": "proxy:\n  uid: many\n"},
    });
    let api = MockApi::start(vec![(
        "/api/v1/namespaces/meshd-system/configmaps",
        configmap,
    )]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(dir.path(), &format!("http://127.0.0.1:{}", api.port));
    let (webhook, xds, metrics) = (free_port(), free_port(), free_port());
    let child = Command::new(MESHD)
        .args([
            "--log-format",
            "json",
            "controller",
            "--kubeconfig",
            &config,
        ])
        .args(["--webhook-listen", &format!("127.0.0.1:{webhook}")])
        .args(["--xds-listen", &format!("127.0.0.1:{xds}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("meshd controller starts");
    let mut child = Killed(child);
    wait_for("xDS listening", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", xds)).is_ok()
    });
    for _ in 0..5 {
        let ready = http_get(metrics, "/ready").expect("/ready answers");
        assert!(
            !ready.starts_with("HTTP/1.1 200"),
            "ready without a webhook: {ready}"
        );
        assert!(http_get(metrics, "/live").is_some_and(|r| r.starts_with("HTTP/1.1 200")));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        TcpStream::connect(("127.0.0.1", webhook)).is_err(),
        "no webhook without a certificate"
    );

    assert!(
        Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .expect("kill")
            .success()
    );
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = child.0.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{stderr}");
    let parse_error = stderr
        .lines()
        .find(|l| l.contains("Mesh ConfigMap does not parse"))
        .unwrap_or_else(|| panic!("the bad ConfigMap is logged: {stderr}"));
    assert!(
        parse_error.contains("meshd-mesh-default") && parse_error.contains("proxy.uid"),
        "{parse_error}"
    );
    assert!(
        stderr.contains("webhook waits for its certificate from the Secret"),
        "{stderr}"
    );
    // Out of cluster without --discovery-address: sidecars would get an address that reaches nothing.
    let warning = stderr
        .lines()
        .find(|l| l.contains("runs outside the cluster"))
        .unwrap_or_else(|| panic!("the discovery address is questioned: {stderr}"));
    assert!(
        warning.contains("--discovery-address") && warning.contains("meshd.meshd-system.svc:15012"),
        "{warning}"
    );
}
