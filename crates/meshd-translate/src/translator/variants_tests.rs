//! Per-proxy views through the whole translation: `sourceLabels`, `sourceNamespace` and `exportTo`
//! give a sidecar its own version of a host's routes (or of `virtualOutbound`), under the shared name;
//! DestinationRules by Istio's per-namespace lookup, its own clusters.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;
use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, route, route_action};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use meshd_api::validate::Validate;
use prost::Message;

use crate::facts::{
    Config, Fact, FactChange, FactKind, ObjectKey, Service, ServicePort, TargetPort, Workload,
};
use crate::{CompiledMesh, NodeId, Protocol, ResourceType, TranslateSettings, Translator};

const REVIEWS: &str = "reviews.shop.svc.cluster.local:9080";

fn at(kind: FactKind, key: &str, fact: Option<Fact>) -> FactChange {
    let (ns, name) = key.split_once('/').unwrap();
    FactChange {
        kind,
        key: ObjectKey::new(ns, name),
        fact,
    }
}

fn service(key: &str, port: u16, protocol: Protocol, vip: &str) -> FactChange {
    let fact = Fact::Service(Arc::new(Service {
        vips: vec![vip.into()],
        ports: vec![ServicePort {
            port,
            name: "p".into(),
            protocol,
            target_port: TargetPort::Number(port),
        }],
        selector: BTreeMap::new(),
    }));
    at(FactKind::Service, key, Some(fact))
}

fn pod(key: &str, app: &str) -> FactChange {
    let fact = Fact::Workload(Arc::new(Workload {
        ips: vec!["10.0.9.1".into()],
        labels: [("app".to_string(), app.to_string())].into(),
        service_account: "default".into(),
        mesh: None,
        ports: Vec::new(),
    }));
    at(FactKind::Workload, key, Some(fact))
}

/// A traffic object `ns/name` of `kind` with `spec`, decoded as the sources decode it.
fn object(kind: FactKind, key: &str, spec: serde_json::Value) -> serde_json::Value {
    let (ns, name) = key.split_once('/').unwrap();
    serde_json::json!({
        "apiVersion": "networking.meshd.io/v1alpha1", "kind": kind.name(),
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    })
}

/// Its fact: created at `created`, with its validation's problems.
fn config<S>(
    created: i64,
    problems: Vec<meshd_api::validate::FieldError>,
    spec: S,
) -> Arc<Config<S>> {
    Arc::new(Config {
        generation: None,
        created: Some(created),
        problems,
        spec,
    })
}

fn virtual_service(key: &str, created: i64, spec: serde_json::Value) -> FactChange {
    let o: meshd_api::networking::VirtualService =
        serde_json::from_value(object(FactKind::VirtualService, key, spec)).unwrap();
    let fact = Fact::VirtualService(config(created, o.validate(), o.spec));
    at(FactKind::VirtualService, key, Some(fact))
}

fn service_entry(key: &str, spec: serde_json::Value) -> FactChange {
    let o: meshd_api::networking::ServiceEntry =
        serde_json::from_value(object(FactKind::ServiceEntry, key, spec)).unwrap();
    let fact = Fact::ServiceEntry(config(1, o.validate(), o.spec));
    at(FactKind::ServiceEntry, key, Some(fact))
}

/// reviews and ratings (HTTP), db and db-v2 (TCP) in `shop`; clients `a-0.shop` (app a),
/// `b-0.shop` (app b) and `c-0.other` (app a).
fn compile(extra: Vec<FactChange>) -> (Translator, CompiledMesh) {
    let mut changes = vec![
        service("shop/reviews", 9080, Protocol::Http, "10.96.0.1"),
        service("shop/ratings", 9080, Protocol::Http, "10.96.0.2"),
        service("shop/db", 5432, Protocol::Tcp, "10.96.0.3"),
        service("shop/db-v2", 5432, Protocol::Tcp, "10.96.0.4"),
        pod("shop/a-0", "a"),
        pod("shop/b-0", "b"),
        pod("other/c-0", "a"),
    ];
    changes.extend(extra);
    let mut t = Translator::new(TranslateSettings::default());
    let (mesh, _) = t.apply(changes);
    assert!(mesh.verdicts.values().all(|v| v.accepted), "{mesh:?}");
    (t, mesh)
}

fn node(id: &str) -> NodeId {
    NodeId::parse(id).unwrap()
}

