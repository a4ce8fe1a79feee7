//! The app's original probes (`MESHD_APP_PROBES`, written by the webhook from the pod's Kubernetes
//! probes with named ports resolved): `{"<container>/<livez|readyz|startupz>": <probe>}`, run on
//! request the way the kubelet would have run them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use serde::Deserialize;

use crate::admin::HttpClient;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpGet {
    pub path: Option<String>,
    pub port: serde_json::Value,
    pub host: Option<String>,
    pub scheme: Option<String>,
    pub http_headers: Option<Vec<HttpHeader>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TcpSocket {
    pub port: serde_json::Value,
    pub host: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Grpc {
    pub port: i32,
    pub service: Option<String>,
}

/// One original probe: the handler fields of a Kubernetes `Probe` that the agent runs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppProbe {
    pub http_get: Option<HttpGet>,
    pub tcp_socket: Option<TcpSocket>,
    pub grpc: Option<Grpc>,
    pub timeout_seconds: Option<i32>,
}

/// All probes by `<container>/<kind>`.
#[derive(Debug, Clone, Default)]
pub struct AppProbes(BTreeMap<String, AppProbe>);

/// The answer for the kubelet: 200 or 503, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    Success(String),
    Failure(String),
}

fn port_of(key: &str, port: &serde_json::Value) -> Result<u16, String> {
    port.as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{key}: port {port} is not a number 1-65535 (named ports are resolved by the webhook)"))
}

impl AppProbes {
    /// Parses and checks the JSON; the reason naming the probe when it is bad.
    pub fn parse(json: &str) -> Result<Self, String> {
        let map: BTreeMap<String, AppProbe> =
            serde_json::from_str(json).map_err(|e| format!("not the probes JSON: {e}"))?;
        for (key, probe) in &map {
            let (_, kind) = key
                .split_once('/')
                .ok_or_else(|| format!("{key:?} is not <container>/<kind>"))?;
            if !matches!(kind, "livez" | "readyz" | "startupz") {
                return Err(format!(
                    "{key:?}: kind {kind:?} is not livez, readyz or startupz"
                ));
            }
            match (&probe.http_get, &probe.tcp_socket, &probe.grpc) {
                (Some(h), None, None) => {
                    port_of(key, &h.port)?;
                }
                (None, Some(t), None) => {
                    port_of(key, &t.port)?;
                }
                (None, None, Some(g)) => {
                    if !(1..=65535).contains(&g.port) {
                        return Err(format!("{key}: grpc port {} is not 1-65535", g.port));
                    }
                }
                _ => {
                    return Err(format!(
                        "{key:?}: needs exactly one of httpGet, tcpSocket, grpc"
                    ));
                }
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, container: &str, kind: &str) -> Option<&AppProbe> {
        self.0.get(&format!("{container}/{kind}"))
    }
}

impl AppProbe {
    fn timeout(&self) -> Duration {
        // The kubelet's default is 1 s.
        Duration::from_secs(
            u64::try_from(self.timeout_seconds.unwrap_or(1))
                .unwrap_or(1)
                .max(1),
        )
    }

    /// Runs the probe against `host` (the pod IP, as the kubelet would; 127.0.0.1 when unknown) unless
    /// the probe names its own host.
    pub(crate) async fn run(&self, pod_ip: Option<IpAddr>, client: &HttpClient) -> ProbeOutcome {
        let default_host = pod_ip
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .to_string();
        let timeout = self.timeout();
        if let Some(h) = &self.http_get {
            return http_probe(h, &default_host, timeout, client).await;
        }
        if let Some(t) = &self.tcp_socket {
            let host = t.host.clone().unwrap_or(default_host);
            let port = port_of("tcpSocket", &t.port).unwrap_or(0);
            return tcp_probe(&host, port, timeout).await;
        }
        if let Some(g) = &self.grpc {
            let port = u16::try_from(g.port).unwrap_or(0);
            let service = g.service.as_deref().unwrap_or("");
            return crate::grpc_health::probe(&bracket(&default_host), port, service, timeout)
                .await;
        }
        ProbeOutcome::Failure("the probe has no handler".into())
    }
}

async fn tcp_probe(host: &str, port: u16, timeout: Duration) -> ProbeOutcome {
    let target = format!("{}:{port}", bracket(host));
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&target)).await {
        Ok(Ok(_)) => ProbeOutcome::Success(format!("tcp {target}: connected")),
        Ok(Err(e)) => ProbeOutcome::Failure(format!("tcp {target}: {e}")),
        Err(_) => ProbeOutcome::Failure(format!("tcp {target}: no connection within {timeout:?}")),
    }
}

