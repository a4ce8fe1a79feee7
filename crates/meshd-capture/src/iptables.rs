//! The `iptables-restore --noflush` form of [`CaptureRules`], and reading back what `iptables-save`
//! shows so that a re-run replaces meshd's rules instead of adding a second copy.
//!
//! Declaring `:MESHD_… - [0:0]` in a `--noflush` document flushes that chain, so meshd's own chains are
//! simply rewritten. The jumps from `PREROUTING` and `OUTPUT` live in built-in chains that must not be
//! flushed: the jumps found by [`NatState`] are deleted (`-D`) in the same document, then added again.

use crate::rules::{CaptureRules, Chain, Family, Match, Rule, Target};

/// Comment prefix that marks every rule as meshd's.
pub const COMMENT_PREFIX: &str = "meshd/";

/// meshd's footprint in a namespace's nat table, read from `iptables-save -t nat`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatState {
    /// `-A PREROUTING …`/`-A OUTPUT …` lines that jump into a `MESHD_` chain, verbatim.
    pub jumps: Vec<String>,
    /// `MESHD_` chains that exist.
    pub chains: Vec<String>,
}

impl NatState {
    /// Reads `iptables-save` output (of the nat table, or of all tables: only `*nat` is looked at).
    pub fn parse(save: &str) -> Self {
        let mut state = NatState::default();
        let mut in_nat = false;
        for line in save.lines().map(str::trim) {
            if let Some(table) = line.strip_prefix('*') {
                in_nat = table == "nat";
            } else if !in_nat {
                continue;
            } else if let Some(decl) = line.strip_prefix(':') {
                let name = decl.split_whitespace().next().unwrap_or_default();
                if name.starts_with("MESHD_") {
                    state.chains.push(name.to_string());
                }
            } else if let Some(rule) = line.strip_prefix("-A ") {
                let mut words = rule.split_whitespace();
                let chain = words.next().unwrap_or_default();
                let jumps_to_meshd = rule
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .any(|w| w[0] == "-j" && w[1].starts_with("MESHD_"));
                if (chain == "PREROUTING" || chain == "OUTPUT") && jumps_to_meshd {
                    state.jumps.push(line.to_string());
                }
            }
        }
        state
    }

    pub fn is_empty(&self) -> bool {
        self.jumps.is_empty() && self.chains.is_empty()
    }
}

/// The iptables arguments of one rule, without `-t nat -A CHAIN` (comment included, unquoted).
pub fn rule_args(rule: &Rule) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    for m in &rule.matches {
        match m {
            Match::Tcp => push(&["-p", "tcp"]),
            Match::DstPort(p) => push(&["--dport", &p.to_string()]),
            Match::OutLoopback => push(&["-o", "lo"]),
            Match::Src(c) => push(&["-s", &c.to_string()]),
            Match::Dst(c) => push(&["-d", &c.to_string()]),
            Match::NotDst(c) => push(&["!", "-d", &c.to_string()]),
            Match::Uid(u) => push(&["-m", "owner", "--uid-owner", &u.to_string()]),
            Match::NotUid(u) => push(&["-m", "owner", "!", "--uid-owner", &u.to_string()]),
            Match::Gid(g) => push(&["-m", "owner", "--gid-owner", &g.to_string()]),
            Match::NotGid(g) => push(&["-m", "owner", "!", "--gid-owner", &g.to_string()]),
        }
    }
    push(&[
        "-m",
        "comment",
        "--comment",
        &format!("{COMMENT_PREFIX}{}", rule.comment),
    ]);
    match rule.target {
        Target::Return => push(&["-j", "RETURN"]),
        Target::Jump(chain) => push(&["-j", chain.name()]),
        Target::Redirect(port) => push(&["-j", "REDIRECT", "--to-ports", &port.to_string()]),
    }
    a
}

/// One rule as an `iptables-restore` line: `-A CHAIN …` with the comment quoted.
fn rule_line(rule: &Rule) -> String {
    let words: Vec<String> = rule_args(rule)
        .into_iter()
        .map(|w| {
            if w.starts_with(COMMENT_PREFIX) {
                format!("\"{w}\"")
            } else {
                w
            }
        })
        .collect();
    format!("-A {} {}", rule.chain.name(), words.join(" "))
}

/// The `iptables-restore --noflush` document for one family, given meshd's current footprint.
pub fn restore_document(rules: &CaptureRules, family: Family, current: &NatState) -> String {
    let mut doc = String::from("*nat\n");
    for chain in Chain::OWN {
        doc.push_str(&format!(":{} - [0:0]\n", chain.name()));
    }
    for jump in &current.jumps {
        doc.push_str(&format!("-D{}\n", &jump[2..]));
    }
    for rule in rules.for_family(family) {
        doc.push_str(&rule_line(rule));
        doc.push('\n');
    }
    doc.push_str("COMMIT\n");
    doc
}

