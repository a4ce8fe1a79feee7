//! `meshd validate -f FILE|DIR` (SPEC §2), driving the real binary: Istio's own examples (apiVersion
//! changed) pass, broken resources fail with one `FILE: KIND NS/NAME: FIELD: problem` line each, exit
//! codes 0 / 1 / 64.

use std::path::Path;
use std::process::{Command, Output};

use pretty_assertions::assert_eq;

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn validate(args: &[&str]) -> Output {
    Command::new(MESHD)
        .arg("validate")
        .args(args)
        .current_dir(ROOT)
        .env_remove("MESHD_FILENAME")
        .output()
        .expect("meshd runs")
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn istios_examples_pass_their_object_checks_and_only_their_missing_services_are_reported() {
    let out = validate(&["-f", "tests/fixtures/istio"]);
    let lines = stdout_lines(&out);
    // Istio's examples, unrelated to each other, route to Services they do not define and reuse
    // hosts: only such reference problems are reported, nothing in any object on its own, and
    // Gateways naming TLS Secrets the examples do not define.
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(
            [
                "is not a host of any Service or ServiceEntry",
                ", which is older and wins",
                " is not a port of example.com (80)",
                "names no kubernetes.io/tls Secret in namespace default",
            ]
            .iter()
            .any(|p| line.ends_with(p)),
            "only reference problems: {line}"
        );
    }
    assert!(lines.contains(&"tests/fixtures/istio/virtual_service.yaml: VirtualService default/reviews-route: spec.http[0].route[0].destination.host: \"reviews.prod.svc.cluster.local\" is not a host of any Service or ServiceEntry".to_string()), "{lines:#?}");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "meshd validate: {} problems in 74 documents (7 files)",
            lines.len()
        )),
        "{}",
        stderr(&out)
    );
    // A kind meshd does not read is noted, not a problem.
    assert!(stderr(&out).contains("kind WorkloadEntry is not read by meshd; skipped"));
}

/// The demo app's Services the examples route to.
const DEMO_SERVICES: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: demo}\nspec:\n  ports: [{name: http, port: 9080}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: frontend, namespace: demo}\nspec:\n  ports: [{name: http, port: 80}]\n";

