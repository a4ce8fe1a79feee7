//! The HTTPS server: a TCP listener, a rustls handshake per connection (with a deadline), hyper's
//! auto builder (HTTP/1.1 keep-alive or h2), and a bounded drain on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::WebhookError;
use crate::handler::Injector;
use crate::tls::{CertificateFiles, server_config, watch_files};

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How `meshd webhook` (and the controller's embedded webhook) listens.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    pub tls: CertificateFiles,
    /// Larger bodies get 413. The API server caps objects at ~1.5 MB; a review may carry two of them.
    pub body_limit: usize,
    /// How long open connections get to finish after shutdown is asked for.
    pub drain_timeout: Duration,
}

impl WebhookConfig {
    pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

    pub fn new(listen: SocketAddr, tls: CertificateFiles) -> Self {
        Self {
            listen,
            tls,
            body_limit: Self::DEFAULT_BODY_LIMIT,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Binds, then serves until `shutdown` is cancelled and the connections have drained.
pub async fn run(
    config: WebhookConfig,
    injector: Injector,
    shutdown: CancellationToken,
) -> Result<(), WebhookError> {
    let tls = server_config(watch_files(config.tls.clone())?)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| WebhookError::Bind {
            addr: config.listen.to_string(),
            source,
        })?;
    tracing::info!(listen = %config.listen, path = meshd_api::names::WEBHOOK_PATH, "injection webhook serving");
    let router = Arc::new(injector).router(config.body_limit);
    serve(listener, tls, router, shutdown, config.drain_timeout).await;
    Ok(())
}

/// Serves `router` over TLS on `listener`. Returns once `shutdown` is cancelled and every connection
/// has finished its in-flight requests (or `drain` has passed).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let acceptor = TlsAcceptor::from(tls);
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, router, shutdown) = (acceptor.clone(), router.clone(), shutdown.clone());
        connections.spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            // A client that opens a connection and dribbles its headers does not hold it forever.
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    connections.close();
    if tokio::time::timeout(drain, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "shutdown: connections still open after the drain timeout"
        );
    }
    tracing::info!("injection webhook stopped");
}

/// Plain-HTTP `GET /metrics` in the Prometheus text format, for `meshd webhook --metrics-listen`.
pub async fn serve_metrics(
    listener: TcpListener,
    registry: Arc<prometheus_client::registry::Registry>,
    shutdown: CancellationToken,
) {
    use axum::routing::get;
    let router = Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                let mut text = String::new();
                match prometheus_client::encoding::text::encode(&mut text, &registry) {
                    Ok(()) => (
                        axum::http::StatusCode::OK,
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    ),
                    Err(e) => (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; charset=utf-8",
                        )],
                        e.to_string(),
                    ),
                }
            }
        }),
    );
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::warn!(error = %e, "metrics server stopped");
    }
}
