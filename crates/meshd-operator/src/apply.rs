//! Apply one desired object only when the live one differs: GET, compare, server-side apply.
//! A reconcile that finds nothing changed therefore sends no write.

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use meshd_api::names;

use crate::Error;
use crate::desired::{DesiredObject, ObjectKind, is_subset};

/// The live object after `ensure`, and whether a write was needed.
pub struct Applied {
    pub live: DynamicObject,
    pub wrote: bool,
    pub created: bool,
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

pub async fn ensure(client: &kube::Client, obj: &DesiredObject) -> Result<Applied, Error> {
    let api = api(client, obj.kind, obj.namespace.as_deref());
    let what = describe(obj);
    let live = api
        .get_opt(&obj.name)
        .await
        .map_err(Error::kube("get", &what))?;
    if let Some(live) = live {
        let json = serde_json::to_value(&live).map_err(Error::SerializeObject)?;
        if is_subset(&obj.body, &json) {
            return Ok(Applied {
                live,
                wrote: false,
                created: false,
            });
        }
        tracing::info!(object = %what, "live object differs from the desired one; applying");
        let live = apply(&api, obj, &what).await?;
        return Ok(Applied {
            live,
            wrote: true,
            created: false,
        });
    }
    tracing::info!(object = %what, "creating");
    let live = apply(&api, obj, &what).await?;
    Ok(Applied {
        live,
        wrote: true,
        created: true,
    })
}

async fn apply(
    api: &Api<DynamicObject>,
    obj: &DesiredObject,
    what: &str,
) -> Result<DynamicObject, Error> {
    let params = PatchParams::apply(names::FIELD_MANAGER).force();
    api.patch(&obj.name, &params, &Patch::Apply(&obj.body))
        .await
        .map_err(Error::kube("apply", what))
}

/// Deletes the gateway Deployments and Services of `mesh` that `desired` no longer lists; returns what went.
pub async fn prune_gateways(
    client: &kube::Client,
    mesh: &str,
    desired: &[DesiredObject],
) -> Result<Vec<String>, Error> {
    let mut deleted = Vec::new();
    let selector = format!(
        "{}={mesh},{}",
        names::LABEL_OWNED_BY_MESH,
        names::LABEL_GATEWAY
    );
    for kind in [ObjectKind::Deployment, ObjectKind::Service] {
        let list = api(client, kind, None)
            .list_metadata(&ListParams::default().labels(&selector))
            .await
            .map_err(Error::kube("list", &format!("{kind:?}")))?;
        for item in list.items {
            let (Some(ns), Some(name)) = (
                item.metadata.namespace.as_deref(),
                item.metadata.name.as_deref(),
            ) else {
                continue;
            };
            let wanted = desired
                .iter()
                .any(|d| d.kind == kind && d.namespace.as_deref() == Some(ns) && d.name == name);
            if !wanted {
                let what = format!("{kind:?} {ns}/{name}");
                tracing::info!(object = %what, "gateway removed from the spec; deleting");
                match api(client, kind, Some(ns))
                    .delete(name, &DeleteParams::background())
                    .await
                {
                    Ok(_) => deleted.push(what),
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(Error::kube("delete", &what)(e)),
                }
            }
        }
    }
    Ok(deleted)
}
