//! `/debug/syncz` and `meshd proxy-status --control-plane URL` with a real Envoy (TESTING.md "Real
//! Envoy"): Envoy from `meshd bootstrap` in its own network namespace (its fixed ports cannot collide),
//! the control plane on a Unix socket. SYNCED after start and after a change, gone after Envoy leaves
//! (`meshd controlplane` as a process); NACKED with Envoy's error when it rejects a cluster (an
//! in-process file-fed control plane whose test-only hook corrupts clusters on the wire), and exit 1.
//!
//! Needs root, `ip netns` and the Envoy venv (`.venv`); prints SKIP otherwise, fails under CI=true.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use meshd_testbed::NetNs;
use serde_json::Value;

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const BOUND: Duration = Duration::from_secs(15);
const NODE: &str = "client-0.demo";

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const MESH: &str = "apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec:\n  mtls: {mode: DISABLE}\n";

fn service(name: &str, vip: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: demo}}\nspec:\n  clusterIP: {vip}\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: {port}, targetPort: 18080}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: demo\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports: [{{name: http, port: 18080}}]\nendpoints:\n- addresses: [\"127.0.0.1\"]\n  conditions: {{ready: true}}\n"
    )
}

/// The config directory: the Mesh, the client's Pod and Service alpha.
fn config_dir() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    std::fs::write(d.join("mesh.yaml"), MESH)?;
    std::fs::write(
        d.join("client.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: client-0, namespace: demo, labels: {app: client}}\nspec:\n  serviceAccountName: client\n  containers: [{name: app, image: app}]\nstatus: {podIP: 10.1.0.5}\n",
    )?;
    std::fs::write(d.join("alpha.yaml"), service("alpha", "10.96.0.10", 80))?;
    Ok(dir)
}

/// Envoy in `ns`, bootstrapped by `meshd bootstrap` for `client-0.demo` against `socket`; `api`:
/// `delta` or `sotw`.
fn start_envoy(
    envoy: &Path,
    ns: &NetNs,
    dir: &Path,
    socket: &Path,
    api: &str,
) -> anyhow::Result<Guard> {
    let bootstrap = Command::new(MESHD)
        .args(["bootstrap", "--node-id", NODE, "--format", "json"])
        .args(["--xds-api", api])
        .args(["--label", "app=client", "--service-account", "client"])
        .args(["--pod-ip", "10.1.0.5"])
        .arg("--xds-address")
        .arg(format!("unix:{}", socket.display()))
        .output()?;
    if !bootstrap.status.success() {
        bail!(
            "meshd bootstrap: {}",
            String::from_utf8_lossy(&bootstrap.stderr)
        );
    }
    let file = dir.join("envoy.json");
    std::fs::write(&file, &bootstrap.stdout)?;
    let log = std::fs::File::create(dir.join("envoy.log"))?;
    let child = ns
        .command(envoy.to_str().context("envoy path")?)
        .arg("-c")
        .arg(&file)
        .args(["--disable-hot-restart", "--log-level", "info"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    Ok(Guard(child))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `meshd proxy-status --control-plane URL ARGS -o json`: (exit code, JSON, stderr).
fn proxy_status_json(url: &str, args: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(MESHD)
        .args(["proxy-status", "--control-plane", url, "-o", "json"])
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("meshd runs");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn proxy_status_text(url: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(MESHD)
        .args(["proxy-status", "--control-plane", url])
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("meshd runs");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// GET `/debug/syncz` from `addr` (plain HTTP/1.1).
fn syncz(addr: &str) -> Option<Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "GET /debug/syncz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") || !head.contains("application/json") {
        return None;
    }
    serde_json::from_str(body).ok()
}

/// The proxy's row of a `proxy-status -o json` answer.
fn row<'a>(json: &'a Value, node: &str) -> Option<&'a Value> {
    json["proxies"]
        .as_array()?
        .iter()
        .find(|p| p["nodeId"] == node)
}

fn state<'a>(json: &'a Value, node: &str, ty: &str) -> &'a str {
    row(json, node)
        .and_then(|p| p["states"][ty]["state"].as_str())
        .unwrap_or("")
}

