//! `meshd init` in real network namespaces, proven with real TCP (TESTING.md "Real traffic capture").
//!
//! A "pod" namespace is linked to a "peer" namespace by a veth pair and routes everything through it.
//! The built `meshd init` programs capture in the pod, with each backend; then sockets of the app uid
//! (1000) and the proxy uid (1337) show what is captured: a captured connection is answered by the
//! pod's listener on 15001/15006 and carries its original destination, a bypassing one is answered by
//! the real peer. Needs root, `ip netns`, iptables (legacy and nft), nft and setpriv; prints SKIP
//! otherwise, fails under CI=true.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use meshd_testbed::tcp::{NamedListener, connect};
use meshd_testbed::{Identity, NetNs, link_veth, require};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const APP: Option<Identity> = Some(Identity::new(1000, 1000));
const PROXY: Option<Identity> = Some(Identity::new(1337, 1337));
const WAIT: Duration = Duration::from_secs(3);
const PROGRAMS: [&str; 7] = [
    "iptables-legacy-save",
    "iptables-nft-save",
    "ip6tables-nft-save",
    "iptables-legacy",
    "nft",
    "setpriv",
    "iptables-nft-restore",
];

/// Exclusions every scenario passes, so that each bypass is proven too.
const EXCLUSIONS: [&str; 6] = [
    "--exclude-outbound-ports",
    "5432",
    "--exclude-outbound-cidrs",
    "10.99.0.0/16",
    "--exclude-inbound-ports",
    "2222",
];

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// `who`'s connection from `ns` to `target` is answered by the capture `listener`, which sees
/// `target` as the original destination.
fn assert_captured(
    ns: &NetNs,
    who: Option<Identity>,
    target: &str,
    listener: &NamedListener,
    why: &str,
) -> anyhow::Result<()> {
    let answered = connect(ns, who, addr(target), WAIT)?;
    assert_eq!(answered, listener.name(), "{why}: {target}");
    let original = listener.next(WAIT).and_then(|a| a.original_dst);
    assert_eq!(original, Some(addr(target)), "{why}: original destination");
    Ok(())
}

/// `who`'s connection from `ns` to `target` is answered by the listener named `by`.
fn assert_reaches(
    ns: &NetNs,
    who: Option<Identity>,
    target: &str,
    by: &str,
    why: &str,
) -> anyhow::Result<()> {
    let answered = connect(ns, who, addr(target), WAIT)?;
    assert_eq!(answered, by, "{why}: {target}");
    Ok(())
}

/// Pod 10.77.0.2 / fd77::2, peer 10.77.0.1 / fd77::1 (and 10.99.0.1, in the excluded CIDR).
struct PodNet {
    pod: NetNs,
    peer: NetNs,
}

impl PodNet {
    fn new(label: &str) -> anyhow::Result<Self> {
        let pod = NetNs::new(label)?;
        let peer = NetNs::new(&format!("{label}-peer"))?;
        link_veth(&pod, "eth0", &peer, "eth0")?;
        pod.add_address("eth0", "10.77.0.2/24")?;
        pod.add_address("eth0", "fd77::2/64")?;
        peer.add_address("eth0", "10.77.0.1/24")?;
        peer.add_address("eth0", "fd77::1/64")?;
        peer.add_address("eth0", "10.99.0.1/32")?;
        pod.add_default_route("10.77.0.1".parse()?)?;
        pod.add_default_route("fd77::1".parse()?)?;
        Ok(PodNet { pod, peer })
    }

    /// `meshd init ARGS` inside the pod, as the init container runs it (root).
    fn init(&self, args: &[&str]) -> (bool, String, String) {
        let out = self
            .pod
            .command(MESHD)
            .arg("init")
            .args(args)
            .output()
            .expect("meshd runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn init_ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.init(args);
        assert!(ok, "meshd init {args:?} failed: {stderr}");
        stdout
    }

    /// Everything any backend holds in the pod, counters zeroed, for before/after comparisons.
    fn ruleset(&self) -> String {
        let mut all = String::new();
        for (program, args) in [
            ("iptables-legacy-save", &[][..]),
            ("ip6tables-legacy-save", &[]),
            ("iptables-nft-save", &[]),
            ("ip6tables-nft-save", &[]),
            ("nft", &["list", "ruleset"]),
        ] {
            let out = self
                .pod
                .command(program)
                .args(args)
                .output()
                .expect("save runs");
            let text = String::from_utf8_lossy(&out.stdout);
            all.push_str(&format!("== {program}\n"));
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                all.push_str(&zero_counters(line));
                all.push('\n');
            }
        }
        all
    }
}