/// The clusters of one route configuration's routes, in order, as a proxy sees it.
fn routed(mesh: &CompiledMesh, proxy: &str, name: &str) -> Vec<String> {
    let config = mesh.proxy_config(&node(proxy));
    let r = config.get(ResourceType::Route, name).unwrap();
    let rc = RouteConfiguration::decode(r.body.value.as_slice()).unwrap();
    rc.virtual_hosts[0]
        .routes
        .iter()
        .map(|r| match &r.action {
            Some(route::Action::Route(a)) => match &a.cluster_specifier {
                Some(route_action::ClusterSpecifier::Cluster(c)) => c.clone(),
                other => panic!("one cluster: {other:?}"),
            },
            other => panic!("a route: {other:?}"),
        })
        .collect()
}

/// The cluster `virtualOutbound`'s chain for `chain` proxies to, as a proxy sees it.
fn tcp_routed(mesh: &CompiledMesh, proxy: &str, chain: &str) -> String {
    let config = mesh.proxy_config(&node(proxy));
    let listeners: Vec<&Arc<crate::Resource>> = config
        .resources(ResourceType::Listener)
        .filter(|r| &*r.name == crate::VIRTUAL_OUTBOUND)
        .collect();
    assert_eq!(listeners.len(), 1, "one virtualOutbound, shared or own");
    let l = Listener::decode(listeners[0].body.value.as_slice()).unwrap();
    let c = l.filter_chains.iter().find(|c| c.name == chain).unwrap();
    let Some(filter::ConfigType::TypedConfig(any)) = &c.filters[0].config_type else {
        panic!("typed config");
    };
    match TcpProxy::decode(any.value.as_slice())
        .unwrap()
        .cluster_specifier
    {
        Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => c,
        other => panic!("one cluster: {other:?}"),
    }
}

const TO_REVIEWS: &str = "outbound|9080||reviews.shop.svc.cluster.local";
const TO_RATINGS: &str = "outbound|9080||ratings.shop.svc.cluster.local";

fn by_source(m: serde_json::Value) -> FactChange {
    virtual_service(
        "shop/reviews",
        1,
        serde_json::json!({"hosts": ["reviews"], "http": [
            {"match": [m], "route": [{"destination": {"host": "ratings"}}]},
            {"route": [{"destination": {"host": "reviews"}}]},
        ]}),
    )
}

#[test]
fn a_source_labels_match_applies_only_to_the_pods_carrying_them() {
    let (_, mesh) = compile(vec![by_source(
        serde_json::json!({"sourceLabels": {"app": "a"}}),
    )]);
    assert_eq!(routed(&mesh, "a-0.shop", REVIEWS), [TO_RATINGS]);
    assert_eq!(routed(&mesh, "c-0.other", REVIEWS), [TO_RATINGS]);
    assert_eq!(routed(&mesh, "b-0.shop", REVIEWS), [TO_REVIEWS]);
    // Its match is a catch-all for a and c: nothing after it. b sees the shared route; a and c
    // share one variant, which replaces the shared one.
    assert!(!mesh.variants.contains_key(&ObjectKey::new("shop", "b-0")));
    let (a, c) = (
        &mesh.variants[&ObjectKey::new("shop", "a-0")],
        &mesh.variants[&ObjectKey::new("other", "c-0")],
    );
    assert!(Arc::ptr_eq(a, c));
    let (pa, pb) = (
        mesh.proxy_config(&node("a-0.shop")),
        mesh.proxy_config(&node("b-0.shop")),
    );
    assert_eq!(
        pa.count(ResourceType::Route),
        pb.count(ResourceType::Route),
        "a variant replaces, it does not add"
    );
    assert_eq!(
        pa.resources(ResourceType::Route).count(),
        pa.count(ResourceType::Route)
    );
    assert_ne!(
        pa.type_version(ResourceType::Route),
        pb.type_version(ResourceType::Route)
    );
}

#[test]
fn a_source_namespace_match_applies_only_to_that_namespace() {
    let (_, mesh) = compile(vec![by_source(
        serde_json::json!({"sourceNamespace": "other", "sourceLabels": {"app": "a"}}),
    )]);
    assert_eq!(routed(&mesh, "c-0.other", REVIEWS), [TO_RATINGS]);
    assert_eq!(routed(&mesh, "a-0.shop", REVIEWS), [TO_REVIEWS]);
    assert_eq!(routed(&mesh, "b-0.shop", REVIEWS), [TO_REVIEWS]);
}

