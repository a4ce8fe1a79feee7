//! Table tests of the decision and the patch: native vs classic by server version and settings,
//! capture mode none, override precedence, JSON-pointer escaping, parents created only when missing,
//! and the answers to requests that are not pod CREATEs or cannot be read.

mod common;

use common::*;
use meshd_api::MeshSpec;
use meshd_api::mesh::{CaptureMode, NativeSidecar};
use meshd_inject::{
    ApiServerVersion, InjectionSettings, RequestFacts, ReviewResult, SkipReason, Verdict, decide,
    review,
};
use serde_json::{Value, json};

const V1_28: ApiServerVersion = ApiServerVersion {
    major: 1,
    minor: 28,
};
const V1_30: ApiServerVersion = ApiServerVersion {
    major: 1,
    minor: 30,
};

fn pod(extra_annotations: Value) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "shop", "annotations": extra_annotations},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}
    }))
    .expect("pod")
}

fn facts(version: Option<ApiServerVersion>) -> RequestFacts {
    RequestFacts {
        namespace: "shop".into(),
        dry_run: false,
        server_version: version,
    }
}

fn inject(
    pod: &k8s_openapi::api::core::v1::Pod,
    settings: &InjectionSettings,
    version: Option<ApiServerVersion>,
) -> Value {
    let Verdict::Inject(plan) = decide(pod, settings, &facts(version)) else {
        panic!("not injected")
    };
    let mut value = serde_json::to_value(pod).expect("pod json");
    json_patch::patch(&mut value, &plan.to_patch()).expect("patch applies");
    value
}

fn proxy_placement(injected: &Value) -> &'static str {
    let init = names(&injected["spec"]["initContainers"]);
    let containers = names(&injected["spec"]["containers"]);
    match (
        init.contains(&"meshd-proxy".to_string()),
        containers.first().map(String::as_str),
    ) {
        (true, _) => "native",
        (false, Some("meshd-proxy")) => "classic",
        _ => "missing",
    }
}

#[test]
fn native_or_classic_by_version_setting_and_annotation() {
    let with = |native: NativeSidecar| {
        let mut spec = MeshSpec::default();
        spec.injection.native_sidecar = native;
        InjectionSettings::new("default", spec)
    };
    let none = json!({});
    let off = json!({"sidecar.meshd.io/nativeSidecar": "false"});
    let on = json!({"sidecar.meshd.io/nativeSidecar": "true"});
    for (setting, version, annotations, want) in [
        (NativeSidecar::Auto, Some(V1_28), &none, "classic"),
        (NativeSidecar::Auto, Some(V1_30), &none, "native"),
        (
            NativeSidecar::Auto,
            Some(ApiServerVersion::NATIVE_SIDECARS),
            &none,
            "native",
        ),
        (NativeSidecar::Auto, None, &none, "native"),
        (NativeSidecar::False, Some(V1_30), &none, "classic"),
        (NativeSidecar::True, Some(V1_28), &none, "native"),
        (NativeSidecar::Auto, Some(V1_30), &off, "classic"),
        (NativeSidecar::False, None, &on, "native"),
    ] {
        let injected = inject(&pod(annotations.clone()), &with(setting), version);
        assert_eq!(
            proxy_placement(&injected),
            want,
            "{setting:?} {version:?} {annotations}"
        );
    }
}

#[test]
fn classic_proxy_holds_the_app_with_post_start() {
    let settings = InjectionSettings::default();
    let injected = inject(&pod(json!({})), &settings, Some(V1_28));
    let proxy = &injected["spec"]["containers"][0];
    assert_eq!(
        proxy["lifecycle"]["postStart"]["exec"]["command"],
        json!(["meshd", "agent", "wait"])
    );
    assert!(proxy.get("restartPolicy").is_none() && proxy.get("startupProbe").is_none());
    assert_eq!(names(&injected["spec"]["initContainers"]), ["meshd-init"]);
    assert_eq!(
        injected["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"],
        "app"
    );
    let status: Value = serde_json::from_str(
        injected["metadata"]["annotations"]["meshd.io/status"]
            .as_str()
            .expect("s"),
    )
    .expect("json");
    assert_eq!(status["containers"], json!(["meshd-proxy"]));
    assert_eq!(status["initContainers"], json!(["meshd-init"]));

    let no_hold = inject(
        &pod(json!({"sidecar.meshd.io/holdApplicationUntilProxyStarts": "false"})),
        &settings,
        Some(V1_28),
    );
    assert!(no_hold["spec"]["containers"][0].get("lifecycle").is_none());
}

