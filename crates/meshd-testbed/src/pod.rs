//! A pod of the one-machine mesh: its network namespace, app and sidecar (`meshd agent` and its Envoy),
//! Envoy's admin stats, and the process facts (children, RSS) the demo reports. Torn down on Drop.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::app::{App, HttpConn, Received, Response, get_in};
use crate::mesh::APP;
use crate::netns::NetNs;

/// A child process killed (and reaped) on Drop.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One pod: its namespace, app and sidecar (a gateway pod: its proxy only, no app). Fields drop in
/// order: agent, app, namespace.
#[derive(Debug)]
pub struct Pod {
    pub name: String,
    pub app_label: String,
    pub ip: Ipv4Addr,
    pub(crate) agent: Option<ChildGuard>,
    pub(crate) app: Option<App>,
    pub ns: NetNs,
}

impl Pod {
    /// The pod's app waits `delay` before each answer from now on.
    pub fn answer_after(&self, delay: std::time::Duration) {
        if let Some(app) = &self.app {
            app.answer_after(delay);
        }
    }

    /// The pod's app answers every request with `status` from now on (200 heals it).
    pub fn answer_with(&self, status: u16) {
        if let Some(app) = &self.app {
            app.answer_with(status);
        }
    }

    /// The latest requests the pod's app received, oldest first (none for a gateway pod).
    pub fn received(&self) -> Vec<Received> {
        self.app.as_ref().map(App::received).unwrap_or_default()
    }

    /// One request from the pod's app (uid [`APP`], through capture) to `target` on a fresh
    /// connection: the whole answer.
    pub fn call(
        &self,
        target: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Response> {
        let (method, path) = (method.to_string(), path.to_string());
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.ns.run_in(Some(APP), move || {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            HttpConn::connect(target)?.exchange(&method, &path, &headers)
        })
    }

    /// Every `*update_rejected` stat of the pod's Envoy that is not 0: config it refused (a bug).
    pub fn rejections(&self) -> Vec<String> {
        self.admin("/stats?filter=update_rejected")
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim_end().ends_with(": 0"))
            .map(String::from)
            .collect()
    }

    /// The agent's pid (the `ip netns exec`/`setpriv` chain execs, so it is the spawned child).
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(|a| a.0.id())
    }

    pub fn envoy_pid(&self) -> Option<u32> {
        children(self.agent_pid()?).into_iter().next()
    }

    /// Stops the sidecar (agent and its Envoy) and waits until Envoy is gone. The agent gives Envoy a
    /// parent-death signal, but Envoy is still killed explicitly so a teardown never depends on it.
    pub fn stop_sidecar(&mut self) -> anyhow::Result<()> {
        let envoy = self.envoy_pid();
        // The agent first, so it cannot restart the Envoy killed next.
        drop(self.agent.take());
        if let Some(pid) = envoy {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            wait_for_exit(pid)?;
        }
        Ok(())
    }

    /// `GET path` on Envoy's admin (127.0.0.1:15000 inside the pod).
    pub fn admin(&self, path: &str) -> anyhow::Result<String> {
        let (status, body) = get_in(&self.ns, None, ([127, 0, 0, 1], 15000).into(), path)?;
        if status != 200 {
            bail!("{}: admin {path} answered {status}", self.name);
        }
        Ok(body)
    }

    /// Envoy's counters whose names contain `filter`, by full stat name.
    pub fn stats(&self, filter: &str) -> anyhow::Result<BTreeMap<String, u64>> {
        let body = self.admin("/stats")?;
        Ok(body
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter(|(name, _)| name.contains(filter))
            .filter_map(|(name, v)| Some((name.to_string(), v.trim().parse().ok()?)))
            .collect())
    }

    /// `cluster.<cluster>.<stat>`, 0 when Envoy has no such counter yet.
    pub fn cluster_stat(&self, cluster: &str, stat: &str) -> anyhow::Result<u64> {
        let name = format!("cluster.{cluster}.{stat}");
        Ok(self.stats(&name)?.get(&name).copied().unwrap_or(0))
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Err(e) = self.stop_sidecar() {
            eprintln!("meshd-testbed: {}: {e:#}", self.name);
        }
    }
}

/// Waits until `pid` is gone or a zombie (reaped by init); not interruptible, as teardown uses it.
fn wait_for_exit(pid: u32) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = state
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().chars().next());
        if matches!(state, None | Some(Some('Z'))) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("Envoy (pid {pid}) still running 10s after SIGKILL")
}

/// The direct children of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.to_string()))
                .and_then(|rest| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(pid)
        })
        .collect()
}

/// Resident memory of `pid` in KiB (0 when it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
