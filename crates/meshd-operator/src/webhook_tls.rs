//! The webhook's TLS: a CA and a serving certificate for `meshd.meshd-system.svc` in Secret
//! `meshd-webhook-tls` (keys `tls.crt`, `tls.key`, `ca.crt`). The CA key signs once, at CA creation, and
//! is never stored: rotation makes a new CA. During a rotation `ca.crt` carries the new CA and the previous
//! one (while it is valid), so API servers holding either trust the webhook and no admission fails.
//! One Secret serves all meshes (one webhook server), so it has no owner reference.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{Patch, PatchParams};
use meshd_api::names;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::Error;

pub const KEY_CERT: &str = "tls.crt";
pub const KEY_KEY: &str = "tls.key";
pub const KEY_CA: &str = "ca.crt";

/// A serving certificate, its key and the CA bundle clients should trust (all PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_bundle: String,
}

/// What `ensure` did to the Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsChange {
    Unchanged,
    Created,
    Rotated,
    /// An expired previous CA was dropped from `ca.crt`.
    Pruned,
}

/// The names the serving certificate covers: the Service's, plus the `--webhook-url` host.
pub fn serving_hosts(webhook_url: Option<&str>) -> Result<Vec<String>, Error> {
    let svc = format!(
        "{}.{}",
        names::CONTROL_PLANE_SERVICE,
        names::SYSTEM_NAMESPACE
    );
    let mut hosts = vec![
        format!("{svc}.svc"),
        format!("{svc}.svc.{}", names::DEFAULT_CLUSTER_DOMAIN),
        svc,
        names::CONTROL_PLANE_SERVICE.to_string(),
    ];
    if let Some(url) = webhook_url {
        let host = url_host(url).ok_or_else(|| Error::WebhookUrl(url.to_string()))?;
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    Ok(hosts)
}

/// `https://HOST:PORT/path` → HOST (brackets of an IPv6 literal removed).
fn url_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// A new CA and a serving certificate it signed, valid from `not_before` for `validity`. `previous_ca`
/// (PEM) is appended to the bundle when given.
pub fn issue(
    hosts: &[String],
    not_before: SystemTime,
    validity: Duration,
    previous_ca: Option<&str>,
) -> Result<WebhookCert, Error> {
    let not_after = not_before + validity;
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "meshd webhook CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = not_before.into();
    ca_params.not_after = not_after.into();
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(Error::Certificate)?)
            .map_err(Error::Certificate)?;
    let mut leaf = CertificateParams::new(hosts.to_vec()).map_err(Error::Certificate)?;
    leaf.distinguished_name
        .push(DnType::CommonName, names::CONTROL_PLANE_SERVER_NAME);
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.not_before = not_before.into();
    leaf.not_after = not_after.into();
    let leaf_key = KeyPair::generate().map_err(Error::Certificate)?;
    let cert = leaf
        .signed_by(&leaf_key, &*ca)
        .map_err(Error::Certificate)?;
    let mut ca_bundle = ca.as_ref().pem();
    if let Some(prev) = previous_ca {
        ca_bundle.push_str(prev);
    }
    Ok(WebhookCert {
        cert_pem: cert.pem(),
        key_pem: leaf_key.serialize_pem(),
        ca_bundle,
    })
}

/// One certificate of a PEM bundle: its text and validity (unix seconds).
#[derive(Clone, Debug)]
pub struct PemCert {
    pub pem: String,
    pub not_before: i64,
    pub not_after: i64,
}

/// The certificates of a PEM bundle, in order; None when any block does not parse.
pub fn parse_bundle(pem: &[u8]) -> Option<Vec<PemCert>> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.ok()?;
        let cert = block.parse_x509().ok()?;
        let v = cert.validity();
        let text = format!(
            "-----BEGIN CERTIFICATE-----\n{}-----END CERTIFICATE-----\n",
            wrap64(&base64_encode(&block.contents))
        );
        out.push(PemCert {
            pem: text,
            not_before: v.not_before.timestamp(),
            not_after: v.not_after.timestamp(),
        });
    }
    (!out.is_empty()).then_some(out)
}

/// What the Secret's contents call for at `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Fresh,
    /// Missing or unreadable: issue from scratch.
    Missing,
    /// Under a third of the serving certificate's validity left; carries the CA to keep in the bundle.
    RotationDue {
        previous_ca: Option<String>,
    },
    /// A CA in the bundle expired; carries the bundle without it.
    Prune {
        ca_bundle: String,
    },
}

pub fn verdict(data: &BTreeMap<String, ByteString>, now: SystemTime) -> Verdict {
    let now = unix(now);
    let (Some(cert), Some(_), Some(ca)) = (data.get(KEY_CERT), data.get(KEY_KEY), data.get(KEY_CA))
    else {
        return Verdict::Missing;
    };
    let (Some(cert), Some(cas)) = (parse_bundle(&cert.0), parse_bundle(&ca.0)) else {
        return Verdict::Missing;
    };
    let leaf = &cert[0];
    let total = leaf.not_after - leaf.not_before;
    if (leaf.not_after - now) * 3 < total {
        // The bundle's first CA is the one that signed the current certificate.
        let previous_ca = cas
            .first()
            .filter(|c| c.not_after > now)
            .map(|c| c.pem.clone());
        return Verdict::RotationDue { previous_ca };
    }
    if cas.iter().any(|c| c.not_after <= now) {
        let ca_bundle: String = cas
            .iter()
            .filter(|c| c.not_after > now)
            .map(|c| c.pem.as_str())
            .collect();
        return Verdict::Prune { ca_bundle };
    }
    Verdict::Fresh
}

