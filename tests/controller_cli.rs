//! `meshd controller` as a process, without a cluster: bad flags exit 64 naming the flag; an API server
//! that cannot be reached is a one-line error naming it; and against a small mock API server (plain
//! HTTP, answering the lists and holding the watches open) the controller serves the webhook
//! certificate from the Secret (straight from the watch, no file), injects with the Mesh ConfigMap's settings over real TLS, records an
//! Event on the pod's owner, serves xDS, runs the operator (which competes for the Lease as
//! `--pod-name`), turns `/ready`, and exits 0 on SIGTERM within 5 s. As leader it creates the mesh CA
//! Secret, serves xDS and the CA over TLS only with a certificate from it, reviews tokens with the API
//! server, and writes the root into `meshd-ca-root`.

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
/// The token the mock API server's TokenReview authenticates (as `system:serviceaccount:shop:web`).
const KNOWN_TOKEN: &str = "shop-web-projected-token";
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
        } else if method == "POST" && path == "/apis/authentication.k8s.io/v1/tokenreviews" {
            // One token the API server knows: shop/web's, for audience meshd.
            let mut review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if review["spec"]["token"] == KNOWN_TOKEN {
                review["status"] = json!({
                    "authenticated": true,
                    "audiences": review["spec"]["audiences"].clone(),
                    "user": {"username": "system:serviceaccount:shop:web"},
                });
            }
            (201, review)
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
    // Gateway credentials: Secrets cluster-wide, but only those of type kubernetes.io/tls (SPEC §10).
    let secrets: Vec<&String> = requests
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/secrets"))
        .collect();
    assert!(!secrets.is_empty(), "the TLS Secrets are watched");
    for r in &secrets {
        assert!(
            r.contains("fieldSelector=type%3Dkubernetes.io%2Ftls"),
            "every cluster-wide Secret request is field-selected: {r}"
        );
    }
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

/// The bodies POSTed to `path` (kube's client may add an empty query), as JSON.
fn posts(api: &MockApi, path: &str) -> Vec<Value> {
    let prefix = format!("POST {path}");
    api.requests()
        .iter()
        .filter_map(|r| r.strip_prefix(&prefix))
        .filter_map(|rest| rest.strip_prefix("? ").or_else(|| rest.strip_prefix(' ')))
        .filter_map(|body| serde_json::from_str::<Value>(body).ok())
        .collect()
}

/// The bodies POSTed to `path` that name `name`.
fn posted(api: &MockApi, path: &str, name: &str) -> Vec<Value> {
    posts(api, path)
        .into_iter()
        .filter(|v| v["metadata"]["name"] == name)
        .collect()
}

/// SPEC §9 in `meshd controller`: the leader creates Secret `meshd-ca` (the key never in the log), xDS
/// and the CA are served over TLS only, with a certificate from that CA for `meshd.meshd-system.svc` and
/// the `--discovery-address` host, every request is checked with a TokenReview for audience `meshd` (a
/// token the API server does not know: UNAUTHENTICATED; a known one: a certificate for its account's
/// SPIFFE identity whatever the CSR names; no token on ADS: UNAUTHENTICATED), and the root goes into
/// `meshd-ca-root`.
#[test]
fn the_leader_makes_the_mesh_ca_and_serves_xds_and_the_ca_over_tls_with_token_reviews() {
    let ca = DevCa::new().expect("ca");
    let leaf = ca.issue(&["localhost"]).expect("leaf");
    let b64 = |s: &str| B64.encode(s.as_bytes());
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "meshd-webhook-tls", "namespace": "meshd-system", "resourceVersion": "5"},
        "data": {"tls.crt": b64(&leaf.cert_pem), "tls.key": b64(&leaf.key_pem), "ca.crt": b64(&ca.ca_pem())},
    });
    let namespace = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop", "resourceVersion": "3"},
    });
    let api = MockApi::start(vec![
        ("/api/v1/namespaces/meshd-system/secrets", secret),
        ("/api/v1/namespaces", namespace),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(dir.path(), &format!("http://127.0.0.1:{}", api.port));
    let (webhook, xds, metrics) = (free_port(), free_port(), free_port());
    let log_path = dir.path().join("controller.log");
    let child = Command::new(MESHD)
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
        .args(["--discovery-address", "10.1.2.3:15012"])
        .env("MESHD_LOG_LEVEL", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .spawn()
        .expect("meshd controller starts");
    let _child = Killed(child);

    wait_for("/ready answers 200", Duration::from_secs(30), || {
        http_get(metrics, "/ready").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    });
    let created = posted(&api, "/api/v1/namespaces/meshd-system/secrets", "meshd-ca");
    assert_eq!(
        created.len(),
        1,
        "the leader creates meshd-ca once: {:?}",
        api.requests()
    );
    let data = |key: &str| {
        String::from_utf8(
            B64.decode(created[0]["data"][key].as_str().expect(key))
                .expect("base64"),
        )
        .expect("utf-8")
    };
    let (root, key) = (data("root-cert.pem"), data("ca-key.pem"));
    assert!(root.contains("BEGIN CERTIFICATE") && key.contains("PRIVATE KEY"));

    // TLS only: the listener presents a certificate from the new CA for the SPEC's name and the host.
    let served = served_leaf_named(xds, &root, "meshd.meshd-system.svc").expect("TLS handshake");
    let (_, cert) = x509_parser::parse_x509_certificate(&served).expect("x509");
    use x509_parser::extensions::GeneralName;
    let sans = cert
        .subject_alternative_name()
        .expect("SAN extension")
        .expect("SANs")
        .value
        .general_names
        .clone();
    assert!(
        sans.contains(&GeneralName::DNSName("meshd.meshd-system.svc"))
            && sans.contains(&GeneralName::IPAddress(&[10, 1, 2, 3])),
        "{sans:?}"
    );
    let mut plain = TcpStream::connect(("127.0.0.1", xds)).expect("connect");
    plain
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .expect("write");
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = [0u8; 64];
    let n = plain.read(&mut answer).unwrap_or(0);
    assert!(
        n == 0 || answer[0] == 0x15,
        "a plaintext HTTP/2 client gets a TLS alert or nothing, not HTTP/2: {:?}",
        &answer[..n]
    );

    // CreateCertificate over that TLS: the token is reviewed by the API server for audience meshd.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (refused, ads, issued) = runtime.block_on(async {
        use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
        use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
        let address: meshd_translate::XdsAddress =
            format!("127.0.0.1:{xds}").parse().expect("address");
        let tls = meshd_ca::client::ClientTls {
            ca_pem: root.as_bytes().to_vec(),
            server_name: "meshd.meshd-system.svc".into(),
        };
        let channel = meshd_ca::client::connect(&address, Some(&tls))
            .await
            .expect("TLS to the CA");
        let refused = meshd_ca::client::create_certificate(
            channel.clone(),
            "a-token-the-api-server-does-not-know",
            meshd_ca::proto::IstioCertificateRequest::default(),
        )
        .await;
        // A reviewed token gets its account's identity, whatever the CSR names.
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["admin.kube-system".to_string()])
            .expect("params");
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://cluster.local/ns/kube-system/sa/admin"
                .try_into()
                .expect("uri"),
        ));
        let csr = params.serialize_request(&key).expect("csr").pem().expect("pem");
        let issued = meshd_ca::client::create_certificate(
            channel.clone(),
            KNOWN_TOKEN,
            meshd_ca::proto::IstioCertificateRequest {
                csr,
                ..Default::default()
            },
        )
        .await
        .expect("a certificate for a reviewed token");
        // An ADS stream without a token is refused before any config is sent.
        let requests = tokio_stream::iter([DeltaDiscoveryRequest::default()]);
        let ads = AggregatedDiscoveryServiceClient::new(channel)
            .delta_aggregated_resources(requests)
            .await
            .map(|_| ());
        (refused, ads, issued)
    });
    assert_eq!(
        refused.expect_err("refused").code(),
        tonic::Code::Unauthenticated
    );
    assert_eq!(
        ads.expect_err("ADS without a token").code(),
        tonic::Code::Unauthenticated
    );
    let chain = &issued.cert_chain;
    assert_eq!(ders_of(chain.last().expect("root")), ders_of(&root));
    let leaf = ders_of(&chain[0]);
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf[0]).expect("x509");
    let uris: Vec<String> = cert
        .subject_alternative_name()
        .expect("SAN extension")
        .expect("SANs")
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(uris, ["spiffe://cluster.local/ns/shop/sa/web"]);
    let metrics_text = http_get(metrics, "/metrics").expect("metrics");
    for line in [
        "meshd_certificate_requests_total{result=\"refused\"} 1",
        "meshd_certificate_requests_total{result=\"issued\"} 1",
    ] {
        assert!(metrics_text.contains(line), "no {line}: {metrics_text}");
    }
    let reviews = posts(&api, "/apis/authentication.k8s.io/v1/tokenreviews");
    assert_eq!(reviews.len(), 2, "one TokenReview per request");
    assert_eq!(reviews[0]["spec"]["audiences"], json!(["meshd"]));
    assert_eq!(
        reviews[0]["spec"]["token"],
        "a-token-the-api-server-does-not-know"
    );

    // The root, not an empty bundle, in the namespace's meshd-ca-root.
    wait_for(
        "meshd-ca-root in namespace shop with the root",
        Duration::from_secs(10),
        || {
            api.requests().iter().any(|r| {
                r.starts_with("PATCH /api/v1/namespaces/shop/configmaps/meshd-ca-root")
                    && r.contains(root.lines().nth(1).expect("a base64 line"))
            })
        },
    );
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(log.contains("mesh CA loaded"), "{log}");
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(
        !log.contains("PRIVATE KEY") && !log.contains(&key_body[..40]),
        "the CA key is never logged"
    );
    assert!(!log.contains("a-token-the-api-server-does-not-know") && !log.contains(KNOWN_TOKEN));
}

/// DERs of the certificates in `pem`.
fn ders_of(pem: &str) -> Vec<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.expect("pem").to_vec())
        .collect()
}

/// The leaf the TLS server on 127.0.0.1:`port` presents, verified against `root` for `name`.
fn served_leaf_named(port: u16, root: &str, name: &str) -> std::io::Result<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(root.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let conn = rustls::ClientConnection::new(
        Arc::new(config),
        rustls::pki_types::ServerName::try_from(name.to_string()).expect("name"),
    )
    .map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(("127.0.0.1", port))?);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    tls.conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or_else(|| std::io::Error::other("no peer certificate"))
}
