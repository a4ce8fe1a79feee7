//! Property tests: the rule list, evaluated like the kernel walks the nat chains, captures exactly the
//! connections the settings say it should ([`validate::captures`]), for arbitrary settings; and every
//! rendered rule carries a `meshd/` comment.

use std::net::{IpAddr, SocketAddr};

use meshd_api::values::{IncludeCidrs, IpCidr};
use meshd_capture::rules::{self, Chain, Match, Rule, Target};
use meshd_capture::{CaptureRules, CaptureSettings, Family, iptables, nftables, validate};
use proptest::prelude::*;

/// A TCP packet leaving (or entering) the pod.
struct Packet {
    uid: u32,
    gid: u32,
    dst: SocketAddr,
    src: IpAddr,
    out_loopback: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Untouched,
    RedirectedTo(u16),
}

fn matches(m: &Match, p: &Packet) -> bool {
    match m {
        Match::Tcp => true,
        Match::DstPort(port) => p.dst.port() == *port,
        Match::OutLoopback => p.out_loopback,
        Match::Src(c) => c.contains(p.src),
        Match::Dst(c) => c.contains(p.dst.ip()),
        Match::NotDst(c) => p.dst.ip().is_ipv4() == c.is_ipv4() && !c.contains(p.dst.ip()),
        Match::Uid(u) => p.uid == *u,
        Match::NotUid(u) => p.uid != *u,
        Match::Gid(g) => p.gid == *g,
        Match::NotGid(g) => p.gid != *g,
    }
}

/// Walks `chain` as netfilter does: first matching rule decides; RETURN goes back to the caller.
fn walk(rules: &[&Rule], chain: Chain, p: &Packet) -> Option<Verdict> {
    for rule in rules.iter().filter(|r| r.chain == chain) {
        if rule.matches.iter().all(|m| matches(m, p)) {
            match rule.target {
                Target::Return => return None,
                Target::Redirect(port) => return Some(Verdict::RedirectedTo(port)),
                Target::Jump(next) => {
                    if let Some(v) = walk(rules, next, p) {
                        return Some(v);
                    }
                }
            }
        }
    }
    None
}

fn evaluate(rules: &CaptureRules, hook: Chain, p: &Packet) -> Verdict {
    let family = if p.dst.is_ipv4() {
        Family::V4
    } else {
        Family::V6
    };
    let list: Vec<&Rule> = rules.for_family(family).collect();
    walk(&list, hook, p).unwrap_or(Verdict::Untouched)
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        // Loopback, often: 127.0.0.1 and its neighbours, ::1.
        (0u8..3, 0u8..3).prop_map(|(a, b)| IpAddr::from([127, 0, a, b])),
        Just(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
        // A small IPv6 space, so that generated CIDRs often contain generated addresses.
        (0u16..4, any::<u16>()).prop_map(|(a, b)| IpAddr::from([0xfd00, a, 0, 0, 0, 0, 0, b])),
    ]
}

fn any_cidr() -> impl Strategy<Value = IpCidr> {
    (any_ip(), 0u8..=128).prop_map(|(addr, p)| IpCidr {
        addr,
        prefix: if addr.is_ipv4() { p % 33 } else { p },
    })
}

fn ports() -> impl Strategy<Value = Vec<u16>> {
    proptest::collection::vec(prop_oneof![1u16..20, 15000u16..15100], 0..4)
}

fn settings() -> impl Strategy<Value = CaptureSettings> {
    (
        ports(),
        ports(),
        proptest::collection::vec(any_cidr(), 0..3),
        proptest::option::of(proptest::collection::vec(any_cidr(), 0..3)),
        ports(),
        any::<bool>(),
    )
        .prop_map(
            |(exclude_in, exclude_out, exclude_cidrs, include, include_ports, ipv6)| {
                CaptureSettings {
                    exclude_inbound_ports: exclude_in,
                    exclude_outbound_ports: exclude_out,
                    exclude_outbound_cidrs: exclude_cidrs,
                    include_outbound_cidrs: include.map_or(IncludeCidrs::All, IncludeCidrs::Only),
                    include_outbound_ports: include_ports,
                    ipv6,
                    ..CaptureSettings::default()
                }
            },
        )
}