#[test]
fn a_virtual_service_exported_to_its_namespace_routes_only_there() {
    let private = virtual_service(
        "shop/private",
        2,
        serde_json::json!({"hosts": ["reviews"], "exportTo": ["."],
            "http": [{"route": [{"destination": {"host": "ratings"}}]}]}),
    );
    let (_, mesh) = compile(vec![private.clone()]);
    assert_eq!(routed(&mesh, "a-0.shop", REVIEWS), [TO_RATINGS]);
    assert_eq!(
        routed(&mesh, "c-0.other", REVIEWS),
        [TO_REVIEWS],
        "the default route"
    );
    // An older public one for the same host: other namespaces see it, `shop` still its own.
    let public = virtual_service(
        "other/public",
        1,
        serde_json::json!({"hosts": ["reviews.shop.svc.cluster.local"],
            "http": [{"route": [{"destination": {"host": "db.shop.svc.cluster.local", "port": {"number": 5432}}}]}]}),
    );
    let (_, mesh) = compile(vec![private, public]);
    assert_eq!(routed(&mesh, "a-0.shop", REVIEWS), [TO_RATINGS]);
    assert_eq!(
        routed(&mesh, "c-0.other", REVIEWS),
        ["outbound|5432||db.shop.svc.cluster.local"]
    );
}

#[test]
fn a_tcp_source_labels_match_gives_those_pods_their_own_outbound_chain() {
    let vs = virtual_service(
        "shop/db",
        1,
        serde_json::json!({"hosts": ["db"], "tcp": [
            {"match": [{"sourceLabels": {"app": "a"}}], "route": [{"destination": {"host": "db-v2"}}]},
            {"route": [{"destination": {"host": "db"}}]},
        ]}),
    );
    let (_, mesh) = compile(vec![vs]);
    let chain = "db.shop.svc.cluster.local:5432";
    assert_eq!(
        tcp_routed(&mesh, "a-0.shop", chain),
        "outbound|5432||db-v2.shop.svc.cluster.local"
    );
    assert_eq!(
        tcp_routed(&mesh, "b-0.shop", chain),
        "outbound|5432||db.shop.svc.cluster.local"
    );
}

#[test]
fn a_tcp_source_namespace_match_applies_only_to_that_namespace() {
    let vs = virtual_service(
        "shop/db",
        1,
        serde_json::json!({"hosts": ["db"], "tcp": [
            {"match": [{"sourceNamespace": "other"}], "route": [{"destination": {"host": "db-v2"}}]},
            {"route": [{"destination": {"host": "db"}}]},
        ]}),
    );
    let (_, mesh) = compile(vec![vs]);
    let chain = "db.shop.svc.cluster.local:5432";
    assert_eq!(
        tcp_routed(&mesh, "c-0.other", chain),
        "outbound|5432||db-v2.shop.svc.cluster.local"
    );
    assert_eq!(
        tcp_routed(&mesh, "a-0.shop", chain),
        "outbound|5432||db.shop.svc.cluster.local"
    );
}

#[test]
fn a_label_change_moves_a_pod_between_views_and_marks_only_it() {
    let (mut t, _) = compile(vec![by_source(
        serde_json::json!({"sourceLabels": {"app": "a"}}),
    )]);
    let (mesh, changed) = t.apply(vec![pod("shop/b-0", "a")]);
    assert_eq!(routed(&mesh, "b-0.shop", REVIEWS), [TO_RATINGS]);
    assert!(changed.affects_proxy(&node("b-0.shop")));
    assert!(!changed.affects_proxy(&node("a-0.shop")));
    // The VirtualService goes: every variant goes, and the proxies that had one are marked.
    let (mesh, changed) = t.apply(vec![at(FactKind::VirtualService, "shop/reviews", None)]);
    assert!(mesh.variants.is_empty());
    for p in ["a-0.shop", "b-0.shop", "c-0.other"] {
        assert!(changed.affects_proxy(&node(p)), "{p}");
        assert_eq!(routed(&mesh, p, REVIEWS), [TO_REVIEWS]);
    }
}

