//! A workload's CSR, read with x509-parser: its signature is verified (the requester holds the key) and
//! its key must be ECDSA P-256. Everything else in it (subject, SANs, extensions) is ignored: the CA
//! decides the certificate's contents from the authenticated identity alone.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;

use crate::CaError;

/// The one thing taken from a CSR: its P-256 public key (the uncompressed point).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct P256PublicKey(pub Vec<u8>);

impl rcgen::PublicKeyData for P256PublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// Reads a PEM CSR, verifies its self-signature and returns its P-256 key.
pub(crate) fn public_key(pem: &str) -> Result<P256PublicKey, CaError> {
    let refuse = |reason: &str| CaError::Csr(reason.to_string());
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|_| refuse("not a PEM block (expected -----BEGIN CERTIFICATE REQUEST-----)"))?;
    if !block.label.contains("CERTIFICATE REQUEST") {
        return Err(CaError::Csr(format!(
            "the PEM block is {:?}, not CERTIFICATE REQUEST",
            block.label
        )));
    }
    let (_, csr) = X509CertificationRequest::from_der(&block.contents)
        .map_err(|e| CaError::Csr(format!("not a PKCS#10 request: {e}")))?;
    csr.verify_signature()
        .map_err(|_| refuse("its signature does not verify with its own public key"))?;
    let spki = &csr.certification_request_info.subject_pki;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    if spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY && curve == Some(OID_EC_P256) {
        return Ok(P256PublicKey(spki.subject_public_key.data.to_vec()));
    }
    let found = if spki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION {
        "RSA".to_string()
    } else if spki.algorithm.algorithm == OID_SIG_ED25519 {
        "Ed25519".to_string()
    } else if spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        match curve {
            Some(c) if c == OID_NIST_EC_P384 => "ECDSA P-384".to_string(),
            Some(c) if c == OID_NIST_EC_P521 => "ECDSA P-521".to_string(),
            Some(c) => format!("EC on curve {c}"),
            None => "EC without a named curve".to_string(),
        }
    } else {
        format!("of algorithm {}", spki.algorithm.algorithm)
    };
    Err(CaError::Csr(format!(
        "its key is {found}; meshd issues ECDSA P-256 certificates only (generate a P-256 key)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr_with(alg: &'static rcgen::SignatureAlgorithm) -> String {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["spiffe://evil/ns/x/sa/y".to_string()]).unwrap();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn a_p256_csr_gives_its_key() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        assert_eq!(public_key(&csr).unwrap().0, key.public_key_raw());
    }

    #[test]
    fn other_key_types_are_refused_by_name() {
        for (alg, name) in [
            (&rcgen::PKCS_ECDSA_P384_SHA384, "ECDSA P-384"),
            (&rcgen::PKCS_ED25519, "Ed25519"),
        ] {
            let err = public_key(&csr_with(alg)).unwrap_err().to_string();
            assert!(
                err.contains(name) && err.contains("ECDSA P-256 certificates only"),
                "{err}"
            );
        }
    }

    #[test]
    fn garbage_and_tampered_requests_are_refused() {
        let err = public_key("hello").unwrap_err().to_string();
        assert!(err.contains("not a PEM block"), "{err}");
        let cert = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        let err = public_key(&cert.cert.pem()).unwrap_err().to_string();
        assert!(err.contains("not CERTIFICATE REQUEST"), "{err}");
        // Flip one byte inside the signed part: the signature no longer verifies.
        let good = csr_with(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, block) = x509_parser::pem::parse_x509_pem(good.as_bytes()).unwrap();
        let mut der = block.contents.clone();
        let i = der.len() / 3;
        der[i] ^= 0x01;
        let tampered = pem_wrap(&der);
        assert!(public_key(&tampered).is_err());
    }

    fn pem_wrap(der: &[u8]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            lines.join("\n")
        )
    }
}
