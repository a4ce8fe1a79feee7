//! `meshd-xds-load` (in meshd-tools: load tools stay out of the library crates): how fast one endpoint change reaches many proxies, and what the control plane
//! costs in memory while serving them.
//!
//! It starts the control plane as a child process (this binary's `serve` mode, a synthetic mesh of
//! `--services` services × `--endpoints` endpoints), opens `--proxies` delta ADS streams as simulated
//! Envoys (each its own HTTP/2 connection: CDS + LDS wildcard, EDS and RDS by name, every response
//! ACKed), waits until all are synced, reads the child's RSS, then changes one endpoint `--rounds`
//! times and measures, per round, the time from the change until each proxy has ACKed the new
//! endpoints: p50, p99 and max over all proxies and rounds. The time includes the debounce (100 ms).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use meshd_index::{Index, SharedIndex};
use meshd_translate::facts::{Fact, FactKind};
use meshd_translate::synthetic::{endpoint, synthetic_mesh};
use meshd_translate::{ResourceType, TranslateSettings, Translator};
use meshd_xds::{XdsOptions, XdsServer};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// Counts live heap bytes, so the control plane's RSS can be split into what is allocated and what
/// the allocator keeps (the child prints it when the driver writes `stats`).
struct CountingAlloc;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: every call is forwarded to meshd's allocator (meshd_xds::heap) unchanged; only a counter
// is added.
#[allow(unsafe_code)] // a counting allocator over meshd's: see the SAFETY comments
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use std::sync::atomic::Ordering::Relaxed;
        // SAFETY: same contract as the caller's.
        let p = unsafe { meshd_xds::heap::Allocator.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { meshd_xds::heap::Allocator.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        use std::sync::atomic::Ordering::Relaxed;
        // SAFETY: same contract as the caller's.
        let p = unsafe { meshd_xds::heap::Allocator.realloc(ptr, layout, new) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
            let now = LIVE.fetch_add(new, Relaxed) + new;
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn heap_stats() -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    format!(
        "heap live {:.1} MiB, peak {:.1} MiB",
        mib(LIVE.load(Relaxed)),
        mib(PEAK.load(Relaxed))
    )
}

/// The cluster whose endpoints change each round.
const WATCHED: &str = "outbound|80||svc-0.ns-0.svc.cluster.local";

#[derive(Parser, Debug)]
#[command(
    name = "meshd-xds-load",
    about = "Endpoint-change convergence and RSS of the xDS control plane"
)]
struct Cli {
    #[arg(long, env = "MESHD_LOAD_PROXIES", default_value_t = 1000)]
    proxies: usize,
    #[arg(long, env = "MESHD_LOAD_SERVICES", default_value_t = 1000)]
    services: usize,
    #[arg(long, env = "MESHD_LOAD_ENDPOINTS", default_value_t = 10)]
    endpoints: usize,
    #[arg(long, env = "MESHD_LOAD_ROUNDS", default_value_t = 5)]
    rounds: usize,
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// The control plane under test (started by the tool itself): prints its address, then changes an
    /// endpoint for every line read on stdin.
    Serve,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.mode {
        Some(Mode::Serve) => runtime.block_on(serve(cli.services, cli.endpoints)),
        None => runtime.block_on(drive(cli)),
    }
}

