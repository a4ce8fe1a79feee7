//! The layer rules of docs/design.md ("Who may import what"), checked rather than only stated:
//! - a crate's normal dependencies on meshd crates point only to lower layers (dev-dependencies are the
//!   tests' business and are not checked);
//! - the pure core (API types, capture rules, injection, translation, the index) depends on no async
//!   runtime, gRPC, HTTP server or Kubernetes client, and its own code names none of them;
//! - the xDS server (the gRPC layer) never imports kube.
//!
//! The rules read `cargo metadata` and the crates' sources; the checks themselves are tested below on
//! made-up crates, so a rule that can never fail would show.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each meshd crate's layer: a crate may depend only on crates of a lower number.
const LAYERS: &[(&str, u8, &str)] = &[
    ("meshd-api", 0, "API types"),
    ("meshd-capture", 1, "pure core"),
    ("meshd-inject", 1, "pure core"),
    ("meshd-translate", 1, "pure core"),
    (
        "meshd-index",
        2,
        "pure core (reduces objects into translation's facts)",
    ),
    ("meshd-ca", 3, "adapter"),
    ("meshd-sources", 3, "adapter"),
    (
        "meshd-xds",
        4,
        "adapter (authenticates streams with meshd-ca)",
    ),
    ("meshd-webhook", 3, "adapter"),
    ("meshd-operator", 3, "adapter"),
    ("meshd-agent", 4, "adapter (uses meshd-ca's client)"),
    ("meshd-testbed", 5, "tests"),
    ("meshd-tools", 6, "tools"),
    ("meshd", 7, "binary"),
];

/// The last layer of the pure core.
const PURE_CORE: u8 = 2;

/// Crates the pure core may not depend on.
const NOT_IN_CORE: &[&str] = &[
    "tokio",
    "tokio-util",
    "tokio-stream",
    "tonic",
    "hyper",
    "hyper-util",
    "axum",
    "tower",
    "kube-client",
    "kube-runtime",
];

/// kube features that bring its client or runtime along.
const KUBE_CLIENT_FEATURES: &[&str] = &[
    "client",
    "runtime",
    "rustls-tls",
    "openssl-tls",
    "ws",
    "oauth",
    "oidc",
    "gzip",
    "unstable-runtime",
];

/// Paths the pure core's code may not name (kube's types and traits, `kube::core`, are fine).
const NOT_IN_CORE_CODE: &[&str] = &[
    "tokio::",
    "tonic::",
    "hyper::",
    "hyper_util::",
    "axum::",
    "tower::",
    "kube::Client",
    "kube::Api",
    "kube::api::",
    "kube::runtime",
    "kube::client",
    "kube::Config",
    "kube::config",
    "kube_runtime",
    "kube_client",
];

#[derive(Debug, Clone)]
struct Dependency {
    name: String,
    features: Vec<String>,
    default_features: bool,
}

#[derive(Debug, Clone)]
struct Crate {
    name: String,
    /// Normal dependencies only.
    dependencies: Vec<Dependency>,
    src: PathBuf,
}

fn layer(name: &str) -> Option<u8> {
    LAYERS.iter().find(|(n, ..)| *n == name).map(|(_, l, _)| *l)
}

/// Violations of the dependency rules.
fn dependency_problems(crates: &[Crate]) -> Vec<String> {
    let mut out = Vec::new();
    for c in crates {
        let Some(own) = layer(&c.name) else {
            out.push(format!(
                "{}: not in the layer table of tests/layers.rs (and docs/design.md)",
                c.name
            ));
            continue;
        };
        for d in &c.dependencies {
            if d.name.starts_with("meshd") {
                match layer(&d.name) {
                    Some(l) if l < own => {}
                    Some(l) => out.push(format!(
                        "{} (layer {own}) depends on {} (layer {l}): dependencies point down the layers",
                        c.name, d.name
                    )),
                    None => out.push(format!("{}: depends on unknown crate {}", c.name, d.name)),
                }
            }
            if own <= PURE_CORE {
                if NOT_IN_CORE.contains(&d.name.as_str()) {
                    out.push(format!("{} is pure core but depends on {}", c.name, d.name));
                }
                if d.name == "kube" {
                    if d.default_features {
                        out.push(format!(
                            "{} is pure core but takes kube's default features (its client)",
                            c.name
                        ));
                    }
                    for f in &d.features {
                        if KUBE_CLIENT_FEATURES.contains(&f.as_str()) {
                            out.push(format!(
                                "{} is pure core but enables kube's {f:?} feature",
                                c.name
                            ));
                        }
                    }
                }
            }
            if c.name == "meshd-xds" && d.name.starts_with("kube") {
                out.push("meshd-xds (the gRPC layer) depends on kube".to_string());
            }
        }
    }
    out
}

