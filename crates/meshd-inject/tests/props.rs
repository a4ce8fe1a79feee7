//! Arbitrary pods and annotation values never panic and always get a well-formed AdmissionReview; an
//! injected pod, reviewed again, is left alone (inject twice == inject once).

mod common;

use common::run;
use meshd_inject::{InjectionSettings, ReviewResult, SkipReason, review};
use proptest::prelude::*;
use serde_json::{Value, json};

fn annotation_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("true".to_string()),
        Just("200m".to_string()),
        Just("5432,6379".to_string()),
        Just("10.0.0.0/8".to_string()),
        Just("*".to_string()),
        ".{0,12}",
    ]
}

fn annotation_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("sidecar.meshd.io/proxyCPU"),
        Just("sidecar.meshd.io/proxyMemory"),
        Just("sidecar.meshd.io/proxyCPULimit"),
        Just("sidecar.meshd.io/logLevel"),
        Just("sidecar.meshd.io/nativeSidecar"),
        Just("sidecar.meshd.io/holdApplicationUntilProxyStarts"),
        Just("traffic.meshd.io/excludeInboundPorts"),
        Just("traffic.meshd.io/excludeOutboundCIDRs"),
        Just("traffic.meshd.io/includeOutboundCIDRs"),
        Just("kubectl.kubernetes.io/default-container"),
        Just("team/a~b"),
    ]
    .prop_map(String::from)
}

fn port() -> impl Strategy<Value = Value> {
    prop_oneof![
        (1i64..65536).prop_map(Value::from),
        Just(json!("http")),
        Just(json!("missing"))
    ]
}

fn probe() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        port().prop_map(|p| Some(json!({"httpGet": {"path": "/h", "port": p, "httpHeaders": [{"name": "X", "value": "y"}]}}))),
        port().prop_map(|p| Some(json!({"tcpSocket": {"port": p}, "periodSeconds": 3}))),
        (1i64..65536).prop_map(|p| Some(json!({"grpc": {"port": p}}))),
        Just(Some(json!({"exec": {"command": ["true"]}}))),
    ]
}

fn container() -> impl Strategy<Value = Value> {
    ("[a-z][a-z0-9-]{0,8}", probe(), probe(), probe()).prop_map(|(name, l, r, s)| {
        let mut c =
            json!({"name": name, "image": "x", "ports": [{"name": "http", "containerPort": 8080}]});
        for (field, p) in [
            ("livenessProbe", l),
            ("readinessProbe", r),
            ("startupProbe", s),
        ] {
            if let Some(p) = p {
                c[field] = p;
            }
        }
        c
    })
}

prop_compose! {
    fn pod()(
        annotations in proptest::option::of(proptest::collection::btree_map(annotation_name(), annotation_value(), 0..5)),
        labels in proptest::option::of(proptest::collection::btree_map("[a-z]{1,5}", "[a-z]{0,5}", 0..3)),
        containers in proptest::collection::vec(container(), 1..4),
        init in proptest::option::of(proptest::collection::vec(container(), 0..2)),
        volumes in proptest::option::of(Just(json!([{"name": "v", "emptyDir": {}}]))),
        host_network in proptest::option::of(any::<bool>()),
        namespace in prop_oneof![Just("shop"), Just("kube-system"), Just("")],
    ) -> Value {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "p-"}, "spec": {"containers": containers}});
        if let Some(a) = annotations { pod["metadata"]["annotations"] = json!(a); }
        if let Some(l) = labels { pod["metadata"]["labels"] = json!(l); }
        if let Some(i) = init { pod["spec"]["initContainers"] = json!(i); }
        if let Some(v) = volumes { pod["spec"]["volumes"] = v; }
        if let Some(h) = host_network { pod["spec"]["hostNetwork"] = json!(h); }
        if !namespace.is_empty() { pod["metadata"]["namespace"] = json!(namespace); }
        pod
    }
}

fn review_body(pod: &Value, dry_run: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE", "userInfo": {}, "object": pod, "dryRun": dry_run
        }
    }))
    .expect("json")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_pods_get_a_well_formed_answer(pod in pod(), dry_run in any::<bool>()) {
        // `run` asserts HTTP 200, the envelope, the echoed uid, patchType only with a patch, and that
        // the patch applies to the object as sent.
        let a = run(&review_body(&pod, dry_run), &InjectionSettings::default());
        prop_assert_eq!(a.answer.dry_run, dry_run);
        match &a.answer.result {
            ReviewResult::Injected => {
                let injected = a.after.clone().expect("patch");
                // Twice == once.
                let again = run(&review_body(&injected, dry_run), &InjectionSettings::default());
                prop_assert_eq!(again.answer.result, ReviewResult::Skipped(SkipReason::AlreadyInjected));
                prop_assert!(again.after.is_none());
                // The pod's own containers are all still there, in order.
                let names = |v: &Value| common::names(v);
                let app: Vec<String> = names(&injected["spec"]["containers"]).into_iter().filter(|n| n != "meshd-proxy").collect();
                prop_assert_eq!(app, names(&pod["spec"]["containers"]));
            }
            ReviewResult::Refused => {
                prop_assert_eq!(&a.response["allowed"], &json!(false));
                let message = a.response["status"]["message"].as_str().unwrap_or("");
                prop_assert!(message.contains("annotation"), "{}", message);
            }
            ReviewResult::Skipped(_) => prop_assert!(a.after.is_none()),
            // The generated containers use port 8080 only.
            ReviewResult::PortConflict => prop_assert!(false, "port conflict: {}", a.answer.message),
            ReviewResult::Invalid(label) => prop_assert!(false, "invalid {}: {}", label, a.answer.message),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let answer = review(&body, &InjectionSettings::default(), None);
        prop_assert!(answer.http_status == 200 || answer.http_status == 400);
    }

    #[test]
    fn mangled_reviews_never_panic(pod in pod(), cut in 0usize..400) {
        let body = review_body(&pod, false);
        let answer = review(&body[..cut.min(body.len())], &InjectionSettings::default(), None);
        prop_assert!(answer.http_status == 200 || answer.http_status == 400);
        if answer.http_status == 200 {
            let v: Value = serde_json::from_slice(&answer.body).expect("answer is JSON");
            prop_assert_eq!(&v["response"]["uid"], &json!("u-1"));
        }
    }
}
