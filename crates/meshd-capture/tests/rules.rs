//! The rule list's order and content, independent of syntax: Istio's order, families, CIDR masking,
//! deduplication.

use meshd_api::values::IncludeCidrs;
use meshd_capture::rules::Chain;
use meshd_capture::{CaptureRules, CaptureSettings, Family, InboundPorts};
fn comments(rules: &CaptureRules, family: Family) -> Vec<String> {
    rules
        .for_family(family)
        .map(|r| format!("{} {}", r.chain.name(), r.comment))
        .collect()
}

#[test]
fn default_order_follows_istio() {
    let rules = CaptureRules::new(&CaptureSettings::default());
    let v4 = comments(&rules, Family::V4);
    let expected = [
        "MESHD_REDIRECT redirect-to-outbound-15001",
        "MESHD_IN_REDIRECT redirect-to-inbound-15006",
        "PREROUTING install-inbound",
        "MESHD_INBOUND skip-proxy-port-15090",
        "MESHD_INBOUND skip-proxy-port-15021",
        "MESHD_INBOUND skip-proxy-port-15020",
        "MESHD_INBOUND capture-inbound",
        "OUTPUT install-output",
        "MESHD_OUTPUT skip-inbound-passthrough",
        "MESHD_OUTPUT proxy-to-local-address-uid",
        "MESHD_OUTPUT skip-app-loopback-uid",
        "MESHD_OUTPUT skip-proxy-uid",
        "MESHD_OUTPUT proxy-to-local-address-gid",
        "MESHD_OUTPUT skip-app-loopback-gid",
        "MESHD_OUTPUT skip-proxy-gid",
        "MESHD_OUTPUT skip-localhost",
        "MESHD_OUTPUT capture-outbound",
    ];
    assert_eq!(v4, expected);
    assert_eq!(
        comments(&rules, Family::V6),
        expected,
        "IPv6 has the same rules with its own addresses"
    );
}

#[test]
fn cidrs_go_to_their_family_and_are_masked_and_deduplicated() {
    let s = CaptureSettings {
        exclude_outbound_cidrs: vec![
            "10.1.2.3/8".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
            "fd00::1/8".parse().unwrap(),
        ],
        include_outbound_cidrs: IncludeCidrs::Only(vec!["192.168.0.0/16".parse().unwrap()]),
        ..CaptureSettings::default()
    };
    let rules = CaptureRules::new(&s);
    let v4 = comments(&rules, Family::V4);
    let v6 = comments(&rules, Family::V6);
    assert!(v4.contains(&"MESHD_OUTPUT skip-cidr-10.0.0.0/8".to_string()));
    assert_eq!(v4.iter().filter(|c| c.contains("skip-cidr")).count(), 1);
    assert!(v6.contains(&"MESHD_OUTPUT skip-cidr-fd00::/8".to_string()));
    assert_eq!(
        v4.last().map(String::as_str),
        Some("MESHD_OUTPUT capture-cidr-192.168.0.0/16")
    );
    assert!(
        !v6.iter()
            .any(|c| c.contains("capture-cidr") || c.contains("capture-outbound")),
        "no IPv6 CIDR included, so no IPv6 outbound capture: {v6:?}"
    );
}

#[test]
fn listed_inbound_ports_skip_excluded_and_proxy_ports() {
    let s = CaptureSettings {
        include_inbound_ports: InboundPorts::Only(vec![8080, 15021, 22, 8080]),
        exclude_inbound_ports: vec![22],
        ipv6: false,
        ..CaptureSettings::default()
    };
    let rules = CaptureRules::new(&s);
    let inbound: Vec<_> = rules
        .rules
        .iter()
        .filter(|r| r.chain == Chain::Inbound)
        .map(|r| r.comment.as_str())
        .collect();
    assert_eq!(inbound, ["capture-inbound-port-8080"]);
    assert!(rules.rules.iter().all(|r| r.family != Some(Family::V6)));
}
