//! TLS Secrets: `data` and `stringData`, the optional `ca.crt`, other types ignored, and every
//! malformed credential refused with an error naming the Secret and the field, never the key.

use k8s_openapi::api::core::v1::Secret;
use meshd_translate::facts::{Fact, ObjectKey};

use super::TlsSecretKind;
use crate::kinds::Kind;

/// A self-signed certificate and its key, PEM.
fn pki() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("a key");
    let params =
        rcgen::CertificateParams::new(vec!["web.example.com".to_string()]).expect("params");
    let cert = params.self_signed(&key).expect("a certificate");
    (cert.pem(), key.serialize_pem())
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn secret(value: serde_json::Value) -> Secret {
    let mut doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "web-cert", "namespace": "edge"},
        "type": "kubernetes.io/tls",
    });
    for (k, v) in value.as_object().expect("fields").clone() {
        doc[k] = v;
    }
    serde_json::from_value(doc).expect("a Secret")
}

fn reduce(s: &Secret) -> Result<Option<Fact>, crate::ReduceError> {
    TlsSecretKind::reduce(s, &ObjectKey::new("edge", "web-cert"))
}

fn credential(s: &Secret) -> std::sync::Arc<meshd_translate::facts::TlsCredential> {
    match reduce(s) {
        Ok(Some(Fact::TlsCredential(c))) => c,
        other => panic!("not a credential: {other:?}"),
    }
}

#[test]
fn data_and_string_data_give_the_same_credential() {
    let (cert, key) = pki();
    let from_data = credential(&secret(serde_json::json!({
        "data": {"tls.crt": b64(&cert), "tls.key": b64(&key)},
    })));
    let from_string = credential(&secret(serde_json::json!({
        "stringData": {"tls.crt": cert, "tls.key": key},
    })));
    assert_eq!(from_data, from_string);
    assert_eq!(from_data.cert_chain, cert.as_bytes());
    assert_eq!(from_data.key, key.as_bytes());
    assert_eq!(from_data.ca, None);
}

#[test]
fn ca_crt_is_kept_and_string_data_wins_over_data() {
    let (cert, key) = pki();
    let (ca, _) = pki();
    let (other, _) = pki();
    let c = credential(&secret(serde_json::json!({
        "data": {"tls.crt": b64(&other), "tls.key": b64(&key), "ca.crt": b64(&ca)},
        "stringData": {"tls.crt": cert},
    })));
    assert_eq!(c.cert_chain, cert.as_bytes(), "stringData over data");
    assert_eq!(c.ca.as_deref(), Some(ca.as_bytes()));
}

#[test]
fn other_secret_types_contribute_nothing() {
    let mut s = secret(serde_json::json!({"stringData": {"token": "t"}}));
    s.type_ = Some("kubernetes.io/service-account-token".into());
    assert_eq!(reduce(&s), Ok(None));
    s.type_ = None;
    assert_eq!(reduce(&s), Ok(None));
}

#[test]
fn a_malformed_credential_names_the_field_and_never_the_key() {
    let (cert, key) = pki();
    let key_body = key.lines().nth(1).expect("a base64 line").to_string();
    let cases = [
        (
            serde_json::json!({"stringData": {"tls.crt": cert}}),
            "Secret edge/web-cert: data[tls.key]: is required (in data or stringData)",
        ),
        (
            serde_json::json!({"stringData": {"tls.key": key}}),
            "Secret edge/web-cert: data[tls.crt]: is required (in data or stringData)",
        ),
        (
            serde_json::json!({"stringData": {"tls.crt": "hello", "tls.key": key}}),
            "Secret edge/web-cert: stringData[tls.crt]: is not PEM",
        ),
        (
            serde_json::json!({"stringData": {"tls.crt": key, "tls.key": key}}),
            "Secret edge/web-cert: stringData[tls.crt]: block 1 is \"PRIVATE KEY\", not a CERTIFICATE",
        ),
        (
            serde_json::json!({"stringData": {"tls.crt": cert, "tls.key": cert}}),
            "Secret edge/web-cert: stringData[tls.key]: is \"CERTIFICATE\", not a PRIVATE KEY",
        ),
        (
            serde_json::json!({"stringData": {
                "tls.crt": cert,
                "tls.key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            }}),
            "Secret edge/web-cert: stringData[tls.key]: does not parse as a private key (bad DER)",
        ),
        (
            serde_json::json!({"data": {"tls.crt": b64(&cert), "tls.key": b64(&key), "ca.crt": b64("nope")}}),
            "Secret edge/web-cert: data[ca.crt]: is not PEM",
        ),
    ];
    for (fields, expected) in cases {
        let err = reduce(&secret(fields)).expect_err(expected).to_string();
        assert!(err.starts_with(expected), "{err}\nexpected {expected}");
        assert!(!err.contains(&key_body), "the key leaked: {err}");
    }
}
