//! The verdict plumbing: a rejected update keeps the last accepted version in force, references are
//! checked against what is in force, verdicts follow deletions, and a kind judged alone (Gateway) is
//! reported like the others.

use std::collections::BTreeMap;
use std::sync::Arc;

use meshd_api::networking::{DestinationRuleSpec, GatewaySpec, VirtualServiceSpec};
use meshd_api::status::{VerdictKey, reason};
use meshd_api::validate::FieldError;

use super::*;

const DOMAIN: &str = "cluster.local";

fn services() -> BTreeMap<String, (String, Vec<u16>)> {
    BTreeMap::from([(
        "reviews.shop.svc.cluster.local".to_string(),
        ("shop/reviews".to_string(), vec![9080]),
    )])
}

fn vs(subset: &str) -> Fact {
    let spec: VirtualServiceSpec = serde_json::from_value(serde_json::json!({
        "hosts": ["reviews"],
        "http": [{"route": [{"destination": {"host": "reviews", "subset": subset}}]}],
    }))
    .unwrap();
    Fact::VirtualService(Arc::new(Config {
        generation: Some(1),
        created: None,
        spec,
        problems: Vec::new(),
    }))
}

fn dr(subsets: &[&str]) -> Fact {
    let subsets: Vec<_> = subsets
        .iter()
        .map(|s| serde_json::json!({"name": s, "labels": {"version": s}}))
        .collect();
    let spec: DestinationRuleSpec =
        serde_json::from_value(serde_json::json!({"host": "reviews", "subsets": subsets})).unwrap();
    Fact::DestinationRule(Arc::new(Config {
        generation: Some(1),
        created: None,
        spec,
        problems: Vec::new(),
    }))
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("shop", name)
}

fn verdict(c: &Configs, kind: &'static str, name: &str) -> Arc<Verdict> {
    c.verdicts
        .get(&VerdictKey::new(kind, "shop", name))
        .cloned()
        .unwrap_or_else(|| panic!("a verdict on {kind} shop/{name}"))
}

fn in_force_vs(c: &Configs) -> Option<Fact> {
    c.in_force(FactKind::VirtualService)
        .next()
        .map(|(_, f)| f.clone())
}

#[test]
fn a_dangling_subset_is_rejected_and_the_last_accepted_version_stays_in_force() {
    let mut c = Configs::default();
    c.set(
        FactKind::DestinationRule,
        key("reviews"),
        Some(dr(&["v1", "v2"])),
    );
    c.set(FactKind::VirtualService, key("reviews"), Some(vs("v2")));
    assert!(c.judge(DOMAIN, &services()));
    assert!(verdict(&c, "VirtualService", "reviews").accepted);
    let accepted = in_force_vs(&c).unwrap();

    // An update naming a subset nobody defines: rejected, the previous version stays.
    c.set(FactKind::VirtualService, key("reviews"), Some(vs("v3")));
    assert!(!c.judge(DOMAIN, &services()), "nothing in force changed");
    let v = verdict(&c, "VirtualService", "reviews");
    assert!(!v.accepted);
    assert_eq!(v.reason, reason::DANGLING_REFERENCE);
    assert_eq!(
        v.message,
        "spec.http[0].route[0].destination.subset: \"v3\" is not a subset of any DestinationRule for reviews.shop.svc.cluster.local (not applied: the last accepted version stays in force)"
    );
    assert!(in_force_vs(&c).unwrap().same(&accepted));
    // The DestinationRule is untouched by its neighbour's rejection.
    assert!(verdict(&c, "DestinationRule", "reviews").accepted);
}

#[test]
fn a_reference_is_checked_against_what_is_in_force() {
    let mut c = Configs::default();
    c.set(FactKind::VirtualService, key("reviews"), Some(vs("v2")));
    c.judge(DOMAIN, &services());
    assert!(!verdict(&c, "VirtualService", "reviews").accepted);
    assert!(
        in_force_vs(&c).is_none(),
        "never accepted: nothing in force"
    );
    // The DestinationRule arrives: the VirtualService is accepted on the next judgement.
    c.set(FactKind::DestinationRule, key("reviews"), Some(dr(&["v2"])));
    assert!(c.judge(DOMAIN, &services()));
    assert!(verdict(&c, "VirtualService", "reviews").accepted);
    assert!(in_force_vs(&c).is_some());
    // Deleted: its verdict goes too.
    assert!(c.set(FactKind::VirtualService, key("reviews"), None));
    assert!(
        c.verdicts
            .get(&VerdictKey::new("VirtualService", "shop", "reviews"))
            .is_none()
    );
}

