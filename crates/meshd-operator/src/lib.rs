//! The Mesh operator: desired state of a Mesh as pure functions ([`desired`]), and the kube-runtime
//! reconcile loop that applies it ([`reconcile`]), behind Lease leader election ([`leader`]).
//!
//! Entry point for `meshd controller`: either [`run`] (holds the registry borrow for its whole life), or —
//! what the controller should use, so the metrics server can share the registry —
//! `let op = Operator::new(client, config, &mut registry);` (registers the metrics and returns; the borrow
//! ends there) then `op.run(shutdown).await`. `run` returns when `shutdown` is cancelled.

pub mod apply;
pub mod desired;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod status;
pub mod webhook_tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
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
}

impl Error {
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
    /// Proxies connected to the xDS server (status.connectedProxies).
    pub connected_proxies: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// Validity of the webhook CA and serving certificate; rotated when under a third remains.
    pub cert_validity: Duration,
    /// Added: `--discovery-address`, written into gateway pods as MESHD_DISCOVERY_ADDRESS.
    pub discovery_address: String,
}

impl OperatorConfig {
    /// Defaults: in-cluster webhook Service, 1 year certificates, the in-cluster discovery address.
    pub fn new(identity: impl Into<String>) -> Self {
        Self {
            webhook_url: None,
            identity: identity.into(),
            control_plane_ready: Arc::new(|| true),
            connected_proxies: Arc::new(|| 0),
            cert_validity: Duration::from_secs(365 * 24 * 3600),
            discovery_address: meshd_api::names::DEFAULT_DISCOVERY_ADDRESS.to_string(),
        }
    }
}

pub struct Operator {
    ctx: Arc<Context>,
}

impl Operator {
    /// Registers the reconcile metrics in `registry` and builds the context; does no I/O.
    pub fn new(client: kube::Client, config: OperatorConfig, registry: &mut Registry) -> Self {
        let metrics = metrics::Metrics::register(registry);
        let events = Arc::new(events::KubeEvents::new(client.clone(), &config.identity));
        Self {
            ctx: Arc::new(Context::new(client, config, metrics, events)),
        }
    }

    /// Competes for the Lease; runs the Controller while holding it; stops on `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let elector =
            leader::Elector::new(self.ctx.client.clone(), self.ctx.config.identity.clone());
        let mut running: Option<(CancellationToken, tokio::task::JoinHandle<()>)> = None;
        let mut last_renewed: Option<Instant> = None;
        loop {
            match elector.try_acquire_or_renew().await {
                Ok(true) => {
                    last_renewed = Some(Instant::now());
                    if running.is_none() {
                        tracing::info!(identity = %self.ctx.config.identity, "leader: starting the Mesh controller");
                        let stop = shutdown.child_token();
                        let task =
                            tokio::spawn(reconcile::run_controller(self.ctx.clone(), stop.clone()));
                        running = Some((stop, task));
                        self.ctx.metrics.leader.set(1);
                    }
                }
                Ok(false) => last_renewed = None,
                Err(error) => tracing::warn!(%error, "leader election"),
            }
            let holding = last_renewed.is_some_and(|t| t.elapsed() < leader::LEASE_DURATION);
            if !holding && let Some((stop, task)) = running.take() {
                tracing::warn!("lost the lease: stopping the Mesh controller");
                stop.cancel();
                let _ = task.await;
                self.ctx.metrics.leader.set(0);
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(leader::RENEW_PERIOD) => {}
            }
        }
        if let Some((stop, task)) = running.take() {
            stop.cancel();
            let _ = task.await;
            self.ctx.metrics.leader.set(0);
            elector.release().await;
        }
        Ok(())
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
