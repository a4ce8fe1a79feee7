//! Reading JSON into typed objects, naming the field that does not fit as kubectl does:
//! `metadata.annotations["sidecar.meshd.io/nativeSidecar"]: invalid type: boolean `true`, expected a
//! string`, not serde's bare "invalid type" without a place.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

/// A value that does not fit its field.
#[derive(Debug)]
pub struct FieldError {
    /// `spec.containers[0].ports[1].containerPort`, or `root` itself when the whole value is wrong.
    pub field: String,
    pub source: serde_json::Error,
    /// Labels and annotations are strings; YAML users write `true` or `8080` unquoted.
    string_map: bool,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.source)?;
        if self.string_map {
            f.write_str(" (label and annotation values are strings: quote the value)")?;
        }
        Ok(())
    }
}

// The serde error is part of the message; no separate source, so a chain does not print it twice.
impl std::error::Error for FieldError {}

/// Fields whose keys are user data (`labels["app"]`), printed in brackets.
const STRING_MAPS: [&str; 4] = ["labels", "annotations", "nodeSelector", "matchLabels"];
const KEYED_MAPS: [&str; 4] = ["limits", "requests", "overhead", "data"];

/// Deserializes `value`; on failure, the field is written from `root` (`spec.template`, or empty for
/// an object's own fields), and `whole` names the value itself when that is what does not fit.
pub fn read<T: DeserializeOwned>(value: Value, root: &str, whole: &str) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut field = root.to_string();
        let mut parent: Option<&str> = None;
        let mut string_map = false;
        let path = e.path().clone();
        for segment in path.iter() {
            match segment {
                Segment::Seq { index } => field.push_str(&format!("[{index}]")),
                Segment::Map { key } => {
                    let in_map =
                        parent.is_some_and(|p| STRING_MAPS.contains(&p) || KEYED_MAPS.contains(&p));
                    // The last key decides: a value directly inside a label or annotation map.
                    string_map = parent.is_some_and(|p| STRING_MAPS.contains(&p));
                    if in_map {
                        field.push_str(&format!("[{key:?}]"));
                    } else {
                        if !field.is_empty() {
                            field.push('.');
                        }
                        field.push_str(key);
                    }
                }
                Segment::Enum { variant } => {
                    field.push('.');
                    field.push_str(variant);
                }
                Segment::Unknown => field.push_str(".?"),
            }
            parent = match segment {
                Segment::Map { key } => Some(key.as_str()),
                _ => None,
            };
        }
        if field.is_empty() {
            field = whole.into();
        }
        FieldError {
            field,
            source: e.into_inner(),
            string_map,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn error(pod: Value, root: &str) -> String {
        read::<Pod>(pod, root, "the pod")
            .expect_err("not a pod")
            .to_string()
    }

    #[test]
    fn fields_are_named_as_kubectl_names_them() {
        let text = error(
            json!({"metadata": {"annotations": {"sidecar.meshd.io/nativeSidecar": true}}}),
            "",
        );
        assert!(
            text.starts_with(
                "metadata.annotations[\"sidecar.meshd.io/nativeSidecar\"]: invalid type: boolean `true`, expected a string"
            ) && text.contains("quote the value"),
            "{text}"
        );
        let text = error(
            json!({"metadata": {"labels": {"app": 8080}}}),
            "spec.template",
        );
        assert!(
            text.starts_with("spec.template.metadata.labels[\"app\"]: invalid type: integer"),
            "{text}"
        );
        let text = error(
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b", "ports": [{"containerPort": "x"}]}]}}),
            "",
        );
        assert!(
            text.starts_with("spec.containers[1].ports[0].containerPort: "),
            "{text}"
        );
        assert!(!text.contains("quote"), "{text}");
        let text = error(
            json!({"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": []}}}]}}),
            "",
        );
        assert!(
            text.starts_with("spec.containers[0].resources.limits[\"cpu\"]: "),
            "{text}"
        );
        assert!(error(json!("pod"), "").starts_with("the pod: "));
        assert!(error(json!({"metadata": []}), "").starts_with("metadata: "));
    }
}