fn zero_counters(line: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut iter = line.split(' ').peekable();
    while let Some(w) = iter.next() {
        if w.starts_with('[') && w.ends_with(']') && w.contains(':') {
            words.push("[0:0]".into());
        } else if w == "packets" || w == "bytes" {
            iter.next();
            words.push(format!("{w} 0"));
        } else {
            words.push(w.to_string());
        }
    }
    words.join(" ")
}

/// Which backend holds meshd's rules, as the tools list them.
fn holder(net: &PodNet) -> Vec<&'static str> {
    let has = |program: &str, args: &[&str]| {
        let out = net.pod.command(program).args(args).output().expect("runs");
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("meshd/")
    };
    let mut found = Vec::new();
    if has("iptables-legacy-save", &[]) || has("ip6tables-legacy-save", &[]) {
        found.push("iptables-legacy");
    }
    if has("iptables-nft-save", &[]) || has("ip6tables-nft-save", &[]) {
        found.push("iptables-nft");
    }
    if has("nft", &["list", "table", "inet", "meshd"]) {
        found.push("nftables");
    }
    found
}

/// The whole story for one backend: apply (with --validate), traffic, re-run, cleanup.
fn scenario(
    label: &str,
    mode: &[&str],
    expect_backend: &str,
    seed_legacy_rule: bool,
) -> anyhow::Result<()> {
    let net = PodNet::new(label)?;
    if seed_legacy_rule {
        // Someone else's legacy rule: makes auto-detection pick iptables-legacy, and must survive cleanup.
        net.pod.run(
            "iptables-legacy",
            &[
                "-w",
                "-t",
                "filter",
                "-A",
                "INPUT",
                "-p",
                "udp",
                "--dport",
                "9",
                "-m",
                "comment",
                "--comment",
                "someone-else",
                "-j",
                "ACCEPT",
            ],
        )?;
    }
    let args: Vec<&str> = mode
        .iter()
        .chain(&EXCLUSIONS)
        .copied()
        .chain(["--validate"])
        .collect();
    net.init_ok(&args);
    assert_eq!(
        holder(&net),
        [expect_backend],
        "rules are in the expected backend only"
    );
    let applied = net.ruleset();
    assert!(
        applied.contains("meshd/capture-outbound"),
        "rules not listed:\n{applied}"
    );

    // The pod's proxy side and apps; the peer's real servers.
    let outbound = NamedListener::start(&net.pod, "outbound-capture", addr("0.0.0.0:15001"))?;
    let outbound6 = NamedListener::start(&net.pod, "outbound-capture", addr("[::]:15001"))?;
    let inbound = NamedListener::start(&net.pod, "inbound-capture", addr("0.0.0.0:15006"))?;
    let inbound6 = NamedListener::start(&net.pod, "inbound-capture", addr("[::]:15006"))?;
    let _health = NamedListener::start(&net.pod, "health", addr("0.0.0.0:15021"))?;
    let _ssh = NamedListener::start(&net.pod, "ssh", addr("0.0.0.0:2222"))?;
    let _local = NamedListener::start(&net.pod, "local-app", addr("0.0.0.0:7000"))?;
    let _peer = NamedListener::start(&net.peer, "peer", addr("0.0.0.0:9000"))?;
    let _peer_db = NamedListener::start(&net.peer, "peer", addr("0.0.0.0:5432"))?;
    let _peer6 = NamedListener::start(&net.peer, "peer", addr("[::]:9000"))?;
    let _client = NamedListener::start(&net.peer, "peer-app", addr("0.0.0.0:8080"))?;

    // Outbound of the app: captured, original destination kept (IPv4 and IPv6).
    for (target, listener) in [
        ("10.200.0.5:8080", &outbound),
        ("[fd00:200::5]:8080", &outbound6),
        ("10.77.0.1:9000", &outbound),
    ] {
        assert_captured(&net.pod, APP, target, listener, "app outbound")?;
    }
    // The proxy's own traffic, excluded ports and excluded CIDRs reach the real peer.
    let proxy_group = Some(Identity::new(1000, 1337));
    for (who, target, why) in [
        (PROXY, "10.77.0.1:9000", "proxy uid bypasses"),
        (PROXY, "[fd77::1]:9000", "proxy uid bypasses (IPv6)"),
        (proxy_group, "10.77.0.1:9000", "proxy gid bypasses"),
        (APP, "10.77.0.1:5432", "excluded outbound port"),
        (APP, "10.99.0.1:9000", "excluded outbound CIDR"),
    ] {
        assert_reaches(&net.pod, who, target, "peer", why)?;
    }
    // Loopback: the app's own calls stay local; the proxy calling the pod's address goes inbound.
    assert_reaches(&net.pod, APP, "10.77.0.2:7000", "local-app", "app over lo")?;
    assert_reaches(
        &net.pod,
        APP,
        "127.0.0.1:7000",
        "local-app",
        "app to localhost",
    )?;
    let why = "proxy → own address → inbound";
    assert_captured(&net.pod, PROXY, "10.77.0.2:7000", &inbound, why)?;
    assert!(
        outbound.drain().is_empty() && outbound6.drain().is_empty(),
        "no bypassing connection reached 15001"
    );

    // Inbound from the peer: app ports to 15006; the proxy's own and excluded ports are not captured.
    let why = "inbound to an app port";
    assert_captured(&net.peer, APP, "10.77.0.2:8080", &inbound, why)?;
    assert_captured(&net.peer, APP, "[fd77::2]:8080", &inbound6, "IPv6 inbound")?;
    let why = "proxy port not captured";
    assert_reaches(&net.peer, None, "10.77.0.2:15021", "health", why)?;
    assert_reaches(
        &net.peer,
        None,
        "10.77.0.2:2222",
        "ssh",
        "excluded inbound port",
    )?;
    assert!(
        inbound.drain().is_empty(),
        "no excluded inbound connection reached 15006"
    );

    // A second run leaves the rule set as it was (without --validate: the test's listener holds 15001).
    net.init_ok(&args[..args.len() - 1]);
    assert_eq!(net.ruleset(), applied, "second run changed the rules");

    // Cleanup removes all of meshd's rules and chains, and only those.
    let cleanup: Vec<&str> = mode.iter().copied().chain(["--cleanup"]).collect();
    net.init_ok(&cleanup);
    let left = net.ruleset();
    assert!(
        !left.contains("meshd") && !left.contains("MESHD"),
        "cleanup left meshd rules:\n{left}"
    );
    if seed_legacy_rule {
        assert!(
            left.contains("someone-else"),
            "cleanup removed someone else's rule:\n{left}"
        );
    }
    assert_eq!(
        connect(&net.pod, APP, addr("10.77.0.1:9000"), WAIT)?,
        "peer",
        "no capture after cleanup"
    );
    Ok(())
}

