//! `Mesh.status.mtls` and the MTLS column (SPEC §9): the mode really in force mesh-wide, as the
//! control plane compiled it for the proxies (a mesh-wide PeerAuthentication over `spec.mtls.mode`),
//! and the PeerAuthentications that override it. The summary comes from the translator, fed the same
//! YAML the file source reads; the whole Operator runs against the fake API server and writes it
//! when it changes, and only then.

mod common;

use std::time::Duration;

use common::{FakeApi, eventually};
use meshd_api::security::MeshMtlsStatus;
use meshd_operator::{Operator, OperatorConfig};
use meshd_translate::facts::FactChange;
use meshd_translate::{TranslateSettings, Translator};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const MESH: &str = "/apis/meshd.io/v1alpha1/meshes/default";

const PODS: &str = "apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec:\n  mtls: {mode: PERMISSIVE}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: shop, labels: {app: web, meshd.io/mesh: default}}\nspec: {serviceAccountName: web, containers: [{name: web, image: web}]}\nstatus: {podIP: 10.0.1.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: batch-0, namespace: jobs, labels: {app: batch, meshd.io/mesh: default}}\nspec: {serviceAccountName: batch, containers: [{name: batch, image: batch}]}\nstatus: {podIP: 10.0.3.1}\n";

const MESH_WIDE_STRICT: &str = "---\napiVersion: security.meshd.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: meshd-system}\nspec:\n  mtls: {mode: STRICT}\n";

const SHOP_PERMISSIVE: &str = "---\napiVersion: security.meshd.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: legacy-clients, namespace: shop}\nspec:\n  mtls: {mode: PERMISSIVE}\n";

/// What the xDS server publishes for these objects.
fn compiled(yaml: &str) -> MeshMtlsStatus {
    let (facts, skipped) = meshd_sources::parse_documents("mesh.yaml", yaml).expect("parses");
    assert!(skipped.is_empty(), "{skipped:?}");
    let changes = facts
        .into_iter()
        .map(|(kind, key, fact)| FactChange { kind, key, fact })
        .collect();
    let mut translator = Translator::new(TranslateSettings {
        mesh_name: "default".into(),
        cluster_domain: "cluster.local".into(),
    });
    translator.apply(changes).0.mtls_status("default")
}

fn mtls_in_status(fake: &FakeApi) -> Option<Value> {
    Some(fake.get(MESH)?.get("status")?.get("mtls")?.clone())
}

fn status_writes(fake: &FakeApi) -> usize {
    fake.writes()
        .iter()
        .filter(|w| w.path == format!("{MESH}/status"))
        .count()
}

#[tokio::test]
async fn the_column_follows_a_mesh_wide_peer_authentication_and_counts_overrides() {
    let fake = FakeApi::default();
    // The Mesh says PERMISSIVE, as `spec.mtls.mode` (the old column) would keep saying.
    let mut mesh = common::example_mesh();
    mesh.spec.mtls.mode = meshd_api::mesh::MtlsMode::Permissive;
    fake.put(MESH, serde_json::to_value(mesh).unwrap());
    let (tx, rx) = watch::channel(None);
    let mut config = OperatorConfig::new("meshd-a");
    config.mesh_mtls = rx;
    let mut registry = prometheus_client::registry::Registry::default();
    let operator = Operator::new(fake.client(), config, &mut registry);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(operator.run(shutdown.clone()));

    // Until the control plane has compiled the mesh, status claims no mode.
    eventually("a first status", 15, || {
        fake.get(MESH).is_some_and(|m| m.get("status").is_some())
    })
    .await;
    assert_eq!(mtls_in_status(&fake), None);

    tx.send_replace(Some(compiled(PODS)));
    eventually("PERMISSIVE from the Mesh", 10, || {
        mtls_in_status(&fake).is_some_and(|m| m["summary"] == "PERMISSIVE")
    })
    .await;
    assert_eq!(mtls_in_status(&fake).unwrap()["source"], "spec.mtls.mode");

    // A mesh-wide PeerAuthentication STRICT overrides the Mesh's PERMISSIVE; shop's own PERMISSIVE
    // overrides that for web-0.
    fake.clear_log();
    tx.send_replace(Some(compiled(&format!(
        "{PODS}{MESH_WIDE_STRICT}{SHOP_PERMISSIVE}"
    ))));
    eventually("STRICT with one override", 10, || {
        mtls_in_status(&fake).is_some_and(|m| m["summary"] == "STRICT (1 override)")
    })
    .await;
    let mtls = mtls_in_status(&fake).unwrap();
    assert_eq!(mtls["mode"], "STRICT");
    assert_eq!(mtls["source"], "PeerAuthentication meshd-system/default");
    assert_eq!(mtls["overrides"], 1);
    assert_eq!(mtls["overriddenPods"], 1);
    assert_eq!(
        mtls["overriddenBy"],
        serde_json::json!([{"namespace": "shop", "name": "legacy-clients", "scope": "Namespace", "mode": "PERMISSIVE"}])
    );
    assert_eq!(status_writes(&fake), 1, "{:?}", fake.writes());

    // The same summary again (another generation, nothing changed for mTLS): no write.
    fake.clear_log();
    tx.send_replace(Some(compiled(&format!(
        "{PODS}{MESH_WIDE_STRICT}{SHOP_PERMISSIVE}"
    ))));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(status_writes(&fake), 0, "{:?}", fake.writes());

    // The shop policy goes: no override left.
    tx.send_replace(Some(compiled(&format!("{PODS}{MESH_WIDE_STRICT}"))));
    eventually("STRICT alone", 10, || {
        mtls_in_status(&fake).is_some_and(|m| m["summary"] == "STRICT")
    })
    .await;
    assert!(mtls_in_status(&fake).unwrap().get("overriddenBy").is_none());

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("stops")
        .expect("no panic")
        .expect("ok");
}
