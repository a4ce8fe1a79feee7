//! `make demo`: a mesh on one machine. meshd's control plane fed from a config directory, three pods on a
//! bridge (each with `meshd init` capture, `meshd agent` running Envoy as uid 1337, and an app as uid
//! 1000), traffic by Service VIP proven from Envoy's own stats, a live endpoint change, and the cost of
//! the two-sidecar path, then a canary (SPEC §8): 10% to a `v2` reviews pod and a retry policy hiding a
//! failing pod, both checked. Everything is torn down on exit, failure, Ctrl-C and SIGTERM.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use meshd_testbed::load::{answers, latencies, quantile};
use meshd_testbed::mesh::{
    APP, APP_PORT, DIRECT_PORT, INBOUND, Mesh, PROXY, REVIEWS_OUTBOUND, REVIEWS_VIP, rss_kib,
};
use meshd_testbed::{prereq, signal};

#[derive(Parser, Debug)]
#[command(about = "The one-machine meshd demo (root; network namespaces on a bridge, real Envoy)")]
struct Args {
    /// The meshd binary.
    #[arg(long, env = "MESHD_MESHD", default_value = "target/release/meshd")]
    meshd: PathBuf,
    /// The real Envoy program (not the .venv/bin/envoy wrapper: uid 1337 must be able to run it).
    #[arg(long, env = "MESHD_ENVOY_PATH")]
    envoy_path: Option<PathBuf>,
    /// Requests per batch from the frontend to the reviews VIP.
    #[arg(long, env = "MESHD_REQUESTS", default_value_t = 200)]
    requests: usize,
    /// Requests per path for the latency figures.
    #[arg(long, env = "MESHD_LATENCY_REQUESTS", default_value_t = 2000)]
    latency_requests: usize,
}

const READY: Duration = Duration::from_secs(30);

fn main() {
    let started = Instant::now();
    let code = match run(Args::parse()) {
        Ok(()) => {
            println!(
                "\nAll torn down (processes, namespaces, bridge, config dir). Demo took {:.1?}.",
                started.elapsed()
            );
            0
        }
        Err(_) if signal::interrupted() => {
            eprintln!("\nmeshd demo interrupted; everything it started has been torn down.");
            130
        }
        Err(e) => {
            eprintln!("\nmeshd demo FAILED: {e:#}\n(everything it started has been torn down)");
            1
        }
    };
    std::process::exit(code);
}

fn run(args: Args) -> anyhow::Result<()> {
    signal::install().context("installing the SIGINT/SIGTERM handler")?;
    prereq::check(&["iptables", "setpriv"]).map_err(anyhow::Error::msg)?;
    let meshd = std::fs::canonicalize(&args.meshd)
        .with_context(|| format!("--meshd {}", args.meshd.display()))?;
    let envoy = match args.envoy_path.clone() {
        Some(p) => p,
        None => meshd_testbed::mesh::venv_envoy(&std::env::current_dir()?)
            .map_err(anyhow::Error::msg)?,
    };
    let mut mesh = setup(&meshd, &envoy)?;
    let result = show(&mut mesh, &args);
    // Also reached on error: teardown is the Drop of `mesh`.
    println!("\nTearing down...");
    drop(mesh);
    result
}

/// The control plane and the three pods, ready. On any error the partly built mesh is dropped: torn down.
fn setup(meshd: &std::path::Path, envoy: &std::path::Path) -> anyhow::Result<Mesh> {
    println!("== meshd demo: a mesh on this machine (namespace `demo`) ==");
    println!(
        "mTLS: not built yet in meshd -- this Mesh runs with `mtls.mode: DISABLE` (plain text between sidecars).\n"
    );
    let t = Instant::now();
    let mut mesh = Mesh::start(meshd, envoy)?;
    println!(
        "control plane : meshd controlplane, xDS on unix:{}/xds.sock",
        mesh.work_dir().display()
    );
    println!("config dir    : {}/config", mesh.work_dir().display());
    let pods = [
        ("frontend-0", "frontend", Ipv4Addr::new(10, 44, 0, 10)),
        ("reviews-0", "reviews", Ipv4Addr::new(10, 44, 0, 11)),
        ("reviews-1", "reviews", Ipv4Addr::new(10, 44, 0, 12)),
    ];
    for (name, app, ip) in pods {
        mesh.declare_pod(name, app, ip)?;
    }
    for (name, app, ip) in pods {
        mesh.start_pod(name, app, ip)?;
        println!(
            "pod           : {name:<11} {ip:<11} app={app:<9} capture + agent/Envoy (uid 1337) + app (uid 1000)"
        );
    }
    mesh.wait_ready(READY)?;
    println!(
        "all sidecars ready (/healthz/ready 200) in {:.1?}\n",
        t.elapsed()
    );
    Ok(mesh)
}