#[test]
fn capture_mode_none_has_no_init_container() {
    let mut spec = MeshSpec::default();
    spec.traffic_capture.mode = CaptureMode::None;
    let injected = inject(
        &pod(json!({})),
        &InjectionSettings::new("default", spec),
        None,
    );
    assert_eq!(names(&injected["spec"]["initContainers"]), ["meshd-proxy"]);
}

#[test]
fn mesh_settings_reach_the_sidecar_and_annotations_win() {
    let mut spec = MeshSpec::default();
    spec.traffic_capture.mode = CaptureMode::Nftables;
    spec.traffic_capture.exclude_inbound_ports = vec![22];
    spec.traffic_capture.exclude_outbound_cidrs = vec!["169.254.169.254/32".into()];
    spec.trust_domain = "example.org".into();
    let settings = InjectionSettings::new("blue", spec).with_discovery_address("10.0.0.1:15012");
    let injected = inject(
        &pod(
            json!({"traffic.meshd.io/excludeInboundPorts": "8081", "sidecar.meshd.io/logLevel": "debug",
                    "traffic.meshd.io/includeOutboundCIDRs": "10.0.0.0/8,fd00::/8"}),
        ),
        &settings,
        None,
    );
    let init = find(&injected["spec"]["initContainers"], "meshd-init");
    let args: Vec<&str> = init["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let flag = |f: &str| {
        args[args
            .iter()
            .position(|a| *a == f)
            .unwrap_or_else(|| panic!("{f} missing"))
            + 1]
    };
    assert_eq!(flag("--mode"), "nftables");
    assert_eq!(
        flag("--exclude-inbound-ports"),
        "8081",
        "the annotation replaces the mesh's list"
    );
    assert_eq!(flag("--exclude-outbound-cidrs"), "169.254.169.254/32");
    assert_eq!(flag("--include-outbound-cidrs"), "10.0.0.0/8,fd00::/8");
    let proxy = find(&injected["spec"]["initContainers"], "meshd-proxy");
    assert_eq!(env(proxy, "MESHD_MESH").expect("mesh")["value"], "blue");
    assert_eq!(
        env(proxy, "MESHD_TRUST_DOMAIN").expect("td")["value"],
        "example.org"
    );
    assert_eq!(
        env(proxy, "MESHD_DISCOVERY_ADDRESS").expect("xds")["value"],
        "10.0.0.1:15012"
    );
    assert_eq!(
        env(proxy, "MESHD_ENVOY_LOG_LEVEL").expect("log")["value"],
        "debug"
    );
    assert_eq!(injected["metadata"]["labels"]["meshd.io/mesh"], "blue");
}

fn proxy_resources(annotations: Value) -> Value {
    let injected = inject(&pod(annotations), &InjectionSettings::default(), None);
    find(&injected["spec"]["initContainers"], "meshd-proxy")["resources"].clone()
}

#[test]
fn an_empty_include_list_reaches_init_as_capture_no_outbound() {
    // Istio's `-i ""`: the annotation, or the Mesh's `includeOutboundCIDRs: []`.
    let mut spec = MeshSpec::default();
    spec.traffic_capture.include_outbound_cidrs = Vec::new();
    for (annotations, settings) in [
        (
            json!({"traffic.meshd.io/includeOutboundCIDRs": ""}),
            InjectionSettings::default(),
        ),
        (json!({}), InjectionSettings::new("default", spec)),
    ] {
        let args = init_args(&inject(&pod(annotations.clone()), &settings, None));
        assert_eq!(
            flag(&args, "--include-outbound-cidrs"),
            Some(""),
            "{annotations}: {args:?}"
        );
        // Nothing is captured outbound, so there is nothing for --validate to prove.
        assert!(!args.contains(&"--validate".to_string()), "{args:?}");
    }
    let args = init_args(&inject(
        &pod(json!({})),
        &InjectionSettings::default(),
        None,
    ));
    assert_eq!(flag(&args, "--include-outbound-cidrs"), Some("*"));
    assert!(args.contains(&"--validate".to_string()));
}

