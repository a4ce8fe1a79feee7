//! The subcommands of SPEC.md §2. Every flag also reads `MESHD_<FLAG>` from the environment.

use clap::{Parser, Subcommand};

use crate::logging::LogFormat;

mod agent;
mod bootstrap;
mod check_inject;
mod controller;
mod controlplane;
mod crd;
mod init;
mod inject;
mod kube_client;
mod proxy_status;
mod serving;
mod signals;
mod table;
mod validate;
mod validate_refs;
mod version;
mod webhook;

#[derive(Parser, Debug)]
#[command(
    name = "meshd",
    version,
    about = "A service mesh for Kubernetes, with Envoy as the data plane"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "plain",
        env = "MESHD_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Log filter (e.g. `info`, `meshd_xds=debug`); RUST_LOG when unset.
    #[arg(long, global = true, env = "MESHD_LOG_LEVEL")]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Operator + webhook + xDS + CA, in-cluster (or with --kubeconfig).
    Controller(controller::Args),
    /// xDS + CA fed from a directory of Kubernetes-style YAML files: the mesh without a cluster.
    Controlplane(controlplane::Args),
    /// The injection webhook alone, mesh settings from a Mesh YAML file.
    Webhook(webhook::Args),
    /// Offline injection of workload manifests, like `istioctl kube-inject`.
    Inject(inject::Args),
    /// Program traffic capture in the current network namespace (the init container).
    Init(init::Args),
    /// The sidecar's entrypoint: bootstrap, SDS, health, probes; runs and supervises Envoy.
    Agent(Box<agent::Args>),
    /// Print the Envoy bootstrap the agent would use.
    Bootstrap(bootstrap::Args),
    /// Every connected proxy, its mesh, and whether its config is in sync; exit 1 when one is not.
    ProxyStatus(proxy_status::Args),
    /// Whether a pod (or a new pod in a namespace) would be injected, by which webhook and Mesh, and why
    /// not; exit 0 when it would, 1 when not.
    CheckInject(check_inject::Args),
    /// Print all CRDs as YAML (`crds/` is this output).
    Crd(crd::Args),
    /// Check Mesh, traffic and security resources offline (like `istioctl analyze`); exit 1 on any problem.
    Validate(validate::Args),
    /// Print version, git commit and Envoy API version.
    Version(version::Args),
}

/// Runs a subcommand; the returned code is the process's exit code.
pub fn run(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Controller(args) => controller::run(args),
        Command::Controlplane(args) => controlplane::run(args),
        Command::Webhook(args) => webhook::run(args),
        Command::Inject(args) => inject::run(args),
        Command::Init(args) => init::run(args),
        Command::Agent(args) => agent::run(*args),
        Command::Bootstrap(args) => bootstrap::run(args),
        Command::ProxyStatus(args) => proxy_status::run(args),
        Command::CheckInject(args) => check_inject::run(args),
        Command::Crd(args) => crd::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Version(args) => version::run(args),
    }
}
