//! A test-only way to make the server send config a proxy rejects, so the NACK path (sync state,
//! `/debug/syncz`, `proxy-status`, Events) can be tested against a real Envoy. Nothing in the `meshd`
//! binary installs one: a user cannot reach it.

use std::sync::{Arc, RwLock};

use envoy_types::pb::google::protobuf::Any;
use meshd_translate::ResourceType;

/// What a test installs: rewrites one resource of a type in place.
pub type Rewrite = dyn Fn(ResourceType, &mut Any) + Send + Sync;

/// The rewrite applied to every resource as it is put on the wire; none by default.
#[derive(Clone, Default)]
pub(crate) struct ResourceHook(Arc<RwLock<Option<Arc<Rewrite>>>>);

impl std::fmt::Debug for ResourceHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResourceHook")
    }
}

impl ResourceHook {
    pub(crate) fn set(&self, rewrite: Option<Arc<Rewrite>>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = rewrite;
    }

    /// `body` as it goes out: a clone, rewritten when a hook is set.
    pub(crate) fn outgoing(&self, ty: ResourceType, body: &Any) -> Any {
        let mut out = body.clone();
        let hook = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(rewrite) = hook {
            rewrite(ty, &mut out);
        }
        out
    }
}
