//! TLS for the webhook: TLS 1.2 and 1.3 only, ALPN h2 and http/1.1, and a certificate resolver that
//! re-reads the certificate and key files when they change (linkerd-kubert's idea), so a rotated
//! Secret is served without a restart. Files are checked on each handshake (two `stat` calls); a new
//! pair that does not load (half-written, key and certificate not matching) is logged and the previous
//! pair stays in service until a good one appears.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::WebhookError;

/// Where the webhook's PEM certificate chain and private key live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Identity of a file's content as far as `stat` can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, WebhookError> {
    std::fs::read(path).map_err(|source| WebhookError::ReadFile {
        what,
        path: path.display().to_string(),
        source,
    })
}

/// Loads and checks one certificate/key pair.
fn load(files: &CertificateFiles, provider: &CryptoProvider) -> Result<CertifiedKey, WebhookError> {
    let cert_text = read("certificate", &files.cert)?;
    let key_text = read("private key", &files.key)?;
    let pem = |what, path: &Path, reason: String| WebhookError::Pem {
        what,
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem("certificate", &files.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem(
            "certificate",
            &files.cert,
            "no CERTIFICATE block".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_text)
        .map_err(|e| pem("private key", &files.key, e.to_string()))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| WebhookError::CertKey {
        cert: files.cert.display().to_string(),
        key: files.key.display().to_string(),
        source,
    })
}

struct Current {
    stamps: (Option<FileStamp>, Option<FileStamp>),
    key: Arc<CertifiedKey>,
}

/// Serves the newest good certificate from [`CertificateFiles`].
pub struct ReloadingCertResolver {
    files: CertificateFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Current>,
}

impl fmt::Debug for ReloadingCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCertResolver")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ReloadingCertResolver {
    /// Loads the pair now: a webhook that starts without a usable certificate fails at start.
    pub fn new(
        files: CertificateFiles,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, WebhookError> {
        let stamps = (stamp(&files.cert), stamp(&files.key));
        let key = Arc::new(load(&files, &provider)?);
        Ok(Self {
            files,
            provider,
            current: RwLock::new(Current { stamps, key }),
        })
    }

    /// The certificate to present: reloaded first if either file changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let stamps = (stamp(&self.files.cert), stamp(&self.files.key));
        {
            let current = self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if current.stamps == stamps {
                return current.key.clone();
            }
        }
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.stamps != stamps {
            match load(&self.files, &self.provider) {
                Ok(key) => {
                    current.key = Arc::new(key);
                    current.stamps = stamps;
                    tracing::info!(cert = %self.files.cert.display(), "webhook certificate reloaded");
                }
                // Keep serving the previous pair; the next handshake tries again.
                Err(e) => {
                    tracing::warn!(error = %e, "webhook certificate changed but does not load yet")
                }
            }
        }
        current.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The webhook's rustls configuration: TLS 1.2/1.3, ring, ALPN h2 + http/1.1, reloading certificate.
pub fn server_config(files: CertificateFiles) -> Result<Arc<ServerConfig>, WebhookError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let resolver = ReloadingCertResolver::new(files, provider.clone())?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| WebhookError::Tls { source })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
