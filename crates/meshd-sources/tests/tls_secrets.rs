//! `kubernetes.io/tls` Secret files in the config dir become credentials (SPEC §10); a malformed one
//! fails its file naming the file, the Secret and the field, without the key; the service-account
//! token Secrets of the same directory (read by the CA) are no error here and give no credential.

use meshd_index::SharedIndex;
use meshd_sources::{FileSource, parse_documents};
use meshd_translate::facts::{Fact, FactKind, ObjectKey};

fn pki(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("a key");
    let params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
    (
        params.self_signed(&key).expect("a cert").pem(),
        key.serialize_pem(),
    )
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}

fn tls_secret(name: &str, cert: &str, key: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: edge}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(cert),
        indent(key)
    )
}

const TOKEN: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: gw-token\n  namespace: edge\n  annotations: {kubernetes.io/service-account.name: gw}\ntype: kubernetes.io/service-account-token\nstringData: {token: abc}\n";

fn cert_of(index: &SharedIndex, name: &str) -> Option<Vec<u8>> {
    index.read(
        |i| match i.get(FactKind::TlsCredential, &ObjectKey::new("edge", name)) {
            Some(Fact::TlsCredential(c)) => Some(c.cert_chain.clone()),
            _ => None,
        },
    )
}

#[test]
fn tls_secret_files_are_credentials_and_token_secrets_are_left_to_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki("web.example.com");
    std::fs::write(
        dir.path().join("web-cert.yaml"),
        tls_secret("web-cert", &cert, &key),
    )
    .unwrap();
    std::fs::write(dir.path().join("token.yaml"), TOKEN).unwrap();
    let index = SharedIndex::default();
    let mut source = FileSource::new(dir.path(), index.clone());
    source.scan().unwrap();
    assert_eq!(cert_of(&index, "web-cert"), Some(cert.into_bytes()));
    assert_eq!(
        index.read(|i| i.facts(FactKind::TlsCredential).count()),
        1,
        "the token Secret is no credential"
    );
    let (facts, skipped) = parse_documents("token.yaml", TOKEN).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    assert!(facts.iter().all(|(_, _, f)| f.is_none()), "{facts:?}");

    // Rotated in place: the new certificate replaces the old one.
    let (cert2, key2) = pki("web.example.com");
    std::fs::write(
        dir.path().join("web-cert.yaml"),
        tls_secret("web-cert", &cert2, &key2),
    )
    .unwrap();
    source.scan().unwrap();
    assert_eq!(
        cert_of(&index, "web-cert"),
        Some(cert2.clone().into_bytes())
    );

    // A broken update keeps the last good credential.
    std::fs::write(
        dir.path().join("web-cert.yaml"),
        tls_secret("web-cert", &cert2, "not a key"),
    )
    .unwrap();
    source.scan().unwrap();
    assert_eq!(cert_of(&index, "web-cert"), Some(cert2.into_bytes()));
}

#[test]
fn a_malformed_tls_secret_names_file_secret_and_field_never_the_key() {
    let (cert, key) = pki("web.example.com");
    let key_line = key.lines().nth(1).unwrap().to_string();
    let missing_key = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: web-cert, namespace: edge}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}",
        indent(&cert)
    );
    let err = parse_documents("/cfg/web.yaml", &missing_key)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "/cfg/web.yaml: document 1: Secret edge/web-cert: data[tls.key]: is required (in data or stringData)"
    );
    let swapped = tls_secret("web-cert", &key, &cert);
    let err = parse_documents("/cfg/web.yaml", &swapped)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("/cfg/web.yaml: document 1: Secret edge/web-cert: stringData[tls.crt]: "),
        "{err}"
    );
    assert!(!err.contains(&key_line), "the key leaked: {err}");
    let bad_base64 = "apiVersion: v1\nkind: Secret\nmetadata: {name: web-cert, namespace: edge}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: '%%%'\n  tls.key: 'c2VjcmV0LWtleQ=='\n";
    let err = parse_documents("/cfg/b64.yaml", bad_base64)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("/cfg/b64.yaml: document 1: data.tls.crt: "),
        "{err}"
    );
}

const GATEWAY: &str = "apiVersion: networking.meshd.io/v1alpha1\nkind: Gateway\nmetadata: {name: web, namespace: edge}\nspec:\n  selector: {app: edge}\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*/web.example.com\"]\n    tls: {mode: SIMPLE, credentialName: web-cert}\n";
const OTHER_GATEWAY: &str = "apiVersion: networking.meshd.io/v1alpha1\nkind: Gateway\nmetadata: {name: plain, namespace: edge}\nspec:\n  selector: {app: edge}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*/web.example.com\"]\n";

#[test]
fn a_gateway_naming_a_missing_secret_file_is_rejected_until_the_file_comes() {
    use meshd_api::status::VerdictKey;
    use meshd_translate::{TranslateSettings, Translator};
    let dir = tempfile::tempdir().unwrap();
    let gw = dir.path().join("gateway.yaml");
    std::fs::write(&gw, format!("{GATEWAY}---\n{OTHER_GATEWAY}")).unwrap();
    let index = SharedIndex::default();
    let mut source = FileSource::new(dir.path(), index.clone());
    source.scan().unwrap();
    let mut translator = Translator::new(TranslateSettings::default());
    let origins = source.origins();
    let mut line = |name: &str| {
        let (changes, _) = index.take();
        let (mesh, _) = translator.apply(changes);
        let key = VerdictKey::new("Gateway", "edge", name);
        meshd_sources::verdict_line(&origins, &key, &mesh.verdicts[&key])
    };
    assert_eq!(
        line("web"),
        format!(
            "{}: Gateway edge/web: spec.servers[0].tls.credentialName: \"web-cert\" names no kubernetes.io/tls Secret in namespace edge (not applied) (DanglingReference)",
            gw.display()
        )
    );
    assert_eq!(
        line("plain"),
        format!("{}: Gateway edge/plain: accepted", gw.display()),
        "the other Gateway is unaffected"
    );
    let (cert, key) = pki("web.example.com");
    std::fs::write(
        dir.path().join("web-cert.yaml"),
        tls_secret("web-cert", &cert, &key),
    )
    .unwrap();
    source.scan().unwrap();
    assert_eq!(
        line("web"),
        format!("{}: Gateway edge/web: accepted", gw.display())
    );
}
