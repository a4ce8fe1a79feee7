//! The reconcile loop: one Mesh → its owned objects, status and Events, via kube-runtime's Controller.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use meshd_api::mesh::GatewayStatus;
use meshd_api::{Mesh, MeshStatus, names, settings};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, WatchStream};
use tokio_util::sync::CancellationToken;

use crate::caches::{Caches, Feeds};
use crate::counts::{Counts, TALLY_INTERVAL};
use crate::desired::{self, DesiredInputs, ObjectKind, WebhookEndpoint};
use crate::events::{EventSink, MeshEvent};
use crate::metrics::Metrics;
use crate::webhook_tls::{self, TlsChange};
use crate::{Error, OperatorConfig, apply, status};

/// Requeue interval of a healthy Mesh: the certificate rotation check runs at least this often.
pub const REQUEUE: Duration = Duration::from_secs(3600);
/// How long a first reconcile waits for the count watches before it writes what it has.
const COUNTS_READY_LIMIT: Duration = Duration::from_secs(5);
/// How long a reconcile waits for the watches of owned objects to list once.
const CACHES_READY_LIMIT: Duration = Duration::from_secs(30);

pub struct Context {
    pub client: kube::Client,
    pub config: OperatorConfig,
    pub metrics: Metrics,
    pub events: Arc<dyn EventSink>,
    pub caches: Caches,
    /// The last settled apply per owned object (skips the dry run while nothing changed).
    pub memo: apply::Memo,
    /// Consecutive failures per Mesh, for the error backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        config: OperatorConfig,
        metrics: Metrics,
        events: Arc<dyn EventSink>,
        caches: Caches,
    ) -> Self {
        Self {
            client,
            config,
            metrics,
            events,
            caches,
            memo: apply::Memo::default(),
            failures: Mutex::default(),
        }
    }

    /// Connected proxies (all replicas) and injected pods of `mesh`, once the watches have listed.
    async fn counts(&self, mesh: &str) -> Counts {
        let tally = &self.caches.tally;
        tally.wait_until_ready(COUNTS_READY_LIMIT).await;
        tally.counts(mesh, Timestamp::now())
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        // A panic while holding this lock leaves only counters behind; they stay usable.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How a reconcile ended when it did not fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied; lists the writes (empty for a no-op pass).
    Applied(Vec<String>),
    /// The spec was refused; nothing applied.
    Invalid,
}

pub async fn reconcile(mesh: Arc<Mesh>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = Instant::now();
    let result = reconcile_mesh(&mesh, &ctx).await;
    let label = match &result {
        Ok(Outcome::Applied(_)) => "success",
        Ok(Outcome::Invalid) => "invalid",
        Err(_) => "error",
    };
    ctx.metrics.observe(label, start.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.failures().remove(&mesh.name_any());
    }
    result.map(|_| Action::requeue(REQUEUE))
}

