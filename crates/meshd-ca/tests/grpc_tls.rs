//! `CreateCertificate` end to end over real TLS: a tonic server with the CA's serving certificate for
//! `meshd.meshd-system.svc`, the agent's client verifying it against the mesh root, credentials from
//! token Secrets in a config directory. The identity comes from the token only.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshd_ca::client::{self, ClientTls};
use meshd_ca::proto::IstioCertificateRequest;
use meshd_ca::{CaMetrics, CaPem, CertificateAuthority, CertificateService, ConfigDir};
use meshd_translate::XdsAddress;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use x509_parser::prelude::*;

const TOKENS: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-token\n  namespace: shop\n  annotations: {kubernetes.io/service-account.name: web}\ntype: kubernetes.io/service-account-token\nstringData: {token: web-token-value}\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: db-token\n  namespace: shop\n  annotations: {kubernetes.io/service-account.name: db}\ntype: kubernetes.io/service-account-token\ndata: {token: ZGItdG9rZW4tdmFsdWU=}\n";
const MESH: &str = "apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec:\n  trustDomain: example.org\n  mtls: {mode: STRICT, certificateTTL: 2h}\n";
const SERVER_NAME: &str = "meshd.meshd-system.svc";

struct Server {
    address: XdsAddress,
    tls: ClientTls,
    registry: Arc<std::sync::Mutex<prometheus_client::registry::Registry>>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokens.yaml"), TOKENS).unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), MESH).unwrap();
    let pem = CaPem::self_signed("example.org", SystemTime::now()).unwrap();
    let ca = Arc::new(CertificateAuthority::new(&pem).unwrap());
    let serving = ca
        .issue_serving(
            &[SERVER_NAME.to_string()],
            Duration::from_secs(3_600),
            SystemTime::now(),
        )
        .unwrap();
    let config = Arc::new(ConfigDir::new(dir.path(), "default"));
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = CaMetrics::new(&mut registry);
    let service = CertificateService::new(Arc::new(ca.clone()), config.clone(), config, metrics);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let identity = tonic::transport::Identity::from_pem(serving.cert_chain_pem, serving.key_pem);
    tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .unwrap()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    Server {
        address: XdsAddress::Tcp {
            host: "127.0.0.1".into(),
            port,
        },
        tls: ClientTls {
            ca_pem: ca.roots_pem().as_bytes().to_vec(),
            server_name: SERVER_NAME.into(),
        },
        registry: Arc::new(std::sync::Mutex::new(registry)),
        _dir: dir,
    }
}

impl Server {
    async fn ask(
        &self,
        token: &str,
        csr: &str,
        validity: i64,
    ) -> Result<Vec<String>, tonic::Status> {
        let channel = client::connect(&self.address, Some(&self.tls))
            .await
            .unwrap();
        client::create_certificate(
            channel,
            token,
            IstioCertificateRequest {
                csr: csr.to_string(),
                validity_duration: validity,
                metadata: None,
            },
        )
        .await
        .map(|r| r.cert_chain)
    }

    fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry.lock().unwrap())
            .unwrap();
        text
    }
}

fn leaf_facts(pem: &str) -> (Vec<String>, i64) {
    let der = &common::ders(pem)[0];
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let sans = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    let v = cert.validity();
    (sans, v.not_after.timestamp() - v.not_before.timestamp())
}

#[tokio::test]
async fn the_token_decides_the_identity_whatever_the_csr_says() {
    let server = start().await;
    let (_, csr) = common::csr(&[
        "spiffe://example.org/ns/kube-system/sa/admin",
        "db.shop.svc",
    ]);
    let chain = server.ask("web-token-value", &csr, 0).await.unwrap();
    let (sans, _) = leaf_facts(&chain[0]);
    assert_eq!(sans, ["URI(spiffe://example.org/ns/shop/sa/web)"]);
    common::verify(&chain[..chain.len() - 1], chain.last().unwrap()).unwrap();
    let chain = server.ask("db-token-value", &csr, 0).await.unwrap();
    assert_eq!(
        leaf_facts(&chain[0]).0,
        ["URI(spiffe://example.org/ns/shop/sa/db)"]
    );
}

#[tokio::test]
async fn the_lifetime_is_the_mesh_ttl_or_a_shorter_request() {
    let server = start().await;
    let (_, csr) = common::csr(&[]);
    let backdate = 60;
    let ttl = 2 * 3_600;
    let default = server.ask("web-token-value", &csr, 0).await.unwrap();
    assert_eq!(leaf_facts(&default[0]).1, ttl + backdate);
    let shorter = server.ask("web-token-value", &csr, 600).await.unwrap();
    assert_eq!(leaf_facts(&shorter[0]).1, 600 + backdate);
    let longer = server
        .ask("web-token-value", &csr, 10 * 86_400)
        .await
        .unwrap();
    assert_eq!(leaf_facts(&longer[0]).1, ttl + backdate);
}

#[tokio::test]
async fn refusals_are_unauthenticated_or_invalid_and_counted() {
    let server = start().await;
    let (_, csr) = common::csr(&[]);
    let cases = [
        ("", Code::Unauthenticated, "no bearer token"),
        (
            "web-token-valu",
            Code::Unauthenticated,
            "matches no service-account-token Secret",
        ),
    ];
    for (token, code, words) in cases {
        let status = server.ask(token, &csr, 0).await.unwrap_err();
        assert_eq!(status.code(), code, "{token:?}: {status:?}");
        assert!(status.message().contains(words), "{token:?}: {status:?}");
        assert!(!status.message().contains("web-token"), "{status:?}");
    }
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let csr384 = rcgen::CertificateParams::default()
        .serialize_request(&p384)
        .unwrap()
        .pem()
        .unwrap();
    let status = server.ask("web-token-value", &csr384, 0).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("ECDSA P-384"), "{status:?}");
    assert!(status.message().contains("P-256"), "{status:?}");
    server.ask("web-token-value", &csr, 0).await.unwrap();
    let metrics = server.metrics();
    assert!(
        metrics.contains("meshd_certificate_requests_total{result=\"refused\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meshd_certificate_requests_total{result=\"issued\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_client_refuses_a_server_outside_the_mesh_root() {
    let server = start().await;
    let stranger = CaPem::self_signed("example.org", SystemTime::now()).unwrap();
    let tls = ClientTls {
        ca_pem: stranger.root_cert.into_bytes(),
        server_name: SERVER_NAME.into(),
    };
    assert!(client::connect(&server.address, Some(&tls)).await.is_err());
    let wrong_name = ClientTls {
        server_name: "meshd.other.svc".into(),
        ..server.tls.clone()
    };
    assert!(
        client::connect(&server.address, Some(&wrong_name))
            .await
            .is_err()
    );
}
