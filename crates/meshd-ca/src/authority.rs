//! The CA's key pair and what it signs. The four PEM texts of SPEC §9 (`ca-cert.pem`, `ca-key.pem`,
//! `cert-chain.pem`, `root-cert.pem`) are checked once when loaded: the key belongs to the signing
//! certificate, that certificate is a CA, the chain links up signature by signature, and it ends at a
//! root in `root-cert.pem`. `root-cert.pem` may hold several roots (a root rotation): all of them are
//! handed to workloads as their trust bundle.

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::schedule::{self, Validity};
use crate::{CaError, csr};

/// File (and Secret key) names, SPEC §9.
pub const CA_CERT: &str = "ca-cert.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const CERT_CHAIN: &str = "cert-chain.pem";
pub const ROOT_CERT: &str = "root-cert.pem";

/// How long a root meshd makes itself is valid (Istio's self-signed root: 10 years).
pub const SELF_SIGNED_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);

/// The CA's four PEM texts. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct CaPem {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert_chain: String,
    pub root_cert: String,
}

impl fmt::Debug for CaPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaPem")
            .field("ca_cert", &self.ca_cert)
            .field("ca_key", &"<redacted>")
            .field("cert_chain", &self.cert_chain)
            .field("root_cert", &self.root_cert)
            .finish()
    }
}

impl CaPem {
    /// A new self-signed root (ECDSA P-256, [`SELF_SIGNED_VALIDITY`]) for `trust_domain`: it signs
    /// workload certificates itself, so `ca-cert.pem`, `cert-chain.pem` and `root-cert.pem` are equal.
    pub fn self_signed(trust_domain: &str, now: SystemTime) -> Result<Self, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(CaError::Sign)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, trust_domain);
        params
            .distinguished_name
            .push(DnType::CommonName, "meshd root CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial()?);
        params.not_before = (now - schedule::MAX_BACKDATE).into();
        params.not_after = (now + SELF_SIGNED_VALIDITY).into();
        let cert = params.self_signed(&key).map_err(CaError::Sign)?;
        let pem = cert.pem();
        Ok(Self {
            ca_cert: pem.clone(),
            ca_key: key.serialize_pem(),
            cert_chain: pem.clone(),
            root_cert: pem,
        })
    }
}

/// A workload certificate: `chain` is the CA API's `cert_chain` (leaf, intermediates, then the trust
/// bundle as one entry, as Istio's CA answers).
#[derive(Clone, Debug)]
pub struct IssuedCertificate {
    pub chain: Vec<String>,
    pub serial: String,
    pub validity: Validity,
}

/// The control plane's own serving certificate (chain and key, PEM).
#[derive(Clone)]
pub struct ServingCertificate {
    pub cert_chain_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for ServingCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingCertificate")
            .field("cert_chain_pem", &self.cert_chain_pem)
            .finish_non_exhaustive()
    }
}

/// A loaded, checked CA that signs.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    /// What follows a leaf in a chain: the signing certificate and any intermediates, roots left out.
    intermediates: Vec<String>,
    roots: String,
    root_count: usize,
    not_after: SystemTime,
    subject: String,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("subject", &self.subject)
            .field("roots", &self.root_count)
            .field("intermediates", &self.intermediates.len())
            .finish_non_exhaustive()
    }
}

/// Every PEM `CERTIFICATE` block of `text`, as DER.
fn certificates(what: &str, text: &str) -> Result<Vec<Vec<u8>>, CaError> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(text.as_bytes()) {
        let block = block.map_err(|e| CaError::material(what, format!("not PEM: {e}")))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    if out.is_empty() {
        return Err(CaError::material(what, "holds no PEM CERTIFICATE"));
    }
    Ok(out)
}

fn parse<'a>(what: &str, der: &'a [u8]) -> Result<X509Certificate<'a>, CaError> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| CaError::material(what, format!("not an X.509 certificate: {e}")))
}

fn signed_by(child: &X509Certificate<'_>, parent: &X509Certificate<'_>) -> bool {
    child.issuer() == parent.subject()
        && child
            .verify_signature(Some(&parent.tbs_certificate.subject_pki))
            .is_ok()
}

