//! File-fed `Mesh.status.mtls` (SPEC §9): with no API server to hold the Mesh's status,
//! `meshd controlplane` logs the mode in force mesh-wide and its overrides. Read from a config
//! directory, a mesh-wide PeerAuthentication added to it changes the line.

use meshd_index::SharedIndex;
use meshd_sources::{FileSource, mtls_line};
use meshd_translate::{TranslateSettings, Translator};

const MESH_AND_PODS: &str = "apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec:\n  mtls: {mode: PERMISSIVE}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: shop, labels: {app: web, meshd.io/mesh: default}}\nspec: {serviceAccountName: web, containers: [{name: web, image: web}]}\nstatus: {podIP: 10.0.1.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: db-0, namespace: shop, labels: {app: db, meshd.io/mesh: default}}\nspec: {serviceAccountName: db, containers: [{name: db, image: db}]}\nstatus: {podIP: 10.0.1.2}\n";

const POLICIES: &str = "apiVersion: security.meshd.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: meshd-system}\nspec:\n  mtls: {mode: STRICT}\n---\napiVersion: security.meshd.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n  portLevelMtls:\n    \"8080\": {mode: PERMISSIVE}\n";

#[test]
fn the_log_line_follows_a_mesh_wide_peer_authentication_in_the_config_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), MESH_AND_PODS).unwrap();
    let index = SharedIndex::default();
    let mut source = FileSource::new(dir.path(), index.clone());
    source.scan().unwrap();
    let mut translator = Translator::new(TranslateSettings {
        mesh_name: "default".into(),
        cluster_domain: "cluster.local".into(),
    });
    let (changes, _) = index.take();
    let line = mtls_line(&translator.apply(changes).0.mtls_status("default"));
    assert_eq!(line, "mesh mTLS: PERMISSIVE, from spec.mtls.mode");

    std::fs::write(dir.path().join("policies.yaml"), POLICIES).unwrap();
    source.scan().unwrap();
    let (changes, _) = index.take();
    let line = mtls_line(&translator.apply(changes).0.mtls_status("default"));
    assert_eq!(
        line,
        "mesh mTLS: STRICT (1 override), from PeerAuthentication meshd-system/default; overridden for 1 pod by shop/web (Workload: STRICT, port 8080 PERMISSIVE)"
    );
}
