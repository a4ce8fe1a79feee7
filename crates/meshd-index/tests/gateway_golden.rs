//! Golden xDS output of a gateway proxy (SPEC §10): `gateway.yaml` (over `mesh.yaml`) reduced and
//! translated for the gateway pod `ingress-0.edge`, its own listeners and route tables rendered as
//! Envoy's proto-JSON. The sidecars' config is unchanged by the gateway's objects. Regenerate with
//! `MESHD_BLESS=1`, then review the diff.

mod support;

use std::sync::Arc;

use meshd_api::MeshSpec;
use meshd_api::mesh::MtlsMode;
use meshd_translate::facts::{Fact, FactChange, FactKind, ObjectKey};
use meshd_translate::{
    CompiledMesh, NodeId, ProxyConfig, ResourceType, TranslateSettings, Translator,
};
use serde_json::Value;
use support::{check_golden, descriptor_pool, reduce_documents, render_own};

/// A golden mesh file with its `# include:` first, compiled under PERMISSIVE.
fn compile(file: &str) -> CompiledMesh {
    let text = support::read_with_include(file);
    let mut changes = reduce_documents(&text);
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

fn names(json: &Value, ty: &str) -> Vec<String> {
    json[ty]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

fn listener<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["lds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no listener {name}"))
}

#[test]
fn gateway_pod_listeners_and_routes_match_golden() {
    let compiled = compile("gateway.yaml");
    for (key, verdict) in &compiled.verdicts {
        let expect_rejected = key.kind == "Gateway" && key.name == "bad";
        assert_eq!(
            !verdict.accepted, expect_rejected,
            "{key}: {}",
            verdict.message
        );
    }
    let node = NodeId::parse("ingress-0.edge").unwrap();
    let config = compiled.proxy_config(&node);
    assert!(config.gateway);
    let json = render_own(
        &descriptor_pool(),
        &config,
        &[ResourceType::Listener, ResourceType::Route],
    );
    check_golden("ingress-0.edge.gateway.json", &json);

    // What the golden file must show, spelled out so a careless bless cannot hide a regression.
    assert_eq!(
        names(&json, "lds"),
        [
            "0.0.0.0_443",
            "0.0.0.0_5432",
            "0.0.0.0_80",
            "0.0.0.0_8080",
            "0.0.0.0_9443"
        ],
        "one listener per port, none of the rejected Gateway's"
    );
    assert_eq!(
        names(&json, "rds"),
        [
            "http.80",
            "http.8080",
            "https.443.https-any.public.edge",
            "https.443.https-api.public.edge",
            "https.443.https-web.public.edge",
        ]
    );
    // Merged oldest first: web's /v2 route, then web-extra's catch-all.
    let http80 = &json["rds"][0];
    let web = http80["virtualHosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "web.example.com:80")
        .unwrap();
    assert_eq!(
        web["domains"],
        serde_json::json!(["web.example.com", "web.example.com:80"])
    );
    let routes: Vec<&str> = web["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(routes, ["v2", "0.0"]);
    assert!(
        http80.to_string().contains("\"blackhole:80\""),
        "404 for other hosts"
    );
    assert!(
        json["rds"][1]
            .to_string()
            .contains("\"requireTls\":\"ALL\""),
        "httpsRedirect"
    );
    // The gateway is the edge: the client's address is the downstream one.
    let hcm = &listener(&json, "0.0.0.0_80")["filterChains"][0]["filters"][0]["typedConfig"];
    assert_eq!(hcm["useRemoteAddress"], true);
    assert_eq!(hcm["rds"]["routeConfigName"], "http.80");
    // SNI chains: web (TLS 1.3), api (MUTUAL), and the `*` server without server names.
    let https = listener(&json, "0.0.0.0_443");
    assert_eq!(
        https["listenerFilters"][0]["name"],
        "envoy.filters.listener.tls_inspector"
    );
    let chains = https["filterChains"].as_array().unwrap();
    let sni: Vec<Value> = chains
        .iter()
        .map(|c| c["filterChainMatch"]["serverNames"].clone())
        .collect();
    assert_eq!(
        sni,
        [
            serde_json::json!(["web.example.com"]),
            serde_json::json!(["api.example.com"]),
            Value::Null
        ]
    );
    let tls = |i: usize| chains[i]["transportSocket"]["typedConfig"].clone();
    assert_eq!(
        tls(0)["commonTlsContext"]["tlsParams"]["tlsMinimumProtocolVersion"],
        "TLSv1_3"
    );
    assert_eq!(
        tls(1)["commonTlsContext"]["tlsParams"]["tlsMinimumProtocolVersion"],
        "TLSv1_2"
    );
    assert_eq!(tls(1)["requireClientCertificate"], true);
    assert_eq!(
        tls(1)["commonTlsContext"]["validationContextSdsSecretConfig"]["name"],
        "kubernetes://api-cert-cacert"
    );
    assert!(
        tls(1)["commonTlsContext"]["validationContextSdsSecretConfig"]["sdsConfig"]["ads"]
            .is_object()
    );
    // PASSTHROUGH: one chain by SNI to web's cluster, no TLS of its own; TCP to db.
    let pass = listener(&json, "0.0.0.0_9443");
    assert_eq!(
        pass["filterChains"][0]["filterChainMatch"]["serverNames"][0],
        "secure.example.com"
    );
    assert!(pass["filterChains"][0].get("transportSocket").is_none());
    assert!(
        pass.to_string()
            .contains("outbound|80||web.shop.svc.cluster.local")
    );
    assert!(
        listener(&json, "0.0.0.0_5432")
            .to_string()
            .contains("outbound|5432||db.shop.svc.cluster.local")
    );
    let gw = compiled.gateway_config(&node).unwrap();
    assert_eq!(
        gw.credentials.into_iter().collect::<Vec<_>>(),
        [
            "kubernetes://api-cert",
            "kubernetes://api-cert-cacert",
            "kubernetes://default-cert",
            "kubernetes://web-cert"
        ]
    );
}

/// Every resource of a proxy, as (type, name, bytes).
fn bytes(config: &ProxyConfig) -> Vec<(&'static str, String, Vec<u8>)> {
    ResourceType::ALL
        .iter()
        .flat_map(|ty| {
            config
                .resources(*ty)
                .map(|r| (ty.short(), r.name.to_string(), r.body.value.clone()))
        })
        .collect()
}

#[test]
fn a_gateway_and_its_virtual_services_change_nothing_for_sidecars() {
    let node = NodeId::parse("web-0.shop").unwrap();
    let without = compile("mesh.yaml").proxy_config(&node);
    let with = compile("gateway.yaml").proxy_config(&node);
    assert!(!with.gateway);
    assert_eq!(bytes(&with), bytes(&without));
}
