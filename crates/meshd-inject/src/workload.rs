//! `meshd inject`: the same decision and patch as the webhook, applied to the pod templates of workload
//! manifests (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob;
//! a `List` of them), in multi-document YAML. Other kinds pass through unchanged; one that carries a pod
//! template all the same (an Argo Rollout, a Knative Service, a PodTemplate…) is reported as left alone.

use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::InjectError;
use crate::plan::{Verdict, decide};
use crate::settings::{ApiServerVersion, InjectionSettings, RequestFacts};

/// What happened to one workload.
#[derive(Debug, Clone, PartialEq)]
pub enum ManifestOutcome {
    Injected {
        kind: String,
        name: String,
    },
    Skipped {
        kind: String,
        name: String,
        reason: crate::SkipReason,
        /// The reason in words, naming the container where there is one.
        message: String,
    },
    /// Not a workload kind: printed as it was.
    PassedThrough {
        kind: String,
        name: String,
    },
    /// A kind meshd does not know that has a pod template all the same: printed as it was, and said.
    UnknownTemplate {
        kind: String,
        name: String,
        /// Where the template is, as `.spec.template`.
        path: String,
    },
}

/// The documents after injection, in input order, and what happened to each workload.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectedManifests {
    pub documents: Vec<Value>,
    pub outcomes: Vec<ManifestOutcome>,
}

impl InjectedManifests {
    /// Multi-document YAML.
    pub fn to_yaml(&self) -> Result<String, InjectError> {
        let mut out = String::new();
        for (index, doc) in self.documents.iter().enumerate() {
            if index > 0 {
                out.push_str("---\n");
            }
            out.push_str(
                &serde_yaml::to_string(doc)
                    .map_err(|source| InjectError::Yaml { index, source })?,
            );
        }
        Ok(out)
    }
}

/// Where a kind keeps its pod template.
fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Pod" => Some(&[]),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => Some(&["spec", "template"]),
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

/// Where a kind meshd does not know keeps what looks like a pod template, if anywhere.
fn unknown_template(doc: &Value) -> Option<&'static str> {
    let has = |path: &[&str]| path.iter().try_fold(doc, |v, k| v.get(k)).is_some();
    if has(&["spec", "template", "spec", "containers"]) {
        Some(".spec.template")
    } else if has(&["spec", "jobTemplate"]) {
        Some(".spec.jobTemplate")
    } else if has(&["template", "spec", "containers"]) {
        Some(".template")
    } else {
        None
    }
}

