//! File-fed verdicts (SPEC §8): a bad traffic resource is rejected on its own, naming its file, field
//! and value; the rest of its file and of the mesh is read as usual.

use meshd_api::status::VerdictKey;
use meshd_index::SharedIndex;
use meshd_sources::{FileSource, verdict_line};
use meshd_translate::facts::{FactKind, ObjectKey};
use meshd_translate::{TranslateSettings, Translator};

const REVIEWS: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec:\n  clusterIP: 10.96.0.20\n  ports: [{name: http, port: 9080}]\n";

const GOOD_VS: &str = "apiVersion: networking.meshd.io/v1alpha1\nkind: VirtualService\nmetadata: {name: reviews, namespace: shop}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n";

/// A VirtualService whose weight does not parse, and a Service beside it in the same file.
const BAD_VS_AND_SERVICE: &str = "apiVersion: networking.meshd.io/v1alpha1\nkind: VirtualService\nmetadata: {name: broken, namespace: shop}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n      weight: ten\n---\napiVersion: v1\nkind: Service\nmetadata: {name: ratings, namespace: shop}\nspec:\n  clusterIP: 10.96.0.21\n  ports: [{port: 9080}]\n";

const DANGLING_VS: &str = "apiVersion: networking.meshd.io/v1alpha1\nkind: VirtualService\nmetadata: {name: ghost, namespace: shop}\nspec:\n  hosts: [ghost]\n  http:\n  - route:\n    - destination: {host: ghost}\n";

#[test]
fn a_bad_resource_is_rejected_alone_and_its_log_line_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("reviews.yaml"),
        format!("{REVIEWS}---\n{GOOD_VS}"),
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.yaml"), BAD_VS_AND_SERVICE).unwrap();
    std::fs::write(dir.path().join("ghost.yaml"), DANGLING_VS).unwrap();
    let index = SharedIndex::default();
    let mut source = FileSource::new(dir.path(), index.clone());
    source.scan().unwrap();
    // The Service beside the undecodable VirtualService is read.
    assert!(index.read(|i| {
        i.get(FactKind::Service, &ObjectKey::new("shop", "ratings"))
            .is_some()
    }));

    let mut translator = Translator::new(TranslateSettings {
        mesh_name: "default".into(),
        cluster_domain: "cluster.local".into(),
    });
    let (changes, _) = index.take();
    let (mesh, _) = translator.apply(changes);
    let origins = source.origins();
    let line = |name: &str| {
        let key = VerdictKey::new("VirtualService", "shop", name);
        let verdict = mesh
            .verdicts
            .get(&key)
            .unwrap_or_else(|| panic!("a verdict on {key}"));
        verdict_line(&origins, &key, verdict)
    };
    let reviews = dir.path().join("reviews.yaml");
    assert_eq!(
        line("reviews"),
        format!(
            "{}: VirtualService shop/reviews: accepted",
            reviews.display()
        )
    );
    let broken = line("broken");
    let file = dir.path().join("broken.yaml");
    assert!(
        broken.starts_with(&format!(
            "{}: VirtualService shop/broken: spec.http[0].route[0].weight: does not parse: invalid type",
            file.display()
        )),
        "{broken}"
    );
    assert!(broken.ends_with("(not applied) (Invalid)"), "{broken}");
    let ghost = line("ghost");
    assert_eq!(
        ghost,
        format!(
            "{}: VirtualService shop/ghost: spec.http[0].route[0].destination.host: \"ghost\" is not a host of any Service or ServiceEntry (not applied) (DanglingReference)",
            dir.path().join("ghost.yaml").display()
        )
    );
}

const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-0\n  namespace: shop\n  labels: {app: web, meshd.io/mesh: default}\nspec:\n  serviceAccountName: web\n  containers: [{name: web, image: web}]\nstatus: {podIP: 10.0.1.1}\n";
const STRICT_PA: &str = "apiVersion: security.meshd.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n  mtls: {mode: STRICT}\n";
const UNDECODABLE_PA: &str = "apiVersion: security.meshd.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n  mtls: {mode: STRICTER}\n";
const GOOD_AP: &str = "apiVersion: security.meshd.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: deny-jobs, namespace: shop}\nspec:\n  action: DENY\n  rules: [{from: [{source: {namespaces: [jobs]}}]}]\n";
const CUSTOM_AP: &str = "apiVersion: security.meshd.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: ext, namespace: shop}\nspec:\n  action: CUSTOM\n  provider: {name: ext}\n";

