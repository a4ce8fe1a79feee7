//! TLS for the webhook: TLS 1.2 and 1.3 only, ALPN h2 and http/1.1, and the serving certificate taken
//! from a `tokio::sync::watch` at each handshake, so a rotated certificate is served without a restart
//! and a handshake costs no file system access. Two feeds fill the watch: certificate files
//! ([`watch_files`], `meshd webhook`) and Secret `meshd-webhook-tls` ([`crate::watch_secret`], the
//! controller). A new pair that does not load (half-written, key and certificate not matching) is logged
//! and the previous pair stays in service until a good one appears.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::Watcher;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use crate::WebhookError;

/// The serving certificate as the server sees it: None until a first good pair arrived.
pub type CertificateWatch = watch::Receiver<Option<Arc<CertifiedKey>>>;

/// Where the webhook's PEM certificate chain and private key live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A checked certificate/key pair from PEM; `cert_from` and `key_from` name where each came from.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_from: &str,
    key_from: &str,
) -> Result<CertifiedKey, WebhookError> {
    let provider = rustls::crypto::ring::default_provider();
    let pem = |what, path: &str, reason: String| WebhookError::Pem {
        what,
        path: path.to_string(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem("certificate", cert_from, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem("certificate", cert_from, "no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| pem("private key", key_from, e.to_string()))?;
    CertifiedKey::from_der(chain, key, &provider).map_err(|source| WebhookError::CertKey {
        cert: cert_from.to_string(),
        key: key_from.to_string(),
        source,
    })
}

/// Offers `pair` to the watch when it differs from what is served; false when it was the same.
pub fn offer(tx: &watch::Sender<Option<Arc<CertifiedKey>>>, pair: CertifiedKey) -> bool {
    tx.send_if_modified(|current| {
        let same = current.as_ref().is_some_and(|c| c.cert == pair.cert);
        if !same {
            *current = Some(Arc::new(pair));
        }
        !same
    })
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, WebhookError> {
    std::fs::read(path).map_err(|source| WebhookError::ReadFile {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn load(files: &CertificateFiles) -> Result<CertifiedKey, WebhookError> {
    let cert = read("certificate", &files.cert)?;
    let key = read("private key", &files.key)?;
    certified_key(
        &cert,
        &key,
        &files.cert.display().to_string(),
        &files.key.display().to_string(),
    )
}

/// Identity of a file's content as far as `stat` can tell.
type Stamp = Option<(Option<SystemTime>, u64, u64)>;

fn stamps(files: &CertificateFiles) -> (Stamp, Stamp) {
    use std::os::unix::fs::MetadataExt;
    let one = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().ok(), m.len(), m.ino()))
    };
    (one(&files.cert), one(&files.key))
}

/// How often the files are checked when no file system event arrives (file systems without inotify).
const FALLBACK_CHECK: Duration = Duration::from_secs(5);

/// Loads `files` now (a webhook that starts without a usable certificate fails at start), then feeds
/// every good new pair into the returned watch: on each file system event in their directories (the
/// atomic rename of a Secret volume or a `mv` included) and every 5 s. The feeding task ends when every
/// receiver is gone.
pub fn watch_files(files: CertificateFiles) -> Result<CertificateWatch, WebhookError> {
    let first = load(&files)?;
    let (tx, rx) = watch::channel(Some(Arc::new(first)));
    let (event_tx, mut events) = tokio::sync::mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
        let _ = event_tx.try_send(());
    })
    .map_err(|e| WebhookError::Watch(e.to_string()))?;
    let mut dirs: Vec<&Path> = [&files.cert, &files.key]
        .iter()
        .filter_map(|p| p.parent())
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .collect();
    dirs.dedup();
    for dir in dirs {
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| WebhookError::Watch(format!("{}: {e}", dir.display())))?;
    }
    tokio::spawn(async move {
        let _watcher = watcher;
        let mut seen = stamps(&files);
        loop {
            tokio::select! {
                () = tx.closed() => return,
                _ = events.recv() => {}
                () = tokio::time::sleep(FALLBACK_CHECK) => {}
            }
            let now = stamps(&files);
            if now == seen {
                continue;
            }
            match load(&files) {
                Ok(pair) => {
                    seen = now;
                    if offer(&tx, pair) {
                        tracing::info!(cert = %files.cert.display(), "webhook certificate reloaded");
                    }
                }
                // Keep serving the previous pair; the next change tries again.
                Err(e) => {
                    tracing::warn!(error = %e, "webhook certificate changed but does not load yet")
                }
            }
        }
    });
    Ok(rx)
}

/// Serves the newest good certificate of a [`CertificateWatch`].
#[derive(Debug)]
struct WatchResolver(CertificateWatch);

impl ResolvesServerCert for WatchResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.borrow().clone()
    }
}

/// The webhook's rustls configuration: TLS 1.2/1.3, ring, ALPN h2 + http/1.1, the certificate from
/// `certs` at each handshake.
pub fn server_config(certs: CertificateWatch) -> Result<Arc<ServerConfig>, WebhookError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| WebhookError::Tls { source })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(WatchResolver(certs)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
