//! Golden xDS output: a small mesh (three services with HTTP, TCP and gRPC ports, two endpoints each),
//! its objects reduced to facts by the kinds' reducers, translated for one proxy and rendered as
//! Envoy's proto-JSON. The whole path from objects to bytes, as both sources take it. The golden files
//! live with the translation (`crates/meshd-translate/tests/golden`). Regenerate with `MESHD_BLESS=1`,
//! then review the diff.

mod support;

use std::sync::Arc;

use meshd_api::MeshSpec;
use meshd_api::mesh::{MtlsMode, OutboundTrafficPolicy};
use meshd_index::{
    DestinationRuleKind, EndpointSliceKind, Kind, PodKind, ServiceEntryKind, ServiceKind,
    VirtualServiceKind,
};
use meshd_translate::facts::{Fact, FactChange, FactKind};
use meshd_translate::{
    CompiledMesh, NodeId, ProxyConfig, ResourceType, TranslateSettings, Translator,
};
use support::{check_golden, descriptor_pool, render};

/// The objects of a golden mesh file, reduced, in file order; and the Mesh (mTLS off).
struct Mesh {
    objects: Vec<FactChange>,
    spec: MeshSpec,
}

fn reduced<K: Kind>(value: serde_yaml::Value) -> FactChange {
    let object: K::Object = serde_yaml::from_value(value).unwrap();
    let (key, fact) = K::key_and_fact(&object).unwrap();
    FactChange {
        kind: K::FACT,
        key,
        fact,
    }
}

fn load_mesh(file: &str) -> Mesh {
    let text = support::read_with_include(file);
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value: serde_yaml::Value = serde::Deserialize::deserialize(doc).unwrap();
        objects.push(match value["kind"].as_str().unwrap() {
            "Service" => reduced::<ServiceKind>(value),
            "EndpointSlice" => reduced::<EndpointSliceKind>(value),
            "Pod" => reduced::<PodKind>(value),
            "VirtualService" => reduced::<VirtualServiceKind>(value),
            "DestinationRule" => reduced::<DestinationRuleKind>(value),
            "ServiceEntry" => reduced::<ServiceEntryKind>(value),
            other => panic!("unexpected kind {other}"),
        });
    }
    let mut spec = MeshSpec::default();
    spec.mtls.mode = MtlsMode::Disable;
    Mesh { objects, spec }
}

impl Mesh {
    fn compile(&self) -> CompiledMesh {
        let mut changes = self.objects.clone();
        changes.push(FactChange {
            kind: FactKind::Mesh,
            key: meshd_translate::facts::ObjectKey::new("", "default"),
            fact: Some(Fact::Mesh(Arc::new(self.spec.clone()))),
        });
        Translator::new(TranslateSettings::default())
            .apply(changes)
            .0
    }

    fn slice_mut(&mut self, name: &str) -> &mut meshd_translate::facts::EndpointSlice {
        let change = self
            .objects
            .iter_mut()
            .find(|c| c.kind == FactKind::EndpointSlice && c.key.name == name)
            .unwrap();
        match &mut change.fact {
            Some(Fact::EndpointSlice(s)) => Arc::make_mut(s),
            _ => unreachable!("an EndpointSlice"),
        }
    }
}

