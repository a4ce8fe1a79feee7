//! gRPC SDS (state of the world, `StreamSecrets`) on the agent's Unix socket `<config-dir>/sds.sock`,
//! mode 0600: only the agent's own uid (Envoy, its child) may connect, since the answer holds the key.
//! `default` is the workload's chain and key, `ROOTCA` the trust bundle from the CA's answer (SPEC §9).
//! A renewed certificate is pushed on every open stream; Envoy swaps it in for new handshakes and keeps
//! established connections.

use std::collections::BTreeSet;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret, TlsCertificate, secret,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::{
    SecretDiscoveryService, SecretDiscoveryServiceServer,
};
use envoy_types::pb::google::protobuf::Any;
use futures::Stream;
use meshd_translate::{SDS_DEFAULT, SDS_ROOTCA};
use prost::{Message, Name};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status, Streaming};

use super::{WorkloadCertificate, WorkloadIdentity};
use crate::AgentError;

fn inline(bytes: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(
            bytes.as_bytes().to_vec(),
        )),
        ..Default::default()
    })
}

/// The named secret from a certificate; `None` for a name the agent does not serve.
fn secret(name: &str, cert: &WorkloadCertificate) -> Option<Secret> {
    let kind = match name {
        SDS_DEFAULT => secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: inline(&cert.chain_pem),
            private_key: inline(&cert.key_pem),
            ..Default::default()
        }),
        SDS_ROOTCA => secret::Type::ValidationContext(CertificateValidationContext {
            trusted_ca: inline(&cert.roots_pem),
            ..Default::default()
        }),
        _ => return None,
    };
    Some(Secret {
        name: name.to_string(),
        r#type: Some(kind),
    })
}

#[derive(Clone)]
struct Sds {
    identity: WorkloadIdentity,
    nonce: Arc<AtomicU64>,
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl Sds {
    /// The version is the certificate's serial: a new certificate is a new version.
    fn response(&self, names: &BTreeSet<String>, cert: &WorkloadCertificate) -> DiscoveryResponse {
        let resources = names
            .iter()
            .filter_map(|n| secret(n, cert))
            .map(|s| Any {
                type_url: Secret::type_url(),
                value: s.encode_to_vec(),
            })
            .collect();
        DiscoveryResponse {
            version_info: cert.serial.clone(),
            resources,
            type_url: Secret::type_url(),
            nonce: self.nonce.fetch_add(1, Ordering::Relaxed).to_string(),
            ..Default::default()
        }
    }
}

/// One stream: answer the names Envoy subscribes to, and push each new certificate.
async fn stream(
    sds: Sds,
    mut requests: Streaming<DiscoveryRequest>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
) {
    let mut certificates = sds.identity.certificates();
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut sent: Option<(String, BTreeSet<String>)> = None;
    loop {
        tokio::select! {
            request = requests.message() => {
                let request = match request {
                    Ok(Some(r)) => r,
                    Ok(None) | Err(_) => return,
                };
                if let Some(error) = &request.error_detail {
                    tracing::warn!(names = ?request.resource_names, error = %error.message, "Envoy rejected a secret");
                }
                names = request.resource_names.into_iter().collect();
                for unknown in names.iter().filter(|n| *n != SDS_DEFAULT && *n != SDS_ROOTCA) {
                    tracing::warn!(name = %unknown, "Envoy asks for a secret the agent does not serve");
                }
                if names.iter().any(|n| n == SDS_DEFAULT || n == SDS_ROOTCA) {
                    sds.identity.want();
                }
            }
            changed = certificates.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let cert = certificates.borrow_and_update().clone();
        let Some(cert) = cert else { continue };
        let now = (cert.serial.clone(), names.clone());
        if names.is_empty() || sent.as_ref() == Some(&now) {
            continue;
        }
        let response = sds.response(&names, &cert);
        tracing::info!(names = ?names, serial = %cert.serial, "secrets sent to Envoy");
        if tx.send(Ok(response)).await.is_err() {
            return;
        }
        sent = Some(now);
    }
}

#[tonic::async_trait]
impl SecretDiscoveryService for Sds {
    type DeltaSecretsStream = ResponseStream<DeltaDiscoveryResponse>;
    type StreamSecretsStream = ResponseStream<DiscoveryResponse>;

    async fn delta_secrets(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        Err(Status::unimplemented(
            "the agent serves SDS state of the world (api_type GRPC)",
        ))
    }

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(stream(self.clone(), request.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch_secrets(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let names: BTreeSet<String> = request.into_inner().resource_names.into_iter().collect();
        self.identity.want();
        let cert = self.identity.certificates().borrow().clone();
        match cert {
            Some(cert) => Ok(Response::new(self.response(&names, &cert))),
            None => Err(Status::unavailable("no workload certificate yet")),
        }
    }
}

fn listen_error(path: &Path) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |source| AgentError::Sds {
        path: path.to_path_buf(),
        source,
    }
}

/// Serves SDS on `path` (a stale socket there is replaced) until the task is aborted.
pub async fn serve(
    path: PathBuf,
    identity: WorkloadIdentity,
) -> Result<JoinHandle<()>, AgentError> {
    let listener = crate::socket::bind(&path).map_err(listen_error(&path))?;
    tracing::info!(path = %path.display(), "SDS for Envoy");
    let sds = Sds {
        identity,
        nonce: Arc::new(AtomicU64::new(1)),
    };
    Ok(tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(SecretDiscoveryServiceServer::new(sds))
            .serve_with_incoming(UnixListenerStream::new(listener))
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "SDS server stopped");
        }
    }))
}
