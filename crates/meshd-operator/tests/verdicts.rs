//! Verdicts into status (SPEC §8) against a fake API server (tests/common): what is written, and that
//! nothing is written when the status already says it.

mod common;

use std::sync::Arc;

use common::{FakeApi, eventually};
use meshd_api::status::{Verdict, VerdictKey, reason};
use meshd_api::validate::FieldError;
use meshd_operator::verdicts::{Written, write_one, write_verdicts};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const VS: &str = "/apis/networking.meshd.io/v1alpha1/namespaces/shop/virtualservices/reviews";
const PA: &str = "/apis/security.meshd.io/v1alpha1/namespaces/shop/peerauthentications/strict";

fn put_vs(fake: &FakeApi) {
    fake.put(
        VS,
        json!({
            "apiVersion": "networking.meshd.io/v1alpha1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "shop", "generation": 2},
            "spec": {"hosts": ["reviews"]},
        }),
    );
}

fn dangling() -> Verdict {
    let e = FieldError::new(
        "spec.http[0].route[1].destination.subset",
        "is not a subset of any DestinationRule for reviews.shop.svc.cluster.local",
    )
    .with_str("v3");
    Verdict::rejected(Some(2), reason::DANGLING_REFERENCE, &[e], false)
}

fn key() -> VerdictKey {
    VerdictKey::new("VirtualService", "shop", "reviews")
}

#[tokio::test]
async fn a_rejection_is_applied_to_the_status_subresource_with_reason_and_field() {
    let fake = FakeApi::default();
    put_vs(&fake);
    fake.clear_log();
    let client = fake.client();
    let outcome = write_one(&client, &key(), &dangling()).await.unwrap();
    assert_eq!(outcome, Written::Applied);
    let writes = fake.writes();
    assert_eq!(
        writes.len(),
        1,
        "{:?}",
        writes.iter().map(|w| w.line()).collect::<Vec<_>>()
    );
    assert_eq!(writes[0].path, format!("{VS}/status"));
    assert_eq!(writes[0].content_type, "application/apply-patch+yaml");
    assert_eq!(writes[0].param("fieldManager").as_deref(), Some("meshd"));
    let stored = fake.get(VS).unwrap();
    let cond = &stored["status"]["conditions"][0];
    assert_eq!(cond["type"], "Accepted");
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["reason"], "DanglingReference");
    assert_eq!(cond["observedGeneration"], 2);
    let message = cond["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "spec.http[0].route[1].destination.subset: \"v3\" is not a subset of any DestinationRule for reviews.shop.svc.cluster.local"
        ),
        "{message}"
    );
    assert_eq!(stored["status"]["observedGeneration"], 2);
}

#[tokio::test]
async fn no_write_when_the_status_already_says_it() {
    let fake = FakeApi::default();
    put_vs(&fake);
    let client = fake.client();
    assert_eq!(
        write_one(&client, &key(), &dangling()).await.unwrap(),
        Written::Applied
    );
    let before = fake.get(VS).unwrap()["status"]["conditions"][0]["lastTransitionTime"].clone();
    fake.clear_log();
    assert_eq!(
        write_one(&client, &key(), &dangling()).await.unwrap(),
        Written::Unchanged
    );
    assert!(
        fake.writes().is_empty(),
        "{:?}",
        fake.writes().iter().map(|w| w.line()).collect::<Vec<_>>()
    );
    // Accepted now: written, with a new transition time.
    assert_eq!(
        write_one(&client, &key(), &Verdict::accepted(Some(2)))
            .await
            .unwrap(),
        Written::Applied
    );
    let cond = fake.get(VS).unwrap()["status"]["conditions"][0].clone();
    assert_eq!(cond["status"], "True");
    assert_eq!(cond["reason"], "Accepted");
    assert!(cond["lastTransitionTime"].is_string() && before.is_string());
}

#[tokio::test]
async fn a_deleted_object_is_gone_not_an_error() {
    let fake = FakeApi::default();
    let client = fake.client();
    assert_eq!(
        write_one(&client, &key(), &dangling()).await.unwrap(),
        Written::Gone
    );
    assert!(fake.writes().is_empty());
}

#[tokio::test]
async fn the_writer_covers_every_kind_and_writes_each_verdict_once() {
    let fake = FakeApi::default();
    put_vs(&fake);
    fake.put(
        PA,
        json!({
            "apiVersion": "security.meshd.io/v1alpha1", "kind": "PeerAuthentication",
            "metadata": {"name": "strict", "namespace": "shop", "generation": 1},
            "spec": {"mtls": {"mode": "STRICT"}},
        }),
    );
    fake.clear_log();
    let mut map = std::collections::BTreeMap::new();
    map.insert(key(), Arc::new(dangling()));
    map.insert(
        VerdictKey::new("PeerAuthentication", "shop", "strict"),
        Arc::new(Verdict::accepted(Some(1))),
    );
    let (tx, rx) = tokio::sync::watch::channel(map.clone());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(write_verdicts(fake.client(), rx, cancel.clone()));
    eventually("both statuses written", 5, || fake.writes().len() == 2).await;
    assert_eq!(
        fake.get(PA).unwrap()["status"]["conditions"][0]["status"],
        "True"
    );
    // The same verdicts again: no request at all.
    let requests = fake.requests().len();
    tx.send_replace(map.clone());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(fake.requests().len(), requests);
    // One verdict changes: only that resource is written.
    map.insert(key(), Arc::new(Verdict::accepted(Some(2))));
    tx.send_replace(map);
    eventually("the changed one written", 5, || fake.writes().len() == 3).await;
    assert_eq!(fake.writes()[2].path, format!("{VS}/status"));
    cancel.cancel();
    task.await.unwrap();
}

/// DestinationRule, ServiceEntry and Gateway verdicts land on their own status subresources, once.
#[tokio::test]
async fn every_traffic_kind_gets_its_status_written_once() {
    let fake = FakeApi::default();
    let kinds = [
        ("DestinationRule", "destinationrules", "networking"),
        ("ServiceEntry", "serviceentries", "networking"),
        ("Gateway", "gateways", "networking"),
    ];
    for (kind, plural, group) in kinds {
        let path = format!("/apis/{group}.meshd.io/v1alpha1/namespaces/shop/{plural}/reviews");
        fake.put(
            &path,
            json!({
                "apiVersion": format!("{group}.meshd.io/v1alpha1"), "kind": kind,
                "metadata": {"name": "reviews", "namespace": "shop", "generation": 3},
                "spec": {},
            }),
        );
        fake.clear_log();
        let client = fake.client();
        let key = VerdictKey::new(kind, "shop", "reviews");
        let verdict = Verdict::accepted(Some(3));
        assert_eq!(
            write_one(&client, &key, &verdict).await.unwrap(),
            Written::Applied,
            "{kind}"
        );
        let writes = fake.writes();
        assert_eq!(writes.len(), 1, "{kind}");
        assert_eq!(writes[0].path, format!("{path}/status"));
        let cond = &fake.get(&path).unwrap()["status"]["conditions"][0];
        assert_eq!(
            (&cond["type"], &cond["status"], &cond["observedGeneration"]),
            (&json!("Accepted"), &json!("True"), &json!(3)),
            "{kind}"
        );
        fake.clear_log();
        assert_eq!(
            write_one(&client, &key, &verdict).await.unwrap(),
            Written::Unchanged,
            "{kind}"
        );
        assert!(fake.writes().is_empty(), "{kind}: written again");
    }
}