#[test]
fn small_mesh_for_web_pod_matches_golden() {
    let pool = descriptor_pool();
    let compiled = load_mesh("mesh.yaml").compile();
    let config = compiled.proxy_config(&NodeId::parse("web-0.shop").unwrap());
    assert!(config.known);
    let json = render(&pool, &config);
    check_golden("web-0.shop.json", &json);

    // What the golden file must show, spelled out so a careless bless cannot hide a regression.
    let names = |ty: &str| -> Vec<String> {
        json[ty]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r["name"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| r["clusterName"].as_str().unwrap().to_string())
            })
            .collect()
    };
    assert_eq!(
        names("cds"),
        [
            "BlackHoleCluster",
            "InboundPassthroughCluster",
            "PassthroughCluster",
            "outbound|5432||db.shop.svc.cluster.local",
            "outbound|80||web.shop.svc.cluster.local",
            "outbound|9090||api.backend.svc.cluster.local",
            "inbound|8080||",
        ]
    );
    assert_eq!(names("lds"), ["virtualOutbound", "virtualInbound"]);
    assert_eq!(
        names("rds"),
        [
            "api.backend.svc.cluster.local:9090",
            "web.shop.svc.cluster.local:80"
        ]
    );
    let web_eds = json["eds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clusterName"] == "outbound|80||web.shop.svc.cluster.local")
        .unwrap();
    let hosts: Vec<(String, String)> = web_eds["endpoints"][0]["lbEndpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["endpoint"]["address"]["socketAddress"]["address"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                e["healthStatus"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // 10.0.1.4 is not ready and not terminating: left out. 10.0.1.3 is terminating: draining.
    assert_eq!(
        hosts,
        [
            ("10.0.1.1".into(), "HEALTHY".into()),
            ("10.0.1.2".into(), "HEALTHY".into()),
            ("10.0.1.3".into(), "DRAINING".into())
        ]
    );
    let outbound = &json["lds"][0];
    let chains = outbound["filterChains"].as_array().unwrap();
    let filter_of = |port: u64| {
        chains
            .iter()
            .find(|c| c["filterChainMatch"]["destinationPort"] == port)
            .unwrap()["filters"][0]["name"]
            .clone()
    };
    assert_eq!(
        filter_of(80),
        "envoy.filters.network.http_connection_manager"
    );
    assert_eq!(
        filter_of(9090),
        "envoy.filters.network.http_connection_manager"
    );
    assert_eq!(filter_of(5432), "envoy.filters.network.tcp_proxy");
    assert_eq!(outbound["defaultFilterChain"]["name"], "PassthroughCluster");
    let inbound = &json["lds"][1];
    assert_eq!(inbound["address"]["socketAddress"]["portValue"], 15006);
    assert_eq!(
        inbound["filterChains"][0]["filterChainMatch"]["destinationPort"],
        8080
    );
}

