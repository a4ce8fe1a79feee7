//! A network namespace that lives as long as its guard: `ip netns add` on creation, loopback up,
//! `ip netns del` on Drop (which also removes every interface inside it). Names are unique per process
//! and call, so tests run in parallel; see TESTING.md.
//!
//! Two ways to do things inside a namespace:
//! - [`NetNs::command`]/[`NetNs::command_as`]: a child process under `ip netns exec`, optionally as
//!   another uid/gid through `setpriv --reuid --regid --clear-groups` (no named user needed);
//! - [`NetNs::spawn`]/[`NetNs::run_in`]: a closure on a new thread that has entered the namespace (and
//!   optionally dropped to a uid/gid), for sockets owned by the test process itself.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context, bail};

/// A uid/gid to act as (the app's, or the proxy's 1337).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

impl Identity {
    pub const fn new(uid: u32, gid: u32) -> Self {
        Self { uid, gid }
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace, deleted on Drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `meshd-<label>-<pid>-<n>` with `lo` up. Keep `label` short and descriptive.
    pub fn new(label: &str) -> anyhow::Result<Self> {
        let name = format!(
            "meshd-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        checked(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's bind mount, for `setns`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip -n <ns> <args>`, checked.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        checked(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Adds an address (`10.0.0.2/24`, `fd00::2/64`) to `dev`; IPv6 without duplicate-address
    /// detection, so it is usable at once.
    pub fn add_address(&self, dev: &str, cidr: &str) -> anyhow::Result<()> {
        let mut args = vec!["addr", "add", cidr, "dev", dev];
        if cidr.contains(':') {
            args.push("nodad");
        }
        self.ip(&args).map(drop)
    }

    /// A default route for the address's family via `gateway`.
    pub fn add_default_route(&self, gateway: IpAddr) -> anyhow::Result<()> {
        let family = if gateway.is_ipv4() { "-4" } else { "-6" };
        self.ip(&[
            family,
            "route",
            "add",
            "default",
            "via",
            &gateway.to_string(),
        ])
        .map(drop)
    }

    /// `program` under `ip netns exec`, as root.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// `program` under `ip netns exec`, as `who` (supplementary groups cleared).
    pub fn command_as(&self, who: Identity, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, "setpriv"])
            .arg(format!("--reuid={}", who.uid))
            .arg(format!("--regid={}", who.gid))
            .args(["--clear-groups", program]);
        c
    }

    /// Runs `program args` inside the namespace as root; its stdout, or an error with its stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        checked(self.command(program).args(args))
    }

    /// Runs `f` on a new thread inside the namespace, as `who` when given. Sockets it creates belong to
    /// the namespace for their whole life, whichever thread uses them later.
    pub fn spawn<T, F>(
        &self,
        who: Option<Identity>,
        f: F,
    ) -> anyhow::Result<JoinHandle<anyhow::Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce() -> anyhow::Result<T> + Send + 'static,
    {
        let ns = File::open(self.path())
            .with_context(|| format!("opening {}", self.path().display()))?;
        let name = self.name.clone();
        Ok(std::thread::spawn(move || {
            enter(&ns, who).with_context(|| format!("entering {name} as {who:?}"))?;
            f()
        }))
    }

    /// [`NetNs::spawn`] and wait for the result.
    pub fn run_in<T, F>(&self, who: Option<Identity>, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> anyhow::Result<T> + Send + 'static,
    {
        match self.spawn(who, f)?.join() {
            Ok(result) => result,
            Err(_) => bail!("thread in {} panicked", self.name),
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = checked(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!(
                "meshd-testbed: could not delete namespace {}: {e:#}",
                self.name
            );
        }
    }
}

/// Links two namespaces with a veth pair (`a_dev` in `a`, `b_dev` in `b`), both ends up. The devices
/// are created inside the namespaces directly, so the same names can be used by parallel tests.
pub fn link_veth(a: &NetNs, a_dev: &str, b: &NetNs, b_dev: &str) -> anyhow::Result<()> {
    checked(Command::new("ip").args([
        "link",
        "add",
        a_dev,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_dev,
        "netns",
        b.name(),
    ]))?;
    a.ip(&["link", "set", a_dev, "up"])?;
    b.ip(&["link", "set", b_dev, "up"])?;
    Ok(())
}

/// Moves the calling thread into the namespace and, when asked, to another identity. Credentials are
/// per thread in the kernel; the raw syscalls change only this thread (glibc's setuid() would change
/// every thread of the test process).
#[allow(unsafe_code)] // setns and setresuid/setresgid: see the SAFETY comments
fn enter(ns: &File, who: Option<Identity>) -> std::io::Result<()> {
    // SAFETY: setns on a valid, open namespace fd; affects only the calling thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if let Some(Identity { uid, gid }) = who {
        let calls: [(libc::c_long, [libc::c_long; 3]); 3] = [
            (libc::SYS_setgroups, [0, 0, 0]),
            (libc::SYS_setresgid, [gid.into(), gid.into(), gid.into()]),
            (libc::SYS_setresuid, [uid.into(), uid.into(), uid.into()]),
        ];
        for (call, [a, b, c]) in calls {
            // SAFETY: credential syscalls with integer arguments; setgroups(0, NULL) reads no memory.
            if unsafe { libc::syscall(call, a, b, c) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Runs a command; its stdout, or an error naming it with its status and stderr.
pub fn checked(command: &mut Command) -> anyhow::Result<String> {
    let out = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
