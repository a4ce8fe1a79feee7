//! The control plane's own HTTP endpoint (SPEC §7): `/metrics` (Prometheus text), `/ready`, `/live`, and
//! `/debug/syncz` (this replica's proxies and their sync state, JSON: `meshd_api::syncz`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshd_api::syncz::{self, ControlPlane};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::XdsError;
use crate::registry::ProxyRegistry;

/// What `/debug/syncz` answers from: the proxies of this replica, and its name and version.
#[derive(Clone, Debug)]
pub struct Syncz {
    pub proxies: ProxyRegistry,
    pub control_plane: ControlPlane,
}

/// Serves until `cancel`. `ready` says whether `/ready` answers 200.
pub async fn serve_health(
    addr: SocketAddr,
    registry: Arc<Registry>,
    ready: watch::Receiver<bool>,
    syncz: Syncz,
    cancel: CancellationToken,
) -> Result<(), XdsError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| XdsError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(listen = %bound, "metrics and health listening");
    let syncz = Arc::new(syncz);
    loop {
        let (stream, _) = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    continue;
                }
            },
        };
        let (registry, ready, syncz) = (Arc::clone(&registry), ready.clone(), Arc::clone(&syncz));
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let response = answer(req.uri().path(), &registry, *ready.borrow(), &syncz);
                async move { Ok::<_, Infallible>(response) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

fn answer(path: &str, registry: &Registry, ready: bool, syncz: &Syncz) -> Response<Full<Bytes>> {
    if path == syncz::PATH {
        return sync_report(syncz);
    }
    let (status, body) = match path {
        "/metrics" => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, registry) {
                Ok(()) => (StatusCode::OK, text),
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("encoding metrics failed: {e}\n"),
                ),
            }
        }
        "/live" => (StatusCode::OK, "ok\n".to_string()),
        "/ready" if ready => (StatusCode::OK, "ready\n".to_string()),
        "/ready" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

fn sync_report(syncz: &Syncz) -> Response<Full<Bytes>> {
    let report = syncz.proxies.report(&syncz.control_plane);
    let (status, body, json) = match serde_json::to_vec(&report) {
        Ok(body) => (StatusCode::OK, body, true),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the sync report failed: {e}\n").into_bytes(),
            false,
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if json {
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
    }
    response
}
