//! The mesh CA (SPEC §9): the key pair that signs workload certificates, and Istio's CA API in front of
//! it, so that a workload proves its service account with a bearer token and gets an ECDSA P-256
//! certificate for `spiffe://<trustDomain>/ns/<ns>/sa/<sa>`.
//!
//! - [`CertificateAuthority`]: the signing certificate, its chain and the trusted roots; issues leaf
//!   certificates from CSRs ([`authority`], pure apart from the clock and randomness).
//! - Where the key pair lives: a directory ([`ca_dir`], `meshd controlplane --ca-dir`) or Secrets
//!   `meshd-cacerts` / `meshd-ca` ([`cluster`], in-cluster).
//! - Who may ask: an [`Authenticator`] turns a bearer token into a [`ServiceAccount`]: token Secrets in
//!   the config directory ([`auth::ConfigDirTokens`]) or a TokenReview ([`auth::TokenReviewer`]).
//! - [`CertificateService`]: `istio.v1.auth.IstioCertificateService/CreateCertificate` over gRPC, and
//!   [`client`] for the agent's side of it.
//! - [`schedule`]: lifetimes and the renewal point (pure).

#![forbid(unsafe_code)]

pub mod auth;
pub mod authority;
pub mod ca_dir;
pub mod client;
pub mod cluster;
mod config_dir;
mod csr;
mod error;
mod metrics;
pub mod proto;
pub mod schedule;
mod service;

pub use auth::{AuthError, Authenticator, ServiceAccount};
pub use authority::{CaPem, CertificateAuthority, IssuedCertificate, ServingCertificate};
pub use config_dir::ConfigDir;
pub use error::CaError;
pub use metrics::CaMetrics;
pub use service::{CaSource, CertificateService, IssuancePolicy, PolicySource};

/// SPIFFE identity of a service account: `spiffe://<trustDomain>/ns/<ns>/sa/<sa>` (SPEC §6).
pub fn spiffe_id(trust_domain: &str, account: &ServiceAccount) -> String {
    format!(
        "spiffe://{trust_domain}/ns/{}/sa/{}",
        account.namespace, account.name
    )
}
