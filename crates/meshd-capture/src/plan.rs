//! A [`Plan`]: the exact commands `meshd init` runs and the documents it feeds them on stdin. Applying
//! runs the steps; `--dry-run` prints them; golden files pin them.

use std::fmt;

use crate::iptables::{self, NatState};
use crate::nftables;
use crate::rules::{CaptureRules, Family};

/// How rules reach the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `iptables-legacy-restore` (x_tables); chosen when legacy rules already exist in the namespace.
    IptablesLegacy,
    /// `iptables-nft-restore` (iptables syntax, nf_tables underneath); the default for `--mode iptables`.
    IptablesNft,
    /// `nft -f`, `table inet meshd` (`--mode nftables`).
    Nftables,
}

impl Backend {
    pub fn restore_program(self, family: Family) -> &'static str {
        match (self, family) {
            (Backend::IptablesLegacy, Family::V4) => "iptables-legacy-restore",
            (Backend::IptablesLegacy, Family::V6) => "ip6tables-legacy-restore",
            (Backend::IptablesNft, Family::V4) => "iptables-nft-restore",
            (Backend::IptablesNft, Family::V6) => "ip6tables-nft-restore",
            (Backend::Nftables, _) => "nft",
        }
    }

    pub fn save_program(self, family: Family) -> &'static str {
        match (self, family) {
            (Backend::IptablesLegacy, Family::V4) => "iptables-legacy-save",
            (Backend::IptablesLegacy, Family::V6) => "ip6tables-legacy-save",
            (Backend::IptablesNft, Family::V4) => "iptables-nft-save",
            (Backend::IptablesNft, Family::V6) => "ip6tables-nft-save",
            (Backend::Nftables, _) => "nft",
        }
    }

    /// The program that issues one rule (the benchmark's baseline).
    pub fn single_rule_program(self, family: Family) -> &'static str {
        match (self, family) {
            (Backend::IptablesLegacy, Family::V4) => "iptables-legacy",
            (Backend::IptablesLegacy, Family::V6) => "ip6tables-legacy",
            (Backend::IptablesNft, Family::V4) => "iptables-nft",
            (Backend::IptablesNft, Family::V6) => "ip6tables-nft",
            (Backend::Nftables, _) => "nft",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::IptablesLegacy => "iptables-legacy",
            Backend::IptablesNft => "iptables-nft",
            Backend::Nftables => "nftables",
        }
    }
}

/// One command with its stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub program: &'static str,
    pub args: Vec<&'static str>,
    pub stdin: String,
}

impl Step {
    /// The command line, for logs and errors.
    pub fn command_line(&self) -> String {
        std::iter::once(self.program)
            .chain(self.args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The steps to run, in order; each is atomic on its own (one family's table, or the whole nft table).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
}

/// Arguments of every `iptables-restore`: keep other rules, and wait for the xtables lock that
/// iptables-legacy shares across namespaces.
const RESTORE_ARGS: [&str; 2] = ["--noflush", "--wait=5"];

/// Where the current iptables state of each family is: what a re-run or cleanup must replace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurrentState {
    pub v4: NatState,
    pub v6: NatState,
}

impl CurrentState {
    fn of(&self, family: Family) -> &NatState {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

impl Plan {
    /// Install (or replace) the capture rules.
    pub fn install(rules: &CaptureRules, backend: Backend, current: &CurrentState) -> Plan {
        let steps = match backend {
            Backend::Nftables => vec![Step {
                program: "nft",
                args: vec!["-f", "-"],
                stdin: nftables::script(rules),
            }],
            _ => rules
                .families()
                .iter()
                .map(|&f| Step {
                    program: backend.restore_program(f),
                    args: RESTORE_ARGS.to_vec(),
                    stdin: iptables::restore_document(rules, f, current.of(f)),
                })
                .collect(),
        };
        Plan { steps }
    }

    /// Remove meshd's rules and chains (iptables), or meshd's table (nftables); nothing else.
    pub fn cleanup(backend: Backend, current: &CurrentState) -> Plan {
        let steps = match backend {
            Backend::Nftables => vec![Step {
                program: "nft",
                args: vec!["-f", "-"],
                stdin: nftables::cleanup_script(),
            }],
            _ => [Family::V4, Family::V6]
                .into_iter()
                .filter_map(|f| {
                    iptables::cleanup_document(current.of(f)).map(|stdin| Step {
                        program: backend.restore_program(f),
                        args: RESTORE_ARGS.to_vec(),
                        stdin,
                    })
                })
                .collect(),
        };
        Plan { steps }
    }
}

/// The dry-run text: each step as a `# command` line (a comment in both formats) and its document.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            writeln!(f, "# {}", step.command_line())?;
            f.write_str(&step.stdin)?;
        }
        Ok(())
    }
}
