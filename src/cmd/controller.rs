//! `meshd controller`: the injection webhook, the xDS control plane fed by Kubernetes watches, and the
//! Mesh operator in one process (SPEC §1, §2, §7). Every replica serves the webhook and xDS; the
//! operator elects a leader through a Lease itself.
//!
//! This file only wires: the watches, the Recorder and the certificate feed live in the crates that use
//! them (`meshd_webhook`: settings, Events, Secret → rustls; `meshd_operator`: everything the leader does).
//!
//! Start order: API client and server version first (a cluster that cannot be reached is a one-line
//! error), then the watches, then xDS once the first complete snapshot arrives (an empty one would
//! empty every Envoy) and the mesh CA is loaded (its TLS certificate comes from it), the webhook once
//! the Secret holds its certificate. `/ready` waits for both.
//! One admin server (`--metrics-listen`: `/metrics`, `/ready`, `/live`) serves the whole process.
//!
//! Identity (SPEC §9): the mesh CA is Secret `meshd-cacerts` (the user's) or `meshd-ca` (created once by
//! the leader); every replica loads it ([`meshd_ca::cluster::follow`]), serves xDS and
//! `CreateCertificate` over TLS with a certificate from it, authenticates both with a TokenReview
//! (audience `meshd`), and the leader writes its root bundle into every namespace's `meshd-ca-root`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use meshd_api::names;
use meshd_ca::{CaMetrics, CertificateService, IssuancePolicy, PolicySource};
use meshd_index::SharedIndex;
use meshd_translate::{TranslateSettings, XdsAddress};
use meshd_xds::{XdsOptions, XdsServer};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use meshd_webhook::SettingsSource;

/// Everything must have stopped this long after SIGTERM.
const DRAIN: Duration = Duration::from_millis(4500);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kubeconfig file; in-cluster config (or the default kubeconfig) when unset.
    #[arg(long, env = "MESHD_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Register the webhook by this URL (`https://HOST:PORT/inject`) instead of the in-cluster Service.
    #[arg(long, env = "MESHD_WEBHOOK_URL", value_parser = parse_webhook_url)]
    webhook_url: Option<String>,
    /// Address the injection webhook serves HTTPS on (path /inject).
    #[arg(long, env = "MESHD_WEBHOOK_LISTEN", default_value = "0.0.0.0:9443")]
    webhook_listen: SocketAddr,
    /// xDS + CA address written into injected sidecars and gateways, and named in the control plane's
    /// TLS certificate (the name agents verify stays `meshd.meshd-system.svc`).
    #[arg(long, env = "MESHD_DISCOVERY_ADDRESS", default_value = names::DEFAULT_DISCOVERY_ADDRESS, value_parser = parse_host_port)]
    discovery_address: String,
    /// Where agents connect (xDS and the CA, TLS only, once the mesh CA is loaded): `HOST:PORT` or
    /// `unix:PATH`.
    #[arg(long, env = "MESHD_XDS_LISTEN", default_value = "0.0.0.0:15012", value_parser = parse_xds_address)]
    xds_listen: XdsAddress,
    /// Prometheus metrics (`/metrics`), health (`/ready`, `/live`) and the proxies' sync state
    /// (`/debug/syncz`, what `meshd proxy-status` reads).
    #[arg(long, env = "MESHD_METRICS_LISTEN", default_value = "0.0.0.0:15014")]
    metrics_listen: SocketAddr,
    /// DNS domain of the cluster's Services.
    #[arg(long, env = "MESHD_CLUSTER_DOMAIN", default_value = names::DEFAULT_CLUSTER_DOMAIN)]
    cluster_domain: String,
    /// This replica's identity for leader election and Events; the hostname when unset.
    #[arg(long, env = "MESHD_POD_NAME")]
    pod_name: Option<String>,
    /// The Mesh whose settings the webhook injects.
    #[arg(long, env = "MESHD_MESH", default_value = names::DEFAULT_MESH)]
    mesh: String,
}

fn parse_xds_address(s: &str) -> Result<XdsAddress, String> {
    s.parse()
        .map_err(|e: meshd_translate::TranslateError| e.to_string())
}

fn parse_host_port(s: &str) -> Result<String, String> {
    match s.parse::<XdsAddress>() {
        Ok(XdsAddress::Tcp { .. }) => Ok(s.to_string()),
        _ => Err(format!("{s:?} is not HOST:PORT")),
    }
}