#[test]
fn iptables_nft_backend_captures_in_a_real_namespace() -> anyhow::Result<()> {
    if !require(
        "iptables_nft_backend_captures_in_a_real_namespace",
        &PROGRAMS,
    ) {
        return Ok(());
    }
    scenario("cap-nft", &["--mode", "iptables"], "iptables-nft", false)
}

#[test]
fn iptables_legacy_backend_is_detected_and_captures() -> anyhow::Result<()> {
    if !require(
        "iptables_legacy_backend_is_detected_and_captures",
        &PROGRAMS,
    ) {
        return Ok(());
    }
    scenario("cap-legacy", &[], "iptables-legacy", true)
}

#[test]
fn native_nftables_captures_in_a_real_namespace() -> anyhow::Result<()> {
    if !require("native_nftables_captures_in_a_real_namespace", &PROGRAMS) {
        return Ok(());
    }
    scenario("cap-nftables", &["--mode", "nftables"], "nftables", false)
}

#[test]
fn only_included_cidrs_are_captured() -> anyhow::Result<()> {
    if !require("only_included_cidrs_are_captured", &PROGRAMS) {
        return Ok(());
    }
    let net = PodNet::new("cap-incl")?;
    net.init_ok(&["--include-outbound-cidrs", "10.200.0.0/16", "--validate"]);
    let outbound = NamedListener::start(&net.pod, "outbound-capture", addr("0.0.0.0:15001"))?;
    let _peer = NamedListener::start(&net.peer, "peer", addr("0.0.0.0:9000"))?;
    let _peer6 = NamedListener::start(&net.peer, "peer", addr("[::]:9000"))?;
    assert_captured(&net.pod, APP, "10.200.0.5:8080", &outbound, "included CIDR")?;
    let why = "not in the included CIDRs";
    assert_reaches(&net.pod, APP, "10.77.0.1:9000", "peer", why)?;
    assert_reaches(
        &net.pod,
        APP,
        "[fd77::1]:9000",
        "peer",
        "no IPv6 CIDR included",
    )?;
    Ok(())
}

