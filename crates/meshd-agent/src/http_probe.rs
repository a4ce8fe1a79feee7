//! `httpGet` app probes and hooks, run the way the kubelet runs them: one connection per probe
//! (`Connection: close`, as the kubelet disables keep-alive), the probe's headers kept (a `Host` header
//! replaces the request's host), `User-Agent`/`Accept` defaults only when the probe sets none, 200–399
//! is success, and the whole probe within its timeout. `scheme: HTTPS` is TLS (1.2 or 1.3) without
//! certificate verification, as the kubelet does.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::header::{ACCEPT, CONNECTION, HOST, HeaderName, HeaderValue, USER_AGENT};
use hyper_util::rt::TokioIo;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::probes::{HttpGet, ProbeOutcome, bracket, connect_app, port_of};

pub(crate) async fn probe(
    h: &HttpGet,
    default_host: &str,
    pod_ip: Option<IpAddr>,
    timeout: Duration,
) -> ProbeOutcome {
    let scheme = h.scheme.as_deref().unwrap_or("HTTP");
    let tls = if scheme.eq_ignore_ascii_case("http") {
        false
    } else if scheme.eq_ignore_ascii_case("https") {
        true
    } else {
        return ProbeOutcome::Failure(format!("scheme {scheme:?} is not HTTP or HTTPS"));
    };
    let host = h.host.as_deref().unwrap_or(default_host);
    let port = port_of("httpGet", &h.port).unwrap_or(0);
    let path = h.path.as_deref().unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let authority = format!("{}:{port}", bracket(host));
    let url = format!("{}://{authority}{path}", if tls { "https" } else { "http" });
    let request = match request(h, &authority, &path) {
        Ok(r) => r,
        Err(e) => return ProbeOutcome::Failure(format!("GET {url}: {e}")),
    };
    match tokio::time::timeout(timeout, get(tls, host, port, pod_ip, request)).await {
        // The kubelet's rule: 200 <= status < 400 is success.
        Ok(Ok(status)) if (200..400).contains(&status.as_u16()) => {
            ProbeOutcome::Success(format!("GET {url}: {status}"))
        }
        Ok(Ok(status)) => ProbeOutcome::Failure(format!("GET {url}: {status}")),
        Ok(Err(e)) => ProbeOutcome::Failure(format!("GET {url}: {e}")),
        Err(_) => ProbeOutcome::Failure(format!("GET {url}: no answer within {timeout:?}")),
    }
}

fn request(
    h: &HttpGet,
    authority: &str,
    path: &str,
) -> Result<hyper::Request<Empty<Bytes>>, String> {
    let mut request = hyper::Request::get(path)
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad path: {e}"))?;
    let headers = request.headers_mut();
    for header in h.http_headers.iter().flatten() {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| format!("header name {:?} is not valid", header.name))?;
        let value = HeaderValue::from_str(&header.value).map_err(|_| {
            format!(
                "header {:?}: value {:?} is not valid",
                header.name, header.value
            )
        })?;
        // Like the kubelet, the first Host header is the request's host; the others are dropped.
        if name == HOST && headers.contains_key(HOST) {
            continue;
        }
        headers.append(name, value);
    }
    let defaults = [
        (HOST, authority),
        (USER_AGENT, "kube-probe/meshd"),
        (ACCEPT, "*/*"),
        (CONNECTION, "close"),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            let value =
                HeaderValue::from_str(value).map_err(|_| format!("bad {name}: {value:?}"))?;
            headers.insert(name, value);
        }
    }
    Ok(request)
}

async fn get(
    tls: bool,
    host: &str,
    port: u16,
    pod_ip: Option<IpAddr>,
    request: hyper::Request<Empty<Bytes>>,
) -> Result<hyper::StatusCode, String> {
    let tcp = connect_app(host, port, pod_ip)
        .await
        .map_err(|e| e.to_string())?;
    if !tls {
        return send(tcp, request).await;
    }
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("{host:?} is not a host name or IP address"))?;
    let stream = tokio_rustls::TlsConnector::from(tls_config())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    send(stream, request).await
}

/// One request on a fresh HTTP/1.1 connection; the status of the answer.
async fn send<S>(io: S, request: hyper::Request<Empty<Bytes>>) -> Result<hyper::StatusCode, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let mut conn = std::pin::pin!(conn);
    let mut response = std::pin::pin!(sender.send_request(request));
    tokio::select! {
        biased;
        answer = &mut response => answer.map(|r| r.status()).map_err(|e| e.to_string()),
        // The connection ends (the server closed it) once the answer is in; it is read from the sender.
        ended = &mut conn => {
            ended.map_err(|e| e.to_string())?;
            response.await.map(|r| r.status()).map_err(|e| e.to_string())
        }
    }
}

/// TLS for HTTPS probes: the kubelet sets `InsecureSkipVerify` for them, because an app's serving
/// certificate is usually issued for its public name (or self-signed), never for the pod IP the probe
/// dials. A probe checks that the app answers, not who it is; verifying would fail such pods forever.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports TLS 1.2 and 1.3")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Accepts any server certificate (see [`tls_config`]). The handshake signature is still checked, so
/// the server holds the key of the certificate it sent.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
