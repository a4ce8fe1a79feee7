//! The capture figure of the README's performance section: time to apply the default rules in a fresh
//! network namespace, median of 20 per backend, against issuing the same rules with one process per
//! rule (what scripts calling `iptables -A` in a loop do).
//!
//! `cargo run -p meshd-capture --example apply_bench [-- RUNS]` as root. The time is spent in the
//! kernel and in iptables/nft processes, so a debug build measures the same as a release one.
//! What is timed per run is what `meshd init --iptables-backend …` does after parsing flags: read
//! meshd's current rules (`*-save`), then one atomic restore per family (or one `nft -f`).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use meshd_capture::rules::Chain;
use meshd_capture::{Backend, CaptureRules, CaptureSettings, iptables, nftables};
use meshd_testbed::NetNs;

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()
        .context("RUNS is a number")?
        .unwrap_or(20);
    if let Err(reason) = meshd_testbed::prereq::check(&["iptables-legacy", "iptables-nft", "nft"]) {
        bail!("cannot measure: {reason}");
    }
    let rules = CaptureRules::new(&CaptureSettings::default());
    println!("capture apply, default rules (IPv4 + IPv6), fresh namespace, median of {runs}");
    println!(
        "{:<16} {:>6} {:>14} {:>16} {:>7}",
        "backend", "rules", "meshd (atomic)", "one per rule", "ratio"
    );
    for backend in [
        Backend::IptablesLegacy,
        Backend::IptablesNft,
        Backend::Nftables,
    ] {
        let atomic = median(runs, || {
            let rules = rules.clone();
            timed_in_fresh_namespace(move || apply_atomically(&rules, backend))
        })?;
        let per_rule = median(runs, || {
            let rules = rules.clone();
            timed_in_fresh_namespace(move || apply_one_per_rule(&rules, backend))
        })?;
        let count = match backend {
            Backend::Nftables => rules.rules.len(),
            _ => rules
                .families()
                .iter()
                .map(|&f| rules.for_family(f).count())
                .sum::<usize>(),
        };
        println!(
            "{:<16} {:>6} {:>11.1} ms {:>13.1} ms {:>6.1}x",
            backend.as_str(),
            count,
            ms(atomic),
            ms(per_rule),
            per_rule.as_secs_f64() / atomic.as_secs_f64()
        );
    }
    // The default `meshd init` path also detects the backend first (two more `*-legacy-save` runs).
    let detected = median(runs, || {
        let rules = rules.clone();
        timed_in_fresh_namespace(move || apply_atomically(&rules, meshd_capture::detect_backend()))
    })?;
    println!(
        "{:<16} {:>6} {:>11.1} ms   (auto-detected backend, as `meshd init` by default)",
        "iptables (auto)",
        "",
        ms(detected)
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(
    runs: usize,
    mut one: impl FnMut() -> anyhow::Result<Duration>,
) -> anyhow::Result<Duration> {
    let mut times = (0..runs)
        .map(|_| one())
        .collect::<anyhow::Result<Vec<_>>>()?;
    times.sort();
    Ok(times[times.len() / 2])
}

/// Runs `work` on a thread inside a new namespace (its child processes inherit it); times only `work`.
fn timed_in_fresh_namespace(
    work: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
) -> anyhow::Result<Duration> {
    let ns = NetNs::new("bench")?;
    ns.run_in(None, move || {
        let started = Instant::now();
        work()?;
        Ok(started.elapsed())
    })
}

fn apply_atomically(rules: &CaptureRules, backend: Backend) -> anyhow::Result<()> {
    let plan = meshd_capture::plan_for_namespace(rules, backend)?;
    meshd_capture::apply(&plan)?;
    Ok(())
}

/// The same rules, one `iptables -t nat -A …` (or `nft add rule …`) process each.
fn apply_one_per_rule(rules: &CaptureRules, backend: Backend) -> anyhow::Result<()> {
    let commands: Vec<(&str, Vec<String>)> = match backend {
        Backend::Nftables => nft_commands(rules)
            .into_iter()
            .map(|c| ("nft", c))
            .collect(),
        _ => rules
            .families()
            .iter()
            .flat_map(|&f| {
                let program = backend.single_rule_program(f);
                iptables::one_command_per_rule(rules, f)
                    .into_iter()
                    .map(move |mut c| {
                        c.insert(0, "-w".into());
                        (program, c)
                    })
            })
            .collect(),
    };
    for (program, args) in commands {
        let out = Command::new(program).args(&args).output()?;
        if !out.status.success() {
            bail!(
                "{program} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

fn nft_commands(rules: &CaptureRules) -> Vec<Vec<String>> {
    let words = |s: String| s.split(' ').map(String::from).collect::<Vec<_>>();
    let mut c = vec![words(format!("add table inet {}", nftables::TABLE))];
    c.push(words(format!(
        "add chain inet {} prerouting {{ type nat hook prerouting priority -100 ; }}",
        nftables::TABLE
    )));
    c.push(words(format!(
        "add chain inet {} output {{ type nat hook output priority -100 ; }}",
        nftables::TABLE
    )));
    for chain in Chain::OWN {
        c.push(words(format!(
            "add chain inet {} {}",
            nftables::TABLE,
            chain.name()
        )));
    }
    for rule in &rules.rules {
        let chain = match rule.chain {
            Chain::Prerouting => "prerouting",
            Chain::Output => "output",
            other => other.name(),
        };
        c.push(vec![
            "add".into(),
            "rule".into(),
            "inet".into(),
            nftables::TABLE.into(),
            chain.into(),
            nftables::rule_statement(rule),
        ]);
    }
    c
}
