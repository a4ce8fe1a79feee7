//! `istio.v1.auth.IstioCertificateService/CreateCertificate` as a tonic service, to be added to the xDS
//! server's routes (SPEC §9: the CA rides on the xDS listener). A request is authenticated by its bearer
//! token, the identity taken from the token alone, the lifetime capped by the mesh's TTL. Every
//! answer is counted; a refusal is logged with its reason and the peer, never with the token.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use meshd_api::MeshSpec;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};

use crate::auth::{AuthError, Authenticator, bearer_token};
use crate::proto::{
    CREATE_CERTIFICATE, IstioCertificateRequest, IstioCertificateResponse, SERVICE_NAME,
};
use crate::{CaError, CaMetrics, CertificateAuthority, schedule};

/// What the Mesh says about issuance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuancePolicy {
    pub trust_domain: String,
    /// `Mesh.spec.mtls.certificateTTL`.
    pub ttl: Duration,
}

impl IssuancePolicy {
    /// From a resolved Mesh spec; an invalid TTL (refused by the CRD schema and `validate`) falls back
    /// to the default.
    pub fn from_mesh(spec: &MeshSpec) -> Self {
        let default =
            meshd_api::mesh::parse_certificate_ttl(meshd_api::mesh::DEFAULT_CERTIFICATE_TTL)
                .expect("the default TTL is valid");
        Self {
            trust_domain: spec.trust_domain.clone(),
            ttl: spec.mtls.certificate_ttl().unwrap_or(default),
        }
    }
}

/// Where the current policy comes from: the config directory (file-fed) or the Mesh the controller
/// watches (in-cluster, through a `watch` channel).
pub trait PolicySource: Send + Sync + 'static {
    fn policy(&self) -> IssuancePolicy;
}

impl PolicySource for IssuancePolicy {
    fn policy(&self) -> IssuancePolicy {
        self.clone()
    }
}

impl PolicySource for tokio::sync::watch::Receiver<IssuancePolicy> {
    fn policy(&self) -> IssuancePolicy {
        self.borrow().clone()
    }
}

/// Where the current CA comes from: loaded once, or re-read when its files change.
pub trait CaSource: Send + Sync + 'static {
    fn authority(&self) -> Result<Arc<CertificateAuthority>, CaError>;
}

impl CaSource for Arc<CertificateAuthority> {
    fn authority(&self) -> Result<Arc<CertificateAuthority>, CaError> {
        Ok(Arc::clone(self))
    }
}

struct Inner {
    ca: Arc<dyn CaSource>,
    authenticator: Arc<dyn Authenticator>,
    policy: Arc<dyn PolicySource>,
    metrics: CaMetrics,
}

/// The CA's gRPC service.
#[derive(Clone)]
pub struct CertificateService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CertificateService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateService").finish_non_exhaustive()
    }
}

impl CertificateService {
    pub fn new(
        ca: Arc<dyn CaSource>,
        authenticator: Arc<dyn Authenticator>,
        policy: Arc<dyn PolicySource>,
        metrics: CaMetrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                ca,
                authenticator,
                policy,
                metrics,
            }),
        }
    }

    /// Answers one request (the gRPC plumbing aside): what tests and benchmarks call directly.
    pub async fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "local".to_string(), |a| a.to_string());
        let result = self.answer(request).await;
        self.inner.metrics.count(result.is_ok());
        match result {
            Ok((response, identity, serial, not_after)) => {
                tracing::info!(%identity, serial, not_after = ?not_after, %peer, "certificate issued");
                Ok(Response::new(response))
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), reason = status.message(), %peer, "certificate request refused");
                Err(status)
            }
        }
    }

    async fn answer(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<(IstioCertificateResponse, String, String, SystemTime), Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let token = bearer_token(header).map_err(auth_status)?;
        let account = self
            .inner
            .authenticator
            .authenticate(token)
            .await
            .map_err(auth_status)?;
        let policy = self.inner.policy.policy();
        let identity = crate::spiffe_id(&policy.trust_domain, &account);
        let body = request.into_inner();
        let lifetime = schedule::lifetime(body.validity_duration, policy.ttl);
        let ca = self
            .inner
            .ca
            .authority()
            .map_err(|e| Status::unavailable(format!("the CA is not available: {e}")))?;
        let issued = ca
            .issue_workload(&body.csr, &identity, lifetime, SystemTime::now())
            .map_err(|e| match e {
                CaError::Csr(_) => Status::invalid_argument(e.to_string()),
                other => Status::internal(other.to_string()),
            })?;
        Ok((
            IstioCertificateResponse {
                cert_chain: issued.chain,
            },
            identity,
            issued.serial,
            issued.validity.not_after,
        ))
    }
}

fn auth_status(e: AuthError) -> Status {
    match e {
        AuthError::Unavailable(_) => Status::unavailable(e.to_string()),
        AuthError::Missing | AuthError::Invalid(_) => Status::unauthenticated(e.to_string()),
    }
}

struct CreateCertificate(CertificateService);

impl UnaryService<IstioCertificateRequest> for CreateCertificate {
    type Response = IstioCertificateResponse;
    type Future = BoxFuture<'static, Result<Response<Self::Response>, Status>>;

    fn call(&mut self, request: Request<IstioCertificateRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.create_certificate(request).await })
    }
}

impl NamedService for CertificateService {
    const NAME: &'static str = SERVICE_NAME;
}

impl tower::Service<http::Request<Body>> for CertificateService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != CREATE_CERTIFICATE {
            let status = Status::unimplemented(format!(
                "{} has one method, CreateCertificate",
                SERVICE_NAME
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let method = CreateCertificate(self.clone());
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(method, request).await)
        })
    }
}
