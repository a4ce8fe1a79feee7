//! `meshd-file-push`: the file-fed control plane (`meshd controlplane --config-dir`) with one real Envoy,
//! measured from outside, as a user would see it.
//!
//! For each `--services` size it writes a config directory (`N` Services in 10 namespaces, each an HTTP
//! port and its own EndpointSlice file with `--endpoints` ready endpoints, one client Pod and a Mesh),
//! starts `meshd controlplane` on a Unix socket and Envoy from `meshd bootstrap` in its own network
//! namespace, and waits until Envoy holds every cluster. Then:
//! - **idle**: the control plane's CPU (utime + stime from `/proc/<pid>/stat`) over `--idle-seconds`
//!   with nothing changing, as a percentage of one core;
//! - **changes**: `--changes` times, one endpoint is added to one EndpointSlice file; the time until
//!   Envoy's `membership_total` of that cluster shows it (admin `/stats`, polled every 2 ms, or four
//!   times as long as one poll takes, so that polling leaves Envoy most of its time) and the
//!   control plane's CPU from the write until 1 s after Envoy had it (raw, and less the idle rate over
//!   the same window). Medians are printed.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use meshd_testbed::NetNs;

#[derive(Parser, Debug)]
#[command(
    name = "meshd-file-push",
    about = "Endpoint change → real Envoy, and idle CPU, of the file-fed control plane"
)]
struct Cli {
    /// Mesh sizes to measure, e.g. `100,2000,5000`.
    #[arg(long, value_delimiter = ',', default_value = "100,2000")]
    services: Vec<usize>,
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// Endpoint changes per size (0: idle only).
    #[arg(long, default_value_t = 7)]
    changes: usize,
    /// Idle measurement window (0: skip).
    #[arg(long, default_value_t = 30)]
    idle_seconds: u64,
    /// The `meshd` binary; next to this tool when unset.
    #[arg(long)]
    meshd: Option<PathBuf>,
    /// Envoy; the repository's `.venv` when unset.
    #[arg(long)]
    envoy: Option<PathBuf>,
    /// Extra flags for `meshd controlplane`, e.g. `--cp-arg=--debounce=50ms`.
    #[arg(long = "cp-arg", allow_hyphen_values = true)]
    cp_args: Vec<String>,
}

const NAMESPACES: usize = 10;
const HZ: f64 = 100.0;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let meshd = match &cli.meshd {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("tool directory")?
            .join("meshd"),
    };
    anyhow::ensure!(
        meshd.is_file(),
        "{} not found (build it, or pass --meshd)",
        meshd.display()
    );
    let envoy = match &cli.envoy {
        Some(p) => p.clone(),
        None => meshd_testbed::mesh::venv_envoy(&repo_root()).map_err(anyhow::Error::msg)?,
    };
    println!(
        "meshd {} | envoy {} | {} endpoints per service",
        meshd.display(),
        envoy.display(),
        cli.endpoints
    );
    for &services in &cli.services {
        measure(&cli, &meshd, &envoy, services)?;
    }
    Ok(())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A child process killed on Drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn endpoint_ip(s: usize, e: usize) -> String {
    let n = s * 64 + e;
    format!(
        "10.{}.{}.{}",
        128 + (n >> 16) % 128,
        (n >> 8) & 255,
        n & 255
    )
}

fn service_file(s: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{s}, namespace: ns-{ns}}}\nspec:\n  clusterIP: 10.96.{a}.{b}\n  selector: {{app: svc-{s}}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n",
        ns = s % NAMESPACES,
        a = s / 250,
        b = s % 250 + 1
    )
}

fn slice_file(s: usize, endpoints: usize) -> String {
    let list: String = (0..endpoints)
        .map(|e| {
            format!(
                "- addresses: [\"{}\"]\n  conditions: {{ready: true}}\n",
                endpoint_ip(s, e)
            )
        })
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: svc-{s}-1\n  namespace: ns-{ns}\n  labels: {{kubernetes.io/service-name: svc-{s}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n{list}",
        ns = s % NAMESPACES
    )
}

const CLIENT: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: client-0, namespace: demo, labels: {app: client}}\nspec:\n  serviceAccountName: client\n  containers: [{name: app, image: app}]\nstatus: {podIP: 10.1.0.5}\n";
const MESH: &str = "apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec:\n  mtls: {mode: DISABLE}\n";

