//! Fuzzing the AdmissionReview handler with the fixtures as seeds: fields deleted, types changed, odd
//! strings, deep nesting, truncated bodies, several at once. Every answer: no panic, HTTP 200 with a
//! well-formed AdmissionReview echoing the uid (or 400 with a message), every `allowed: false` message
//! names a field, and every patch applies to the object exactly as sent.
//!
//! `MESHD_FUZZ_CASES` sets the number of cases (default 1000, a second or two); e.g.
//! `MESHD_FUZZ_CASES=100000 cargo test -p meshd-inject --test fuzz --release`.

mod common;

use std::sync::OnceLock;

use base64::Engine;
use meshd_inject::{InjectionSettings, ReviewResult, review};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value, json};

fn seeds() -> &'static [Value] {
    static SEEDS: OnceLock<Vec<Value>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        common::fixture_names()
            .iter()
            .map(|n| serde_json::from_slice(&common::fixture(n)).expect("fixture is JSON"))
            .collect()
    })
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// The path of every node below the root, parents before children (`managedFields` as one node).
fn paths(v: &Value) -> Vec<Vec<Step>> {
    fn walk(v: &Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        let children: Vec<(Step, &Value)> = match v {
            Value::Object(m) => m.iter().map(|(k, c)| (Step::Key(k.clone()), c)).collect(),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, c)| (Step::Index(i), c))
                .collect(),
            _ => Vec::new(),
        };
        for (step, child) in children {
            // managedFields is most of a fixture's nodes and nothing reads it: mutate it whole only.
            let opaque = matches!(&step, Step::Key(k) if k == "managedFields");
            here.push(step);
            out.push(here.clone());
            if !opaque {
                walk(child, here, out);
            }
            here.pop();
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn node<'a>(v: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, step| match step {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Index(i) => v.get_mut(*i),
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete,
    Replace(Value),
    Nest(usize, bool),
}

fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".to_string()),
        Just("~1/~0~".to_string()),
        Just("\u{0}\u{1b}[31m\n\t".to_string()),
        Just("日本語 🚀 \u{202e}".to_string()),
        Just("-1".to_string()),
        Just("1e999".to_string()),
        Just("true".to_string()),
        Just("*".to_string()),
        Just("15001".to_string()),
        Just("meshd-proxy".to_string()),
        Just("istio-proxy".to_string()),
        Just("x".repeat(5000)),
        ".{0,24}",
    ]
}

fn odd_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(15020)),
        Just(json!(i64::MAX)),
        Just(json!(u64::MAX)),
        Just(json!(1.5)),
        Just(json!(1e300)),
        Just(json!([])),
        Just(json!({})),
        Just(json!([null])),
        Just(json!({"": null})),
        odd_string().prop_map(Value::from),
    ]
}

fn mutation() -> impl Strategy<Value = (Index, Mutation)> {
    let m = prop_oneof![
        3 => Just(Mutation::Delete),
        4 => odd_value().prop_map(Mutation::Replace),
        1 => (1usize..200, any::<bool>()).prop_map(|(d, arrays)| Mutation::Nest(d, arrays)),
    ];
    (any::<Index>(), m)
}

fn apply(v: &mut Value, at: &Index, m: &Mutation) {
    let all = paths(v);
    if all.is_empty() {
        return;
    }
    let path = at.get(&all).clone();
    match m {
        Mutation::Delete => {
            let (last, parent) = path.split_last().expect("not the root");
            match (node(v, parent), last) {
                (Some(Value::Object(o)), Step::Key(k)) => {
                    o.remove(k);
                }
                (Some(Value::Array(a)), Step::Index(i)) if *i < a.len() => {
                    a.remove(*i);
                }
                _ => {}
            }
        }
        Mutation::Replace(new) => {
            if let Some(n) = node(v, &path) {
                *n = new.clone();
            }
        }
        Mutation::Nest(depth, arrays) => {
            if let Some(n) = node(v, &path) {
                let mut inner = n.take();
                for _ in 0..*depth {
                    inner = if *arrays {
                        Value::Array(vec![inner])
                    } else {
                        Value::Object(Map::from_iter([("a".to_string(), inner)]))
                    };
                }
                *n = inner;
            }
        }
    }
}

/// Top-level fields of an AdmissionReview and of a pod.
const ROOTS: [&str; 7] = [
    "request",
    "response",
    "apiVersion",
    "kind",
    "metadata",
    "spec",
    "status",
];

