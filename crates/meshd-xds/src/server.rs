//! The gRPC server: ADS over TCP or a Unix socket, optionally TLS, with graceful shutdown.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use futures::Stream;
use meshd_ca::Authenticator;
use meshd_index::SharedIndex;
use meshd_translate::{TranslateSettings, XdsAddress};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};

use crate::XdsError;
use crate::auth::Caller;
use crate::generation::{Generation, XdsOptions};
use crate::metrics::XdsMetrics;
pub use crate::raw::AdsRoutes;
use crate::registry::ProxyRegistry;
use crate::stream::Shared;
use crate::tls::ServingCertificate;

/// Responses queued per stream before the stream's task waits for the proxy to read. Small on purpose:
/// a slow proxy holds its own task back, and when it catches up it gets the newest config, not a backlog.
pub(crate) const STREAM_QUEUE: usize = 1;

/// Server certificate and key (PEM) for xDS over TLS.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The xDS control plane, embeddable: feed it snapshots, ask it who is connected, serve it.
#[derive(Clone, Debug)]
pub struct XdsServer {
    shared: Arc<Shared>,
}

impl XdsServer {
    /// Translates what `index` holds now, then follows its changes (debounced) until `cancel`. Must be
    /// called inside a tokio runtime, and be the index's only reader. Proxies are not served until the
    /// index is complete (every kind listed once): an empty config would empty every connected Envoy.
    pub fn start(
        index: SharedIndex,
        settings: TranslateSettings,
        options: XdsOptions,
        registry: &mut Registry,
        cancel: CancellationToken,
    ) -> Self {
        let metrics = XdsMetrics::new(registry);
        crate::heap::spawn_trimmer(cancel.clone());
        let proxies = ProxyRegistry::new(&settings.mesh_name);
        let mesh_name = settings.mesh_name.clone();
        let (generations, verdicts) =
            crate::generation::start(index, settings, options, metrics.clone(), cancel.clone());
        let mesh_mtls = crate::mesh_mtls::follow(generations.clone(), mesh_name, cancel.clone());
        let shared = Shared {
            generations,
            verdicts,
            mesh_mtls,
            registry: proxies,
            metrics,
            cancel,
            next_stream: AtomicU64::new(1),
            large_pushes: Arc::new(tokio::sync::Semaphore::new(crate::stream::LARGE_PUSHES)),
            resource_hook: Default::default(),
        };
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Waits until a generation compiled from a complete index exists; false when cancelled first.
    pub async fn complete(&self) -> bool {
        let mut generations = self.shared.generations.clone();
        tokio::select! {
            () = self.shared.cancel.cancelled() => false,
            done = generations.wait_for(|g| g.complete) => done.is_ok(),
        }
    }

    /// Connected proxies and their sync state.
    pub fn proxies(&self) -> ProxyRegistry {
        self.shared.registry.clone()
    }

    /// Tests only (nothing in `meshd` calls it): from now on every resource sent goes through `rewrite`,
    /// so a test can make a real Envoy reject its config (NACK). `None` stops rewriting.
    #[doc(hidden)]
    pub fn rewrite_resources_for_tests(&self, rewrite: Option<Arc<crate::test_hook::Rewrite>>) {
        self.shared.resource_hook.set(rewrite);
    }

    /// The verdict on every traffic resource (SPEC §8), updated when one changes: for the status
    /// writer (in-cluster) and the verdict log (file-fed).
    pub fn verdicts(&self) -> watch::Receiver<meshd_translate::Verdicts> {
        self.shared.verdicts.clone()
    }

    /// The mTLS mode in force mesh-wide and its overrides (SPEC §9; `Mesh.status.mtls`), from the
    /// same facts as the proxies' config; `None` until a generation from a complete index exists.
    pub fn mesh_mtls(&self) -> watch::Receiver<Option<meshd_api::security::MeshMtlsStatus>> {
        self.shared.mesh_mtls.clone()
    }

    /// The compiled generations, newest first; for readiness and tests.
    pub fn generations(&self) -> watch::Receiver<Arc<Generation>> {
        self.shared.generations.clone()
    }

    /// The tonic service, for callers that run their own gRPC server; it authenticates no one. Delta
    /// streams are answered without tonic's per-stream response buffer (see [`crate::raw`]).
    pub fn service(&self) -> AdsRoutes {
        self.routes(None)
    }

    /// The service with every stream authenticated by `auth` when given (see [`crate::auth`]).
    fn routes(&self, auth: Option<Arc<dyn Authenticator>>) -> AdsRoutes {
        AdsRoutes {
            shared: Arc::clone(&self.shared),
            generated: AggregatedDiscoveryServiceServer::new(AdsService {
                shared: Arc::clone(&self.shared),
            }),
            auth,
        }
    }

    /// Serves ADS on `listen`, once the index is complete, until the cancellation token fires; then every
    /// stream is closed and this returns within 5 s. A stale Unix socket is replaced; the new one is
    /// mode 0666 (Envoy runs as 1337). No stream is authenticated.
    pub async fn serve(&self, listen: &XdsAddress, tls: Option<&TlsFiles>) -> Result<(), XdsError> {
        let certificate = match tls {
            Some(tls) => {
                let read = |path: &PathBuf| {
                    std::fs::read(path).map_err(|source| XdsError::TlsFile {
                        path: path.display().to_string(),
                        source,
                    })
                };
                let key = crate::tls::certified_key(&read(&tls.cert)?, &read(&tls.key)?)?;
                Some(crate::tls::fixed(key))
            }
            None => None,
        };
        self.serve_with(listen, certificate, Routes::default(), None)
            .await
    }

    /// [`XdsServer::serve`] with the TLS certificate from a `watch` (each new connection gets the
    /// newest), more gRPC services on the same listener (the CA's `IstioCertificateService`, SPEC §9),
    /// and, with `auth`, every ADS stream authenticated by its bearer token and allowed only the
    /// config of a node whose Pod runs as the token's service account. Serves only once the index is
    /// complete.
    pub async fn serve_with(
        &self,
        listen: &XdsAddress,
        tls: Option<ServingCertificate>,
        extra: Routes,
        auth: Option<Arc<dyn Authenticator>>,
    ) -> Result<(), XdsError> {
        if !self.complete().await {
            return Ok(());
        }
        let acceptor = tls.map(crate::tls::acceptor).transpose()?;
        let authenticated = auth.is_some();
        let router = builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_routes(extra.add_service(self.routes(auth)));
        let cancel = self.shared.cancel.clone();
        let shutdown = async move { cancel.cancelled().await };
        let listen_err = |source| XdsError::Listen {
            addr: listen.to_string(),
            source,
        };
        let has_tls = acceptor.is_some();
        let serving = async {
            match listen {
                XdsAddress::Unix(path) => {
                    remove_stale_socket(path)?;
                    let listener = tokio::net::UnixListener::bind(path).map_err(listen_err)?;
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
                        .map_err(listen_err)?;
                    tracing::info!(listen = %listen, tls = has_tls, authenticated, "xDS server listening");
                    let accepted = UnixListenerStream::new(listener);
                    let result = match acceptor {
                        Some(acceptor) => {
                            let incoming = crate::tls::incoming(accepted, acceptor);
                            router
                                .serve_with_incoming_shutdown(incoming, shutdown)
                                .await
                        }
                        None => {
                            router
                                .serve_with_incoming_shutdown(accepted, shutdown)
                                .await
                        }
                    };
                    let _ = std::fs::remove_file(path);
                    result.map_err(XdsError::Transport)
                }
                XdsAddress::Tcp { host, port } => {
                    let listener = tokio::net::TcpListener::bind((host.as_str(), *port))
                        .await
                        .map_err(listen_err)?;
                    tracing::info!(listen = %listen, tls = has_tls, authenticated, "xDS server listening");
                    let accepted = TcpListenerStream::new(listener);
                    match acceptor {
                        Some(acceptor) => {
                            let incoming = crate::tls::incoming(accepted, acceptor);
                            router
                                .serve_with_incoming_shutdown(incoming, shutdown)
                                .await
                        }
                        None => {
                            router
                                .serve_with_incoming_shutdown(accepted, shutdown)
                                .await
                        }
                    }
                    .map_err(XdsError::Transport)
                }
            }
        };
        tokio::pin!(serving);
        tokio::select! {
            result = &mut serving => result,
            () = async {
                self.shared.cancel.cancelled().await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            } => {
                tracing::warn!("xDS server did not drain within 5 s; closing");
                Ok(())
            }
        }
    }

    /// Serves on an already-bound TCP listener (tests, the load tool): no TLS.
    pub async fn serve_tcp(&self, listener: tokio::net::TcpListener) -> Result<(), XdsError> {
        if !self.complete().await {
            return Ok(());
        }
        let cancel = self.shared.cancel.clone();
        builder()
            .add_service(self.service())
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                cancel.cancelled().await
            })
            .await
            .map_err(XdsError::Transport)
    }
}

