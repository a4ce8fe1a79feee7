//! Gateway TLS credentials (SPEC §10): `kubernetes.io/tls` Secrets as Envoy SDS `Secret`s, named as
//! Istio names them so that a listener's `sds_config` finds them over ADS:
//! `kubernetes://<secret>` (certificate chain and key) and `kubernetes://<secret>-cacert` (the client
//! CA, `ca.crt`, for MUTUAL). A proxy only ever gets the Secrets of its own namespace, and only gateway
//! proxies get any: they are a proxy's own resources, never shared.

use std::collections::BTreeSet;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, SdsSecretConfig, Secret, TlsCertificate, secret,
};

use crate::facts::{ObjectKey, TlsCredential};
use crate::resources::Resource;

/// The SDS name prefix of a Gateway credential: `kubernetes://<secret name>`.
pub const CREDENTIAL_SDS_PREFIX: &str = "kubernetes://";
/// Appended to a credential's SDS name for its client CA (`ca.crt`).
pub const CREDENTIAL_CA_SUFFIX: &str = "-cacert";

/// Credentials by Secret (namespace, name): a persistent map, shared by every compiled generation.
pub type Credentials = imbl::OrdMap<ObjectKey, Arc<TlsCredential>>;

/// `kubernetes://<secret>`: what a gateway listener's TLS names for `credentialName: <secret>`.
pub fn credential_sds_name(secret: &str) -> String {
    format!("{CREDENTIAL_SDS_PREFIX}{secret}")
}

/// `kubernetes://<secret>-cacert`: the client CA of a MUTUAL server.
pub fn credential_ca_sds_name(secret: &str) -> String {
    format!("{CREDENTIAL_SDS_PREFIX}{secret}{CREDENTIAL_CA_SUFFIX}")
}

/// How a gateway listener names a credential (`kubernetes://<secret>` or its `-cacert`): SDS over
/// ADS, from the control plane. No initial fetch timeout: the listener stays warming until the Secret
/// arrives (so the gateway is not ready without its certificate) instead of starting without it after
/// Envoy's default 15 s.
pub fn credential_sds_config(sds_name: &str) -> SdsSecretConfig {
    let mut source = crate::envoy::ads();
    source.initial_fetch_timeout = Some(envoy_types::pb::google::protobuf::Duration {
        seconds: 0,
        nanos: 0,
    });
    SdsSecretConfig {
        name: sds_name.to_string(),
        sds_config: Some(source),
    }
}

/// How an upstream cluster names a credential (a DestinationRule's `tls.credentialName`): SDS over
/// ADS with Envoy's initial fetch timeout (15 s), as Istio's. A proxy whose namespace has no such
/// Secret is never answered; its cluster waits that long, then comes up with its TLS handshakes
/// failing, instead of holding the proxy's whole config back for ever.
pub fn upstream_credential_sds_config(sds_name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: sds_name.to_string(),
        sds_config: Some(crate::envoy::ads()),
    }
}

fn inline(bytes: &[u8]) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(bytes.to_vec())),
        ..Default::default()
    })
}

/// The SDS `Secret`s for `names` (SDS names as above) from the credentials of `namespace`, sorted by
/// name. A name that is not a credential's (no such Secret in that namespace, a `-cacert` of a Secret
/// without `ca.crt`, not a `kubernetes://` name) is skipped.
pub(crate) fn credential_resources(
    credentials: &Credentials,
    namespace: &str,
    names: &BTreeSet<String>,
) -> Vec<Arc<Resource>> {
    let mut out = Vec::new();
    for name in names {
        let Some(rest) = name.strip_prefix(CREDENTIAL_SDS_PREFIX) else {
            continue;
        };
        let lookup = |secret: &str| credentials.get(&ObjectKey::new(namespace, secret));
        // `<secret>` first: a Secret may itself be named `x-cacert`.
        let kind = match lookup(rest) {
            Some(c) => Some(secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: inline(&c.cert_chain),
                private_key: inline(&c.key),
                ..Default::default()
            })),
            None => rest
                .strip_suffix(CREDENTIAL_CA_SUFFIX)
                .and_then(lookup)
                .and_then(|c| c.ca.as_deref())
                .map(|ca| {
                    secret::Type::ValidationContext(CertificateValidationContext {
                        trusted_ca: inline(ca),
                        ..Default::default()
                    })
                }),
        };
        if let Some(kind) = kind {
            let secret = Secret {
                name: name.clone(),
                r#type: Some(kind),
            };
            out.push(Resource::new(name.clone(), &secret));
        }
    }
    out
}

