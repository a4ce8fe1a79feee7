//! A NACK becomes a Warning Event on the proxy's Pod (against the fake API server): Envoy's error in the
//! note, the Pod's uid in `regarding`, one Event however often the proxy rejects, none for a gone Pod.

mod common;

use std::time::Duration;

use common::{FakeApi, eventually};
use meshd_api::syncz::{Nack, NackNotice, Timestamp, XdsType};
use meshd_operator::proxy_events;
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn notice(pod: &str, ty: XdsType, detail: &str) -> NackNotice {
    NackNotice {
        node_id: format!("{pod}.shop"),
        pod: pod.into(),
        namespace: "shop".into(),
        pod_found: true,
        xds_type: ty,
        nack: Nack {
            version: "0123abcd".into(),
            nonce: "4-2".into(),
            detail: detail.into(),
            at: Timestamp::now(),
        },
    }
}

fn events(fake: &FakeApi) -> Vec<serde_json::Value> {
    fake.writes()
        .into_iter()
        .filter(|w| {
            w.path
                .starts_with("/apis/events.k8s.io/v1/namespaces/shop/events")
        })
        .map(|w| w.body)
        .collect()
}

#[tokio::test]
async fn a_nack_is_one_warning_event_on_the_pod() {
    let fake = FakeApi::default();
    fake.put(
        "/api/v1/namespaces/shop/pods/web-1",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "shop", "uid": "pod-uid-1"}}),
    );
    let (tx, rx) = tokio::sync::broadcast::channel(16);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(proxy_events::run(
        fake.client(),
        "meshd-0".into(),
        rx,
        Duration::from_secs(300),
        cancel.clone(),
    ));
    let detail = "Error adding/updating listener(s) virtualInbound: bad filter";
    // Reconnects NACKing again and again: one Event.
    for _ in 0..5 {
        tx.send(notice("web-1", XdsType::Lds, detail)).unwrap();
    }
    // A proxy whose Pod is gone: no Event, and the task goes on.
    tx.send(notice("gone-1", XdsType::Cds, "x")).unwrap();
    eventually("the Event is written", 5, || !events(&fake).is_empty()).await;
    eventually("the gone pod was looked up", 5, || {
        fake.requests()
            .iter()
            .any(|r| r.path == "/api/v1/namespaces/shop/pods/gone-1")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let written = events(&fake);
    assert_eq!(written.len(), 1, "{written:#?}");
    let e = &written[0];
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["reason"], proxy_events::REASON);
    assert_eq!(e["regarding"]["kind"], "Pod");
    assert_eq!(e["regarding"]["name"], "web-1");
    assert_eq!(e["regarding"]["uid"], "pod-uid-1");
    let note = e["note"].as_str().unwrap();
    assert!(
        note.contains(detail) && note.contains("LDS") && note.contains("0123abcd"),
        "{note}"
    );
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
}
