//! The file-fed source against a real directory: load, bad file keeps its last good content, other
//! files unaffected, unknown kinds skipped, removal, and change detection through inotify.

use std::sync::Arc;
use std::time::Duration;

use meshd_sources::{FileSource, parse_documents};
use meshd_translate::MeshSnapshot;
use tokio_util::sync::CancellationToken;

const WEB: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  clusterIP: 10.96.0.10\n  ports: [{name: http, port: 80}]\n";
const DB_AND_POD: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: shop}\nspec:\n  ports: [{port: 5432}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: shop}\nstatus: {podIP: 10.0.0.1}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n";
const MESH: &str = "apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec: {mtls: {mode: DISABLE}}\n";

fn service_names(s: &MeshSnapshot) -> Vec<String> {
    let mut names: Vec<_> = s
        .services
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_bad_file_keeps_its_last_good_content_and_spares_the_others() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("web.yaml"), WEB).unwrap();
    std::fs::write(dir.path().join("db.yaml"), DB_AND_POD).unwrap();
    std::fs::write(dir.path().join("mesh.yml"), MESH).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
    let mut source = FileSource::new(dir.path(), "default", "cluster.local");
    let snap = source.scan().unwrap();
    assert_eq!(service_names(&snap), ["db", "web"]);
    assert_eq!(snap.pods.len(), 1);
    assert_eq!(snap.mesh.mtls.mode, meshd_api::mesh::MtlsMode::Disable);

    std::fs::write(
        dir.path().join("web.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: web2\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("db.yaml"), DB_AND_POD.replace("db", "db2")).unwrap();
    let snap = source.scan().unwrap();
    assert_eq!(
        service_names(&snap),
        ["db2", "web"],
        "web.yaml's last good content stays"
    );

    std::fs::remove_file(dir.path().join("web.yaml")).unwrap();
    assert_eq!(service_names(&source.scan().unwrap()), ["db2"]);
}

#[test]
fn parse_errors_name_the_file_and_document() {
    let err = parse_documents(
        "/etc/mesh/a.yaml",
        &format!("{WEB}---\napiVersion: v1\nkind: Service\nspec: {{ports: [{{port: eighty}}]}}\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("/etc/mesh/a.yaml: document 2: "), "{err}");
    assert!(err.contains("eighty") || err.contains("invalid"), "{err}");
    let err = parse_documents("b.yaml", "metadata: {name: x}\n")
        .unwrap_err()
        .to_string();
    assert_eq!(err, "b.yaml: document 1 has no kind");
    let err = parse_documents("m.yaml", "apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec: {proxy: {uid: 0}}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec.proxy.uid"), "{err}");
    let (objects, skipped) = parse_documents("c.yaml", DB_AND_POD).unwrap();
    assert_eq!((objects.len(), skipped), (2, vec!["ConfigMap".to_string()]));
}

#[tokio::test]
async fn a_change_on_disk_is_published() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("web.yaml"), WEB).unwrap();
    // A long rescan interval: only inotify can make this test pass in time.
    let mut source = FileSource::new(dir.path(), "default", "cluster.local")
        .with_rescan(Duration::from_secs(3600));
    let first = source.scan().unwrap();
    let (tx, mut rx) = tokio::sync::watch::channel(Arc::new(first));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(source.run(tx, cancel.clone()));
    rx.borrow_and_update();
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(dir.path().join("db.yaml"), DB_AND_POD).unwrap();
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("published within 5 s")
        .unwrap();
    assert_eq!(service_names(&rx.borrow()), ["db", "web"]);
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
}
