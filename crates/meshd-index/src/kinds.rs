//! The kinds meshd reads, registered in one place ([`visit_kinds`]). A kind is its Kubernetes type, the
//! fact it becomes and the reducer between them; both sources walk this list, so a kind added here is
//! watched in-cluster and read from config files alike.

use std::fmt::Debug;

use kube::Resource;
use meshd_translate::facts::{Fact, FactKind, ObjectKey};
use serde::de::DeserializeOwned;

use crate::ReduceError;

/// One kind of object meshd reads.
pub trait Kind: 'static {
    /// The object as the API server serves it.
    type Object: Resource<DynamicType = ()>
        + DeserializeOwned
        + Clone
        + Debug
        + Send
        + Sync
        + 'static;
    /// The fact it becomes.
    const FACT: FactKind;
    /// Whether objects live in a namespace (a namespaced object without one is an error).
    const NAMESPACED: bool = true;
    /// In-cluster, watch only the objects this field selector selects (Secrets: their type), so the
    /// control plane never receives what it does not use.
    const FIELD_SELECTOR: Option<&'static str> = None;

    /// The object's fact: `None` when it contributes nothing to translation (an ExternalName Service,
    /// an EndpointSlice of FQDNs), which removes a fact the object had before.
    fn reduce(object: &Self::Object, key: &ObjectKey) -> Result<Option<Fact>, ReduceError>;

    /// The fact of an object read from a config file (`file`: its path). The same as [`Kind::reduce`]
    /// unless the kind needs to know the file: where the oldest object wins, one without
    /// `creationTimestamp` is as old as its file's name says (SPEC §9).
    fn reduce_file(
        object: &Self::Object,
        key: &ObjectKey,
        file: &str,
    ) -> Result<Option<Fact>, ReduceError> {
        let _ = file;
        Self::reduce(object, key)
    }

    /// The fact of an object of this kind whose document does not decode (`error` names the field):
    /// kinds with verdicts return a rejected fact, so the object is refused on its own; the others
    /// `None`, and the object is skipped (in-cluster) or fails its file (file-fed).
    fn undecodable(error: &str) -> Option<Fact> {
        let _ = error;
        None
    }

    /// The kind's name, as in `kind:`.
    fn name() -> String {
        Self::Object::kind(&()).into_owned()
    }

    /// The API group, as in `apiVersion: <group>/<version>` (empty for the core group).
    fn group() -> String {
        Self::Object::group(&()).into_owned()
    }

    /// Where the fact is kept: namespace and name from the object's metadata.
    fn key(object: &Self::Object) -> Result<ObjectKey, ReduceError> {
        let meta = object.meta();
        let namespace = meta.namespace.clone().unwrap_or_default();
        let Some(name) = meta.name.clone().filter(|n| !n.is_empty()) else {
            let at = if namespace.is_empty() {
                "<no name>".to_string()
            } else {
                format!("{namespace}/<no name>")
            };
            return Err(ReduceError::field(
                kind_name::<Self>(),
                at,
                "metadata.name",
                "missing",
            ));
        };
        if Self::NAMESPACED && namespace.is_empty() {
            return Err(ReduceError::field(
                kind_name::<Self>(),
                &name,
                "metadata.namespace",
                "missing",
            ));
        }
        Ok(ObjectKey::new(namespace, name))
    }

    /// Key and fact together, as both sources want them.
    fn key_and_fact(object: &Self::Object) -> Result<(ObjectKey, Option<Fact>), ReduceError> {
        let key = Self::key(object)?;
        let fact = Self::reduce(object, &key)?;
        Ok((key, fact))
    }
}

/// The name errors use: the fact kind's (fixed, `'static`).
pub fn kind_name<K: Kind + ?Sized>() -> &'static str {
    K::FACT.name()
}

/// Something that does a thing per kind: the Kubernetes source starts a watch, the file source adds a
/// decoder.
pub trait KindVisitor {
    fn visit<K: Kind>(&mut self);
}

/// Every kind meshd reads, in one list.
pub fn visit_kinds(visitor: &mut impl KindVisitor) {
    visitor.visit::<crate::ServiceKind>();
    visitor.visit::<crate::EndpointSliceKind>();
    visitor.visit::<crate::PodKind>();
    visitor.visit::<crate::MeshKind>();
    visitor.visit::<crate::PeerAuthenticationKind>();
    visitor.visit::<crate::AuthorizationPolicyKind>();
    visitor.visit::<crate::VirtualServiceKind>();
    visitor.visit::<crate::DestinationRuleKind>();
    visitor.visit::<crate::ServiceEntryKind>();
    visitor.visit::<crate::GatewayKind>();
    visitor.visit::<crate::TlsSecretKind>();
}

/// The fact kinds of [`visit_kinds`]: what must have been listed once before translation is complete.
pub fn fact_kinds() -> Vec<FactKind> {
    struct Collect(Vec<FactKind>);
    impl KindVisitor for Collect {
        fn visit<K: Kind>(&mut self) {
            self.0.push(K::FACT);
        }
    }
    let mut c = Collect(Vec::new());
    visit_kinds(&mut c);
    c.0
}