/// Lines of `text` (a source file of crate `name`) that break the code rules.
fn code_problems(name: &str, file: &str, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let pure = layer(name).is_some_and(|l| l <= PURE_CORE);
    // `use kube::{api::Api, Client}` names them inside braces: look at whole `use` items too.
    let flat = text.replace(['\n', ' '], "");
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        if pure {
            for path in NOT_IN_CORE_CODE {
                if code.contains(path) {
                    out.push(format!("{file}:{}: pure core names {path}", i + 1));
                }
            }
        }
        if name == "meshd-xds" && code.contains("kube::") {
            out.push(format!("{file}:{}: the gRPC layer names kube", i + 1));
        }
    }
    if pure {
        for item in flat.split("usekube::{").skip(1) {
            let inside = item.split(';').next().unwrap_or("");
            for word in [
                "Client", "Api,", "Api}", "api::", "runtime", "client", "Config",
            ] {
                if inside.contains(word) {
                    out.push(format!("{file}: pure core imports {word} from kube"));
                }
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn workspace_crates() -> Vec<Crate> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let manifest = PathBuf::from(p["manifest_path"].as_str().expect("manifest_path"));
            let dependencies = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| Dependency {
                    name: d["name"].as_str().unwrap_or_default().to_string(),
                    features: d["features"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|f| f.as_str().map(String::from))
                        .collect(),
                    default_features: d["uses_default_features"].as_bool().unwrap_or(true),
                })
                .collect();
            Crate {
                name: p["name"].as_str().expect("name").to_string(),
                dependencies,
                src: manifest.parent().expect("crate dir").join("src"),
            }
        })
        .collect()
}

#[test]
fn dependencies_point_down_the_layers() {
    let crates = workspace_crates();
    assert!(crates.len() >= 10, "found only {} crates", crates.len());
    let problems = dependency_problems(&crates);
    assert!(
        problems.is_empty(),
        "layer rules broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_pure_core_and_the_grpc_layer_import_only_what_they_may() {
    let mut problems = Vec::new();
    let mut checked = BTreeMap::new();
    for c in workspace_crates() {
        let mut files = Vec::new();
        rust_files(&c.src, &mut files);
        checked.insert(c.name.clone(), files.len());
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable source");
            problems.extend(code_problems(&c.name, &file.display().to_string(), &text));
        }
    }
    assert!(
        checked.get("meshd-translate").is_some_and(|n| *n > 3),
        "the sources were not found: {checked:?}"
    );
    assert!(
        problems.is_empty(),
        "layer rules broken:\n{}",
        problems.join("\n")
    );
}

// ---- the checks catch what they are for ----

fn made_up(name: &str, deps: &[(&str, &[&str], bool)]) -> Crate {
    Crate {
        name: name.into(),
        dependencies: deps
            .iter()
            .map(|(n, f, d)| Dependency {
                name: n.to_string(),
                features: f.iter().map(|s| s.to_string()).collect(),
                default_features: *d,
            })
            .collect(),
        src: PathBuf::new(),
    }
}

#[test]
fn the_dependency_check_catches_upward_and_forbidden_dependencies() {
    let fine = [
        made_up(
            "meshd-translate",
            &[("meshd-api", &[], true), ("kube", &["derive"], false)],
        ),
        made_up(
            "meshd-xds",
            &[("meshd-index", &[], true), ("tokio", &[], true)],
        ),
    ];
    assert_eq!(dependency_problems(&fine), Vec::<String>::new());
    let bad = [
        made_up("meshd-api", &[("meshd-inject", &[], true)]),
        made_up("meshd-inject", &[("tokio", &[], true)]),
        made_up("meshd-index", &[("kube", &["runtime"], false)]),
        made_up("meshd-translate", &[("kube", &[], true)]),
        made_up("meshd-xds", &[("kube", &[], false)]),
        made_up("meshd-new", &[]),
    ];
    let problems = dependency_problems(&bad);
    assert_eq!(problems.len(), 6, "{problems:#?}");
}

#[test]
fn the_code_check_catches_the_pure_core_naming_runtimes_or_the_client() {
    let clean = "use kube::Resource;\nuse kube::core::ObjectMeta; // not kube::Client\n";
    assert_eq!(
        code_problems("meshd-index", "a.rs", clean),
        Vec::<String>::new()
    );
    assert_eq!(
        code_problems("meshd-sources", "a.rs", "use kube::Client;"),
        Vec::<String>::new()
    );
    for bad in [
        "use tokio::sync::watch;",
        "let c = kube::Client::try_default();",
        "use kube::{\n    Resource,\n    Client,\n};",
        "async fn f() { hyper::body::Bytes::new(); }",
    ] {
        assert!(
            !code_problems("meshd-translate", "a.rs", bad).is_empty(),
            "not caught: {bad}"
        );
    }
    assert!(!code_problems("meshd-xds", "a.rs", "use kube::Resource;").is_empty());
}
