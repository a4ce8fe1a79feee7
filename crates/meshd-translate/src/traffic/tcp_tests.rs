//! `tcp[]` chains by `destinationSubnets`, the TCP idle timeout and PASSTHROUGH.

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::listener::v3::filter;
use meshd_api::networking::destination_rule::TrafficPolicy;

use super::*;
use crate::envoy::tcp_proxy_filter;
use crate::traffic::policy::{Policy, apply};

fn proxy(f: &Filter) -> TcpProxy {
    match &f.config_type {
        Some(filter::ConfigType::TypedConfig(a)) => TcpProxy::decode(a.value.as_slice()).unwrap(),
        other => panic!("a typed config: {other:?}"),
    }
}

fn to(f: &Filter) -> String {
    match proxy(f).cluster_specifier {
        Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => c,
        other => panic!("one cluster: {other:?}"),
    }
}

/// The chains of `tcp` for port 7000 on `addresses`: (ranges, cluster).
fn chains(tcp: serde_json::Value, addresses: &[&str]) -> Vec<(Vec<String>, String)> {
    let vs: VirtualServiceSpec =
        serde_json::from_value(serde_json::json!({"hosts": ["corp.internal"], "tcp": tcp}))
            .unwrap();
    let ports = |_: &str| Some(vec![7000]);
    let ctx = RouteContext {
        namespace: "shop",
        domain: "cluster.local",
        port: 7000,
        ports_of: &ports,
        hash: None,
        source: crate::traffic::Source::SHARED,
    };
    let addresses: Vec<CidrRange> = addresses.iter().filter_map(|a| prefix(a)).collect();
    tcp_chains(Some((&vs, &ctx)), &addresses, "corp", || {
        tcp_proxy_filter("corp", "own")
    })
    .into_iter()
    .map(|c| {
        let ranges = c
            .ranges
            .iter()
            .map(|r| format!("{}/{}", r.address_prefix, r.prefix_len.unwrap().value))
            .collect();
        (ranges, to(&c.filter))
    })
    .collect()
}

fn dest(host: &str) -> serde_json::Value {
    serde_json::json!([{"destination": {"host": host}}])
}

#[test]
fn a_vip_is_in_a_subnet_or_not() {
    let tcp = serde_json::json!([
        {"match": [{"destinationSubnets": ["10.97.0.0/16"]}], "route": dest("elsewhere.internal")},
        {"match": [{"destinationSubnets": ["10.96.0.0/16"], "port": 7000}], "route": dest("audit.internal")},
        {"route": dest("corp.internal")},
    ]);
    assert_eq!(
        chains(tcp.clone(), &["10.96.0.40"]),
        [(
            vec!["10.96.0.40/32".to_string()],
            "outbound|7000||audit.internal".to_string()
        )]
    );
    assert_eq!(
        chains(tcp, &["10.98.0.40"]),
        [(
            vec!["10.98.0.40/32".to_string()],
            "outbound|7000||corp.internal".to_string()
        )],
        "no subnet holds it: the route without a match"
    );
    let only_subnet = serde_json::json!([
        {"match": [{"destinationSubnets": ["10.97.0.0/16"]}], "route": dest("audit.internal")},
    ]);
    assert_eq!(
        chains(only_subnet, &["10.96.0.40"]),
        [(vec!["10.96.0.40/32".to_string()], "own".to_string())],
        "no route fits: the port's own cluster"
    );
}

#[test]
fn a_cidr_is_split_by_narrower_subnets_and_the_first_route_keeps_what_it_takes() {
    let tcp = serde_json::json!([
        {"match": [{"destinationSubnets": ["240.1.2.0/24", "10.0.0.0/8"]}], "route": dest("audit.internal")},
        {"match": [{"destinationSubnets": ["240.1.2.128/25", "240.1.3.0/24"]}], "route": dest("b.internal")},
        {"match": [{"port": 7001}], "route": dest("c.internal")},
    ]);
    assert_eq!(
        chains(tcp, &["240.1.0.0/16"]),
        [
            (
                vec!["240.1.2.0/24".to_string()],
                "outbound|7000||audit.internal".to_string()
            ),
            (
                vec!["240.1.3.0/24".to_string()],
                "outbound|7000||b.internal".to_string()
            ),
            (vec!["240.1.0.0/16".to_string()], "own".to_string()),
        ]
    );
    // Any address (a NONE entry without addresses): the subnets as written, then the rest.
    let any = serde_json::json!([
        {"match": [{"destinationSubnets": ["10.0.0.0/8"]}], "route": dest("audit.internal")},
        {"route": dest("corp.internal")},
    ]);
    assert_eq!(
        chains(any, &[]),
        [
            (
                vec!["10.0.0.0/8".to_string()],
                "outbound|7000||audit.internal".to_string()
            ),
            (vec![], "outbound|7000||corp.internal".to_string()),
        ]
    );
}

fn tp(v: serde_json::Value) -> TrafficPolicy {
    serde_json::from_value(v).unwrap()
}

#[test]
fn the_tcp_idle_timeout_goes_on_the_tcp_proxy_and_a_port_may_replace_it() {
    let rule = tp(serde_json::json!({
        "connectionPool": {"tcp": {"idleTimeout": "90s"}},
        "portLevelSettings": [{"port": {"number": 5432}, "connectionPool": {"tcp": {"idleTimeout": "1500ms"}}}],
    }));
    let idle = Policy::of(Some(&rule), None, 80).tcp_idle_timeout();
    assert_eq!(idle.map(|d| (d.seconds, d.nanos)), Some((90, 0)));
    let port = Policy::of(Some(&rule), None, 5432).tcp_idle_timeout();
    assert_eq!(port.map(|d| (d.seconds, d.nanos)), Some((1, 500_000_000)));
    let f = with_idle_timeout(tcp_proxy_filter("db", "outbound|5432||db"), port);
    let p = proxy(&f);
    assert_eq!(p.idle_timeout.map(|d| d.nanos), Some(500_000_000));
    assert_eq!(to(&f), "outbound|5432||db", "the rest unchanged");
    let none = Policy::of(None, None, 80).tcp_idle_timeout();
    assert_eq!(
        proxy(&with_idle_timeout(f.clone(), none)),
        p,
        "unset: unchanged"
    );
}

#[test]
fn passthrough_dials_the_original_destination() {
    let rule = tp(serde_json::json!({"loadBalancer": {"simple": "PASSTHROUGH"}}));
    let mut c = Cluster {
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(Default::default()),
        load_assignment: Some(Default::default()),
        ..Default::default()
    };
    apply(&mut c, &Policy::of(Some(&rule), None, 80));
    assert_eq!(
        c.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::OriginalDst as i32
        ))
    );
    assert_eq!(c.lb_policy, cluster::LbPolicy::ClusterProvided as i32);
    assert!(c.eds_cluster_config.is_none() && c.load_assignment.is_none());
}