/// Injects every workload in `yaml`. A refused workload (a bad override annotation) fails the whole
/// run, naming the document, so that nothing is printed half-injected.
pub fn inject_manifests(
    yaml: &str,
    settings: &InjectionSettings,
    server_version: Option<ApiServerVersion>,
) -> Result<InjectedManifests, InjectError> {
    let mut out = InjectedManifests {
        documents: Vec::new(),
        outcomes: Vec::new(),
    };
    for (index, document) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let mut doc =
            Value::deserialize(document).map_err(|source| InjectError::Yaml { index, source })?;
        if doc.is_null() {
            continue; // an empty document, e.g. a leading `---`
        }
        inject_document(index, &mut doc, settings, server_version, &mut out.outcomes)?;
        out.documents.push(doc);
    }
    Ok(out)
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn inject_document(
    index: usize,
    doc: &mut Value,
    settings: &InjectionSettings,
    server_version: Option<ApiServerVersion>,
    outcomes: &mut Vec<ManifestOutcome>,
) -> Result<(), InjectError> {
    let kind = text(doc, &["kind"]).to_string();
    let name = text(doc, &["metadata", "name"]).to_string();
    let namespace = text(doc, &["metadata", "namespace"]).to_string();
    if kind == "List" {
        if let Some(items) = doc.get_mut("items").and_then(Value::as_array_mut) {
            for item in items {
                inject_document(index, item, settings, server_version, outcomes)?;
            }
        }
        return Ok(());
    }
    let manifest_error = |reason: String| InjectError::Manifest {
        index,
        kind: kind.clone(),
        name: name.clone(),
        reason,
    };
    let Some(path) = template_path(&kind) else {
        outcomes.push(match unknown_template(doc) {
            Some(path) => ManifestOutcome::UnknownTemplate {
                kind,
                name,
                path: path.to_string(),
            },
            None => ManifestOutcome::PassedThrough { kind, name },
        });
        return Ok(());
    };
    let Some(template) = path.iter().try_fold(&mut *doc, |v, k| v.get_mut(*k)) else {
        return Err(manifest_error(format!(
            "no pod template at .{}",
            path.join(".")
        )));
    };
    // The template as a Pod: the same input the webhook gets.
    let mut pod_value = Value::Object(Map::from_iter([
        ("apiVersion".to_string(), Value::from("v1")),
        ("kind".to_string(), Value::from("Pod")),
        (
            "metadata".to_string(),
            template
                .get("metadata")
                .cloned()
                .unwrap_or_else(|| Value::Object(Map::new())),
        ),
        (
            "spec".to_string(),
            template.get("spec").cloned().unwrap_or(Value::Null),
        ),
    ]));
    let pod: Pod = crate::fields::read(pod_value.clone(), &path.join("."), "the pod template")
        .map_err(|e| manifest_error(format!("the pod template cannot be read as a pod: {e}")))?;
    let facts = RequestFacts {
        namespace,
        dry_run: true,
        server_version,
    };
    match decide(&pod, settings, &facts) {
        Verdict::Skip(reason) => outcomes.push(ManifestOutcome::Skipped {
            kind,
            name,
            reason,
            message: crate::describe_skip(&pod, reason),
        }),
        Verdict::Refuse(refusal) => return Err(manifest_error(refusal.to_string())),
        Verdict::Invalid(why) => return Err(manifest_error(why)),
        Verdict::Inject(plan) => {
            json_patch::patch(&mut pod_value, &plan.to_patch()).map_err(|source| {
                InjectError::Patch {
                    what: format!("document {index} ({kind} {name})"),
                    source,
                }
            })?;
            if let (Value::Object(mut injected), Some(t)) = (pod_value, template.as_object_mut()) {
                for key in ["metadata", "spec"] {
                    if let Some(v) = injected.remove(key) {
                        t.insert(key.to_string(), v);
                    }
                }
            }
            outcomes.push(ManifestOutcome::Injected { kind, name });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "template:\n    metadata: {labels: {app: a}}\n    spec:\n      containers: [{name: app, image: app:1}]\n";

    fn first_init(t: &Value) -> Vec<&str> {
        t["spec"]["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect()
    }

    #[test]
    fn replicaset_list_and_pass_through() {
        let yaml = format!(
            "---\napiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: rs}}\nspec:\n  {TEMPLATE}---\n\
             apiVersion: v1\nkind: List\nitems:\n- apiVersion: apps/v1\n  kind: DaemonSet\n  metadata: {{name: ds}}\n  spec:\n    template:\n      spec:\n        containers: [{{name: app}}]\n\
             - apiVersion: v1\n  kind: ConfigMap\n  metadata: {{name: cm}}\n  data: {{a: b}}\n"
        );
        let out = inject_manifests(&yaml, &InjectionSettings::default(), None).expect("inject");
        assert_eq!(
            out.documents.len(),
            2,
            "the empty leading document is dropped"
        );
        assert_eq!(
            first_init(&out.documents[0]["spec"]["template"]),
            ["meshd-init", "meshd-proxy"]
        );
        assert_eq!(
            first_init(&out.documents[1]["items"][0]["spec"]["template"]),
            ["meshd-init", "meshd-proxy"]
        );
        assert_eq!(out.documents[1]["items"][1]["data"]["a"], "b");
        let kinds: Vec<_> = out
            .outcomes
            .iter()
            .map(|o| match o {
                ManifestOutcome::Injected { kind, .. } => format!("injected {kind}"),
                ManifestOutcome::Skipped { kind, .. } => format!("skipped {kind}"),
                ManifestOutcome::PassedThrough { kind, .. } => format!("passed {kind}"),
                ManifestOutcome::UnknownTemplate { kind, .. } => format!("unknown {kind}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "injected ReplicaSet",
                "injected DaemonSet",
                "passed ConfigMap"
            ]
        );
    }

    #[test]
    fn replication_controllers_are_injected_and_unknown_templates_reported() {
        let yaml = format!(
            "apiVersion: v1\nkind: ReplicationController\nmetadata: {{name: rc}}\nspec:\n  {TEMPLATE}---\n\
             apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {{name: ro}}\nspec:\n  {TEMPLATE}---\n\
             apiVersion: example.com/v1\nkind: Batch\nmetadata: {{name: b}}\nspec:\n  jobTemplate: {{spec: {{}}}}\n---\n\
             apiVersion: v1\nkind: PodTemplate\nmetadata: {{name: pt}}\n{TEMPLATE}---\n\
             apiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec: {{ports: [{{port: 80}}]}}\n"
        );
        let out = inject_manifests(&yaml, &InjectionSettings::default(), None).expect("inject");
        assert_eq!(
            first_init(&out.documents[0]["spec"]["template"]),
            ["meshd-init", "meshd-proxy"]
        );
        let input: Vec<Value> = serde_yaml::Deserializer::from_str(&yaml)
            .map(|d| Value::deserialize(d).expect("yaml"))
            .collect();
        assert_eq!(out.documents[1..], input[1..], "left as they were");
        let reported: Vec<_> = out
            .outcomes
            .iter()
            .map(|o| match o {
                ManifestOutcome::UnknownTemplate { kind, name, path } => {
                    format!("{kind} {name} {path}")
                }
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            reported[1..],
            [
                "Rollout ro .spec.template",
                "Batch b .spec.jobTemplate",
                "PodTemplate pt .template",
                "PassedThrough { kind: \"Service\", name: \"s\" }"
            ]
        );
    }

    #[test]
    fn a_workload_without_a_template_is_an_error_naming_it() {
        let err = inject_manifests(
            "kind: Deployment\nmetadata: {name: d}\nspec: {}\n",
            &InjectionSettings::default(),
            None,
        )
        .expect_err("no template");
        let text = err.to_string();
        assert!(
            text.contains("Deployment d") && text.contains("spec.template"),
            "{text}"
        );
        let err =
            inject_manifests("a: [\n", &InjectionSettings::default(), None).expect_err("bad yaml");
        assert!(matches!(err, InjectError::Yaml { index: 0, .. }), "{err}");
    }
}
