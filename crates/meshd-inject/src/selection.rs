//! Which pods a MutatingWebhook is called for, as the API server decides it: its rules (CREATE of pods)
//! and its namespaceSelector and objectSelector (matchLabels and matchExpressions with In, NotIn, Exists,
//! DoesNotExist; all ANDed). Pure: labels in, the first unmet requirement out.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, RuleWithOperations};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The outcome of one selector against one set of labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Matches,
    /// The first requirement the labels do not meet.
    Unmet(Unmet),
    /// A selector the API server would have refused (an unknown operator, In without values…).
    Invalid(String),
}

/// A requirement and the label as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmet {
    /// As written: `meshd.io/mesh In [default]`, `app=web`.
    pub requirement: String,
    pub key: String,
    /// The label's value, `None` when the label is absent.
    pub actual: Option<String>,
}

impl std::fmt::Display for Unmet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.actual {
            Some(v) => write!(f, "{}: the label {} is {v:?}", self.requirement, self.key),
            None => write!(f, "{}: no label {}", self.requirement, self.key),
        }
    }
}

/// A selector against labels. An absent selector matches everything, as an empty one does (the API
/// server's default for a webhook's selectors is `{}`).
pub fn select(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> Selection {
    let Some(selector) = selector else {
        return Selection::Matches;
    };
    for (key, want) in selector.match_labels.iter().flatten() {
        let actual = labels.get(key);
        if actual != Some(want) {
            return Selection::Unmet(Unmet {
                requirement: format!("{key}={want}"),
                key: key.clone(),
                actual: actual.cloned(),
            });
        }
    }
    for (i, r) in selector.match_expressions.iter().flatten().enumerate() {
        let values = r.values.as_deref().unwrap_or_default();
        let actual = labels.get(&r.key);
        let met = match r.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Selection::Invalid(format!(
                    "matchExpressions[{i}] ({} {}): needs values",
                    r.key, r.operator
                ));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Selection::Invalid(format!(
                    "matchExpressions[{i}] ({} {}): takes no values",
                    r.key, r.operator
                ));
            }
            "In" => actual.is_some_and(|v| values.contains(v)),
            "NotIn" => !actual.is_some_and(|v| values.contains(v)),
            "Exists" => actual.is_some(),
            "DoesNotExist" => actual.is_none(),
            other => {
                return Selection::Invalid(format!(
                    "matchExpressions[{i}].operator: {other:?} is not In, NotIn, Exists or DoesNotExist"
                ));
            }
        };
        if !met {
            let requirement = if values.is_empty() {
                format!("{} {}", r.key, r.operator)
            } else {
                format!("{} {} [{}]", r.key, r.operator, values.join(", "))
            };
            return Selection::Unmet(Unmet {
                requirement,
                key: r.key.clone(),
                actual: actual.cloned(),
            });
        }
    }
    Selection::Matches
}

/// Whether one of the webhook's rules covers CREATE of `pods` (core group, v1).
pub fn rules_cover_pod_create(rules: Option<&[RuleWithOperations]>) -> bool {
    let has = |list: &Option<Vec<String>>, wanted: &[&str]| {
        list.iter().flatten().any(|v| wanted.contains(&v.as_str()))
    };
    rules.into_iter().flatten().any(|r| {
        has(&r.operations, &["CREATE", "*"])
            && has(&r.api_groups, &["", "*"])
            && has(&r.api_versions, &["v1", "*"])
            && has(&r.resources, &["pods", "*", "*/*"])
            && matches!(r.scope.as_deref(), None | Some("*") | Some("Namespaced"))
    })
}

/// Why a webhook is not called for the pod, or `None` when it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotCalled {
    /// No rule covers CREATE of pods.
    Rules,
    NamespaceSelector(Unmet),
    ObjectSelector(Unmet),
    /// A selector the API server would refuse: `namespaceSelector.matchExpressions[0]…`.
    Invalid(String),
}

impl std::fmt::Display for NotCalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rules => f.write_str("its rules do not cover CREATE of pods"),
            Self::NamespaceSelector(u) => write!(f, "namespaceSelector: {u}"),
            Self::ObjectSelector(u) => write!(f, "objectSelector: {u}"),
            Self::Invalid(problem) => write!(f, "invalid selector: {problem}"),
        }
    }
}

/// Whether the API server calls `webhook` for a CREATE of a pod with `pod_labels` in a namespace with
/// `namespace_labels`. `matchConditions` (CEL) are not evaluated here; the caller says so.
pub fn webhook_called(
    webhook: &MutatingWebhook,
    namespace_labels: &BTreeMap<String, String>,
    pod_labels: &BTreeMap<String, String>,
) -> Result<(), NotCalled> {
    if !rules_cover_pod_create(webhook.rules.as_deref()) {
        return Err(NotCalled::Rules);
    }
    let checks = [
        (
            "namespaceSelector",
            webhook.namespace_selector.as_ref(),
            namespace_labels,
        ),
        (
            "objectSelector",
            webhook.object_selector.as_ref(),
            pod_labels,
        ),
    ];
    for (field, selector, labels) in checks {
        match select(selector, labels) {
            Selection::Matches => {}
            Selection::Unmet(u) if field == "namespaceSelector" => {
                return Err(NotCalled::NamespaceSelector(u));
            }
            Selection::Unmet(u) => return Err(NotCalled::ObjectSelector(u)),
            Selection::Invalid(problem) => {
                return Err(NotCalled::Invalid(format!("{field}.{problem}")));
            }
        }
    }
    Ok(())
}