#[test]
fn a_request_above_the_mesh_limit_raises_the_limit() {
    // The mesh's defaults: 100m/128Mi requested, 2 CPU/1Gi limit (Istio's). Istio users write
    // `proxyCPU: 4000m` alone and expect it to hold.
    let r = proxy_resources(json!({"sidecar.meshd.io/proxyCPU": "4000m"}));
    assert_eq!(r["requests"]["cpu"], "4000m");
    assert_eq!(
        r["limits"]["cpu"], "4000m",
        "the limit is raised to the request"
    );
    assert_eq!(
        r["limits"]["memory"], "1Gi",
        "the other resource is untouched"
    );
    let r = proxy_resources(json!({"sidecar.meshd.io/proxyMemory": "2Gi"}));
    assert_eq!(
        (&r["requests"]["memory"], &r["limits"]["memory"]),
        (&json!("2Gi"), &json!("2Gi"))
    );
    // A limit below the mesh's request lowers the request (Kubernetes defaults a request to the limit).
    let r = proxy_resources(json!({"sidecar.meshd.io/proxyCPULimit": "50m"}));
    assert_eq!(
        (&r["requests"]["cpu"], &r["limits"]["cpu"]),
        (&json!("50m"), &json!("50m"))
    );
    // Within the limit: nothing else moves.
    let r = proxy_resources(json!({"sidecar.meshd.io/proxyCPU": "1500m"}));
    assert_eq!(
        (&r["requests"]["cpu"], &r["limits"]["cpu"]),
        (&json!("1500m"), &json!("2"))
    );
}

#[test]
fn an_annotated_request_above_an_annotated_limit_is_refused_naming_both() {
    let verdict = decide(
        &pod(
            json!({"sidecar.meshd.io/proxyMemory": "2Gi", "sidecar.meshd.io/proxyMemoryLimit": "1Gi"}),
        ),
        &InjectionSettings::default(),
        &facts(None),
    );
    let Verdict::Refuse(refusal) = verdict else {
        panic!("{verdict:?}")
    };
    let text = refusal.to_string();
    assert!(
        text.contains("sidecar.meshd.io/proxyMemory=\"2Gi\"")
            && text.contains("sidecar.meshd.io/proxyMemoryLimit=\"1Gi\""),
        "{text}"
    );
    // Raising the limit too makes it fine.
    let ok = decide(
        &pod(
            json!({"sidecar.meshd.io/proxyMemory": "2Gi", "sidecar.meshd.io/proxyMemoryLimit": "3Gi"}),
        ),
        &InjectionSettings::default(),
        &facts(None),
    );
    assert!(matches!(ok, Verdict::Inject(_)));
}

#[test]
fn patch_creates_parents_only_when_missing_and_escapes_keys() {
    let settings = InjectionSettings::default();
    // No annotations, no labels, no volumes, no init containers: one add per parent.
    let bare: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}]}
    }))
    .expect("pod");
    let Verdict::Inject(plan) = decide(&bare, &settings, &facts(None)) else {
        panic!()
    };
    let ops = serde_json::to_value(plan.to_patch()).expect("json");
    let paths: Vec<&str> = ops
        .as_array()
        .expect("ops")
        .iter()
        .map(|o| o["path"].as_str().expect("path"))
        .collect();
    assert_eq!(
        paths,
        [
            "/metadata/labels",
            "/metadata/annotations",
            "/spec/volumes",
            "/spec/initContainers"
        ]
    );

    // Existing parents: keys added one by one, escaped; arrays extended in place.
    let full: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "labels": {"app": "a"}, "annotations": {"a/b~c": "x"}},
        "spec": {"containers": [{"name": "app"}], "volumes": [{"name": "v", "emptyDir": {}}],
                 "initContainers": [{"name": "first"}]}
    }))
    .expect("pod");
    let Verdict::Inject(plan) = decide(&full, &settings, &facts(Some(V1_28))) else {
        panic!()
    };
    let ops = serde_json::to_value(plan.to_patch()).expect("json");
    let paths: Vec<&str> = ops
        .as_array()
        .expect("ops")
        .iter()
        .map(|o| o["path"].as_str().expect("path"))
        .collect();
    assert_eq!(
        paths,
        [
            "/metadata/labels/meshd.io~1mesh",
            "/metadata/annotations/kubectl.kubernetes.io~1default-container",
            "/metadata/annotations/meshd.io~1status",
            "/spec/volumes/-",
            "/spec/volumes/-",
            "/spec/volumes/-",
            "/spec/volumes/-",
            "/spec/initContainers/0",
            "/spec/containers/0",
        ]
    );
    let mut value = serde_json::to_value(&full).expect("json");
    json_patch::patch(&mut value, &plan.to_patch()).expect("applies");
    assert_eq!(value["metadata"]["annotations"]["a/b~c"], "x");
    assert_eq!(
        names(&value["spec"]["initContainers"]),
        ["meshd-init", "first"]
    );
}

#[test]
fn a_named_default_container_is_kept() {
    let injected = inject(
        &pod(json!({"kubectl.kubernetes.io/default-container": "other"})),
        &InjectionSettings::default(),
        None,
    );
    assert_eq!(
        injected["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"],
        "other"
    );
}

