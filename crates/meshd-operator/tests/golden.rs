//! The desired state (Mesh → objects) against golden YAML in tests/golden/. `MESHD_BLESS=1` rewrites them.

use meshd_api::Mesh;
use meshd_operator::desired::{DesiredInputs, ObjectKind, WebhookEndpoint, desired_objects};
use serde_json::json;

const CA: &str = "-----BEGIN CERTIFICATE-----\nTEST-CA\n-----END CERTIFICATE-----\n";

fn mesh(yaml: &str) -> Mesh {
    let mut mesh = meshd_api::settings::parse_mesh_yaml(yaml).expect("mesh parses");
    mesh.metadata.uid = Some("11111111-2222-3333-4444-555555555555".into());
    mesh
}

fn render(mesh: &Mesh, webhook: WebhookEndpoint) -> String {
    let inputs = DesiredInputs {
        webhook,
        ca_bundle: CA.into(),
        discovery_address: "meshd.meshd-system.svc:15012".into(),
    };
    desired_objects(mesh, &inputs)
        .expect("desired objects")
        .iter()
        .map(|o| serde_yaml::to_string(&o.body).expect("yaml"))
        .collect::<Vec<_>>()
        .join("---\n")
}

fn check(name: &str, actual: &str) {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var("MESHD_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}; run with MESHD_BLESS=1"));
    pretty_assertions::assert_eq!(
        expected,
        actual,
        "{path} differs; MESHD_BLESS=1 regenerates it"
    );
}

#[test]
fn example_mesh_golden() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/mesh.yaml"
    ))
    .unwrap();
    check(
        "example-mesh.yaml",
        &render(&mesh(&text), WebhookEndpoint::Service),
    );
}

const BLUE: &str = "apiVersion: meshd.io/v1alpha1
kind: Mesh
metadata: {name: blue}
spec:
  proxy: {image: registry.example/meshd-proxy:dev, uid: 2000}
  injection: {failurePolicy: Ignore}
  gateways:
    - name: edge
      namespace: edge
      replicas: 2
      service: {type: ClusterIP, ports: [{name: tcp-db, port: 5432, targetPort: 15432}]}
    - {name: egress}
";

#[test]
fn non_default_mesh_by_url_golden() {
    check(
        "blue-mesh-url.yaml",
        &render(
            &mesh(BLUE),
            WebhookEndpoint::Url("https://10.0.0.5:8443/inject".into()),
        ),
    );
}

/// The selector contract of SPEC §4, asserted directly (not only through the golden files).
#[test]
fn webhook_selectors_follow_the_spec() {
    let inputs = |w| DesiredInputs {
        webhook: w,
        ca_bundle: CA.into(),
        discovery_address: String::new(),
    };
    let mwc = |m: &Mesh| {
        desired_objects(m, &inputs(WebhookEndpoint::Service))
            .unwrap()
            .into_iter()
            .find(|o| o.kind == ObjectKind::MutatingWebhookConfiguration)
            .unwrap()
            .body
    };
    let default = mwc(&mesh("metadata: {name: default}\n"));
    let names: Vec<_> = default["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].clone())
        .collect();
    assert_eq!(
        names,
        [
            json!("namespace.meshd.io"),
            json!("namespace-default.meshd.io"),
            json!("object.meshd.io")
        ]
    );
    let blue = mwc(&mesh(BLUE));
    assert_eq!(blue["metadata"]["name"], "meshd-injector-blue");
    assert_eq!(blue["webhooks"].as_array().unwrap().len(), 2);
    for w in default["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .chain(blue["webhooks"].as_array().unwrap())
    {
        let ns = &w["namespaceSelector"]["matchExpressions"];
        assert_eq!(
            ns[0],
            json!({"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "kube-public", "kube-node-lease", "meshd-system"]})
        );
        assert_eq!(w["sideEffects"], "NoneOnDryRun");
        assert_eq!(w["timeoutSeconds"], 10);
        assert_eq!(w["admissionReviewVersions"], json!(["v1"]));
        assert_eq!(w["rules"][0]["operations"], json!(["CREATE"]));
    }
    assert_eq!(blue["webhooks"][0]["failurePolicy"], "Ignore");
    assert_eq!(default["webhooks"][0]["failurePolicy"], "Fail");
    assert_eq!(
        blue["webhooks"][1]["objectSelector"]["matchExpressions"][1],
        json!({"key": "meshd.io/mesh", "operator": "In", "values": ["blue"]})
    );
    assert_eq!(
        default["webhooks"][2]["objectSelector"]["matchExpressions"][1],
        json!({"key": "meshd.io/mesh", "operator": "DoesNotExist"})
    );
    assert_eq!(
        default["webhooks"][0]["objectSelector"]["matchExpressions"][0],
        json!({"key": "meshd.io/inject", "operator": "NotIn", "values": ["false"]})
    );
}

#[test]
fn a_mesh_without_uid_is_an_error_not_a_panic() {
    let mut m = mesh("metadata: {name: default}\n");
    m.metadata.uid = None;
    let inputs = DesiredInputs {
        webhook: WebhookEndpoint::Service,
        ca_bundle: CA.into(),
        discovery_address: String::new(),
    };
    assert!(
        desired_objects(&m, &inputs)
            .unwrap_err()
            .to_string()
            .contains("metadata.uid")
    );
}
