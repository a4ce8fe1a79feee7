//! What the mesh looks like now. Sources (the Kubernetes watches, the config directory) hand objects to
//! the [`kinds`]' reducers, which turn each into a small fact of meshd-translate's model (or an error
//! naming the object and the field); the [`Index`] keeps the facts by kind and key, shared behind `Arc`,
//! and remembers which keys changed so that translation redoes only what they touch.
//!
//! No I/O and no async here: sources and the xDS server drive it through [`SharedIndex`].

#![forbid(unsafe_code)]

mod index;
pub mod kinds;
mod reduce;

pub use index::{Index, SharedIndex};
pub use kinds::{Kind, KindVisitor, visit_kinds};
pub use reduce::{
    AuthorizationPolicyKind, ConfigKind, ConfigObject, DestinationRuleKind, EndpointSliceKind,
    GatewayKind, MeshKind, PeerAuthenticationKind, PodKind, ServiceEntryKind, ServiceKind,
    TLS_SECRET_TYPE, TlsSecretKind, VirtualServiceKind,
};

/// An object that cannot be used: its kind, namespace/name, and what is wrong (the field first).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {object}: {problem}")]
pub struct ReduceError {
    pub kind: &'static str,
    /// `namespace/name`, or `name` for cluster-scoped kinds.
    pub object: String,
    pub problem: String,
}

impl ReduceError {
    pub fn new(kind: &'static str, object: impl ToString, problem: impl Into<String>) -> Self {
        Self {
            kind,
            object: object.to_string(),
            problem: problem.into(),
        }
    }

    /// `field: problem`.
    pub fn field(
        kind: &'static str,
        object: impl ToString,
        field: impl std::fmt::Display,
        problem: impl std::fmt::Display,
    ) -> Self {
        Self::new(kind, object, format!("{field}: {problem}"))
    }
}