fn parse_webhook_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .ok_or_else(|| format!("{s:?} must start with https://"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    Ok(s.to_string())
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(serve(args))?;
    Ok(0)
}

pub(super) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "meshd".into())
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let (client, server) =
        super::kube_client::client_and_server(args.kubeconfig.as_deref()).await?;
    let info = client
        .apiserver_version()
        .await
        .with_context(|| format!("cannot reach the API server {server}"))?;
    let server_version = meshd_inject::ApiServerVersion::from_parts(&info.major, &info.minor)
        .or_else(|| meshd_inject::ApiServerVersion::parse(&info.git_version));
    tracing::info!(server = %server, version = %info.git_version, "API server reached");
    warn_unreachable_discovery_address(&args);
    let identity = args.pod_name.clone().unwrap_or_else(hostname);
    let cancel = CancellationToken::new();
    let mut registry = prometheus_client::registry::Registry::default();
    let mut tasks: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();

    // Injection settings: defaults until ConfigMap meshd-mesh-<mesh> is read.
    let source = SettingsSource {
        mesh: args.mesh.clone(),
        discovery_address: args.discovery_address.clone(),
    };
    let (settings_tx, settings_rx) = watch::channel(Arc::new(source.defaults()));
    tasks.spawn(named("mesh settings", {
        let (client, cancel) = (client.clone(), cancel.clone());
        async move {
            source.run(client, settings_tx, cancel).await;
            Ok(())
        }
    }));
    let recorder =
        meshd_webhook::RecorderEvents::start(client.clone(), identity.clone(), cancel.clone());
    let injector_settings = settings_rx.clone();
    let injector = meshd_webhook::Injector::new(
        settings_rx,
        server_version,
        Arc::new(recorder),
        &mut registry,
    );

    // xDS: the watches fill the index; xDS is served once every kind has been listed once.
    let index = SharedIndex::default();
    let settings = TranslateSettings {
        mesh_name: args.mesh.clone(),
        cluster_domain: args.cluster_domain.clone(),
    };
    let xds = XdsServer::start(
        index.clone(),
        settings,
        XdsOptions::default(),
        &mut registry,
        cancel.clone(),
    );
    tasks.spawn(named(
        "kubernetes source",
        kube_source_task(client.clone(), index, cancel.clone()),
    ));
    // SPEC §8: each traffic and security resource's verdict into its status, once the verdicts are
    // made from a complete list (before that a reference could look dangling).
    tasks.spawn(named("verdict status", {
        let (xds, client, cancel) = (xds.clone(), client.clone(), cancel.clone());
        async move {
            if xds.complete().await {
                meshd_operator::verdicts::write_verdicts(client, xds.verdicts(), cancel).await;
            }
            Ok(())
        }
    }));

    // Health: ready once both servers serve.
    let (webhook_ready_tx, webhook_ready) = watch::channel(false);
    let (xds_ready_tx, xds_ready) = watch::channel(false);
    let (ready_tx, ready_rx) = watch::channel(false);
    tasks.spawn(named(
        "readiness",
        combine_ready(webhook_ready, xds_ready.clone(), ready_tx, cancel.clone()),
    ));
    // The mesh root CA bundle for every namespace's meshd-ca-root: empty until the CA is loaded (an
    // empty root-cert.pem mounts and blocks no pod; agents wait for the real one).
    let (ca_root_tx, ca_root_rx) = watch::channel(String::new());
    // The operator: competes for the Lease itself; reconciles Meshes only while holding it.
    let operator = {
        let ready = xds_ready;
        let proxies = xds.proxies();
        let mut config = meshd_operator::OperatorConfig::new(identity.clone());
        config.webhook_url = args.webhook_url.clone();
        config.discovery_address = args.discovery_address.clone();
        config.mesh = args.mesh.clone();
        config.ca_root = ca_root_rx;
        config.mesh_mtls = xds.mesh_mtls();
        // The leader makes or reads the CA within a second or two of winning the Lease.
        config.ca_root_grace = Duration::from_secs(10);
        config.control_plane_ready = Arc::new(move || *ready.borrow());
        config.connected_proxies =
            Arc::new(move || i64::try_from(proxies.connected()).unwrap_or(i64::MAX));
        meshd_operator::Operator::new(client.clone(), config, &mut registry)
    };
    // A NACK becomes a Warning Event on the proxy's Pod (rate-limited), from every replica.
    tasks.spawn(named("NACK events", {
        let nacks = xds.proxies().subscribe_nacks();
        let (client, instance, cancel) = (client.clone(), identity.clone(), cancel.clone());
        async move {
            let interval = meshd_operator::proxy_events::EVENT_INTERVAL;
            meshd_operator::proxy_events::run(client, instance, nacks, interval, cancel).await;
            Ok(())
        }
    }));
    // The mesh CA: created by the leader only, loaded by every replica; its roots go to meshd-ca-root.
    let policy: Arc<dyn PolicySource> = Arc::new(MeshPolicy(injector_settings.clone()));
    let (ca_tx, ca_rx) = watch::channel(None);
    tasks.spawn(named("mesh CA", {
        let follow = meshd_ca::cluster::follow(
            client.clone(),
            names::SYSTEM_NAMESPACE.to_string(),
            Arc::clone(&policy),
            operator.leading(),
            ca_tx,
            cancel.clone(),
        );
        async move {
            follow.await;
            Ok(())
        }
    }));
    tasks.spawn(named(
        "mesh CA root",
        publish_roots(ca_rx.clone(), ca_root_tx, cancel.clone()),
    ));
    let reviewer: Arc<dyn meshd_ca::Authenticator> = Arc::new(meshd_ca::auth::TokenReviewer::new(
        client.clone(),
        names::TOKEN_AUDIENCE,
    ));
    let certificates = CertificateService::new(
        Arc::new(ca_rx.clone()),
        Arc::clone(&reviewer),
        policy,
        CaMetrics::new(&mut registry),
    );
    tasks.spawn(named("operator", {
        let cancel = cancel.clone();
        async move { operator.run(cancel).await.context("operator") }
    }));
    let registry = Arc::new(registry);
    let syncz = meshd_xds::Syncz {
        proxies: xds.proxies(),
        control_plane: meshd_api::syncz::ControlPlane {
            name: identity.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
    };
    tasks.spawn(named("metrics", {
        let (addr, cancel) = (args.metrics_listen, cancel.clone());
        async move {
            meshd_xds::serve_health(addr, registry, ready_rx, syncz, cancel)
                .await
                .context("metrics and health server")
        }
    }));

    // xDS + CA serve over TLS after the first complete list of every kind and once the CA is loaded.
    tasks.spawn(named("xDS", {
        let (xds, listen, cancel) = (xds.clone(), args.xds_listen.clone(), cancel.clone());
        let serving_names =
            super::serving::names(discovery_host(&args.discovery_address).as_deref());
        async move {
            tracing::info!("xDS waits for the first complete list of every kind from the cluster");
            if !xds.complete().await {
                return Ok(());
            }
            let Some(certificate) = super::serving::follow(ca_rx, serving_names, cancel).await?
            else {
                return Ok(());
            };
            let _ = xds_ready_tx.send(true);
            let routes = tonic::service::Routes::new(certificates);
            xds.serve_with(&listen, Some(certificate), routes, Some(reviewer))
                .await
                .context("xDS server")
        }
    }));

    // Webhook certificate: from the Secret straight to rustls; the webhook starts once a pair is there.
    let certs = meshd_webhook::watch_secret(
        client.clone(),
        names::SYSTEM_NAMESPACE,
        names::WEBHOOK_TLS_SECRET,
        cancel.clone(),
    );
    tasks.spawn(named(
        "webhook",
        serve_webhook(
            args.webhook_listen,
            certs,
            injector,
            webhook_ready_tx,
            cancel.clone(),
        ),
    ));

    wait_and_drain(tasks, cancel).await
}