#[test]
fn meshds_examples_pass_beside_the_services_they_route_to() {
    let out = validate(&["--filename", "examples"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "alone, their Services are missing"
    );
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(Path::new(ROOT).join("examples")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.path().join("demo-services.yaml"), DEMO_SERVICES).unwrap();
    let path = dir.path().to_str().unwrap();
    let out = validate(&["--filename", path]);
    assert_eq!(
        stdout_lines(&out),
        [format!(
            "{path}/gateway.yaml: Gateway demo/frontend: spec.servers[0].tls.credentialName: \"frontend-cert\" names no kubernetes.io/tls Secret in namespace demo"
        )],
        "the Gateway's certificate is missing"
    );
    std::fs::write(
        dir.path().join("frontend-cert.yaml"),
        tls_secret("demo", "frontend-cert", "shop.example.com"),
    )
    .unwrap();
    let out = validate(&["--filename", path]);
    assert_eq!(stdout_lines(&out), Vec::<String>::new());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// A `kubernetes.io/tls` Secret with a fresh self-signed certificate for `host`.
fn tls_secret(namespace: &str, name: &str, host: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let indent = |pem: String| -> String { pem.lines().map(|l| format!("    {l}\n")).collect() };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(cert.pem()),
        indent(key.serialize_pem())
    )
}

#[test]
fn gateway_credentials_are_looked_up_where_its_gateway_pods_run() {
    let dir = tempfile::tempdir().unwrap();
    let gw = dir.path().join("gw.yaml");
    std::fs::write(&gw, "apiVersion: networking.meshd.io/v1alpha1\nkind: Gateway\nmetadata: {name: edge, namespace: config}\nspec:\n  selector: {app: edge}\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*/shop.example.com\"]\n    tls: {mode: SIMPLE, credentialName: shop-cert}\n").unwrap();
    std::fs::write(dir.path().join("pod.yaml"), "apiVersion: v1\nkind: Pod\nmetadata: {name: edge-0, namespace: edge, labels: {app: edge, meshd.io/gateway: edge}}\nspec:\n  containers: [{name: agent, image: meshd}]\n").unwrap();
    // In the Gateway's namespace, not the gateway pod's.
    std::fs::write(
        dir.path().join("cert.yaml"),
        tls_secret("config", "shop-cert", "shop.example.com"),
    )
    .unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: v1\nkind: Secret\nmetadata: {name: broken, namespace: edge}\ntype: kubernetes.io/tls\nstringData: {tls.crt: nope, tls.key: nope}\n").unwrap();
    let out = validate(&["-f", dir.path().to_str().unwrap()]);
    assert_eq!(
        stdout_lines(&out),
        [
            format!(
                "{}: Secret edge/broken: stringData[tls.crt]: is not PEM (no -----BEGIN block)",
                bad.display()
            ),
            format!(
                "{}: Gateway config/edge: spec.servers[0].tls.credentialName: \"shop-cert\" names no kubernetes.io/tls Secret in namespace edge",
                gw.display()
            ),
        ]
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn references_resolve_inside_a_file_or_across_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("svc.yaml");
    let vs = dir.path().join("vs.yaml");
    std::fs::write(&svc, "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec:\n  ports: [{name: http, port: 9080}]\n---\napiVersion: networking.meshd.io/v1alpha1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: shop}\nspec:\n  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}]\n").unwrap();
    std::fs::write(&vs, "apiVersion: networking.meshd.io/v1alpha1\nkind: VirtualService\nmetadata: {name: reviews, namespace: shop}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 90\n    - destination: {host: reviews, subset: v3}\n      weight: 10\n").unwrap();
    let vs_shown = vs.display().to_string();
    let out = validate(&["-f", &vs_shown]);
    assert_eq!(
        stdout_lines(&out),
        [
            format!(
                "{vs_shown}: VirtualService shop/reviews: spec.http[0].route[0].destination.host: \"reviews\" is not a host of any Service or ServiceEntry"
            ),
            format!(
                "{vs_shown}: VirtualService shop/reviews: spec.http[0].route[1].destination.host: \"reviews\" is not a host of any Service or ServiceEntry"
            ),
        ]
    );
    assert_eq!(out.status.code(), Some(1));
    let out = validate(&["-f", dir.path().to_str().unwrap()]);
    assert_eq!(
        stdout_lines(&out),
        [format!(
            "{vs_shown}: VirtualService shop/reviews: spec.http[0].route[1].destination.subset: \"v3\" is not a subset of any DestinationRule for reviews.shop.svc.cluster.local"
        )]
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn istio_examples_meshd_refuses_are_named_line_by_line() {
    let f = "tests/fixtures/istio-refused.yaml";
    let out = validate(&["-f", f]);
    assert_eq!(
        stdout_lines(&out),
        [
            format!(
                "{f}: VirtualService nsA/productpage: metadata.namespace: \"nsA\" is not a namespace name (a DNS label)"
            ),
            format!(
                "{f}: VirtualService nsA/productpage: spec.hosts: is required (delegate VirtualServices are not supported)"
            ),
            format!(
                "{f}: VirtualService nsB/reviews: metadata.namespace: \"nsB\" is not a namespace name (a DNS label)"
            ),
            format!(
                "{f}: VirtualService nsB/reviews: spec.hosts: is required (delegate VirtualServices are not supported)"
            ),
            format!(
                "{f}: VirtualService default/foo-redirect: spec.http[0].redirect.prefix_rewrite: is not a field of this kind (misspelt, or not supported)"
            ),
            format!(
                "{f}: Gateway some-config-namespace/my-gateway: spec.servers[1].tls.credentialName: is required for SIMPLE and MUTUAL (meshd serves certificates from Secrets, not files)"
            ),
            format!(
                "{f}: AuthorizationPolicy istio-system/ext-authz: spec.action: CUSTOM (an external authorizer) is not supported by meshd"
            ),
        ]
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("7 problems in 6 documents (1 file)"));
}

const BROKEN_TRAFFIC: &str = "\
apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - match:
    - uri: {regex: \"/api/(?=v2)\"}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 0
    - destination: {host: reviews, subset: v2}
      weight: 0
    timeout: \"30\"
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v1, labels: {version: v2}}
---
apiVersion: networking.meshd.io/v1alpha1
kind: ServiceEntry
metadata: {name: payments, namespace: shop}
spec:
  hosts: [api.payments.example.com]
  ports:
  - {number: 443, name: tls, protocol: TLS}
  location: SOMEWHERE
";

const BROKEN_SECURITY: &str = "\
apiVersion: security.meshd.io/v1alpha1
kind: PeerAuthentication
metadata: {name: default}
spec:
  mtls: {mode: STRICT}
  portLevelMtls:
    8080: {mode: DISABLE}
---
not: [a, kubernetes, object
";

#[test]
fn broken_resources_fail_with_the_right_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("traffic.yaml"), BROKEN_TRAFFIC).unwrap();
    std::fs::create_dir(dir.path().join("security")).unwrap();
    std::fs::write(dir.path().join("security/policies.yml"), BROKEN_SECURITY).unwrap();
    std::fs::write(dir.path().join("README.md"), "not read").unwrap();
    std::fs::write(dir.path().join(".swap.yaml"), "not: [read").unwrap();
    let d = dir.path().display();
    let out = validate(&["-f", &d.to_string()]);
    assert_eq!(
        stdout_lines(&out),
        [
            format!(
                "{d}/security/policies.yml: PeerAuthentication default/default: spec.portLevelMtls: needs a selector (ports belong to a workload)"
            ),
            format!(
                "{d}/security/policies.yml: document 2: is not YAML: did not find expected ',' or ']' at line 10 column 1, while parsing a flow sequence at line 9 column 6"
            ),
            format!(
                "{d}/traffic.yaml: VirtualService shop/reviews: spec.http[0].match[0].uri.regex: \"/api/(?=v2)\" is not an RE2 regex: look-around, including look-ahead and look-behind, is not supported"
            ),
            format!(
                "{d}/traffic.yaml: VirtualService shop/reviews: spec.http[0].route: has weights that are all 0, so no destination would get traffic"
            ),
            format!(
                "{d}/traffic.yaml: VirtualService shop/reviews: spec.http[0].timeout: \"30\" has no unit (write e.g. 10s, 500ms or 1h30m)"
            ),
            format!(
                "{d}/traffic.yaml: DestinationRule shop/reviews: apiVersion: \"networking.istio.io/v1\" is not networking.meshd.io/v1alpha1 (an Istio resource: change only the apiVersion)"
            ),
            format!(
                "{d}/traffic.yaml: DestinationRule shop/reviews: spec.subsets[1].name: \"v1\" is also the name of spec.subsets[0]"
            ),
            format!(
                "{d}/traffic.yaml: ServiceEntry shop/payments: spec.location: does not parse: unknown variant `SOMEWHERE`, expected `MESH_EXTERNAL` or `MESH_INTERNAL`"
            ),
        ]
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("8 problems in 5 documents (2 files)"),
        "{}",
        stderr(&out)
    );

    // One file alone, through the environment variable every flag reads.
    let out = Command::new(MESHD)
        .arg("validate")
        .env("MESHD_FILENAME", dir.path().join("traffic.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout_lines(&out).len(), 6);
}

#[test]
fn bad_flags_exit_64_with_one_line() {
    for args in [
        &[][..],
        &["-f", "no/such/dir"],
        &["-f", "examples", "--strict-ish"],
    ] {
        let out = validate(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).lines().count(),
            1,
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(stdout_lines(&out).is_empty());
    }
    assert!(Path::new(ROOT).join("examples").is_dir());
}

/// A gateway pod, two Gateways selecting it that disagree on port 80's protocol (the younger named),
/// and a VirtualService with a host no server of its Gateway accepts (SPEC §10).
const GATEWAYS: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: ingress-0, namespace: edge, labels: {meshd.io/gateway: ingress, istio: ingress}}
spec: {containers: [{name: proxy, image: proxy}]}
---
apiVersion: networking.meshd.io/v1alpha1
kind: Gateway
metadata: {name: a-young, namespace: edge, creationTimestamp: "2026-02-01T00:00:00Z"}
spec:
  selector: {istio: ingress}
  servers: [{port: {number: 80, name: tcp, protocol: TCP}, hosts: ["*"]}]
---
apiVersion: networking.meshd.io/v1alpha1
kind: Gateway
metadata: {name: b-old, namespace: edge, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  selector: {istio: ingress}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*.example.com"]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web.example.com, web.example.net]
  gateways: [edge/b-old]
  http: [{route: [{destination: {host: web}}]}]
"#;

#[test]
fn gateway_conflicts_and_unserved_hosts_are_reported_with_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edge.yaml");
    std::fs::write(&file, GATEWAYS).unwrap();
    let f = file.display();
    let out = validate(&["-f", dir.path().to_str().unwrap()]);
    assert_eq!(
        stdout_lines(&out),
        [
            format!(
                "{f}: Gateway edge/a-young: spec.servers[0].port.protocol: \"TCP\" differs from Gateway edge/b-old (HTTP) on port 80 of a gateway pod both select; the older Gateway wins"
            ),
            format!(
                "{f}: VirtualService shop/web: spec.hosts[1]: \"web.example.net\" is not a host any server of Gateway edge/b-old accepts for this namespace"
            ),
        ]
    );
    assert_eq!(out.status.code(), Some(1));
}

/// DestinationRules with `exportTo`, one of a client namespace for another namespace's host: each
/// passes, and a VirtualService may name a subset any accepted rule of its host defines (Istio does
/// not reject it either; which rule a sidecar gets is the translation's per-namespace lookup).
#[test]
fn destination_rules_exported_per_namespace_pass() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec:\n  ports: [{name: http, port: 9080}]\n---\n\
apiVersion: networking.meshd.io/v1alpha1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: shop}\nspec:\n  host: reviews\n  exportTo: [.]\n  subsets: [{name: v1, labels: {version: v1}}]\n---\n\
apiVersion: networking.meshd.io/v1alpha1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: other}\nspec:\n  host: reviews.shop.svc.cluster.local\n  exportTo: ['~']\n  subsets: [{name: v2, labels: {version: v2}}]\n---\n\
apiVersion: networking.meshd.io/v1alpha1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: meshd-system}\nspec:\n  host: reviews.shop.svc.cluster.local\n  exportTo: [other, shop]\n---\n\
apiVersion: networking.meshd.io/v1alpha1\nkind: VirtualService\nmetadata: {name: reviews, namespace: other}\nspec:\n  hosts: [reviews.shop.svc.cluster.local]\n  exportTo: [.]\n  http:\n  - route: [{destination: {host: reviews.shop.svc.cluster.local, subset: v1}}]\n",
    )
    .unwrap();
    let out = validate(&["-f", dir.path().to_str().unwrap()]);
    assert_eq!(stdout_lines(&out), Vec::<String>::new());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
