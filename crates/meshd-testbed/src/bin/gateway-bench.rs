//! Issue 11's figure: requests/s and p99 through the ingress gateway with TLS termination, meshd's
//! config (Gateway + VirtualService + Secret over xDS/SDS) against the same Envoy binary with an
//! equivalent static configuration (one listener, the same certificate inline, one route, one static
//! cluster), on this machine. Both Envoys run in the gateway pod's namespace with one worker and send
//! to the same frontend pod (through its sidecar, mode DISABLE so both upstream paths are plaintext);
//! the load comes from a namespace outside the mesh: `--connections` keep-alive HTTPS connections,
//! each sending GETs back to back. Rounds alternate meshd/static so the machine's other load hits both
//! alike; the figure is the median round of each. Prints; asserts nothing about speed.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use meshd_testbed::load::quantile;
use meshd_testbed::mesh::{
    APP_PORT, ChildGuard, EXAMPLE_HOST, GATEWAY_HTTPS_PORT, Mesh, PROXY, wait_for,
};
use meshd_testbed::pki::IssuedCert;
use meshd_testbed::tls::{self, TlsClient};
use meshd_testbed::{prereq, signal};

#[derive(Parser, Debug)]
#[command(about = "Gateway TLS termination: meshd's xDS config against a static Envoy config")]
struct Args {
    #[arg(long, env = "MESHD_MESHD", default_value = "target/release/meshd")]
    meshd: PathBuf,
    #[arg(long, env = "MESHD_ENVOY_PATH")]
    envoy_path: Option<PathBuf>,
    /// Seconds per round.
    #[arg(long, default_value_t = 4)]
    seconds: u64,
    /// Rounds per configuration (alternating).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
}

