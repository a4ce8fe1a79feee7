//! PeerAuthentication and AuthorizationPolicy → their facts, checked as `meshd validate` checks them:
//! an invalid policy is not used (its last good version stays in force).

use std::sync::Arc;

use kube::Resource;
use meshd_api::security::{AuthorizationPolicy, PeerAuthentication};
use meshd_api::validate::Validate;
use meshd_translate::facts::{self, Age, Fact, FactKind, ObjectKey};

use crate::ReduceError;
use crate::kinds::Kind;

pub struct PeerAuthenticationKind;
pub struct AuthorizationPolicyKind;

/// Every field problem, or nothing.
fn checked(kind: &'static str, key: &ObjectKey, object: &impl Validate) -> Result<(), ReduceError> {
    let errors = object.validate();
    if errors.is_empty() {
        return Ok(());
    }
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Err(ReduceError::new(kind, key, errors.join("; ")))
}

fn age(object: &impl Resource, file: Option<&str>) -> Age {
    match &object.meta().creation_timestamp {
        Some(t) => Age {
            untimed: false,
            created: t.0.as_second(),
            file: String::new(),
        },
        None => Age {
            untimed: true,
            created: 0,
            file: file.unwrap_or_default().to_string(),
        },
    }
}

fn peer_authentication(
    pa: &PeerAuthentication,
    key: &ObjectKey,
    file: Option<&str>,
) -> Result<Option<Fact>, ReduceError> {
    checked("PeerAuthentication", key, pa)?;
    let spec = &pa.spec;
    let mode = |m: &Option<meshd_api::security::peer_authentication::PeerMtls>| {
        m.as_ref().and_then(|m| m.mode).unwrap_or_default()
    };
    // Validation has checked every key is a port number.
    let ports = spec
        .port_level_mtls
        .iter()
        .filter_map(|(k, m)| Some((k.parse::<u16>().ok()?, m.mode.unwrap_or_default())))
        .collect();
    Ok(Some(Fact::PeerAuthentication(Arc::new(
        facts::PeerAuthentication {
            selector: spec
                .selector
                .as_ref()
                .map(|s| s.match_labels.clone())
                .unwrap_or_default(),
            mode: mode(&spec.mtls),
            ports,
            age: age(pa, file),
        },
    ))))
}

impl Kind for PeerAuthenticationKind {
    type Object = PeerAuthentication;
    const FACT: FactKind = FactKind::PeerAuthentication;

    fn reduce(pa: &PeerAuthentication, key: &ObjectKey) -> Result<Option<Fact>, ReduceError> {
        peer_authentication(pa, key, None)
    }

    /// File-fed, a policy without `creationTimestamp` is as old as its file's name says.
    fn reduce_file(
        pa: &PeerAuthentication,
        key: &ObjectKey,
        file: &str,
    ) -> Result<Option<Fact>, ReduceError> {
        peer_authentication(pa, key, Some(file))
    }
}

impl Kind for AuthorizationPolicyKind {
    type Object = AuthorizationPolicy;
    const FACT: FactKind = FactKind::AuthorizationPolicy;

    fn reduce(ap: &AuthorizationPolicy, key: &ObjectKey) -> Result<Option<Fact>, ReduceError> {
        checked("AuthorizationPolicy", key, ap)?;
        let spec = &ap.spec;
        // CUSTOM and targetRef are refused by the validation above.
        let action = spec.action.unwrap_or_default();
        Ok(Some(Fact::AuthorizationPolicy(Arc::new(
            facts::AuthorizationPolicy {
                selector: spec
                    .selector
                    .as_ref()
                    .map(|s| s.match_labels.clone())
                    .unwrap_or_default(),
                action,
                rules: spec.rules.clone(),
            },
        ))))
    }
}