fn bracket(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => SocketAddr::new(host.parse().expect("just parsed"), 0)
            .to_string()
            .trim_end_matches(":0")
            .to_string(),
        _ => host.to_string(),
    }
}

async fn http_probe(
    h: &HttpGet,
    default_host: &str,
    timeout: Duration,
    client: &HttpClient,
) -> ProbeOutcome {
    let scheme = h.scheme.as_deref().unwrap_or("HTTP");
    if !scheme.eq_ignore_ascii_case("http") {
        return ProbeOutcome::Failure(format!(
            "{scheme} probes are not supported by meshd agent yet (only HTTP)"
        ));
    }
    let host = bracket(h.host.as_deref().unwrap_or(default_host));
    let port = port_of("httpGet", &h.port).unwrap_or(0);
    let path = h.path.as_deref().unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let url = format!("http://{host}:{port}{path}");
    let mut request = hyper::Request::get(&url).header("user-agent", "kube-probe/meshd");
    for header in h.http_headers.iter().flatten() {
        request = request.header(header.name.as_str(), header.value.as_str());
    }
    let request = match request.body(Empty::<Bytes>::new()) {
        Ok(r) => r,
        Err(e) => return ProbeOutcome::Failure(format!("GET {url}: bad request: {e}")),
    };
    match tokio::time::timeout(timeout, client.request(request)).await {
        Ok(Ok(response)) => {
            let status = response.status();
            // The kubelet's rule: 200 <= status < 400 is success.
            if (200..400).contains(&status.as_u16()) {
                ProbeOutcome::Success(format!("GET {url}: {status}"))
            } else {
                ProbeOutcome::Failure(format!("GET {url}: {status}"))
            }
        }
        Ok(Err(e)) => ProbeOutcome::Failure(format!("GET {url}: {e}")),
        Err(_) => ProbeOutcome::Failure(format!("GET {url}: no answer within {timeout:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhooks_json_parses() {
        let json = r#"{"app/livez":{"httpGet":{"path":"/healthz","port":8080,"scheme":"HTTP","httpHeaders":[{"name":"X-Probe","value":"1"}]},"periodSeconds":5},"app/readyz":{"tcpSocket":{"port":8080}},"db/startupz":{"grpc":{"port":9090}}}"#;
        let probes = AppProbes::parse(json).unwrap();
        let live = probes.get("app", "livez").unwrap();
        assert_eq!(
            live.http_get
                .as_ref()
                .unwrap()
                .http_headers
                .as_ref()
                .unwrap()[0]
                .name,
            "X-Probe"
        );
        assert!(probes.get("app", "readyz").unwrap().tcp_socket.is_some());
        assert!(probes.get("app", "startupz").is_none());
    }

    #[test]
    fn bad_probes_are_named() {
        for (json, needle) in [
            (r#"{"app/livez":{"httpGet":{"port":"http"}}}"#, "app/livez"),
            (r#"{"app/alive":{"tcpSocket":{"port":80}}}"#, "alive"),
            (r#"{"app":{"tcpSocket":{"port":80}}}"#, "<container>/<kind>"),
            (r#"{"app/livez":{"periodSeconds":3}}"#, "exactly one"),
        ] {
            let err = AppProbes::parse(json).unwrap_err();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }
}
