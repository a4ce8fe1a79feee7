//! The workload's identity (SPEC §9): the agent asks the mesh CA for a certificate with the bearer token
//! of `--token-file`, serves it to Envoy over SDS ([`sds`]) as `default` (chain + key) and `ROOTCA` (the
//! CA's trust bundle), and asks again at half-life. The key lives in this process only.
//!
//! When is a certificate needed? The agent cannot know the mesh's mTLS mode before Envoy's first config,
//! so: with a credential (the token file exists) it asks before Envoy starts, and Envoy starts once the
//! CA has answered — with a certificate, or with a refusal or "no CA here" (the mesh may not need one;
//! then it stops asking). Whenever Envoy's config names a secret (its first SDS request) and there is no
//! valid certificate, the agent asks (again) and reports not-ready until it has one: that is how a mode
//! change reaches a running agent. The token is never sent over plaintext TCP.

mod certificate;
mod sds;

pub use sds::serve as serve_sds;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use meshd_ca::client::{self, ClientTls};
use meshd_ca::proto::IstioCertificateRequest;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tonic::Code;

pub(crate) use certificate::WorkloadCertificate;

use crate::AgentSettings;
use crate::settings::CaSettings;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the CA's last answer meant for the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Not asked yet.
    Pending,
    Issued,
    /// The control plane runs no CA (`UNIMPLEMENTED`).
    NoCa,
    /// A refusal (bad token, bad request) or no credential to send: retried, but Envoy may start.
    Refused(String),
}

struct Inner {
    ca: CaSettings,
    spiffe_hint: String,
    current: watch::Sender<Option<Arc<WorkloadCertificate>>>,
    answer: watch::Sender<Answer>,
    /// The loop asks the CA: at start when a credential exists, and whenever Envoy asks.
    active: AtomicBool,
    /// Envoy asked for a secret: without a valid certificate the agent is not ready.
    needed: AtomicBool,
    wake: Notify,
}

/// The agent's certificate and the task that keeps it fresh. Cheap to clone.
#[derive(Clone)]
pub struct WorkloadIdentity(Arc<Inner>);

impl std::fmt::Debug for WorkloadIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadIdentity")
            .field("ca", &self.0.ca.address.to_string())
            .finish_non_exhaustive()
    }
}

