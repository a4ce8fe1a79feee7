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

    /// Ready means: the server is LIVE and has accepted listeners and clusters from the control plane.
    /// The reason when not.
    pub async fn ready(&self) -> Result<(), String> {
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
        Ok(())
    }
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
}
