//! A small client for Envoy's admin API on 127.0.0.1 (never exposed off the pod).

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::AgentError;

pub(crate) type HttpClient = Client<HttpConnector, Empty<Bytes>>;

pub(crate) fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Envoy's admin endpoint.
#[derive(Clone)]
pub struct Admin {
    port: u16,
    client: HttpClient,
}

const ADMIN_TIMEOUT: Duration = Duration::from_secs(3);

impl Admin {
    pub fn new(port: u16) -> Self {
        Self {
            port,
            client: http_client(),
        }
    }

    /// GET `path`; the body when the status is 200.
    pub async fn get(&self, path: &str) -> Result<String, AgentError> {
        self.call(hyper::Method::GET, path).await
    }

    pub async fn post(&self, path: &str) -> Result<String, AgentError> {
        self.call(hyper::Method::POST, path).await
    }

    async fn call(&self, method: hyper::Method, path: &str) -> Result<String, AgentError> {
        let fail = |reason: String| AgentError::Admin {
            path: path.to_string(),
            reason,
        };
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{}{path}", self.port))
            .body(Empty::new())
            .map_err(|e| fail(e.to_string()))?;
        let response = tokio::time::timeout(ADMIN_TIMEOUT, async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| fail(e.to_string()))?
                .to_bytes();
            Ok::<_, AgentError>((status, body))
        })
        .await
        .map_err(|_| fail(format!("no answer within {ADMIN_TIMEOUT:?}")))??;
        let (status, body) = response;
        let text = String::from_utf8_lossy(&body).into_owned();
        if status != hyper::StatusCode::OK {
            return Err(fail(format!("status {status}: {}", text.trim())));
        }
        Ok(text)
    }

    /// Ready means: the server is LIVE and has accepted listeners and clusters from the control plane;
    /// for a gateway (SPEC §10) also that it has at least one active listener (a Gateway selects it)
    /// and none warming (a listener whose certificate has not arrived over SDS stays warming). The
    /// reason when not.
    pub async fn ready(&self, gateway: bool) -> Result<(), String> {
        let state = self.get("/ready").await.map_err(|e| e.to_string())?;
        if state.trim() != "LIVE" {
            return Err(format!("Envoy is {}", state.trim()));
        }
        let stats = self
            .get("/stats?filter=^(listener_manager\\.lds|cluster_manager\\.cds)\\.update_success$")
            .await
            .map_err(|e| e.to_string())?;
        for name in [
            "listener_manager.lds.update_success",
            "cluster_manager.cds.update_success",
        ] {
            if stat_value(&stats, name) == 0 {
                return Err(format!("{name} is 0: no config from the control plane yet"));
            }
        }
        if gateway {
            let stats = self
                .get("/stats?filter=^listener_manager\\.total_listeners_warming$")
                .await
                .map_err(|e| e.to_string())?;
            let active = self.get("/listeners").await.map_err(|e| e.to_string())?;
            gateway_listeners(&stats, &active)?;
        }
        Ok(())
    }

    /// How many TCP connections and HTTP requests Envoy has in flight (see [`in_flight`]).
    pub async fn in_flight(&self) -> Result<u64, AgentError> {
        let stats = self.get("/stats?filter=downstream_(cx|rq)_active$").await?;
        Ok(in_flight(&stats))
    }
}

/// What Envoy has in flight, from `downstream_(cx|rq)_active` gauges: connections that are not HTTP
/// (TCP proxy), plus HTTP requests in progress. An idle HTTP keep-alive connection is not in flight:
/// stopping Envoy closes it, as a graceful HTTP server shutdown does. The admin listener (the agent's
/// own calls) and the per-worker copies of the listener gauges are left out.
pub(crate) fn in_flight(stats: &str) -> u64 {
    let (mut connections, mut http_connections, mut http_requests) = (0u64, 0u64, 0u64);
    for (name, value) in stats.lines().filter_map(|l| l.split_once(": ")) {
        let Ok(value) = value.trim().parse::<u64>() else {
            continue;
        };
        if name.starts_with("listener.admin.") || name.starts_with("http.admin.") {
            continue;
        }
        if let Some(listener) = name.strip_prefix("listener.") {
            let per_worker = listener.split('.').any(|part| part.starts_with("worker_"));
            if listener.ends_with(".downstream_cx_active") && !per_worker {
                connections += value;
            }
        } else if name.starts_with("http.") {
            if name.ends_with(".downstream_cx_active") {
                http_connections += value;
            } else if name.ends_with(".downstream_rq_active") {
                http_requests += value;
            }
        }
    }
    connections.saturating_sub(http_connections) + http_requests
}

