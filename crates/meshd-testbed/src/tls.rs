//! HTTPS from inside a namespace, for the edge: a rustls client with the caller's trust anchor, SNI
//! and, for MUTUAL, its own certificate. It reports what the server presented, so callers can check
//! the certificate (its subject names) and the protocol version a gateway negotiated.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::app::{HttpConn, tcp_connect};

/// How to reach a TLS server.
#[derive(Clone, Debug)]
pub struct TlsClient {
    /// SNI, and the name the server's certificate must carry.
    pub server_name: String,
    /// PEM trust anchors.
    pub roots_pem: Vec<u8>,
    /// PEM chain and key to present (MUTUAL), if any.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Only these versions are offered (default: TLS 1.2 and 1.3).
    pub versions: Vec<&'static rustls::SupportedProtocolVersion>,
}

impl TlsClient {
    pub fn new(server_name: &str, roots_pem: &[u8]) -> Self {
        Self {
            server_name: server_name.to_string(),
            roots_pem: roots_pem.to_vec(),
            identity: None,
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
        }
    }

    fn config(&self) -> anyhow::Result<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.roots_pem) {
            roots.add(cert.context("the trust anchors' PEM")?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&self.versions)?
            .with_root_certificates(roots);
        Ok(match &self.identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => {
                let chain = CertificateDer::pem_slice_iter(chain)
                    .collect::<Result<Vec<_>, _>>()
                    .context("the client chain's PEM")?;
                let key = PrivateKeyDer::from_pem_slice(key).context("the client key's PEM")?;
                builder.with_client_auth_cert(chain, key)?
            }
        })
    }
}

/// An established HTTPS connection and what the server presented.
pub struct TlsSession {
    pub http: HttpConn,
    /// The server's chain, leaf first.
    pub peer: Vec<CertificateDer<'static>>,
    pub version: Option<rustls::ProtocolVersion>,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("http", &self.http)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl TlsSession {
    /// The DNS names in the leaf's subjectAltName.
    pub fn peer_dns_names(&self) -> anyhow::Result<Vec<String>> {
        let leaf = self
            .peer
            .first()
            .context("the server sent no certificate")?;
        dns_names(leaf)
    }
}

/// The DNS subjectAltNames of a DER certificate.
pub fn dns_names(der: &[u8]) -> anyhow::Result<Vec<String>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).context("the server's certificate")?;
    let names = cert
        .subject_alternative_name()
        .context("its subjectAltName")?
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(names)
}

/// Connects and completes the handshake (so a refused client certificate or version fails here).
pub fn connect(target: SocketAddr, client: &TlsClient) -> anyhow::Result<TlsSession> {
    let config = Arc::new(client.config()?);
    let name = ServerName::try_from(client.server_name.clone())
        .with_context(|| format!("server name {:?}", client.server_name))?;
    let mut conn = rustls::ClientConnection::new(config, name)?;
    let mut tcp = tcp_connect(target)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .with_context(|| format!("TLS handshake with {target} as {}", client.server_name))?;
    }
    let peer = conn
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    let version = conn.protocol_version();
    let stream = rustls::StreamOwned::new(conn, tcp);
    Ok(TlsSession {
        http: HttpConn::over(target, Box::new(stream)),
        peer,
        version,
    })
}
