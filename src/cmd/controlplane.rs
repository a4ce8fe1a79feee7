//! `meshd controlplane --config-dir DIR --xds-listen ADDR`: the xDS control plane fed from
//! Kubernetes-style YAML files (SPEC §2, §6): the mesh without a cluster. With `--ca-dir` it is also the
//! mesh CA (SPEC §9), serving `IstioCertificateService` on the xDS listener.
//!
//! Who may connect: on `HOST:PORT` xDS is always TLS (`--tls-cert`/`--tls-key`, or a certificate from
//! the `--ca-dir` CA) and every ADS stream is authenticated by the service-account-token Secrets of the
//! config directory, as the CA's requests are; with `--ca-dir` that holds on a Unix socket too. Only a
//! Unix socket without a CA serves anyone who can open it (no identities exist in such a mesh; the
//! socket file is the boundary), which is what `meshd bootstrap` + Envoy by hand uses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use meshd_ca::ca_dir::{CaDir, Origin};
use meshd_ca::{Authenticator, CaMetrics, CertificateService, ConfigDir, PolicySource};
use meshd_index::SharedIndex;
use meshd_sources::FileSource;
use meshd_translate::{TranslateSettings, XdsAddress};
use meshd_xds::{ServingCertificate, TlsFiles, XdsOptions, XdsServer};
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory of YAML files (Service, EndpointSlice, Pod with status.podIP, Mesh, VirtualService,
    /// DestinationRule, ServiceEntry, Gateway, PeerAuthentication, AuthorizationPolicy), re-read on change.
    #[arg(long, env = "MESHD_CONFIG_DIR")]
    config_dir: PathBuf,
    /// Where Envoys connect: `HOST:PORT` (TLS: --tls-cert/--tls-key or --ca-dir) or `unix:PATH`.
    #[arg(long, env = "MESHD_XDS_LISTEN", default_value = "0.0.0.0:15012", value_parser = parse_address)]
    xds_listen: XdsAddress,
    /// PEM certificate for xDS over TLS (with --tls-key).
    #[arg(long, env = "MESHD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "MESHD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The mesh CA: `ca-cert.pem`, `ca-key.pem`, `cert-chain.pem`, `root-cert.pem`, made (with a new
    /// self-signed root) when DIR is absent or empty. Workloads authenticate (certificates and xDS
    /// streams) with the service-account-token Secrets of --config-dir. On a HOST:PORT --xds-listen
    /// without --tls-cert, xDS and the CA are served over TLS with a certificate from this CA for
    /// `meshd.meshd-system.svc`.
    #[arg(long, env = "MESHD_CA_DIR")]
    ca_dir: Option<PathBuf>,
    /// DNS domain of the cluster's Services, as in `outbound|80||web.shop.svc.<domain>`.
    #[arg(long, env = "MESHD_CLUSTER_DOMAIN", default_value = meshd_api::names::DEFAULT_CLUSTER_DOMAIN)]
    cluster_domain: String,
    /// Which Mesh in the config directory applies (defaults when there is none).
    #[arg(long, env = "MESHD_MESH", default_value = meshd_api::names::DEFAULT_MESH)]
    mesh: String,
    /// Quiet time before a change is pushed, e.g. `100ms`, `1s`.
    #[arg(long, env = "MESHD_DEBOUNCE", default_value = "100ms", value_parser = parse_duration)]
    debounce: Duration,
    /// Rescan of the config directory in case a file event was missed.
    #[arg(long, env = "MESHD_RESCAN_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    rescan_interval: Duration,
    /// Prometheus metrics (`/metrics`), health (`/ready`, `/live`) and the proxies' sync state
    /// (`/debug/syncz`, what `meshd proxy-status --control-plane` reads).
    #[arg(long, env = "MESHD_METRICS_LISTEN", default_value = "0.0.0.0:15014")]
    metrics_listen: SocketAddr,
}

fn parse_address(s: &str) -> Result<XdsAddress, String> {
    s.parse()
        .map_err(|e: meshd_translate::TranslateError| e.to_string())
}