/// Every SDS name the credentials of `namespace` can answer: each Secret's, and its `-cacert` when it
/// has `ca.crt`. A gateway proxy may fetch these (as Istio lets a gateway read its namespace's TLS
/// Secrets); Envoy asks by name, so only what its listeners reference goes out.
pub(crate) fn credential_names(credentials: &Credentials, namespace: &str) -> BTreeSet<String> {
    let from = ObjectKey::new(namespace, String::new());
    let mut out = BTreeSet::new();
    for (key, c) in credentials.range(from..) {
        if key.namespace != namespace {
            break;
        }
        out.insert(credential_sds_name(&key.name));
        if c.ca.is_some() {
            out.insert(credential_ca_sds_name(&key.name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
    use prost::Message;

    use super::*;

    fn credential(tag: &str, ca: bool) -> Arc<TlsCredential> {
        Arc::new(TlsCredential {
            cert_chain: format!("cert-{tag}").into_bytes(),
            key: format!("key-{tag}").into_bytes(),
            ca: ca.then(|| format!("ca-{tag}").into_bytes()),
        })
    }

    fn decode(r: &Resource) -> Secret {
        Secret::decode(r.body.value.as_slice()).expect("a Secret")
    }

    fn inline_of(d: &Option<DataSource>) -> Vec<u8> {
        match d.as_ref().and_then(|d| d.specifier.clone()) {
            Some(data_source::Specifier::InlineBytes(b)) => b,
            other => panic!("not inline bytes: {other:?}"),
        }
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_credential_becomes_a_tls_certificate_and_its_ca_a_validation_context() {
        let mut creds = Credentials::new();
        creds.insert(ObjectKey::new("edge", "web"), credential("web", true));
        let out = credential_resources(
            &creds,
            "edge",
            &names(&["kubernetes://web", "kubernetes://web-cacert"]),
        );
        assert_eq!(out.len(), 2);
        let cert = decode(&out[0]);
        assert_eq!(cert.name, "kubernetes://web");
        let Some(secret::Type::TlsCertificate(tls)) = &cert.r#type else {
            panic!("{cert:?}");
        };
        assert_eq!(inline_of(&tls.certificate_chain), b"cert-web");
        assert_eq!(inline_of(&tls.private_key), b"key-web");
        let ca = decode(&out[1]);
        assert_eq!(ca.name, "kubernetes://web-cacert");
        let Some(secret::Type::ValidationContext(v)) = &ca.r#type else {
            panic!("{ca:?}");
        };
        assert_eq!(inline_of(&v.trusted_ca), b"ca-web");
        assert_eq!(out[0].name.as_ref(), "kubernetes://web");
    }

    #[test]
    fn only_the_namespace_asked_for_and_only_known_names() {
        let mut creds = Credentials::new();
        creds.insert(ObjectKey::new("edge", "web"), credential("edge", false));
        creds.insert(ObjectKey::new("other", "web"), credential("other", true));
        creds.insert(ObjectKey::new("other", "api"), credential("api", false));
        let asked = names(&[
            "kubernetes://web",
            "kubernetes://web-cacert", // edge/web has no ca.crt
            "kubernetes://api",        // only in another namespace
            "default",                 // the agent's, not a credential
            "web",
        ]);
        let out = credential_resources(&creds, "edge", &asked);
        let got: Vec<&str> = out.iter().map(|r| &*r.name).collect();
        assert_eq!(got, ["kubernetes://web"]);
        let Some(secret::Type::TlsCertificate(tls)) = decode(&out[0]).r#type else {
            panic!("a certificate");
        };
        assert_eq!(inline_of(&tls.certificate_chain), b"cert-edge");
        let other = credential_resources(&creds, "other", &asked);
        let got: Vec<&str> = other.iter().map(|r| &*r.name).collect();
        assert_eq!(
            got,
            [
                "kubernetes://api",
                "kubernetes://web",
                "kubernetes://web-cacert"
            ]
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let c = TlsCredential {
            cert_chain: b"CERT".to_vec(),
            key: b"-----BEGIN PRIVATE KEY-----SECRETBYTES".to_vec(),
            ca: None,
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("SECRETBYTES") && !shown.contains("PRIVATE"),
            "{shown}"
        );
    }
}
