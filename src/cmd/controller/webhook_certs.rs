//! Every replica serves the webhook, but only the leader's operator writes Secret `meshd-webhook-tls`.
//! So each replica watches that Secret and copies `tls.crt`/`tls.key` into `--webhook-cert-dir`, where
//! the webhook's certificate resolver re-reads them on the next handshake.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use meshd_api::names;
use meshd_webhook::CertificateFiles;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

/// Where the webhook reads its certificate and key.
pub fn files(dir: &Path) -> CertificateFiles {
    CertificateFiles {
        cert: dir.join(CERT_FILE),
        key: dir.join(KEY_FILE),
    }
}

/// Watches the Secret until `cancel`; bumps `written` after each pair it writes.
pub async fn run(
    client: kube::Client,
    dir: PathBuf,
    written: watch::Sender<u64>,
    cancel: CancellationToken,
) {
    let api: Api<Secret> = Api::namespaced(client, names::SYSTEM_NAMESPACE);
    let config =
        watcher::Config::default().fields(&format!("metadata.name={}", names::WEBHOOK_TLS_SECRET));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => return,
            next = events.next() => match next {
                Some(event) => event,
                None => return,
            },
        };
        match event {
            Ok(Event::Apply(secret) | Event::InitApply(secret)) => {
                match write_pair(&dir, &secret) {
                    Ok(true) => {
                        tracing::info!(secret = names::WEBHOOK_TLS_SECRET, dir = %dir.display(), "webhook certificate written");
                        written.send_modify(|n| *n += 1);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(secret = names::WEBHOOK_TLS_SECRET, error = %e, "webhook certificate not written; the files keep the previous pair")
                    }
                }
            }
            Ok(Event::Delete(_)) => tracing::warn!(
                secret = names::WEBHOOK_TLS_SECRET,
                "Secret deleted; serving the last certificate until the operator recreates it"
            ),
            Ok(Event::Init | Event::InitDone) => {}
            Err(e) => {
                tracing::warn!(secret = names::WEBHOOK_TLS_SECRET, error = %e, "watch failed; retrying")
            }
        }
    }
}

/// Writes the pair when it differs from what is on disk. `Ok(false)`: nothing changed.
pub fn write_pair(dir: &Path, secret: &Secret) -> Result<bool, String> {
    let data = secret.data.as_ref();
    let key_of = |name: &str| {
        data.and_then(|d| d.get(name))
            .map(|b| b.0.as_slice())
            .filter(|b| !b.is_empty())
            .ok_or_else(|| format!("key {name} is missing or empty"))
    };
    let (cert, key) = (key_of(CERT_FILE)?, key_of(KEY_FILE)?);
    let files = files(dir);
    let same = |path: &Path, want: &[u8]| std::fs::read(path).is_ok_and(|have| have == want);
    if same(&files.cert, cert) && same(&files.key, key) {
        return Ok(false);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // Key first: the resolver keeps the old pair while cert and key do not match, and picks up the new
    // pair on the first handshake after the certificate's rename.
    write_atomically(&files.key, key)?;
    write_atomically(&files.cert, cert)?;
    Ok(true)
}

/// Temp file in the same directory, then rename: a reader sees the old file or the new one, never half.
fn write_atomically(path: &Path, content: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let fail = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", tmp.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail("create", e))?;
    file.write_all(content).map_err(|e| fail("write", e))?;
    file.sync_all().map_err(|e| fail("sync", e))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(cert: &str, key: &str) -> Secret {
        Secret {
            data: Some(
                [(CERT_FILE, cert), (KEY_FILE, key), ("ca.crt", "ca")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn writes_the_pair_once_and_again_on_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dir = dir.path().join("tls");
        assert_eq!(write_pair(&dir, &secret("C1", "K1")), Ok(true));
        assert_eq!(
            std::fs::read_to_string(dir.join(CERT_FILE)).expect("cert"),
            "C1"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(KEY_FILE)).expect("key"),
            "K1"
        );
        assert_eq!(
            write_pair(&dir, &secret("C1", "K1")),
            Ok(false),
            "unchanged: no write"
        );
        assert_eq!(write_pair(&dir, &secret("C2", "K2")), Ok(true));
        assert_eq!(
            std::fs::read_to_string(dir.join(CERT_FILE)).expect("cert"),
            "C2"
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join(KEY_FILE))
                .expect("meta")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "the key is private");
        assert!(!dir.join("tls.tmp").exists(), "no temp file left behind");
    }

    #[test]
    fn a_secret_without_the_key_is_refused_and_the_files_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(write_pair(dir.path(), &secret("C1", "K1")), Ok(true));
        let mut bad = secret("C2", "");
        let err = write_pair(dir.path(), &bad).expect_err("empty key");
        assert!(err.contains("tls.key"), "{err}");
        bad.data = None;
        assert!(
            write_pair(dir.path(), &bad)
                .expect_err("no data")
                .contains("tls.crt")
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join(CERT_FILE)).expect("cert"),
            "C1"
        );
    }
}
