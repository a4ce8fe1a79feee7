//! Gateways' binding rules and verdicts.

use std::collections::BTreeMap;

use super::*;
use crate::validate::verdicts::InForce;

const D: &str = "cluster.local";

fn spec<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn cand<'a, T>(ns: &'a str, name: &'a str, created: i64, spec: &'a T) -> Candidate<'a, T> {
    Candidate {
        namespace: ns,
        name,
        created: Some(created),
        latest: spec,
        latest_errors: &[],
        previous: None,
    }
}

fn message(j: &Judged) -> String {
    let (_, errors) = j.rejected.as_ref().expect("rejected");
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn a_virtual_service_binds_a_gateway_by_namespace_and_name_or_by_name_in_its_namespace() {
    let vs: VirtualServiceSpec = spec(serde_json::json!({
        "hosts": ["a.example.com"], "gateways": ["edge/public", "internal"],
        "http": [{"route": [{"destination": {"host": "web"}}]}],
    }));
    assert!(binds_gateway(&vs, "shop", "edge", "public"));
    assert!(binds_gateway(&vs, "shop", "shop", "internal"));
    assert!(!binds_gateway(&vs, "shop", "edge", "internal"));
    assert!(!binds_gateway(&vs, "shop", "shop", "public"));
    let mesh: VirtualServiceSpec = spec(serde_json::json!({"gateways": ["mesh"]}));
    assert!(!binds_gateway(&mesh, "shop", "shop", "mesh"));
}

#[test]
fn server_hosts_limit_namespaces_and_the_more_specific_host_is_served() {
    let host = |server, vs_ns, vs_host| gateway_host(server, "edge", vs_ns, vs_host);
    assert_eq!(
        host("*.example.com", "shop", "a.example.com").as_deref(),
        Some("a.example.com")
    );
    assert_eq!(
        host("a.example.com", "shop", "*.example.com").as_deref(),
        Some("a.example.com")
    );
    assert_eq!(
        host("*", "shop", "a.example.com").as_deref(),
        Some("a.example.com")
    );
    assert_eq!(
        host("a.example.com", "shop", "*").as_deref(),
        Some("a.example.com")
    );
    assert_eq!(host("b.example.com", "shop", "a.example.com"), None);
    assert_eq!(
        host("shop/a.example.com", "shop", "a.example.com").as_deref(),
        Some("a.example.com")
    );
    assert_eq!(host("shop/a.example.com", "other", "a.example.com"), None);
    assert_eq!(host("./a.example.com", "shop", "a.example.com"), None);
    assert_eq!(
        host("./a.example.com", "edge", "a.example.com").as_deref(),
        Some("a.example.com")
    );
    assert_eq!(
        host("*/a.example.com", "any", "a.example.com").as_deref(),
        Some("a.example.com")
    );
}

fn gateway() -> GatewaySpec {
    spec(serde_json::json!({
        "selector": {"istio": "ingress"},
        "servers": [
            {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["shop/*.example.com"]},
            {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["api.example.org"],
             "tls": {"mode": "SIMPLE", "credentialName": "api"}},
        ],
    }))
}

#[test]
fn a_host_no_server_of_the_bound_gateway_accepts_is_named() {
    let gw = gateway();
    let gateways = [GatewayRef {
        namespace: "edge",
        name: "public",
        spec: &gw,
    }];
    let vs: VirtualServiceSpec = spec(serde_json::json!({
        "hosts": ["a.example.com", "api.example.org", "other.example.net"],
        "gateways": ["edge/public"],
        "http": [{"route": [{"destination": {"host": "web"}}]}],
    }));
    let errors = unbound_hosts(&vs, "shop", D, &gateways);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].to_string(),
        "spec.hosts[2]: \"other.example.net\" is not a host any server of Gateway edge/public accepts for this namespace"
    );
    // From another namespace, `shop/*.example.com` binds nothing.
    let errors = unbound_hosts(&vs, "web", D, &gateways);
    assert_eq!(errors.len(), 2, "{errors:?}");
    // Also bound to mesh: its hosts are the sidecars' too, not checked against the Gateway.
    let mut both = vs.clone();
    both.gateways.push("mesh".into());
    assert!(unbound_hosts(&both, "shop", D, &gateways).is_empty());
    // A Gateway that is not (yet) in force is not judged against.
    assert!(unbound_hosts(&vs, "shop", D, &[]).is_empty());
}

