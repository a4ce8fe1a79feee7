//! `meshd check-inject`: the check (`meshd_inject::check`) against meshd's webhook configurations as the
//! operator writes them (`meshd_operator::desired` for Meshes `default` and `blue`), another mesh's
//! injector and an unrelated webhook (tests/fixtures/check-inject), and namespaces as the API server
//! returns them; then the command as a process against a fake API server.

mod fake_http;

use std::process::{Command, Output};

use fake_http::{FakeHttp, route};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use meshd_api::Mesh;
use meshd_inject::SkipReason;
use meshd_inject::check::{CheckOutcome, InjectionCheck, check_injection};
use meshd_operator::desired::{DesiredInputs, ObjectKind, WebhookEndpoint, desired_objects};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/check-inject");
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/check-inject");

fn yaml_documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).expect("fixture");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
        .collect()
}

/// The MutatingWebhookConfiguration the operator writes for Mesh `name`.
fn meshd_configuration(name: &str) -> Value {
    let mut mesh: Mesh = serde_yaml::from_str(&format!(
        "apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {{name: {name}}}\nspec: {{}}\n"
    ))
    .expect("mesh");
    mesh.metadata.uid = Some("11111111-2222-3333-4444-555555555555".into());
    let inputs = DesiredInputs {
        webhook: WebhookEndpoint::Service,
        ca_bundle: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".into(),
        discovery_address: String::new(),
    };
    desired_objects(&mesh, &inputs)
        .expect("desired")
        .into_iter()
        .find(|o| o.kind == ObjectKind::MutatingWebhookConfiguration)
        .expect("a webhook configuration")
        .body
}

/// meshd's for `default` and `blue`, Istio's, and cert-manager's.
fn all_configurations() -> Vec<Value> {
    let mut all = vec![meshd_configuration("default"), meshd_configuration("blue")];
    all.extend(yaml_documents("other-webhooks.yaml"));
    all
}

fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone()).expect("typed")
}

fn namespace(name: &str) -> Value {
    yaml_documents("namespaces.yaml")
        .into_iter()
        .find(|n| n["metadata"]["name"] == name)
        .expect("namespace fixture")
}

fn pod(namespace: &str, labels: Value, extra: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "web", "image": "web:1"}]}
    });
    merge(&mut pod, extra);
    pod
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

fn check(ns: &str, pod_value: &Value, configurations: &[Value]) -> InjectionCheck {
    let configurations: Vec<MutatingWebhookConfiguration> =
        configurations.iter().map(typed).collect();
    let pod: Pod = typed(pod_value);
    let namespace: Namespace = typed(&namespace(ns));
    check_injection(&pod, &namespace, &configurations)
}

fn injected(configuration: &str, webhook: &str, mesh: &str) -> CheckOutcome {
    CheckOutcome::Injected {
        configuration: configuration.into(),
        webhook: webhook.into(),
        mesh: mesh.into(),
    }
}

#[test]
fn each_opt_in_path_is_found_with_its_webhook_and_mesh() {
    let all = all_configurations();
    let cases = [
        (
            "namespace meshd.io/inject=enabled",
            "shop",
            json!({}),
            injected(
                "meshd-injector-default",
                "namespace-default.meshd.io",
                "default",
            ),
        ),
        (
            "namespace meshd.io/mesh=blue",
            "blue-apps",
            json!({}),
            injected("meshd-injector-blue", "namespace.meshd.io", "blue"),
        ),
        (
            "pod meshd.io/inject=true in an unlabelled namespace",
            "plain",
            json!({"meshd.io/inject": "true"}),
            injected("meshd-injector-default", "object.meshd.io", "default"),
        ),
        (
            "pod opted in to mesh blue",
            "plain",
            json!({"meshd.io/inject": "true", "meshd.io/mesh": "blue"}),
            injected("meshd-injector-blue", "object.meshd.io", "blue"),
        ),
    ];
    for (name, ns, labels, want) in cases {
        let c = check(ns, &pod(ns, labels, json!({})), &all);
        assert_eq!(c.outcome, want, "{name}");
        assert!(c.outcome.in_mesh());
        assert!(c.warnings.is_empty(), "{name}: {:?}", c.warnings);
        let called: Vec<&str> = c
            .webhooks
            .iter()
            .filter(|w| w.called.is_ok())
            .map(|w| w.webhook.as_str())
            .collect();
        assert_eq!(
            called.len(),
            1,
            "{name}: the paths are disjoint: {called:?}"
        );
    }
}

