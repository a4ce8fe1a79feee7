//! The Envoy child: its bootstrap file, and supervision (restart with backoff, give up when it keeps
//! dying). Envoy's stdout and stderr are the agent's, so the container log has both.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use meshd_translate::{BootstrapParams, XdsAddress, XdsApi};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::metrics::AgentMetrics;
use crate::{AgentError, AgentSettings};

/// Envoy dying this many times within `DEATH_WINDOW` ends the agent.
const MAX_DEATHS: usize = 5;
const DEATH_WINDOW: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// After SIGTERM, how long Envoy gets before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Writes `<config-dir>/envoy-bootstrap.json` from the shared bootstrap function; the path. Envoy's ADS
/// goes to the agent's xDS proxy (plaintext on its Unix socket), which carries it to the control plane.
pub(crate) fn write_bootstrap(s: &AgentSettings) -> Result<PathBuf, AgentError> {
    let mut value = meshd_translate::bootstrap(&BootstrapParams {
        node: s.node.clone(),
        xds: XdsAddress::Unix(s.xds_socket().display().to_string()),
        api: XdsApi::Delta,
        tls: None,
        labels: s.labels.clone(),
        service_account: s.service_account.clone(),
        ips: s.pod_ip.iter().map(ToString::to_string).collect(),
        sds_socket: Some(s.sds_socket().display().to_string()),
    });
    // A non-default admin port (tests, or a pod where 15000 is taken): the admin address and the
    // cluster behind the 15090 stats listener both point at it.
    value["admin"]["address"]["socket_address"]["port_value"] = json!(s.admin_port);
    if let Some(clusters) = value["static_resources"]["clusters"].as_array_mut() {
        for c in clusters
            .iter_mut()
            .filter(|c| c["name"] == "prometheus_stats")
        {
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"] = json!(s.admin_port);
        }
    }
    let metadata = &mut value["node"]["metadata"];
    metadata["mesh"] = json!(s.mesh);
    metadata["trust_domain"] = json!(s.trust_domain);
    if let Some(node_name) = &s.node_name {
        metadata["node_name"] = json!(node_name);
    }
    if let Some(gateway) = &s.gateway {
        metadata["gateway"] = json!(gateway);
    }
    let path = s.config_dir.join("envoy-bootstrap.json");
    let text = serde_json::to_string_pretty(&value).expect("a JSON value always renders");
    std::fs::create_dir_all(&s.config_dir)
        .and_then(|()| std::fs::write(&path, text))
        .map_err(|source| AgentError::WriteBootstrap {
            path: path.clone(),
            source,
        })?;
    Ok(path)
}

fn envoy_command(s: &AgentSettings, bootstrap: &PathBuf) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&s.envoy_path);
    cmd.arg("-c")
        .arg(bootstrap)
        .arg("--disable-hot-restart")
        .args(["--log-level", s.log_level.as_str()])
        .args(["--concurrency", &s.concurrency.max(1).to_string()])
        // The graceful drain lasts as long as the agent waits before stopping Envoy.
        .args([
            "--drain-time-s",
            &s.drain_duration.as_secs().max(1).to_string(),
        ])
        .args(["--drain-strategy", "immediate"])
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    die_with_the_agent(&mut cmd);
    cmd
}

/// Envoy gets SIGKILL when the agent dies, even by SIGKILL (which `kill_on_drop` cannot catch): a
/// leftover Envoy would keep the pod's ports and serve with a config nobody updates. Istio's
/// pilot-agent does the same. The signal follows the thread that spawned the child: `supervise` runs
/// on a runtime worker thread, which lives as long as the agent.
#[allow(unsafe_code)] // pre_exec: see the SAFETY comment
fn die_with_the_agent(cmd: &mut tokio::process::Command) {
    let agent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and only makes two async-signal-safe
    // system calls (prctl, getppid); it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The agent may have died between fork and prctl: then nobody would send the signal.
            if nix::unistd::getppid() != agent {
                return Err(std::io::Error::other(
                    "the agent exited while starting Envoy",
                ));
            }
            Ok(())
        });
    }
}

