//! VirtualService `tls[]` routes on a sidecar (SPEC §8) through real Envoy: the testbed's mesh
//! (file-fed `meshd controlplane`, frontend-0 in a network namespace with capture, `meshd agent` +
//! Envoy) and three TLS backends outside the mesh (`openssl s_server`, each with its own certificate
//! naming `backend-<x>.test`). The app dials the `front` Service's VIP on its TLS port; the sidecar
//! picks the backend by SNI without terminating TLS, splits one SNI 70/30, sends every other SNI to
//! front's own endpoint, and closes connections idle longer than front's DestinationRule allows. A
//! `tcp[]` route by `destinationSubnets` takes part of a ServiceEntry's CIDR.
//! A DestinationRule with `loadBalancer: PASSTHROUGH` makes the sidecar dial the address the app
//! dialled instead of the Service's endpoints. Envoy's own stats prove that it rejected nothing.
//!
//! Needs root, `ip netns`, iptables, setpriv, openssl and the Envoy venv; prints SKIP otherwise,
//! fails under CI=true.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use meshd_testbed::mesh::{APP, Mesh, Pod, wait_for};
use meshd_testbed::pki::DevCa;
use meshd_testbed::tls::{TlsClient, connect};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const READY: Duration = Duration::from_secs(30);
const FRONTEND: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 10);
/// The TLS backends a, b and c, outside the mesh.
const BACKENDS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 44, 0, 61),
    Ipv4Addr::new(10, 44, 0, 62),
    Ipv4Addr::new(10, 44, 0, 63),
];
const FRONT_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 70);
/// The SNI names every backend's certificate carries (which backend answered is its own name).
const NAMES: [&str; 5] = [
    "a.example.com",
    "b.example.com",
    "split.example.com",
    "other.example.com",
    "direct.test",
];

/// A TLS Service: its VIP, port 443 (`tls`), one endpoint.
fn service(name: &str, vip: Ipv4Addr, endpoint: Ipv4Addr) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: demo}}
spec:
  clusterIP: {vip}
  ports: [{{name: tls, port: 443, targetPort: 443}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: demo
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: tls, port: 443}}]
endpoints:
- addresses: [{endpoint}]
  conditions: {{ready: true}}
---
"
    )
}

/// front routes by SNI to tls-a and tls-b, splits split.example.com 70/30; `direct` is a Service
/// whose VIP is backend c's own address and whose endpoint is backend a.
fn config() -> String {
    let [a, b, c] = BACKENDS;
    let mut out = service("front", FRONT_VIP, c);
    out += &service("tls-a", Ipv4Addr::new(10, 96, 0, 71), a);
    out += &service("tls-b", Ipv4Addr::new(10, 96, 0, 72), b);
    out += &service("direct", c, a);
    out += "apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {name: front, namespace: demo}
spec:
  hosts: [front, a.example.com, b.example.com, split.example.com]
  tls:
  - match: [{sniHosts: [a.example.com]}]
    route: [{destination: {host: tls-a}}]
  - match: [{sniHosts: [b.example.com], port: 443}]
    route: [{destination: {host: tls-b}}]
  - match: [{sniHosts: [split.example.com]}]
    route:
    - {destination: {host: tls-a}, weight: 70}
    - {destination: {host: tls-b}, weight: 30}
---
# The backends' /30 as a ServiceEntry: to the address dialled, but b's address goes to tls-a.
apiVersion: networking.meshd.io/v1alpha1
kind: ServiceEntry
metadata: {name: backends, namespace: demo}
spec:
  hosts: [backends.internal]
  addresses: [10.44.0.60/30]
  ports: [{number: 443, name: tcp, protocol: TCP}]
  resolution: NONE
---
apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {name: backends, namespace: demo}
spec:
  hosts: [backends.internal]
  tcp:
  - match: [{destinationSubnets: [10.44.0.62/32, 192.168.0.0/16]}]
    route: [{destination: {host: tls-a}}]
---
apiVersion: networking.meshd.io/v1alpha1
kind: DestinationRule
metadata: {name: front, namespace: demo}
spec:
  host: front
  trafficPolicy:
    connectionPool:
      tcp: {idleTimeout: 1s}
";
    out
}

const PASSTHROUGH: &str = "apiVersion: networking.meshd.io/v1alpha1
kind: DestinationRule
metadata: {name: direct, namespace: demo}
spec:
  host: direct
  trafficPolicy:
    loadBalancer: {simple: PASSTHROUGH}
";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `n` TLS handshakes with `sni` from frontend-0's app to `target`, each on its own connection; the
/// backend that answered each (`a`, `b`, `c`), from its certificate.
fn backends(
    pod: &Pod,
    target: SocketAddr,
    sni: &str,
    roots: &[u8],
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let client = TlsClient::new(sni, roots);
    pod.ns.run_in(Some(APP), move || {
        (0..n)
            .map(|_| {
                let session = connect(target, &client)?;
                let names = session.peer_dns_names()?;
                names
                    .iter()
                    .find_map(|n| n.strip_prefix("backend-")?.strip_suffix(".test"))
                    .map(String::from)
                    .ok_or_else(|| anyhow::anyhow!("no backend name in {names:?}"))
            })
            .collect()
    })
}

