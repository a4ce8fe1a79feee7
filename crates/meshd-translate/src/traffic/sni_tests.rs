//! `tls[]` routes of a sidecar's TLS port: chains by SNI in route order, then the port's own.

use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use meshd_api::networking::VirtualServiceSpec;
use prost::Message;

use super::*;
use crate::envoy::tcp_proxy_filter;
use crate::outbound::cidr;

fn spec(tls: serde_json::Value) -> VirtualServiceSpec {
    serde_json::from_value(serde_json::json!({"hosts": ["pay", "*.pay.example.com"], "tls": tls}))
        .unwrap()
}

fn routes(vs: &VirtualServiceSpec, addresses: &[CidrRange]) -> Vec<SniRoute> {
    routes_for(vs, addresses, crate::traffic::Source::SHARED)
}

fn routes_for(
    vs: &VirtualServiceSpec,
    addresses: &[CidrRange],
    source: crate::traffic::Source<'_>,
) -> Vec<SniRoute> {
    let ports = |_: &str| Some(vec![443]);
    let ctx = RouteContext {
        namespace: "shop",
        domain: "cluster.local",
        port: 443,
        ports_of: &ports,
        hash: None,
        source,
    };
    sni_routes(vs, &ctx, addresses, "pay")
}

#[test]
fn a_match_with_source_labels_or_namespace_fits_only_those_proxies() {
    let vs = spec(serde_json::json!([
        {"match": [{"sniHosts": ["pay"], "sourceLabels": {"app": "a"}}], "route": [{"destination": {"host": "pay", "port": {"number": 443}}}]},
        {"match": [{"sniHosts": ["eu.pay.example.com"], "sourceNamespace": "eu"}], "route": [{"destination": {"host": "pay", "port": {"number": 443}}}]},
    ]));
    let addresses = [cidr("10.96.0.20")];
    let labels: std::collections::BTreeMap<String, String> =
        [("app".to_string(), "a".to_string())].into();
    let none = std::collections::BTreeMap::new();
    let names = |source| -> Vec<String> {
        routes_for(&vs, &addresses, source)
            .into_iter()
            .flat_map(|r| r.server_names)
            .collect()
    };
    let shop_a = crate::traffic::Source {
        namespace: "shop",
        labels: &labels,
    };
    let eu = crate::traffic::Source {
        namespace: "eu",
        labels: &none,
    };
    assert!(names(crate::traffic::Source::SHARED).is_empty());
    assert_eq!(names(shop_a), ["pay.shop.svc.cluster.local"]);
    assert_eq!(names(eu), ["eu.pay.example.com"]);
}

fn proxy(f: &Filter) -> TcpProxy {
    match &f.config_type {
        Some(envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(a)) => {
            TcpProxy::decode(a.value.as_slice()).unwrap()
        }
        other => panic!("a typed config: {other:?}"),
    }
}

fn cluster(f: &Filter) -> String {
    match proxy(f).cluster_specifier {
        Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => c,
        other => panic!("one cluster: {other:?}"),
    }
}

#[test]
fn routes_become_sni_chains_in_order_and_an_earlier_route_keeps_its_names() {
    let vs = spec(serde_json::json!([
        {"match": [{"sniHosts": ["eu.pay.example.com"]}, {"sniHosts": ["other.example.com"], "port": 8443}],
         "route": [{"destination": {"host": "pay", "subset": "eu"}}]},
        {"match": [{"sniHosts": ["EU.pay.example.com", "pay"]}],
         "route": [{"destination": {"host": "pay", "subset": "eu"}, "weight": 70},
                   {"destination": {"host": "pay", "subset": "us"}, "weight": 30}]},
        {"match": [{"sniHosts": ["eu.pay.example.com"]}],
         "route": [{"destination": {"host": "pay", "subset": "us"}}]},
        {"match": [{"sniHosts": ["src.pay.example.com"], "sourceLabels": {"app": "web"}}],
         "route": [{"destination": {"host": "pay"}}]},
    ]));
    let r = routes(&vs, &[cidr("10.96.0.40")]);
    let names: Vec<&[String]> = r.iter().map(|r| r.server_names.as_slice()).collect();
    // Port 8443's match does not fit; route 2 only adds pay's full name; route 3 has nothing left;
    // route 4's sourceLabels are per proxy, not here.
    assert_eq!(
        names,
        [
            &["eu.pay.example.com".to_string()][..],
            &["pay.shop.svc.cluster.local".to_string()][..]
        ]
    );
    assert_eq!(
        cluster(&r[0].filter),
        "outbound|443|eu|pay.shop.svc.cluster.local"
    );
    let Some(tcp_proxy::ClusterSpecifier::WeightedClusters(w)) =
        proxy(&r[1].filter).cluster_specifier
    else {
        panic!("weighted clusters");
    };
    let split: Vec<(&str, u32)> = w
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight))
        .collect();
    assert_eq!(
        split,
        [
            ("outbound|443|eu|pay.shop.svc.cluster.local", 70),
            ("outbound|443|us|pay.shop.svc.cluster.local", 30)
        ]
    );
}