#[test]
fn without_source_matches_or_restricted_exports_no_proxy_has_a_variant() {
    let vs = virtual_service(
        "shop/reviews",
        1,
        serde_json::json!({"hosts": ["reviews"], "exportTo": ["*"], "http": [
            {"match": [{"headers": {"x": {"exact": "1"}}}], "route": [{"destination": {"host": "ratings"}}]},
            {"route": [{"destination": {"host": "reviews"}}]},
        ]}),
    );
    let (_, mesh) = compile(vec![vs]);
    assert!(mesh.variants.is_empty());
    assert_eq!(routed(&mesh, "a-0.shop", REVIEWS), [TO_RATINGS, TO_REVIEWS]);
}

#[test]
fn a_service_entry_exported_to_its_namespace_is_only_that_namespaces() {
    let entry = service_entry(
        "shop/api",
        serde_json::json!({"hosts": ["api.example.com"], "addresses": ["240.0.0.1"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"},
                      {"number": 5432, "name": "pg", "protocol": "TCP"}],
            "resolution": "STATIC", "endpoints": [{"address": "192.0.2.1"}], "exportTo": ["."]}),
    );
    let (mut t, mesh) = compile(vec![entry]);
    let cluster = "outbound|80||api.example.com";
    assert!(
        mesh.shared(ResourceType::Cluster)
            .all(|r| &*r.name != cluster)
    );
    let chains = |proxy: &str| -> Vec<String> {
        let config = mesh.proxy_config(&node(proxy));
        let r = config
            .get(ResourceType::Listener, crate::VIRTUAL_OUTBOUND)
            .unwrap();
        let l = Listener::decode(r.body.value.as_slice()).unwrap();
        l.filter_chains.into_iter().map(|c| c.name).collect()
    };
    for (proxy, sees) in [("a-0.shop", true), ("b-0.shop", true), ("c-0.other", false)] {
        let config = mesh.proxy_config(&node(proxy));
        for ty in [ResourceType::Cluster, ResourceType::Endpoint] {
            assert_eq!(
                config.get(ty, cluster).is_some(),
                sees,
                "{proxy} {}",
                ty.short()
            );
        }
        let entry_chains = chains(proxy)
            .into_iter()
            .filter(|c| c.contains("api.example.com"))
            .count();
        assert_eq!(entry_chains > 0, sees, "{proxy}: {:?}", chains(proxy));
    }
    // Exported everywhere, it is shared again and no proxy keeps a variant.
    let (mesh, changed) = t.apply(vec![service_entry(
        "shop/api",
        serde_json::json!({"hosts": ["api.example.com"], "addresses": ["240.0.0.1"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "resolution": "STATIC", "endpoints": [{"address": "192.0.2.1"}]}),
    )]);
    assert!(
        mesh.shared(ResourceType::Cluster)
            .any(|r| &*r.name == cluster)
    );
    assert!(mesh.variants.is_empty());
    assert!(changed.affects_proxy(&node("a-0.shop")));
}

fn destination_rule(key: &str, created: i64, spec: serde_json::Value) -> FactChange {
    let o: meshd_api::networking::DestinationRule =
        serde_json::from_value(object(FactKind::DestinationRule, key, spec)).unwrap();
    let fact = Fact::DestinationRule(config(created, o.validate(), o.spec));
    at(FactKind::DestinationRule, key, Some(fact))
}

/// A rule for reviews with `simple` load balancing, one subset and `exportTo` (none: omitted).
fn reviews_rule(key: &str, simple: &str, subset: &str, export_to: Option<&[&str]>) -> FactChange {
    let mut spec = serde_json::json!({
        "host": "reviews.shop.svc.cluster.local",
        "trafficPolicy": {"loadBalancer": {"simple": simple}},
        "subsets": [{"name": subset, "labels": {"version": subset}}],
    });
    if let Some(e) = export_to {
        spec["exportTo"] = serde_json::json!(e);
    }
    destination_rule(key, 1, spec)
}

/// The load balancing policy of a cluster as a proxy sees it (`None`: it has no such cluster).
fn balanced(mesh: &CompiledMesh, proxy: &str, name: &str) -> Option<LbPolicy> {
    let config = mesh.proxy_config(&node(proxy));
    let r = config.get(ResourceType::Cluster, name)?;
    let c = Cluster::decode(r.body.value.as_slice()).unwrap();
    Some(c.lb_policy())
}

fn subset_of_reviews(subset: &str) -> String {
    format!("outbound|9080|{subset}|reviews.shop.svc.cluster.local")
}

#[test]
fn a_destination_rule_exported_to_its_namespace_applies_only_to_that_namespaces_proxies() {
    let (_, mesh) = compile(vec![reviews_rule(
        "shop/reviews",
        "ROUND_ROBIN",
        "v1",
        Some(&["."]),
    )]);
    for proxy in ["a-0.shop", "b-0.shop"] {
        assert_eq!(
            balanced(&mesh, proxy, TO_REVIEWS),
            Some(LbPolicy::RoundRobin)
        );
        assert!(balanced(&mesh, proxy, &subset_of_reviews("v1")).is_some());
    }
    // Not exported to `other`: its proxy, like the shared set, has the cluster without the rule.
    assert_eq!(
        balanced(&mesh, "c-0.other", TO_REVIEWS),
        Some(LbPolicy::LeastRequest)
    );
    assert_eq!(balanced(&mesh, "c-0.other", &subset_of_reviews("v1")), None);
    assert!(
        mesh.shared(ResourceType::Cluster)
            .all(|r| *r.name != *subset_of_reviews("v1"))
    );
    // The proxies of shop share one variant.
    assert!(Arc::ptr_eq(
        &mesh.variants[&ObjectKey::new("shop", "a-0")],
        &mesh.variants[&ObjectKey::new("shop", "b-0")]
    ));
    assert!(!mesh.variants.contains_key(&ObjectKey::new("other", "c-0")));
}

#[test]
fn a_rule_of_the_clients_namespace_overrides_the_service_namespaces_for_its_proxies_only() {
    let (_, mesh) = compile(vec![
        reviews_rule("shop/reviews", "ROUND_ROBIN", "v1", None),
        // Public, but a rule of `other` for another namespace's host applies only in `other`.
        reviews_rule("other/reviews", "RANDOM", "v2", None),
    ]);
    assert_eq!(
        balanced(&mesh, "a-0.shop", TO_REVIEWS),
        Some(LbPolicy::RoundRobin)
    );
    assert_eq!(
        balanced(&mesh, "c-0.other", TO_REVIEWS),
        Some(LbPolicy::Random)
    );
    assert!(balanced(&mesh, "c-0.other", &subset_of_reviews("v2")).is_some());
    assert_eq!(balanced(&mesh, "a-0.shop", &subset_of_reviews("v2")), None);
    assert!(mesh.variants.contains_key(&ObjectKey::new("other", "c-0")));
    assert!(!mesh.variants.contains_key(&ObjectKey::new("shop", "a-0")));
}

#[test]
fn a_rule_exported_to_tilde_applies_to_nobody_not_even_its_namespace() {
    let (_, mesh) = compile(vec![reviews_rule(
        "shop/reviews",
        "ROUND_ROBIN",
        "v1",
        Some(&["~"]),
    )]);
    for proxy in ["a-0.shop", "c-0.other"] {
        assert_eq!(
            balanced(&mesh, proxy, TO_REVIEWS),
            Some(LbPolicy::LeastRequest),
            "{proxy}"
        );
        assert_eq!(balanced(&mesh, proxy, &subset_of_reviews("v1")), None);
    }
    assert!(mesh.variants.is_empty());
}

#[test]
fn a_rule_exported_by_name_applies_there_and_the_root_namespaces_to_the_rest() {
    let (_, mesh) = compile(vec![
        reviews_rule("shop/reviews", "ROUND_ROBIN", "v1", Some(&["other"])),
        reviews_rule("meshd-system/reviews", "RANDOM", "v2", None),
    ]);
    assert_eq!(
        balanced(&mesh, "c-0.other", TO_REVIEWS),
        Some(LbPolicy::RoundRobin)
    );
    // `shop` is not in the rule's exportTo: its proxies fall through to the root namespace's rule.
    assert_eq!(
        balanced(&mesh, "a-0.shop", TO_REVIEWS),
        Some(LbPolicy::Random)
    );
    assert!(balanced(&mesh, "a-0.shop", &subset_of_reviews("v2")).is_some());
}

#[test]
fn public_rules_of_the_service_or_root_namespace_give_no_proxy_a_variant() {
    let (_, mesh) = compile(vec![
        reviews_rule("shop/reviews", "ROUND_ROBIN", "v1", None),
        reviews_rule("meshd-system/ratings", "RANDOM", "v2", Some(&["*"])),
    ]);
    assert!(mesh.variants.is_empty());
    assert_eq!(
        balanced(&mesh, "c-0.other", TO_REVIEWS),
        Some(LbPolicy::RoundRobin)
    );
}

#[test]
fn a_rule_moving_or_going_moves_the_variants_and_marks_the_proxies() {
    let (mut t, _) = compile(vec![reviews_rule("other/reviews", "RANDOM", "v2", None)]);
    // The rule moves to `shop` (same name in a new namespace: a new object; the old one goes).
    let (mesh, changed) = t.apply(vec![
        at(FactKind::DestinationRule, "other/reviews", None),
        reviews_rule("shop/reviews", "RANDOM", "v2", Some(&["."])),
    ]);
    assert_eq!(
        balanced(&mesh, "c-0.other", TO_REVIEWS),
        Some(LbPolicy::LeastRequest)
    );
    assert_eq!(
        balanced(&mesh, "a-0.shop", TO_REVIEWS),
        Some(LbPolicy::Random)
    );
    for p in ["a-0.shop", "b-0.shop", "c-0.other"] {
        assert!(changed.affects_proxy(&node(p)), "{p}");
    }
    let (mesh, changed) = t.apply(vec![at(FactKind::DestinationRule, "shop/reviews", None)]);
    assert!(mesh.variants.is_empty());
    assert!(changed.affects_proxy(&node("a-0.shop")));
    assert!(!changed.affects_proxy(&node("c-0.other")));
    assert_eq!(
        balanced(&mesh, "a-0.shop", TO_REVIEWS),
        Some(LbPolicy::LeastRequest)
    );
}

#[test]
fn a_clients_rule_gives_its_routes_their_hash_policy() {
    let hashing = destination_rule(
        "other/reviews",
        1,
        serde_json::json!({"host": "reviews.shop.svc.cluster.local",
            "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}}}),
    );
    let (_, mesh) = compile(vec![hashing]);
    let hashes = |proxy: &str| -> usize {
        let config = mesh.proxy_config(&node(proxy));
        let r = config.get(ResourceType::Route, REVIEWS).unwrap();
        let rc = RouteConfiguration::decode(r.body.value.as_slice()).unwrap();
        rc.virtual_hosts[0]
            .routes
            .iter()
            .map(|r| match &r.action {
                Some(route::Action::Route(a)) => a.hash_policy.len(),
                _ => 0,
            })
            .sum()
    };
    assert_eq!(hashes("c-0.other"), 1);
    assert_eq!(hashes("a-0.shop"), 0);
}

#[test]
fn an_endpoint_change_reaches_a_proxys_own_subset() {
    // reviews-v2-0 (version v2) in shop; other's rule for reviews has subset v2, shop's none.
    let reviews_pod = {
        let fact = Fact::Workload(Arc::new(Workload {
            ips: vec!["10.0.7.1".into()],
            labels: [("version".to_string(), "v2".to_string())].into(),
            service_account: "default".into(),
            mesh: None,
            ports: Vec::new(),
        }));
        at(FactKind::Workload, "shop/reviews-v2-0", Some(fact))
    };
    let slice = |addresses: &[&str]| {
        let fact = Fact::EndpointSlice(Arc::new(crate::facts::EndpointSlice {
            service: "reviews".into(),
            ports: vec![crate::facts::EndpointPort {
                name: "p".into(),
                port: 9080,
            }],
            endpoints: addresses
                .iter()
                .map(|a| crate::facts::Endpoint {
                    addresses: vec![a.to_string()],
                    ready: true,
                    serving: true,
                    terminating: false,
                    pod: None,
                })
                .collect(),
        }));
        at(FactKind::EndpointSlice, "shop/reviews-abc", Some(fact))
    };
    let (mut t, mesh) = compile(vec![
        reviews_pod,
        slice(&[]),
        reviews_rule("other/reviews", "RANDOM", "v2", Some(&["."])),
    ]);
    let endpoints = |mesh: &CompiledMesh| -> usize {
        let config = mesh.proxy_config(&node("c-0.other"));
        let r = config
            .get(ResourceType::Endpoint, &subset_of_reviews("v2"))
            .unwrap();
        let cla = envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment::decode(
            r.body.value.as_slice(),
        )
        .unwrap();
        cla.endpoints.iter().map(|l| l.lb_endpoints.len()).sum()
    };
    assert_eq!(endpoints(&mesh), 0);
    let (mesh, changed) = t.apply(vec![slice(&["10.0.7.1"])]);
    assert_eq!(endpoints(&mesh), 1);
    assert!(changed.affects_proxy(&node("c-0.other")));
}
