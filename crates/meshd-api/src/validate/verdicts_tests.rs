//! Precedence and conflicts between resources, as `judge` decides them.

use std::collections::BTreeMap;

use super::*;
use crate::networking::{DestinationRuleSpec, ServiceEntrySpec, VirtualServiceSpec};

const D: &str = "cluster.local";

fn services() -> BTreeMap<String, (String, Vec<u16>)> {
    BTreeMap::from([(
        "reviews.shop.svc.cluster.local".to_string(),
        ("shop/reviews".to_string(), vec![9080]),
    )])
}

fn cand<'a, T>(name: &'a str, created: i64, spec: &'a T) -> Candidate<'a, T> {
    Candidate {
        namespace: "shop",
        name,
        created: Some(created),
        latest: spec,
        latest_errors: &[],
        previous: None,
    }
}

fn spec<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
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
fn a_service_entry_may_not_claim_a_services_host_nor_an_older_entrys() {
    let a: ServiceEntrySpec = spec(
        serde_json::json!({"hosts": ["api.example.com"], "ports": [{"number": 443, "name": "https", "protocol": "TLS"}]}),
    );
    let b: ServiceEntrySpec = spec(
        serde_json::json!({"hosts": ["api.example.com"], "ports": [{"number": 443, "name": "https", "protocol": "TLS"}]}),
    );
    let c: ServiceEntrySpec = spec(
        serde_json::json!({"hosts": ["reviews.shop.svc.cluster.local"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]}),
    );
    let j = judge(
        D,
        &services(),
        &[cand("new", 20, &b), cand("old", 10, &a), cand("svc", 5, &c)],
        &[],
        &[],
        &[],
    );
    assert_eq!(j.service_entries[1].in_force, InForce::Latest);
    assert_eq!(j.service_entries[0].in_force, InForce::Nothing);
    assert_eq!(
        message(&j.service_entries[0]),
        "spec.hosts[0]: \"api.example.com\" is also a host of ServiceEntry shop/old, which is older and wins"
    );
    assert_eq!(
        message(&j.service_entries[2]),
        "spec.hosts[0]: \"reviews.shop.svc.cluster.local\" is the host of Service shop/reviews"
    );
}

#[test]
fn destinations_resolve_against_services_entries_and_subsets_in_force() {
    let se: ServiceEntrySpec = spec(
        serde_json::json!({"hosts": ["api.example.com"], "ports": [{"number": 443, "name": "https", "protocol": "TLS"}]}),
    );
    let dr: DestinationRuleSpec = spec(
        serde_json::json!({"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}),
    );
    let vs: VirtualServiceSpec = spec(serde_json::json!({
        "hosts": ["reviews"],
        "http": [{"route": [
            {"destination": {"host": "reviews", "subset": "v1", "port": {"number": 9080}}, "weight": 90},
            {"destination": {"host": "reviews", "port": {"number": 80}}, "weight": 10},
        ]}],
        "tls": [{"match": [{"sniHosts": ["api.example.com"]}], "route": [{"destination": {"host": "api.example.com"}}]}],
    }));
    let j = judge(
        D,
        &services(),
        &[cand("api", 1, &se)],
        &[cand("reviews", 1, &dr)],
        &[cand("reviews", 1, &vs)],
        &[],
    );
    assert_eq!(j.destination_rules[0].in_force, InForce::Latest);
    assert_eq!(
        message(&j.virtual_services[0]),
        "spec.http[0].route[1].destination.port.number: 80 is not a port of reviews.shop.svc.cluster.local (9080)"
    );
}

#[test]
fn the_older_of_two_virtual_services_for_one_host_wins() {
    let vs: VirtualServiceSpec = spec(
        serde_json::json!({"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}),
    );
    let j = judge(
        D,
        &services(),
        &[],
        &[],
        &[cand("b", 10, &vs), cand("a", 20, &vs)],
        &[],
    );
    assert_eq!(j.virtual_services[0].in_force, InForce::Latest);
    assert_eq!(j.virtual_services[1].in_force, InForce::Nothing);
    assert_eq!(
        j.virtual_services[1].rejected.as_ref().unwrap().0,
        reason::CONFLICT
    );
    assert!(message(&j.virtual_services[1]).contains("is also a host of VirtualService shop/b"));
}

#[test]
fn two_rules_for_one_host_merge_unless_they_contradict() {
    let a: DestinationRuleSpec = spec(
        serde_json::json!({"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}),
    );
    let b: DestinationRuleSpec = spec(
        serde_json::json!({"host": "reviews", "subsets": [{"name": "v2", "labels": {"version": "v2"}}]}),
    );
    let c: DestinationRuleSpec = spec(
        serde_json::json!({"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "x"}}]}),
    );
    let j = judge(
        D,
        &services(),
        &[],
        &[cand("a", 1, &a), cand("b", 2, &b), cand("c", 3, &c)],
        &[],
        &[],
    );
    assert_eq!(j.destination_rules[0].in_force, InForce::Latest);
    assert_eq!(
        j.destination_rules[1].in_force,
        InForce::Latest,
        "a new subset merges"
    );
    assert_eq!(j.destination_rules[2].in_force, InForce::Nothing);
    assert!(
        message(&j.destination_rules[2])
            .starts_with("spec.subsets[0].name: \"v1\" is also a subset of DestinationRule shop/a")
    );
}

#[test]
fn a_rejected_update_keeps_a_previous_version_that_still_passes() {
    let good: VirtualServiceSpec = spec(
        serde_json::json!({"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}),
    );
    let bad: VirtualServiceSpec = spec(
        serde_json::json!({"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "nobody"}}]}]}),
    );
    let mut c = cand("r", 1, &bad);
    c.previous = Some(&good);
    let j = judge(D, &services(), &[], &[], &[c], &[]);
    assert_eq!(j.virtual_services[0].in_force, InForce::Previous);
    assert_eq!(
        j.virtual_services[0].rejected.as_ref().unwrap().0,
        reason::DANGLING_REFERENCE
    );
}
