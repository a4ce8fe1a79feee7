//! Per-object checks of the traffic and security kinds: what their CRD schemas cannot check, and
//! everything they do check again, for resources that never pass an API server (file-fed, `meshd
//! validate`). Pure functions: a resource in, every problem out, each a [`FieldError`] naming the field
//! path and value (SPEC §8: `spec.http[0].route[1].destination.subset: "v3" is not …`).
//!
//! Checks that need other resources (a host or subset that does not exist, two resources claiming one
//! host) are [`references`] and [`verdicts`]: the same code for the control plane and `meshd validate`.

mod common;
mod destination_rule;
pub mod documents;
mod gateway;
pub mod gateway_credentials;
pub mod gateway_refs;
mod http_route;
mod kubernetes;
pub mod references;
mod security;
mod service_entry;
pub mod verdicts;
mod virtual_service;

use std::fmt;

pub use common::{check_regex, is_host};
pub use documents::{Checked, Document, Outcome, check_documents};

use crate::networking::{DestinationRule, Gateway, ServiceEntry, VirtualService};
use crate::security::{AuthorizationPolicy, PeerAuthentication};

/// One invalid field: where it is, what it holds, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON-style path from the object's root: `spec.http[0].route[1].weight`, map keys in brackets.
    pub path: String,
    /// The offending value as written (strings quoted); `None` when the field is missing or the problem is
    /// about the whole field.
    pub value: Option<String>,
    /// What is wrong, phrased to follow the value: `is not a duration`, `is required`.
    pub problem: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            value: None,
            problem: problem.into(),
        }
    }

    /// A problem with a string value (shown quoted).
    pub fn with_str(mut self, value: &str) -> Self {
        self.value = Some(format!("{value:?}"));
        self
    }

    /// A problem with a number or other unquoted value.
    pub fn with_value(mut self, value: impl fmt::Display) -> Self {
        self.value = Some(value.to_string());
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}: {v} {}", self.path, self.problem),
            None => write!(f, "{}: {}", self.path, self.problem),
        }
    }
}

impl std::error::Error for FieldError {}

/// A resource that can check itself.
pub trait Validate {
    /// Every problem found, in field order; empty when the resource is valid on its own.
    fn validate(&self) -> Vec<FieldError>;
}

impl Validate for VirtualService {
    fn validate(&self) -> Vec<FieldError> {
        virtual_service::virtual_service(self)
    }
}

impl Validate for DestinationRule {
    fn validate(&self) -> Vec<FieldError> {
        destination_rule::destination_rule(self)
    }
}

impl Validate for ServiceEntry {
    fn validate(&self) -> Vec<FieldError> {
        service_entry::service_entry(self)
    }
}

impl Validate for Gateway {
    fn validate(&self) -> Vec<FieldError> {
        gateway::gateway(self)
    }
}

impl Validate for PeerAuthentication {
    fn validate(&self) -> Vec<FieldError> {
        security::peer_authentication(self)
    }
}

impl Validate for AuthorizationPolicy {
    fn validate(&self) -> Vec<FieldError> {
        security::authorization_policy(self)
    }
}

/// What the cross-resource checks ([`references`], [`verdicts`]) ask of the mesh: the control plane
/// answers from what is in force, `meshd validate` from the files it was given. Hosts are FQDNs
/// (`reviews.shop.svc.cluster.local`) or ServiceEntry hosts as written.
pub trait References {
    /// A Service or ServiceEntry serves this host (a wildcard ServiceEntry host covers it too).
    fn has_host(&self, fqdn: &str) -> bool;
    /// The service port numbers of a host, if it is known.
    fn host_ports(&self, fqdn: &str) -> Option<Vec<u16>>;
    /// A DestinationRule for the host defines this subset.
    fn has_subset(&self, fqdn: &str, subset: &str) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_path_value_problem() {
        let e = FieldError::new(
            "spec.http[0].route[1].destination.subset",
            "is not a subset of any DestinationRule for reviews.shop.svc.cluster.local",
        )
        .with_str("v3");
        assert_eq!(
            e.to_string(),
            "spec.http[0].route[1].destination.subset: \"v3\" is not a subset of any DestinationRule for reviews.shop.svc.cluster.local"
        );
        assert_eq!(
            FieldError::new("spec.host", "is required").to_string(),
            "spec.host: is required"
        );
        assert_eq!(
            FieldError::new("spec.ports[0].number", "is not a port (1-65535)")
                .with_value(70000)
                .to_string(),
            "spec.ports[0].number: 70000 is not a port (1-65535)"
        );
    }
}
