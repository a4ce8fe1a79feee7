//! ServiceEntry and the outbound traffic policy through real Envoy (SPEC §8): the testbed's mesh
//! (file-fed `meshd controlplane`, frontend-0 in a network namespace with capture, `meshd agent` +
//! Envoy) and an external backend in a namespace outside the mesh (no capture, no sidecar). Under
//! REGISTRY_ONLY the backend is reached only through a ServiceEntry (STATIC by VIP, DNS by VIP with
//! an IP-literal endpoint since the test namespaces have no DNS server, NONE by Host on an HTTP
//! port); without one a connection is closed and a request on an HTTP-proxied port gets 502 (an
//! entry's port, or port 80 that the mesh's Services serve as HTTP); under ALLOW_ANY it passes
//! through. Envoy's own stats prove that it rejected nothing.
//!
//! Needs root, `ip netns`, iptables, setpriv and the Envoy venv; prints SKIP otherwise, fails under CI=true.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use meshd_testbed::app::{App, HttpConn};
use meshd_testbed::mesh::{APP, APP_PORT, Mesh, Pod, wait_for};
use meshd_testbed::netns::Identity;

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const READY: Duration = Duration::from_secs(30);
const FRONTEND: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 10);
/// The external backend, outside the mesh.
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 60);
/// The ServiceEntries' virtual IPs.
const STATIC_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 60);
const DNS_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 61);
/// The port the mesh's Services (frontend, reviews) serve as HTTP; no entry has it without addresses.
const SERVICE_HTTP_PORT: u16 = 80;
/// The external backend binds port 80 too, which takes root.
const ROOT: Identity = Identity::new(0, 0);

fn entries() -> String {
    format!(
        "apiVersion: networking.meshd.io/v1alpha1
kind: ServiceEntry
metadata: {{name: ext-static, namespace: demo}}
spec:
  hosts: [static.example.com]
  addresses: [{STATIC_VIP}]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {APP_PORT}}}]
  resolution: STATIC
  endpoints: [{{address: {EXTERNAL}}}]
---
apiVersion: networking.meshd.io/v1alpha1
kind: ServiceEntry
metadata: {{name: ext-dns, namespace: demo}}
spec:
  hosts: [dns.example.com]
  addresses: [{DNS_VIP}]
  ports: [{{number: 9000, name: tcp, protocol: TCP, targetPort: {APP_PORT}}}]
  resolution: DNS
  endpoints: [{{address: {EXTERNAL}}}]
---
apiVersion: networking.meshd.io/v1alpha1
kind: ServiceEntry
metadata: {{name: ext-host, namespace: demo}}
spec:
  hosts: [host.example.com]
  ports: [{{number: {APP_PORT}, name: http, protocol: HTTP}}]
  resolution: NONE
---
# HTTPS by SNI (no addresses): only Envoy's acceptance of the chains and tls_inspector is checked.
apiVersion: networking.meshd.io/v1alpha1
kind: ServiceEntry
metadata: {{name: ext-tls, namespace: demo}}
spec:
  hosts: [tls.example.com]
  ports: [{{number: 443, name: https, protocol: HTTPS}}]
  resolution: DNS
  endpoints: [{{address: {EXTERNAL}}}]
---
apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {{name: ext-static, namespace: demo}}
spec:
  hosts: [static.example.com]
  http:
  - match: [{{uri: {{prefix: /teapot}}}}]
    fault: {{abort: {{httpStatus: 418, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: static.example.com}}}}]
  - route: [{{destination: {{host: static.example.com}}}}]
"
    )
}

/// One request from frontend-0's app to `target` with `host`: the status and body, or why none came.
fn request(pod: &Pod, target: SocketAddr, host: &'static str) -> anyhow::Result<(u16, String)> {
    request_path(pod, target, host, "/")
}

fn request_path(
    pod: &Pod,
    target: SocketAddr,
    host: &'static str,
    path: &'static str,
) -> anyhow::Result<(u16, String)> {
    pod.ns.run_in(Some(APP), move || {
        HttpConn::connect(target)?.get_with(path, &[("host", host)])
    })
}

fn answered(pod: &Pod, target: SocketAddr, host: &'static str) -> bool {
    matches!(request(pod, target, host), Ok((200, body)) if body == "external")
}