/// The document that removes meshd's jumps and chains and nothing else; `None` when there are none.
pub fn cleanup_document(current: &NatState) -> Option<String> {
    if current.is_empty() {
        return None;
    }
    let mut doc = String::from("*nat\n");
    for jump in &current.jumps {
        doc.push_str(&format!("-D{}\n", &jump[2..]));
    }
    // Flush all before deleting any: meshd's chains jump to each other.
    for chain in &current.chains {
        doc.push_str(&format!("-F {chain}\n"));
    }
    for chain in &current.chains {
        doc.push_str(&format!("-X {chain}\n"));
    }
    doc.push_str("COMMIT\n");
    Some(doc)
}

/// The same rules as one `iptables` invocation each (`-t nat -N …`, `-t nat -A …`): the slow way,
/// kept as the baseline of the apply benchmark.
pub fn one_command_per_rule(rules: &CaptureRules, family: Family) -> Vec<Vec<String>> {
    let nat = |rest: &[&str]| {
        ["-t", "nat"]
            .iter()
            .chain(rest)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    let mut commands: Vec<Vec<String>> =
        Chain::OWN.iter().map(|c| nat(&["-N", c.name()])).collect();
    for rule in rules.for_family(family) {
        let mut cmd = nat(&["-A", rule.chain.name()]);
        cmd.extend(rule_args(rule));
        commands.push(cmd);
    }
    commands
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::CaptureSettings;

    const SAVED: &str = r#"# Generated by iptables-save v1.8.9
*filter
:INPUT ACCEPT [0:0]
-A INPUT -j MESHD_FAKE
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [3:180]
:MESHD_INBOUND - [0:0]
:MESHD_OUTPUT - [0:0]
:OTHER - [0:0]
-A PREROUTING -p tcp -m comment --comment "meshd/install-inbound" -j MESHD_INBOUND
-A PREROUTING -p tcp -j OTHER
-A OUTPUT -p tcp -m comment --comment "meshd/install-output" -j MESHD_OUTPUT
-A MESHD_INBOUND -p tcp -j MESHD_IN_REDIRECT
COMMIT
"#;

    #[test]
    fn reads_only_meshd_jumps_and_chains_of_the_nat_table() {
        let state = NatState::parse(SAVED);
        assert_eq!(state.chains, ["MESHD_INBOUND", "MESHD_OUTPUT"]);
        assert_eq!(
            state.jumps,
            [
                r#"-A PREROUTING -p tcp -m comment --comment "meshd/install-inbound" -j MESHD_INBOUND"#,
                r#"-A OUTPUT -p tcp -m comment --comment "meshd/install-output" -j MESHD_OUTPUT"#
            ]
        );
    }

    #[test]
    fn rerun_deletes_old_jumps_before_adding_them() {
        let rules = CaptureRules::new(&CaptureSettings::default());
        let doc = restore_document(&rules, Family::V4, &NatState::parse(SAVED));
        let delete = doc.find(r#"-D PREROUTING -p tcp -m comment --comment "meshd/install-inbound" -j MESHD_INBOUND"#).expect("old jump deleted");
        let add = doc.find(r#"-A PREROUTING -p tcp -m comment --comment "meshd/install-inbound" -j MESHD_INBOUND"#).expect("jump added");
        assert!(delete < add);
        assert!(!doc.contains("OTHER"), "other rules are left alone");
    }

    #[test]
    fn cleanup_removes_jumps_then_flushes_then_deletes_chains() {
        let doc = cleanup_document(&NatState::parse(SAVED)).expect("something to clean");
        let lines: Vec<&str> = doc.lines().collect();
        assert_eq!(
            lines[1],
            r#"-D PREROUTING -p tcp -m comment --comment "meshd/install-inbound" -j MESHD_INBOUND"#
        );
        assert_eq!(
            &lines[3..7],
            [
                "-F MESHD_INBOUND",
                "-F MESHD_OUTPUT",
                "-X MESHD_INBOUND",
                "-X MESHD_OUTPUT"
            ]
        );
        assert_eq!(cleanup_document(&NatState::default()), None);
    }

    #[test]
    fn one_command_per_rule_matches_the_document() {
        let rules = CaptureRules::new(&CaptureSettings::default());
        let commands = one_command_per_rule(&rules, Family::V4);
        let doc = restore_document(&rules, Family::V4, &NatState::default());
        let rule_lines = doc.lines().filter(|l| l.starts_with("-A ")).count();
        assert_eq!(commands.len(), rule_lines + Chain::OWN.len());
    }
}