impl WorkloadIdentity {
    /// Starts asking the CA (in the background) when a credential exists or Envoy asks.
    pub fn start(settings: &AgentSettings, cancel: CancellationToken) -> Self {
        let account = settings.service_account.as_deref().unwrap_or("default");
        let spiffe_hint = format!(
            "spiffe://{}/ns/{}/sa/{account}",
            settings.trust_domain, settings.node.namespace
        );
        let inner = Arc::new(Inner {
            ca: settings.ca.clone(),
            spiffe_hint,
            current: watch::channel(None).0,
            answer: watch::channel(Answer::Pending).0,
            active: AtomicBool::new(settings.ca.token_file.exists()),
            needed: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let me = Self(inner);
        tokio::spawn(me.clone().run(cancel));
        me
    }

    /// Envoy asked for `default`: get a certificate if there is none.
    pub(crate) fn want(&self) {
        if !self.0.needed.swap(true, Ordering::SeqCst) {
            tracing::info!("Envoy asks for the workload certificate");
        }
        self.0.active.store(true, Ordering::SeqCst);
        self.0.wake.notify_one();
    }

    pub(crate) fn certificates(&self) -> watch::Receiver<Option<Arc<WorkloadCertificate>>> {
        self.0.current.subscribe()
    }

    /// Resolves when Envoy may start: at once without a credential, else after the CA's first answer.
    pub async fn ready_for_envoy(&self) {
        if !self.0.active.load(Ordering::SeqCst) {
            return;
        }
        let mut answers = self.0.answer.subscribe();
        let _ = answers.wait_for(|a| *a != Answer::Pending).await;
    }

    /// `Err(why)` while Envoy's config needs a certificate and there is no valid one (not ready).
    pub fn readiness(&self) -> Result<(), String> {
        if !self.0.needed.load(Ordering::SeqCst) {
            return Ok(());
        }
        match self.0.current.borrow().as_ref() {
            Some(c) if !c.expired(SystemTime::now()) => Ok(()),
            Some(c) => Err(format!("the workload certificate {} expired", c.serial)),
            None => Err(match &*self.0.answer.borrow() {
                Answer::Refused(why) => format!("no workload certificate: {why}"),
                Answer::NoCa => "no workload certificate: the control plane runs no CA".into(),
                _ => "waiting for the workload certificate".into(),
            }),
        }
    }

    async fn run(self, cancel: CancellationToken) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            if !self.0.active.load(Ordering::SeqCst) {
                tokio::select! {
                    () = self.0.wake.notified() => continue,
                    () = cancel.cancelled() => return,
                }
            }
            let wait = match self.fetch().await {
                Ok(cert) => {
                    backoff = FIRST_BACKOFF;
                    let wait = meshd_ca::schedule::until_renewal(
                        SystemTime::now(),
                        cert.not_before,
                        cert.not_after,
                    );
                    tracing::info!(identity = %cert.identity, serial = %cert.serial, renew_in = ?wait, "workload certificate in force");
                    self.0.current.send_replace(Some(Arc::new(cert)));
                    self.0.answer.send_replace(Answer::Issued);
                    wait
                }
                Err(answer) => {
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    // Nobody needs a certificate yet (the mesh may run without mTLS): stop asking
                    // until Envoy does, rather than retrying a refusal forever.
                    let settled = matches!(answer, Answer::NoCa | Answer::Refused(_));
                    if settled && !self.0.needed.load(Ordering::SeqCst) && !self.valid_now() {
                        self.0.active.store(false, Ordering::SeqCst);
                    }
                    if answer != Answer::Pending {
                        self.0.answer.send_replace(answer);
                    }
                    wait
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                // Envoy asking again does not cut a renewal wait short while a certificate is valid.
                () = self.0.wake.notified(), if !self.valid_now() => {}
                () = cancel.cancelled() => return,
            }
        }
    }

    fn valid_now(&self) -> bool {
        self.0
            .current
            .borrow()
            .as_ref()
            .is_some_and(|c| !c.expired(SystemTime::now()))
    }

    /// One request; the error is what the failure means (`Pending` = unreachable, retry quietly).
    async fn fetch(&self) -> Result<WorkloadCertificate, Answer> {
        let ca = &self.0.ca;
        let token = match std::fs::read_to_string(&ca.token_file) {
            Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
            Ok(_) | Err(_) => {
                let why = format!("no credential in --token-file {}", ca.token_file.display());
                tracing::error!(reason = %why, "cannot ask the CA for a certificate");
                return Err(Answer::Refused(why));
            }
        };
        if matches!(ca.address, meshd_translate::XdsAddress::Tcp { .. }) && ca.tls.is_none() {
            let why = "the CA address is TCP without TLS; the token is sent only over TLS or a Unix socket".to_string();
            tracing::error!(address = %ca.address, reason = %why, "cannot ask the CA for a certificate");
            return Err(Answer::Refused(why));
        }
        let tls = match &ca.tls {
            Some((server_name, file)) => match std::fs::read(file) {
                Ok(ca_pem) => Some(ClientTls {
                    ca_pem,
                    server_name: server_name.clone(),
                }),
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "cannot read --ca-file; retrying");
                    return Err(Answer::Pending);
                }
            },
            None => None,
        };
        let request = certificate::request(&self.0.spiffe_hint).map_err(|e| {
            tracing::error!(error = %e, "cannot make a CSR");
            Answer::Pending
        })?;
        let channel = client::connect(&ca.address, tls.as_ref()).await.map_err(|e| {
            tracing::warn!(address = %ca.address, error = %crate::error::error_chain(&e), "the CA is not reachable; retrying");
            Answer::Pending
        })?;
        let answer = client::create_certificate(
            channel,
            &token,
            IstioCertificateRequest {
                csr: request.csr_pem.clone(),
                validity_duration: 0,
                metadata: None,
            },
        )
        .await;
        match answer {
            Ok(response) => request.accept(response.cert_chain).map_err(|e| {
                tracing::error!(error = %e, "the CA's answer is not usable");
                Answer::Refused(e)
            }),
            Err(status) if status.code() == Code::Unimplemented => {
                tracing::info!(address = %ca.address, "the control plane runs no CA; Envoy gets no certificate until it has one");
                Err(Answer::NoCa)
            }
            Err(status)
                if matches!(
                    status.code(),
                    Code::Unauthenticated | Code::PermissionDenied | Code::InvalidArgument
                ) =>
            {
                tracing::error!(code = ?status.code(), reason = status.message(), "the CA refused the certificate request");
                Err(Answer::Refused(format!(
                    "the CA refused: {}",
                    status.message()
                )))
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), reason = status.message(), "certificate request failed; retrying");
                Err(Answer::Pending)
            }
        }
    }
}