/// One pass over one Mesh; public so tests can see what was written. Reads come from the caches.
pub async fn reconcile_mesh(mesh: &Mesh, ctx: &Context) -> Result<Outcome, Error> {
    let name = desired::mesh_name(mesh)?;
    if !ctx.caches.wait_until_ready(CACHES_READY_LIMIT).await {
        return Err(Error::NotSynced(CACHES_READY_LIMIT));
    }
    let reference = mesh.object_ref(&());
    let errors = settings::validate(&mesh.spec);
    if !errors.is_empty() {
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        tracing::warn!(mesh = %name, %message, "invalid Mesh spec; nothing applied");
        let counts = ctx.counts(&name).await;
        let new = status::invalid(mesh, &message, counts);
        // Counts follow the cluster even for a refused spec; the Event is for a new refusal only.
        let newly_refused = mesh.status.as_ref().map(|s| &s.conditions) != Some(&new.conditions);
        if patch_status(ctx, mesh, new).await? && newly_refused {
            let event = MeshEvent {
                warning: true,
                reason: "InvalidSpec",
                note: message,
            };
            ctx.events.publish(&reference, event).await;
        }
        return Ok(Outcome::Invalid);
    }

    let hosts = webhook_tls::serving_hosts(ctx.config.webhook_url.as_deref())?;
    let cached_secret = ctx
        .caches
        .webhook_secret
        .get(&ObjectRef::new(names::WEBHOOK_TLS_SECRET).within(names::SYSTEM_NAMESPACE));
    let (ca_bundle, tls) = webhook_tls::ensure(
        &ctx.client,
        cached_secret.as_deref(),
        &hosts,
        ctx.config.cert_validity,
        SystemTime::now(),
    )
    .await?;
    let mut written = Vec::new();
    if tls != TlsChange::Unchanged {
        written.push(format!(
            "Secret {}/{} ({tls:?})",
            names::SYSTEM_NAMESPACE,
            names::WEBHOOK_TLS_SECRET
        ));
    }
    if tls == TlsChange::Rotated {
        let note =
            "webhook serving certificate and CA rotated; caBundle carries the old and new CA"
                .to_string();
        ctx.events
            .publish(
                &reference,
                MeshEvent {
                    warning: false,
                    reason: "WebhookCertRotated",
                    note,
                },
            )
            .await;
    }

    let inputs = DesiredInputs {
        webhook: ctx
            .config
            .webhook_url
            .clone()
            .map_or(WebhookEndpoint::Service, WebhookEndpoint::Url),
        ca_bundle: ca_bundle.clone(),
        discovery_address: ctx.config.discovery_address.clone(),
    };
    let objects = desired::desired_objects(mesh, &inputs)?;
    let mut gateways = Vec::new();
    for obj in &objects {
        let applied = apply::ensure(&ctx.client, &ctx.caches, &ctx.memo, obj).await?;
        if applied.wrote {
            written.push(format!("{:?} {}", obj.kind, obj.name));
        }
        if let (ObjectKind::Deployment, Some(gateway)) = (obj.kind, &obj.gateway) {
            if applied.created {
                let note = format!(
                    "created gateway Deployment and Service {}/{gateway}",
                    obj.namespace.as_deref().unwrap_or_default()
                );
                ctx.events
                    .publish(
                        &reference,
                        MeshEvent {
                            warning: false,
                            reason: "GatewayCreated",
                            note,
                        },
                    )
                    .await;
            }
            let replicas = |path: &str| {
                applied
                    .live
                    .pointer(path)
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(0)
            };
            gateways.push(GatewayStatus {
                name: gateway.clone(),
                namespace: obj.namespace.clone().unwrap_or_default(),
                ready_replicas: i32::try_from(replicas("/status/readyReplicas")).unwrap_or(0),
                desired_replicas: i32::try_from(replicas("/spec/replicas")).unwrap_or(0),
            });
        }
    }
    written.extend(apply::prune_gateways(&ctx.client, &ctx.caches, &name, &objects).await?);

    let counts = ctx.counts(&name).await;
    let seen = status::Observed {
        gateways,
        webhook_ready: !ca_bundle.is_empty(),
        control_plane_ready: (ctx.config.control_plane_ready)(),
        connected_proxies: counts.connected_proxies,
        injected_pods: counts.injected_pods,
        mtls: (name == ctx.config.mesh)
            .then(|| ctx.config.mesh_mtls.borrow().clone())
            .flatten(),
    };
    patch_status(ctx, mesh, status::reconciled(mesh, &seen)).await?;
    if !written.is_empty() {
        let note = format!("applied {}", written.join(", "));
        tracing::info!(mesh = %name, %note, "reconciled");
        ctx.events
            .publish(
                &reference,
                MeshEvent {
                    warning: false,
                    reason: "Reconciled",
                    note,
                },
            )
            .await;
    }
    Ok(Outcome::Applied(written))
}

/// Server-side applies the status subresource (field manager meshd, which owns the whole status) when
/// it differs from the cached Mesh's; returns whether it wrote.
async fn patch_status(ctx: &Context, mesh: &Mesh, new: MeshStatus) -> Result<bool, Error> {
    if mesh.status.as_ref() == Some(&new) {
        return Ok(false);
    }
    let name = mesh.name_any();
    let api: Api<Mesh> = Api::all(ctx.client.clone());
    let params = PatchParams::apply(names::FIELD_MANAGER).force();
    let body = json!({
        "apiVersion": format!("{}/{}", names::GROUP, names::VERSION),
        "kind": "Mesh",
        "metadata": {"name": name},
        "status": new,
    });
    api.patch_status(&name, &params, &Patch::Apply(&body))
        .await
        .map_err(Error::kube("apply status", &format!("Mesh {name}")))?;
    Ok(true)
}

/// Backoff after `failures` consecutive failures: 5 s doubling, at most 5 min.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(5u64.saturating_mul(1 << failures.saturating_sub(1).min(6)))
        .min(Duration::from_secs(300))
}

/// Requeues with backoff and reports the failure (Ready=False, Event) from a spawned task.
pub fn error_policy(mesh: Arc<Mesh>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = {
        let mut map = ctx.failures();
        let n = map.entry(mesh.name_any()).or_insert(0);
        *n += 1;
        *n
    };
    let delay = backoff(failures);
    let message = format!("{error}; retrying in {}s", delay.as_secs());
    tracing::warn!(mesh = %mesh.name_any(), %message, "reconcile failed");
    tokio::spawn(report_failure(mesh, message, ctx));
    Action::requeue(delay)
}

pub async fn report_failure(mesh: Arc<Mesh>, message: String, ctx: Arc<Context>) {
    match patch_status(&ctx, &mesh, status::failed(&mesh, &message)).await {
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(mesh = %mesh.name_any(), %error, "could not record the failure in status")
        }
    }
    let event = MeshEvent {
        warning: true,
        reason: "ReconcileFailed",
        note: message,
    };
    ctx.events.publish(&mesh.object_ref(&()), event).await;
}

