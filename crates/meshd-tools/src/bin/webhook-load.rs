//! `meshd-webhook-load`: throughput and latency of the injection webhook over TLS with keep-alive, from
//! a second process on loopback.
//!
//! By default it makes a throwaway CA and server certificate, starts the webhook as a child process
//! (this binary with `serve`), and drives it with `--connections` HTTP/1.1 keep-alive clients, each
//! sending the admission fixtures round-robin, one request at a time. `--addr` and `--ca` aim it at a
//! webhook already running (e.g. `meshd webhook`). Prints reviews/s and p50/p90/p99/max.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use meshd_inject::InjectionSettings;
use meshd_tools::pki::DevCa;
use meshd_webhook::{CertificateFiles, Injector, LogEvents, WebhookConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_util::sync::CancellationToken;

const DEFAULT_FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/admission"
);

#[derive(Parser, Debug)]
#[command(
    about = "Load the injection webhook over TLS with keep-alive and print reviews/s and latency percentiles"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Mode>,
    /// Concurrent keep-alive connections.
    #[arg(long, env = "MESHD_CONNECTIONS", default_value_t = 8)]
    connections: usize,
    /// Measured duration, in seconds (after a 1 s warm-up).
    #[arg(long, env = "MESHD_DURATION", default_value_t = 10)]
    duration: u64,
    /// Directory of AdmissionReview bodies (`*.json`), sent round-robin.
    #[arg(long, env = "MESHD_FIXTURES", default_value = DEFAULT_FIXTURES)]
    fixtures: PathBuf,
    /// Only this fixture (file name).
    #[arg(long, env = "MESHD_FIXTURE")]
    fixture: Option<String>,
    /// A webhook already running; without it one is started as a child process.
    #[arg(long, env = "MESHD_ADDR", requires = "ca")]
    addr: Option<SocketAddr>,
    /// PEM CA that signed the running webhook's certificate (with --addr).
    #[arg(long, env = "MESHD_CA")]
    ca: Option<PathBuf>,
    /// Client threads.
    #[arg(long, env = "MESHD_CLIENT_THREADS", default_value_t = 2)]
    client_threads: usize,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Serve the webhook (the child process the load run starts).
    Serve {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    match cli.command {
        Some(Mode::Serve {
            listen,
            cert,
            key,
            threads,
        }) => serve(listen, CertificateFiles { cert, key }, threads),
        None => load(&cli),
    }
}

fn serve(
    listen: SocketAddr,
    tls: CertificateFiles,
    threads: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (_tx, rx) = tokio::sync::watch::channel(Arc::new(InjectionSettings::default()));
        let mut registry = prometheus_client::registry::Registry::default();
        let injector = Injector::new(rx, None, Arc::new(LogEvents), &mut registry);
        meshd_webhook::run(
            WebhookConfig::new(listen, tls),
            injector,
            CancellationToken::new(),
        )
        .await
    })?;
    Ok(())
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn load(cli: &Cli) -> Result<(), Box<dyn std::error::Error>> {
    let mut bodies = Vec::new();
    for entry in std::fs::read_dir(&cli.fixtures)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".json") && cli.fixture.as_ref().is_none_or(|f| *f == name) {
            bodies.push(Bytes::from(std::fs::read(&path)?));
        }
    }
    if bodies.is_empty() {
        return Err(format!("no fixtures in {}", cli.fixtures.display()).into());
    }
    // The webhook: given, or a child process with a fresh certificate.
    let dir = tempfile::tempdir()?;
    let (addr, ca_pem, _child) = match (&cli.addr, &cli.ca) {
        (Some(addr), Some(ca)) => (*addr, std::fs::read_to_string(ca)?, None),
        _ => {
            let ca = DevCa::new()?;
            let leaf = ca.issue(&["localhost", "127.0.0.1"])?;
            let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
            std::fs::write(&cert, &leaf.cert_pem)?;
            std::fs::write(&key, &leaf.key_pem)?;
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let child = Command::new(std::env::current_exe()?)
                .args(["serve", "--listen", &addr.to_string()])
                .arg("--cert")
                .arg(&cert)
                .arg("--key")
                .arg(&key)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()?;
            (addr, ca.ca_pem(), Some(KillOnDrop(child)))
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.client_threads)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Wait for the server.
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if Instant::now() > deadline {
                return Err::<(), Box<dyn std::error::Error>>(
                    format!("no webhook on {addr}").into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let warmup = Duration::from_secs(1);
        let measured = Duration::from_secs(cli.duration);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..cli.connections {
            let (config, bodies) = (config.clone(), bodies.clone());
            tasks.push(tokio::spawn(async move {
                connection(addr, config, bodies, i, start, warmup, measured).await
            }));
        }
        let (mut latencies, mut errors) = (Vec::new(), 0u64);
        for t in tasks {
            let (l, e) = t.await?.map_err(|e| e.to_string())?;
            latencies.extend(l);
            errors += e;
        }
        report(
            &mut latencies,
            errors,
            measured,
            cli.connections,
            bodies.len(),
        );
        Ok(())
    })?;
    Ok(())
}

type Measured = (Vec<u32>, u64);

/// One keep-alive connection sending requests back to back; latencies (µs) within the measured window.
async fn connection(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    bodies: Vec<Bytes>,
    offset: usize,
    start: Instant,
    warmup: Duration,
    measured: Duration,
) -> Result<Measured, Box<dyn std::error::Error + Send + Sync>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let (mut latencies, mut errors) = (Vec::new(), 0u64);
    let mut i = offset;
    loop {
        let sent = Instant::now();
        if sent > start + warmup + measured {
            break;
        }
        let body = bodies[i % bodies.len()].clone();
        i += 1;
        let request = hyper::Request::post("/inject")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        sender.ready().await?;
        let ok = match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status();
                response.into_body().collect().await.is_ok() && status.is_success()
            }
            Err(_) => false,
        };
        if sent >= start + warmup {
            if ok {
                latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
            } else {
                errors += 1;
            }
        }
    }
    Ok((latencies, errors))
}

fn report(
    latencies: &mut [u32],
    errors: u64,
    measured: Duration,
    connections: usize,
    fixtures: usize,
) {
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let idx = ((latencies.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(latencies.len() - 1);
        f64::from(latencies[idx]) / 1000.0
    };
    let rate = latencies.len() as f64 / measured.as_secs_f64();
    println!(
        "connections {connections}, fixtures {fixtures}, measured {} s",
        measured.as_secs()
    );
    println!("reviews {} ok, {errors} failed", latencies.len());
    println!("throughput {rate:.0} reviews/s");
    println!(
        "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        latencies.last().map_or(0.0, |m| f64::from(*m) / 1000.0)
    );
}
