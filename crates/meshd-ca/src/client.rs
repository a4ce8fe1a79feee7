//! The agent's side of the CA API: a channel to the control plane (TCP with TLS verified against the
//! mesh root for `meshd.meshd-system.svc`, or a Unix socket) and one `CreateCertificate` call with the
//! bearer token.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use meshd_translate::XdsAddress;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use crate::CaError;
use crate::proto::{CREATE_CERTIFICATE, IstioCertificateRequest, IstioCertificateResponse};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// TLS to the CA: the trust anchor (PEM) and the name the server's certificate must carry.
#[derive(Clone, Debug)]
pub struct ClientTls {
    pub ca_pem: Vec<u8>,
    pub server_name: String,
}

/// Connects to the CA at `address`. TLS is used exactly when `tls` is given.
pub async fn connect(address: &XdsAddress, tls: Option<&ClientTls>) -> Result<Channel, CaError> {
    let endpoint = endpoint(address, tls)?.timeout(REQUEST_TIMEOUT);
    match address {
        XdsAddress::Tcp { .. } => endpoint.connect().await,
        XdsAddress::Unix(path) => endpoint.connect_with_connector(unix(path)).await,
    }
    .map_err(CaError::Transport)
}

/// A channel to the control plane for long-lived streams (the agent's xDS proxy): no deadline per
/// call, HTTP/2 keepalive, connected on first use and again after the connection drops.
pub fn stream_channel(address: &XdsAddress, tls: Option<&ClientTls>) -> Result<Channel, CaError> {
    let endpoint = endpoint(address, tls)?
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    Ok(match address {
        XdsAddress::Tcp { .. } => endpoint.connect_lazy(),
        XdsAddress::Unix(path) => endpoint.connect_with_connector_lazy(unix(path)),
    })
}

/// The endpoint of `address`: `https` with the trust anchor and server name of `tls`, else `http`.
fn endpoint(address: &XdsAddress, tls: Option<&ClientTls>) -> Result<Endpoint, CaError> {
    let uri = match address {
        XdsAddress::Tcp { host, port } => {
            let scheme = if tls.is_some() { "https" } else { "http" };
            let authority = XdsAddress::Tcp {
                host: host.clone(),
                port: *port,
            };
            format!("{scheme}://{authority}")
        }
        // Required but unused: the connector dials the socket.
        XdsAddress::Unix(_) => "http://localhost".to_string(),
    };
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(CaError::Transport)?
        .connect_timeout(CONNECT_TIMEOUT);
    if let (Some(tls), XdsAddress::Tcp { .. }) = (tls, address) {
        endpoint = endpoint
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&tls.ca_pem))
                    .domain_name(tls.server_name.clone()),
            )
            .map_err(CaError::Transport)?;
    }
    Ok(endpoint)
}

/// Dials the Unix socket at `path` whatever the URI.
fn unix(
    path: &str,
) -> impl tower::Service<
    tonic::codegen::http::Uri,
    Response = TokioIo<tokio::net::UnixStream>,
    Error = std::io::Error,
    Future = impl Future<Output = Result<TokioIo<tokio::net::UnixStream>, std::io::Error>> + Send,
> + Clone
+ Send
+ 'static {
    let path = path.to_string();
    tower::service_fn(move |_| {
        let path = path.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    })
}

/// One `CreateCertificate` call with `authorization: Bearer <token>`.
pub async fn create_certificate(
    channel: Channel,
    token: &str,
    request: IstioCertificateRequest,
) -> Result<IstioCertificateResponse, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("the CA is not reachable: {e}")))?;
    let mut request = Request::new(request);
    let header = format!("Bearer {token}").parse().map_err(|_| {
        Status::invalid_argument("the token holds characters a header cannot carry")
    })?;
    request.metadata_mut().insert("authorization", header);
    grpc.unary(
        request,
        PathAndQuery::from_static(CREATE_CERTIFICATE),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}
