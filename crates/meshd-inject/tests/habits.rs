//! Istio users' per-pod habits: `sidecar.meshd.io/rewriteAppProbes`, `traffic.meshd.io/captureMode`,
//! `includeInboundPorts`, `includeOutboundPorts`; and postStart/preStop `httpGet`/`tcpSocket` hooks
//! routed through the agent like probes (the contract in docs/design.md).

mod common;

use common::{env, find, flag, init_args};
use meshd_api::MeshSpec;
use meshd_api::mesh::CaptureMode;
use meshd_inject::{InjectionSettings, RequestFacts, Verdict, decide};
use serde_json::{Value, json};

fn inject_with(pod: Value, settings: &InjectionSettings) -> Value {
    let typed: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod.clone()).expect("pod");
    let facts = RequestFacts {
        namespace: "shop".into(),
        ..RequestFacts::default()
    };
    let Verdict::Inject(plan) = decide(&typed, settings, &facts) else {
        panic!("not injected")
    };
    let mut value = pod;
    json_patch::patch(&mut value, &plan.to_patch()).expect("the patch applies");
    value
}

fn inject(pod: Value) -> Value {
    inject_with(pod, &InjectionSettings::default())
}

fn pod_with(annotations: Value, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "shop", "annotations": annotations}, "spec": spec})
}