fn why_not(c: &InjectionCheck, configuration: &str, webhook: &str) -> String {
    c.webhooks
        .iter()
        .find(|w| w.configuration == configuration && w.webhook == webhook)
        .expect("webhook listed")
        .called
        .clone()
        .expect_err("not called")
        .to_string()
}

#[test]
fn a_pod_no_webhook_selects_says_why_per_webhook() {
    let all = all_configurations();
    let c = check(
        "plain",
        &pod("plain", json!({"app": "web"}), json!({})),
        &all,
    );
    let CheckOutcome::NotSelected { why } = &c.outcome else {
        panic!("{:?}", c.outcome)
    };
    assert!(why.starts_with("no meshd webhook selects the pod; to opt in, label namespace plain meshd.io/inject=enabled"), "{why}");
    assert_eq!(
        why_not(&c, "meshd-injector-default", "namespace.meshd.io"),
        "namespaceSelector: meshd.io/mesh In [default]: no label meshd.io/mesh"
    );
    assert_eq!(
        why_not(&c, "meshd-injector-default", "object.meshd.io"),
        "objectSelector: meshd.io/inject In [true]: no label meshd.io/inject"
    );
    assert_eq!(
        why_not(&c, "cert-manager-webhook", "webhook.cert-manager.io"),
        "its rules do not cover CREATE of pods"
    );
    // In the API server's order: configurations by name.
    let order: Vec<&str> = c
        .webhooks
        .iter()
        .map(|w| w.configuration.as_str())
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    assert_eq!(
        c.webhooks.len(),
        1 + 2 + 2 + 3,
        "every webhook of every configuration"
    );
}

#[test]
fn opt_outs_and_system_namespaces_are_not_selected() {
    let all = all_configurations();
    let c = check("opted-out", &pod("opted-out", json!({}), json!({})), &all);
    assert!(matches!(c.outcome, CheckOutcome::NotSelected { .. }));
    assert_eq!(
        why_not(&c, "meshd-injector-default", "namespace-default.meshd.io"),
        "namespaceSelector: meshd.io/inject In [enabled]: the label meshd.io/inject is \"disabled\""
    );
    let c = check(
        "shop",
        &pod("shop", json!({"meshd.io/inject": "false"}), json!({})),
        &all,
    );
    assert!(matches!(c.outcome, CheckOutcome::NotSelected { .. }));
    assert_eq!(
        why_not(&c, "meshd-injector-default", "namespace-default.meshd.io"),
        "objectSelector: meshd.io/inject NotIn [false]: the label meshd.io/inject is \"false\""
    );
    let c = check(
        "kube-system",
        &pod("kube-system", json!({}), json!({})),
        &all,
    );
    assert_eq!(
        c.outcome,
        CheckOutcome::NotSelected {
            why: "kube-system is a system namespace: meshd never injects there".into()
        }
    );
    assert!(
        why_not(&c, "meshd-injector-default", "namespace-default.meshd.io")
            .starts_with("namespaceSelector: kubernetes.io/metadata.name NotIn [kube-system, kube-public, kube-node-lease, meshd-system]")
    );
}

