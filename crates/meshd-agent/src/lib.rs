//! The sidecar agent (SPEC §2 `meshd agent`): writes the Envoy bootstrap, carries Envoy's ADS stream to
//! the control plane with the workload's token ([`xds_proxy`]), obtains the workload
//! certificate from the mesh CA and serves it to Envoy over SDS (renewed at half-life), runs Envoy as its
//! child and restarts it when it dies, answers the kubelet (`/healthz/ready` on 15021, the rewritten app
//! probes on 15020), merges Envoy's Prometheus metrics with its own, and drains Envoy on SIGTERM.

mod admin;
mod envoy;
mod error;
mod grpc_health;
mod http_probe;
mod identity;
mod metrics;
mod probes;
mod server;
mod settings;
mod socket;
mod xds_proxy;

pub use admin::Admin;
pub use error::AgentError;
pub use identity::WorkloadIdentity;
pub use probes::{AppProbe, AppProbes, ProbeOutcome};
pub use settings::{AgentFlags, AgentSettings, CaSettings, Labels, XdsTls, parse_duration};

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Why the agent stopped without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM or SIGINT: Envoy was drained first (until nothing was in flight, at most the drain
    /// duration).
    Signal,
    /// `POST /quitquitquit`.
    Quit,
}

/// Runs the agent until a signal, `/quitquitquit`, or Envoy keeps dying (the error).
pub async fn run(settings: AgentSettings) -> Result<Stopped, AgentError> {
    let bootstrap = envoy::write_bootstrap(&settings)?;
    let admin = Admin::new(settings.admin_port);
    let metrics = metrics::AgentMetrics::new();
    let stop_identity = CancellationToken::new();
    let identity = WorkloadIdentity::start(&settings, stop_identity.clone());
    let sds = identity::serve_sds(settings.sds_socket(), identity.clone()).await?;
    let xds = xds_proxy::serve(&settings).await?;
    let state = server::State::new(&settings, admin.clone(), metrics.clone(), identity.clone());
    let quit = CancellationToken::new();
    let health = server::serve_health(settings.health_listen, state.clone()).await?;
    let agent = server::serve_agent(settings.agent_listen, state.clone(), quit.clone()).await?;
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
    let _stop_identity = stop_identity.drop_guard();

    // SPEC §2: the certificate first (when the agent has a credential), then Envoy.
    let early = tokio::select! {
        () = identity.ready_for_envoy() => None,
        _ = term.recv() => Some(Stopped::Signal),
        _ = int.recv() => Some(Stopped::Signal),
        () = quit.cancelled() => Some(Stopped::Quit),
    };
    if let Some(stopped) = early {
        for task in [health, agent, sds, xds] {
            task.abort();
        }
        tracing::info!(reason = ?stopped, "agent stopped before Envoy started");
        return Ok(stopped);
    }

    let stop_envoy = CancellationToken::new();
    let mut supervisor = tokio::spawn(envoy::supervise(
        settings.clone(),
        bootstrap,
        metrics.clone(),
        stop_envoy.clone(),
    ));
    let stopped = tokio::select! {
        finished = &mut supervisor => {
            health.abort();
            agent.abort();
            sds.abort();
            xds.abort();
            return match finished {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) | Err(_) => Err(AgentError::SupervisorGone),
            };
        }
        _ = term.recv() => Stopped::Signal,
        _ = int.recv() => Stopped::Signal,
        () = quit.cancelled() => Stopped::Quit,
    };
    if stopped == Stopped::Signal {
        drain(&settings, &admin, &state).await;
    }
    stop_envoy.cancel();
    let _ = supervisor.await;
    health.abort();
    agent.abort();
    sds.abort();
    xds.abort();
    tracing::info!(reason = ?stopped, "agent stopped");
    Ok(stopped)
}

/// How often the drain looks at what Envoy has in flight.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// Graceful drain: Envoy's listeners drain (`Connection: close` and GOAWAY on every answer) while
/// in-flight requests finish. Envoy is stopped as soon as nothing is in flight (no TCP connection, no
/// HTTP request: an exited Job app leaves none), and at the latest after the drain duration.
async fn drain(settings: &AgentSettings, admin: &Admin, state: &server::State) {
    state.set_draining();
    let started = tokio::time::Instant::now();
    let bound = settings.drain_duration;
    match admin.post("/drain_listeners?graceful").await {
        Ok(_) => tracing::info!(at_most = ?bound, "draining Envoy"),
        Err(e) => {
            tracing::warn!(error = %e, "could not start Envoy's drain; waiting until nothing is in flight anyway")
        }
    }
    loop {
        let in_flight = admin.in_flight().await;
        match &in_flight {
            Ok(0) => {
                tracing::info!(after = ?started.elapsed(), "nothing in flight; stopping Envoy");
                return;
            }
            Ok(n) => tracing::debug!(in_flight = n, "connections or requests still in flight"),
            Err(e) => tracing::debug!(error = %e, "cannot read what Envoy has in flight"),
        }
        let left = bound.saturating_sub(started.elapsed());
        if left.is_zero() {
            match in_flight {
                Ok(n) => {
                    tracing::info!(in_flight = n, after = ?bound, "drain duration over; stopping Envoy")
                }
                Err(e) => {
                    tracing::warn!(error = %e, after = ?bound, "drain duration over, what Envoy has in flight unknown; stopping Envoy")
                }
            }
            return;
        }
        tokio::time::sleep(left.min(DRAIN_POLL)).await;
    }
}

fn signal(
    kind: tokio::signal::unix::SignalKind,
) -> Result<tokio::signal::unix::Signal, AgentError> {
    tokio::signal::unix::signal(kind).map_err(AgentError::Signal)
}

/// `meshd agent wait`: polls `url` until it answers 200, or fails after `timeout`.
pub async fn wait_ready(url: &str, timeout: Duration) -> Result<(), AgentError> {
    let uri: hyper::Uri = url.parse().map_err(|_| AgentError::Invalid {
        flag: "--url",
        value: url.to_string(),
        reason: "not an http:// URL".into(),
    })?;
    let client = admin::http_client();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(1), client.get(uri.clone())).await;
        let last = match attempt {
            Ok(Ok(response)) if response.status() == hyper::StatusCode::OK => return Ok(()),
            Ok(Ok(response)) => format!("status {}", response.status()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(AgentError::NotReady {
                url: url.to_string(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