/// The gRPC server with small HTTP/2 receive windows: a proxy's requests are small except its first
/// subscriptions, and h2 keeps a connection's read buffer as large as the most it ever had to hold
/// (the window): with thousands of connections that buffer was most of what each one cost.
fn builder() -> Server {
    Server::builder()
        .initial_stream_window_size(Some(RECEIVE_WINDOW))
        .initial_connection_window_size(Some(RECEIVE_WINDOW))
}

/// HTTP/2 receive window per stream and per connection (the protocol's default is 64 KiB).
const RECEIVE_WINDOW: u32 = 16 * 1024;

fn remove_stale_socket(path: &str) -> Result<(), XdsError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            tracing::info!(path, "removing stale socket");
            std::fs::remove_file(path).map_err(|source| XdsError::Listen {
                addr: format!("unix:{path}"),
                source,
            })
        }
        Ok(_) => Err(XdsError::NotASocket {
            path: path.to_string(),
        }),
        Err(_) => Ok(()),
    }
}

/// The `AggregatedDiscoveryService` implementation: each stream runs in its own task.
#[derive(Debug)]
pub struct AdsService {
    shared: Arc<Shared>,
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsService {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        // Put there by `AdsRoutes`, the only way to this service.
        let caller = request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Anyone);
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        tokio::spawn(crate::sotw::serve(
            Arc::clone(&self.shared),
            caller,
            request.into_inner(),
            tx,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        // Unused in practice: `AdsRoutes` answers delta streams itself.
        let caller = request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Anyone);
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        tokio::spawn(crate::delta::serve(
            Arc::clone(&self.shared),
            caller,
            request.into_inner(),
            tx,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
