//! Golden files of the injected pods (`tests/golden/<fixture>.yaml`), and inject(inject(pod)) == inject(pod).
//! Regenerate with `MESHD_BLESS=1 cargo test -p meshd-inject --test golden` and review the diff.

mod common;

use common::*;
use meshd_api::MeshSpec;
use meshd_inject::workload::{ManifestOutcome, inject_manifests};
use meshd_inject::{InjectionSettings, ReviewResult, SkipReason};

fn settings() -> InjectionSettings {
    let mut spec = MeshSpec::default();
    // A fixed image, so the golden files do not change with the crate version.
    spec.proxy.image = Some("ghcr.io/meshd/meshd-proxy:golden".into());
    InjectionSettings::new("default", spec)
}

const INJECTED: [&str; 9] = [
    "pod-web.json",
    "pod-multi-container-probes.json",
    "deployment-reviews-pod.json",
    "statefulset-db-pod.json",
    "job-migrate-pod.json",
    "cronjob-nightly-pod.json",
    "daemonset-node-agent-pod.json",
    "pod-generatename-dryrun.json",
    "pod-user-native-sidecar.json",
];

#[test]
fn injected_pods_match_golden_files() {
    let bless = std::env::var_os("MESHD_BLESS").is_some();
    let mut stale = Vec::new();
    for name in INJECTED {
        let applied = run(&fixture(name), &settings());
        let mut pod = applied
            .after
            .unwrap_or_else(|| panic!("{name} not injected"));
        // managedFields is the API server's bookkeeping, checked unchanged by the fixture tests; it
        // would drown the golden files.
        pod["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("managedFields");
        let text = serde_yaml::to_string(&pod).expect("yaml");
        let path = format!(
            "{}/tests/golden/{}.yaml",
            env!("CARGO_MANIFEST_DIR"),
            name.trim_end_matches(".json")
        );
        if bless {
            std::fs::write(&path, &text).expect("write golden file");
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (run with MESHD_BLESS=1)"));
        if want != text {
            stale.push(name);
            pretty_assertions::assert_eq!(want, text, "{name} differs from {path}");
        }
    }
    assert!(stale.is_empty(), "{stale:?}");
}

#[test]
fn injecting_twice_is_injecting_once() {
    for name in INJECTED {
        let once = run(&fixture(name), &settings()).after.expect("injected");
        // Through the webhook: the injected pod comes back as a CREATE (a re-created pod, a copied manifest).
        let mut body: serde_json::Value = serde_json::from_slice(&fixture(name)).expect("json");
        body["request"]["object"] = once.clone();
        let twice = run(&serde_json::to_vec(&body).expect("json"), &settings());
        assert_eq!(
            twice.answer.result,
            ReviewResult::Skipped(SkipReason::AlreadyInjected),
            "{name}"
        );
        assert!(twice.after.is_none(), "{name}: second patch");
        // Through `meshd inject`: the same document comes out.
        let yaml = serde_yaml::to_string(&once).expect("yaml");
        let again = inject_manifests(&yaml, &settings(), None).expect("inject");
        assert_eq!(again.documents, vec![once], "{name}");
        assert!(matches!(
            again.outcomes[0],
            ManifestOutcome::Skipped {
                reason: SkipReason::AlreadyInjected,
                ..
            }
        ));
    }
}