/// `250ms`, `2s`, `1m`, or a bare number of milliseconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 100ms, 2s or 1m");
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "ms"),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(bad()),
    }
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let tls = args.tls_cert.is_some() || args.ca_dir.is_some();
    if matches!(args.xds_listen, XdsAddress::Tcp { .. }) && !tls {
        eprintln!(
            "meshd: --xds-listen {}: xDS on HOST:PORT is served over TLS only: give --ca-dir (or              --tls-cert and --tls-key), or listen on unix:PATH",
            args.xds_listen
        );
        return Ok(64);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(serve(args))?;
    Ok(0)
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let index = SharedIndex::default();
    let mut source =
        FileSource::new(&args.config_dir, index.clone()).with_rescan(args.rescan_interval);
    source
        .scan()
        .with_context(|| format!("--config-dir {}", args.config_dir.display()))?;
    let mut registry = prometheus_client::registry::Registry::default();
    // The CA is ready (its files written) before anything listens.
    let config = Arc::new(ConfigDir::new(&args.config_dir, &args.mesh));
    let ca_metrics = CaMetrics::new(&mut registry);
    let ca = match &args.ca_dir {
        Some(dir) => Some(Arc::new(open_ca(dir, &config.policy().trust_domain)?)),
        None => None,
    };
    let options = XdsOptions {
        debounce: args.debounce,
        ..XdsOptions::default()
    };
    let settings = TranslateSettings {
        mesh_name: args.mesh.clone(),
        cluster_domain: args.cluster_domain.clone(),
    };
    let server = XdsServer::start(index, settings, options, &mut registry, cancel.clone());
    // SPEC §8: a verdict change is one log line naming the resource's file.
    tokio::spawn(meshd_sources::log_verdicts(
        server.verdicts(),
        source.origins(),
        cancel.clone(),
    ));
    // SPEC §9: the mTLS mode in force mesh-wide and its overrides, one line per change (in-cluster
    // they are the Mesh's status.mtls).
    tokio::spawn(meshd_sources::log_mesh_mtls(
        server.mesh_mtls(),
        cancel.clone(),
    ));
    tokio::spawn(source.run(cancel.clone()));

    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let syncz = meshd_xds::Syncz {
        proxies: server.proxies(),
        control_plane: meshd_api::syncz::ControlPlane {
            name: super::controller::hostname(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
    };
    let health = tokio::spawn(meshd_xds::serve_health(
        args.metrics_listen,
        Arc::new(registry),
        ready_rx,
        syncz,
        cancel.clone(),
    ));
    let stop = cancel.clone();
    tokio::spawn(async move {
        super::signals::wait_for_shutdown().await;
        tracing::info!("shutting down: closing xDS streams");
        stop.cancel();
    });
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    if tls.is_some() && matches!(args.xds_listen, XdsAddress::Unix(_)) {
        tracing::info!("TLS over a Unix socket: clients must use TLS too");
    }
    let certificate = match (&tls, &ca) {
        (Some(files), _) => Some(read_certificate(files)?),
        (None, Some(ca)) if matches!(args.xds_listen, XdsAddress::Tcp { .. }) => {
            Some(serving_certificate(&ca.current(), &args.xds_listen)?)
        }
        _ => None,
    };
    let authenticated = ca.is_some() || matches!(args.xds_listen, XdsAddress::Tcp { .. });
    let stream_auth: Option<Arc<dyn Authenticator>> = authenticated.then(|| {
        let tokens: Arc<dyn Authenticator> = config.clone();
        tokens
    });
    if !authenticated {
        tracing::info!(listen = %args.xds_listen, "xDS streams are not authenticated: a Unix socket without --ca-dir");
    }
    let routes = match ca {
        Some(ca) => tonic::service::Routes::new(CertificateService::new(
            ca,
            config.clone(),
            config,
            ca_metrics,
        )),
        None => tonic::service::Routes::default(),
    };
    let _ = ready_tx.send(true);
    let served = server
        .serve_with(&args.xds_listen, certificate, routes, stream_auth)
        .await;
    cancel.cancel();
    served?;
    if let Ok(Err(e)) = health.await {
        return Err(e.into());
    }
    Ok(())
}

fn open_ca(dir: &std::path::Path, trust_domain: &str) -> anyhow::Result<CaDir> {
    let (ca, origin) =
        CaDir::open(dir, trust_domain).with_context(|| format!("--ca-dir {}", dir.display()))?;
    let current = ca.current();
    match origin {
        Origin::Created => {
            tracing::info!(dir = %dir.display(), subject = current.subject(), "made a new mesh CA (self-signed root); agents trust its root-cert.pem")
        }
        Origin::Loaded => {
            tracing::info!(dir = %dir.display(), subject = current.subject(), roots = current.root_count(), "mesh CA loaded")
        }
    }
    Ok(ca)
}

fn read_certificate(files: &TlsFiles) -> anyhow::Result<ServingCertificate> {
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let key = meshd_xds::certified_key(&read(&files.cert)?, &read(&files.key)?)
        .context("--tls-cert and --tls-key")?;
    Ok(meshd_xds::fixed_certificate(key))
}

/// A certificate from the mesh CA for `meshd.meshd-system.svc` (the name agents verify whatever the
/// address) and the listen host when it is a specific one.
fn serving_certificate(
    ca: &meshd_ca::CertificateAuthority,
    listen: &XdsAddress,
) -> anyhow::Result<ServingCertificate> {
    let host = match listen {
        XdsAddress::Tcp { host, .. } => Some(host.as_str()),
        XdsAddress::Unix(_) => None,
    };
    let key = super::serving::issue(ca, &super::serving::names(host))?;
    Ok(meshd_xds::fixed_certificate(key))
}
