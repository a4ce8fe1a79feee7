//! The native nftables form of [`CaptureRules`]: one `table inet meshd` holding both families.
//!
//! The script first declares and deletes the table, then writes it whole, all in one `nft -f`
//! transaction: a re-run replaces the table atomically, and a first run does not fail on the delete.

use std::fmt::Write;

use crate::iptables::COMMENT_PREFIX;
use crate::rules::{CaptureRules, Chain, Family, Match, Rule, Target};

pub const TABLE: &str = "meshd";

/// The hook chains of meshd's table: the nat hooks at the same priority iptables' nat uses.
fn chain_name(chain: Chain) -> &'static str {
    match chain {
        Chain::Prerouting => "prerouting",
        Chain::Output => "output",
        other => other.name(),
    }
}

fn hook(chain: Chain) -> Option<&'static str> {
    match chain {
        Chain::Prerouting => Some("type nat hook prerouting priority -100; policy accept;"),
        Chain::Output => Some("type nat hook output priority -100; policy accept;"),
        _ => None,
    }
}

fn addr_family(cidr: &meshd_api::values::IpCidr) -> &'static str {
    if cidr.is_ipv4() { "ip" } else { "ip6" }
}

/// One rule as an nftables statement list.
pub fn rule_statement(rule: &Rule) -> String {
    let mut words: Vec<String> = Vec::new();
    // The `inet` table sees both families: a rule for one family without an address match says so.
    let has_address = rule
        .matches
        .iter()
        .any(|m| matches!(m, Match::Src(_) | Match::Dst(_) | Match::NotDst(_)));
    match rule.family {
        Some(Family::V4) if !has_address => words.push("meta nfproto ipv4".into()),
        Some(Family::V6) if !has_address => words.push("meta nfproto ipv6".into()),
        _ => {}
    }
    for m in &rule.matches {
        words.push(match m {
            Match::Tcp => "meta l4proto tcp".into(),
            Match::DstPort(p) => format!("tcp dport {p}"),
            Match::OutLoopback => "oifname \"lo\"".into(),
            Match::Src(c) => format!("{} saddr {c}", addr_family(c)),
            Match::Dst(c) => format!("{} daddr {c}", addr_family(c)),
            Match::NotDst(c) => format!("{} daddr != {c}", addr_family(c)),
            Match::Uid(u) => format!("meta skuid {u}"),
            Match::NotUid(u) => format!("meta skuid != {u}"),
            Match::Gid(g) => format!("meta skgid {g}"),
            Match::NotGid(g) => format!("meta skgid != {g}"),
        });
    }
    words.push("counter".into());
    words.push(match rule.target {
        Target::Return => "return".into(),
        Target::Jump(chain) => format!("jump {}", chain_name(chain)),
        Target::Redirect(port) => format!("redirect to :{port}"),
    });
    words.push(format!("comment \"{COMMENT_PREFIX}{}\"", rule.comment));
    words.join(" ")
}

/// The `nft -f` script that installs (or replaces) meshd's table.
pub fn script(rules: &CaptureRules) -> String {
    let mut out = format!("table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n");
    let chains = [Chain::Prerouting, Chain::Output]
        .into_iter()
        .chain(Chain::OWN);
    for chain in chains {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "\tchain {} {{", chain_name(chain));
        if let Some(hook) = hook(chain) {
            let _ = writeln!(out, "\t\t{hook}");
        }
        for rule in rules.rules.iter().filter(|r| r.chain == chain) {
            let _ = writeln!(out, "\t\t{}", rule_statement(rule));
        }
        out.push_str("\t}\n");
    }
    out.push_str("}\n");
    out
}

/// The script that removes meshd's table, whether or not it exists.
pub fn cleanup_script() -> String {
    format!("table inet {TABLE}\ndelete table inet {TABLE}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::CaptureSettings;

    #[test]
    fn ipv6_rules_use_ip6_matches() {
        let rules = CaptureRules::new(&CaptureSettings::default());
        let s = script(&rules);
        assert!(s.contains("oifname \"lo\" ip6 daddr != ::1/128 meta l4proto tcp meta skuid 1337 counter jump MESHD_IN_REDIRECT"));
        assert!(
            s.contains("ip daddr 127.0.0.1/32 counter return comment \"meshd/skip-localhost\"")
        );
        assert!(s.starts_with("table inet meshd\ndelete table inet meshd\n"));
    }
}