#[test]
fn the_handler_rules_are_meshd_injects_own_decision() {
    let all = all_configurations();
    let skipped = |extra: Value| match check("shop", &pod("shop", json!({}), extra), &all).outcome {
        CheckOutcome::Skipped {
            reason,
            why,
            webhook,
            mesh,
        } => {
            assert_eq!(
                (webhook.as_str(), mesh.as_str()),
                ("namespace-default.meshd.io", "default")
            );
            (reason, why)
        }
        other => panic!("{other:?}"),
    };
    let (reason, why) = skipped(json!({"spec": {"hostNetwork": true}}));
    assert_eq!(reason, SkipReason::HostNetwork);
    assert!(why.contains("hostNetwork"), "{why}");
    let (reason, why) = skipped(
        json!({"spec": {"containers": [{"name": "istio-proxy", "image": "istio/proxyv2"}]}}),
    );
    assert_eq!(reason, SkipReason::OtherMesh);
    assert!(why.contains("\"istio-proxy\""), "{why}");

    let refused = check(
        "shop",
        &pod(
            "shop",
            json!({}),
            json!({"metadata": {"annotations": {"traffic.meshd.io/excludeInboundPorts": "http"}}}),
        ),
        &all,
    );
    let CheckOutcome::Refused { why, .. } = &refused.outcome else {
        panic!("{:?}", refused.outcome)
    };
    assert!(
        why.contains("traffic.meshd.io/excludeInboundPorts"),
        "{why}"
    );
    assert!(!refused.outcome.in_mesh());

    let status = r#"{"initContainers":["meshd-init"],"containers":["meshd-proxy"],"volumes":[],"mesh":"blue","proxyImage":"p"}"#;
    let already = check(
        "shop",
        &pod(
            "shop",
            json!({}),
            json!({"metadata": {"annotations": {"meshd.io/status": status}}}),
        ),
        &all,
    );
    assert_eq!(
        already.outcome,
        CheckOutcome::AlreadyInjected {
            mesh: Some("blue".into())
        }
    );
    assert!(already.outcome.in_mesh());
}

#[test]
fn another_meshs_webhook_on_the_same_pod_is_a_warning() {
    let all = all_configurations();
    let c = check(
        "both-meshes",
        &pod("both-meshes", json!({}), json!({})),
        &all,
    );
    assert_eq!(
        c.outcome,
        injected(
            "meshd-injector-default",
            "namespace-default.meshd.io",
            "default"
        )
    );
    assert_eq!(
        c.warnings,
        [
            "webhook namespace.sidecar-injector.istio.io (MutatingWebhookConfiguration istio-sidecar-injector) is not \
          meshd's and also mutates this pod; it is called before meshd's meshd-injector-default (configurations are \
          called in name order): if it adds another mesh's proxy, meshd's handler then leaves the pod alone"
        ]
    );
    // Istio's object webhook carries matchConditions: counted, not evaluated.
    let c = check(
        "plain",
        &pod(
            "plain",
            json!({"sidecar.istio.io/inject": "true"}),
            json!({}),
        ),
        &all,
    );
    let istio = c
        .webhooks
        .iter()
        .find(|w| w.webhook == "object.sidecar-injector.istio.io")
        .expect("listed");
    assert!(istio.called.is_ok());
    assert_eq!(istio.unevaluated_conditions, 1);
    assert!(matches!(c.outcome, CheckOutcome::NotSelected { .. }));
}

#[test]
fn without_meshd_configurations_it_says_no_mesh_is_applied() {
    let c = check(
        "shop",
        &pod("shop", json!({}), json!({})),
        &yaml_documents("other-webhooks.yaml"),
    );
    let CheckOutcome::NotSelected { why } = &c.outcome else {
        panic!("{:?}", c.outcome)
    };
    assert!(
        why.contains("no MutatingWebhookConfiguration of meshd exists"),
        "{why}"
    );
}

// The command against a fake API server.

