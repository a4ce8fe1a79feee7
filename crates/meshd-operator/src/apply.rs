//! Apply one desired object only when the cluster's copy differs from what applying it would give.
//!
//! The API server decides that, not meshd: a server-side-apply dry run (`dryRun=All`, field manager
//! meshd, force) returns the object as applying would leave it — fields meshd no longer sends removed,
//! defaults filled in, quantities normalised — and that is compared with the live object from the
//! Controller's cache (server-set bookkeeping ignored). Only a difference costs a real apply. A memo of
//! the last outcome per object (desired body, live resourceVersion) skips even the dry run while
//! neither side changed, so a no-op reconcile sends no request at all.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use meshd_api::names;
use serde_json::Value;

use crate::Error;
use crate::caches::Caches;
use crate::desired::{DesiredObject, ObjectKind};

/// The live object after `ensure`, and whether a write was needed.
pub struct Applied {
    pub live: Value,
    pub wrote: bool,
    pub created: bool,
}

type Key = (ObjectKind, Option<String>, String);

/// What `ensure` last established for an object: this desired body gives this resourceVersion.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Settled {
    desired: u64,
    resource_version: String,
}

/// Per-object memo of settled applies (one per leadership term: it lives in the Context).
#[derive(Default)]
pub struct Memo(Mutex<HashMap<Key, Settled>>);

impl Memo {
    fn get(&self, key: &Key) -> Option<Settled> {
        self.lock().get(key).cloned()
    }
    fn set(&self, key: Key, desired: u64, live: &Value) {
        match resource_version(live) {
            Some(rv) => {
                self.lock().insert(
                    key,
                    Settled {
                        desired,
                        resource_version: rv,
                    },
                );
            }
            None => {
                self.lock().remove(&key);
            }
        }
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Settled>> {
        // Only memo entries behind this lock: a panic elsewhere leaves them usable.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn api(client: &kube::Client, kind: ObjectKind, namespace: Option<&str>) -> Api<DynamicObject> {
    let ar = kind.api_resource();
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

fn describe(obj: &DesiredObject) -> String {
    match &obj.namespace {
        Some(ns) => format!("{:?} {ns}/{}", obj.kind, obj.name),
        None => format!("{:?} {}", obj.kind, obj.name),
    }
}

fn resource_version(obj: &Value) -> Option<String> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(String::from)
}

fn hash(body: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    body.to_string().hash(&mut h);
    h.finish()
}

/// The object as far as meshd's intent goes: what the server keeps for itself is dropped (bookkeeping,
/// timestamps, status, which the cache and a dry run may see at different moments).
pub fn comparable(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(map) = obj.as_object_mut() {
        map.remove("status");
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "managedFields",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "uid",
            "selfLink",
        ] {
            meta.remove(field);
        }
    }
    obj
}

pub async fn ensure(
    client: &kube::Client,
    caches: &Caches,
    memo: &Memo,
    obj: &DesiredObject,
) -> Result<Applied, Error> {
    let key: Key = (obj.kind, obj.namespace.clone(), obj.name.clone());
    let desired = hash(&obj.body);
    let cached = caches.live(obj.kind, obj.namespace.as_deref(), &obj.name);
    let settled = memo.get(&key);
    let unchanged = |live: &Value| {
        settled.as_ref().is_some_and(|s| {
            s.desired == desired && resource_version(live).as_ref() == Some(&s.resource_version)
        })
    };
    // Nothing changed on either side since the last pass: no request.
    if let Some(live) = cached.as_ref().filter(|l| unchanged(l)) {
        return Ok(Applied {
            live: live.clone(),
            wrote: false,
            created: false,
        });
    }
    let api = api(client, obj.kind, obj.namespace.as_deref());
    let what = describe(obj);
    let Some(live) = cached else {
        if settled.is_none() {
            tracing::info!(object = %what, "creating");
            let live = apply(&api, obj, &what, false).await?;
            memo.set(key, desired, &live);
            return Ok(Applied {
                live,
                wrote: true,
                created: true,
            });
        }
        // Applied by us, not in the cache yet: the dry run tells whether it is still there.
        return dry_run_then_apply(&api, obj, &what, memo, key, desired, None).await;
    };
    dry_run_then_apply(&api, obj, &what, memo, key, desired, Some(live)).await
}

async fn dry_run_then_apply(
    api: &Api<DynamicObject>,
    obj: &DesiredObject,
    what: &str,
    memo: &Memo,
    key: Key,
    desired: u64,
    cached: Option<Value>,
) -> Result<Applied, Error> {
    let would_be = apply(api, obj, what, true).await?;
    let settled = memo.get(&key);
    // The server's object is the one our last apply of this same body left: the cache is just behind.
    let ours = settled.as_ref().is_some_and(|s| {
        s.desired == desired && resource_version(&would_be).as_ref() == Some(&s.resource_version)
    });
    let same = cached
        .as_ref()
        .is_some_and(|live| comparable(live) == comparable(&would_be));
    if ours || same {
        let live = cached.unwrap_or(would_be);
        memo.set(key, desired, &live);
        return Ok(Applied {
            live,
            wrote: false,
            created: false,
        });
    }
    let created = cached.is_none() && resource_version(&would_be).is_none();
    if created {
        tracing::info!(object = %what, "creating");
    } else {
        tracing::info!(object = %what, "live object differs from what applying gives; applying");
    }
    let live = apply(api, obj, what, false).await?;
    memo.set(key, desired, &live);
    Ok(Applied {
        live,
        wrote: true,
        created,
    })
}

async fn apply(
    api: &Api<DynamicObject>,
    obj: &DesiredObject,
    what: &str,
    dry_run: bool,
) -> Result<Value, Error> {
    let mut params = PatchParams::apply(names::FIELD_MANAGER).force();
    params.dry_run = dry_run;
    let verb = if dry_run { "dry-run apply" } else { "apply" };
    let live = api
        .patch(&obj.name, &params, &Patch::Apply(&obj.body))
        .await
        .map_err(Error::kube(verb, what))?;
    serde_json::to_value(live).map_err(Error::SerializeObject)
}

/// Deletes the gateway Deployments and Services of `mesh` that `desired` no longer lists (found in the
/// caches); returns what went.
pub async fn prune_gateways(
    client: &kube::Client,
    caches: &Caches,
    mesh: &str,
    desired: &[DesiredObject],
) -> Result<Vec<String>, Error> {
    let mut deleted = Vec::new();
    let selector = [
        (names::LABEL_OWNED_BY_MESH, mesh),
        (names::LABEL_GATEWAY, ""),
    ];
    for kind in [ObjectKind::Deployment, ObjectKind::Service] {
        for (ns, name) in caches.labelled(kind, &selector) {
            let wanted = desired.iter().any(|d| {
                d.kind == kind && d.namespace.as_deref() == Some(ns.as_str()) && d.name == name
            });
            if wanted {
                continue;
            }
            let what = format!("{kind:?} {ns}/{name}");
            tracing::info!(object = %what, "gateway removed from the spec; deleting");
            match api(client, kind, Some(&ns))
                .delete(&name, &DeleteParams::background())
                .await
            {
                Ok(_) => deleted.push(what),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(Error::kube("delete", &what)(e)),
            }
        }
    }
    Ok(deleted)
}