#[test]
fn dry_run_prints_the_golden_document_and_touches_nothing() -> anyhow::Result<()> {
    if !require(
        "dry_run_prints_the_golden_document_and_touches_nothing",
        &PROGRAMS,
    ) {
        return Ok(());
    }
    let net = PodNet::new("cap-dry")?;
    let before = net.ruleset();
    let golden = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/crates/meshd-capture/tests/golden/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
    };
    assert_eq!(net.init_ok(&["--dry-run"]), golden("defaults.iptables")?);
    assert_eq!(
        net.init_ok(&["--dry-run", "--mode", "nftables"]),
        golden("defaults.nft")?
    );
    assert_eq!(net.ruleset(), before, "a dry run changed the namespace");
    // Cleanup where meshd never ran is a no-op, not an error.
    net.init_ok(&["--cleanup"]);
    assert_eq!(
        net.ruleset(),
        before,
        "cleanup of a clean namespace changed it"
    );
    Ok(())
}

#[test]
fn validate_reports_a_redirect_that_does_not_happen() -> anyhow::Result<()> {
    if !require(
        "validate_reports_a_redirect_that_does_not_happen",
        &PROGRAMS,
    ) {
        return Ok(());
    }
    let net = PodNet::new("cap-val")?;
    // With root as the "proxy" uid, the validator's own connection bypasses capture.
    let (ok, _, stderr) = net.init(&[
        "--proxy-uid",
        "0",
        "--proxy-gid",
        "0",
        "--validate",
        "--validate-timeout-ms",
        "300",
    ]);
    assert!(
        !ok,
        "validation passed although nothing of root's is captured"
    );
    assert!(
        stderr.contains("was not redirected to the outbound port 15001"),
        "{stderr}"
    );

    // Without any route the connection fails before capture: said so, not mistaken for success.
    let lonely = NetNs::new("cap-noroute")?;
    let out = lonely
        .command(MESHD)
        .args(["init", "--validate"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "validation passed without a route");
    assert!(stderr.contains("needs a route"), "{stderr}");
    Ok(())
}

#[test]
fn apply_errors_name_the_failing_command_and_its_stderr() -> anyhow::Result<()> {
    if !require(
        "apply_errors_name_the_failing_command_and_its_stderr",
        &PROGRAMS,
    ) {
        return Ok(());
    }
    let net = PodNet::new("cap-err")?;
    // A PATH whose iptables-nft-restore fails as a broken one would.
    let dir = tempfile::tempdir()?;
    let fake = dir.path().join("iptables-nft-restore");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'iptables-restore v1.8.9: bad rule' >&2\necho 'Error occurred at line: 7' >&2\nexit 2\n",
    )?;
    Command::new("chmod").arg("+x").arg(&fake).status()?;
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = net
        .pod
        .command(MESHD)
        .args(["init", "--iptables-backend", "nft"])
        .env("PATH", path)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("iptables-nft-restore --noflush --wait=5")
            && stderr.contains("bad rule")
            && stderr.contains("(the line is: -A MESHD_IN_REDIRECT -p tcp"),
        "{stderr}"
    );
    Ok(())
}

/// A loopback CIDR in the include list (Istio: the app's loopback returns are left out), per family:
/// IPv4 includes 127.10.0.0/16; IPv6 includes `::1/128` and the pod's fd77::/64.
fn included_loopback_scenario(label: &str, mode: &[&str]) -> anyhow::Result<()> {
    let net = PodNet::new(label)?;
    let args: Vec<&str> = mode
        .iter()
        .copied()
        .chain([
            "--include-outbound-cidrs",
            "127.10.0.0/16,::1/128,fd77::/64",
            "--validate",
        ])
        .collect();
    net.init_ok(&args);
    let outbound = NamedListener::start(&net.pod, "outbound-capture", addr("0.0.0.0:15001"))?;
    let outbound6 = NamedListener::start(&net.pod, "outbound-capture", addr("[::]:15001"))?;
    let inbound = NamedListener::start(&net.pod, "inbound-capture", addr("0.0.0.0:15006"))?;
    let _local = NamedListener::start(&net.pod, "local-app", addr("0.0.0.0:7000"))?;
    let _local6 = NamedListener::start(&net.pod, "local-app", addr("[::]:7000"))?;
    let _peer = NamedListener::start(&net.peer, "peer", addr("0.0.0.0:9000"))?;

    assert_captured(
        &net.pod,
        APP,
        "127.10.0.5:8080",
        &outbound,
        "included loopback CIDR",
    )?;
    // IPv6: with the loopback return gone, the app's call to its own address in the included fd77::/64
    // (over lo) is captured too.
    let why = "own IPv6 address in an included CIDR";
    assert_captured(&net.pod, APP, "[fd77::2]:7000", &outbound6, why)?;
    // Other loopback traffic still returns: localhost, loopback outside the CIDR, the own IPv4 address.
    for target in [
        "127.0.0.1:7000",
        "127.0.0.2:7000",
        "10.77.0.2:7000",
        "[::1]:7000",
    ] {
        assert_reaches(&net.pod, APP, target, "local-app", "loopback returns")?;
    }
    assert_reaches(&net.pod, APP, "10.77.0.1:9000", "peer", "not included")?;
    // The proxy's own call to the included loopback address goes to the inbound side, as in Istio.
    assert_captured(
        &net.pod,
        PROXY,
        "127.10.0.5:8080",
        &inbound,
        "proxy → loopback CIDR",
    )?;
    assert!(
        outbound.drain().is_empty() && outbound6.drain().is_empty(),
        "a returning connection reached 15001"
    );
    Ok(())
}

