//! The app's original probes and hooks (`MESHD_APP_PROBES`, written by the webhook from the pod's
//! Kubernetes probes and `httpGet`/`tcpSocket` lifecycle hooks, named ports resolved):
//! `{"<container>/<kind>": <handler>}` with kind `livez`, `readyz`, `startupz`, `poststart` or
//! `prestop`. Each request to `/app-health/<container>/<kind>` runs the handler once, the way the
//! kubelet would have run it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

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

/// One original probe or hook: the handler fields of a Kubernetes `Probe` (or `LifecycleHandler`) that
/// the agent runs, and the timeout.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppProbe {
    pub http_get: Option<HttpGet>,
    pub tcp_socket: Option<TcpSocket>,
    pub grpc: Option<Grpc>,
    pub timeout_seconds: Option<i32>,
}

/// The probe kinds (`timeoutSeconds` defaults to the kubelet's 1 s).
const PROBE_KINDS: [&str; 3] = ["livez", "readyz", "startupz"];
/// The lifecycle hook kinds: `httpGet` or `tcpSocket` only, as Kubernetes has no gRPC hook.
const HOOK_KINDS: [&str; 2] = ["poststart", "prestop"];
/// A hook without `timeoutSeconds` gets the pod's default grace period, the kubelet's own bound on a
/// preStop hook (the kubelet gives hooks no timeout of their own).
const HOOK_DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Is `kind` a lifecycle hook (not a probe)?
pub(crate) fn is_hook(kind: &str) -> bool {
    HOOK_KINDS.contains(&kind)
}

/// All probes and hooks by `<container>/<kind>`.
#[derive(Debug, Clone, Default)]
pub struct AppProbes(BTreeMap<String, AppProbe>);

/// The answer for the kubelet: 200 or 503, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    Success(String),
    Failure(String),
}

pub(crate) fn port_of(key: &str, port: &serde_json::Value) -> Result<u16, String> {
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
            let hook = is_hook(kind);
            if !hook && !PROBE_KINDS.contains(&kind) {
                return Err(format!(
                    "{key:?}: kind {kind:?} is not livez, readyz, startupz, poststart or prestop"
                ));
            }
            if hook && probe.grpc.is_some() {
                return Err(format!(
                    "{key:?}: grpc is not a lifecycle hook handler (only httpGet or tcpSocket)"
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

    /// The probe or hook and the timeout it runs with.
    pub fn get(&self, container: &str, kind: &str) -> Option<(&AppProbe, Duration)> {
        let probe = self.0.get(&format!("{container}/{kind}"))?;
        let timeout = match probe.timeout_seconds {
            Some(s) => Duration::from_secs(u64::try_from(s).unwrap_or(1).max(1)),
            None if is_hook(kind) => HOOK_DEFAULT_TIMEOUT,
            None => Duration::from_secs(1),
        };
        Some((probe, timeout))
    }
}

impl AppProbe {
    /// Runs the handler once against the pod IP (as the kubelet would; 127.0.0.1 when unknown) unless
    /// it names its own host, within `timeout`.
    pub async fn run(&self, pod_ip: Option<IpAddr>, timeout: Duration) -> ProbeOutcome {
        let default_host = pod_ip
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .to_string();
        if let Some(h) = &self.http_get {
            return crate::http_probe::probe(h, &default_host, pod_ip, timeout).await;
        }
        if let Some(t) = &self.tcp_socket {
            let host = t.host.clone().unwrap_or(default_host);
            let port = port_of("tcpSocket", &t.port).unwrap_or(0);
            return tcp_probe(&host, port, pod_ip, timeout).await;
        }
        if let Some(g) = &self.grpc {
            let port = u16::try_from(g.port).unwrap_or(0);
            let service = g.service.as_deref().unwrap_or("");
            return crate::grpc_health::probe(&default_host, port, pod_ip, service, timeout).await;
        }
        ProbeOutcome::Failure("the probe has no handler".into())
    }
}

/// The source capture lets through to the pod's own address without the inbound sidecar (Envoy's
/// inbound passthrough source, the same in Istio): the app's probes keep working in every mTLS mode,
/// STRICT included, as the kubelet's own probes did before injection.
const PASSTHROUGH_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);

/// A connection to the app at `host:port`; to the pod's own IPv4 address from [`PASSTHROUGH_SOURCE`].
pub(crate) async fn connect_app(
    host: &str,
    port: u16,
    pod_ip: Option<IpAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) if pod_ip == Some(IpAddr::V4(ip)) && !ip.is_loopback() => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((PASSTHROUGH_SOURCE, 0)))?;
            socket.connect(SocketAddr::from((ip, port))).await
        }
        _ => tokio::net::TcpStream::connect((host, port)).await,
    }
}