fn show(mesh: &mut Mesh, args: &Args) -> anyhow::Result<()> {
    let vip: SocketAddr = (REVIEWS_VIP, 80).into();
    println!(
        "-- 1. frontend-0 calls http://{REVIEWS_VIP}/ (the reviews VIP) {} times, as uid 1000 --",
        args.requests
    );
    batch(mesh, vip, args.requests)?;

    println!("\n-- 2. live change: reviews-2 written into the config dir, then started --");
    let t = Instant::now();
    let ip = Ipv4Addr::new(10, 44, 0, 13);
    mesh.declare_pod("reviews-2", "reviews", ip)?;
    mesh.start_pod("reviews-2", "reviews", ip)?;
    mesh.wait_ready(READY)?;
    mesh.wait_endpoint("frontend-0", REVIEWS_OUTBOUND, (ip, APP_PORT).into(), READY)?;
    println!(
        "frontend-0's Envoy has {ip}:{APP_PORT} in {REVIEWS_OUTBOUND} after {:.1?}",
        t.elapsed()
    );
    batch(mesh, vip, args.requests)?;

    println!(
        "\n-- 3. cost of the two sidecars ({} requests per path, one keep-alive connection) --",
        args.latency_requests
    );
    let frontend = mesh.pod("frontend-0")?;
    let reviews = mesh.pod("reviews-0")?;
    let meshed = latencies(&frontend.ns, APP, vip, 100, args.latency_requests)?;
    let direct = latencies(
        &frontend.ns,
        PROXY,
        (reviews.ip, DIRECT_PORT).into(),
        100,
        args.latency_requests,
    )?;
    let (m50, m99, d50, d99) = (
        quantile(&meshed, 0.5),
        quantile(&meshed, 0.99),
        quantile(&direct, 0.5),
        quantile(&direct, 0.99),
    );
    println!(
        "direct  (uid 1337 -> {}:{DIRECT_PORT}, no capture either side): p50 {d50:?}  p99 {d99:?}",
        reviews.ip
    );
    println!(
        "meshed  (uid 1000 -> VIP, frontend Envoy -> reviews Envoy -> app): p50 {m50:?}  p99 {m99:?}"
    );
    println!(
        "added   p50 +{:?} ({:.1}x)   p99 +{:?} ({:.1}x)",
        m50.saturating_sub(d50),
        ratio(m50, d50),
        m99.saturating_sub(d99),
        ratio(m99, d99)
    );
    let agent = frontend.agent_pid().context("frontend-0's agent")?;
    let envoy = frontend.envoy_pid().context("frontend-0's Envoy")?;
    println!(
        "RSS of frontend-0's sidecar: meshd agent {} MiB, Envoy {} MiB",
        rss_kib(agent) / 1024,
        rss_kib(envoy) / 1024
    );
    canary(mesh, vip, args.requests.max(400))
}

/// SPEC §8: reviews-0/1 are v1, reviews-2 is v2; 10% goes to v2, retries on 5xx hide reviews-1, which
/// now fails every request.
const CANARY: &str = "apiVersion: networking.meshd.io/v1alpha1
kind: DestinationRule
metadata: {name: reviews, namespace: demo}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {name: reviews, namespace: demo}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v2}, weight: 10}
    retries: {attempts: 3, retryOn: 5xx}
";