/// Make sure the Secret holds a usable certificate; returns the CA bundle to publish in caBundle.
/// `cached` is the Secret from the watch cache: when it is fresh nothing is read; when it calls for a
/// write, the server's copy is read first (the cache may not have our own last write yet, and issuing
/// twice would rotate twice).
pub async fn ensure(
    client: &kube::Client,
    cached: Option<&Secret>,
    hosts: &[String],
    validity: Duration,
    now: SystemTime,
) -> Result<(String, TlsChange), Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), names::SYSTEM_NAMESPACE);
    let mut data = cached.and_then(|s| s.data.clone()).unwrap_or_default();
    if verdict(&data, now) != Verdict::Fresh {
        let live = api
            .get_opt(names::WEBHOOK_TLS_SECRET)
            .await
            .map_err(Error::kube("get", "secret"))?;
        data = live.and_then(|s| s.data).unwrap_or_default();
    }
    let (cert, change) = match verdict(&data, now) {
        Verdict::Fresh => {
            let ca = String::from_utf8_lossy(&data[KEY_CA].0).into_owned();
            return Ok((ca, TlsChange::Unchanged));
        }
        Verdict::Missing => (issue(hosts, now, validity, None)?, TlsChange::Created),
        Verdict::RotationDue { previous_ca } => (
            issue(hosts, now, validity, previous_ca.as_deref())?,
            TlsChange::Rotated,
        ),
        Verdict::Prune { ca_bundle } => {
            let text = |k: &str| String::from_utf8_lossy(&data[k].0).into_owned();
            (
                WebhookCert {
                    cert_pem: text(KEY_CERT),
                    key_pem: text(KEY_KEY),
                    ca_bundle,
                },
                TlsChange::Pruned,
            )
        }
    };
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(names::WEBHOOK_TLS_SECRET.into()),
            namespace: Some(names::SYSTEM_NAMESPACE.into()),
            labels: Some([(names::LABEL_MANAGED_BY.to_string(), "meshd".to_string())].into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                (KEY_CERT.to_string(), ByteString(cert.cert_pem.into_bytes())),
                (KEY_KEY.to_string(), ByteString(cert.key_pem.into_bytes())),
                (
                    KEY_CA.to_string(),
                    ByteString(cert.ca_bundle.clone().into_bytes()),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    };
    let params = PatchParams::apply(names::FIELD_MANAGER).force();
    api.patch(names::WEBHOOK_TLS_SECRET, &params, &Patch::Apply(&secret))
        .await
        .map_err(Error::kube("apply", "secret"))?;
    tracing::info!(
        secret = names::WEBHOOK_TLS_SECRET,
        ?change,
        "webhook certificate written"
    );
    Ok((cert.ca_bundle, change))
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn wrap64(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 64 + 1);
    for chunk in s.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 output is ASCII"));
        out.push('\n');
    }
    out
}

fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

    fn data(c: &WebhookCert) -> BTreeMap<String, ByteString> {
        [
            (
                KEY_CERT.to_string(),
                ByteString(c.cert_pem.clone().into_bytes()),
            ),
            (
                KEY_KEY.to_string(),
                ByteString(c.key_pem.clone().into_bytes()),
            ),
            (
                KEY_CA.to_string(),
                ByteString(c.ca_bundle.clone().into_bytes()),
            ),
        ]
        .into()
    }

    #[test]
    fn url_host_handles_dns_ipv4_ipv6() {
        assert_eq!(
            url_host("https://10.0.0.5:8443/inject").as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            url_host("https://[fd00::1]:8443/inject").as_deref(),
            Some("fd00::1")
        );
        assert_eq!(
            url_host("https://dev.example.com/inject").as_deref(),
            Some("dev.example.com")
        );
        assert_eq!(url_host("http://x/inject"), None);
        assert!(
            serving_hosts(Some("https://10.0.0.5:8443/inject"))
                .unwrap()
                .contains(&"10.0.0.5".to_string())
        );
    }

    #[test]
    fn fresh_then_rotation_due_after_two_thirds() {
        let now = SystemTime::now();
        let hosts = serving_hosts(None).unwrap();
        let c = issue(&hosts, now, YEAR, None).unwrap();
        assert_eq!(verdict(&data(&c), now), Verdict::Fresh);
        let later = now + YEAR * 7 / 10;
        let Verdict::RotationDue {
            previous_ca: Some(prev),
        } = verdict(&data(&c), later)
        else {
            panic!("expected rotation with the previous CA kept");
        };
        assert_eq!(
            prev, c.ca_bundle,
            "the re-encoded CA must equal rcgen's PEM"
        );
        let rotated = issue(&hosts, later, YEAR, Some(&prev)).unwrap();
        assert_eq!(parse_bundle(rotated.ca_bundle.as_bytes()).unwrap().len(), 2);
        // Once the old CA expired it is pruned.
        let Verdict::Prune { ca_bundle } =
            verdict(&data(&rotated), now + YEAR + Duration::from_secs(60))
        else {
            panic!("expected the expired CA to be pruned");
        };
        assert_eq!(parse_bundle(ca_bundle.as_bytes()).unwrap().len(), 1);
        assert_eq!(verdict(&BTreeMap::new(), now), Verdict::Missing);
    }
}
