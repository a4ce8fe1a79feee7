//! The in-cluster CA key pair (SPEC §9): the user's plug-in Secret `meshd-cacerts` (Istio's plug-in CA
//! layout: `ca-cert.pem`, `ca-key.pem`, `cert-chain.pem`, `root-cert.pem`) when it exists, else Secret
//! `meshd-ca` with the same keys. When neither exists the leader makes a self-signed root and creates
//! `meshd-ca`: create only, never update, so an existing Secret is never overwritten, and a replica that
//! loses the creation race reads the winner's. The key is never logged. [`follow`] is how the controller
//! keeps it: loaded once there is one, re-read every 30 s (a plug-in Secret's root rotation).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use meshd_api::names;

use tokio_util::sync::CancellationToken;

use crate::authority::{CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT};
use crate::{CaError, CaPem, CaSource, CertificateAuthority, PolicySource};

/// The Secret meshd creates and the one a user provides (Istio's `cacerts`).
pub const CA_SECRET: &str = "meshd-ca";
pub const PLUGIN_SECRET: &str = "meshd-cacerts";

/// Where the CA came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `meshd-cacerts`, the user's.
    PlugIn,
    /// `meshd-ca`, created earlier.
    Existing,
    /// `meshd-ca`, created just now by this replica.
    Created,
}

fn from_secret(secret: &Secret) -> Result<CaPem, CaError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let namespace = secret.metadata.namespace.clone().unwrap_or_default();
    let key = |k: &str| -> Result<String, CaError> {
        let what = || format!("Secret {namespace}/{name} key {k}");
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(k))
                    .map(|s| s.as_bytes().to_vec())
            })
            .ok_or_else(|| CaError::material(what(), "is missing"))?;
        String::from_utf8(bytes).map_err(|_| CaError::material(what(), "is not PEM text"))
    };
    Ok(CaPem {
        ca_cert: key(CA_CERT)?,
        ca_key: key(CA_KEY)?,
        cert_chain: key(CERT_CHAIN)?,
        root_cert: key(ROOT_CERT)?,
    })
}

fn to_secret(namespace: &str, pem: &CaPem) -> Secret {
    let data = [
        (CA_CERT, &pem.ca_cert),
        (CA_KEY, &pem.ca_key),
        (CERT_CHAIN, &pem.cert_chain),
        (ROOT_CERT, &pem.root_cert),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(CA_SECRET.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                names::LABEL_MANAGED_BY.to_string(),
                "meshd".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(data),
        ..Secret::default()
    }
}

fn kube_error(action: String) -> impl FnOnce(kube::Error) -> CaError {
    move |source| CaError::Kube { action, source }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == code)
}

async fn get(api: &Api<Secret>, namespace: &str, name: &str) -> Result<Option<Secret>, CaError> {
    api.get_opt(name)
        .await
        .map_err(kube_error(format!("reading Secret {namespace}/{name}")))
}

/// The mesh CA's PEM texts from the Secrets in `namespace`, creating `meshd-ca` (for `trust_domain`)
/// when `leader` and neither Secret exists. A replica that is not the leader gets
/// [`CaError::NotYetCreated`] and should ask again later.
pub async fn load(
    client: kube::Client,
    namespace: &str,
    trust_domain: &str,
    leader: bool,
) -> Result<(CaPem, Origin), CaError> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    if let Some(secret) = get(&api, namespace, PLUGIN_SECRET).await? {
        return Ok((from_secret(&secret)?, Origin::PlugIn));
    }
    if let Some(secret) = get(&api, namespace, CA_SECRET).await? {
        return Ok((from_secret(&secret)?, Origin::Existing));
    }
    if !leader {
        return Err(CaError::NotYetCreated {
            namespace: namespace.to_string(),
            name: CA_SECRET.to_string(),
        });
    }
    let pem = CaPem::self_signed(trust_domain, SystemTime::now())?;
    match api
        .create(&PostParams::default(), &to_secret(namespace, &pem))
        .await
    {
        Ok(_) => {
            tracing::info!(
                namespace,
                secret = CA_SECRET,
                "created the mesh CA (a new self-signed root)"
            );
            Ok((pem, Origin::Created))
        }
        Err(e) if is_status(&e, 409) => {
            // Another replica created it first: use theirs, never ours.
            let secret = get(&api, namespace, CA_SECRET).await?.ok_or_else(|| {
                CaError::material(
                    format!("Secret {namespace}/{CA_SECRET}"),
                    "already exists but cannot be read back",
                )
            })?;
            Ok((from_secret(&secret)?, Origin::Existing))
        }
        Err(e) => Err(kube_error(format!(
            "creating Secret {namespace}/{CA_SECRET}"
        ))(e)),
    }
}

