//! DestinationRule `tls` on real Envoy (SPEC §8), in the demo's mesh under PERMISSIVE: a file-fed
//! control plane with its CA, pods with capture, agents and Envoy in network namespaces. `DISABLE`
//! overrides auto mTLS (the server's sidecar sees no client certificate), `MESH_MUTUAL` brings it back,
//! and `SIMPLE` originates TLS to a backend outside the mesh that terminates TLS itself (`openssl
//! s_server`), verified against the CA file and SAN the rule names; a wrong SAN fails the handshake.
//! No proxy rejects any of it.
//!
//! Needs root, `ip netns`, iptables, setpriv, openssl and the Envoy venv; prints SKIP otherwise, fails
//! under CI=true.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meshd_testbed::app::{HttpConn, XFCC_PATH};
use meshd_testbed::mesh::{APP, Mesh, spiffe_id};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const READY: Duration = Duration::from_secs(30);
const CHANGE: Duration = Duration::from_secs(10);
const FRONTEND: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 10);
const REVIEWS: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 11);
/// Outside the mesh: the TLS-terminating backend of Service `secure`.
const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 50);
const SECURE_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 12);
const BACKEND_PORT: u16 = 8443;
const SECURE_CLUSTER: &str = "outbound|80||secure.demo.svc.cluster.local";

fn from_frontend(mesh: &Mesh, vip: Ipv4Addr, path: &str) -> anyhow::Result<(u16, String)> {
    let path = path.to_string();
    let target: SocketAddr = (vip, 80).into();
    mesh.pod("frontend-0")?
        .ns
        .run_in(Some(APP), move || HttpConn::connect(target)?.get(&path))
}

fn reviews_xfcc(mesh: &Mesh) -> Result<String, String> {
    match from_frontend(mesh, meshd_testbed::mesh::REVIEWS_VIP, XFCC_PATH) {
        Ok((200, body)) => Ok(body),
        other => Err(format!("{other:?}")),
    }
}

fn eventually(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < CHANGE {
        match check() {
            Ok(()) => return,
            Err(seen) => last = seen,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {CHANGE:?}; last seen: {last}");
}

fn rule(host: &str, tls: &str) -> String {
    format!(
        "apiVersion: networking.meshd.io/v1alpha1\nkind: DestinationRule\nmetadata: {{name: {host}, namespace: demo}}\nspec:\n  host: {host}\n  trafficPolicy:\n    tls: {tls}\n"
    )
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for `secure.example.com` signed by it, readable by the proxy.
fn certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=backend-ca"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-subj", "/CN=secure.example.com"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &csr);
    std::fs::write(dir.join("ext"), "subjectAltName=DNS:secure.example.com\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext",
            "-out",
            "server.pem",
        ],
    );
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("ca.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// Service `secure` (port 80, HTTP) whose one endpoint is the backend outside the mesh.
fn secure_service() -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: secure, namespace: demo}}\nspec:\n  clusterIP: {SECURE_VIP}\n  ports: [{{name: http, port: 80, targetPort: {BACKEND_PORT}}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: secure-1\n  namespace: demo\n  labels: {{kubernetes.io/service-name: secure}}\naddressType: IPv4\nports: [{{name: http, port: {BACKEND_PORT}}}]\nendpoints:\n- addresses: [\"{BACKEND}\"]\n  conditions: {{ready: true}}\n"
    )
}

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn destination_rule_tls_disable_mesh_mutual_and_simple_on_real_envoy() {
    let Some(envoy): Option<PathBuf> = meshd_testbed::prereq::require_envoy(
        "destination_rule_tls_disable_mesh_mutual_and_simple_on_real_envoy",
        &["iptables", "setpriv", "openssl"],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    ) else {
        return;
    };
    let mut mesh = Mesh::start_with(Path::new(MESHD), &envoy, "PERMISSIVE").expect("control plane");
    for (name, app, ip) in [
        ("frontend-0", "frontend", FRONTEND),
        ("reviews-0", "reviews", REVIEWS),
    ] {
        mesh.declare_pod(name, app, ip).expect("config");
        mesh.start_pod(name, app, ip).expect("pod");
    }
    mesh.wait_ready(READY).expect("every sidecar ready");
    let frontend_id = format!("URI={}", spiffe_id("frontend"));
    let xfcc = reviews_xfcc(&mesh).unwrap();
    assert!(xfcc.contains(&frontend_id), "auto mTLS first: {xfcc:?}");

    // DISABLE wins over auto mTLS: plaintext to a meshed pod that would take mTLS.
    mesh.write_config_file("reviews-dr.yaml", Some(&rule("reviews", "{mode: DISABLE}")))
        .unwrap();
    eventually("plaintext to reviews after DISABLE", || {
        let body = reviews_xfcc(&mesh)?;
        body.is_empty().then_some(()).ok_or(body)
    });
    // MESH_MUTUAL: the mesh's identity again, SAN checked.
    mesh.write_config_file(
        "reviews-dr.yaml",
        Some(&rule("reviews", "{mode: MESH_MUTUAL}")),
    )
    .unwrap();
    eventually("mTLS to reviews after MESH_MUTUAL", || {
        let body = reviews_xfcc(&mesh)?;
        body.contains(&frontend_id).then_some(()).ok_or(body)
    });

    // SIMPLE to a backend terminating TLS itself.
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let backend = mesh.start_outsider(BACKEND).expect("backend namespace");
    let _server = Killed(
        backend
            .command("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(BACKEND_PORT.to_string())
            .args(["-cert", "server.pem", "-key", "server.key"])
            .current_dir(certs.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server"),
    );
    let ca = certs.path().join("ca.pem");
    let simple = |san: &str| {
        rule(
            "secure",
            &format!(
                "{{mode: SIMPLE, caCertificates: {}, sni: secure.example.com, subjectAltNames: [{san}]}}",
                ca.display()
            ),
        )
    };
    mesh.write_config_file("secure.yaml", Some(&secure_service()))
        .unwrap();
    mesh.write_config_file("secure-dr.yaml", Some(&simple("secure.example.com")))
        .unwrap();
    eventually(
        "an answer from the TLS backend through SIMPLE",
        || match from_frontend(&mesh, SECURE_VIP, "/") {
            Ok((200, body)) if body.contains("s_server") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let frontend = mesh.pod("frontend-0").unwrap();
    let handshakes = frontend
        .stats(&format!("cluster.{SECURE_CLUSTER}.ssl.handshake"))
        .unwrap();
    assert!(
        handshakes.values().any(|v| *v > 0),
        "the client side did TLS: {handshakes:?}"
    );
    // A SAN the server's certificate does not carry: the handshake fails, no answer from the backend.
    mesh.write_config_file("secure-dr.yaml", Some(&simple("other.example.com")))
        .unwrap();
    eventually("a wrong SAN refused", || {
        match from_frontend(&mesh, SECURE_VIP, "/") {
            Ok((503, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let failed = frontend
        .stats(&format!("cluster.{SECURE_CLUSTER}.ssl.fail_verify_san"))
        .unwrap();
    assert!(failed.values().any(|v| *v > 0), "{failed:?}");

    for pod in mesh.pods() {
        assert_eq!(
            pod.rejections(),
            Vec::<String>::new(),
            "{} rejected config",
            pod.name
        );
    }
}