/// The issuance policy of the Mesh the webhook injects (trust domain, `certificateTTL`), as it changes.
struct MeshPolicy(watch::Receiver<Arc<meshd_inject::InjectionSettings>>);

impl PolicySource for MeshPolicy {
    fn policy(&self) -> IssuancePolicy {
        IssuancePolicy::from_mesh(&self.0.borrow().spec)
    }
}

/// The host of `--discovery-address` (validated as HOST:PORT), for the serving certificate.
fn discovery_host(address: &str) -> Option<String> {
    match address.parse::<XdsAddress>() {
        Ok(XdsAddress::Tcp { host, .. }) => Some(host),
        _ => None,
    }
}

/// Sends the loaded CA's root bundle (old and new roots during a rotation) to the operator's
/// `meshd-ca-root` controller.
async fn publish_roots(
    mut ca: meshd_ca::cluster::CaWatch,
    roots: watch::Sender<String>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        if let Some(authority) = ca.borrow_and_update().as_ref() {
            let bundle = authority.roots_pem().to_string();
            roots.send_if_modified(|r| std::mem::replace(r, bundle.clone()) != bundle);
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            changed = ca.changed() => if changed.is_err() { return Ok(()) },
        }
    }
}

/// Out of the cluster, the in-cluster default discovery address reaches nothing: injected sidecars and
/// gateways would never get their configuration.
fn warn_unreachable_discovery_address(args: &Args) {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    if !in_cluster && args.discovery_address == names::DEFAULT_DISCOVERY_ADDRESS {
        tracing::warn!(
            discovery_address = %args.discovery_address,
            "this controller runs outside the cluster, but sidecars and gateways are told to reach xDS at the \
             in-cluster Service {}: pass --discovery-address HOST:PORT, an address of this machine that pods \
             reach (and --xds-listen 0.0.0.0:PORT)",
            args.discovery_address
        );
    }
}

