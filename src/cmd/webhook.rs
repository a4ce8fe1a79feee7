//! `meshd webhook --mesh FILE --tls-cert C --tls-key K [--listen ADDR]`: the injection webhook alone,
//! mesh settings from a Mesh YAML file. The same server the controller embeds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use meshd_inject::InjectionSettings;
use meshd_webhook::{CertificateFiles, Injector, LogEvents, WebhookConfig};
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Mesh YAML file (a Mesh, or a bare spec) whose settings the sidecars get.
    #[arg(long, env = "MESHD_MESH")]
    mesh: PathBuf,
    /// PEM certificate chain served to the API server; re-read when it changes.
    #[arg(long, env = "MESHD_TLS_CERT")]
    tls_cert: PathBuf,
    /// PEM private key of --tls-cert; re-read when it changes.
    #[arg(long, env = "MESHD_TLS_KEY")]
    tls_key: PathBuf,
    /// Address to serve HTTPS on (path /inject).
    #[arg(long, env = "MESHD_LISTEN", default_value = "0.0.0.0:9443")]
    listen: SocketAddr,
    /// xDS + CA address written into injected sidecars.
    #[arg(long, env = "MESHD_DISCOVERY_ADDRESS", default_value = meshd_api::names::DEFAULT_DISCOVERY_ADDRESS)]
    discovery_address: String,
    /// Largest accepted request body, in bytes (larger: HTTP 413).
    #[arg(long, env = "MESHD_BODY_LIMIT", default_value_t = WebhookConfig::DEFAULT_BODY_LIMIT)]
    body_limit: usize,
    /// Serve Prometheus metrics over plain HTTP on this address (`/metrics`).
    #[arg(long, env = "MESHD_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let mesh = meshd_api::settings::load_mesh_file(&args.mesh)?;
    let settings =
        InjectionSettings::from_mesh(&mesh).with_discovery_address(args.discovery_address.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(serve(args, settings))?;
    Ok(0)
}

async fn serve(args: Args, settings: InjectionSettings) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    // The standalone webhook's settings never change: one value, sender kept alive for the run.
    let (_settings_tx, settings_rx) = tokio::sync::watch::channel(Arc::new(settings));
    let mut registry = prometheus_client::registry::Registry::default();
    // No API client here: the server version is unknown (auto = native) and Events are logged.
    let injector = Injector::new(settings_rx, None, Arc::new(LogEvents), &mut registry);
    if let Some(addr) = args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("metrics listener {addr}"))?;
        tokio::spawn(meshd_webhook::serve_metrics(
            listener,
            Arc::new(registry),
            shutdown.clone(),
        ));
    }
    let config = WebhookConfig {
        body_limit: args.body_limit,
        ..WebhookConfig::new(
            args.listen,
            CertificateFiles {
                cert: args.tls_cert,
                key: args.tls_key,
            },
        )
    };
    let stop = shutdown.clone();
    tokio::spawn(async move {
        super::signals::wait_for_shutdown().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    meshd_webhook::run(config, injector, shutdown).await?;
    Ok(())
}