proptest! {
    #[test]
    fn app_outbound_is_captured_exactly_when_the_settings_say(s in settings(), ip in any_ip(), port in prop_oneof![1u16..20, 15000u16..15100]) {
        prop_assume!(ip.is_ipv4() || s.ipv6);
        let rules = CaptureRules::new(&s);
        let dst = SocketAddr::new(ip, port);
        // Loopback destinations leave through lo.
        let app = Packet { uid: 1000, gid: 1000, dst, src: ip, out_loopback: ip.is_loopback() };
        let expected = if validate::captures(&s, dst) { Verdict::RedirectedTo(s.outbound_port) } else { Verdict::Untouched };
        prop_assert_eq!(evaluate(&rules, Chain::Output, &app), expected);
        // The proxy's own traffic (by uid or by gid) is never captured outbound. Over lo to an address
        // other than localhost the proxy uid goes to the inbound side (see loopback_follows_istio); the
        // proxy gid alone too, but only when the app's loopback return (by uid) is left out.
        let localhost = ip == IpAddr::from([127, 0, 0, 1]) || ip == IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
        let to_self = ip.is_loopback() && !localhost && !s.exclude_outbound_ports.contains(&port);
        let family = if ip.is_ipv4() { Family::V4 } else { Family::V6 };
        let verdict = |inbound: bool| if inbound { Verdict::RedirectedTo(s.inbound_port) } else { Verdict::Untouched };
        let proxy = Packet { uid: s.proxy_uid, ..app };
        prop_assert_eq!(evaluate(&rules, Chain::Output, &proxy), verdict(to_self));
        let proxy_group = Packet { uid: 1000, gid: s.proxy_gid, ..proxy };
        prop_assert_eq!(
            evaluate(&rules, Chain::Output, &proxy_group),
            verdict(to_self && rules::includes_loopback(&s, family))
        );
    }

    #[test]
    fn inbound_is_captured_except_the_proxy_and_excluded_ports(s in settings(), port in prop_oneof![1u16..20, 15000u16..15100]) {
        let rules = CaptureRules::new(&s);
        let p = Packet { uid: 0, gid: 0, dst: SocketAddr::new([10, 0, 0, 2].into(), port), src: [10, 0, 0, 1].into(), out_loopback: false };
        let skipped = s.proxy_ports.contains(&port) || s.exclude_inbound_ports.contains(&port);
        let expected = if skipped { Verdict::Untouched } else { Verdict::RedirectedTo(s.inbound_port) };
        prop_assert_eq!(evaluate(&rules, Chain::Prerouting, &p), expected);
    }

    #[test]
    fn every_rendered_rule_is_marked_as_meshd(s in settings()) {
        let rules = CaptureRules::new(&s);
        for &family in rules.families() {
            let doc = iptables::restore_document(&rules, family, &Default::default());
            for line in doc.lines().filter(|l| l.starts_with("-A ")) {
                prop_assert!(line.contains("--comment \"meshd/"), "{}", line);
            }
        }
        for rule in &rules.rules {
            prop_assert!(nftables::rule_statement(rule).ends_with('"') && nftables::rule_statement(rule).contains("comment \"meshd/"));
        }
    }
}

#[test]
fn loopback_follows_istio() {
    let s = CaptureSettings::default();
    let rules = CaptureRules::new(&s);
    let pod_ip: IpAddr = [10, 0, 0, 2].into();
    let to_self = |uid| Packet {
        uid,
        gid: uid,
        dst: SocketAddr::new(pod_ip, 8080),
        src: pod_ip,
        out_loopback: true,
    };
    // The app calling its own pod address stays local; the proxy doing so (a service VIP resolved to
    // this pod) is sent to the inbound side.
    assert_eq!(
        evaluate(&rules, Chain::Output, &to_self(1000)),
        Verdict::Untouched
    );
    assert_eq!(
        evaluate(&rules, Chain::Output, &to_self(1337)),
        Verdict::RedirectedTo(15006)
    );
    let localhost = Packet {
        dst: "127.0.0.1:8080".parse().unwrap(),
        src: [127, 0, 0, 1].into(),
        ..to_self(1337)
    };
    assert_eq!(
        evaluate(&rules, Chain::Output, &localhost),
        Verdict::Untouched
    );
}

#[test]
fn an_included_loopback_cidr_is_captured_for_its_family_only() {
    let s = CaptureSettings {
        include_outbound_cidrs: IncludeCidrs::Only(vec![
            "127.10.0.0/16".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ]),
        ..CaptureSettings::default()
    };
    let rules = CaptureRules::new(&s);
    let app = |dst: &str| Packet {
        uid: 1000,
        gid: 1000,
        dst: dst.parse().unwrap(),
        src: [10, 0, 0, 2].into(),
        out_loopback: true,
    };
    assert_eq!(
        evaluate(&rules, Chain::Output, &app("127.10.0.5:80")),
        Verdict::RedirectedTo(15001),
        "the included loopback CIDR"
    );
    for (dst, why) in [
        ("127.0.0.1:80", "localhost always returns"),
        ("127.0.0.2:80", "loopback outside the included CIDR"),
        ("10.0.0.2:80", "the pod's own address over lo, not included"),
        // IPv6 keeps its loopback return: no IPv6 loopback CIDR is included, so the app calling its
        // own fd00:: pod address over lo stays local.
        ("[fd00::2]:80", "the app's own IPv6 address over lo"),
    ] {
        assert_eq!(
            evaluate(&rules, Chain::Output, &app(dst)),
            Verdict::Untouched,
            "{why}"
        );
    }
}

#[test]
fn included_ports_are_captured_unless_excluded_first() {
    let s = CaptureSettings {
        include_outbound_cidrs: IncludeCidrs::Only(vec![]),
        include_outbound_ports: vec![443],
        exclude_outbound_cidrs: vec!["10.99.0.0/16".parse().unwrap()],
        ..CaptureSettings::default()
    };
    let rules = CaptureRules::new(&s);
    let app = |dst: &str| Packet {
        uid: 1000,
        gid: 1000,
        dst: dst.parse().unwrap(),
        src: [10, 0, 0, 2].into(),
        out_loopback: false,
    };
    assert_eq!(
        evaluate(&rules, Chain::Output, &app("10.1.0.1:443")),
        Verdict::RedirectedTo(15001)
    );
    assert_eq!(
        evaluate(&rules, Chain::Output, &app("10.1.0.1:80")),
        Verdict::Untouched,
        "no CIDR included"
    );
    assert_eq!(
        evaluate(&rules, Chain::Output, &app("10.99.0.1:443")),
        Verdict::Untouched,
        "an excluded CIDR returns before the included port, as in istio-iptables"
    );
}
