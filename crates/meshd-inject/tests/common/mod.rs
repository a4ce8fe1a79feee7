//! Shared by the integration tests: the admission fixtures, and the pod a review's patch produces.
#![allow(dead_code)]

use meshd_inject::{InjectionSettings, ReviewAnswer, review};
use serde_json::Value;

pub const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/admission"
);

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{FIXTURES}/{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {path}: {e}"))
}

pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(FIXTURES)
        .expect("fixtures directory")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// A review's answer: the response object, and the request object with the returned patch applied
/// (None when there is no patch).
pub struct Applied {
    pub answer: ReviewAnswer,
    pub response: Value,
    pub before: Value,
    pub after: Option<Value>,
}

pub fn run(body: &[u8], settings: &InjectionSettings) -> Applied {
    let answer = review(body, settings, None);
    assert_eq!(answer.http_status, 200, "{}", answer.message);
    let review_out: Value = serde_json::from_slice(&answer.body).expect("answer is JSON");
    assert_eq!(review_out["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review_out["kind"], "AdmissionReview");
    let request: Value = serde_json::from_slice(body).expect("fixture is JSON");
    let response = review_out["response"].clone();
    assert_eq!(response["uid"], request["request"]["uid"], "uid echoed");
    let before = request["request"]["object"].clone();
    let after = match &response["patch"] {
        Value::Null => {
            assert!(
                response.get("patchType").is_none(),
                "patchType without a patch"
            );
            None
        }
        patch => {
            assert_eq!(response["patchType"], "JSONPatch");
            use base64::Engine;
            let text = patch.as_str().expect("the patch is base64 text");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .expect("the patch is base64");
            let patch: json_patch::Patch =
                serde_json::from_slice(&bytes).expect("patch is a JSON patch");
            let mut pod = before.clone();
            json_patch::patch(&mut pod, &patch).expect("the patch applies to the object as sent");
            Some(pod)
        }
    };
    Applied {
        answer,
        response,
        before,
        after,
    }
}

pub fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["name"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

pub fn find<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

pub fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

/// The injected `meshd-init`'s command-line arguments.
pub fn init_args(injected: &Value) -> Vec<String> {
    find(&injected["spec"]["initContainers"], "meshd-init")["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

/// The value after `name` in `args`.
pub fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).map(String::as_str)
}
