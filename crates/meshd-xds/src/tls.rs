//! TLS for the xDS listener: TLS 1.2 and 1.3 (ring), ALPN h2, and the server certificate taken from a
//! `watch` at each handshake, so a re-issued certificate serves every new connection while open
//! streams keep theirs. Handshakes run in their own tasks (bounded in time), so a client that stalls in
//! its handshake never holds up the accept loop.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::XdsError;

/// The certificate the xDS listener presents; the newest value serves each new connection.
pub type ServingCertificate = watch::Receiver<Arc<CertifiedKey>>;

/// A handshake not done within this long is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A checked certificate chain and private key from PEM.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, XdsError> {
    let bad = |reason: String| XdsError::Tls(reason);
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("the certificate chain is not PEM: {e}")))?;
    if chain.is_empty() {
        return Err(bad("the certificate chain has no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| bad(format!("the private key is not PEM: {e}")))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| bad(format!("certificate and key do not go together: {e}")))
}

/// A fixed certificate (files read once, tests).
pub fn fixed(key: CertifiedKey) -> ServingCertificate {
    watch::channel(Arc::new(key)).1
}

#[derive(Debug)]
struct WatchResolver(ServingCertificate);

impl ResolvesServerCert for WatchResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0.borrow()))
    }
}

pub(crate) fn acceptor(certs: ServingCertificate) -> Result<TlsAcceptor, XdsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| XdsError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(WatchResolver(certs)));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The TLS connections of `accepted`, in the order their handshakes finish. Ends when the consumer
/// drops it.
pub(crate) fn incoming<IO, S>(
    accepted: S,
    acceptor: TlsAcceptor,
) -> ReceiverStream<Result<TlsStream<IO>, std::io::Error>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Stream<Item = Result<IO, std::io::Error>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut accepted = Box::pin(accepted);
        loop {
            let next = tokio::select! {
                () = tx.closed() => return,
                next = accepted.next() => next,
            };
            match next {
                None => return,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "xDS: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(Ok(io)) => {
                    let (tx, acceptor) = (tx.clone(), acceptor.clone());
                    tokio::spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                            Ok(Ok(tls)) => {
                                let _ = tx.send(Ok(tls)).await;
                            }
                            Ok(Err(e)) => tracing::debug!(error = %e, "xDS: TLS handshake failed"),
                            Err(_) => tracing::debug!("xDS: TLS handshake timed out"),
                        }
                    });
                }
            }
        }
    });
    ReceiverStream::new(rx)
}
