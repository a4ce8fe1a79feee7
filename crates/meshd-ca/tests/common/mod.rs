//! Test PKI and certificate inspection for the CA's tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshd_ca::CaPem;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};

/// An intermediate CA signed by `root`: `ca-cert.pem` the intermediate, `cert-chain.pem` intermediate +
/// root, `root-cert.pem` the root.
pub fn intermediate(root: &CaPem, name: &str) -> CaPem {
    let root_key = KeyPair::from_pem(&root.ca_key).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&root.ca_cert, root_key).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(60)).into();
    params.not_after = (now + Duration::from_secs(365 * 86_400)).into();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    CaPem {
        ca_cert: cert.pem(),
        ca_key: key.serialize_pem(),
        cert_chain: format!("{}{}", cert.pem(), root.ca_cert),
        root_cert: root.root_cert.clone(),
    }
}

/// A P-256 key and a CSR for it asking for `sans` (which the CA must ignore).
pub fn csr(sans: &[&str]) -> (KeyPair, String) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "system:admin");
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    (key, csr)
}

pub fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Verifies a client chain (leaf, intermediates...) against a PEM root bundle, as a TLS server would.
pub fn verify(leaf_and_intermediates: &[String], roots_pem: &str) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for der in ders(roots_pem) {
        roots.add(der).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
    let certs: Vec<CertificateDer<'static>> = leaf_and_intermediates
        .iter()
        .flat_map(|p| ders(p))
        .collect();
    verifier
        .verify_client_cert(&certs[0], &certs[1..], UnixTime::now())
        .map(|_| ())
}