#[test]
fn probe_on_an_unknown_named_port_is_left_and_warned() {
    let p: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "app", "readinessProbe": {"httpGet": {"path": "/", "port": "nope"}},
                                  "livenessProbe": {"httpGet": {"path": "/", "port": 80}}}]}
    }))
    .expect("pod");
    let Verdict::Inject(plan) = decide(&p, &InjectionSettings::default(), &facts(None)) else {
        panic!()
    };
    assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
    assert!(plan.warnings[0].contains("\"nope\""));
    let mut value = serde_json::to_value(&p).expect("json");
    json_patch::patch(&mut value, &plan.to_patch()).expect("applies");
    assert_eq!(
        value["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"],
        "nope"
    );
    assert_eq!(
        value["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"],
        15020
    );
}

#[test]
fn system_namespaces_and_opt_out_are_skipped() {
    for ns in [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "meshd-system",
    ] {
        let f = RequestFacts {
            namespace: ns.into(),
            ..facts(None)
        };
        let mut p = pod(json!({}));
        p.metadata.namespace = None;
        assert_eq!(
            decide(&p, &InjectionSettings::default(), &f),
            Verdict::Skip(SkipReason::SystemNamespace),
            "{ns}"
        );
    }
    let mut p = pod(json!({}));
    p.metadata.labels = Some([("meshd.io/inject".to_string(), "false".to_string())].into());
    assert_eq!(
        decide(&p, &InjectionSettings::default(), &facts(None)),
        Verdict::Skip(SkipReason::OptedOut)
    );
    p.metadata.labels = Some([("meshd.io/inject".to_string(), "true".to_string())].into());
    assert!(matches!(
        decide(&p, &InjectionSettings::default(), &facts(None)),
        Verdict::Inject(_)
    ));
}

fn with_request(mutate: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&fixture("pod-web.json")).expect("json");
    mutate(&mut body["request"]);
    serde_json::to_vec(&body).expect("json")
}

#[test]
fn requests_that_are_not_pod_creates_are_allowed_unpatched() {
    let settings = InjectionSettings::default();
    let update = with_request(|r| {
        r["operation"] = "UPDATE".into();
        r["oldObject"] = r["object"].clone();
    });
    let delete = with_request(|r| {
        r["operation"] = "DELETE".into();
        r["oldObject"] = r["object"].clone();
        r["object"] = Value::Null;
    });
    let service = with_request(|r| {
        r["kind"] = json!({"group": "", "version": "v1", "kind": "Service"});
        r["object"] =
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {}});
    });
    let binding = with_request(|r| {
        r["subResource"] = "binding".into();
        r["object"] = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web"}, "target": {"kind": "Node", "name": "n"}});
    });
    for (what, body) in [
        ("update", update),
        ("delete", delete),
        ("service", service),
        ("binding", binding),
    ] {
        let a = run(&body, &settings);
        assert_eq!(
            a.answer.result,
            ReviewResult::Skipped(SkipReason::NotPodCreate),
            "{what}: {}",
            a.answer.message
        );
        assert_eq!(a.response["allowed"], true, "{what}");
        assert!(a.after.is_none(), "{what}");
    }
}