async fn kube_source_task(
    client: kube::Client,
    index: SharedIndex,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    meshd_sources::run_kube_source(client, index, cancel).await;
    Ok(())
}

async fn named(
    name: &'static str,
    task: impl Future<Output = anyhow::Result<()>>,
) -> (&'static str, anyhow::Result<()>) {
    (name, task.await)
}

async fn combine_ready(
    mut webhook: watch::Receiver<bool>,
    mut xds: watch::Receiver<bool>,
    ready: watch::Sender<bool>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let both = *webhook.borrow_and_update() && *xds.borrow_and_update();
        ready.send_if_modified(|r| std::mem::replace(r, both) != both);
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            r = webhook.changed() => if r.is_err() { return Ok(()) },
            r = xds.changed() => if r.is_err() { return Ok(()) },
        }
    }
}

async fn serve_webhook(
    listen: SocketAddr,
    mut certs: meshd_webhook::CertificateWatch,
    injector: meshd_webhook::Injector,
    ready: watch::Sender<bool>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    if certs.borrow().is_none() {
        tracing::info!(
            secret = names::WEBHOOK_TLS_SECRET,
            "webhook waits for its certificate from the Secret"
        );
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            first = meshd_webhook::first_certificate(&mut certs) => if first.is_none() { return Ok(()) },
        }
    }
    let tls = meshd_webhook::server_config(certs).context("webhook TLS")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("--webhook-listen {listen}"))?;
    tracing::info!(listen = %listen, path = names::WEBHOOK_PATH, "injection webhook serving");
    let _ = ready.send(true);
    let router = Arc::new(injector).router(meshd_webhook::WebhookConfig::DEFAULT_BODY_LIMIT);
    meshd_webhook::serve(
        listener,
        tls,
        router,
        cancel,
        DRAIN - Duration::from_millis(500),
    )
    .await;
    Ok(())
}

/// Runs until SIGTERM/SIGINT or a task fails; then cancels everything and waits at most [`DRAIN`].
async fn wait_and_drain(
    mut tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut failure = None;
    tokio::select! {
        () = super::signals::wait_for_shutdown() => tracing::info!("shutting down"),
        done = tasks.join_next() => {
            failure = Some(match done {
                Some(Ok((name, Ok(())))) => anyhow::anyhow!("{name} stopped unexpectedly"),
                Some(Ok((_, Err(e)))) => e,
                Some(Err(e)) => anyhow::anyhow!("a task panicked: {e}"),
                None => anyhow::anyhow!("nothing to run"),
            });
        }
    }
    cancel.cancel();
    let drained = tokio::time::timeout(DRAIN, async {
        while let Some(done) = tasks.join_next().await {
            if let Ok((name, Err(e))) = done {
                tracing::warn!(task = name, error = %format!("{e:#}"), "failed while shutting down");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("not drained within {DRAIN:?}; exiting");
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values() {
        assert!(parse_webhook_url("https://10.0.0.5:9443/inject").is_ok());
        assert!(parse_webhook_url("http://10.0.0.5:9443/inject").is_err());
        assert!(parse_webhook_url("https:///inject").is_err());
        assert!(parse_host_port("meshd.meshd-system.svc:15012").is_ok());
        assert!(parse_host_port("unix:/tmp/x").is_err());
        assert!(parse_host_port("meshd").is_err());
    }
}