#[test]
fn of_two_gateways_selecting_one_pod_the_younger_with_another_protocol_on_a_port_is_rejected() {
    let old = gateway();
    let young: GatewaySpec = spec(serde_json::json!({
        "selector": {"istio": "ingress"},
        "servers": [
            {"port": {"number": 8080, "name": "web", "protocol": "HTTP"}, "hosts": ["*"]},
            {"port": {"number": 80, "name": "tcp", "protocol": "TCP"}, "hosts": ["*"]},
        ],
    }));
    let elsewhere: GatewaySpec = spec(serde_json::json!({
        "selector": {"istio": "other"},
        "servers": [{"port": {"number": 80, "name": "tcp", "protocol": "TCP"}, "hosts": ["*"]}],
    }));
    let ingress = BTreeMap::from([("istio".to_string(), "ingress".to_string())]);
    let other = BTreeMap::from([("istio".to_string(), "other".to_string())]);
    let pods = [
        GatewayPod {
            namespace: "edge",
            labels: &ingress,
        },
        GatewayPod {
            namespace: "edge",
            labels: &other,
        },
    ];
    let list = [
        cand("edge", "young", 20, &young),
        cand("edge", "old", 10, &old),
        cand("edge", "elsewhere", 30, &elsewhere),
    ];
    let j = judge_gateways(&list, &pods, |_, _| Ok(()));
    assert_eq!(j[1].in_force, InForce::Latest);
    assert_eq!(j[2].in_force, InForce::Latest, "selects another pod");
    assert_eq!(j[0].in_force, InForce::Nothing);
    assert_eq!(j[0].rejected.as_ref().unwrap().0, reason::CONFLICT);
    assert_eq!(
        message(&j[0]),
        "spec.servers[1].port.protocol: \"TCP\" differs from Gateway edge/old (HTTP) on port 80 of a gateway pod both select; the older Gateway wins"
    );
    // No pod selected by both: no conflict.
    let j = judge_gateways(&list, &pods[1..], |_, _| Ok(()));
    assert!(j.iter().all(|j| j.in_force == InForce::Latest));
    // A Gateway its own checks refuse claims nothing: the younger one is then in force.
    let j = judge_gateways(&list, &pods, |i, _| {
        if i == 1 {
            Err((reason::DANGLING_REFERENCE, vec![FieldError::new("x", "y")]))
        } else {
            Ok(())
        }
    });
    assert_eq!(j[1].in_force, InForce::Nothing);
    assert_eq!(j[0].in_force, InForce::Latest);
}

#[test]
fn an_empty_selector_selects_every_gateway_pod() {
    let gw: GatewaySpec = spec(serde_json::json!({"servers": []}));
    assert!(selects_pod(&gw, &BTreeMap::new()));
    assert!(!selects_pod(&gateway(), &BTreeMap::new()));
}

#[test]
fn an_update_that_conflicts_keeps_the_version_in_force_before_it() {
    let old = gateway();
    let good: GatewaySpec = spec(serde_json::json!({
        "selector": {"istio": "ingress"},
        "servers": [{"port": {"number": 8080, "name": "web", "protocol": "HTTP"}, "hosts": ["*"]}],
    }));
    let bad: GatewaySpec = spec(serde_json::json!({
        "selector": {"istio": "ingress"},
        "servers": [{"port": {"number": 80, "name": "tcp", "protocol": "TCP"}, "hosts": ["*"]}],
    }));
    let ingress = BTreeMap::from([("istio".to_string(), "ingress".to_string())]);
    let pods = [GatewayPod {
        namespace: "edge",
        labels: &ingress,
    }];
    let mut young = cand("edge", "young", 20, &bad);
    young.previous = Some(&good);
    let j = judge_gateways(
        &[cand("edge", "old", 10, &old), young],
        &pods,
        |_, _| Ok(()),
    );
    assert_eq!(j[1].in_force, InForce::Previous);
    assert!(message(&j[1]).starts_with("spec.servers[0].port.protocol: \"TCP\""));
}