/// The CA in force for the controller: `None` until it has been loaded.
pub type CaWatch = tokio::sync::watch::Receiver<Option<Arc<CertificateAuthority>>>;

impl CaSource for CaWatch {
    fn authority(&self) -> Result<Arc<CertificateAuthority>, CaError> {
        self.borrow().clone().ok_or(CaError::NotLoaded)
    }
}

/// How often the Secrets are read again once the CA is loaded: a plug-in Secret a user edits (a root
/// rotation, SPEC §9) is in force within this long.
pub const RECHECK: Duration = Duration::from_secs(30);
/// How often a follower asks again while the leader has not created the CA.
const FOLLOWER_RETRY: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Loads the in-cluster CA into `tx` and keeps it current until `cancel`: creates `meshd-ca` (with a
/// root for the policy's trust domain) only while `leader` says this replica leads, waits for the
/// leader otherwise (asking again when leadership changes, or every 2 s), and then reads the Secrets
/// every [`RECHECK`]; a changed Secret that does not load is logged and the CA in force stays.
pub async fn follow(
    client: kube::Client,
    namespace: String,
    policy: Arc<dyn PolicySource>,
    mut leader: tokio::sync::watch::Receiver<bool>,
    tx: tokio::sync::watch::Sender<Option<Arc<CertificateAuthority>>>,
    cancel: CancellationToken,
) {
    let mut in_force: Option<CaPem> = None;
    let mut backoff = Duration::from_secs(1);
    let mut said_waiting = false;
    loop {
        let leading = *leader.borrow_and_update();
        let trust_domain = policy.policy().trust_domain;
        let wait = match load(client.clone(), &namespace, &trust_domain, leading).await {
            Ok((pem, origin)) => {
                backoff = Duration::from_secs(1);
                if in_force.as_ref() != Some(&pem) {
                    match CertificateAuthority::new(&pem) {
                        Ok(ca) => {
                            let first = in_force.is_none();
                            tracing::info!(
                                namespace = %namespace,
                                origin = ?origin,
                                subject = ca.subject(),
                                roots = ca.root_count(),
                                "{}",
                                if first { "mesh CA loaded" } else { "the CA Secret changed: mesh CA reloaded" }
                            );
                            tx.send_replace(Some(Arc::new(ca)));
                            in_force = Some(pem);
                        }
                        Err(e) => {
                            tracing::error!(namespace = %namespace, error = %e, "the CA Secret does not load; the CA in force (if any) stays")
                        }
                    }
                }
                RECHECK
            }
            Err(CaError::NotYetCreated { .. }) => {
                if !said_waiting {
                    tracing::info!(namespace = %namespace, secret = CA_SECRET, "waiting for the leader to create the mesh CA");
                    said_waiting = true;
                }
                FOLLOWER_RETRY
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot load the mesh CA");
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            // Leadership won while waiting for the CA: create it now.
            changed = leader.changed(), if in_force.is_none() => {
                if changed.is_err() {
                    // The elector is gone; keep following at the recheck pace.
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}
