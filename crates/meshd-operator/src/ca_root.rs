//! ConfigMap `meshd-ca-root` (key `root-cert.pem`) in every namespace, as Istio's namespace controller
//! keeps `istio-ca-root-cert`: every injected pod and gateway pod mounts it, so it must exist before a
//! pod can need it. The leader watches Namespaces (metadata only) and these ConfigMaps; a new namespace
//! gets it on its watch event, a deleted or edited one is put back, and a new root bundle is written
//! everywhere. The ConfigMaps are read from the watch's store: an unchanged one costs no request.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use meshd_api::names;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// The key the agent reads (`/var/run/meshd/ca-root/root-cert.pem`).
pub const ROOT_CERT_KEY: &str = "root-cert.pem";

/// Namespaces that never run meshd workloads (Istio skips the same ones).
pub const SKIPPED_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// How many namespaces are written at once (a first start on a large cluster).
const CONCURRENCY: u16 = 8;

struct Ctx {
    client: kube::Client,
    configmaps: Store<ConfigMap>,
    root: watch::Receiver<String>,
    /// Until then an empty root is not written (the CA is being loaded): a pod that mounted an empty
    /// root would wait for the kubelet's next ConfigMap sync (a minute or more) to see the real one.
    empty_until: tokio::time::Instant,
}

/// What `meshd-ca-root` must hold in `namespace`.
pub fn desired(namespace: &str, root: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(names::CA_ROOT_CONFIGMAP.into()),
            namespace: Some(namespace.into()),
            labels: Some([(names::LABEL_MANAGED_BY.to_string(), "meshd".to_string())].into()),
            ..ObjectMeta::default()
        },
        data: Some([(ROOT_CERT_KEY.to_string(), root.to_string())].into()),
        ..ConfigMap::default()
    }
}

/// Whether `live` already carries what meshd applies (keys others added are theirs, not drift).
pub fn up_to_date(live: &ConfigMap, root: &str) -> bool {
    let label = live
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(names::LABEL_MANAGED_BY));
    let data = live.data.as_ref().and_then(|d| d.get(ROOT_CERT_KEY));
    label.map(String::as_str) == Some("meshd") && data.map(String::as_str) == Some(root)
}

async fn reconcile(ns: Arc<PartialObjectMeta<Namespace>>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = ns.name_any();
    if SKIPPED_NAMESPACES.contains(&name.as_str()) || ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Before the ConfigMaps are listed every namespace would look like it lacks one.
    if ctx.configmaps.wait_until_ready().await.is_err() {
        return Ok(Action::await_change());
    }
    let root = ctx.root.borrow().clone();
    let now = tokio::time::Instant::now();
    if root.is_empty() && now < ctx.empty_until {
        // A root arriving sooner reconciles every namespace at once.
        return Ok(Action::requeue(ctx.empty_until - now));
    }
    let key = ObjectRef::new(names::CA_ROOT_CONFIGMAP).within(&name);
    let live = ctx.configmaps.get(&key);
    if live.as_deref().is_some_and(|cm| up_to_date(cm, &root)) {
        return Ok(Action::await_change());
    }
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let params = PatchParams::apply(names::FIELD_MANAGER).force();
    let what = format!("ConfigMap {name}/{}", names::CA_ROOT_CONFIGMAP);
    api.patch(
        names::CA_ROOT_CONFIGMAP,
        &params,
        &Patch::Apply(&desired(&name, &root)),
    )
    .await
    .map_err(Error::kube("apply", &what))?;
    let why = if live.is_some() {
        "repaired"
    } else {
        "created"
    };
    tracing::info!(namespace = %name, configmap = names::CA_ROOT_CONFIGMAP, why, empty_root = root.is_empty(), "CA root ConfigMap written");
    Ok(Action::await_change())
}

fn error_policy(ns: Arc<PartialObjectMeta<Namespace>>, error: &Error, _: Arc<Ctx>) -> Action {
    tracing::warn!(namespace = %ns.name_any(), %error, "CA root ConfigMap not written; retrying in 10s");
    Action::requeue(Duration::from_secs(10))
}

/// Keeps `meshd-ca-root` in every namespace until `shutdown`; `root` carries the PEM bundle (empty until
/// the mesh CA exists: an empty `root-cert.pem` mounts fine and blocks no pod).
pub async fn run(client: kube::Client, root: watch::Receiver<String>, shutdown: CancellationToken) {
    run_with_grace(client, root, Duration::ZERO, shutdown).await;
}

/// [`run`], writing an empty root only after `grace` (the time the CA takes to load at start), so
/// that pods started meanwhile mount the real root.
pub async fn run_with_grace(
    client: kube::Client,
    root: watch::Receiver<String>,
    grace: Duration,
    shutdown: CancellationToken,
) {
    let empty_until = tokio::time::Instant::now() + grace;
    let (configmaps, writer) = reflector::store();
    let by_name =
        watcher::Config::default().fields(&format!("metadata.name={}", names::CA_ROOT_CONFIGMAP));
    let configmap_changes = watcher(Api::<ConfigMap>::all(client.clone()), by_name)
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    let (namespaces, ns_writer) = reflector::store();
    let namespace_changes = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(ns_writer)
    .touched_objects();
    let root_changes = tokio_stream::wrappers::WatchStream::new(root.clone()).map(|_| ());
    let ctx = Arc::new(Ctx {
        client,
        configmaps,
        root,
        empty_until,
    });
    let controller = Controller::for_stream(namespace_changes, namespaces)
        .with_config(Config::default().concurrency(CONCURRENCY))
        .watches_stream(configmap_changes, |cm: ConfigMap| {
            cm.meta()
                .namespace
                .as_deref()
                .map(ObjectRef::<PartialObjectMeta<Namespace>>::new)
        })
        .reconcile_all_on(root_changes)
        .graceful_shutdown_on({
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "CA root controller");
            }
        });
    tokio::select! {
        () = controller => {}
        () = shutdown.cancelled() => {}
    }
}
