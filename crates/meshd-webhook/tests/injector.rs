//! The handler without the socket: settings arriving through the watch channel apply to the next
//! review, the API server version decides `nativeSidecar: auto`, and Events follow the result.

mod common;

use std::sync::Arc;

use common::{RecordedEvents, fixture};
use meshd_api::MeshSpec;
use meshd_inject::{ApiServerVersion, InjectionSettings, ReviewResult};
use meshd_webhook::Injector;
use prometheus_client::registry::Registry;
use serde_json::Value;

fn injected_pod(answer_body: &[u8], request: &[u8]) -> Value {
    use base64::Engine;
    let answer: Value = serde_json::from_slice(answer_body).expect("json");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(answer["response"]["patch"].as_str().expect("patch"))
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("patch");
    let mut pod =
        serde_json::from_slice::<Value>(request).expect("json")["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).expect("applies");
    pod
}

#[test]
fn new_settings_apply_to_the_next_review() {
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(InjectionSettings::default()));
    let events = Arc::new(RecordedEvents::default());
    let injector = Injector::new(rx, None, events.clone(), &mut Registry::default());
    let body = fixture("pod-web.json");
    let first = injected_pod(&injector.handle(&body).body, &body);
    assert_eq!(first["metadata"]["labels"]["meshd.io/mesh"], "default");

    let mut spec = MeshSpec::default();
    spec.proxy.image = Some("example/proxy:2".into());
    tx.send(Arc::new(InjectionSettings::new("blue", spec)))
        .expect("send");
    let second = injected_pod(&injector.handle(&body).body, &body);
    assert_eq!(second["metadata"]["labels"]["meshd.io/mesh"], "blue");
    let proxy = second["spec"]["initContainers"]
        .as_array()
        .expect("init")
        .iter()
        .find(|c| c["name"] == "meshd-proxy")
        .expect("proxy");
    assert_eq!(proxy["image"], "example/proxy:2");
    assert_eq!(injector.metrics().count("injected", ""), 2);
    assert_eq!(events.0.lock().expect("lock").len(), 2);
}

#[test]
fn the_server_version_decides_auto() {
    let body = fixture("pod-web.json");
    for (version, native) in [
        (
            Some(ApiServerVersion {
                major: 1,
                minor: 28,
            }),
            false,
        ),
        (
            Some(ApiServerVersion {
                major: 1,
                minor: 30,
            }),
            true,
        ),
        (None, true),
    ] {
        let (_tx, rx) = tokio::sync::watch::channel(Arc::new(InjectionSettings::default()));
        let injector = Injector::new(
            rx,
            version,
            Arc::new(RecordedEvents::default()),
            &mut Registry::default(),
        );
        let pod = injected_pod(&injector.handle(&body).body, &body);
        let first_container = pod["spec"]["containers"][0]["name"]
            .as_str()
            .expect("name")
            .to_string();
        assert_eq!(first_container != "meshd-proxy", native, "{version:?}");
    }
}

#[test]
fn events_follow_the_result_and_never_for_a_dry_run() {
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(InjectionSettings::default()));
    let events = Arc::new(RecordedEvents::default());
    let injector = Injector::new(rx, None, events.clone(), &mut Registry::default());
    for name in [
        "deployment-reviews-pod.json",
        "pod-bad-annotations.json",
        "pod-optout-label.json",
        "pod-generatename-dryrun.json",
    ] {
        let answer = injector.handle(&fixture(name));
        assert_ne!(answer.result, ReviewResult::Invalid("malformed"), "{name}");
    }
    let recorded = events.0.lock().expect("lock").clone();
    assert_eq!(
        recorded,
        [
            "injected shop/reviews-v1-65ccd7c45b-* owner=Some(\"ReplicaSet\")",
            "refused shop/badannotation",
            "skipped shop/optout opted_out",
        ]
    );
}

/// Another mesh's sidecar is a skip like the others (counted, an Event with the reason); a container on a
/// proxy port is a refusal counted under its own reason.
#[test]
fn other_meshes_and_port_conflicts_are_counted() {
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(InjectionSettings::default()));
    let events = Arc::new(RecordedEvents::default());
    let mut registry = Registry::default();
    let injector = Injector::new(rx, None, events.clone(), &mut registry);
    let review = |containers: Value| {
        let mut body: Value = serde_json::from_slice(&fixture("pod-web.json")).expect("json");
        body["request"]["object"]["spec"]["containers"] = containers;
        serde_json::to_vec(&body).expect("json")
    };
    let istio = injector.handle(&review(
        serde_json::json!([{"name": "web"}, {"name": "istio-proxy"}]),
    ));
    assert!(istio.message.contains("istio-proxy"), "{}", istio.message);
    injector.handle(&review(
        serde_json::json!([{"name": "web", "ports": [{"containerPort": 15006}]}]),
    ));
    assert_eq!(injector.metrics().count("skipped", "other_mesh"), 1);
    assert_eq!(injector.metrics().count("refused", "port_conflict"), 1);
    let recorded = events.0.lock().expect("lock").clone();
    assert_eq!(
        recorded,
        ["skipped shop/web other_mesh", "refused shop/web"]
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    assert!(
        text.contains(r#"meshd_injections_total{result="skipped",reason="other_mesh"} 1"#),
        "{text}"
    );
}
