//! The controller's feed of the serving certificate: Secret `meshd-webhook-tls` (written by the leader's
//! operator, read by every replica) straight into the [`CertificateWatch`](crate::CertificateWatch) —
//! no file in between. A Secret that does not hold a usable pair is logged and the previous pair stays.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::CertificateWatch;
use crate::tls::{certified_key, offer};

pub const CERT_KEY: &str = "tls.crt";
pub const KEY_KEY: &str = "tls.key";

/// The pair in `secret`'s `tls.crt`/`tls.key`, or why not (naming the Secret and the key).
pub fn secret_pair(secret: &Secret, what: &str) -> Result<CertifiedKey, String> {
    let data = secret.data.as_ref();
    let key_of = |name: &str| {
        data.and_then(|d| d.get(name))
            .map(|b| b.0.as_slice())
            .filter(|b| !b.is_empty())
            .ok_or_else(|| format!("{what}: key {name} is missing or empty"))
    };
    let (cert, key) = (key_of(CERT_KEY)?, key_of(KEY_KEY)?);
    certified_key(
        cert,
        key,
        &format!("{what} key {CERT_KEY}"),
        &format!("{what} key {KEY_KEY}"),
    )
    .map_err(|e| e.to_string())
}

/// Watches Secret `namespace/name` until `shutdown`; the watch holds None until a first good pair.
pub fn watch_secret(
    client: kube::Client,
    namespace: &str,
    name: &str,
    shutdown: CancellationToken,
) -> CertificateWatch {
    let (tx, rx) = watch::channel(None);
    let what = format!("Secret {namespace}/{name}");
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    tokio::spawn(async move {
        let mut events = watcher::watcher(api, config).default_backoff().boxed();
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                next = events.next() => match next {
                    Some(event) => event,
                    None => return,
                },
            };
            match event {
                Ok(Event::Apply(secret) | Event::InitApply(secret)) => {
                    match secret_pair(&secret, &what) {
                        Ok(pair) => {
                            if offer(&tx, pair) {
                                tracing::info!(secret = %what, "webhook certificate loaded from the Secret");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "webhook certificate not loaded; serving the previous one")
                        }
                    }
                }
                Ok(Event::Delete(_)) => tracing::warn!(
                    secret = %what,
                    "Secret deleted; serving the last certificate until the operator recreates it"
                ),
                Ok(Event::Init | Event::InitDone) => {}
                Err(e) => tracing::warn!(secret = %what, error = %e, "watch failed; retrying"),
            }
        }
    });
    rx
}

/// Until a first pair is there: for callers that serve only once they have one.
pub async fn first_certificate(certs: &mut CertificateWatch) -> Option<Arc<CertifiedKey>> {
    certs
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|c| c.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(cert: &str, key: &str) -> Secret {
        Secret {
            data: Some(
                [(CERT_KEY, cert), (KEY_KEY, key), ("ca.crt", "ca")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    fn pair() -> (String, String) {
        let ca = meshd_tools::pki::DevCa::new().expect("ca");
        let leaf = ca.issue(&["localhost"]).expect("leaf");
        (leaf.cert_pem, leaf.key_pem)
    }

    #[test]
    fn a_good_secret_gives_a_pair_and_a_repeat_is_no_change() {
        let (cert, key) = pair();
        let (tx, rx) = watch::channel(None);
        let loaded = secret_pair(
            &secret(&cert, &key),
            "Secret meshd-system/meshd-webhook-tls",
        )
        .expect("pair");
        assert!(offer(&tx, loaded), "first pair");
        let again = secret_pair(&secret(&cert, &key), "s").expect("pair");
        assert!(!offer(&tx, again), "the same certificate is no change");
        assert!(rx.borrow().is_some());
        let (cert2, key2) = pair();
        assert!(offer(
            &tx,
            secret_pair(&secret(&cert2, &key2), "s").expect("pair")
        ));
    }

    #[test]
    fn a_secret_without_a_usable_pair_is_refused_naming_the_key() {
        let (cert, key) = pair();
        let what = "Secret meshd-system/meshd-webhook-tls";
        let err = secret_pair(&secret(&cert, ""), what).expect_err("empty key");
        assert!(err.contains("tls.key") && err.contains(what), "{err}");
        let mut bad = secret(&cert, &key);
        bad.data = None;
        assert!(
            secret_pair(&bad, what)
                .expect_err("no data")
                .contains("tls.crt")
        );
        let (_, other_key) = pair();
        let err = secret_pair(&secret(&cert, &other_key), what).expect_err("mismatch");
        assert!(err.contains("do not go together"), "{err}");
        let err = secret_pair(
            &secret("-----BEGIN CERTIFICATE-----\ngarbage\n", &key),
            what,
        )
        .expect_err("garbage");
        assert!(err.contains("key tls.crt"), "{err}");
    }
}