#[test]
fn an_included_loopback_cidr_is_captured_iptables() -> anyhow::Result<()> {
    if !require("an_included_loopback_cidr_is_captured_iptables", &PROGRAMS) {
        return Ok(());
    }
    included_loopback_scenario("cap-lo-ipt", &["--iptables-backend", "nft"])
}

#[test]
fn an_included_loopback_cidr_is_captured_nftables() -> anyhow::Result<()> {
    if !require("an_included_loopback_cidr_is_captured_nftables", &PROGRAMS) {
        return Ok(());
    }
    included_loopback_scenario("cap-lo-nft", &["--mode", "nftables"])
}

/// `--include-outbound-ports` (istio-iptables `-q`): no CIDR included, port 9000 captured to any
/// destination, except where an excluded CIDR or port returns first.
fn included_ports_scenario(label: &str, mode: &[&str]) -> anyhow::Result<()> {
    let net = PodNet::new(label)?;
    let args: Vec<&str> = mode
        .iter()
        .copied()
        .chain([
            "--include-outbound-cidrs",
            "",
            "--include-outbound-ports",
            "9000,5432",
        ])
        .chain(EXCLUSIONS)
        .chain(["--validate"])
        .collect();
    net.init_ok(&args);
    let outbound = NamedListener::start(&net.pod, "outbound-capture", addr("0.0.0.0:15001"))?;
    let outbound6 = NamedListener::start(&net.pod, "outbound-capture", addr("[::]:15001"))?;
    let _peer = NamedListener::start(&net.peer, "peer", addr("0.0.0.0:9000"))?;
    let _peer6 = NamedListener::start(&net.peer, "peer", addr("[::]:9000"))?;
    let _peer_app = NamedListener::start(&net.peer, "peer", addr("0.0.0.0:8080"))?;
    let _peer_db = NamedListener::start(&net.peer, "peer", addr("0.0.0.0:5432"))?;
    for (target, listener) in [
        ("10.77.0.1:9000", &outbound),
        ("10.200.0.5:9000", &outbound),
        ("[fd77::1]:9000", &outbound6),
    ] {
        assert_captured(&net.pod, APP, target, listener, "included port")?;
    }
    for (target, why) in [
        ("10.77.0.1:8080", "a port not included, no CIDR included"),
        (
            "10.99.0.1:9000",
            "an excluded CIDR returns before the included port",
        ),
        (
            "10.77.0.1:5432",
            "an excluded port wins over the same port included",
        ),
    ] {
        assert_reaches(&net.pod, APP, target, "peer", why)?;
    }
    let why = "the proxy's own traffic on an included port";
    assert_reaches(&net.pod, PROXY, "10.77.0.1:9000", "peer", why)?;
    assert!(
        outbound.drain().is_empty() && outbound6.drain().is_empty(),
        "a bypassing connection reached 15001"
    );
    Ok(())
}

#[test]
fn included_outbound_ports_are_captured_iptables() -> anyhow::Result<()> {
    if !require("included_outbound_ports_are_captured_iptables", &PROGRAMS) {
        return Ok(());
    }
    let (ok, _, stderr) = PodNet::new("cap-q-bad")?.init(&["--include-outbound-ports", "80,70000"]);
    assert!(
        !ok && stderr.contains("--include-outbound-ports") && stderr.contains("70000"),
        "{stderr}"
    );
    included_ports_scenario("cap-q-ipt", &["--iptables-backend", "nft"])
}

#[test]
fn included_outbound_ports_are_captured_nftables() -> anyhow::Result<()> {
    if !require("included_outbound_ports_are_captured_nftables", &PROGRAMS) {
        return Ok(());
    }
    included_ports_scenario("cap-q-nft", &["--mode", "nftables"])
}
