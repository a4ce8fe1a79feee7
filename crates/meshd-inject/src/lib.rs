//! Sidecar injection as a pure function (SPEC.md §4): a pod, the resolved mesh settings and the facts of
//! the request go in; an [`InjectionPlan`] (or a [`SkipReason`], or a [`Refusal`] naming every bad
//! annotation and every container port the proxy needs) comes out, and the plan becomes a minimal JSON patch against the pod as it was sent.
//! [`review`] wraps that in the AdmissionReview answer; [`workload`] applies the same path to manifests
//! for `meshd inject`. No I/O, no async: the webhook crate serves it.

#![forbid(unsafe_code)]

pub mod check;
mod decision;
mod fields;
mod overrides;
mod patch;
mod plan;
mod probes;
pub mod review;
pub mod selection;
mod settings;
mod sidecar;
mod wire;
pub mod workload;

pub use decision::{OTHER_MESH_CONTAINERS, PROXY_PORTS, PortConflict, SkipReason, describe_skip};
pub use fields::FieldError;
pub use overrides::{BadAnnotation, PodOverrides, Refusal, parse_overrides};
pub use plan::{InjectionPlan, Verdict, decide};
pub use review::{ReviewAnswer, ReviewResult, review};
pub use settings::{ApiServerVersion, InjectionSettings, RequestFacts};
pub use sidecar::POST_START_WAIT_COMMAND;

/// Everything that can go wrong in injection; each variant has a fixed metric label.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("the request body is not an AdmissionReview: {source}")]
    Malformed {
        #[source]
        source: fields::FieldError,
    },
    #[error("the request body is not an AdmissionReview: not JSON: {source}")]
    NotJson {
        #[source]
        source: serde_json::Error,
    },
    #[error("the AdmissionReview has no request uid to answer")]
    NoUid,
    #[error("the object of a pod CREATE cannot be read as a pod: {source}")]
    NotAPod {
        #[source]
        source: fields::FieldError,
    },
    #[error("cannot serialize the answer: {source}")]
    Serialize {
        #[source]
        source: serde_json::Error,
    },
    #[error("document {index} is not valid YAML: {source}")]
    Yaml {
        index: usize,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("document {index} ({kind} {name}): {reason}")]
    Manifest {
        index: usize,
        kind: String,
        name: String,
        reason: String,
    },
    #[error("the generated patch does not apply to {what}: {source}")]
    Patch {
        what: String,
        #[source]
        source: json_patch::PatchError,
    },
}

impl InjectError {
    /// Fixed label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Malformed { .. } | Self::NotJson { .. } => "malformed",
            Self::NoUid => "no_uid",
            Self::NotAPod { .. } => "not_a_pod",
            Self::Serialize { .. } => "serialize",
            Self::Yaml { .. } => "yaml",
            Self::Manifest { .. } => "manifest",
            Self::Patch { .. } => "patch",
        }
    }
}
