//! PeerAuthentication and AuthorizationPolicy → their facts ([`Config`]s of what translation reads),
//! with the problems `meshd validate` finds: an invalid policy is still a fact, so that its verdict is
//! published (`Accepted=False`) and its last good version stays in force.

use std::sync::Arc;

use kube::Resource;
use meshd_api::security::{AuthorizationPolicy, PeerAuthentication};
use meshd_api::validate::Validate;
use meshd_translate::facts::{self, Age, Config, Fact, FactKind, ObjectKey};

use crate::ReduceError;
use crate::kinds::Kind;
use crate::reduce::config::undecodable_config;

pub struct PeerAuthenticationKind;
pub struct AuthorizationPolicyKind;

/// `spec` with the object's generation, age and problems.
fn config<T>(object: &(impl Resource + Validate), spec: T) -> Arc<Config<T>> {
    let meta = object.meta();
    Arc::new(Config {
        generation: meta.generation,
        created: meta.creation_timestamp.as_ref().map(|t| t.0.as_second()),
        spec,
        problems: object.validate(),
    })
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
    file: Option<&str>,
) -> Result<Option<Fact>, ReduceError> {
    let spec = &pa.spec;
    let mode = |m: &Option<meshd_api::security::peer_authentication::PeerMtls>| {
        m.as_ref().and_then(|m| m.mode).unwrap_or_default()
    };
    // A key that is not a port number is a problem of the object (which is then not in force).
    let ports = spec
        .port_level_mtls
        .iter()
        .filter_map(|(k, m)| Some((k.parse::<u16>().ok()?, m.mode.unwrap_or_default())))
        .collect();
    Ok(Some(Fact::PeerAuthentication(config(
        pa,
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

    fn reduce(pa: &PeerAuthentication, _: &ObjectKey) -> Result<Option<Fact>, ReduceError> {
        peer_authentication(pa, None)
    }

    /// File-fed, a policy without `creationTimestamp` is as old as its file's name says.
    fn reduce_file(
        pa: &PeerAuthentication,
        _: &ObjectKey,
        file: &str,
    ) -> Result<Option<Fact>, ReduceError> {
        peer_authentication(pa, Some(file))
    }

    fn undecodable(error: &str) -> Option<Fact> {
        Some(Fact::PeerAuthentication(Arc::new(undecodable_config(
            error,
        ))))
    }
}

impl Kind for AuthorizationPolicyKind {
    type Object = AuthorizationPolicy;
    const FACT: FactKind = FactKind::AuthorizationPolicy;

    fn reduce(ap: &AuthorizationPolicy, _: &ObjectKey) -> Result<Option<Fact>, ReduceError> {
        let spec = &ap.spec;
        // CUSTOM and targetRef are problems of the object: such a policy is never in force.
        let action = spec.action.unwrap_or_default();
        Ok(Some(Fact::AuthorizationPolicy(config(
            ap,
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

    fn undecodable(error: &str) -> Option<Fact> {
        Some(Fact::AuthorizationPolicy(Arc::new(undecodable_config(
            error,
        ))))
    }
}
