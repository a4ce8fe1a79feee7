//! DestinationRule `tls` on real Envoy (SPEC §8), in the demo's mesh under PERMISSIVE: a file-fed
//! control plane with its CA, pods with capture, agents and Envoy in network namespaces. `DISABLE`
//! overrides auto mTLS (the server's sidecar sees no client certificate), `MESH_MUTUAL` brings it back,
//! and `SIMPLE` originates TLS to a backend outside the mesh that terminates TLS itself (`openssl
//! s_server`), verified against the CA file and SAN the rule names; a wrong SAN fails the handshake.
//! `MUTUAL` with `credentialName` reaches a backend that requires a client certificate with the
//! certificate and CA of that `kubernetes.io/tls` Secret in the proxy's namespace, over SDS: before
//! the Secret exists the cluster is not held warming (Envoy's initial fetch timeout) and answers 503;
//! `SIMPLE` with it presents no certificate, which that backend refuses. No proxy rejects any of it.
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
/// Service `vault`: the same backend's port that requires a client certificate.
const VAULT_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 13);
const VAULT_PORT: u16 = 8444;
const VAULT_CLUSTER: &str = "outbound|80||vault.demo.svc.cluster.local";
/// Envoy's initial fetch timeout (15 s) for a Secret that never comes, and some.
const NO_SECRET: Duration = Duration::from_secs(30);

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

fn eventually(what: &str, check: impl FnMut() -> Result<(), String>) {
    eventually_within(what, CHANGE, check);
}

fn eventually_within(what: &str, bound: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < bound {
        match check() {
            Ok(()) => return,
            Err(seen) => last = seen,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {bound:?}; last seen: {last}");
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

/// A CA, a server certificate for `secure.example.com` and a client certificate (`client.pem`,
/// `client.key`) signed by it, the CA readable by the proxy.
fn certificates(dir: &Path) {
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=backend-ca"];
    ca.extend(EC);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca);
    signed(
        dir,
        "server",
        "secure.example.com",
        "subjectAltName=DNS:secure.example.com",
    );
    signed(dir, "client", "frontend", "extendedKeyUsage=clientAuth");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("ca.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// A P-256 key without a passphrase.
const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// `<name>.key` and `<name>.pem` for `cn`, signed by the CA in `dir`, with the extension `ext`.
fn signed(dir: &Path, name: &str, cn: &str, ext: &str) {
    let (key, csr, pem, ext_file) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
    );
    let subject = format!("/CN={cn}");
    let mut req = vec!["req", "-subj", &subject];
    req.extend(EC);
    req.extend(["-keyout", &key, "-out", &csr]);
    openssl(dir, &req);
    std::fs::write(dir.join(&ext_file), format!("{ext}\n")).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext_file,
            "-out",
            &pem,
        ],
    );
}

/// Service `name` (port 80, HTTP) whose one endpoint is the backend outside the mesh on `port`.
fn backend_service(name: &str, vip: Ipv4Addr, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: demo}}\nspec:\n  clusterIP: {vip}\n  ports: [{{name: http, port: 80, targetPort: {port}}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: demo\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints:\n- addresses: [\"{BACKEND}\"]\n  conditions: {{ready: true}}\n"
    )
}

/// `openssl s_server -www` in the backend's namespace on `port`, with `extra` arguments.
fn s_server(
    backend: &meshd_testbed::netns::NetNs,
    certs: &Path,
    port: u16,
    extra: &[&str],
) -> Killed {
    Killed(
        backend
            .command("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(port.to_string())
            .args(["-cert", "server.pem", "-key", "server.key"])
            .args(extra)
            .current_dir(certs)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server"),
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
fn destination_rule_tls_disable_mesh_mutual_simple_and_credential_name_on_real_envoy() {
    let Some(envoy): Option<PathBuf> = meshd_testbed::prereq::require_envoy(
        "destination_rule_tls_disable_mesh_mutual_simple_and_credential_name_on_real_envoy",
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
    let _server = s_server(backend, certs.path(), BACKEND_PORT, &[]);
    // -Verify: a client without a certificate from the CA fails the handshake.
    let _vault = s_server(
        backend,
        certs.path(),
        VAULT_PORT,
        &["-Verify", "1", "-CAfile", "ca.pem"],
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
    mesh.write_config_file(
        "secure.yaml",
        Some(&backend_service("secure", SECURE_VIP, BACKEND_PORT)),
    )
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

    // credentialName: the Secret of that name in the proxy's namespace (demo), over SDS. Before it
    // exists the cluster waits for it no longer than Envoy's initial fetch timeout: no cluster
    // stays warming, the route answers 503, and the rest of the config still flows.
    let mutual = |mode: &str| {
        rule(
            "vault",
            &format!(
                "{{mode: {mode}, credentialName: frontend-client, sni: secure.example.com, subjectAltNames: [secure.example.com]}}"
            ),
        )
    };
    mesh.write_config_file(
        "vault.yaml",
        Some(&backend_service("vault", VAULT_VIP, VAULT_PORT)),
    )
    .unwrap();
    mesh.write_config_file("vault-dr.yaml", Some(&mutual("MUTUAL")))
        .unwrap();
    let frontend = mesh.pod("frontend-0").unwrap();
    let vault = || from_frontend(&mesh, VAULT_VIP, "/");
    eventually_within("the vault cluster up without its Secret", NO_SECRET, || {
        // /clusters lists the active clusters only.
        let active = frontend
            .admin("/clusters")
            .map_err(|e| e.to_string())?
            .contains(VAULT_CLUSTER);
        let warming = frontend
            .stats("cluster_manager.warming_clusters")
            .map_err(|e| e.to_string())?;
        match (active, warming.values().sum::<u64>(), vault()) {
            (true, 0, Ok((503, _))) => Ok(()),
            other => Err(format!("{other:?} {warming:?}")),
        }
    });
    assert!(reviews_xfcc(&mesh).is_ok(), "other routes still served");
    let cert = |name: &str| std::fs::read_to_string(certs.path().join(name)).unwrap();
    let client = meshd_testbed::pki::IssuedCert {
        cert_pem: cert("client.pem"),
        key_pem: cert("client.key"),
    };
    mesh.write_config_file(
        "frontend-client.yaml",
        Some(&client.tls_secret_yaml("frontend-client", "demo", Some(&cert("ca.pem")))),
    )
    .unwrap();
    eventually(
        "the backend's answer once the Secret exists",
        || match vault() {
            Ok((200, body)) if body.contains("s_server") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    // SIMPLE with credentialName takes only the CA: no client certificate, which -Verify refuses.
    mesh.write_config_file("vault-dr.yaml", Some(&mutual("SIMPLE")))
        .unwrap();
    eventually(
        "SIMPLE refused by a backend requiring a client certificate",
        || match vault() {
            Ok((503, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    mesh.assert_no_rejections();
}
