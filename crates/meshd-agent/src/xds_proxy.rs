//! The agent's xDS proxy (Istio's pilot-agent does the same): Envoy's bootstrap points ADS at the
//! agent's Unix socket `<config-dir>/xds.sock`, and the agent forwards each call to the control plane
//! (`--discovery-address`), over TLS verified with `--ca-file` for `meshd.meshd-system.svc`, adding
//! `authorization: Bearer <token>` read from `--token-file` when the call arrives.
//!
//! Why: SPEC §9 authenticates the xDS stream with the workload's token, and that token rotates (the
//! kubelet rewrites the projected file well before it expires); Envoy's own gRPC client can only send
//! a header fixed in its bootstrap. Reading the file per stream gives every new stream the current
//! token. The frames of the two ADS methods pass through untouched (no decoding), SotW and delta alike.
//! Reconnection is Envoy's own: when the upstream stream ends or its connection drops, Envoy's stream
//! ends with that status and Envoy opens a new one (its backoff), which takes a fresh token and, once
//! the old connection is gone, a new connection. A changed `--ca-file` (a root rotation) makes a new
//! channel for the next stream. The token is never sent over plaintext TCP.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshd_ca::client::{self, ClientTls};
use meshd_translate::XdsAddress;
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::Channel;
use tower::ServiceExt;

use crate::AgentError;
use crate::settings::AgentSettings;

/// The agent's ADS socket, under its config directory; the bootstrap's `xds-grpc` cluster names it.
pub const XDS_SOCKET_FILE: &str = "xds.sock";

/// The only calls forwarded: the token is added to nothing else.
const ADS_METHODS: [&str; 2] = [
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources",
];

struct Upstream {
    address: XdsAddress,
    /// (server name, trust anchor file) when the control plane is reached over TLS.
    tls: Option<(String, PathBuf)>,
    token_file: PathBuf,
    /// The channel, and the trust anchor it was made with.
    channel: Mutex<Option<(Vec<u8>, Channel)>>,
    /// Said once: a token that is not sent, because the transport is plaintext TCP.
    warned_plaintext: std::sync::atomic::AtomicBool,
}

impl Upstream {
    /// `authorization` for a new stream: the token file's content now, when there is one and the
    /// transport may carry it.
    fn authorization(&self) -> Option<http::HeaderValue> {
        let token = std::fs::read_to_string(&self.token_file).ok()?;
        let token = token.trim();
        if token.is_empty() {
            return None;
        }
        if matches!(self.address, XdsAddress::Tcp { .. }) && self.tls.is_none() {
            if !self
                .warned_plaintext
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::error!(address = %self.address, "xDS over plaintext TCP: the token is not sent, so an authenticating control plane refuses the streams");
            }
            return None;
        }
        match format!("Bearer {token}").parse() {
            Ok(value) => Some(value),
            Err(_) => {
                tracing::error!(file = %self.token_file.display(), "the token holds characters a header cannot carry; not sent");
                None
            }
        }
    }

    /// The channel for a new stream; made anew when the trust anchor file changed.
    fn channel(&self) -> Result<Channel, Status> {
        let anchor = match &self.tls {
            Some((_, file)) => std::fs::read(file).map_err(|e| {
                Status::unavailable(format!(
                    "the agent cannot read --ca-file {}: {e}",
                    file.display()
                ))
            })?,
            None => Vec::new(),
        };
        let mut current = self.channel.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((made_with, channel)) = current.as_ref()
            && *made_with == anchor
        {
            return Ok(channel.clone());
        }
        let tls = self.tls.as_ref().map(|(server_name, _)| ClientTls {
            ca_pem: anchor.clone(),
            server_name: server_name.clone(),
        });
        let channel = client::stream_channel(&self.address, tls.as_ref()).map_err(|e| {
            Status::unavailable(format!("the agent cannot reach {}: {e}", self.address))
        })?;
        if current.is_some() {
            tracing::info!(address = %self.address, "the trust anchor changed: new connections to the control plane use it");
        }
        *current = Some((anchor, channel.clone()));
        Ok(channel)
    }

    async fn forward(self: Arc<Self>, request: http::Request<Incoming>) -> http::Response<Body> {
        let path = request.uri().path();
        if !ADS_METHODS.contains(&path) {
            return Status::unimplemented(format!(
                "the agent's xDS socket forwards only ADS, not {path}"
            ))
            .into_http();
        }
        let channel = match self.channel() {
            Ok(channel) => channel,
            Err(status) => return status.into_http(),
        };
        let (mut parts, body) = request.into_parts();
        parts.headers.remove(http::header::AUTHORIZATION);
        if let Some(value) = self.authorization() {
            parts.headers.insert(http::header::AUTHORIZATION, value);
        }
        let upstream = http::Request::from_parts(parts, Body::new(body));
        match channel.oneshot(upstream).await {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(address = %self.address, error = %crate::error::error_chain(&e), "the control plane is not reachable; Envoy retries");
                Status::unavailable(format!(
                    "the control plane at {} is not reachable: {e}",
                    self.address
                ))
                .into_http()
            }
        }
    }
}

/// Serves the xDS proxy on `<config-dir>/xds.sock` (a stale socket replaced, mode 0600: only the
/// agent's user, Envoy's, may use the agent's token) until the task is aborted.
pub async fn serve(settings: &AgentSettings) -> Result<JoinHandle<()>, AgentError> {
    let path = settings.xds_socket();
    let listener = crate::socket::bind(&path).map_err(|source| AgentError::XdsProxy {
        path: path.clone(),
        source,
    })?;
    let upstream = Arc::new(Upstream {
        address: settings.xds.clone(),
        tls: settings
            .xds_tls
            .clone()
            .map(|(name, file)| (name, PathBuf::from(file))),
        token_file: settings.ca.token_file.clone(),
        channel: Mutex::new(None),
        warned_plaintext: Default::default(),
    });
    tracing::info!(path = %path.display(), upstream = %settings.xds, tls = upstream.tls.is_some(), "xDS proxy for Envoy");
    Ok(tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "xDS proxy: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let upstream = Arc::clone(&upstream);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let upstream = Arc::clone(&upstream);
                    async move { Ok::<_, std::convert::Infallible>(upstream.forward(request).await) }
                });
                if let Err(e) = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(error = %e, "xDS proxy: Envoy's connection ended");
                }
            });
        }
    }))
}

#[cfg(test)]
#[path = "xds_proxy_tests.rs"]
mod tests;