#[test]
fn output_is_byte_identical_whatever_the_input_order() {
    let snap = load_mesh("mesh.yaml");
    let mut reversed = load_mesh("mesh.yaml");
    reversed.objects.reverse();
    for change in &mut reversed.objects {
        if let Some(Fact::EndpointSlice(s)) = &mut change.fact {
            Arc::make_mut(s).endpoints.reverse();
        }
    }
    let node = NodeId::parse("web-0.shop").unwrap();
    let a = snap.compile().proxy_config(&node);
    let b = reversed.compile().proxy_config(&node);
    for ty in ResourceType::ALL {
        let bytes = |c: &ProxyConfig| {
            c.resources(ty)
                .map(|r| (r.name.clone(), r.body.value.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(bytes(&a), bytes(&b), "{}", ty.short());
        assert_eq!(a.type_version(ty), b.type_version(ty));
    }
}

#[test]
fn a_changed_endpoint_changes_only_its_own_versions() {
    let snap = load_mesh("mesh.yaml");
    let mut changed = load_mesh("mesh.yaml");
    changed.slice_mut("db-x1").endpoints[0].addresses = vec!["10.0.2.9".into()];
    let node = NodeId::parse("web-0.shop").unwrap();
    let a = snap.compile().proxy_config(&node);
    let b = changed.compile().proxy_config(&node);
    for ty in [
        ResourceType::Cluster,
        ResourceType::Listener,
        ResourceType::Route,
    ] {
        assert_eq!(a.type_version(ty), b.type_version(ty), "{}", ty.short());
    }
    assert_ne!(
        a.type_version(ResourceType::Endpoint),
        b.type_version(ResourceType::Endpoint)
    );
    let db = "outbound|5432||db.shop.svc.cluster.local";
    let web = "outbound|80||web.shop.svc.cluster.local";
    assert_ne!(
        a.get(ResourceType::Endpoint, db).unwrap().version,
        b.get(ResourceType::Endpoint, db).unwrap().version
    );
    assert_eq!(
        a.get(ResourceType::Endpoint, web).unwrap().version,
        b.get(ResourceType::Endpoint, web).unwrap().version
    );
}

#[test]
fn registry_only_closes_unknown_destinations_and_answers_502_on_http_ports() {
    let mut snap = load_mesh("mesh.yaml");
    snap.spec.outbound_traffic_policy = OutboundTrafficPolicy::RegistryOnly;
    let config = snap
        .compile()
        .proxy_config(&NodeId::parse("web-0.shop").unwrap());
    let json = render(&descriptor_pool(), &config);
    assert_eq!(
        json["lds"][0]["defaultFilterChain"]["name"],
        "BlackHoleCluster"
    );
    // The ports Services proxy as HTTP (80, gRPC 9090) answer unknown addresses with 502 (their
    // `<port>` route's last virtual host); TCP 5432 stays closed.
    let chains: Vec<&str> = json["lds"][0]["filterChains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        chains.contains(&"0.0.0.0_80") && chains.contains(&"0.0.0.0_9090"),
        "{chains:?}"
    );
    assert!(!chains.contains(&"0.0.0.0_5432"), "{chains:?}");
    let route = |name: &str| {
        json["rds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("route {name}"))
            .clone()
    };
    let blocked = route("80");
    assert_eq!(blocked["virtualHosts"][0]["name"], "block_all", "{blocked}");
    assert_eq!(
        blocked["virtualHosts"][0]["routes"][0]["directResponse"]["status"],
        502
    );
    route("9090");
    // ALLOW_ANY: nothing of it; unknown destinations pass through as TCP.
    snap.spec.outbound_traffic_policy = OutboundTrafficPolicy::AllowAny;
    let json = render(
        &descriptor_pool(),
        &snap
            .compile()
            .proxy_config(&NodeId::parse("web-0.shop").unwrap()),
    );
    let text = json["lds"].to_string();
    assert!(!text.contains("0.0.0.0_80"), "{text}");
    assert!(!json["rds"].to_string().contains("block_all"));
}

#[test]
fn unknown_node_gets_an_empty_config() {
    let compiled = load_mesh("mesh.yaml").compile();
    let config = compiled.proxy_config(&NodeId::parse("ghost-0.shop").unwrap());
    assert!(!config.known);
    for ty in ResourceType::ALL {
        assert_eq!(config.count(ty), 0, "{}", ty.short());
    }
}

#[test]
fn mtls_off_needs_no_sds_and_on_names_the_agents_secrets() {
    let mut snap = load_mesh("mesh.yaml");
    let node = NodeId::parse("web-0.shop").unwrap();
    let uses_sds = |compiled: &CompiledMesh| {
        let config = compiled.proxy_config(&node);
        ResourceType::ALL.iter().any(|ty| {
            config
                .resources(*ty)
                .any(|r| r.body.value.windows(8).any(|w| w == b"sds-grpc"))
        })
    };
    assert!(
        !uses_sds(&snap.compile()),
        "DISABLE: no SDS, no agent needed"
    );
    snap.spec.mtls.mode = MtlsMode::Strict;
    let strict = snap.compile();
    assert!(
        uses_sds(&strict),
        "STRICT: the inbound side needs the certificate"
    );
    assert!(strict.warnings.is_empty(), "{:?}", strict.warnings);
}

/// A VirtualService using every HTTP field meshd translates and a DestinationRule with subsets, over
/// the small mesh: the routes, subset clusters and their pod-filtered endpoints web-0 receives.
#[test]
fn traffic_resources_for_web_pod_match_golden() {
    let pool = descriptor_pool();
    let compiled = load_mesh("traffic.yaml").compile();
    for (key, verdict) in &compiled.verdicts {
        assert!(verdict.accepted, "{key}: {}", verdict.message);
    }
    let config = compiled.proxy_config(&NodeId::parse("web-0.shop").unwrap());
    let json = render(&pool, &config);
    check_golden("web-0.shop.traffic.json", &json);
    let names: Vec<&str> = json["cds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"outbound|80|v1|web.shop.svc.cluster.local"),
        "{names:?}"
    );
    assert!(
        names.contains(&"outbound|80|v2|web.shop.svc.cluster.local"),
        "{names:?}"
    );
    // db's TCP chain is the VirtualService's 80/20 split.
    let text = json["lds"].to_string();
    assert!(
        text.contains("outbound|5432|primary|db.shop.svc.cluster.local")
            && text.contains("outbound|5432|replica|db.shop.svc.cluster.local"),
        "the tcp[] split in virtualOutbound"
    );
    // pay's TLS port: a chain per tls[] route by SNI on its VIP, then the VIP's own chain for every
    // other SNI; each tcp_proxy closes idle connections after the DestinationRule's 90 s.
    let chains = json["lds"][0]["filterChains"].as_array().unwrap();
    let on_port = |port: u64| -> Vec<(&str, serde_json::Value, String)> {
        chains
            .iter()
            .filter(|c| c["filterChainMatch"]["destinationPort"] == port)
            .map(|c| {
                let proxy = &c["filters"][0]["typedConfig"];
                assert_eq!(
                    proxy["@type"],
                    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
                );
                let to = proxy["cluster"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| proxy["weightedClusters"]["clusters"].to_string());
                (
                    c["name"].as_str().unwrap(),
                    c["filterChainMatch"]["serverNames"].clone(),
                    to,
                )
            })
            .collect()
    };
    let pay = on_port(443);
    assert_eq!(pay.len(), 3, "{pay:?}");
    assert_eq!(pay[0].1, serde_json::json!(["eu.pay.example.com"]));
    assert_eq!(pay[0].2, "outbound|443|eu|pay.shop.svc.cluster.local");
    assert_eq!(
        pay[1].1,
        serde_json::json!(["pay.example.com", "*.pay.example.com"])
    );
    assert!(
        pay[1].2.contains("\"weight\":70") && pay[1].2.contains("|us|"),
        "{}",
        pay[1].2
    );
    assert_eq!(
        (pay[2].1.clone(), pay[2].2.as_str()),
        (
            serde_json::Value::Null,
            "outbound|443||pay.shop.svc.cluster.local"
        )
    );
    for c in chains
        .iter()
        .filter(|c| c["filterChainMatch"]["destinationPort"] == 443)
    {
        assert_eq!(c["filters"][0]["typedConfig"]["idleTimeout"], "90s");
    }
    let inspector = json["lds"][0]["listenerFilters"][1].to_string();
    assert!(
        inspector.contains("tls_inspector") && inspector.contains("443"),
        "{inspector}"
    );
    // corp's CIDR: the subnet route takes 240.1.2.0/24 (10.0.0.0/8 is not corp's; the second route's
    // /25 is inside the first's), the rest of 240.1.0.0/16 goes to corp's own cluster.
    let prefixes = |name: &str| {
        let c = chains.iter().find(|c| c["name"] == name).unwrap();
        c["filterChainMatch"]["prefixRanges"].to_string()
    };
    let corp = on_port(7000);
    let corp: Vec<(&str, &str)> = corp
        .iter()
        .filter(|c| c.0.starts_with("corp"))
        .map(|c| (c.0, c.2.as_str()))
        .collect();
    assert_eq!(
        corp,
        [
            ("corp.internal:7000", "outbound|7000||audit.internal"),
            ("corp.internal:7000.1", "outbound|7000||corp.internal")
        ]
    );
    assert!(prefixes("corp.internal:7000").contains("\"240.1.2.0\""));
    assert!(prefixes("corp.internal:7000.1").contains("\"240.1.0.0\""));
    // PASSTHROUGH: api's cluster dials the address the client dialled.
    let api = json["cds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "outbound|9090||api.backend.svc.cluster.local")
        .unwrap();
    assert_eq!(
        (api["type"].as_str(), api["lbPolicy"].as_str()),
        (Some("ORIGINAL_DST"), Some("CLUSTER_PROVIDED"))
    );
    assert!(api.get("edsClusterConfig").is_none(), "{api}");
    // v2's endpoints are the pods labelled version: v2 only (web-1, not web-0).
    let eds = json["eds"].as_array().unwrap();
    let v2 = eds
        .iter()
        .find(|e| e["clusterName"] == "outbound|80|v2|web.shop.svc.cluster.local")
        .unwrap();
    let text = v2.to_string();
    assert!(
        text.contains("10.0.1.2") && !text.contains("10.0.1.1"),
        "{text}"
    );
}

/// What `traffic.yaml` leaves out (`traffic-fields.yaml`), on the gRPC service: uri regex, authority
/// and port matches, rewrite of the authority, mirrors, a gRPC abort, a redirect with scheme and port,
/// cookie hashing, port-level settings and subset policies.
#[test]
fn more_traffic_fields_for_web_pod_match_golden() {
    let pool = descriptor_pool();
    let compiled = load_mesh("traffic-fields.yaml").compile();
    for (key, verdict) in &compiled.verdicts {
        assert!(verdict.accepted, "{key}: {}", verdict.message);
    }
    assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
    let config = compiled.proxy_config(&NodeId::parse("web-0.shop").unwrap());
    let json = render(&pool, &config);
    check_golden("web-0.shop.traffic-fields.json", &json);
    let route = json["rds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "api.backend.svc.cluster.local:9090")
        .unwrap()
        .to_string();
    for expected in [
        "safeRegex",
        ":authority",
        "api.internal",
        "requestMirrorPolicies",
        "outbound|9090|v3|api.backend.svc.cluster.local",
        "grpcStatus",
        "\"schemeRedirect\":\"https\"",
        "\"portRedirect\":8443",
        "TEMPORARY_REDIRECT",
        "session",
        "envoy.retry_priorities.previous_priorities",
    ] {
        assert!(route.contains(expected), "{expected} in {route}");
    }
    // A route to subset v1 hashes as v1's own policy says (source IP), not the host's cookie
    // (Istio's hash per destination), and keeps no `previous_hosts` (one destination that hashes).
    let to_v1 = json["rds"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["virtualHosts"].as_array().unwrap())
        .flat_map(|v| v["routes"].as_array().unwrap())
        .find(|r| r["route"]["cluster"] == "outbound|9090|v1|api.backend.svc.cluster.local")
        .expect("a route to subset v1");
    assert_eq!(
        to_v1["route"]["hashPolicy"],
        serde_json::json!([{"connectionProperties": {"sourceIp": true}}]),
        "{to_v1}"
    );
    assert!(
        to_v1["route"]["retryPolicy"]["retryHostPredicate"].is_null(),
        "{to_v1}"
    );
    let cluster = |name: &str| {
        json["cds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("cluster {name}"))
            .clone()
    };
    assert_eq!(
        cluster("outbound|9090||api.backend.svc.cluster.local")["lbPolicy"],
        "RING_HASH"
    );
    assert_eq!(
        cluster("outbound|9090|v3|api.backend.svc.cluster.local")["lbPolicy"],
        "RANDOM"
    );
}

/// ServiceEntries of each resolution under REGISTRY_ONLY (`service-entries.yaml`): their clusters
/// (ORIGINAL_DST, EDS, STRICT_DNS, LOGICAL_DNS), load assignments, routes and outbound chains.
#[test]
fn service_entries_for_web_pod_match_golden() {
    let pool = descriptor_pool();
    let mut mesh = load_mesh("service-entries.yaml");
    mesh.spec.outbound_traffic_policy = OutboundTrafficPolicy::RegistryOnly;
    let compiled = mesh.compile();
    for (key, verdict) in &compiled.verdicts {
        assert!(verdict.accepted, "{key}: {}", verdict.message);
    }
    assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
    let config = compiled.proxy_config(&NodeId::parse("web-0.shop").unwrap());
    let json = render(&pool, &config);
    check_golden("web-0.shop.service-entries.json", &json);
    let cluster = |name: &str| {
        json["cds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("cluster {name}"))
            .clone()
    };
    assert_eq!(
        cluster("outbound|80||api.example.com")["type"],
        "ORIGINAL_DST"
    );
    assert_eq!(cluster("outbound|8080||legacy.internal")["type"], "EDS");
    assert_eq!(
        cluster("outbound|5432||pg.example.com")["type"],
        "STRICT_DNS"
    );
    assert_eq!(
        cluster("outbound|6379||rr.example.com")["type"],
        "LOGICAL_DNS"
    );
    // DNS without endpoints resolves the host itself.
    let mirror = cluster("outbound|443||mirror.example.com").to_string();
    assert!(mirror.contains("\"mirror.example.com\""), "{mirror}");
    // The shared route of port 80 ends in REGISTRY_ONLY's 502.
    let rds = json["rds"].to_string();
    assert!(rds.contains("block_all") && rds.contains("502"), "{rds}");
    let lds = json["lds"].to_string();
    assert!(
        lds.contains("0.0.0.0_25") && lds.contains("240.0.0.20") && lds.contains("0.0.0.0_9090"),
        "{lds}"
    );
    // uploads' tls[] route: its SNI to api.github.com, beside uploads' own SNI chain.
    let chains = json["lds"][0]["filterChains"].as_array().unwrap();
    let sni = |name: &str| {
        chains
            .iter()
            .find(|c| c["filterChainMatch"]["serverNames"][0] == name)
            .unwrap_or_else(|| panic!("a chain for SNI {name}"))["filters"][0]["typedConfig"]
            ["cluster"]
            .clone()
    };
    assert_eq!(sni("eu.uploads.github.com"), "outbound|443||api.github.com");
    assert_eq!(
        sni("uploads.github.com"),
        "outbound|443||uploads.github.com"
    );
    // A TLS port on a CIDR: each host by its SNI on the addresses, to its own cluster.
    for host in ["a.partners.example.com", "b.partners.example.com"] {
        let chain = chains
            .iter()
            .find(|c| c["filterChainMatch"]["serverNames"][0] == host)
            .unwrap_or_else(|| panic!("a chain for SNI {host}"));
        assert_eq!(
            chain["filterChainMatch"]["prefixRanges"],
            serde_json::json!([{"addressPrefix": "240.1.0.0", "prefixLen": 16}])
        );
        assert_eq!(
            chain["filters"][0]["typedConfig"]["cluster"],
            format!("outbound|8443||{host}")
        );
    }
    // The wildcard VirtualService's route: one chain for its SNI (no warning, asserted above).
    let eu = chains
        .iter()
        .filter(|c| {
            c["filterChainMatch"]["serverNames"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n == "eu.cdn.example.com"))
        })
        .count();
    assert_eq!(eu, 1);
    assert_eq!(sni("eu.cdn.example.com"), "outbound|443||a.cdn.example.com");
}