fn pem_of(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn system_time(t: x509_parser::time::ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    match u64::try_from(secs) {
        Ok(s) => SystemTime::UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// 128 random bits, positive: serials must be unique and unpredictable (CA/B BR 7.1).
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CaError::material("serial number", "the system random source failed"))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl CertificateAuthority {
    /// Checks and loads the four PEM texts.
    pub fn new(pem: &CaPem) -> Result<Self, CaError> {
        let signing_der = certificates(CA_CERT, &pem.ca_cert)?.swap_remove(0);
        let signing = parse(CA_CERT, &signing_der)?;
        let is_ca = signing
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(CaError::material(
                CA_CERT,
                "is not a CA certificate (basicConstraints CA:TRUE is missing)",
            ));
        }
        let key = KeyPair::from_pem(&pem.ca_key).map_err(|e| {
            CaError::material(CA_KEY, format!("not a PKCS#8 EC, RSA or Ed25519 key ({e})"))
        })?;
        if key.public_key_raw()
            != signing
                .tbs_certificate
                .subject_pki
                .subject_public_key
                .data
                .as_ref()
        {
            return Err(CaError::material(
                CA_KEY,
                format!("is not the key of {CA_CERT}"),
            ));
        }
        let chain_der = certificates(CERT_CHAIN, &pem.cert_chain)?;
        if chain_der[0] != signing_der {
            return Err(CaError::material(
                CERT_CHAIN,
                format!("must start with the certificate of {CA_CERT}"),
            ));
        }
        let chain: Vec<X509Certificate<'_>> = chain_der
            .iter()
            .map(|d| parse(CERT_CHAIN, d))
            .collect::<Result<_, _>>()?;
        for (i, pair) in chain.windows(2).enumerate() {
            if !signed_by(&pair[0], &pair[1]) {
                return Err(CaError::material(
                    CERT_CHAIN,
                    format!(
                        "certificate {} is not signed by certificate {}",
                        i + 1,
                        i + 2
                    ),
                ));
            }
        }
        let roots_der = certificates(ROOT_CERT, &pem.root_cert)?;
        let roots: Vec<X509Certificate<'_>> = roots_der
            .iter()
            .map(|d| parse(ROOT_CERT, d))
            .collect::<Result<_, _>>()?;
        let top_der = chain_der
            .last()
            .expect("certificates() returns at least one");
        let top = chain.last().expect("as many parsed as DER");
        let anchored = roots_der.contains(top_der) || roots.iter().any(|r| signed_by(top, r));
        if !anchored {
            return Err(CaError::material(
                CERT_CHAIN,
                format!("does not lead to a certificate in {ROOT_CERT}"),
            ));
        }
        let intermediates = chain_der
            .iter()
            .filter(|d| !roots_der.contains(d))
            .map(|d| pem_of(d))
            .collect();
        let not_after = system_time(signing.validity().not_after);
        let subject = signing.subject().to_string();
        let issuer = Issuer::from_ca_cert_der(&signing_der.clone().into(), key)
            .map_err(|e| CaError::material(CA_CERT, e))?;
        let roots_pem: String = roots_der.iter().map(|d| pem_of(d)).collect();
        Ok(Self {
            issuer,
            intermediates,
            roots: roots_pem,
            root_count: roots_der.len(),
            not_after,
            subject,
        })
    }

    /// The trust bundle (every root of `root-cert.pem`), PEM.
    pub fn roots_pem(&self) -> &str {
        &self.roots
    }

    /// How many roots the bundle holds (2 during a root rotation).
    pub fn root_count(&self) -> usize {
        self.root_count
    }

    /// Expiry of the signing certificate; no certificate is issued beyond it.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The signing certificate's subject, for logs.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Signs the CSR's key for `spiffe_id`, living `lifetime` from `now`. Only the CSR's key is used.
    pub fn issue_workload(
        &self,
        csr_pem: &str,
        spiffe_id: &str,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<IssuedCertificate, CaError> {
        let key = csr::public_key(csr_pem)?;
        let uri = rcgen::string::Ia5String::try_from(spiffe_id)
            .map_err(|e| CaError::material("SPIFFE identity", e))?;
        let validity = schedule::validity(now, lifetime, self.not_after);
        let mut params = leaf_params(validity)?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let serial = hex(params
            .serial_number
            .as_ref()
            .map_or(&[][..], |s| s.as_ref()));
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(CaError::Sign)?;
        let mut chain = Vec::with_capacity(self.intermediates.len() + 2);
        chain.push(cert.pem());
        chain.extend(self.intermediates.iter().cloned());
        chain.push(self.roots.clone());
        Ok(IssuedCertificate {
            chain,
            serial,
            validity,
        })
    }

    /// A serving certificate for the control plane (DNS names and IP addresses), with a new P-256 key.
    pub fn issue_serving(
        &self,
        names: &[String],
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<ServingCertificate, CaError> {
        let validity = schedule::validity(now, lifetime, self.not_after);
        let mut params = leaf_params(validity)?;
        for name in names {
            let san = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    name.as_str()
                        .try_into()
                        .map_err(|e| CaError::material(format!("server name {name:?}"), e))?,
                ),
            };
            params.subject_alt_names.push(san);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(CaError::Sign)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(CaError::Sign)?;
        let mut cert_chain_pem = cert.pem();
        for pem in &self.intermediates {
            cert_chain_pem.push_str(pem);
        }
        Ok(ServingCertificate {
            cert_chain_pem,
            key_pem: key.serialize_pem(),
        })
    }
}

/// What every leaf shares: no subject (the identity is the SAN, marked critical by rcgen for an empty
/// subject), not a CA, signature and key-agreement use, a random serial, the authority key id.
fn leaf_params(validity: Validity) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    params.not_before = validity.not_before.into();
    params.not_after = validity.not_after.into();
    Ok(params)
}
