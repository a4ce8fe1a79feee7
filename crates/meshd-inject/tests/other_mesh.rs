//! A pod that already carries another mesh's proxy or init container is left as it is (skip reason
//! `other_mesh`, naming the container), as Linkerd and Kuma leave a pod that already has a sidecar; a
//! container declaring a port the meshd proxy listens on is refused naming the field, since the pod
//! could not work with both.

mod common;

use common::run;
use meshd_inject::{InjectionSettings, ReviewResult, SkipReason};
use serde_json::{Value, json};

fn review_of(pod: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE", "userInfo": {}, "object": pod
        }
    }))
    .expect("json")
}

fn pod(containers: Value, init: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"},
           "spec": {"containers": containers, "initContainers": init}})
}

#[test]
fn another_meshs_containers_are_left_alone_naming_the_container() {
    let app = json!({"name": "app", "image": "app:1", "ports": [{"containerPort": 8080}]});
    for (what, containers, init, named) in [
        (
            "istio classic",
            json!([app.clone(), {"name": "istio-proxy", "image": "istio/proxyv2", "ports": [{"containerPort": 15090}]}]),
            json!([{"name": "istio-init", "image": "istio/proxyv2"}]),
            "spec.initContainers[0] \"istio-init\"",
        ),
        (
            "istio native",
            json!([app.clone()]),
            json!([{"name": "istio-init"}, {"name": "istio-proxy", "restartPolicy": "Always"}]),
            "spec.initContainers[0] \"istio-init\"",
        ),
        (
            "linkerd",
            json!([{"name": "linkerd-proxy", "image": "cr.l5d.io/linkerd/proxy"}, app.clone()]),
            json!([]),
            "spec.containers[0] \"linkerd-proxy\"",
        ),
        (
            "linkerd init only",
            json!([app.clone()]),
            json!([{"name": "linkerd-init"}]),
            "spec.initContainers[0] \"linkerd-init\"",
        ),
    ] {
        let a = run(
            &review_of(pod(containers, init)),
            &InjectionSettings::default(),
        );
        assert_eq!(
            a.answer.result,
            ReviewResult::Skipped(SkipReason::OtherMesh),
            "{what}: {}",
            a.answer.message
        );
        assert_eq!(a.response["allowed"], true, "{what}");
        assert!(a.after.is_none(), "{what}: patched");
        assert!(
            a.answer.message.contains(named),
            "{what}: {}",
            a.answer.message
        );
    }
}

#[test]
fn a_meshd_container_without_the_status_annotation_is_not_injected_again() {
    for (containers, init) in [
        (json!([{"name": "meshd-proxy"}, {"name": "app"}]), json!([])),
        (json!([{"name": "app"}]), json!([{"name": "meshd-init"}])),
    ] {
        let a = run(
            &review_of(pod(containers, init)),
            &InjectionSettings::default(),
        );
        assert_eq!(
            a.answer.result,
            ReviewResult::Skipped(SkipReason::AlreadyInjected)
        );
        assert!(a.after.is_none());
    }
}

#[test]
fn a_container_on_a_proxy_port_is_refused_naming_the_field() {
    for port in [15000, 15001, 15006, 15020, 15021, 15090] {
        let containers = json!([
            {"name": "app", "ports": [{"containerPort": 8080}]},
            {"name": "metrics", "ports": [{"containerPort": 9090}, {"containerPort": port}]}
        ]);
        let a = run(
            &review_of(pod(containers, json!([]))),
            &InjectionSettings::default(),
        );
        assert_eq!(a.answer.result, ReviewResult::PortConflict, "{port}");
        assert_eq!(a.answer.result.reason_label(), "port_conflict");
        assert_eq!(a.answer.result.result_label(), "refused");
        assert_eq!(a.response["allowed"], false);
        let message = a.response["status"]["message"].as_str().expect("message");
        for needle in [
            "spec.containers[1].ports[1].containerPort",
            "\"metrics\"",
            &port.to_string(),
            "meshd.io/inject",
        ] {
            assert!(message.contains(needle), "{needle} missing from {message}");
        }
    }
    // An init container's port counts too, and a bad annotation is reported in the same answer.
    let mut p = pod(
        json!([{"name": "app"}]),
        json!([{"name": "setup", "ports": [{"containerPort": 15001}]}]),
    );
    p["metadata"]["annotations"] = json!({"sidecar.meshd.io/proxyCPU": "lots"});
    let a = run(&review_of(p), &InjectionSettings::default());
    assert_eq!(a.answer.result, ReviewResult::Refused);
    let message = a.response["status"]["message"].as_str().expect("message");
    assert!(
        message.contains("sidecar.meshd.io/proxyCPU")
            && message.contains("spec.initContainers[0].ports[0].containerPort"),
        "{message}"
    );
    // Other ports are fine.
    let ok = pod(
        json!([{"name": "app", "ports": [{"containerPort": 15002}]}]),
        json!([]),
    );
    assert_eq!(
        run(&review_of(ok), &InjectionSettings::default())
            .answer
            .result,
        ReviewResult::Injected
    );
}