/// Runs Envoy until `stop` (then SIGTERM, SIGKILL after a grace period) or until it keeps dying.
pub(crate) async fn supervise(
    s: AgentSettings,
    bootstrap: PathBuf,
    metrics: AgentMetrics,
    stop: CancellationToken,
) -> Result<(), AgentError> {
    let mut deaths: VecDeque<Instant> = VecDeque::new();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut child =
            envoy_command(&s, &bootstrap)
                .spawn()
                .map_err(|source| AgentError::SpawnEnvoy {
                    path: s.envoy_path.clone(),
                    source,
                })?;
        let pid = child.id();
        metrics.envoy_starts.inc();
        metrics.envoy_up.set(1);
        tracing::info!(pid, envoy = %s.envoy_path.display(), "Envoy started");
        let started = Instant::now();
        let status = tokio::select! {
            status = child.wait() => status,
            () = stop.cancelled() => {
                stop_child(&mut child, pid).await;
                metrics.envoy_up.set(0);
                return Ok(());
            }
        };
        metrics.envoy_up.set(0);
        let last = match status {
            Ok(st) => st.to_string(),
            Err(e) => format!("unknown status ({e})"),
        };
        tracing::warn!(pid, status = %last, "Envoy exited");
        let now = Instant::now();
        deaths.push_back(now);
        while deaths
            .front()
            .is_some_and(|t| now.duration_since(*t) > DEATH_WINDOW)
        {
            deaths.pop_front();
        }
        if deaths.len() >= MAX_DEATHS {
            return Err(AgentError::EnvoyKeepsDying {
                deaths: deaths.len(),
                window: DEATH_WINDOW,
                last,
            });
        }
        // A run that lasted a while resets the backoff.
        if started.elapsed() > DEATH_WINDOW {
            backoff = FIRST_BACKOFF;
        }
        tracing::info!(after = ?backoff, "restarting Envoy");
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return Ok(()),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn stop_child(child: &mut tokio::process::Child, pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(status) => tracing::info!(?pid, status = ?status.ok(), "Envoy stopped"),
        Err(_) => {
            tracing::warn!(?pid, "Envoy ignored SIGTERM; killing it");
            let _ = child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::AgentSettings;

    #[test]
    fn bootstrap_carries_identity_admin_port_and_the_agent_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let config_dir = dir.path().join("proxy");
        let settings = AgentSettings::from_args([
            "--pod-name",
            "web-0",
            "--pod-namespace",
            "shop",
            "--pod-ip",
            "10.0.0.5",
            "--service-account",
            "web",
            "--discovery-address",
            "meshd.meshd-system.svc:15012",
            "--gateway",
            "ingress",
            "--admin-port",
            "25000",
            "--config-dir",
            config_dir.to_str().unwrap(),
        ])
        .unwrap();
        let path = super::write_bootstrap(&settings).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(b["node"]["id"], "web-0.shop");
        assert_eq!(b["node"]["metadata"]["gateway"], "ingress");
        assert_eq!(b["node"]["metadata"]["ips"][0], "10.0.0.5");
        assert_eq!(b["admin"]["address"]["socket_address"]["port_value"], 25000);
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        let stats = clusters
            .iter()
            .find(|c| c["name"] == "prometheus_stats")
            .unwrap();
        assert_eq!(
            stats["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"],
            25000
        );
        let sds = clusters.iter().find(|c| c["name"] == "sds-grpc").unwrap();
        assert_eq!(
            sds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["pipe"]
                ["path"],
            config_dir.join("sds.sock").to_str().unwrap()
        );
        // ADS goes to the agent's xDS proxy in plaintext; the proxy holds the TLS and the token.
        let xds = clusters.iter().find(|c| c["name"] == "xds-grpc").unwrap();
        assert_eq!(
            xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["pipe"]
                ["path"],
            config_dir.join("xds.sock").to_str().unwrap()
        );
        assert!(xds.get("transport_socket").is_none(), "{xds}");
    }
}