fn canary(mesh: &mut Mesh, vip: SocketAddr, n: usize) -> anyhow::Result<()> {
    println!(
        "\n-- 4. canary: a VirtualService sends 10% to v2 (reviews-2), retries hide a failing pod --"
    );
    for (pod, version) in [
        ("reviews-0", "v1"),
        ("reviews-1", "v1"),
        ("reviews-2", "v2"),
    ] {
        mesh.label_pod(pod, "version", version)?;
    }
    mesh.write_config_file("canary.yaml", Some(CANARY))?;
    let v2 = "outbound|80|v2|reviews.demo.svc.cluster.local";
    let ip = mesh.pod("reviews-2")?.ip;
    mesh.wait_endpoint("frontend-0", v2, (ip, APP_PORT).into(), READY)?;
    let frontend = mesh.pod("frontend-0")?;
    meshd_testbed::mesh::wait_for("the canary's routes", READY, || {
        Ok(frontend
            .admin("/config_dump?resource=dynamic_route_configs")
            .is_ok_and(|d| d.contains(v2)))
    })?;
    println!(
        "config      : {}/config/canary.yaml (DestinationRule + VirtualService)",
        mesh.work_dir().display()
    );
    mesh.pod("reviews-1")?.answer_with(503);
    println!("reviews-1   : now answers every request with 503");
    let by_pod = answers(&mesh.pod("frontend-0")?.ns, APP, vip, n)
        .context("a request failed although the retry policy should have hidden reviews-1")?;
    for pod in ["reviews-0", "reviews-1", "reviews-2"] {
        let answered = by_pod.get(pod).copied().unwrap_or(0);
        println!("  {pod:<10} answered {answered:>4}  {}", bar(answered, n));
    }
    let to_v2 = by_pod.get("reviews-2").copied().unwrap_or(0);
    let share = to_v2 as f64 * 100.0 / n as f64;
    if !(5.0..=15.0).contains(&share) {
        bail!("v2 got {share:.1}% of {n} requests, not about 10%");
    }
    if by_pod.get("reviews-1").copied().unwrap_or(0) > 0 {
        bail!("reviews-1 answered although it fails every request");
    }
    println!(
        "=> {n} x 200: v2 got {share:.1}% (10% asked), the failing reviews-1 was retried away"
    );
    Ok(())
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

/// One batch through the VIP, and the proof from the Envoys' stats that every request crossed both sidecars.
fn batch(mesh: &Mesh, vip: SocketAddr, n: usize) -> anyhow::Result<()> {
    let frontend = mesh.pod("frontend-0")?;
    let reviews: Vec<_> = mesh
        .pods()
        .iter()
        .filter(|p| p.app_label == "reviews")
        .collect();
    let out_before = frontend.cluster_stat(REVIEWS_OUTBOUND, "upstream_rq_total")?;
    let in_before: Vec<u64> = reviews
        .iter()
        .map(|p| p.cluster_stat(INBOUND, "upstream_rq_total"))
        .collect::<Result<_, _>>()?;
    let by_pod = answers(&frontend.ns, APP, vip, n)?;
    let out = frontend.cluster_stat(REVIEWS_OUTBOUND, "upstream_rq_total")? - out_before;
    let mut inbound: BTreeMap<&str, u64> = BTreeMap::new();
    for (pod, before) in reviews.iter().zip(in_before) {
        inbound.insert(
            &pod.name,
            pod.cluster_stat(INBOUND, "upstream_rq_total")? - before,
        );
    }
    let in_total: u64 = inbound.values().sum();
    println!("answers     : {n} x 200");
    println!("outbound    : frontend-0 Envoy, cluster {REVIEWS_OUTBOUND}: +{out} requests");
    println!("inbound     : reviews Envoys, cluster {INBOUND}: +{in_total} requests");
    for pod in &reviews {
        let answered = by_pod.get(&pod.name).copied().unwrap_or(0);
        let through = inbound.get(pod.name.as_str()).copied().unwrap_or(0);
        println!(
            "  {:<10} answered {answered:>4}   its sidecar's inbound +{through:>4}  {}",
            pod.name,
            bar(answered, n)
        );
    }
    for pod in &reviews {
        let answered = by_pod.get(&pod.name).copied().unwrap_or(0);
        let through = inbound.get(pod.name.as_str()).copied().unwrap_or(0);
        if answered != through {
            bail!(
                "{}: answered {answered} requests but its sidecar's inbound counted {through}",
                pod.name
            );
        }
    }
    if out != n as u64 || in_total != n as u64 {
        bail!(
            "expected {n} requests through both sidecars, saw outbound +{out}, inbound +{in_total}"
        );
    }
    println!(
        "=> all {n} requests went out through frontend-0's sidecar and in through a reviews sidecar"
    );
    Ok(())
}

fn bar(part: u64, whole: usize) -> String {
    "#".repeat((part as usize * 40).checked_div(whole).unwrap_or(0))
}
