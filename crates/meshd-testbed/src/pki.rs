//! A throwaway certificate authority for tests, demos and the load tool: a CA and server certificates
//! it signs, as PEM. Never for production (the controller's CA issues the webhook's certificate there).

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A CA whose root (`ca_pem`) clients trust.
pub struct DevCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl DevCa {
    pub fn new() -> Result<Self, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "meshd dev CA");
        Ok(Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate()?)?,
        })
    }

    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` (DNS names or IP addresses), signed by this CA.
    pub fn issue(&self, names: &[&str]) -> Result<IssuedCert, rcgen::Error> {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl IssuedCert {
    /// A `kubernetes.io/tls` Secret holding this certificate and key (`stringData`), and `ca.crt` when
    /// given (a MUTUAL gateway's client CA): a gateway credential in a config directory.
    pub fn tls_secret_yaml(&self, name: &str, namespace: &str, ca_pem: Option<&str>) -> String {
        let block = |pem: &str| -> String {
            pem.lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        };
        let mut out = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            block(&self.cert_pem),
            block(&self.key_pem)
        );
        if let Some(ca) = ca_pem {
            out.push_str(&format!("  ca.crt: |\n{}", block(ca)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_secret_keeps_the_pem_lines() {
        let ca = DevCa::new().unwrap();
        let cert = ca.issue(&["shop.example.com"]).unwrap();
        let yaml = cert.tls_secret_yaml("shop-cert", "demo", Some(&ca.ca_pem()));
        assert!(yaml.contains("type: kubernetes.io/tls"), "{yaml}");
        for (key, pem) in [
            ("tls.crt", &cert.cert_pem),
            ("tls.key", &cert.key_pem),
            ("ca.crt", &ca.ca_pem()),
        ] {
            let at = yaml.find(&format!("  {key}: |\n")).expect(key);
            let first = pem.lines().next().unwrap();
            assert!(
                yaml[at..].contains(&format!("    {first}\n")),
                "{key}: {yaml}"
            );
        }
        assert!(!cert.tls_secret_yaml("x", "demo", None).contains("ca.crt"));
    }
}
