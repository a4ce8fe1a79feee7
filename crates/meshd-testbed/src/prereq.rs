//! Prerequisites of tests that need root and network namespaces. Outside CI a missing one skips the
//! test with a printed reason; with `CI=true` it fails the run, so CI never passes by skipping.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Why these tests cannot run here, or `Ok` when they can: root, `ip netns` working, and `programs`
/// on PATH.
pub fn check(programs: &[&str]) -> Result<(), String> {
    netns_works()?;
    for program in programs {
        if !on_path(program) {
            return Err(format!(
                "`{program}` is not installed (apt-get install -y iproute2 iptables nftables util-linux)"
            ));
        }
    }
    Ok(())
}

/// Root and a working `ip netns`, probed once per process: tests call this from many threads at once,
/// and one probe namespace per process avoids them racing for its name.
fn netns_works() -> Result<(), String> {
    static PROBE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    PROBE.get_or_init(probe_netns).clone()
}

fn probe_netns() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root (network namespaces and iptables)".into());
    }
    if !on_path("ip") {
        return Err("`ip` is not installed (apt-get install -y iproute2)".into());
    }
    let name = format!("meshd-prereq-{}", std::process::id());
    let added = Command::new("ip")
        .args(["netns", "add", &name])
        .stderr(Stdio::piped())
        .output();
    match added {
        Ok(out) if out.status.success() => {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
            Ok(())
        }
        Ok(out) => Err(format!(
            "`ip netns add` fails: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("`ip netns add` cannot run: {e}")),
    }
}

/// `true` when the test can run. Otherwise prints `SKIP: <test>: <reason>` and returns `false`, or,
/// when `CI=true`, panics with the reason.
pub fn require(test: &str, programs: &[&str]) -> bool {
    match check(programs) {
        Ok(()) => true,
        Err(reason) => {
            missing(test, &reason);
            false
        }
    }
}

/// [`require`] plus real Envoy from the repository's `.venv` (`make envoy`): the path of Envoy's binary
/// when the test can run.
pub fn require_envoy(
    test: &str,
    programs: &[&str],
    repo_root: &Path,
) -> Option<std::path::PathBuf> {
    if !require(test, programs) {
        return None;
    }
    match crate::mesh::venv_envoy(repo_root) {
        Ok(path) => Some(path),
        Err(reason) => {
            missing(test, &reason);
            None
        }
    }
}

/// A prerequisite is missing: fail in CI, else say SKIP where it is seen.
fn missing(test: &str, reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: prerequisite missing in CI: {reason}")
    }
    // Straight to the file descriptor: the test harness captures print!/eprint! of passing
    // tests, and a skip must be seen.
    let _ = writeln!(std::io::stderr(), "SKIP: {test}: {reason}");
}

/// Is `program` an executable file in a PATH directory (or the path given)?
pub fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(Into::into))
        .any(|dir| dir.join(program).is_file())
}