#[test]
fn a_match_with_destination_subnets_fits_only_addresses_inside_them() {
    let vs = spec(serde_json::json!([
        {"match": [{"sniHosts": ["a.pay.example.com"], "destinationSubnets": ["10.96.0.0/16"]}],
         "route": [{"destination": {"host": "pay"}}]},
    ]));
    assert_eq!(routes(&vs, &[cidr("10.96.0.40")]).len(), 1);
    assert!(routes(&vs, &[cidr("10.97.0.40")]).is_empty());
    assert!(
        routes(&vs, &[]).is_empty(),
        "a port of any address is not inside"
    );
}

#[test]
fn on_a_vip_every_other_sni_falls_to_the_ports_own_chain() {
    let route = SniRoute {
        server_names: vec!["eu.pay.example.com".into()],
        filter: tcp_proxy_filter("pay", "outbound|443|eu|pay"),
        vs: None,
    };
    let ranges = [cidr("10.96.0.40")];
    let chains = tls_chains("pay:443", 443, &ranges, vec![route], Vec::new(), || {
        tcp_proxy_filter("pay", "outbound|443||pay")
    });
    let shape: Vec<(&str, Vec<String>, String)> = chains
        .iter()
        .map(|c| {
            let m = c.filter_chain_match.as_ref().unwrap();
            assert_eq!(m.destination_port.as_ref().unwrap().value, 443);
            assert_eq!(m.prefix_ranges, ranges);
            (
                c.name.as_str(),
                m.server_names.clone(),
                cluster(&c.filters[0]),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (
                "pay:443.tls0",
                vec!["eu.pay.example.com".to_string()],
                "outbound|443|eu|pay".to_string()
            ),
            ("pay:443", vec![], "outbound|443||pay".to_string()),
        ]
    );
}

#[test]
fn on_a_port_of_any_address_the_host_keeps_only_the_names_no_route_took() {
    let route = |names: &[&str]| SniRoute {
        server_names: names.iter().map(|n| n.to_string()).collect(),
        filter: tcp_proxy_filter("api", "outbound|443|v2|api.example.com"),
        vs: None,
    };
    let fallback = || tcp_proxy_filter("api", "outbound|443||api.example.com");
    let chains = tls_chains(
        "api.example.com:443",
        443,
        &[],
        vec![route(&["beta.example.com"])],
        vec!["api.example.com".into()],
        fallback,
    );
    assert_eq!(chains.len(), 2);
    for c in &chains {
        assert_eq!(
            c.filter_chain_match.as_ref().unwrap().transport_protocol,
            "tls"
        );
    }
    assert_eq!(
        chains[1].filter_chain_match.as_ref().unwrap().server_names,
        ["api.example.com"]
    );
    let taken = tls_chains(
        "api.example.com:443",
        443,
        &[],
        vec![route(&["api.example.com"])],
        vec!["api.example.com".into()],
        fallback,
    );
    assert_eq!(taken.len(), 1, "the route holds the host's own name");
    assert_eq!(
        cluster(&taken[0].filters[0]),
        "outbound|443|v2|api.example.com"
    );
}
