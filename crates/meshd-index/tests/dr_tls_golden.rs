//! Golden xDS output for a DestinationRule's `tls` (SPEC §8): on `security.yaml`'s mesh (web mixes a
//! meshed pod and one without a sidecar), each mode on web's cluster as a client (batch-0) gets it. An
//! explicit mode replaces auto mTLS (Istio's rule); port-level and subset settings replace the rule's.

mod support;

use std::sync::Arc;

use meshd_api::MeshSpec;
use meshd_api::mesh::MtlsMode;
use meshd_translate::facts::{Fact, FactChange, FactKind, ObjectKey, TlsCredential};
use meshd_translate::{CompiledMesh, NodeId, ResourceType, TranslateSettings, Translator};
use serde_json::{Value, json};
use support::{check_golden, descriptor_pool, load, reduce_documents, render_types};

const WEB: &str = "outbound|80||web.shop.svc.cluster.local";

/// The clusters batch-0 gets with `rule` (a DestinationRule's spec for web) under PERMISSIVE.
fn clusters(rule: &str) -> Value {
    let compiled = compile(rule, Vec::new());
    let config = compiled.proxy_config(&NodeId::parse("batch-0.jobs").unwrap());
    render_types(&descriptor_pool(), &config, &[ResourceType::Cluster])
}

/// `security.yaml`'s mesh under PERMISSIVE with `rule` for web, and `more` facts.
fn compile(rule: &str, more: Vec<FactChange>) -> CompiledMesh {
    let mut changes = load("security.yaml");
    changes.extend(more);
    let doc = format!(
        "apiVersion: networking.meshd.io/v1alpha1\nkind: DestinationRule\nmetadata: {{name: web, namespace: shop}}\nspec:\n  host: web\n{rule}"
    );
    changes.extend(reduce_documents(&doc));
    let mut spec = MeshSpec::default();
    spec.mtls.mode = MtlsMode::Permissive;
    changes.push(FactChange {
        kind: FactKind::Mesh,
        key: ObjectKey::new("", "default"),
        fact: Some(Fact::Mesh(Arc::new(spec))),
    });
    Translator::new(TranslateSettings::default())
        .apply(changes)
        .0
}