/// A gateway's listeners: ready with at least one active listener from the control plane (`/listeners`
/// lists the active ones as `name::address`; the bootstrap's stats listener does not count) and none
/// warming (`/stats`).
pub(crate) fn gateway_listeners(stats: &str, active: &str) -> Result<(), String> {
    let active = active
        .lines()
        .filter_map(|l| l.split_once("::"))
        .filter(|(name, _)| *name != meshd_translate::STATS_LISTENER)
        .count();
    let warming = stat_value(stats, "listener_manager.total_listeners_warming");
    if warming > 0 {
        return Err(format!(
            "{warming} gateway listener(s) warming: a certificate (SDS) or route not loaded yet"
        ));
    }
    if active == 0 {
        return Err("no active gateway listener: no Gateway selects this pod yet".into());
    }
    Ok(())
}

/// A counter's value in `/stats` text output, 0 when absent.
pub(crate) fn stat_value(stats: &str, name: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn stat_values_are_found_by_exact_name() {
        let text =
            "cluster_manager.cds.update_success: 3\nlistener_manager.lds.update_success_x: 9\n";
        assert_eq!(
            super::stat_value(text, "cluster_manager.cds.update_success"),
            3
        );
        assert_eq!(
            super::stat_value(text, "listener_manager.lds.update_success"),
            0
        );
    }

    #[test]
    fn a_gateway_is_ready_with_an_active_listener_and_none_warming() {
        let stats = |warming: u64| format!("listener_manager.total_listeners_warming: {warming}\n");
        // As Envoy 1.40's /listeners lists them: the bootstrap's stats listener is always there.
        let bootstrap = "prometheus_stats::0.0.0.0:15090\n";
        let selected = "prometheus_stats::0.0.0.0:15090\n0.0.0.0_8443::0.0.0.0:8443\n";
        assert_eq!(super::gateway_listeners(&stats(0), selected), Ok(()));
        let warming = super::gateway_listeners(&stats(1), selected).unwrap_err();
        assert!(
            warming.contains("1 gateway listener(s) warming"),
            "{warming}"
        );
        let none = super::gateway_listeners(&stats(0), bootstrap).unwrap_err();
        assert!(none.contains("no Gateway selects"), "{none}");
        assert!(super::gateway_listeners("", "").is_err());
    }

    #[test]
    fn in_flight_counts_tcp_connections_and_http_requests() {
        // As Envoy 1.40 lists them: one idle HTTP keep-alive connection on 15001, one TCP proxy
        // connection on 15006, the agent's own admin calls.
        let idle = "http.admin.downstream_cx_active: 3\n\
            http.admin.downstream_rq_active: 1\n\
            http.outbound|80||alpha.demo.svc.cluster.local.downstream_cx_active: 1\n\
            http.outbound|80||alpha.demo.svc.cluster.local.downstream_rq_active: 0\n\
            http.stats.downstream_cx_active: 0\n\
            listener.0.0.0.0_15001.downstream_cx_active: 1\n\
            listener.0.0.0.0_15001.worker_0.downstream_cx_active: 1\n\
            listener.0.0.0.0_15006.downstream_cx_active: 0\n\
            listener.admin.downstream_cx_active: 3\n\
            listener.admin.main_thread.downstream_cx_active: 3\n";
        assert_eq!(super::in_flight(idle), 0, "an idle keep-alive connection");
        let busy = idle
            .replace(
                "local.downstream_rq_active: 0",
                "local.downstream_rq_active: 1",
            )
            .replace(
                "15006.downstream_cx_active: 0",
                "15006.downstream_cx_active: 1",
            );
        assert_eq!(
            super::in_flight(&busy),
            2,
            "one request, one TCP connection"
        );
        assert_eq!(super::in_flight(""), 0);
    }
}