async fn serve(services: usize, endpoints: usize) -> anyhow::Result<()> {
    let mesh = synthetic_mesh(services, endpoints);
    // Nothing to list: the index is complete from the start.
    let index = SharedIndex::new(Index::new([]));
    index.update(|i| {
        for c in mesh.changes() {
            i.set(c.kind, c.key, c.fact);
        }
    });
    let mut registry = prometheus_client::registry::Registry::default();
    let cancel = CancellationToken::new();
    let server = XdsServer::start(
        index.clone(),
        TranslateSettings::default(),
        XdsOptions::default(),
        &mut registry,
        cancel.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    let serving = tokio::spawn(async move { server.serve_tcp(listener).await });
    let mut lines = BufReader::new(std::io::stdin()).lines();
    let (key, mut slice) = mesh.slices[0].clone();
    let mut n = 0;
    while let Some(Ok(line)) = tokio::task::block_in_place(|| lines.next()) {
        if line == "stats" {
            println!("{}", heap_stats());
            continue;
        }
        n += 1;
        // One endpoint added to one EndpointSlice: one fact set in the index.
        slice
            .endpoints
            .push(endpoint(&format!("10.255.{}.{}", n / 250, n % 250 + 1)));
        let fact = Fact::EndpointSlice(Arc::new(slice.clone()));
        index.update(|i| i.set(FactKind::EndpointSlice, key.clone(), Some(fact)));
    }
    cancel.cancel();
    serving.await??;
    Ok(())
}

/// What a simulated proxy tells the driver.
enum Report {
    Synced,
    /// ACKed an EDS update of the watched cluster.
    Updated(Instant),
    Failed(String),
}

async fn drive(cli: Cli) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    // `MESHD_LOAD_WRAP="heaptrack -o /tmp/cp"` runs the control plane under a profiler.
    let wrap: Vec<String> = std::env::var("MESHD_LOAD_WRAP")
        .map(|w| w.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let mut command = match wrap.split_first() {
        Some((tool, args)) => {
            let mut c = Command::new(tool);
            c.args(args).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let mut child = command
        .args([
            "--services",
            &cli.services.to_string(),
            "--endpoints",
            &cli.endpoints.to_string(),
            "serve",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the control plane")?;
    let mut addr = String::new();
    let mut child_out = BufReader::new(child.stdout.take().context("child stdout")?);
    // A profiler wrapping the child may print first: the address is the first line that parses.
    while addr.trim().parse::<std::net::SocketAddr>().is_err() {
        addr.clear();
        anyhow::ensure!(child_out.read_line(&mut addr)? > 0, "control plane exited");
    }
    let addr = addr.trim().to_string();
    let mut control = child.stdin.take().context("child stdin")?;
    let pid = child.id();
    println!(
        "control plane pid {pid} on {addr}: {} services x {} endpoints",
        cli.services, cli.endpoints
    );
    let mut stats = move |control: &mut std::process::ChildStdin| -> anyhow::Result<String> {
        writeln!(control, "stats")?;
        control.flush()?;
        let mut line = String::new();
        while !line.starts_with("heap live") {
            line.clear();
            anyhow::ensure!(child_out.read_line(&mut line)? > 0, "control plane exited");
        }
        Ok(line.trim().to_string())
    };
    println!(
        "RSS idle: {:.1} MiB ({})",
        rss_mib(pid)?,
        stats(&mut control)?
    );

    // What each simulated proxy must hold before it counts as synced, from the same translation.
    let compiled = Arc::new(
        Translator::new(TranslateSettings::default())
            .apply(synthetic_mesh(cli.services, cli.endpoints).changes())
            .0,
    );
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(cli.proxies);
    for i in 0..cli.proxies {
        let s = i % cli.services;
        let node = format!("svc-{s}-0.ns-{}", s % 10);
        let (addr, tx) = (addr.clone(), reports_tx.clone());
        let config = compiled.proxy_config(&meshd_translate::NodeId::parse(&node)?);
        let expected = ResourceType::ALL.map(|ty| config.count(ty));
        tasks.push(tokio::spawn(async move {
            if let Err(e) = proxy(&addr, node, expected, tx.clone()).await {
                let _ = tx.send((i, Report::Failed(format!("{e:#}"))));
            }
        }));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(10)).await; // connect in waves, as a rollout would
        }
    }
    let mut synced = 0;
    while synced < cli.proxies {
        match reports.recv().await.context("proxies gone")? {
            (_, Report::Synced) => synced += 1,
            (i, Report::Failed(e)) => anyhow::bail!("proxy {i}: {e}"),
            (_, Report::Updated(_)) => {}
        }
    }
    println!(
        "{} proxies synced in {:.1} s",
        cli.proxies,
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "RSS with {} proxies: {:.1} MiB ({})",
        cli.proxies,
        rss_mib(pid)?,
        stats(&mut control)?
    );

    let mut latencies = Vec::new();
    for round in 0..cli.rounds {
        while reports.try_recv().is_ok() {}
        let t0 = Instant::now();
        writeln!(control, "change")?;
        control.flush()?;
        let mut seen = 0;
        let mut last = Duration::ZERO;
        while seen < cli.proxies {
            match tokio::time::timeout(Duration::from_secs(60), reports.recv()).await {
                Ok(Some((_, Report::Updated(at)))) => {
                    let d = at.duration_since(t0);
                    last = last.max(d);
                    latencies.push(d);
                    seen += 1;
                }
                Ok(Some((i, Report::Failed(e)))) => anyhow::bail!("proxy {i}: {e}"),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => anyhow::bail!(
                    "round {round}: only {seen} of {} proxies updated",
                    cli.proxies
                ),
            }
        }
        println!(
            "round {round}: all {} proxies ACKed the change after {:.0} ms",
            cli.proxies,
            last.as_secs_f64() * 1e3
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    println!(
        "endpoint change -> ACK, {} proxies x {} rounds: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        cli.proxies,
        cli.rounds,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        pct(1.0).as_secs_f64() * 1e3
    );
    println!(
        "RSS after the rounds: {:.1} MiB ({})",
        rss_mib(pid)?,
        stats(&mut control)?
    );
    for t in tasks {
        t.abort();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "RSS after every proxy disconnected: {:.1} MiB ({})",
        rss_mib(pid)?,
        stats(&mut control)?
    );
    drop(control);
    let _ = child.wait();
    Ok(())
}

fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")?;
    Ok(kib / 1024.0)
}

/// One simulated Envoy on its own connection.
async fn proxy(
    addr: &str,
    node: String,
    expected: [usize; ResourceType::COUNT],
    reports: mpsc::UnboundedSender<(usize, Report)>,
) -> anyhow::Result<()> {
    let me = 0;
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}")).await?;
    let (tx, rx) = mpsc::channel(16);
    let subscribe = |ty: ResourceType, names: Vec<String>| DeltaDiscoveryRequest {
        type_url: ty.type_url(),
        resource_names_subscribe: names,
        ..Default::default()
    };
    let mut first = subscribe(ResourceType::Cluster, vec![]);
    first.node = Some(Node {
        id: node,
        ..Default::default()
    });
    tx.send(first).await?;
    tx.send(subscribe(ResourceType::Listener, vec![])).await?;
    let mut responses = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut wants_rds = None::<bool>;
    let mut synced = false;
    // Names received per type until synced (every resource of the proxy's config, all chunks).
    let mut received: [std::collections::HashSet<String>; ResourceType::COUNT] = Default::default();
    while let Some(r) = responses.message().await? {
        let ty = ResourceType::from_type_url(&r.type_url).context("unknown type")?;
        if !synced {
            received[ty as usize].extend(r.resources.iter().map(|x| x.name.clone()));
        }
        tx.send(DeltaDiscoveryRequest {
            type_url: r.type_url.clone(),
            response_nonce: r.nonce.clone(),
            ..Default::default()
        })
        .await?;
        match ty {
            ResourceType::Cluster => {
                let names: Vec<String> = r
                    .resources
                    .iter()
                    .filter(|c| c.name.starts_with("outbound|"))
                    .map(|c| c.name.clone())
                    .collect();
                tx.send(subscribe(ResourceType::Endpoint, names)).await?;
            }
            ResourceType::Listener if wants_rds.is_none() => {
                let mut routes = Vec::new();
                for res in &r.resources {
                    let listener = Listener::decode(
                        res.resource.as_ref().context("no body")?.value.as_slice(),
                    )?;
                    for chain in &listener.filter_chains {
                        for f in &chain.filters {
                            if let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type
                                && any.type_url.ends_with("HttpConnectionManager")
                                && let Some(RouteSpecifier::Rds(rds)) =
                                    HttpConnectionManager::decode(any.value.as_slice())?
                                        .route_specifier
                            {
                                routes.push(rds.route_config_name);
                            }
                        }
                    }
                }
                wants_rds = Some(!routes.is_empty());
                if !routes.is_empty() {
                    tx.send(subscribe(ResourceType::Route, routes)).await?;
                }
            }
            ResourceType::Endpoint if synced && r.resources.iter().any(|e| e.name == WATCHED) => {
                let _ = reports.send((me, Report::Updated(Instant::now())));
            }
            _ => {}
        }
        if !synced
            && received
                .iter()
                .zip(expected)
                .all(|(got, want)| got.len() >= want)
        {
            synced = true;
            received = Default::default();
            let _ = reports.send((me, Report::Synced));
        }
    }
    anyhow::bail!("stream closed")
}
