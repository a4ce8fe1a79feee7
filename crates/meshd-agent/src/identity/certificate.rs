//! The workload's key and certificate: a fresh ECDSA P-256 key for every request, generated here and
//! kept in memory only (it reaches Envoy inline over SDS, never a file), and the CA's answer checked
//! before it is served: the leaf must be for this key, and the chain must end with the trust bundle.

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, KeyPair, SanType};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// A key and the CSR for it, before the CA answered.
pub(crate) struct Request {
    key: KeyPair,
    pub csr_pem: String,
}

/// What the agent serves: `default` (chain + key) and `ROOTCA` (bundle).
#[derive(Clone)]
pub(crate) struct WorkloadCertificate {
    /// The leaf and any intermediates, PEM.
    pub chain_pem: String,
    pub key_pem: String,
    /// The trust bundle from the CA's answer (every root during a rotation).
    pub roots_pem: String,
    /// The SPIFFE URI of the leaf.
    pub identity: String,
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl fmt::Debug for WorkloadCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadCertificate")
            .field("identity", &self.identity)
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl WorkloadCertificate {
    pub fn expired(&self, now: SystemTime) -> bool {
        now >= self.not_after
    }
}

/// A new key and a CSR carrying `spiffe_hint` (the identity the agent expects; the CA ignores it and
/// takes the identity from the token).
pub(crate) fn request(spiffe_hint: &str) -> Result<Request, String> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("generating a P-256 key: {e}"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Ok(uri) = rcgen::string::Ia5String::try_from(spiffe_hint) {
        params.subject_alt_names = vec![SanType::URI(uri)];
    }
    let csr_pem = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| format!("writing the CSR: {e}"))?;
    Ok(Request { key, csr_pem })
}

fn first_der(pem: &str) -> Result<Vec<u8>, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    Ok(block.contents)
}

fn time(t: x509_parser::time::ASN1Time) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
}

impl Request {
    /// Checks the CA's `cert_chain` (leaf, intermediates…, bundle) against this request's key.
    pub fn accept(self, chain: Vec<String>) -> Result<WorkloadCertificate, String> {
        if chain.len() < 2 {
            return Err(format!(
                "the CA answered {} certificate(s); expected the leaf and the root",
                chain.len()
            ));
        }
        let der = first_der(&chain[0])?;
        let (_, leaf) =
            X509Certificate::from_der(&der).map_err(|e| format!("the leaf does not parse: {e}"))?;
        if leaf
            .tbs_certificate
            .subject_pki
            .subject_public_key
            .data
            .as_ref()
            != self.key.public_key_raw()
        {
            return Err("the leaf is not for the key this agent sent".into());
        }
        let identity = leaf
            .subject_alternative_name()
            .ok()
            .flatten()
            .and_then(|san| {
                san.value.general_names.iter().find_map(|n| match n {
                    GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some(uri.to_string()),
                    _ => None,
                })
            })
            .ok_or("the leaf carries no SPIFFE identity")?;
        let serial = leaf.raw_serial_as_string().replace(':', "");
        let not_before = time(leaf.validity().not_before);
        let not_after = time(leaf.validity().not_after);
        let roots_pem = chain.last().cloned().unwrap_or_default();
        first_der(&roots_pem).map_err(|e| format!("the trust bundle: {e}"))?;
        let chain_pem = chain[..chain.len() - 1].concat();
        Ok(WorkloadCertificate {
            chain_pem,
            key_pem: self.key.serialize_pem(),
            roots_pem,
            identity,
            serial,
            not_before,
            not_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> meshd_ca::CertificateAuthority {
        let pem = meshd_ca::CaPem::self_signed("cluster.local", SystemTime::now()).unwrap();
        meshd_ca::CertificateAuthority::new(&pem).unwrap()
    }

    #[test]
    fn an_answer_for_our_key_is_accepted() {
        let ca = ca();
        let req = request("spiffe://cluster.local/ns/shop/sa/web").unwrap();
        let issued = ca
            .issue_workload(
                &req.csr_pem,
                "spiffe://cluster.local/ns/shop/sa/web",
                Duration::from_secs(60),
                SystemTime::now(),
            )
            .unwrap();
        let cert = req.accept(issued.chain.clone()).unwrap();
        assert_eq!(cert.identity, "spiffe://cluster.local/ns/shop/sa/web");
        assert_eq!(cert.serial, issued.serial);
        assert_eq!(cert.roots_pem, ca.roots_pem());
        assert_eq!(cert.chain_pem, issued.chain[0]);
        assert!(cert.key_pem.contains("PRIVATE KEY"));
        assert!(!format!("{cert:?}").contains("PRIVATE KEY"));
        assert!(!cert.expired(SystemTime::now()));
        assert!(cert.expired(cert.not_after));
    }

    #[test]
    fn an_answer_for_another_key_or_without_root_is_refused() {
        let ca = ca();
        let mine = request("spiffe://x").unwrap();
        let other = request("spiffe://x").unwrap();
        let issued = ca
            .issue_workload(
                &other.csr_pem,
                "spiffe://cluster.local/ns/a/sa/b",
                Duration::from_secs(60),
                SystemTime::now(),
            )
            .unwrap();
        let err = mine.accept(issued.chain.clone()).unwrap_err();
        assert!(err.contains("not for the key"), "{err}");
        let err = other.accept(issued.chain[..1].to_vec()).unwrap_err();
        assert!(err.contains("expected the leaf and the root"), "{err}");
    }
}
