//! The kinds with a verdict (SPEC §8, §9) → [`facts::Config`]: the spec, the object-level problems
//! ([`meshd_api::validate::Validate`]), generation and age. An invalid object still becomes a fact:
//! translation publishes its verdict and keeps its last accepted version in force.
//!
//! One generic [`Kind`], [`ConfigKind`]; a kind plugs in with one [`ConfigObject`] impl (its spec and
//! fact variant) and a line in [`crate::visit_kinds`].

use std::marker::PhantomData;
use std::sync::Arc;

use kube::Resource;
use meshd_api::networking::{DestinationRule, Gateway, ServiceEntry, VirtualService};
use meshd_api::validate::{FieldError, Validate};
use meshd_translate::facts::{Config, Fact, FactKind, ObjectKey};
use serde::de::DeserializeOwned;

use crate::ReduceError;
use crate::kinds::Kind;

/// A resource whose verdict meshd publishes: its spec and the fact that carries it.
pub trait ConfigObject:
    Resource<DynamicType = ()>
    + DeserializeOwned
    + Validate
    + Clone
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    type Spec: Clone + Default;
    const FACT: FactKind;
    fn spec(&self) -> &Self::Spec;
    fn fact(config: Arc<Config<Self::Spec>>) -> Fact;
}

/// The [`Kind`] of a [`ConfigObject`].
pub struct ConfigKind<T>(PhantomData<T>);

impl<T: ConfigObject> Kind for ConfigKind<T> {
    type Object = T;
    const FACT: FactKind = T::FACT;

    fn reduce(object: &T, _: &ObjectKey) -> Result<Option<Fact>, ReduceError> {
        let meta = object.meta();
        Ok(Some(T::fact(Arc::new(Config {
            generation: meta.generation,
            created: meta.creation_timestamp.as_ref().map(|t| t.0.as_second()),
            spec: object.spec().clone(),
            problems: object.validate(),
        }))))
    }

    /// A document of the kind that did not decode: a fact with a default spec and the decode error, so
    /// the resource is rejected (its last accepted version stays) rather than its whole file.
    fn undecodable(error: &str) -> Option<Fact> {
        Some(T::fact(Arc::new(undecodable_config(error))))
    }
}

/// The fact of a document that did not decode: a default spec and the decode error as its problem.
pub(crate) fn undecodable_config<S: Default>(error: &str) -> Config<S> {
    let (path, problem) = match error.split_once(": ") {
        Some((path, problem)) if !path.contains(' ') => (path.to_string(), problem.to_string()),
        _ => ("(document)".to_string(), error.to_string()),
    };
    Config {
        generation: None,
        created: None,
        spec: S::default(),
        problems: vec![FieldError::new(path, format!("does not parse: {problem}"))],
    }
}

macro_rules! config_object {
    ($object:ty, $spec:ty, $kind:ident) => {
        impl ConfigObject for $object {
            type Spec = $spec;
            const FACT: FactKind = FactKind::$kind;
            fn spec(&self) -> &$spec {
                &self.spec
            }
            fn fact(config: Arc<Config<$spec>>) -> Fact {
                Fact::$kind(config)
            }
        }
    };
}

use meshd_api::networking::{
    DestinationRuleSpec, GatewaySpec, ServiceEntrySpec, VirtualServiceSpec,
};

config_object!(VirtualService, VirtualServiceSpec, VirtualService);
config_object!(DestinationRule, DestinationRuleSpec, DestinationRule);
config_object!(ServiceEntry, ServiceEntrySpec, ServiceEntry);
config_object!(Gateway, GatewaySpec, Gateway);

pub type VirtualServiceKind = ConfigKind<VirtualService>;
pub type DestinationRuleKind = ConfigKind<DestinationRule>;
pub type ServiceEntryKind = ConfigKind<ServiceEntry>;
pub type GatewayKind = ConfigKind<Gateway>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_object_is_a_fact_with_its_problems() {
        let vs: VirtualService = serde_json::from_value(serde_json::json!({
            "apiVersion": "networking.meshd.io/v1alpha1", "kind": "VirtualService",
            "metadata": {"name": "r", "namespace": "shop", "generation": 3},
            "spec": {"hosts": ["reviews"], "http": [{"match": [{"uri": {"regex": "a{2000}"}}],
                     "route": [{"destination": {"host": "reviews"}}]}]},
        }))
        .unwrap();
        let key = ObjectKey::new("shop", "r");
        let Some(Fact::VirtualService(c)) = VirtualServiceKind::reduce(&vs, &key).unwrap() else {
            panic!("a VirtualService fact");
        };
        assert_eq!(c.generation, Some(3));
        assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
        assert_eq!(c.problems[0].path, "spec.http[0].match[0].uri.regex");
    }

    #[test]
    fn an_undecodable_document_is_a_rejected_fact_naming_the_field() {
        let Some(Fact::DestinationRule(c)) =
            DestinationRuleKind::undecodable("spec.subsets[0].labels: invalid type: integer")
        else {
            panic!("a DestinationRule fact");
        };
        assert_eq!(c.problems[0].path, "spec.subsets[0].labels");
        assert!(
            c.problems[0]
                .problem
                .starts_with("does not parse: invalid type")
        );
        assert_eq!(c.spec, DestinationRuleSpec::default());
    }
}
