//! The Mesh operator: desired state of a Mesh as pure functions ([`desired`]), and the kube-runtime
//! reconcile loop that applies it ([`reconcile`]), behind Lease leader election ([`leader`]). The
//! leader also keeps ConfigMap `meshd-ca-root` in every namespace ([`ca_root`]); every replica publishes
//! its connected proxies for the leader to sum into the Mesh status ([`counts`]).
//!
//! Entry point for `meshd controller`: either [`run`] (holds the registry borrow for its whole life), or —
//! what the controller should use, so the metrics server can share the registry —
//! `let op = Operator::new(client, config, &mut registry);` (registers the metrics and returns; the borrow
//! ends there) then `op.run(shutdown).await`. `run` returns when `shutdown` is cancelled.

#![forbid(unsafe_code)]

pub mod apply;
pub mod ca_root;
pub mod caches;
pub mod counts;
pub mod desired;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod namespace;
pub mod proxy_events;
pub mod reconcile;
pub mod status;
pub mod verdicts;
pub mod webhook_tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use reconcile::Context;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{verb} {resource}: {source}")]
    Kube {
        verb: &'static str,
        resource: String,
        #[source]
        source: kube::Error,
    },
    #[error("the Mesh has no metadata.name")]
    MissingName,
    #[error("Mesh {0:?} has no metadata.uid (owner references need it)")]
    MissingUid(String),
    #[error("cannot write the resolved mesh settings as YAML: {0}")]
    SerializeSettings(#[source] serde_yaml::Error),
    #[error("cannot serialize an object: {0}")]
    SerializeObject(#[source] serde_json::Error),
    #[error("--webhook-url {0:?}: expected https://HOST[:PORT]/PATH")]
    WebhookUrl(String),
    #[error("cannot issue the webhook certificate: {0}")]
    Certificate(#[source] rcgen::Error),
    #[error("the watches of owned objects have not listed within {0:?} (are list/watch allowed?)")]
    NotSynced(Duration),
}

impl Error {
    /// A 404 from the API server (e.g. namespace meshd-system does not exist).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Kube { source: kube::Error::Api(s), .. } if s.code == 404)
    }

    pub(crate) fn kube(
        verb: &'static str,
        resource: &str,
    ) -> impl FnOnce(kube::Error) -> Error + use<> {
        let resource = resource.to_string();
        move |source| Error::Kube {
            verb,
            resource,
            source,
        }
    }
}

/// What the controller wiring supplies.
#[derive(Clone)]
pub struct OperatorConfig {
    /// `--webhook-url`: register the webhook by URL instead of Service meshd/meshd-system.
    pub webhook_url: Option<String>,
    /// Lease holder identity and Event reporter instance: the pod name.
    pub identity: String,
    /// Whether the xDS server is serving (ControlPlaneReady).
    pub control_plane_ready: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Proxies connected to this replica's xDS server; published for the leader to sum into
    /// status.connectedProxies.
    pub connected_proxies: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// `--mesh`: the Mesh this replica's proxies belong to.
    pub mesh: String,
    /// The mesh root CA bundle (PEM) written into every namespace's `meshd-ca-root`; empty until the CA
    /// exists.
    pub ca_root: watch::Receiver<String>,
    /// How long the leader waits for a non-empty `ca_root` before it writes an empty one.
    pub ca_root_grace: Duration,
    /// Validity of the webhook CA and serving certificate; rotated when under a third remains.
    pub cert_validity: Duration,
    /// Added: `--discovery-address`, written into gateway pods as MESHD_DISCOVERY_ADDRESS.
    pub discovery_address: String,
    /// `status.mtls` of Mesh `mesh` as the xDS server compiled it (SPEC §9); a change reconciles
    /// that Mesh. `None` until known.
    pub mesh_mtls: watch::Receiver<Option<meshd_api::security::MeshMtlsStatus>>,
}

impl OperatorConfig {
    /// Defaults: in-cluster webhook Service, 1 year certificates, the in-cluster discovery address.
    pub fn new(identity: impl Into<String>) -> Self {
        Self {
            webhook_url: None,
            identity: identity.into(),
            control_plane_ready: Arc::new(|| true),
            connected_proxies: Arc::new(|| 0),
            mesh: meshd_api::names::DEFAULT_MESH.to_string(),
            ca_root: watch::channel(String::new()).1,
            ca_root_grace: Duration::ZERO,
            cert_validity: Duration::from_secs(365 * 24 * 3600),
            discovery_address: meshd_api::names::DEFAULT_DISCOVERY_ADDRESS.to_string(),
            mesh_mtls: watch::channel(None).1,
        }
    }
}

pub struct Operator {
    client: kube::Client,
    config: OperatorConfig,
    metrics: metrics::Metrics,
    events: Arc<dyn events::EventSink>,
    /// Whether this replica holds the Lease now (the CA's creation waits for it).
    leading: watch::Sender<bool>,
}

impl Operator {
    /// Registers the reconcile metrics in `registry`; does no I/O.
    pub fn new(client: kube::Client, config: OperatorConfig, registry: &mut Registry) -> Self {
        let metrics = metrics::Metrics::register(registry);
        let events = Arc::new(events::KubeEvents::new(client.clone(), &config.identity));
        Self {
            client,
            config,
            metrics,
            events,
            leading: watch::channel(false).0,
        }
    }

    /// Whether this replica leads, as it changes: the mesh CA Secret is created only by the leader.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Publishes this replica's proxy count; competes for the Lease; while holding it runs the Mesh
    /// controller and the CA root controller; stops on `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let publisher = tokio::spawn(counts::publish(
            self.client.clone(),
            self.config.identity.clone(),
            self.config.mesh.clone(),
            self.config.connected_proxies.clone(),
            shutdown.child_token(),
        ));
        let elector = leader::Elector::new(self.client.clone(), self.config.identity.clone());
        let mut system_namespace = namespace::SystemNamespace::default();
        let mut running: Option<(CancellationToken, tokio::task::JoinHandle<()>)> = None;
        let mut last_renewed: Option<Instant> = None;
        loop {
            let mut wait = leader::RENEW_PERIOD;
            if let Err(retry) = system_namespace.ensure(&self.client).await {
                wait = retry;
            } else {
                match elector.try_acquire_or_renew().await {
                    Ok(true) => {
                        last_renewed = Some(Instant::now());
                        if running.is_none() {
                            tracing::info!(identity = %self.config.identity, "leader: starting the Mesh controller");
                            let stop = shutdown.child_token();
                            let task = tokio::spawn(self.lead(stop.clone()));
                            running = Some((stop, task));
                            self.metrics.leader.set(1);
                            self.leading.send_replace(true);
                        }
                    }
                    Ok(false) => last_renewed = None,
                    Err(error) => {
                        if error.is_not_found() {
                            // The namespace went away under us: create it again before the next try.
                            system_namespace = namespace::SystemNamespace::default();
                        }
                        tracing::warn!(%error, "leader election");
                    }
                }
            }
            let holding = last_renewed.is_some_and(|t| t.elapsed() < leader::LEASE_DURATION);
            if !holding && let Some((stop, task)) = running.take() {
                tracing::warn!("lost the lease: stopping the Mesh controller");
                stop.cancel();
                let _ = task.await;
                self.metrics.leader.set(0);
                self.leading.send_replace(false);
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        if let Some((stop, task)) = running.take() {
            stop.cancel();
            let _ = task.await;
            self.metrics.leader.set(0);
            self.leading.send_replace(false);
            elector.release().await;
        }
        let _ = publisher.await;
        Ok(())
    }

    /// What the leader runs: the Mesh controller (with its caches) and the CA root controller.
    fn lead(&self, stop: CancellationToken) -> impl Future<Output = ()> + Send + 'static {
        let (caches, feeds) = caches::Caches::watch(&self.client);
        let ctx = Arc::new(Context::new(
            self.client.clone(),
            self.config.clone(),
            self.metrics.clone(),
            self.events.clone(),
            caches,
        ));
        let ca_root = ca_root::run_with_grace(
            self.client.clone(),
            self.config.ca_root.clone(),
            self.config.ca_root_grace,
            stop.clone(),
        );
        async move {
            futures::join!(reconcile::run_controller(ctx, feeds, stop), ca_root);
        }
    }
}

/// Registers the metrics and runs the operator until `shutdown`; see the module docs for the split form.
pub async fn run(
    client: kube::Client,
    config: OperatorConfig,
    registry: &mut Registry,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    Operator::new(client, config, registry).run(shutdown).await
}
