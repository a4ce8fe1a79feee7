//! ConfigMap `meshd-ca-root` in every namespace, against the fake API server's watches: created in a new
//! namespace, left alone when unchanged, repaired after an edit or a deletion, rewritten everywhere when
//! the root bundle changes; never in kube-system or a terminating namespace.

mod common;

use std::time::Duration;

use common::{FakeApi, Recorded, eventually};
use meshd_operator::ca_root;
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn ns_path(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}")
}

fn cm_path(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}/configmaps/meshd-ca-root")
}

fn namespace(fake: &FakeApi, ns: &str) {
    fake.put(
        &ns_path(ns),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    );
}

fn applies(fake: &FakeApi) -> Vec<Recorded> {
    fake.writes()
        .into_iter()
        .filter(|w| w.path.ends_with("/configmaps/meshd-ca-root"))
        .collect()
}

fn applied_to(fake: &FakeApi, ns: &str) -> usize {
    applies(fake)
        .iter()
        .filter(|w| w.path == cm_path(ns))
        .count()
}

#[tokio::test]
async fn every_namespace_gets_the_ca_root_and_keeps_it() {
    let fake = FakeApi::default();
    for ns in [
        "default",
        "shop",
        "kube-system",
        "kube-public",
        "kube-node-lease",
    ] {
        namespace(&fake, ns);
    }
    // Present and current: left alone.
    fake.put(
        &cm_path("default"),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "meshd-ca-root", "namespace": "default", "labels": {"app.kubernetes.io/managed-by": "meshd"}},
               "data": {"root-cert.pem": ""}}),
    );
    let (root_tx, root_rx) = tokio::sync::watch::channel(String::new());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(ca_root::run(fake.client(), root_rx, shutdown.clone()));

    eventually("shop gets meshd-ca-root", 5, || {
        fake.get(&cm_path("shop")).is_some()
    })
    .await;
    let apply = &applies(&fake)[0];
    assert_eq!(apply.method, "PATCH");
    assert_eq!(apply.content_type, "application/apply-patch+yaml");
    assert_eq!(apply.param("fieldManager").as_deref(), Some("meshd"));
    assert_eq!(apply.param("force").as_deref(), Some("true"));
    assert_eq!(
        apply.body["data"],
        json!({"root-cert.pem": ""}),
        "empty until the CA exists"
    );
    assert_eq!(
        apply.body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "meshd"
    );
    // Let the watch echo our own write: nothing more is written.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines: Vec<String> = applies(&fake).iter().map(Recorded::line).collect();
    assert_eq!(
        lines,
        [format!("PATCH {}", cm_path("shop"))],
        "only the missing one"
    );
    for ns in ["kube-system", "kube-public", "kube-node-lease"] {
        assert!(fake.get(&cm_path(ns)).is_none(), "{ns} is skipped");
    }
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.method != "GET" || !r.path.ends_with("/meshd-ca-root")),
        "ConfigMaps are read from the watch, never fetched"
    );

    // A new namespace gets it within seconds of its watch event.
    fake.clear_log();
    namespace(&fake, "fresh");
    eventually("a new namespace gets meshd-ca-root", 2, || {
        fake.get(&cm_path("fresh")).is_some()
    })
    .await;

    // An edit is repaired; a deletion is undone.
    fake.merge(
        &cm_path("shop"),
        json!({"data": {"root-cert.pem": "tampered"}}),
    );
    eventually("the edit is repaired", 2, || {
        fake.get(&cm_path("shop"))
            .is_some_and(|cm| cm["data"]["root-cert.pem"] == "")
    })
    .await;
    fake.remove(&cm_path("fresh"));
    eventually("the deletion is undone", 2, || {
        fake.get(&cm_path("fresh")).is_some()
    })
    .await;
    // A key someone else added is theirs: no fight over it.
    fake.clear_log();
    fake.merge(&cm_path("shop"), json!({"data": {"extra": "x"}}));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(applied_to(&fake, "shop"), 0, "{:?}", fake.writes());

    // A new root reaches every namespace; a terminating one is left alone.
    fake.merge(
        &ns_path("shop"),
        json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}}),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    fake.clear_log();
    root_tx.send_replace("-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n".into());
    eventually("the new root everywhere", 5, || {
        ["default", "fresh"].iter().all(|ns| {
            fake.get(&cm_path(ns)).is_some_and(|cm| {
                cm["data"]["root-cert.pem"]
                    .as_str()
                    .unwrap_or("")
                    .contains("ROOT")
            })
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        applied_to(&fake, "shop"),
        0,
        "terminating namespace skipped"
    );
    assert_eq!(applied_to(&fake, "default"), 1, "one write per namespace");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops on shutdown")
        .expect("no panic");
}

/// With a grace period (the controller's, while the CA loads) an empty root is not written: a root that
/// arrives within it is the first thing every namespace gets; one that never comes is written empty once
/// the grace is over, so pods are not blocked.
#[tokio::test]
async fn an_empty_root_waits_for_the_grace_period() {
    let fake = FakeApi::default();
    namespace(&fake, "shop");
    let (root_tx, root_rx) = tokio::sync::watch::channel(String::new());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(ca_root::run_with_grace(
        fake.client(),
        root_rx,
        Duration::from_secs(30),
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        applied_to(&fake, "shop"),
        0,
        "nothing written while the CA loads"
    );
    root_tx.send_replace("ROOT PEM".into());
    eventually("shop gets the root", 5, || applied_to(&fake, "shop") > 0).await;
    let first = &applies(&fake)[0];
    assert_eq!(first.body["data"], json!({"root-cert.pem": "ROOT PEM"}));
    shutdown.cancel();
    let _ = task.await;

    let fake = FakeApi::default();
    namespace(&fake, "shop");
    let (_root_tx, root_rx) = tokio::sync::watch::channel(String::new());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(ca_root::run_with_grace(
        fake.client(),
        root_rx,
        Duration::from_secs(1),
        shutdown.clone(),
    ));
    eventually("an empty root after the grace", 5, || {
        applied_to(&fake, "shop") > 0
    })
    .await;
    assert_eq!(applies(&fake)[0].body["data"], json!({"root-cert.pem": ""}));
    shutdown.cancel();
    let _ = task.await;
}