fn measure(cli: &Cli, meshd: &Path, envoy: &Path, services: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let conf = dir.path().join("config");
    std::fs::create_dir(&conf)?;
    std::fs::write(conf.join("mesh.yaml"), MESH)?;
    std::fs::write(conf.join("client.yaml"), CLIENT)?;
    for s in 0..services {
        std::fs::write(conf.join(format!("svc-{s}.yaml")), service_file(s))?;
        std::fs::write(
            conf.join(format!("svc-{s}-slice.yaml")),
            slice_file(s, cli.endpoints),
        )?;
    }
    let socket = dir.path().join("xds.sock");
    let log = std::fs::File::create(dir.path().join("controlplane.log"))?;
    let started = Instant::now();
    let cp = Guard(
        Command::new(meshd)
            .arg("controlplane")
            .arg("--config-dir")
            .arg(&conf)
            .arg("--xds-listen")
            .arg(format!("unix:{}", socket.display()))
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(&cli.cp_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting meshd controlplane")?,
    );
    let pid = cp.0.id();
    let bootstrap = Command::new(meshd)
        .args([
            "bootstrap",
            "--node-id",
            "client-0.demo",
            "--format",
            "json",
        ])
        .args(["--label", "app=client", "--service-account", "client"])
        .args(["--pod-ip", "10.1.0.5"])
        .arg("--xds-address")
        .arg(format!("unix:{}", socket.display()))
        .output()?;
    anyhow::ensure!(
        bootstrap.status.success(),
        "meshd bootstrap: {}",
        String::from_utf8_lossy(&bootstrap.stderr)
    );
    let bootstrap_file = dir.path().join("envoy.json");
    std::fs::write(&bootstrap_file, &bootstrap.stdout)?;
    let ns = NetNs::new("push")?;
    let envoy_log = std::fs::File::create(dir.path().join("envoy.log"))?;
    let _envoy = Guard(
        ns.command(envoy.to_str().context("envoy path")?)
            .arg("-c")
            .arg(&bootstrap_file)
            .args(["--disable-hot-restart", "--log-level", "warn"])
            .args(["--concurrency", "1"])
            .stdout(Stdio::null())
            .stderr(envoy_log)
            .spawn()?,
    );
    let watched = "cluster.outbound|80||svc-0.ns-0.svc.cluster.local.membership_total";
    let synced = || -> bool {
        stat(&ns, "cluster_manager.active_clusters") >= (services + 3) as u64
            && stat(&ns, "cluster_manager.warming_clusters") == 0
            && stat(&ns, watched) == cli.endpoints as u64
    };
    let poll_started = Instant::now();
    stat(&ns, watched);
    let poll = poll_started.elapsed();
    wait(Duration::from_secs(300), synced).with_context(|| {
        format!(
            "Envoy did not get {services} clusters; see {}",
            dir.path().display()
        )
    })?;
    println!(
        "\n{services} services x {} endpoints: Envoy synced {:.1} s after start; control plane pid {pid}, RSS {} MiB",
        cli.endpoints,
        started.elapsed().as_secs_f64(),
        meshd_testbed::pod::rss_kib(pid) / 1024
    );
    let poll_started = Instant::now();
    stat(&ns, watched);
    let poll = poll.max(poll_started.elapsed());
    println!(
        "  one poll of Envoy's admin takes {:.1} ms",
        poll.as_secs_f64() * 1e3
    );
    std::thread::sleep(Duration::from_secs(5)); // let start-up work finish

    let mut idle_rate = 0.0; // CPU seconds per second
    if cli.idle_seconds > 0 {
        let (c0, t0) = (cpu_seconds(pid)?, Instant::now());
        std::thread::sleep(Duration::from_secs(cli.idle_seconds));
        idle_rate = (cpu_seconds(pid)? - c0) / t0.elapsed().as_secs_f64();
        println!(
            "  idle: {:.2}% of a core over {} s",
            idle_rate * 100.0,
            cli.idle_seconds
        );
    }

    let slice_path = conf.join("svc-0-slice.yaml");
    let (mut latencies, mut cpus, mut nets) = (Vec::new(), Vec::new(), Vec::new());
    for k in 1..=cli.changes {
        let want = (cli.endpoints + k) as u64;
        let text = slice_file(0, cli.endpoints + k);
        let (c0, t0) = (cpu_seconds(pid)?, Instant::now());
        std::fs::write(&slice_path, text)?;
        let mut seen = None;
        while t0.elapsed() < Duration::from_secs(60) {
            if stat(&ns, watched) == want {
                seen = Some(t0.elapsed());
                break;
            }
            // Poll often, but leave Envoy most of its time.
            std::thread::sleep(Duration::from_millis(2).max(poll * 4));
        }
        let Some(latency) = seen else {
            bail!("change {k} did not reach Envoy within 60 s")
        };
        std::thread::sleep(Duration::from_secs(1));
        let window = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds(pid)? - c0;
        let net = (cpu - idle_rate * window).max(0.0);
        println!(
            "  change {k}: in Envoy after {:.0} ms; control plane CPU {:.0} ms ({:.0} ms less idle)",
            latency.as_secs_f64() * 1e3,
            cpu * 1e3,
            net * 1e3
        );
        latencies.push(latency.as_secs_f64());
        cpus.push(cpu);
        nets.push(net);
        std::thread::sleep(Duration::from_millis(500));
    }
    if cli.changes > 0 {
        println!(
            "  median of {}: change in Envoy after {:.0} ms, control plane CPU {:.0} ms ({:.0} ms less idle)",
            cli.changes,
            median(&mut latencies) * 1e3,
            median(&mut cpus) * 1e3,
            median(&mut nets) * 1e3
        );
    }
    println!(
        "  control plane RSS at the end: {} MiB",
        meshd_testbed::pod::rss_kib(pid) / 1024
    );
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// utime + stime of a process, in seconds (`/proc/<pid>/stat`, fields 14 and 15, in 1/100 s).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the rest follows its closing parenthesis.
    let rest = stat.rsplit_once(')').context("/proc stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).context("/proc stat field")?.parse::<f64>()?)
    };
    // After ")": field 3 is index 0, so utime (14) is 11 and stime (15) is 12.
    Ok((ticks(11)? + ticks(12)?) / HZ)
}

fn wait(timeout: Duration, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if check() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("not within {timeout:?}")
}

/// A stat's value from Envoy's admin inside the namespace; 0 when absent or unreachable.
fn stat(ns: &NetNs, name: &str) -> u64 {
    // Gauges only: Envoy matches the filter against fewer stats (at 2,000 clusters a full scan is
    // tens of milliseconds of Envoy's time, which a tight poll would take from its xDS work).
    let path = format!("/stats?type=Gauges&filter=^{}$", regex_escape(name));
    let body = ns
        .run_in(None, move || {
            let mut s = TcpStream::connect_timeout(
                &"127.0.0.1:15000".parse().expect("a socket address"),
                Duration::from_secs(2),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(
                s,
                "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
            )?;
            let mut raw = String::new();
            s.read_to_string(&mut raw)?;
            Ok(raw)
        })
        .unwrap_or_default();
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}