fn cluster<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["cds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

/// The cluster's one transport socket's TLS context (no per-endpoint matches left).
fn socket(c: &Value) -> &Value {
    assert!(
        c.get("transportSocketMatches").is_none(),
        "an explicit mode replaces auto mTLS: {c}"
    );
    assert_eq!(c["transportSocket"]["name"], "envoy.transport_sockets.tls");
    &c["transportSocket"]["typedConfig"]
}

#[test]
fn without_tls_the_cluster_keeps_auto_mtls() {
    let json = clusters("  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n");
    let c = cluster(&json, WEB);
    assert_eq!(c["transportSocketMatches"].as_array().unwrap().len(), 2);
}

#[test]
fn disable_is_plaintext_to_every_endpoint_even_meshed_ones() {
    let json = clusters("  trafficPolicy: {tls: {mode: DISABLE}}\n");
    let c = cluster(&json, WEB);
    check_golden("dr-tls-disable.json", c);
    assert!(c.get("transportSocketMatches").is_none(), "{c}");
    assert!(c.get("transportSocket").is_none(), "{c}");
}

#[test]
fn simple_originates_tls_verified_against_the_named_ca() {
    let json = clusters(
        "  trafficPolicy:\n    tls: {mode: SIMPLE, caCertificates: /etc/certs/ca.pem, sni: web.example.com, subjectAltNames: [web.example.com, \"spiffe://ext/web\"]}\n",
    );
    let c = cluster(&json, WEB);
    check_golden("dr-tls-simple.json", c);
    let tls = socket(c);
    assert_eq!(tls["sni"], "web.example.com");
    let common = &tls["commonTlsContext"];
    assert!(common.get("tlsCertificates").is_none());
    assert!(common.get("tlsCertificateSdsSecretConfigs").is_none());
    assert_eq!(common["tlsParams"]["tlsMinimumProtocolVersion"], "TLSv1_2");
    let v = &common["validationContext"];
    assert_eq!(v["trustedCa"]["filename"], "/etc/certs/ca.pem");
    assert_eq!(
        v["matchTypedSubjectAltNames"],
        json!([
            {"sanType": "DNS", "matcher": {"exact": "web.example.com"}},
            {"sanType": "URI", "matcher": {"exact": "spiffe://ext/web"}},
        ])
    );
}

#[test]
fn simple_without_a_ca_uses_the_system_roots_and_insecure_skip_verify_checks_nothing() {
    let json = clusters("  trafficPolicy: {tls: {mode: SIMPLE}}\n");
    let tls = socket(cluster(&json, WEB));
    assert_eq!(
        tls["commonTlsContext"]["validationContext"]["trustedCa"]["filename"],
        "/etc/ssl/certs/ca-certificates.crt"
    );
    assert!(tls.get("sni").is_none());
    let json = clusters("  trafficPolicy: {tls: {mode: SIMPLE, insecureSkipVerify: true}}\n");
    let tls = socket(cluster(&json, WEB));
    assert!(
        tls["commonTlsContext"].get("validationContext").is_none(),
        "{tls}"
    );
}

#[test]
fn mutual_presents_the_client_certificate_files() {
    let json = clusters(
        "  trafficPolicy:\n    tls: {mode: MUTUAL, clientCertificate: /etc/certs/client.pem, privateKey: /etc/certs/client-key.pem, caCertificates: /etc/certs/ca.pem}\n",
    );
    let c = cluster(&json, WEB);
    check_golden("dr-tls-mutual.json", c);
    let common = &socket(c)["commonTlsContext"];
    assert_eq!(
        common["tlsCertificates"],
        json!([{"certificateChain": {"filename": "/etc/certs/client.pem"},
                "privateKey": {"filename": "/etc/certs/client-key.pem"}}])
    );
    assert_eq!(
        common["validationContext"]["trustedCa"]["filename"],
        "/etc/certs/ca.pem"
    );
}

#[test]
fn mesh_mutual_and_istio_mutual_are_the_mesh_identity_to_every_endpoint() {
    for mode in ["MESH_MUTUAL", "ISTIO_MUTUAL"] {
        let json = clusters(&format!("  trafficPolicy: {{tls: {{mode: {mode}}}}}\n"));
        let c = cluster(&json, WEB);
        if mode == "MESH_MUTUAL" {
            check_golden("dr-tls-mesh-mutual.json", c);
        }
        let tls = socket(c);
        assert_eq!(tls["sni"], "outbound_.80_._.web.shop.svc.cluster.local");
        let common = &tls["commonTlsContext"];
        assert_eq!(common["alpnProtocols"], json!(["istio"]));
        assert_eq!(
            common["tlsCertificateSdsSecretConfigs"][0]["name"],
            "default"
        );
        let combined = &common["combinedValidationContext"];
        assert_eq!(
            combined["validationContextSdsSecretConfig"]["name"],
            "ROOTCA"
        );
        assert_eq!(
            combined["defaultValidationContext"]["matchTypedSubjectAltNames"],
            json!([{"sanType": "URI", "matcher": {"exact": "spiffe://cluster.local/ns/shop/sa/web"}}])
        );
    }
    // subjectAltNames replace the destination's identities; sni replaces the mesh's.
    let json = clusters(
        "  trafficPolicy: {tls: {mode: MESH_MUTUAL, sni: web.internal, subjectAltNames: [\"spiffe://cluster.local/ns/shop/sa/other\"]}}\n",
    );
    let tls = socket(cluster(&json, WEB));
    assert_eq!(tls["sni"], "web.internal");
    assert_eq!(
        tls["commonTlsContext"]["combinedValidationContext"]["defaultValidationContext"]["matchTypedSubjectAltNames"]
            [0]["matcher"]["exact"],
        "spiffe://cluster.local/ns/shop/sa/other"
    );
}

#[test]
fn port_level_and_subset_tls_replace_the_rules() {
    let json = clusters(
        "  trafficPolicy:\n    tls: {mode: DISABLE}\n    portLevelSettings:\n    - {port: {number: 80}, tls: {mode: SIMPLE}}\n  subsets:\n  - name: v1\n    labels: {app: web}\n    trafficPolicy: {tls: {mode: MESH_MUTUAL}}\n  - name: v2\n    labels: {app: web}\n",
    );
    // The port's SIMPLE wins over the rule's DISABLE, on the port's cluster and a subset without tls.
    for name in [WEB, "outbound|80|v2|web.shop.svc.cluster.local"] {
        let tls = socket(cluster(&json, name));
        assert!(
            tls["commonTlsContext"].get("validationContext").is_some(),
            "{name}"
        );
    }
    // The subset's own MESH_MUTUAL wins over both.
    let tls = socket(cluster(&json, "outbound|80|v1|web.shop.svc.cluster.local"));
    assert_eq!(tls["commonTlsContext"]["alpnProtocols"], json!(["istio"]));
}

/// A `kubernetes.io/tls` Secret's fact (its bytes are not looked at here).
fn secret(namespace: &str, name: &str, ca: bool) -> FactChange {
    FactChange {
        kind: FactKind::TlsCredential,
        key: ObjectKey::new(namespace, name),
        fact: Some(Fact::TlsCredential(Arc::new(TlsCredential {
            cert_chain: b"cert".to_vec(),
            key: b"key".to_vec(),
            ca: ca.then(|| b"ca".to_vec()),
        }))),
    }
}

/// The SDS Secrets a proxy gets, by name.
fn secrets(compiled: &CompiledMesh, node: &str) -> Vec<String> {
    let config = compiled.proxy_config(&NodeId::parse(node).unwrap());
    config
        .resources(ResourceType::Secret)
        .map(|r| r.name.to_string())
        .collect()
}

#[test]
fn credential_name_is_the_proxys_own_namespace_secret_over_sds() {
    let rule = "  trafficPolicy:\n    tls: {mode: MUTUAL, credentialName: web-client, sni: web.example.com, subjectAltNames: [web.example.com]}\n  subsets:\n  - name: v1\n    labels: {app: web}\n    trafficPolicy: {tls: {mode: SIMPLE, credentialName: web-ca, insecureSkipVerify: true}}\n";
    // batch-0's namespace has both Secrets (and one no rule names); shop has none.
    let compiled = compile(
        rule,
        vec![
            secret("jobs", "web-client", true),
            secret("jobs", "web-ca", false),
            secret("jobs", "unrelated", true),
        ],
    );
    let config = compiled.proxy_config(&NodeId::parse("batch-0.jobs").unwrap());
    let json = render_types(&descriptor_pool(), &config, &[ResourceType::Cluster]);
    let c = cluster(&json, WEB);
    check_golden("dr-tls-credential.json", c);
    let common = &socket(c)["commonTlsContext"];
    assert!(
        common.get("tlsCertificates").is_none(),
        "no files: {common}"
    );
    assert_eq!(
        common["tlsCertificateSdsSecretConfigs"],
        json!([{"name": "kubernetes://web-client", "sdsConfig": {"ads": {}, "resourceApiVersion": "V3"}}]),
        "over ADS with Envoy's initial fetch timeout: a proxy without the Secret is not held for ever"
    );
    let combined = &common["combinedValidationContext"];
    assert_eq!(
        combined["validationContextSdsSecretConfig"]["name"],
        "kubernetes://web-client-cacert"
    );
    assert_eq!(
        combined["defaultValidationContext"]["matchTypedSubjectAltNames"],
        json!([{"sanType": "DNS", "matcher": {"exact": "web.example.com"}}])
    );
    // The subset's SIMPLE without verification: no certificate, no CA.
    let port =
        &socket(cluster(&json, "outbound|80|v1|web.shop.svc.cluster.local"))["commonTlsContext"];
    assert!(
        port.get("tlsCertificateSdsSecretConfigs").is_none(),
        "{port}"
    );
    assert!(port.get("combinedValidationContext").is_none(), "{port}");
    // What the rules name, from the proxy's own namespace only; web-ca has no ca.crt.
    assert_eq!(
        secrets(&compiled, "batch-0.jobs"),
        [
            "kubernetes://web-ca",
            "kubernetes://web-client",
            "kubernetes://web-client-cacert"
        ]
    );
    assert_eq!(secrets(&compiled, "web-0.shop"), Vec::<String>::new());
    // No rule names a credential: sidecars get no Secret at all.
    let none = compile(
        "  trafficPolicy: {tls: {mode: SIMPLE}}\n",
        vec![secret("jobs", "web-client", true)],
    );
    assert_eq!(secrets(&none, "batch-0.jobs"), Vec::<String>::new());
}
