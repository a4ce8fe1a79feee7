//! The I/O half: detect the iptables backend, read meshd's current footprint, run a [`Plan`]'s steps.
//! Runs in the current network namespace (the pod's, in the init container).

use std::io::Write;
use std::process::{Command, Stdio};

use tracing::{debug, info, warn};

use crate::error::CaptureError;
use crate::iptables::NatState;
use crate::nftables;
use crate::plan::{Backend, CurrentState, Plan, Step};
use crate::rules::{CaptureRules, Family};

/// Runs `program args` with `stdin`; returns stdout, or an error naming the command with its stderr.
pub fn run(program: &str, args: &[&str], stdin: &str) -> Result<String, CaptureError> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CaptureError::Spawn {
            command: command.clone(),
            source,
        })?;
    if let Some(mut pipe) = child.stdin.take() {
        // A child that exits early closes its stdin; its status and stderr then say why.
        if let Err(e) = pipe.write_all(stdin.as_bytes()) {
            debug!(%command, error = %e, "child closed stdin early");
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|source| CaptureError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(CaptureError::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs every step of a plan, in order.
pub fn apply(plan: &Plan) -> Result<(), CaptureError> {
    for step in &plan.steps {
        let Step {
            program,
            args,
            stdin,
        } = step;
        debug!(command = %step.command_line(), "applying");
        run(program, args, stdin).map_err(|e| with_failing_line(e, stdin))?;
    }
    Ok(())
}

/// iptables-restore reports the line it failed at; add that line of the document, so the error says which
/// rule the kernel or the tool refused.
fn with_failing_line(e: CaptureError, document: &str) -> CaptureError {
    match e {
        CaptureError::Command {
            command,
            status,
            stderr,
        } => {
            let line =
                failing_line_number(&stderr).and_then(|n| document.lines().nth(n.checked_sub(1)?));
            let stderr = match line {
                Some(text) => format!("{stderr} (the line is: {text})"),
                None => stderr,
            };
            CaptureError::Command {
                command,
                status,
                stderr,
            }
        }
        other => other,
    }
}

/// `Error occurred at line: 3` (iptables-restore) → 3.
fn failing_line_number(stderr: &str) -> Option<usize> {
    let at = stderr.find("line")?;
    let rest = stderr[at + 4..].trim_start_matches([':', ' ']);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Does a legacy (x_tables) table in this namespace already hold rules? Then the node's other software
/// uses iptables-legacy and meshd must too (istio-iptables does the same); otherwise iptables-nft.
pub fn detect_backend() -> Backend {
    for family in [Family::V4, Family::V6] {
        // The kernel lists the legacy tables instantiated in this namespace; none means no legacy rules,
        // and no `*-legacy-save` process is needed (the common case, and the fast one).
        let names = match family {
            Family::V4 => "/proc/thread-self/net/ip_tables_names",
            Family::V6 => "/proc/thread-self/net/ip6_tables_names",
        };
        match std::fs::read_to_string(names) {
            Ok(tables) if tables.trim().is_empty() => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            _ => {}
        }
        let program = Backend::IptablesLegacy.save_program(family);
        match run(program, &[], "") {
            Ok(save) if save.lines().any(|l| l.starts_with("-A ")) => {
                info!(
                    backend = "iptables-legacy",
                    found_by = program,
                    "legacy rules present"
                );
                return Backend::IptablesLegacy;
            }
            Ok(_) => {}
            // No legacy tooling means nothing here is using it.
            Err(e) => debug!(error = %e, "legacy iptables not readable"),
        }
    }
    Backend::IptablesNft
}

/// meshd's jumps and chains as one backend's `*-save` shows them, per family. No `-t nat`: with
/// iptables-legacy that would create an empty nat table where there was none.
pub fn read_state(backend: Backend, families: &[Family]) -> Result<CurrentState, CaptureError> {
    let mut state = CurrentState::default();
    for &family in families {
        let save = run(backend.save_program(family), &[], "")?;
        let parsed = NatState::parse(&save);
        match family {
            Family::V4 => state.v4 = parsed,
            Family::V6 => state.v6 = parsed,
        }
    }
    Ok(state)
}

/// Whether this kernel has IPv6 at all (`ipv6.disable=1` removes `/proc/sys/net/ipv6`); without it,
/// ip6tables cannot work and only IPv4 is programmed.
pub fn ipv6_available() -> bool {
    std::path::Path::new("/proc/sys/net/ipv6").exists()
}

/// The install plan for this namespace and backend: for iptables, with the deletes a re-run needs.
pub fn plan_for_namespace(rules: &CaptureRules, backend: Backend) -> Result<Plan, CaptureError> {
    let state = match backend {
        Backend::Nftables => CurrentState::default(),
        _ => read_state(backend, rules.families())?,
    };
    Ok(Plan::install(rules, backend, &state))
}

/// The plan that removes meshd's rules from every backend that has some, and nothing else.
pub fn cleanup() -> Result<Plan, CaptureError> {
    let mut plan = Plan::default();
    for backend in [Backend::IptablesLegacy, Backend::IptablesNft] {
        let mut state = CurrentState::default();
        for family in [Family::V4, Family::V6] {
            match read_state(backend, &[family]) {
                Ok(s) if family == Family::V4 => state.v4 = s.v4,
                Ok(s) => state.v6 = s.v6,
                // Unreadable means absent (no binary, no kernel support): nothing of meshd's to remove.
                Err(CaptureError::Spawn { .. }) => {
                    debug!(backend = backend.as_str(), ?family, "not installed")
                }
                Err(e) => {
                    warn!(backend = backend.as_str(), ?family, error = %e, "could not read rules; skipping")
                }
            }
        }
        plan.steps.extend(Plan::cleanup(backend, &state).steps);
    }
    match run("nft", &["list", "tables"], "") {
        Ok(tables)
            if tables
                .lines()
                .any(|l| l.trim() == format!("table inet {}", nftables::TABLE)) =>
        {
            plan.steps
                .extend(Plan::cleanup(Backend::Nftables, &CurrentState::default()).steps);
        }
        Ok(_) => {}
        Err(e) => debug!(error = %e, "nft not usable; no meshd table to remove"),
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_line_is_quoted_from_the_document() {
        let doc = "*nat\n:MESHD_OUTPUT - [0:0]\n-A MESHD_OUTPUT -j NOPE\nCOMMIT\n";
        let e = CaptureError::Command {
            command: "iptables-nft-restore --noflush".into(),
            status: "exit status: 2".into(),
            stderr: "iptables-restore v1.8.9 (nf_tables): Couldn't load target `NOPE':No such file or directory\n\nError occurred at line: 3".into(),
        };
        let text = with_failing_line(e, doc).to_string();
        assert!(
            text.contains("(the line is: -A MESHD_OUTPUT -j NOPE)"),
            "{text}"
        );
    }
}