#[test]
fn registry_only_reaches_an_external_backend_only_through_a_service_entry() {
    let test = "registry_only_reaches_an_external_backend_only_through_a_service_entry";
    let Some(envoy) = meshd_testbed::prereq::require_envoy(
        test,
        &["iptables", "setpriv"],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    ) else {
        return;
    };
    let mut mesh = Mesh::start(Path::new(MESHD), &envoy).expect("control plane and bridge");
    mesh.set_outbound_policy("REGISTRY_ONLY").unwrap();
    let outside = mesh
        .start_outsider(EXTERNAL)
        .expect("the external namespace");
    let listen: [SocketAddr; 2] = [
        (EXTERNAL, APP_PORT).into(),
        (EXTERNAL, SERVICE_HTTP_PORT).into(),
    ];
    let _backend = App::start(outside, ROOT, "external", &listen).expect("the external backend");
    mesh.declare_pod("frontend-0", "frontend", FRONTEND)
        .unwrap();
    mesh.start_pod("frontend-0", "frontend", FRONTEND).unwrap();
    mesh.wait_ready(READY).expect("the sidecar ready");
    let frontend = mesh.pod("frontend-0").unwrap();
    let direct: SocketAddr = (EXTERNAL, APP_PORT).into();
    let service_port: SocketAddr = (EXTERNAL, SERVICE_HTTP_PORT).into();

    // REGISTRY_ONLY without an entry: the connection is closed without an answer; on the port the
    // Services proxy as HTTP, the answer is 502 (the backend listening there never sees it).
    wait_for("REGISTRY_ONLY in force", READY, || {
        Ok(request(frontend, direct, "host.example.com").is_err())
    })
    .unwrap();
    wait_for("502 on the Services' HTTP port", READY, || {
        Ok(matches!(
            request(frontend, service_port, "unknown.example.com"),
            Ok((502, _))
        ))
    })
    .unwrap();

    mesh.write_config_file("entries.yaml", Some(&entries()))
        .unwrap();
    wait_for("the STATIC entry by its VIP", READY, || {
        Ok(answered(
            frontend,
            (STATIC_VIP, 80).into(),
            "static.example.com",
        ))
    })
    .unwrap();
    // A VirtualService routes the entry's host: its fault on /teapot.
    let teapot = request_path(
        frontend,
        (STATIC_VIP, 80).into(),
        "static.example.com",
        "/teapot",
    );
    assert_eq!(
        teapot.unwrap().0,
        418,
        "the VirtualService's fault on the entry's host"
    );
    // DNS (STRICT_DNS on an IP literal), TCP by VIP: the app's HTTP passes as bytes.
    wait_for("the DNS entry by its VIP", READY, || {
        Ok(answered(
            frontend,
            (DNS_VIP, 9000).into(),
            "dns.example.com",
        ))
    })
    .unwrap();
    // NONE without addresses, HTTP: by Host to the original destination; another Host gets 502.
    assert!(answered(frontend, direct, "host.example.com"));
    let (status, _) = request(frontend, direct, "unknown.example.com").unwrap();
    assert_eq!(status, 502, "an unregistered Host on an HTTP-proxied port");
    // Port 80 has an entry by VIP only: another address on it still gets 502.
    let (status, _) = request(frontend, service_port, "unknown.example.com").unwrap();
    assert_eq!(status, 502, "an unknown address on the Services' HTTP port");
    let dump = frontend
        .admin("/config_dump?resource=dynamic_active_clusters")
        .unwrap();
    assert!(dump.contains("STRICT_DNS"), "the DNS entry's cluster type");
    let listeners = frontend
        .admin("/config_dump?resource=dynamic_listeners")
        .unwrap();
    assert!(
        listeners.contains("tls.example.com") && listeners.contains("tls_inspector"),
        "the SNI chain and tls_inspector in force"
    );

    // Without the entries, blocked again; ALLOW_ANY lets the same destination through.
    mesh.write_config_file("entries.yaml", None).unwrap();
    wait_for("the entries gone", READY, || {
        Ok(request(frontend, direct, "host.example.com").is_err())
    })
    .unwrap();
    // The entry's VIP is an unknown address again, on the Services' HTTP port.
    let (status, _) = request(frontend, (STATIC_VIP, 80).into(), "static.example.com").unwrap();
    assert_eq!(status, 502, "the removed entry's VIP");
    mesh.set_outbound_policy("ALLOW_ANY").unwrap();
    let frontend = mesh.pod("frontend-0").unwrap();
    wait_for("ALLOW_ANY passes through", READY, || {
        Ok(answered(frontend, direct, "host.example.com"))
    })
    .unwrap();
    assert!(
        answered(frontend, service_port, "unknown.example.com"),
        "ALLOW_ANY passes an unknown address on the Services' HTTP port through"
    );

    let rejected = frontend.rejections();
    assert!(rejected.is_empty(), "Envoy rejected config: {rejected:?}");
}