/// A field as kubectl names it (`spec.containers[0].ports`, `metadata.annotations["…"]`,
/// `request.uid`), an annotation, or the AdmissionReview itself.
fn names_a_field(message: &str) -> bool {
    message.contains("the AdmissionReview")
        || message.contains("annotation sidecar.meshd.io/")
        || message.contains("annotation traffic.meshd.io/")
        || message
            .split(|c: char| c.is_whitespace() || c == '(')
            .any(|word| {
                ROOTS.iter().any(|root| {
                    word.strip_prefix(root)
                        .is_some_and(|rest| rest.starts_with(['.', '[', ':']))
                })
            })
}

/// `sent` is the body as a value when the test knows it: serde_json's `Value` stops at 128 levels,
/// while the typed review skips what it ignores at any depth (as the API server's Go reader would).
fn check(body: &[u8], sent: Option<&Value>) -> Result<(), TestCaseError> {
    let answer = review(body, &InjectionSettings::default(), None);
    if answer.http_status == 400 {
        prop_assert!(!answer.body.is_empty());
        prop_assert!(matches!(answer.result, ReviewResult::Invalid(_)));
        return Ok(());
    }
    prop_assert_eq!(answer.http_status, 200);
    let parsed;
    let sent = match sent {
        Some(v) => v,
        None => {
            parsed = serde_json::from_slice::<Value>(body);
            prop_assert!(parsed.is_ok(), "answered 200 to a body that is not JSON");
            parsed.as_ref().expect("checked")
        }
    };
    let out: Value = serde_json::from_slice(&answer.body).expect("the answer is JSON");
    prop_assert_eq!(&out["apiVersion"], "admission.k8s.io/v1");
    prop_assert_eq!(&out["kind"], "AdmissionReview");
    let response = &out["response"];
    let uid = response["uid"].as_str().unwrap_or("");
    prop_assert!(!uid.is_empty(), "no uid in {}", response);
    prop_assert_eq!(&sent["request"]["uid"], &json!(uid));
    let allowed = response["allowed"].as_bool();
    prop_assert!(allowed.is_some(), "allowed is not a boolean: {}", response);
    prop_assert_eq!(
        response.get("patch").is_some(),
        response.get("patchType").is_some()
    );
    if allowed == Some(false) {
        let message = response["status"]["message"].as_str().unwrap_or("");
        prop_assert!(names_a_field(message), "names no field: {}", message);
        prop_assert!(response.get("patch").is_none());
    }
    if let Some(patch) = response.get("patch") {
        prop_assert_eq!(&response["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch.as_str().expect("base64 text"))
            .expect("base64");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSON patch");
        let mut pod = sent["request"]["object"].clone();
        let applied = json_patch::patch(&mut pod, &patch);
        prop_assert!(
            applied.is_ok(),
            "{:?} on {}",
            applied,
            sent["request"]["object"]
        );
        prop_assert_eq!(&answer.result, &ReviewResult::Injected);
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("MESHD_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_fixtures_get_well_formed_answers(
        seed in any::<Index>(),
        mutations in proptest::collection::vec(mutation(), 1..5),
        cut in proptest::option::weighted(0.15, any::<Index>()),
    ) {
        let mut v = seed.get(seeds()).clone();
        for (at, m) in &mutations {
            apply(&mut v, at, m);
        }
        let mut body = serde_json::to_vec(&v).expect("serializes");
        match cut {
            Some(cut) => {
                body.truncate(cut.index(body.len() + 1));
                check(&body, None)?;
            }
            None => check(&body, Some(&v))?,
        }
    }
}

/// The checker itself: what it accepts and refuses.
#[test]
fn field_names_are_recognised() {
    for yes in [
        "the object of a pod CREATE cannot be read as a pod: spec.containers[0].ports: invalid type",
        "request.object: a pod CREATE without an object",
        "meshd cannot inject this pod: annotation sidecar.meshd.io/proxyCPU=\"x\": bad",
        "the request body is not an AdmissionReview: the AdmissionReview: invalid type",
        "x: metadata[\"a\"]: y",
        "the object of a pod CREATE cannot be read as a pod: apiVersion: invalid type: null",
    ] {
        assert!(names_a_field(yes), "{yes}");
    }
    for no in [
        "invalid type: null, expected a string",
        "specimen: bad",
        "the pod has no spec",
    ] {
        assert!(!names_a_field(no), "{no}");
    }
}