#[test]
fn unreadable_requests_get_an_answer_not_a_panic() {
    let settings = InjectionSettings::default();
    // A pod CREATE whose object is not a pod: refused with the reason, uid echoed.
    let not_a_pod = with_request(|r| r["object"]["spec"]["containers"] = "many".into());
    let a = run(&not_a_pod, &settings);
    assert_eq!(a.answer.result, ReviewResult::Invalid("not_a_pod"));
    assert_eq!(a.response["allowed"], false);
    assert!(
        a.response["status"]["message"]
            .as_str()
            .expect("message")
            .contains("cannot be read as a pod")
    );
    // No uid, not JSON, not an AdmissionReview: HTTP 400 with a message.
    for body in [
        with_request(|r| r["uid"] = "".into()),
        b"{not json".to_vec(),
        b"[]".to_vec(),
        b"{}".to_vec(),
        Vec::new(),
    ] {
        let answer = review(&body, &settings, None);
        assert_eq!(
            answer.http_status,
            400,
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert!(!answer.body.is_empty());
        assert!(matches!(answer.result, ReviewResult::Invalid(_)));
    }
}

#[test]
fn patch_bytes_are_the_json_patch_serialized() {
    for name in fixture_names() {
        let body: Value = serde_json::from_slice(&fixture(&name)).expect("json");
        let Ok(p) = serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(
            body["request"]["object"].clone(),
        ) else {
            continue;
        };
        for version in [None, Some(V1_28)] {
            if let Verdict::Inject(plan) =
                decide(&p, &InjectionSettings::default(), &facts(version))
            {
                let fast = plan.patch_bytes().expect("bytes");
                assert_eq!(
                    fast,
                    serde_json::to_vec(&plan.to_patch()).expect("json"),
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn a_review_with_a_uid_but_unreadable_gets_an_admission_error() {
    // `kind` missing: not a readable AdmissionRequest, but there is a uid to answer.
    let body = with_request(|r| {
        r.as_object_mut().expect("request").remove("kind");
    });
    let a = run(&body, &InjectionSettings::default());
    assert_eq!(a.answer.result, ReviewResult::Invalid("malformed"));
    assert_eq!(a.response["allowed"], false);
    assert_eq!(a.response["status"]["reason"], "InvalidRequest");
    assert!(
        a.response["status"]["message"]
            .as_str()
            .expect("message")
            .contains("kind"),
        "{}",
        a.response
    );
}

#[test]
fn a_non_string_annotation_or_label_is_refused_naming_the_field() {
    for (field, value, named) in [
        (
            "annotations",
            json!({"sidecar.meshd.io/nativeSidecar": true}),
            "metadata.annotations[\"sidecar.meshd.io/nativeSidecar\"]: invalid type: boolean `true`, expected a string",
        ),
        (
            "labels",
            json!({"version": 2}),
            "metadata.labels[\"version\"]: invalid type: integer `2`, expected a string",
        ),
    ] {
        let body = with_request(|r| r["object"]["metadata"][field] = value);
        let a = run(&body, &InjectionSettings::default());
        assert_eq!(a.answer.result, ReviewResult::Invalid("not_a_pod"));
        assert_eq!(a.response["allowed"], false);
        let message = a.response["status"]["message"].as_str().expect("message");
        assert!(message.contains(named), "{message}");
        assert!(message.contains("quote the value"), "{message}");
    }
}

#[test]
fn an_unreadable_envelope_is_refused_naming_the_field() {
    let body = with_request(|r| r["dryRun"] = "yes".into());
    let a = run(&body, &InjectionSettings::default());
    assert_eq!(a.answer.result, ReviewResult::Invalid("malformed"));
    let message = a.response["status"]["message"].as_str().expect("message");
    assert!(
        message.contains("request.dryRun: invalid type"),
        "{message}"
    );
}

/// Every patch applies to the object exactly as sent: `run` applies it with json-patch. A pod without
/// metadata (absent or null) gets `/metadata` whole; null parents are replaced.
#[test]
fn patches_apply_to_pods_with_missing_or_null_parents() {
    type Mutation = fn(&mut Value);
    let cases: [(&str, Mutation); 7] = [
        ("metadata absent", |o| {
            o.as_object_mut().expect("pod").remove("metadata");
        }),
        ("metadata null", |o| o["metadata"] = Value::Null),
        ("metadata empty", |o| o["metadata"] = json!({})),
        (
            "labels and annotations null",
            |o| o["metadata"] = json!({"name": "web", "labels": null, "annotations": null}),
        ),
        ("initContainers null", |o| {
            o["spec"]["initContainers"] = Value::Null
        }),
        ("volumes null", |o| o["spec"]["volumes"] = Value::Null),
        ("probe null", |o| {
            o["spec"]["containers"][0]["livenessProbe"] = Value::Null
        }),
    ];
    for (what, mutate) in cases {
        let body = with_request(|r| mutate(&mut r["object"]));
        let a = run(&body, &InjectionSettings::default());
        assert_eq!(
            a.answer.result,
            ReviewResult::Injected,
            "{what}: {}",
            a.answer.message
        );
        let pod = a.after.expect("patched");
        assert_eq!(
            pod["metadata"]["labels"]["meshd.io/mesh"], "default",
            "{what}"
        );
        assert!(
            pod["metadata"]["annotations"]["meshd.io/status"].is_string(),
            "{what}"
        );
    }
}

/// Found by fuzzing: kube echoes the request's TypeMeta, so a mangled `kind` came back as the answer's.
#[test]
fn the_answer_is_an_admission_review_v1_whatever_the_request_says() {
    for (field, value) in [
        ("kind", json!("")),
        ("apiVersion", json!("admission.k8s.io/v1beta1")),
    ] {
        let mut body: Value = serde_json::from_slice(&fixture("pod-web.json")).expect("json");
        body[field] = value;
        // `run` asserts apiVersion admission.k8s.io/v1 and kind AdmissionReview.
        let a = run(
            &serde_json::to_vec(&body).expect("json"),
            &InjectionSettings::default(),
        );
        assert_eq!(a.answer.result, ReviewResult::Injected, "{field}");
    }
}