/// The Mesh an owned object belongs to, from its `meshd.io/owned-by-mesh` label. (`owns()` would look the
/// owner up in the child's namespace, which never matches a cluster-scoped Mesh.)
fn owner<K: Resource>(obj: K) -> Option<ObjectRef<Mesh>> {
    obj.meta()
        .labels
        .as_ref()?
        .get(names::LABEL_OWNED_BY_MESH)
        .map(|m| ObjectRef::new(m))
}

/// Runs the Controller until `shutdown` fires; `feeds` fill `ctx.caches`.
pub async fn run_controller(ctx: Arc<Context>, feeds: Feeds, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let (recount_tx, recount_rx) = mpsc::channel(64);
    let Feeds {
        configmaps,
        deployments,
        services,
        webhooks,
        webhook_secret,
        background,
    } = feeds;
    // A changed or deleted webhook Secret concerns every Mesh (their caBundles).
    let secret_changes = webhook_secret.map(|_| ());
    let controller = Controller::new(Api::<Mesh>::all(client), watcher::Config::default())
        .watches_stream(configmaps, owner)
        .watches_stream(deployments, owner)
        .watches_stream(services, owner)
        .watches_stream(webhooks, owner)
        .reconcile_all_on(secret_changes)
        .reconcile_on(ReceiverStream::new(recount_rx));
    let meshes = controller.store();
    // A changed mTLS summary (a PeerAuthentication, a pod, the Mesh's mode) concerns this replica's
    // Mesh, once it exists.
    let served = ObjectRef::<Mesh>::new(&ctx.config.mesh);
    let known = meshes.clone();
    let mtls_changes = WatchStream::from_changes(ctx.config.mesh_mtls.clone())
        .map(move |_| served.clone())
        .filter(move |mesh| futures::future::ready(known.get(mesh).is_some()));
    let controller = controller.reconcile_on(mtls_changes);
    let background = {
        let (recount_ctx, shutdown) = (ctx.clone(), shutdown.clone());
        async move {
            tokio::select! {
                _ = futures::future::join_all(background) => {}
                () = recount(meshes, recount_ctx, recount_tx) => {}
                () = shutdown.cancelled() => {}
            }
        }
    };
    let background = tokio::spawn(background);
    let mut gone: HashSet<String> = HashSet::new();
    let driver = controller
        .graceful_shutdown_on({
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        })
        .run(reconcile, error_policy, ctx)
        .for_each(move |result| {
            log_result(result, &mut gone);
            futures::future::ready(())
        });
    tokio::pin!(driver);
    tokio::select! {
        () = &mut driver => {}
        () = shutdown.cancelled() => {
            // Running reconciles get a grace period. kube-runtime's graceful shutdown never ends while the
            // Controller still waits for its first Mesh list (e.g. the CRD is missing), hence the bound.
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut driver).await.is_err() {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "Mesh controller did not stop in time; dropping it");
            }
        }
    }
    background.abort();
}

type ReconcileResult = Result<
    (ObjectRef<Mesh>, Action),
    kube::runtime::controller::Error<Error, kube::runtime::watcher::Error>,
>;

/// A deleted Mesh's owned objects still send watch events while the garbage collector removes them:
/// that is a normal deletion (info, once per Mesh), not an error.
fn log_result(result: ReconcileResult, gone: &mut HashSet<String>) {
    use kube::runtime::controller::Error as ControllerError;
    match result {
        Ok((mesh, _)) => {
            gone.remove(&mesh.name);
            tracing::debug!(mesh = %mesh.name, "reconciled");
        }
        Err(ControllerError::ObjectNotFound(mesh)) => {
            if gone.insert(mesh.name.clone()) {
                tracing::info!(mesh = %mesh.name, "Mesh deleted; the garbage collector removes what it owned");
            }
        }
        Err(error) => tracing::warn!(%error, "controller"),
    }
}

/// Every [`TALLY_INTERVAL`]: requeues each Mesh whose status counts differ from the cluster's (not
/// one whose reconciles are failing: its error backoff decides when it runs again).
async fn recount(meshes: Store<Mesh>, ctx: Arc<Context>, requeue: mpsc::Sender<ObjectRef<Mesh>>) {
    if meshes.wait_until_ready().await.is_err() {
        return;
    }
    let tally = &ctx.caches.tally;
    tally.wait_until_ready(COUNTS_READY_LIMIT).await;
    loop {
        tokio::time::sleep(TALLY_INTERVAL).await;
        let all = tally.all(Timestamp::now());
        for mesh in meshes.state() {
            let name = mesh.name_any();
            if ctx.failures().contains_key(&name) {
                continue;
            }
            let want = all.get(&name).copied().unwrap_or_default();
            let have = mesh.status.as_ref().map(|s| Counts {
                connected_proxies: s.connected_proxies,
                injected_pods: s.injected_pods,
            });
            if have != Some(want) && requeue.send(ObjectRef::new(&name)).await.is_err() {
                return;
            }
        }
    }
}

/// How long running reconciles may take to finish after shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
