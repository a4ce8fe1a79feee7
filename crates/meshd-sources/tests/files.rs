//! The file-fed source against a real directory: load, bad file keeps its last good content, other
//! files unaffected, unknown kinds skipped, removal, and change detection through inotify.

use std::time::Duration;

use meshd_index::SharedIndex;
use meshd_sources::{FileSource, parse_documents};
use meshd_translate::facts::{Fact, FactKind, ObjectKey};
use tokio_util::sync::CancellationToken;

const WEB: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  clusterIP: 10.96.0.10\n  ports: [{name: http, port: 80}]\n";
const DB_AND_POD: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: shop}\nspec:\n  ports: [{port: 5432}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: shop}\nstatus: {podIP: 10.0.0.1}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n";
const MESH: &str = "apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec: {mtls: {mode: DISABLE}}\n";

fn service_names(index: &SharedIndex) -> Vec<String> {
    index.read(|i| {
        i.facts(FactKind::Service)
            .map(|(k, _)| k.name.clone())
            .collect()
    })
}

fn count(index: &SharedIndex, kind: FactKind) -> usize {
    index.read(|i| i.facts(kind).count())
}

fn mesh_mode(index: &SharedIndex) -> meshd_api::mesh::MtlsMode {
    index.read(
        |i| match i.get(FactKind::Mesh, &ObjectKey::new("", "default")) {
            Some(Fact::Mesh(spec)) => spec.mtls.mode,
            _ => panic!("no Mesh default"),
        },
    )
}

#[test]
fn a_bad_file_keeps_its_last_good_content_and_spares_the_others() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("web.yaml"), WEB).unwrap();
    std::fs::write(dir.path().join("db.yaml"), DB_AND_POD).unwrap();
    std::fs::write(dir.path().join("mesh.yml"), MESH).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
    let index = SharedIndex::default();
    let mut source = FileSource::new(dir.path(), index.clone());
    source.scan().unwrap();
    assert!(index.read(|i| i.synced()), "complete after the first scan");
    assert_eq!(service_names(&index), ["db", "web"]);
    assert_eq!(count(&index, FactKind::Workload), 1);
    assert_eq!(mesh_mode(&index), meshd_api::mesh::MtlsMode::Disable);

    std::fs::write(
        dir.path().join("web.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: web2\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("db.yaml"), DB_AND_POD.replace("db", "db2")).unwrap();
    source.scan().unwrap();
    assert_eq!(
        service_names(&index),
        ["db2", "web"],
        "web.yaml's last good content stays"
    );

    std::fs::remove_file(dir.path().join("web.yaml")).unwrap();
    source.scan().unwrap();
    assert_eq!(service_names(&index), ["db2"]);
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
    assert_eq!(objects[0].1, ObjectKey::new("shop", "db"));
    assert_eq!((objects.len(), skipped), (2, vec!["ConfigMap".to_string()]));
}

#[tokio::test]
async fn a_change_on_disk_is_published() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("web.yaml"), WEB).unwrap();
    // A long rescan interval: only inotify can make this test pass in time.
    let index = SharedIndex::default();
    let mut source =
        FileSource::new(dir.path(), index.clone()).with_rescan(Duration::from_secs(3600));
    source.scan().unwrap();
    let changed = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = changed.clone();
    index.on_change(move || notify.notify_one());
    index.take();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(source.run(cancel.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(dir.path().join("db.yaml"), DB_AND_POD).unwrap();
    tokio::time::timeout(Duration::from_secs(5), changed.notified())
        .await
        .expect("published within 5 s");
    assert_eq!(service_names(&index), ["db", "web"]);
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn a_rescan_reads_only_files_whose_metadata_changed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("web.yaml"), WEB).unwrap();
    std::fs::write(dir.path().join("db.yaml"), DB_AND_POD).unwrap();
    let index = SharedIndex::default();
    let mut source = FileSource::new(dir.path(), index.clone());
    source.scan().unwrap();
    assert_eq!(source.files_read(), 2);
    source.scan().unwrap();
    source.scan().unwrap();
    assert_eq!(source.files_read(), 2, "nothing changed: nothing read");
    std::fs::write(dir.path().join("web.yaml"), WEB.replace("web", "web2")).unwrap();
    source.scan().unwrap();
    assert_eq!(source.files_read(), 3, "only the changed file");
    assert_eq!(service_names(&index), ["db", "web2"]);
}

#[test]
fn an_object_meshd_cannot_use_fails_its_file_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("web.yaml"), WEB).unwrap();
    let index = SharedIndex::default();
    let mut source = FileSource::new(dir.path(), index.clone());
    source.scan().unwrap();
    let bad = WEB.replace("port: 80", "port: 70000");
    let path = dir.path().join("web.yaml").display().to_string();
    let err = parse_documents(&path, &bad).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("{path}: document 1: Service shop/web: spec.ports[0].port: 70000 is not 1-65535")
    );
    std::fs::write(dir.path().join("web.yaml"), bad).unwrap();
    source.scan().unwrap();
    let port = index.read(
        |i| match i.get(FactKind::Service, &ObjectKey::new("shop", "web")) {
            Some(Fact::Service(s)) => s.ports[0].port,
            _ => panic!("web is gone"),
        },
    );
    assert_eq!(port, 80, "the last good content stays");
}

#[test]
fn an_object_in_two_files_is_the_first_files_until_that_one_goes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), WEB).unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        WEB.replace("10.96.0.10", "10.96.0.11"),
    )
    .unwrap();
    let index = SharedIndex::default();
    let mut source = FileSource::new(dir.path(), index.clone());
    source.scan().unwrap();
    let vip = || {
        index.read(
            |i| match i.get(FactKind::Service, &ObjectKey::new("shop", "web")) {
                Some(Fact::Service(s)) => s.vips[0].clone(),
                _ => "gone".into(),
            },
        )
    };
    assert_eq!(vip(), "10.96.0.10");
    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    source.scan().unwrap();
    assert_eq!(vip(), "10.96.0.11");
    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    source.scan().unwrap();
    assert_eq!(vip(), "gone");
}

#[tokio::test]
async fn a_file_event_reads_that_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        std::fs::write(
            dir.path().join(format!("svc-{i}.yaml")),
            WEB.replace("name: web", &format!("name: web{i}")),
        )
        .unwrap();
    }
    let index = SharedIndex::default();
    let mut source =
        FileSource::new(dir.path(), index.clone()).with_rescan(Duration::from_secs(3600));
    source.scan().unwrap();
    let reads = source.read_counter();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(source.run(cancel.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(
        dir.path().join("svc-3.yaml"),
        WEB.replace("name: web", "name: moved"),
    )
    .unwrap();
    let started = std::time::Instant::now();
    while !service_names(&index).contains(&"moved".to_string()) {
        assert!(started.elapsed() < Duration::from_secs(5), "not within 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        reads.load(std::sync::atomic::Ordering::Relaxed),
        21,
        "one file re-read"
    );
    cancel.cancel();
    task.await.unwrap();
}
