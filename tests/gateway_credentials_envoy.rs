//! Gateway TLS credentials with real parts (SPEC §10): a file-fed control plane (in-process, for the
//! test-only resource hook), `meshd agent --gateway` running a real Envoy in its own network namespace,
//! and a `kubernetes.io/tls` Secret file. The SDS mechanics on their own: the hook turns the listener
//! of the pod's plain-HTTP Gateway into a hand-built TLS listener naming `kubernetes://web-cert` over
//! ADS (`tests/gateway_tls_envoy.rs` has the translated HTTPS servers end to end). Proven: the listener warms and the agent is not ready while the
//! Secret is missing; within 10 s of the Secret file appearing the agent is ready and Envoy serves that
//! certificate (checked with rustls against a test CA); within 10 s of the file changing new handshakes
//! get the new certificate while a connection opened before keeps working, and Envoy was not
//! restarted; a listener update naming a Secret that does not exist yet warms, and the agent is not
//! ready until that Secret appears. Over state-of-the-world ADS (Envoy without the agent), a missing
//! Secret is waited for without a NACK, and served once its file appears.
//!
//! Needs root, `ip netns` and the Envoy venv (`.venv`); prints SKIP otherwise, fails under CI=true.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use envoy_types::pb::envoy::config::core::v3::{
    Address, DataSource, SocketAddress, TransportSocket, address, data_source, socket_address,
    transport_socket,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteConfiguration, RouteMatch, VirtualHost, route, route_match,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext,
};
use envoy_types::pb::google::protobuf::Any;
use meshd_testbed::NetNs;
use meshd_testbed::pod::children;
use meshd_translate::ResourceType;
use prost::{Message, Name};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const NODE: &str = "gw-0.edge";
/// The tests share the hook's switch ([`SECOND_SECRET`]): one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// SPEC §10: a Secret's change is served within 10 s.
const SPEC_BOUND: Duration = Duration::from_secs(10);
const PORT: u16 = 18443;
const HOST: &str = "web.example.com";
const BODY: &str = "through the gateway";

