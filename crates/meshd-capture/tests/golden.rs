//! Golden dry-run documents: capture settings in, the exact plan `meshd init --dry-run` prints in a
//! fresh namespace out. Regenerate with `MESHD_UPDATE_GOLDEN=1 cargo test -p meshd-capture --test golden`
//! and review the diff.

use std::path::PathBuf;

use meshd_api::values::{IncludeCidrs, parse_cidr_list};
use meshd_capture::iptables::NatState;
use meshd_capture::plan::CurrentState;
use meshd_capture::{Backend, CaptureRules, CaptureSettings, InboundPorts, Plan};
use pretty_assertions::assert_eq;

fn check(name: &str, settings: &CaptureSettings, backend: Backend, current: &CurrentState) {
    let actual = Plan::install(&CaptureRules::new(settings), backend, current).to_string();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("MESHD_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).expect("golden directory is writable");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (set MESHD_UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert_eq!(
        expected, actual,
        "{name} differs; MESHD_UPDATE_GOLDEN=1 regenerates it"
    );
}

fn cidrs(s: &str) -> Vec<meshd_api::values::IpCidr> {
    parse_cidr_list(s).expect("test CIDRs are valid")
}

#[test]
fn defaults() {
    check(
        "defaults.iptables",
        &CaptureSettings::default(),
        Backend::IptablesNft,
        &CurrentState::default(),
    );
}

#[test]
fn defaults_legacy_rerun_deletes_the_old_jumps() {
    let saved = "*nat\n:MESHD_INBOUND - [0:0]\n:MESHD_OUTPUT - [0:0]\n\
        -A PREROUTING -p tcp -m comment --comment \"meshd/install-inbound\" -j MESHD_INBOUND\n\
        -A OUTPUT -p tcp -m comment --comment \"meshd/install-output\" -j MESHD_OUTPUT\nCOMMIT\n";
    let state = CurrentState {
        v4: NatState::parse(saved),
        v6: NatState::default(),
    };
    let settings = CaptureSettings {
        ipv6: false,
        ..CaptureSettings::default()
    };
    check(
        "rerun-legacy-ipv4.iptables",
        &settings,
        Backend::IptablesLegacy,
        &state,
    );
}

#[test]
fn excluded_ports_and_cidrs() {
    let settings = CaptureSettings {
        exclude_inbound_ports: vec![22, 15021, 22],
        exclude_outbound_ports: vec![5432, 6379],
        exclude_outbound_cidrs: cidrs("10.96.0.0/12, 169.254.169.254/32, fd00:10::/64"),
        ..CaptureSettings::default()
    };
    check(
        "excluded-ports-and-cidrs.iptables",
        &settings,
        Backend::IptablesNft,
        &CurrentState::default(),
    );
}

#[test]
fn included_cidrs_only() {
    let settings = CaptureSettings {
        include_outbound_cidrs: IncludeCidrs::Only(cidrs("10.0.0.0/8,172.16.0.0/12")),
        include_inbound_ports: InboundPorts::Only(vec![8080, 9090]),
        ipv6: false,
        ..CaptureSettings::default()
    };
    check(
        "included-cidrs-only.iptables",
        &settings,
        Backend::IptablesNft,
        &CurrentState::default(),
    );
}

#[test]
fn ipv6() {
    let settings = CaptureSettings {
        exclude_outbound_cidrs: cidrs("fd00:1::/64"),
        include_outbound_cidrs: IncludeCidrs::Only(cidrs("fd00::/8,10.0.0.0/8")),
        ..CaptureSettings::default()
    };
    check(
        "ipv6.iptables",
        &settings,
        Backend::IptablesNft,
        &CurrentState::default(),
    );
}

#[test]
fn nftables_defaults() {
    check(
        "defaults.nft",
        &CaptureSettings::default(),
        Backend::Nftables,
        &CurrentState::default(),
    );
}

#[test]
fn nftables_excluded_ports_and_cidrs() {
    let settings = CaptureSettings {
        exclude_inbound_ports: vec![22],
        exclude_outbound_ports: vec![5432],
        exclude_outbound_cidrs: cidrs("10.96.0.0/12,fd00:10::/64"),
        ..CaptureSettings::default()
    };
    check(
        "excluded-ports-and-cidrs.nft",
        &settings,
        Backend::Nftables,
        &CurrentState::default(),
    );
}

/// An IPv4 loopback CIDR included: the IPv4 document leaves out the app's loopback returns, the IPv6
/// one keeps them (no IPv6 loopback CIDR is included).
fn loopback_v4_included() -> CaptureSettings {
    CaptureSettings {
        include_outbound_cidrs: IncludeCidrs::Only(cidrs("127.10.0.0/16,10.0.0.0/8,fd00::/8")),
        ..CaptureSettings::default()
    }
}

#[test]
fn loopback_cidr_included() {
    check(
        "loopback-cidr-included.iptables",
        &loopback_v4_included(),
        Backend::IptablesNft,
        &CurrentState::default(),
    );
}

#[test]
fn nftables_loopback_cidr_included() {
    check(
        "loopback-cidr-included.nft",
        &loopback_v4_included(),
        Backend::Nftables,
        &CurrentState::default(),
    );
}

#[test]
fn nftables_loopback_cidrs_of_both_families_included() {
    let settings = CaptureSettings {
        include_outbound_cidrs: IncludeCidrs::Only(cidrs("127.0.0.0/8,::1/128")),
        ..CaptureSettings::default()
    };
    check(
        "loopback-cidrs-both-families.nft",
        &settings,
        Backend::Nftables,
        &CurrentState::default(),
    );
}

/// Ports captured whatever the destination; nothing else included, one CIDR and one port excluded.
fn included_ports() -> CaptureSettings {
    CaptureSettings {
        include_outbound_cidrs: IncludeCidrs::Only(vec![]),
        include_outbound_ports: vec![443, 8443, 443],
        exclude_outbound_ports: vec![5432],
        exclude_outbound_cidrs: cidrs("10.96.0.0/12"),
        ..CaptureSettings::default()
    }
}

#[test]
fn include_outbound_ports() {
    check(
        "include-outbound-ports.iptables",
        &included_ports(),
        Backend::IptablesNft,
        &CurrentState::default(),
    );
}

#[test]
fn nftables_include_outbound_ports() {
    check(
        "include-outbound-ports.nft",
        &included_ports(),
        Backend::Nftables,
        &CurrentState::default(),
    );
}
