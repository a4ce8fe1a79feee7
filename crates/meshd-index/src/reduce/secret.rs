//! Secret of type `kubernetes.io/tls` → [`facts::TlsCredential`] (SPEC §10): `tls.crt`, `tls.key` and,
//! optionally, `ca.crt`, from `data` (base64, decoded by the API types) or `stringData` (which wins, as
//! the API server merges it over `data`). Each is checked as PEM: a certificate chain, one private key.
//! A problem names the Secret and the field, never the key's bytes. Secrets of other types contribute
//! nothing (the file source also sees the config dir's service-account-token Secrets, which the CA
//! reads on its own).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use meshd_translate::facts::{self, Fact, FactKind, ObjectKey};
use x509_parser::pem::Pem;

use crate::ReduceError;
use crate::kinds::Kind;

/// The Secret type of TLS credentials.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

pub struct TlsSecretKind;

impl Kind for TlsSecretKind {
    type Object = Secret;
    const FACT: FactKind = FactKind::TlsCredential;
    /// In-cluster only TLS Secrets are watched: meshd never sees other Secrets' contents.
    const FIELD_SELECTOR: Option<&'static str> = Some("type=kubernetes.io/tls");

    fn reduce(secret: &Secret, key: &ObjectKey) -> Result<Option<Fact>, ReduceError> {
        if secret.type_.as_deref() != Some(TLS_SECRET_TYPE) {
            return Ok(None);
        }
        let field = |k: &str| -> Option<(String, Vec<u8>)> {
            if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(k)) {
                return Some((format!("stringData[{k}]"), v.clone().into_bytes()));
            }
            let v = secret.data.as_ref().and_then(|d| d.get(k))?;
            Some((format!("data[{k}]"), v.0.clone()))
        };
        let error = |path: &str, problem: &str| ReduceError::field("Secret", key, path, problem);
        let required = |k: &str| {
            field(k)
                .ok_or_else(|| error(&format!("data[{k}]"), "is required (in data or stringData)"))
        };
        let (cert_path, cert_chain) = required("tls.crt")?;
        certificates(&cert_chain).map_err(|p| error(&cert_path, &p))?;
        let (key_path, key_pem) = required("tls.key")?;
        private_key(&key_pem).map_err(|p| error(&key_path, &p))?;
        let ca = match field("ca.crt") {
            Some((path, ca)) => {
                certificates(&ca).map_err(|p| error(&path, &p))?;
                Some(ca)
            }
            None => None,
        };
        Ok(Some(Fact::TlsCredential(Arc::new(facts::TlsCredential {
            cert_chain,
            key: key_pem,
            ca,
        }))))
    }
}

/// Every PEM block of `pem`, or what is wrong (without its content).
fn blocks(pem: &[u8]) -> Result<Vec<Pem>, String> {
    let blocks: Vec<Pem> = Pem::iter_from_buffer(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("is not PEM ({e})"))?;
    if blocks.is_empty() {
        return Err("is not PEM (no -----BEGIN block)".into());
    }
    Ok(blocks)
}

/// One or more X.509 certificates in PEM.
fn certificates(pem: &[u8]) -> Result<(), String> {
    for (i, block) in blocks(pem)?.iter().enumerate() {
        if block.label != "CERTIFICATE" {
            return Err(format!(
                "block {} is {:?}, not a CERTIFICATE",
                i + 1,
                block.label
            ));
        }
        if let Err(e) = block.parse_x509() {
            return Err(format!(
                "block {} does not parse as an X.509 certificate ({e})",
                i + 1
            ));
        }
    }
    Ok(())
}

/// Exactly one private key in PEM (PKCS#8, PKCS#1 or SEC1), a DER structure. Errors never quote it.
fn private_key(pem: &[u8]) -> Result<(), String> {
    let blocks = blocks(pem)?;
    let [block] = blocks.as_slice() else {
        return Err(format!(
            "holds {} PEM blocks; one private key is expected",
            blocks.len()
        ));
    };
    if !matches!(
        block.label.as_str(),
        "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY"
    ) {
        return Err(format!("is {:?}, not a PRIVATE KEY", block.label));
    }
    match x509_parser::der_parser::parse_der(&block.contents) {
        Ok((rest, object)) if rest.is_empty() && object.as_sequence().is_ok() => Ok(()),
        _ => Err("does not parse as a private key (bad DER)".into()),
    }
}

#[cfg(test)]
#[path = "secret_tests.rs"]
mod tests;
