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