#[test]
fn an_unknown_host_and_an_invalid_object_are_rejected_with_their_field() {
    let mut c = Configs::default();
    let mut other = Config {
        generation: Some(4),
        created: None,
        spec: VirtualServiceSpec::default(),
        problems: vec![
            FieldError::new("spec.http[0].match[0].uri.regex", "is not RE2: x").with_str("(?=a)"),
        ],
    };
    c.set(
        FactKind::VirtualService,
        key("bad"),
        Some(Fact::VirtualService(Arc::new(other.clone()))),
    );
    other.problems.clear();
    other.spec = serde_json::from_value(serde_json::json!({
        "hosts": ["ratings"], "http": [{"route": [{"destination": {"host": "ratings"}}]}],
    }))
    .unwrap();
    c.set(
        FactKind::VirtualService,
        key("ratings"),
        Some(Fact::VirtualService(Arc::new(other))),
    );
    c.judge(DOMAIN, &services());
    let bad = verdict(&c, "VirtualService", "bad");
    assert_eq!(
        (bad.accepted, bad.reason, bad.generation),
        (false, reason::INVALID, Some(4))
    );
    assert!(
        bad.message
            .starts_with("spec.http[0].match[0].uri.regex: \"(?=a)\" is not RE2")
    );
    let ratings = verdict(&c, "VirtualService", "ratings");
    assert_eq!(ratings.reason, reason::DANGLING_REFERENCE);
    assert!(
        ratings.message.starts_with(
            "spec.http[0].route[0].destination.host: \"ratings\" is not a host of any Service or ServiceEntry"
        ),
        "{}",
        ratings.message
    );
}

#[test]
fn a_kind_judged_alone_gets_verdicts_too() {
    let gw = |problems: Vec<FieldError>| {
        Fact::Gateway(Arc::new(Config {
            generation: Some(1),
            created: None,
            spec: GatewaySpec::default(),
            problems,
        }))
    };
    let mut c = Configs::default();
    c.set(FactKind::Gateway, key("ingress"), Some(gw(Vec::new())));
    assert!(c.judge(DOMAIN, &services()));
    assert!(verdict(&c, "Gateway", "ingress").accepted);
    c.set(
        FactKind::Gateway,
        key("ingress"),
        Some(gw(vec![FieldError::new("spec.servers", "is required")])),
    );
    assert!(!c.judge(DOMAIN, &services()), "the accepted version stays");
    let v = verdict(&c, "Gateway", "ingress");
    assert_eq!((v.accepted, v.reason), (false, reason::INVALID));
    assert_eq!(c.in_force(FactKind::Gateway).count(), 1);
}

#[test]
fn a_fact_of_another_kind_is_refused() {
    let mut c = Configs::default();
    assert!(!c.set(FactKind::Gateway, key("x"), Some(vs("v1"))));
    c.judge(DOMAIN, &services());
    assert!(c.verdicts.is_empty());
}

#[test]
fn deleting_a_resource_in_force_is_a_change_and_leaves_the_host_index() {
    let mut c = Configs::default();
    c.set(FactKind::DestinationRule, key("reviews"), Some(dr(&["v2"])));
    c.set(FactKind::VirtualService, key("reviews"), Some(vs("v2")));
    assert!(c.judge(DOMAIN, &services()));
    assert_eq!(
        c.naming(FactKind::VirtualService, "reviews.shop.svc.cluster.local")
            .len(),
        1
    );
    c.set(FactKind::VirtualService, key("reviews"), None);
    assert!(c.judge(DOMAIN, &services()), "what is in force changed");
    assert!(
        c.naming(FactKind::VirtualService, "reviews.shop.svc.cluster.local")
            .is_empty()
    );
}

/// Services `h<i>` in `shop`.
fn many_services(n: usize) -> BTreeMap<String, (String, Vec<u16>)> {
    (0..n)
        .map(|i| {
            (
                format!("h{i}.shop.svc.cluster.local"),
                (format!("shop/h{i}"), vec![80]),
            )
        })
        .collect()
}

/// A DestinationRule `r<i>` for each Service `h<i>` of `range`.
fn rules_for_hosts(c: &mut Configs, range: std::ops::Range<usize>) {
    for i in range {
        let spec: DestinationRuleSpec =
            serde_json::from_value(serde_json::json!({"host": format!("h{i}")})).unwrap();
        let fact = Fact::DestinationRule(Arc::new(Config {
            generation: Some(1),
            created: None,
            spec,
            problems: Vec::new(),
        }));
        c.set(FactKind::DestinationRule, key(&format!("r{i}")), Some(fact));
    }
}

#[test]
fn a_bulk_move_marks_every_host_and_a_small_one_only_its_own() {
    let mut c = Configs::default();
    let services = many_services(3 * BULK_MOVE);
    rules_for_hosts(&mut c, 0..BULK_MOVE);
    assert!(c.judge(DOMAIN, &services));
    // BULK_MOVE versions moved, more than the one Service the call is told of: every host.
    let bulk = c.take_touched(DOMAIN, 1);
    assert!(bulk.all && bulk.hosts.is_empty(), "{bulk:?}");

    rules_for_hosts(&mut c, BULK_MOVE..BULK_MOVE + 2);
    assert!(c.judge(DOMAIN, &services));
    let small = c.take_touched(DOMAIN, 1);
    assert!(!small.all, "{small:?}");
    let hosts: Vec<&str> = small.hosts.iter().map(String::as_str).collect();
    let expected = [BULK_MOVE, BULK_MOVE + 1].map(|i| format!("h{i}.shop.svc.cluster.local"));
    assert_eq!(
        hosts,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );

    // Fewer versions moved than there are Services: each one's hosts.
    rules_for_hosts(&mut c, 2 * BULK_MOVE..3 * BULK_MOVE);
    assert!(c.judge(DOMAIN, &services));
    let many = c.take_touched(DOMAIN, 10 * BULK_MOVE);
    assert!(!many.all && many.hosts.len() == BULK_MOVE, "{many:?}");
}