/// Polls `check` until it returns `Some` or `BOUND` passes.
fn within<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    while started.elapsed() < BOUND {
        if let Some(v) = check() {
            eprintln!("{what}: {:?}", started.elapsed());
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {BOUND:?}");
}

fn prerequisites(test: &str) -> Option<PathBuf> {
    meshd_testbed::prereq::require_envoy(test, &["ip"], Path::new(env!("CARGO_MANIFEST_DIR")))
}

#[test]
fn proxy_status_shows_a_real_envoy_synced_after_start_and_after_a_change() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(envoy) = prerequisites("syncz_envoy synced") else {
        return;
    };
    let dir = config_dir().unwrap();
    let d = dir.path();
    let socket = d.join("xds.sock");
    let metrics = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{metrics}");
    let log = std::fs::File::create(d.join("controlplane.log")).unwrap();
    let _cp = Guard(
        Command::new(MESHD)
            .args([
                "controlplane",
                "--debounce",
                "50ms",
                "--rescan-interval",
                "1s",
            ])
            .args(["--metrics-listen", &metrics])
            .arg("--config-dir")
            .arg(d)
            .arg("--xds-listen")
            .arg(format!("unix:{}", socket.display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let ns = NetNs::new("syncz").unwrap();
    within("the control plane listens", || {
        socket.exists().then_some(())
    });
    let envoy_guard = start_envoy(&envoy, &ns, d, &socket, "delta").unwrap();

    // Connected and every type it asked for ACKed: exit 0 even with no staleness allowed.
    let first = within("proxy-status: SYNCED after start", || {
        let (code, json, _) = proxy_status_json(&url, &["--stale-after", "0s"]);
        let synced = ["CDS", "LDS", "EDS"]
            .iter()
            .all(|t| state(&json, NODE, t) == "SYNCED");
        (code == Some(0) && synced).then_some(json)
    });
    let proxy = row(&first, NODE).unwrap();
    assert_eq!(proxy["mesh"], "default", "{proxy}");
    assert_eq!(proxy["podFound"], true, "{proxy}");
    let cds_version = proxy["types"]["CDS"]["lastAck"]["version"].clone();
    assert!(cds_version.is_string(), "{proxy}");
    let (code, table) = proxy_status_text(&url, &[]);
    eprintln!("{table}");
    assert_eq!(code, Some(0), "{table}");
    let line = table.lines().find(|l| l.starts_with(NODE)).unwrap_or("");
    assert!(
        line.contains("SYNCED") && line.contains("default"),
        "{table}"
    );
    let report = syncz(&metrics).expect("/debug/syncz answers JSON");
    assert_eq!(report["proxies"][0]["nodeId"], NODE, "{report}");

    // A new Service: a new CDS version reaches Envoy and is ACKed.
    std::fs::write(d.join("beta.yaml"), service("beta", "10.96.0.20", 80)).unwrap();
    within("proxy-status: SYNCED after a change", || {
        let (code, json, _) = proxy_status_json(&url, &["--stale-after", "0s"]);
        let acked = &row(&json, NODE)?["types"]["CDS"]["lastAck"]["version"];
        (code == Some(0) && state(&json, NODE, "CDS") == "SYNCED" && *acked != cds_version)
            .then_some(())
    });
    let (code, one) = proxy_status_text(&url, &[NODE]);
    assert_eq!(code, Some(0), "{one}");
    assert!(one.contains("SYNCED"), "{one}");

    // Envoy leaves: its record goes, and asking for it is exit 1.
    drop(envoy_guard);
    within("the proxy leaves /debug/syncz", || {
        let report = syncz(&metrics)?;
        report["proxies"].as_array()?.is_empty().then_some(())
    });
    let (code, text) = proxy_status_text(&url, &[NODE]);
    assert_eq!(code, Some(1), "{text}");
}

/// Every cluster with a zero connect timeout: Envoy's validation refuses it (`value must be greater
/// than 0s`), meshd's translation never makes one.
fn break_clusters(
    ty: meshd_translate::ResourceType,
    any: &mut envoy_types::pb::google::protobuf::Any,
) {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use prost::Message;
    if ty != meshd_translate::ResourceType::Cluster {
        return;
    }
    let Ok(mut cluster) = Cluster::decode(any.value.as_slice()) else {
        return;
    };
    cluster.connect_timeout = Some(envoy_types::pb::google::protobuf::Duration {
        seconds: 0,
        nanos: 0,
    });
    any.value = cluster.encode_to_vec();
}

#[test]
fn a_config_envoy_rejects_is_nacked_with_its_error_and_exit_1_delta() {
    nacked_with_its_error("delta");
}

#[test]
fn a_config_envoy_rejects_is_nacked_with_its_error_and_exit_1_sotw() {
    nacked_with_its_error("sotw");
}

fn nacked_with_its_error(api: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(envoy) = prerequisites(&format!("syncz_envoy nacked {api}")) else {
        return;
    };
    let dir = config_dir().unwrap();
    let d = dir.path().to_path_buf();
    let socket = d.join("xds.sock");
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let url = format!("http://{metrics}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    // The file-fed control plane as `meshd controlplane` wires it, in-process for the hook.
    let server = runtime.block_on(async {
        let index = meshd_index::SharedIndex::default();
        let mut source =
            meshd_sources::FileSource::new(&d, index.clone()).with_rescan(Duration::from_secs(1));
        source.scan().unwrap();
        let mut registry = prometheus_client::registry::Registry::default();
        let options = meshd_xds::XdsOptions {
            debounce: Duration::from_millis(50),
            ..meshd_xds::XdsOptions::default()
        };
        let settings = meshd_translate::TranslateSettings {
            mesh_name: "default".into(),
            cluster_domain: "cluster.local".into(),
        };
        let server =
            meshd_xds::XdsServer::start(index, settings, options, &mut registry, cancel.clone());
        tokio::spawn(source.run(cancel.clone()));
        let syncz = meshd_xds::Syncz {
            proxies: server.proxies(),
            control_plane: meshd_api::syncz::ControlPlane {
                name: "in-process".into(),
                version: "test".into(),
            },
        };
        let (_ready, ready_rx) = tokio::sync::watch::channel(true);
        tokio::spawn(meshd_xds::serve_health(
            metrics,
            Arc::new(registry),
            ready_rx,
            syncz,
            cancel.clone(),
        ));
        let listen = meshd_translate::XdsAddress::Unix(socket.display().to_string());
        let s = server.clone();
        tokio::spawn(async move { s.serve(&listen, None).await });
        server
    });
    let ns = NetNs::new("nack").unwrap();
    within("the control plane listens", || {
        socket.exists().then_some(())
    });
    let _envoy = start_envoy(&envoy, &ns, &d, &socket, api).unwrap();
    within("SYNCED before the bad config", || {
        let (code, json, _) = proxy_status_json(&url, &["--stale-after", "0s"]);
        (code == Some(0) && state(&json, NODE, "CDS") == "SYNCED").then_some(())
    });

    // From now on clusters go out broken; a new Service makes a CDS push that Envoy must reject.
    server.rewrite_resources_for_tests(Some(Arc::new(break_clusters)));
    std::fs::write(d.join("beta.yaml"), service("beta", "10.96.0.20", 80)).unwrap();
    let json = within("proxy-status: NACKED", || {
        let (code, json, _) = proxy_status_json(&url, &[]);
        (code == Some(1) && state(&json, NODE, "CDS") == "NACKED").then_some(json)
    });
    let detail = row(&json, NODE).unwrap()["states"]["CDS"]["detail"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        detail.contains("ConnectTimeout") || detail.contains("connect_timeout"),
        "Envoy's error: {detail}"
    );
    let (code, one) = proxy_status_text(&url, &[NODE]);
    eprintln!("{one}");
    assert_eq!(code, Some(1), "{one}");
    assert!(one.contains("NACKED") && one.contains(&detail), "{one}");
    let report = syncz(&metrics.to_string()).expect("/debug/syncz");
    assert_eq!(report["proxies"][0]["api"], api, "{report}");
    let cds = &report["proxies"][0]["types"]["CDS"];
    assert_eq!(cds["lastNack"]["detail"], detail.as_str(), "{report}");
    assert!(cds["nackCount"].as_u64().unwrap_or(0) >= 1, "{report}");
    cancel.cancel();
}