const MESH: &str = "apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec:\n  mtls: {mode: DISABLE}\n";
/// The gateway pod, and a Gateway selecting it (plain HTTP on 7000: the listener the hook turns into
/// the TLS one).
const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: gw-0, namespace: edge, labels: {app: edge, meshd.io/gateway: edge}}\nspec:\n  serviceAccountName: edge\n  containers: [{name: agent, image: meshd}]\nstatus: {podIP: 10.1.0.9}\n---\napiVersion: networking.meshd.io/v1alpha1\nkind: Gateway\nmetadata: {name: edge, namespace: edge}\nspec:\n  selector: {app: edge}\n  servers: [{port: {number: 7000, name: http, protocol: HTTP}, hosts: [\"*\"]}]\n";
const HOOKED: &str = "0.0.0.0_7000";

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // Envoy outlives a killed agent (reparented); stop it first.
        for pid in children(self.0.id()) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn within<T>(what: &str, bound: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    while started.elapsed() < bound {
        if let Some(v) = check() {
            eprintln!("{what}: {:?}", started.elapsed());
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {bound:?}");
}

fn pack<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// A test CA and certificates for [`HOST`] it signs, each with its own common name.
struct Pki {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "gateway test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        Self {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// (certificate PEM, key PEM) with subject `CN=<cn>`.
    fn issue(&self, cn: &str) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec![HOST.to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.issuer.pem().as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

fn tls_secret(name: &str, cert: &str, key: &str) -> String {
    let indent = |pem: &str| -> String { pem.lines().map(|l| format!("    {l}\n")).collect() };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: edge}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(cert),
        indent(key)
    )
}

/// Writes `text` to `path` at once (a rename), as a mounted or edited Secret file changes.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Which Secret the hook's listener names: `web-cert`, or (later in the test) `api-cert`.
static SECOND_SECRET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What the hook puts in place of the gateway proxy's own listener: TLS on [`PORT`] with the
/// credential `kubernetes://web-cert` (or `api-cert`) over ADS, every request answered 200 with
/// [`BODY`].
fn gateway_listener(name: &str) -> Listener {
    let secret = if SECOND_SECRET.load(std::sync::atomic::Ordering::SeqCst) {
        "api-cert"
    } else {
        "web-cert"
    };
    let tls = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![meshd_translate::credential_sds_config(
                &meshd_translate::credential_sds_name(secret),
            )],
            ..Default::default()
        }),
        ..Default::default()
    };
    let route = Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        action: Some(route::Action::DirectResponse(DirectResponseAction {
            status: 200,
            body: Some(DataSource {
                specifier: Some(data_source::Specifier::InlineString(BODY.into())),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    };
    let hcm = HttpConnectionManager {
        stat_prefix: "gateway".into(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(
            RouteConfiguration {
                name: "gateway".into(),
                virtual_hosts: vec![VirtualHost {
                    name: "all".into(),
                    domains: vec!["*".into()],
                    routes: vec![route],
                    ..Default::default()
                }],
                ..Default::default()
            },
        )),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack(
                &Router::default(),
            ))),
            ..Default::default()
        }],
        ..Default::default()
    };
    Listener {
        name: name.into(),
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "0.0.0.0".into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(PORT.into())),
                ..Default::default()
            })),
        }),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(pack(&hcm))),
            }],
            transport_socket: Some(TransportSocket {
                name: "envoy.transport_sockets.tls".into(),
                config_type: Some(transport_socket::ConfigType::TypedConfig(pack(&tls))),
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The hook: the gateway proxy's own listener from its Gateway becomes the TLS listener (same name).
fn to_gateway_listener(ty: ResourceType, any: &mut Any) {
    if ty != ResourceType::Listener {
        return;
    }
    let Ok(listener) = Listener::decode(any.value.as_slice()) else {
        return;
    };
    if listener.name == HOOKED {
        any.value = gateway_listener(&listener.name).encode_to_vec();
    }
}

/// One HTTP/1.1 GET on an open stream (keep-alive): (status, body).
fn get_on(stream: &mut impl ReadWrite) -> anyhow::Result<(u16, String)> {
    write!(stream, "GET / HTTP/1.1\r\nhost: {HOST}\r\n\r\n")?;
    stream.flush()?;
    let mut raw: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        anyhow::ensure!(n > 0, "connection closed");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .context("content-length")?;
            if body.len() >= length {
                let status = head.split_whitespace().nth(1).context("status")?.parse()?;
                return Ok((status, body[..length].to_string()));
            }
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to the gateway (made in the caller's namespace), handshake done: the stream and
/// the leaf certificate served.
fn connect(config: &Arc<rustls::ClientConfig>) -> anyhow::Result<(Tls, Vec<u8>)> {
    let target: SocketAddr = format!("127.0.0.1:{PORT}").parse()?;
    let tcp = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let conn = rustls::ClientConnection::new(Arc::clone(config), ServerName::try_from(HOST)?)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    let leaf = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .context("no certificate")?
        .to_vec();
    Ok((tls, leaf))
}

fn subject_cn(der: &[u8]) -> String {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::prelude::X509Certificate::from_der(der).unwrap();
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// (status, body) of a plain GET from inside `ns`.
fn http_in(ns: &NetNs, port: u16, path: &str) -> (u16, String) {
    let path = path.to_string();
    ns.run_in(None, move || {
        let target: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )?;
        let mut raw = String::new();
        s.read_to_string(&mut raw)?;
        let (head, body) = raw.split_once("\r\n\r\n").context("no head")?;
        let status = head.split_whitespace().nth(1).context("status")?.parse()?;
        Ok((status, body.to_string()))
    })
    .unwrap_or((0, String::new()))
}

fn stat(ns: &NetNs, name: &str) -> Option<u64> {
    let (status, body) = http_in(ns, 15000, &format!("/stats?filter=^{name}$"));
    if status != 200 {
        return None;
    }
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .and_then(|v| v.trim().parse().ok())
}

fn start_agent(ns: &NetNs, dir: &Path, envoy: &Path, socket: &Path) -> anyhow::Result<Guard> {
    let log = std::fs::File::create(dir.join("agent.log"))?;
    let child = ns
        .command(MESHD)
        .args(["agent", "--gateway", "edge"])
        .args(["--pod-name", "gw-0", "--pod-namespace", "edge"])
        .args(["--service-account", "edge", "--pod-ip", "10.1.0.9"])
        .args(["--label", "app=edge,meshd.io/gateway=edge"])
        .args(["--concurrency", "1"])
        .arg("--discovery-address")
        .arg(format!("unix:{}", socket.display()))
        .arg("--token-file")
        .arg(dir.join("no-token"))
        .arg("--envoy-path")
        .arg(envoy)
        .arg("--config-dir")
        .arg(dir.join("proxy"))
        .env("RUST_LOG", "info")
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    Ok(Guard(child))
}

/// The file-fed control plane as `meshd controlplane` wires it, in-process for the hook.
struct ControlPlane {
    server: meshd_xds::XdsServer,
    cancel: tokio_util::sync::CancellationToken,
    _runtime: tokio::runtime::Runtime,
}

impl ControlPlane {
    fn start(config: &Path, socket: &Path) -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        let server = runtime.block_on(async {
            let index = meshd_index::SharedIndex::default();
            let mut source = meshd_sources::FileSource::new(config, index.clone())
                .with_rescan(Duration::from_secs(2));
            source.scan().unwrap();
            let options = meshd_xds::XdsOptions {
                debounce: Duration::from_millis(50),
                ..meshd_xds::XdsOptions::default()
            };
            let server = meshd_xds::XdsServer::start(
                index,
                meshd_translate::TranslateSettings::default(),
                options,
                &mut prometheus_client::registry::Registry::default(),
                cancel.clone(),
            );
            server.rewrite_resources_for_tests(Some(Arc::new(to_gateway_listener)));
            tokio::spawn(source.run(cancel.clone()));
            let listen = meshd_translate::XdsAddress::Unix(socket.display().to_string());
            let s = server.clone();
            tokio::spawn(async move { s.serve(&listen, None).await });
            server
        });
        within("the control plane listens", SPEC_BOUND, || {
            socket.exists().then_some(())
        });
        Self {
            server,
            cancel,
            _runtime: runtime,
        }
    }

    /// NACKs of the gateway proxy's SDS responses so far.
    fn sds_nacks(&self) -> u64 {
        self.server
            .proxies()
            .list()
            .iter()
            .filter(|p| p.node_id == NODE)
            .filter_map(|p| p.types.get(&meshd_api::syncz::XdsType::Sds))
            .map(|t| t.nack_count)
            .sum()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn prerequisites(test: &str) -> Option<PathBuf> {
    meshd_testbed::prereq::require_envoy(test, &["ip"], Path::new(env!("CARGO_MANIFEST_DIR")))
}

#[test]
fn a_gateway_serves_its_secret_over_sds_and_rotates_it_without_dropping_connections() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    SECOND_SECRET.store(false, std::sync::atomic::Ordering::SeqCst);
    let Some(envoy) = prerequisites("gateway_credentials_envoy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let config = d.join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("mesh.yaml"), MESH).unwrap();
    std::fs::write(config.join("gw-0.yaml"), POD).unwrap();
    let socket = d.join("xds.sock");
    let cp = ControlPlane::start(&config, &socket);
    let ns = NetNs::new("gwcred").unwrap();
    let agent = start_agent(&ns, &d, &envoy, &socket).unwrap();
    let log = || std::fs::read_to_string(d.join("agent.log")).unwrap_or_default();

    // No Secret yet: Envoy has the listener and asks for its certificate, which it waits for (at
    // start-up the whole server waits, so Envoy is not LIVE; a listener added later warms). The
    // gateway is not ready.
    let started = Instant::now();
    let warming_secret = || {
        http_in(&ns, 15000, "/config_dump?resource=dynamic_warming_secrets")
            .1
            .contains("kubernetes://web-cert")
    };
    while !warming_secret() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Envoy never asked for the gateway's certificate:\n{}\n{:?}",
            log(),
            http_in(&ns, 15000, "/listeners")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..10 {
        let (status, body) = http_in(&ns, 15021, "/healthz/ready");
        assert_eq!(status, 503, "ready without the certificate: {body}");
        assert!(
            body.contains("INITIALIZING") || body.contains("warming"),
            "{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The Secret file appears: ready, and Envoy serves that certificate.
    let pki = Pki::new();
    let client = pki.client_config();
    let (cert_v1, key_v1) = pki.issue("web v1");
    let secret_file = config.join("web-cert.yaml");
    replace_file(&secret_file, &tls_secret("web-cert", &cert_v1, &key_v1));
    within("ready after the Secret appeared", SPEC_BOUND, || {
        (http_in(&ns, 15021, "/healthz/ready").0 == 200).then_some(())
    });
    let c = client.clone();
    let (mut old, leaf) = ns
        .run_in(None, move || connect(&c))
        .expect("a TLS connection to the gateway");
    assert_eq!(subject_cn(&leaf), "web v1");
    let v1_der = CertificateDer::from_pem_slice(cert_v1.as_bytes()).unwrap();
    assert_eq!(leaf, v1_der.to_vec());
    assert_eq!(get_on(&mut old).unwrap(), (200, BODY.to_string()));
    let envoy_pid = children(agent.0.id());

    // Rotated: new handshakes get the new certificate within 10 s; the open connection goes on.
    let (cert_v2, key_v2) = pki.issue("web v2");
    replace_file(&secret_file, &tls_secret("web-cert", &cert_v2, &key_v2));
    within(
        "new handshakes get the rotated certificate",
        SPEC_BOUND,
        || {
            let c = client.clone();
            let (_, leaf) = ns.run_in(None, move || connect(&c)).ok()?;
            (subject_cn(&leaf) == "web v2").then_some(())
        },
    );
    assert_eq!(
        get_on(&mut old).unwrap(),
        (200, BODY.to_string()),
        "the connection opened before the rotation keeps working"
    );
    assert_eq!(children(agent.0.id()), envoy_pid, "Envoy was not restarted");
    assert_eq!(
        stat(&ns, "listener_manager.total_listeners_warming"),
        Some(0)
    );
    assert_eq!(http_in(&ns, 15021, "/healthz/ready").0, 200);

    // A listener update naming a Secret that does not exist yet warms (the old listener serves on):
    // the gateway is not ready until the Secret comes. (The Gateway's server turned TCP changes the
    // pod's own listener, so it is pushed again, through the hook naming `api-cert`.)
    SECOND_SECRET.store(true, std::sync::atomic::Ordering::SeqCst);
    replace_file(
        &config.join("gw-0.yaml"),
        &POD.replace("name: http, protocol: HTTP", "name: tcp, protocol: TCP"),
    );
    within("the updated listener warms", SPEC_BOUND, || {
        (stat(&ns, "listener_manager.total_listeners_warming") == Some(1)).then_some(())
    });
    let (status, body) = http_in(&ns, 15021, "/healthz/ready");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("warming"), "{body}");
    let (cert_api, key_api) = pki.issue("api v1");
    replace_file(
        &config.join("api-cert.yaml"),
        &tls_secret("api-cert", &cert_api, &key_api),
    );
    within(
        "ready once the new listener has its Secret",
        SPEC_BOUND,
        || (http_in(&ns, 15021, "/healthz/ready").0 == 200).then_some(()),
    );
    let c = client.clone();
    let (_, leaf) = ns.run_in(None, move || connect(&c)).unwrap();
    assert_eq!(subject_cn(&leaf), "api v1");
    assert_eq!(cp.sds_nacks(), 0, "Envoy accepted every SDS response");
    drop(cp);
    drop(agent);
}

/// Envoy bootstrapped by `meshd bootstrap` in `ns`, straight to the control plane (no agent), over
/// state-of-the-world ADS.
fn start_sotw_envoy(ns: &NetNs, dir: &Path, envoy: &Path, socket: &Path) -> anyhow::Result<Guard> {
    let bootstrap = std::process::Command::new(MESHD)
        .args([
            "bootstrap",
            "--node-id",
            NODE,
            "--format",
            "json",
            "--xds-api",
            "sotw",
        ])
        .args([
            "--label",
            "app=edge,meshd.io/gateway=edge",
            "--service-account",
            "edge",
        ])
        .args(["--pod-ip", "10.1.0.9"])
        .arg("--xds-address")
        .arg(format!("unix:{}", socket.display()))
        .output()?;
    anyhow::ensure!(
        bootstrap.status.success(),
        "meshd bootstrap: {}",
        String::from_utf8_lossy(&bootstrap.stderr)
    );
    let file = dir.join("envoy.json");
    std::fs::write(&file, &bootstrap.stdout)?;
    let log = std::fs::File::create(dir.join("envoy.log"))?;
    let child = ns
        .command(envoy.to_str().context("envoy path")?)
        .arg("-c")
        .arg(&file)
        .args(["--disable-hot-restart", "--log-level", "info"])
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()?;
    Ok(Guard(child))
}

#[test]
fn over_sotw_a_missing_secret_is_waited_for_without_a_nack() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    SECOND_SECRET.store(false, std::sync::atomic::Ordering::SeqCst);
    let Some(envoy) = prerequisites("gateway_credentials_envoy sotw") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let config = d.join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("mesh.yaml"), MESH).unwrap();
    std::fs::write(config.join("gw-0.yaml"), POD).unwrap();
    let socket = d.join("xds.sock");
    let cp = ControlPlane::start(&config, &socket);
    let ns = NetNs::new("gwsotw").unwrap();
    let _envoy = start_sotw_envoy(&ns, &d, &envoy, &socket).unwrap();
    within(
        "Envoy asks for the certificate",
        Duration::from_secs(30),
        || {
            http_in(&ns, 15000, "/config_dump?resource=dynamic_warming_secrets")
                .1
                .contains("kubernetes://web-cert")
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        cp.sds_nacks(),
        0,
        "no SDS answer Envoy rejects while the Secret is missing"
    );
    let pki = Pki::new();
    let client = pki.client_config();
    let (cert, key) = pki.issue("web sotw");
    replace_file(
        &config.join("web-cert.yaml"),
        &tls_secret("web-cert", &cert, &key),
    );
    let leaf = within("the certificate is served", SPEC_BOUND, || {
        let c = client.clone();
        ns.run_in(None, move || connect(&c))
            .ok()
            .map(|(_, leaf)| leaf)
    });
    assert_eq!(subject_cn(&leaf), "web sotw");
    assert_eq!(cp.sds_nacks(), 0);
}
