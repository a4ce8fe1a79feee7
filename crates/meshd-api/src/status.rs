//! The status every traffic and security resource carries: whether meshd accepted it, and why not
//! (SPEC §8). Written by the controller through the status subresource; file-fed resources get a log line.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The condition type of every verdict.
pub const ACCEPTED: &str = "Accepted";

/// The printer column that shows the verdict (`kubectl get vs` … ACCEPTED).
pub const ACCEPTED_COLUMN: &str = r#".status.conditions[?(@.type=="Accepted")].status"#;

/// Reasons of the `Accepted` condition.
pub mod reason {
    /// The resource is valid and in force.
    pub const ACCEPTED: &str = "Accepted";
    /// A field is invalid (the message names it and its value).
    pub const INVALID: &str = "Invalid";
    /// A reference (host, subset, gateway, credential) names nothing that exists.
    pub const DANGLING_REFERENCE: &str = "DanglingReference";
    /// The resource conflicts with another one that wins.
    pub const CONFLICT: &str = "Conflict";
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ConfigStatus {
    /// The `metadata.generation` the conditions describe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted`: True, or False with a reason and a message naming the field path and value.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl ConfigStatus {
    /// The `Accepted` condition, if any.
    pub fn accepted(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == ACCEPTED)
    }
}

/// Which resource a verdict is about: its kind as in `kind:` (`VirtualService`, …), namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VerdictKey {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl VerdictKey {
    pub fn new(kind: &'static str, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for VerdictKey {
    /// `VirtualService shop/reviews`, as logs and `meshd validate` name a resource.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The control plane's verdict on the latest version of one resource (SPEC §8): accepted and in force,
/// or rejected with a reason and a message naming every field path and value at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `metadata.generation` of the version judged; file-fed objects usually have none.
    pub generation: Option<i64>,
    pub accepted: bool,
    /// One of [`reason`].
    pub reason: &'static str,
    pub message: String,
}

impl Verdict {
    pub fn accepted(generation: Option<i64>) -> Self {
        Self {
            generation,
            accepted: true,
            reason: reason::ACCEPTED,
            message: "accepted: in force".into(),
        }
    }

    /// Rejected for `errors` (at least one); `previous_in_force` says that an earlier accepted version
    /// still applies, which the message then tells.
    pub fn rejected(
        generation: Option<i64>,
        reason: &'static str,
        errors: &[crate::validate::FieldError],
        previous_in_force: bool,
    ) -> Self {
        let mut message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        message.push_str(if previous_in_force {
            " (not applied: the last accepted version stays in force)"
        } else {
            " (not applied)"
        });
        Self {
            generation,
            accepted: false,
            reason,
            message,
        }
    }

    /// `status.conditions[type=Accepted]` for this verdict; `since` is its lastTransitionTime.
    pub fn condition(
        &self,
        since: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    ) -> Condition {
        Condition {
            type_: ACCEPTED.to_string(),
            status: if self.accepted { "True" } else { "False" }.to_string(),
            reason: self.reason.to_string(),
            message: self.message.clone(),
            last_transition_time: since,
            observed_generation: self.generation,
        }
    }
}
