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
