//! The two HTTP servers: health (15021, for the kubelet's readiness/startup probe of the proxy) and
//! the agent port (15020: app probes, merged metrics, `/quitquitquit`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{ConnectInfo, Path, State as Extract};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::Admin;
use crate::metrics::{AgentMetrics, ProbeLabels};
use crate::probes::{AppProbes, ProbeOutcome, is_hook};
use crate::{AgentError, AgentSettings, WorkloadIdentity};

#[derive(Clone)]
pub(crate) struct State(Arc<Inner>);

struct Inner {
    admin: Admin,
    metrics: AgentMetrics,
    probes: AppProbes,
    pod_ip: Option<IpAddr>,
    draining: AtomicBool,
    identity: WorkloadIdentity,
    /// A gateway pod (`--gateway`): ready only with its listeners active (SPEC §10).
    gateway: bool,
}

impl State {
    pub fn new(
        s: &AgentSettings,
        admin: Admin,
        metrics: AgentMetrics,
        identity: WorkloadIdentity,
    ) -> Self {
        Self(Arc::new(Inner {
            admin,
            metrics,
            probes: s.app_probes.clone(),
            pod_ip: s.pod_ip,
            draining: AtomicBool::new(false),
            identity,
            gateway: s.gateway.is_some(),
        }))
    }

    pub fn set_draining(&self) {
        self.0.draining.store(true, Ordering::Relaxed);
    }
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, AgentError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AgentError::Listen { addr, source })
}

fn spawn(listener: tokio::net::TcpListener, app: Router) -> JoinHandle<()> {
    tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "agent HTTP server stopped");
        }
    })
}

pub(crate) async fn serve_health(
    addr: SocketAddr,
    state: State,
) -> Result<JoinHandle<()>, AgentError> {
    let listener = bind(addr).await?;
    tracing::info!(%addr, "health on /healthz/ready");
    Ok(spawn(
        listener,
        Router::new()
            .route("/healthz/ready", get(ready))
            .with_state(state),
    ))
}

pub(crate) async fn serve_agent(
    addr: SocketAddr,
    state: State,
    quit: CancellationToken,
) -> Result<JoinHandle<()>, AgentError> {
    let listener = bind(addr).await?;
    tracing::info!(%addr, "app probes, metrics and /quitquitquit");
    let app = Router::new()
        .route("/app-health/{container}/{kind}", get(app_health))
        .route("/stats/prometheus", get(prometheus))
        .with_state(state)
        .route(
            "/quitquitquit",
            post(move |ConnectInfo(peer): ConnectInfo<SocketAddr>| {
                // 15020 is reachable from the pod network (the kubelet's probes); only the pod
                // itself may stop the proxy.
                let allowed = peer.ip().is_loopback();
                if allowed {
                    tracing::info!(%peer, "/quitquitquit: stopping");
                    quit.cancel();
                } else {
                    tracing::warn!(%peer, "/quitquitquit refused: not from localhost");
                }
                async move {
                    if allowed {
                        (StatusCode::OK, "stopping\n")
                    } else {
                        (StatusCode::FORBIDDEN, "only from localhost\n")
                    }
                }
            }),
        );
    Ok(spawn(listener, app))
}

async fn ready(Extract(state): Extract<State>) -> impl IntoResponse {
    if state.0.draining.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n".to_string());
    }
    if let Err(reason) = state.0.identity.readiness() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n"));
    }
    match state.0.admin.ready(state.0.gateway).await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

async fn app_health(
    Extract(state): Extract<State>,
    Path((container, kind)): Path<(String, String)>,
) -> impl IntoResponse {
    let Some((probe, timeout)) = state.0.probes.get(&container, &kind) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no {kind} probe or hook for container {container:?}\n"),
        );
    };
    let outcome = probe.run(state.0.pod_ip, timeout).await;
    let name = format!("{container}/{kind}");
    let (status, result, text) = match outcome {
        ProbeOutcome::Success(t) => (StatusCode::OK, "success", t),
        ProbeOutcome::Failure(t) => (StatusCode::SERVICE_UNAVAILABLE, "failure", t),
    };
    state
        .0
        .metrics
        .probes
        .get_or_create(&ProbeLabels {
            probe: name.clone(),
            result,
        })
        .inc();
    if is_hook(&kind) {
        // Hooks run once per container start or stop: worth a line either way.
        tracing::info!(hook = %name, result, detail = %text, "app lifecycle hook ran");
    } else if status != StatusCode::OK {
        tracing::info!(probe = %name, reason = %text, "app probe failed");
    }
    (status, format!("{text}\n"))
}

/// Envoy's metrics then the agent's; when Envoy does not answer, the agent's alone with 503 so a
/// scrape shows the gap instead of silently losing Envoy's series.
async fn prometheus(Extract(state): Extract<State>) -> impl IntoResponse {
    let ours = state.0.metrics.encode();
    let content_type = [("content-type", "text/plain; version=0.0.4; charset=utf-8")];
    match state.0.admin.get("/stats/prometheus").await {
        Ok(envoy) => {
            let sep = if envoy.is_empty() || envoy.ends_with('\n') {
                ""
            } else {
                "\n"
            };
            (StatusCode::OK, content_type, format!("{envoy}{sep}{ours}"))
        }
        Err(e) => {
            tracing::warn!(error = %e, "Envoy's stats are not available");
            (StatusCode::SERVICE_UNAVAILABLE, content_type, ours)
        }
    }
}