#[test]
fn security_policies_get_verdicts_and_a_bad_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("web.yaml"), WEB).unwrap();
    std::fs::write(dir.path().join("pa.yaml"), STRICT_PA).unwrap();
    std::fs::write(
        dir.path().join("ap.yaml"),
        format!("{GOOD_AP}---\n{CUSTOM_AP}"),
    )
    .unwrap();
    let index = SharedIndex::default();
    let mut source = FileSource::new(dir.path(), index.clone());
    source.scan().unwrap();
    let mut translator = Translator::new(TranslateSettings {
        mesh_name: "default".into(),
        cluster_domain: "cluster.local".into(),
    });
    let (changes, _) = index.take();
    let (mesh, _) = translator.apply(changes);
    let origins = source.origins();
    let line = |mesh: &meshd_translate::CompiledMesh, kind: &'static str, name: &str| {
        let key = VerdictKey::new(kind, "shop", name);
        let verdict = mesh
            .verdicts
            .get(&key)
            .unwrap_or_else(|| panic!("a verdict on {key}"));
        verdict_line(&origins, &key, verdict)
    };
    let pa = dir.path().join("pa.yaml");
    let ap = dir.path().join("ap.yaml");
    assert_eq!(
        line(&mesh, "PeerAuthentication", "web"),
        format!("{}: PeerAuthentication shop/web: accepted", pa.display())
    );
    assert_eq!(
        line(&mesh, "AuthorizationPolicy", "deny-jobs"),
        format!(
            "{}: AuthorizationPolicy shop/deny-jobs: accepted",
            ap.display()
        )
    );
    assert_eq!(
        line(&mesh, "AuthorizationPolicy", "ext"),
        format!(
            "{}: AuthorizationPolicy shop/ext: spec.action: CUSTOM (an external authorizer) is not supported by meshd (not applied) (Invalid)",
            ap.display()
        )
    );
    let node = meshd_translate::NodeId::parse("web-0.shop").unwrap();
    let inbound = |mesh: &meshd_translate::CompiledMesh| {
        let config = mesh.proxy_config(&node);
        config
            .resources(meshd_translate::ResourceType::Listener)
            .find(|r| &*r.name == "virtualInbound")
            .map(|r| r.body.value.clone())
            .expect("an inbound listener")
    };
    // STRICT is in force (its inbound listener differs from the one without it, checked below).
    let strict = inbound(&mesh);

    // The policy turns undecodable: rejected naming its file and field, the STRICT version stays.
    std::fs::write(&pa, UNDECODABLE_PA).unwrap();
    source.scan().unwrap();
    let (changes, _) = index.take();
    let (mesh, changed) = translator.apply(changes);
    let rejected = line(&mesh, "PeerAuthentication", "web");
    assert!(
        rejected.starts_with(&format!(
            "{}: PeerAuthentication shop/web: spec.mtls.mode: does not parse: unknown variant `STRICTER`",
            pa.display()
        )),
        "{rejected}"
    );
    assert!(!changed.affects_proxy(&node), "nothing else changes");
    assert_eq!(inbound(&mesh), strict, "the last accepted version stays");

    // Removed: the workload falls back to the Mesh's mode (PERMISSIVE by default), the verdict goes.
    std::fs::remove_file(&pa).unwrap();
    source.scan().unwrap();
    let (changes, _) = index.take();
    let (mesh, changed) = translator.apply(changes);
    assert!(changed.affects_proxy(&node));
    assert_ne!(inbound(&mesh), strict);
    assert!(
        mesh.verdicts
            .get(&VerdictKey::new("PeerAuthentication", "shop", "web"))
            .is_none()
    );
}
