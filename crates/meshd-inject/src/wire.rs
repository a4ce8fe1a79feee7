//! The answer on the wire. It is built with kube's `AdmissionResponse` and written field for field as
//! `AdmissionReview::serialize` would write it, with one difference: the patch is base64, as Go encodes
//! `[]byte` and as the API documents `response.patch`. kube writes it as a JSON array of numbers, which
//! the API server also accepts, but that is three times the size and was the largest single cost of an
//! answer (docs/perf-webhook.md).

use std::collections::HashMap;

use base64::Engine;
use kube::core::Status;
use kube::core::admission::{AdmissionResponse, PatchType};
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireReview<'a> {
    api_version: &'a str,
    kind: &'a str,
    response: WireResponse<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse<'a> {
    uid: &'a str,
    allowed: bool,
    status: &'a Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<PatchType>,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    audit_annotations: &'a HashMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<&'a Vec<String>>,
}

/// The AdmissionReview carrying `response`, as JSON bytes.
pub(crate) fn to_vec(response: &AdmissionResponse) -> Result<Vec<u8>, serde_json::Error> {
    // Always v1, whatever the request said: the webhook is registered for `admissionReviewVersions:
    // [v1]` only, and kube echoes the request's own (possibly empty or mangled) TypeMeta.
    let wire = WireReview {
        api_version: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        response: WireResponse {
            uid: &response.uid,
            allowed: response.allowed,
            status: &response.result,
            patch: response
                .patch
                .as_ref()
                .map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
            // kube keeps `patchType` private; it sets it exactly when it sets the patch.
            patch_type: response.patch.as_ref().map(|_| PatchType::JsonPatch),
            audit_annotations: &response.audit_annotations,
            warnings: response.warnings.as_ref(),
        },
    };
    serde_json::to_vec(&wire)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Our bytes are kube's serialization with the patch array turned into base64, nothing else.
    #[test]
    fn same_as_kube_apart_from_the_patch_encoding() {
        let base = AdmissionResponse::invalid("x");
        let mut with_patch = base
            .clone()
            .deny("no")
            .with_patch(json_patch::Patch(Vec::new()))
            .expect("patch");
        with_patch.allowed = true;
        with_patch.patch = Some(br#"[{"op":"add","path":"/a","value":1}]"#.to_vec());
        with_patch.warnings = Some(vec!["careful".into()]);
        for response in [base, with_patch] {
            let ours: Value =
                serde_json::from_slice(&to_vec(&response).expect("ours")).expect("json");
            let mut kube = serde_json::to_value(response.clone().into_review()).expect("kube");
            if let Some(bytes) = response.patch.as_ref() {
                kube["response"]["patch"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes));
            }
            assert_eq!(ours, kube);
        }
    }
}
