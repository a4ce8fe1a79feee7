//! `meshd agent`: the sidecar's entrypoint (SPEC §2; the injected pod contract in docs/design.md).
//! Flags are taken as text and validated by `meshd_agent::AgentSettings`, so a bad value exits 64
//! naming the flag. `meshd agent wait` is the classic-mode postStart hold.

use std::path::PathBuf;
use std::time::Duration;

use meshd_agent::{AgentSettings, RawSettings};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    wait: Option<Sub>,
    /// The pod's name (downward API `metadata.name`).
    #[arg(long, env = "MESHD_POD_NAME")]
    pod_name: Option<String>,
    /// The pod's namespace (`metadata.namespace`).
    #[arg(long, env = "MESHD_POD_NAMESPACE")]
    pod_namespace: Option<String>,
    /// The pod's IP (`status.podIP`): node metadata, and where app probes and hooks go.
    #[arg(long, env = "MESHD_POD_IP")]
    pod_ip: Option<String>,
    /// The pod's service account.
    #[arg(long, env = "MESHD_SERVICE_ACCOUNT")]
    service_account: Option<String>,
    /// The node the pod runs on.
    #[arg(long, env = "MESHD_NODE_NAME")]
    node_name: Option<String>,
    /// The Mesh this proxy belongs to.
    #[arg(long, env = "MESHD_MESH", default_value = meshd_api::names::DEFAULT_MESH)]
    mesh: String,
    /// The control plane: `HOST:PORT` or `unix:PATH`.
    #[arg(long, env = "MESHD_DISCOVERY_ADDRESS", default_value = meshd_api::names::DEFAULT_DISCOVERY_ADDRESS)]
    discovery_address: String,
    /// TLS to the control plane (`true`/`false`), verifying the name `meshd.meshd-system.svc` against
    /// --ca-file; for a `HOST:PORT` --discovery-address.
    #[arg(long, env = "MESHD_XDS_TLS", default_value = "false")]
    xds_tls: String,
    /// CA bundle that signed the control plane's certificate.
    #[arg(
        long,
        env = "MESHD_CA_FILE",
        default_value = "/var/run/meshd/ca-root/root-cert.pem"
    )]
    ca_file: PathBuf,
    /// The mesh's trust domain.
    #[arg(long, env = "MESHD_TRUST_DOMAIN", default_value = meshd_api::names::DEFAULT_TRUST_DOMAIN)]
    trust_domain: String,
    /// Envoy's log level: trace, debug, info, warning, error, critical.
    #[arg(long, env = "MESHD_ENVOY_LOG_LEVEL", default_value = "info")]
    envoy_log_level: String,
    /// Envoy worker threads (0 is taken as 1).
    #[arg(long, env = "MESHD_CONCURRENCY", default_value = "2")]
    concurrency: String,
    /// The app's original probes and lifecycle hooks as JSON,
    /// `{"<container>/<livez|readyz|startupz|poststart|prestop>": <handler>}`, run on
    /// `GET /app-health/<container>/<kind>`.
    #[arg(long, env = "MESHD_APP_PROBES")]
    app_probes: Option<String>,
    /// Pod labels for the node metadata, `KEY=VALUE` (repeat, or comma-separated).
    #[arg(long = "label", env = "MESHD_LABELS", value_delimiter = ',')]
    labels: Vec<String>,
    /// The Envoy program.
    #[arg(long, env = "MESHD_ENVOY_PATH", default_value = "envoy")]
    envoy_path: String,
    /// Where the Envoy bootstrap is written.
    #[arg(long, env = "MESHD_CONFIG_DIR", default_value = "/etc/meshd/proxy")]
    config_dir: PathBuf,
    /// The longest Envoy drains on SIGTERM, e.g. `5s`, `500ms`; it is stopped as soon as no TCP
    /// connection or HTTP request is in flight.
    #[arg(long, env = "MESHD_DRAIN_DURATION", default_value = "5s")]
    drain_duration: String,
    /// The gateway this proxy runs for (gateway pods only).
    #[arg(long, env = "MESHD_GATEWAY")]
    gateway: Option<String>,
    /// `/healthz/ready` (the proxy's readiness and startup probe).
    #[arg(long, env = "MESHD_HEALTH_LISTEN", default_value = "0.0.0.0:15021")]
    health_listen: String,
    /// App probes, merged metrics and `/quitquitquit`.
    #[arg(long, env = "MESHD_AGENT_LISTEN", default_value = "0.0.0.0:15020")]
    agent_listen: String,
    /// Envoy's admin port (on 127.0.0.1).
    #[arg(long, env = "MESHD_ADMIN_PORT", default_value = "15000")]
    admin_port: String,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Block until the agent reports Envoy ready (classic-mode postStart); exit 1 on timeout.
    Wait {
        /// The readiness URL.
        #[arg(
            long,
            env = "MESHD_WAIT_URL",
            default_value = "http://127.0.0.1:15021/healthz/ready"
        )]
        url: String,
        /// How long to wait, e.g. `2m`, `30s`.
        #[arg(long, env = "MESHD_WAIT_TIMEOUT", default_value = "2m")]
        timeout: String,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn fail(e: &meshd_agent::AgentError) -> i32 {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    eprintln!("meshd agent: {message}");
    e.exit_code()
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    if let Some(Sub::Wait { url, timeout }) = args.wait {
        let timeout: Duration = match meshd_agent::parse_duration("--timeout", &timeout) {
            Ok(t) => t,
            Err(e) => return Ok(fail(&e)),
        };
        return Ok(
            match runtime()?.block_on(meshd_agent::wait_ready(&url, timeout)) {
                Ok(()) => 0,
                Err(e) => fail(&e),
            },
        );
    }
    let raw = RawSettings {
        pod_name: args.pod_name,
        pod_namespace: args.pod_namespace,
        pod_ip: args.pod_ip,
        service_account: args.service_account,
        node_name: args.node_name,
        mesh: args.mesh,
        discovery_address: args.discovery_address,
        xds_tls: args.xds_tls,
        ca_file: args.ca_file,
        trust_domain: args.trust_domain,
        envoy_log_level: args.envoy_log_level,
        concurrency: args.concurrency,
        app_probes: args.app_probes,
        labels: args.labels,
        envoy_path: args.envoy_path,
        config_dir: args.config_dir,
        drain_duration: args.drain_duration,
        gateway: args.gateway,
        health_listen: args.health_listen,
        agent_listen: args.agent_listen,
        admin_port: args.admin_port,
    };
    let settings = match AgentSettings::validate(raw) {
        Ok(s) => s,
        Err(e) => return Ok(fail(&e)),
    };
    Ok(match runtime()?.block_on(meshd_agent::run(settings)) {
        Ok(_) => 0,
        Err(e) => fail(&e),
    })
}