const FRONTEND: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 10);
const INGRESS: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 30);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 51);
const STATIC_PORT: u16 = 9443;
const SHOP: &str = EXAMPLE_HOST;

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("meshd-gateway-bench FAILED: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    signal::install()?;
    prereq::check(&["iptables", "setpriv"]).map_err(anyhow::Error::msg)?;
    let meshd = std::fs::canonicalize(&args.meshd)
        .with_context(|| format!("--meshd {}", args.meshd.display()))?;
    let envoy = match args.envoy_path.clone() {
        Some(p) => p,
        None => meshd_testbed::mesh::venv_envoy(&std::env::current_dir()?)
            .map_err(anyhow::Error::msg)?,
    };
    let mut mesh = Mesh::start_with(&meshd, &envoy, "DISABLE")?;
    mesh.declare_pod("frontend-0", "frontend", FRONTEND)?;
    mesh.start_pod("frontend-0", "frontend", FRONTEND)?;
    let (ca, cert) = mesh.start_example_edge(INGRESS, Duration::from_secs(30))?;
    let _static_envoy = start_static_envoy(&mesh, &envoy, &cert)?;
    mesh.start_outsider(CLIENT)?;
    let roots = ca.ca_pem();
    let targets = [
        ("meshd xDS", SocketAddr::from((INGRESS, GATEWAY_HTTPS_PORT))),
        ("static", SocketAddr::from((INGRESS, STATIC_PORT))),
    ];
    let client = mesh.outsider(0)?;
    for (_, target) in targets {
        wait_for(
            &format!("{target} answering 200"),
            Duration::from_secs(20),
            || {
                Ok(
                    matches!(round(client, &roots, target, 1, Duration::from_millis(200)), Ok(r) if r.requests > 0),
                )
            },
        )?;
        // Warm-up: connections, routes and caches.
        round(
            client,
            &roots,
            target,
            args.connections,
            Duration::from_secs(1),
        )?;
    }
    println!(
        "gateway TLS termination, {} connections, {} s rounds, {} rounds each, alternating:",
        args.connections, args.seconds, args.rounds
    );
    let mut results: [Vec<Round>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..args.rounds {
        for (i, (name, target)) in targets.iter().enumerate() {
            let r = round(
                client,
                &roots,
                *target,
                args.connections,
                Duration::from_secs(args.seconds),
            )?;
            println!(
                "  {name:<9} {:>8.0} req/s  p50 {:?}  p99 {:?}",
                r.rps, r.p50, r.p99
            );
            results[i].push(r);
        }
    }
    let median = |rounds: &mut Vec<Round>| {
        rounds.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        let rps = rounds[rounds.len() / 2].rps;
        rounds.sort_by_key(|r| r.p99);
        (rps, rounds[rounds.len() / 2].p99)
    };
    let (ours, theirs) = {
        let [a, b] = &mut results;
        (median(a), median(b))
    };
    println!(
        "FIGURE gateway TLS: meshd {:.0} req/s p99 {:?}; static Envoy {:.0} req/s p99 {:?}; \
         meshd/static req/s {:.3}, p99 {:+.1}% (target: within 5%)",
        ours.0,
        ours.1,
        theirs.0,
        theirs.1,
        ours.0 / theirs.0,
        (ours.1.as_secs_f64() / theirs.1.as_secs_f64().max(1e-9) - 1.0) * 100.0
    );
    Ok(())
}

struct Round {
    requests: usize,
    rps: f64,
    p50: Duration,
    p99: Duration,
}

/// `connections` threads in the client's namespace, each one HTTPS connection sending GETs until
/// `length` has passed.
fn round(
    client: &meshd_testbed::NetNs,
    roots: &str,
    target: SocketAddr,
    connections: usize,
    length: Duration,
) -> anyhow::Result<Round> {
    let started = Instant::now();
    let threads = (0..connections)
        .map(|_| {
            let roots = roots.to_string();
            client.spawn(None, move || {
                let mut session = tls::connect(target, &TlsClient::new(SHOP, roots.as_bytes()))?;
                let mut samples = Vec::new();
                let until = Instant::now() + length;
                while Instant::now() < until && !signal::interrupted() {
                    let t = Instant::now();
                    let (status, body) = session.http.get_with("/", &[("host", SHOP)])?;
                    if status != 200 || body != "frontend-0" {
                        bail!("{target}: {status} {body:?}");
                    }
                    samples.push(t.elapsed());
                }
                Ok(samples)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut samples = Vec::new();
    for t in threads {
        samples.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))??,
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Round {
        requests: samples.len(),
        rps: samples.len() as f64 / elapsed,
        p50: quantile(&samples, 0.5),
        p99: quantile(&samples, 0.99),
    })
}

/// The same Envoy binary in the gateway's namespace with a static configuration equivalent to what
/// meshd serves the gateway for examples/gateway.yaml's HTTPS server.
fn start_static_envoy(
    mesh: &Mesh,
    envoy: &std::path::Path,
    cert: &IssuedCert,
) -> anyhow::Result<ChildGuard> {
    let config = serde_json::json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15100}}},
        "static_resources": {
            "listeners": [{
                "name": "static_https",
                "address": {"socket_address": {"address": "0.0.0.0", "port_value": STATIC_PORT}},
                "listener_filters": [{"name": "envoy.filters.listener.tls_inspector",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
                "filter_chains": [{
                    "filter_chain_match": {"server_names": [SHOP]},
                    "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                        "common_tls_context": {
                            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                            "tls_certificates": [{
                                "certificate_chain": {"inline_string": cert.cert_pem},
                                "private_key": {"inline_string": cert.key_pem}
                            }]
                        }
                    }},
                    "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "static_https",
                        "route_config": {"virtual_hosts": [{
                            "name": SHOP, "domains": [SHOP, format!("{SHOP}:*")],
                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "frontend", "timeout": "0s"}}]
                        }]},
                        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
                    }}]
                }]
            }],
            "clusters": [{
                "name": "frontend", "type": "STATIC", "connect_timeout": "10s",
                "load_assignment": {"cluster_name": "frontend", "endpoints": [{"lb_endpoints": [{
                    "endpoint": {"address": {"socket_address": {"address": FRONTEND.to_string(), "port_value": APP_PORT}}}
                }]}]}
            }]
        }
    });
    let gateway = mesh.pod("ingress-0")?;
    let log = std::fs::File::create(mesh.work_dir().join("static-envoy.log"))?;
    let child = gateway
        .ns
        .command_as(PROXY, &envoy.display().to_string())
        .args([
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            "warning",
        ])
        .arg("--config-yaml")
        .arg(config.to_string())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the static Envoy")?;
    Ok(ChildGuard(child))
}