fn fake_api(configurations_status: u16) -> FakeHttp {
    let list = |items: Vec<Value>| {
        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "5"}, "items": items})
            .to_string()
    };
    let mut routes = vec![route(
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        configurations_status,
        if configurations_status == 200 {
            list(all_configurations())
        } else {
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"mutatingwebhookconfigurations.admissionregistration.k8s.io is forbidden","reason":"Forbidden","code":403}"#.into()
        },
    )];
    for ns in ["shop", "plain", "both-meshes"] {
        routes.push(route(
            &format!("/api/v1/namespaces/{ns}"),
            200,
            namespace(ns).to_string(),
        ));
    }
    routes.push(route(
        "/api/v1/namespaces/plain/pods/web-1",
        200,
        pod("plain", json!({"app": "web"}), json!({})).to_string(),
    ));
    routes.push(route(
        "/api/v1/namespaces/shop/pods/web-1",
        200,
        pod(
            "shop",
            json!({"app": "web"}),
            json!({"spec": {"hostNetwork": true}}),
        )
        .to_string(),
    ));
    FakeHttp::start(routes)
}

fn check_inject(api: &FakeHttp, args: &[&str]) -> (Output, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = api.kubeconfig(dir.path());
    let out = Command::new(MESHD)
        .arg("check-inject")
        .args(args)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .output()
        .expect("meshd runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    (out, stdout, stderr)
}

#[test]
fn the_command_reads_the_live_objects_and_exits_0_when_injected() {
    let api = fake_api(200);
    let (out, stdout, stderr) = check_inject(&api, &["-n", "both-meshes"]);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let path = format!("{GOLDEN}/both-meshes.txt");
    if std::env::var_os("MESHD_BLESS").is_some() {
        std::fs::create_dir_all(GOLDEN).expect("golden dir");
        std::fs::write(&path, &stdout).expect("bless");
    } else {
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (MESHD_BLESS=1)"));
        assert_eq!(stdout, want, "{path}");
    }
    assert_eq!(
        api.requests(),
        [
            "GET /api/v1/namespaces/both-meshes",
            "GET /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations?"
        ]
    );
}

#[test]
fn the_command_exits_1_when_not_injected_and_labels_can_be_tested() {
    let api = fake_api(200);
    let (out, stdout, _) = check_inject(&api, &["web-1", "-n", "plain"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.starts_with("Pod plain/web-1, labels: app=web\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Injected: no: no meshd webhook selects the pod"),
        "{stdout}"
    );
    let (out, stdout, _) = check_inject(
        &api,
        &["web-1", "-n", "plain", "-l", "meshd.io/inject=true"],
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("Injected: yes, by webhook object.meshd.io (MutatingWebhookConfiguration meshd-injector-default) of Mesh default"), "{stdout}");
    // The namespace defaults to the kubeconfig context's (shop); its pod web-1 is hostNetwork.
    let (out, stdout, _) = check_inject(&api, &["web-1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("Injected: no: webhook namespace-default.meshd.io of Mesh default is called, and it lets the pod through without a sidecar: hostNetwork pods"),
        "{stdout}"
    );
}

#[test]
fn missing_objects_and_forbidden_lists_are_one_line_errors() {
    let api = fake_api(200);
    let (out, _, stderr) = check_inject(&api, &["-n", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr.trim(), "meshd: namespace nope not found");
    let (out, _, stderr) = check_inject(&api, &["gone", "-n", "shop"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr.trim(), "meshd: pod shop/gone not found");
    let api = fake_api(403);
    let (out, _, stderr) = check_inject(&api, &["-n", "shop"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("listing MutatingWebhookConfigurations: forbidden: needs list mutatingwebhookconfigurations.admissionregistration.k8s.io"),
        "{stderr}"
    );
    let out = Command::new(MESHD)
        .args(["check-inject", "-l", "novalue"])
        .output()
        .expect("meshd runs");
    assert_eq!(out.status.code(), Some(64));
    // Neither POD nor -n: one line that names what is missing (clap lists it on its second line).
    let out = Command::new(MESHD)
        .arg("check-inject")
        .output()
        .expect("meshd runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        stderr.trim(),
        "meshd: the following required arguments were not provided: <POD>"
    );
}