async fn tcp_probe(
    host: &str,
    port: u16,
    pod_ip: Option<IpAddr>,
    timeout: Duration,
) -> ProbeOutcome {
    let target = format!("{}:{port}", bracket(host));
    match tokio::time::timeout(timeout, connect_app(host, port, pod_ip)).await {
        Ok(Ok(_)) => ProbeOutcome::Success(format!("tcp {target}: connected")),
        Ok(Err(e)) => ProbeOutcome::Failure(format!("tcp {target}: {e}")),
        Err(_) => ProbeOutcome::Failure(format!("tcp {target}: no connection within {timeout:?}")),
    }
}

/// An IPv6 address in brackets (for `host:port`), anything else as it is.
pub(crate) fn bracket(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => SocketAddr::new(host.parse().expect("just parsed"), 0)
            .to_string()
            .trim_end_matches(":0")
            .to_string(),
        _ => host.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhooks_json_parses() {
        let json = r#"{"app/livez":{"httpGet":{"path":"/healthz","port":8080,"scheme":"HTTP","httpHeaders":[{"name":"X-Probe","value":"1"}]},"periodSeconds":5},"app/readyz":{"tcpSocket":{"port":8080}},"db/startupz":{"grpc":{"port":9090}}}"#;
        let probes = AppProbes::parse(json).unwrap();
        let (live, timeout) = probes.get("app", "livez").unwrap();
        assert_eq!(timeout, Duration::from_secs(1), "the kubelet's default");
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
        assert!(probes.get("app", "readyz").unwrap().0.tcp_socket.is_some());
        assert!(probes.get("app", "startupz").is_none());
    }

    #[test]
    fn bad_probes_are_named() {
        for (json, needle) in [
            (r#"{"app/livez":{"httpGet":{"port":"http"}}}"#, "app/livez"),
            (r#"{"app/alive":{"tcpSocket":{"port":80}}}"#, "alive"),
            (r#"{"app":{"tcpSocket":{"port":80}}}"#, "<container>/<kind>"),
            (r#"{"app/livez":{"periodSeconds":3}}"#, "exactly one"),
            (
                r#"{"app/prestop":{"grpc":{"port":9090}}}"#,
                "not a lifecycle hook handler",
            ),
        ] {
            let err = AppProbes::parse(json).unwrap_err();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn hooks_parse_with_their_timeouts() {
        let json = r#"{"app/prestop":{"httpGet":{"path":"/shutdown","port":8080},"timeoutSeconds":7},"app/poststart":{"tcpSocket":{"port":8080}}}"#;
        let hooks = AppProbes::parse(json).unwrap();
        let (prestop, timeout) = hooks.get("app", "prestop").unwrap();
        assert_eq!(
            prestop.http_get.as_ref().unwrap().path.as_deref(),
            Some("/shutdown")
        );
        assert_eq!(timeout, Duration::from_secs(7));
        let (poststart, timeout) = hooks.get("app", "poststart").unwrap();
        assert!(poststart.tcp_socket.is_some());
        assert_eq!(timeout, HOOK_DEFAULT_TIMEOUT);
    }
}
