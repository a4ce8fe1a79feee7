//! For `tests/identity_envoy.rs`: a minimal delta ADS server that hands Envoy one listener whose TLS
//! names the SDS secrets `default` and `ROOTCA` (translation does not emit mTLS yet), and an mTLS client
//! that checks a SPIFFE server certificate against the mesh root.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{
    Address, SocketAddress, TransportSocket, socket_address,
};
use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteConfiguration, RouteMatch, VirtualHost, route, route_match,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext, common_tls_context,
};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use envoy_types::pb::google::protobuf::{Any, BoolValue};
use prost::{Message, Name};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};

pub const LISTENER_PORT: u16 = 18443;
pub const BODY: &str = "hello over mTLS";

fn pack<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// 127.0.0.1:18443, TLS with the workload certificate (`default`), client certificates required and
/// verified against `ROOTCA`, every HTTP request answered 200 with [`BODY`].
fn mtls_listener() -> Listener {
    let tls = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![meshd_translate::sds_secret_config(
                meshd_translate::SDS_DEFAULT,
            )],
            validation_context_type: Some(
                common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(
                    meshd_translate::sds_secret_config(meshd_translate::SDS_ROOTCA),
                ),
            ),
            ..Default::default()
        }),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    };
    let route = Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        action: Some(route::Action::DirectResponse(DirectResponseAction {
            status: 200,
            body: Some(DataSource {
                specifier: Some(data_source::Specifier::InlineString(BODY.into())),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    };
    let hcm = HttpConnectionManager {
        stat_prefix: "mtls".into(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(
            RouteConfiguration {
                name: "mtls".into(),
                virtual_hosts: vec![VirtualHost {
                    name: "all".into(),
                    domains: vec!["*".into()],
                    routes: vec![route],
                    ..Default::default()
                }],
                ..Default::default()
            },
        )),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack(
                &Router::default(),
            ))),
            ..Default::default()
        }],
        ..Default::default()
    };
    Listener {
        name: "mtls".into(),
        address: Some(Address {
            address: Some(envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(
                SocketAddress {
                    address: "127.0.0.1".into(),
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(
                        LISTENER_PORT.into(),
                    )),
                    ..Default::default()
                },
            )),
        }),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(pack(&hcm))),
            }],
            transport_socket: Some(TransportSocket {
                name: "envoy.transport_sockets.tls".into(),
                config_type: Some(
                    envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(
                        pack(&tls),
                    ),
                ),
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

struct Ads;

type Stream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = Stream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Stream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        _: tonic::Request<tonic::Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::StreamAggregatedResourcesStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("delta only"))
    }

    async fn delta_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::DeltaAggregatedResourcesStream>, tonic::Status> {
        let mut requests = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut answered = std::collections::BTreeSet::new();
            while let Ok(Some(req)) = requests.message().await {
                // Answer each type once (its first request); ACKs need nothing.
                if !answered.insert(req.type_url.clone()) {
                    continue;
                }
                let resources = if req.type_url == Listener::type_url() {
                    vec![Resource {
                        name: "mtls".into(),
                        version: "1".into(),
                        resource: Some(pack(&mtls_listener())),
                        ..Default::default()
                    }]
                } else {
                    Vec::new()
                };
                let response = DeltaDiscoveryResponse {
                    system_version_info: "1".into(),
                    type_url: req.type_url.clone(),
                    resources,
                    nonce: format!("{}", answered.len()),
                    ..Default::default()
                };
                if tx.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Serves the ADS above on a Unix socket until the runtime is dropped.
pub fn serve_ads(runtime: &tokio::runtime::Runtime, path: &Path) -> anyhow::Result<()> {
    let _guard = runtime.enter();
    let listener = tokio::net::UnixListener::bind(path)?;
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(AggregatedDiscoveryServiceServer::new(Ads))
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );
    Ok(())
}

/// Verifies a server chain against the mesh roots without a DNS name (workload certificates carry only
/// a SPIFFE URI), recording the leaf so the test can read its identity and serial.
#[derive(Debug)]
struct SpiffeVerifier {
    chain: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    seen: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl rustls::client::danger::ServerCertVerifier for SpiffeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        // The chain check is the same one a server does on a client certificate.
        self.chain
            .verify_client_cert(end_entity, intermediates, now)?;
        *self.seen.lock().unwrap() = end_entity.to_vec();
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An open mTLS connection to the listener, with the server's leaf certificate (DER).
pub struct MtlsClient {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    pub server_leaf: Vec<u8>,
}

impl MtlsClient {
    /// Connects with `chain_pem` + `key_pem` as the client certificate, trusting `roots_pem`.
    pub fn connect(roots_pem: &str, chain_pem: &str, key_pem: &str) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for der in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
            roots.add(der?)?;
        }
        let chain_check = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()?;
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let verifier = SpiffeVerifier {
            chain: chain_check,
            provider: provider.clone(),
            seen: seen.clone(),
        };
        let certs =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(certs, key)?;
        let conn =
            rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("workload")?)?;
        let tcp = TcpStream::connect(("127.0.0.1", LISTENER_PORT))?;
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        let server_leaf = seen.lock().unwrap().clone();
        Ok(Self { tls, server_leaf })
    }

    /// One keep-alive HTTP/1.1 GET on this connection: (status, body).
    pub fn get(&mut self) -> anyhow::Result<(u16, String)> {
        write!(self.tls, "GET / HTTP/1.1\r\nhost: workload\r\n\r\n")?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = self.tls.read(&mut buf)?;
            anyhow::ensure!(n > 0, "the connection closed");
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_string())
                    })
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    let status = head
                        .split_whitespace()
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    return Ok((status, body[..length].to_string()));
                }
            }
        }
    }
}