fn hooked_spec() -> Value {
    json!({
        "terminationGracePeriodSeconds": 45,
        "containers": [{
            "name": "web",
            "ports": [{"name": "admin", "containerPort": 9000}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
            "lifecycle": {
                "postStart": {"httpGet": {"path": "/warm", "port": "admin", "host": "127.0.0.1",
                                          "scheme": "HTTPS", "httpHeaders": [{"name": "X-Hook", "value": "start"}]}},
                "preStop": {"tcpSocket": {"port": 9000}}
            }
        }, {
            "name": "worker",
            "lifecycle": {"preStop": {"exec": {"command": ["drain"]}}, "postStart": {"sleep": {"seconds": 2}}}
        }]
    })
}

fn app_probes(injected: &Value) -> Value {
    let proxy = find(&injected["spec"]["initContainers"], "meshd-proxy");
    let json = env(proxy, "MESHD_APP_PROBES").expect("MESHD_APP_PROBES")["value"]
        .as_str()
        .expect("string");
    serde_json::from_str(json).expect("JSON")
}

#[test]
fn http_and_tcp_hooks_go_through_the_agent_with_the_grace_period_as_timeout() {
    let injected = inject(pod_with(json!({}), hooked_spec()));
    let web = &injected["spec"]["containers"][0]["lifecycle"];
    for (field, segment) in [("postStart", "poststart"), ("preStop", "prestop")] {
        assert_eq!(
            web[field],
            json!({"httpGet": {"path": format!("/app-health/web/{segment}"), "port": 15020, "scheme": "HTTP"}}),
            "{field}"
        );
    }
    let originals = app_probes(&injected);
    // The named port resolved; host, scheme and headers kept; the grace period as the timeout.
    assert_eq!(
        originals["web/poststart"],
        json!({"httpGet": {"path": "/warm", "port": 9000, "host": "127.0.0.1", "scheme": "HTTPS",
                           "httpHeaders": [{"name": "X-Hook", "value": "start"}]},
               "timeoutSeconds": 45})
    );
    assert_eq!(
        originals["web/prestop"],
        json!({"tcpSocket": {"port": 9000}, "timeoutSeconds": 45})
    );
    assert!(
        originals["web/readyz"].is_object(),
        "probes are still there"
    );
    // Exec and sleep hooks are untouched and not handed to the agent.
    assert_eq!(
        injected["spec"]["containers"][1]["lifecycle"],
        hooked_spec()["containers"][1]["lifecycle"]
    );
    assert!(
        originals.get("worker/prestop").is_none() && originals.get("worker/poststart").is_none()
    );

    // Without terminationGracePeriodSeconds, Kubernetes' default of 30 s.
    let mut spec = hooked_spec();
    spec.as_object_mut()
        .expect("spec")
        .remove("terminationGracePeriodSeconds");
    let originals = app_probes(&inject(pod_with(json!({}), spec)));
    assert_eq!(originals["web/prestop"]["timeoutSeconds"], 30);
}

#[test]
fn a_hook_on_an_unknown_named_port_is_left_and_warned() {
    let spec = json!({"containers": [{"name": "web",
        "lifecycle": {"preStop": {"httpGet": {"path": "/stop", "port": "nope"}}}}]});
    let pod: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(pod_with(json!({}), spec.clone())).expect("pod");
    let Verdict::Inject(plan) = decide(
        &pod,
        &InjectionSettings::default(),
        &RequestFacts::default(),
    ) else {
        panic!("not injected")
    };
    assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
    assert!(
        plan.warnings[0].contains("lifecycle.preStop") && plan.warnings[0].contains("\"nope\"")
    );
    assert!(plan.hook_rewrites.is_empty());
}

#[test]
fn rewrite_app_probes_false_leaves_probes_and_hooks_alone() {
    let injected = inject(pod_with(
        json!({"sidecar.meshd.io/rewriteAppProbes": "false"}),
        hooked_spec(),
    ));
    assert_eq!(
        injected["spec"]["containers"][0],
        hooked_spec()["containers"][0]
    );
    let proxy = find(&injected["spec"]["initContainers"], "meshd-proxy");
    assert!(env(proxy, "MESHD_APP_PROBES").is_none());
    // "true" is the default.
    let injected = inject(pod_with(
        json!({"sidecar.meshd.io/rewriteAppProbes": "true"}),
        hooked_spec(),
    ));
    assert_eq!(
        injected["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"],
        15020
    );
}

fn init_names(injected: &Value) -> Vec<String> {
    common::names(&injected["spec"]["initContainers"])
}

#[test]
fn capture_mode_per_pod() {
    let plain = json!({"containers": [{"name": "app"}]});
    let none = inject(pod_with(
        json!({"traffic.meshd.io/captureMode": "none"}),
        plain.clone(),
    ));
    assert_eq!(
        init_names(&none),
        ["meshd-proxy"],
        "no meshd-init, as the Mesh's mode none"
    );
    let nft = inject(pod_with(
        json!({"traffic.meshd.io/captureMode": "nftables"}),
        plain.clone(),
    ));
    assert_eq!(flag(&init_args(&nft), "--mode"), Some("nftables"));
    // A Mesh without capture, one pod with it.
    let mut spec = MeshSpec::default();
    spec.traffic_capture.mode = CaptureMode::None;
    let settings = InjectionSettings::new("default", spec);
    let on = inject_with(
        pod_with(
            json!({"traffic.meshd.io/captureMode": "iptables"}),
            plain.clone(),
        ),
        &settings,
    );
    assert_eq!(flag(&init_args(&on), "--mode"), Some("iptables"));
    assert_eq!(
        init_names(&inject_with(pod_with(json!({}), plain), &settings)),
        ["meshd-proxy"]
    );
}

#[test]
fn include_port_lists_reach_meshd_init() {
    let plain = json!({"containers": [{"name": "app"}]});
    for (annotations, inbound, outbound) in [
        (json!({}), None, None),
        (
            json!({"traffic.meshd.io/includeInboundPorts": "*"}),
            None,
            None,
        ),
        (
            json!({"traffic.meshd.io/includeInboundPorts": "8080, 9090"}),
            Some("8080,9090"),
            None,
        ),
        (
            json!({"traffic.meshd.io/includeInboundPorts": ""}),
            Some(""),
            None,
        ),
        (
            json!({"traffic.meshd.io/includeOutboundPorts": "5432,6379"}),
            None,
            Some("5432,6379"),
        ),
    ] {
        let args = init_args(&inject(pod_with(annotations.clone(), plain.clone())));
        assert_eq!(
            flag(&args, "--include-inbound-ports"),
            inbound,
            "{annotations}"
        );
        assert_eq!(
            flag(&args, "--include-outbound-ports"),
            outbound,
            "{annotations}"
        );
    }
}