#[test]
fn a_sidecar_routes_tls_by_sni_splits_by_weight_and_passes_through_to_the_dialled_address() {
    let test =
        "a_sidecar_routes_tls_by_sni_splits_by_weight_and_passes_through_to_the_dialled_address";
    let Some(envoy) = meshd_testbed::prereq::require_envoy(
        test,
        &["iptables", "setpriv", "openssl"],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    ) else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    let ca = DevCa::new().unwrap();
    std::fs::write(certs.path().join("ca.pem"), ca.ca_pem()).unwrap();
    let mut mesh = Mesh::start(Path::new(MESHD), &envoy).expect("control plane and bridge");
    let mut servers = Vec::new();
    for (i, ip) in BACKENDS.iter().enumerate() {
        let x = ["a", "b", "c"][i];
        let own = format!("backend-{x}.test");
        let mut names = NAMES.to_vec();
        names.push(&own);
        let issued = ca.issue(&names).unwrap();
        let (cert, key) = (
            certs.path().join(format!("{x}.pem")),
            certs.path().join(format!("{x}.key")),
        );
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        let ns = mesh.start_outsider(*ip).expect("backend namespace");
        let child = ns
            .command("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", "443"])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        servers.push(Killed(child));
    }
    mesh.declare_pod("frontend-0", "frontend", FRONTEND)
        .unwrap();
    mesh.start_pod("frontend-0", "frontend", FRONTEND).unwrap();
    mesh.wait_ready(READY).expect("every sidecar ready");
    mesh.write_config_file("tls.yaml", Some(&config())).unwrap();
    let frontend = mesh.pod("frontend-0").unwrap();
    let roots = ca.ca_pem().into_bytes();
    let front: SocketAddr = (FRONT_VIP, 443).into();
    wait_for("the SNI chains", READY, || {
        Ok(backends(frontend, front, "a.example.com", &roots, 1).is_ok_and(|b| b == ["a"]))
    })
    .unwrap();

    // By SNI, TLS untouched (the client verified each backend's own certificate).
    let by_sni = |sni: &str| backends(frontend, front, sni, &roots, 5).unwrap();
    assert_eq!(by_sni("a.example.com"), ["a"; 5]);
    assert_eq!(by_sni("b.example.com"), ["b"; 5]);
    assert_eq!(
        by_sni("other.example.com"),
        ["c"; 5],
        "front's own endpoint"
    );

    // 200 connections with one SNI: within a few points of 70/30.
    let split = backends(frontend, front, "split.example.com", &roots, 200).unwrap();
    let to_a = split.iter().filter(|b| *b == "a").count();
    println!("tls[] 70/30: a got {to_a} of 200 connections");
    assert!(split.iter().all(|b| b == "a" || b == "b"), "{split:?}");
    assert!(
        (120..=160).contains(&to_a),
        "a got {to_a} of 200 connections (140 expected)"
    );

    // front's DestinationRule: a connection idle for longer than 1 s is closed by the sidecar.
    let idle = |pod: &Pod| {
        pod.stats("idle_timeout")
            .unwrap_or_default()
            .iter()
            .filter(|(k, _)| k.contains("front.demo"))
            .map(|(_, v)| *v)
            .sum::<u64>()
    };
    let before = idle(frontend);
    let client = TlsClient::new("a.example.com", &roots);
    frontend
        .ns
        .run_in(Some(APP), move || {
            let session = connect(front, &client)?;
            std::thread::sleep(Duration::from_millis(2500));
            drop(session);
            Ok(())
        })
        .unwrap();
    wait_for("the idle timeout counted", READY, || {
        Ok(idle(frontend) > before)
    })
    .unwrap();

    // tcp[] destinationSubnets over the ServiceEntry's CIDR: b's address is routed to tls-a, the
    // rest of the CIDR goes where it was dialled.
    let dialled =
        |ip: Ipv4Addr| backends(frontend, (ip, 443).into(), "direct.test", &roots, 3).unwrap();
    assert_eq!(dialled(BACKENDS[0]), ["a"; 3]);
    assert_eq!(
        dialled(BACKENDS[1]),
        ["a"; 3],
        "b's address, by the subnet route"
    );

    // PASSTHROUGH: `direct`'s VIP is backend c's address. Without it the sidecar balances over the
    // endpoint (backend a); with it, it dials what the app dialled (backend c).
    let direct: SocketAddr = (BACKENDS[2], 443).into();
    assert_eq!(
        backends(frontend, direct, "direct.test", &roots, 3).unwrap(),
        ["a"; 3]
    );
    mesh.write_config_file("passthrough.yaml", Some(PASSTHROUGH))
        .unwrap();
    wait_for("the PASSTHROUGH cluster", READY, || {
        Ok(backends(frontend, direct, "direct.test", &roots, 1).is_ok_and(|b| b == ["c"]))
    })
    .unwrap();
    assert_eq!(
        backends(frontend, direct, "direct.test", &roots, 3).unwrap(),
        ["c"; 3]
    );

    let cds = frontend
        .admin("/config_dump?resource=dynamic_active_clusters")
        .unwrap();
    assert!(cds.contains("ORIGINAL_DST"), "the direct cluster");
    assert_eq!(
        frontend.rejections(),
        Vec::<String>::new(),
        "frontend-0 rejected config"
    );
    drop(servers);
}
