//! `meshd inject -f FILE [--mesh FILE]`: offline injection of workload manifests, like
//! `istioctl kube-inject`. The same decision and patch as the webhook (`meshd_inject::workload`).
//! The manifests go to stdout; what was left alone, and why, to stderr.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use meshd_inject::workload::{ManifestOutcome, inject_manifests};
use meshd_inject::{ApiServerVersion, InjectionSettings};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Manifest file (multi-document YAML); `-` reads stdin.
    #[arg(short = 'f', long = "filename", env = "MESHD_FILENAME")]
    filename: PathBuf,
    /// Mesh YAML file whose settings the sidecars get; the defaults when unset.
    #[arg(long, env = "MESHD_MESH")]
    mesh: Option<PathBuf>,
    /// xDS + CA address written into the sidecars.
    #[arg(long, env = "MESHD_DISCOVERY_ADDRESS", default_value = meshd_api::names::DEFAULT_DISCOVERY_ADDRESS)]
    discovery_address: String,
    /// The target cluster's Kubernetes version (e.g. 1.28), for `nativeSidecar: auto`; unknown means native.
    #[arg(long, env = "MESHD_KUBERNETES_VERSION", value_parser = parse_version)]
    kubernetes_version: Option<ApiServerVersion>,
}

fn parse_version(s: &str) -> Result<ApiServerVersion, String> {
    ApiServerVersion::parse(s)
        .ok_or_else(|| format!("{s:?} is not a Kubernetes version such as 1.28 or v1.30.2"))
}

/// A failure is printed here, once, and exits 1: nothing half-injected reaches stdout.
pub fn run(args: Args) -> anyhow::Result<i32> {
    match inject(&args) {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("meshd inject: {e:#}");
            Ok(1)
        }
    }
}

fn inject(args: &Args) -> anyhow::Result<()> {
    let settings = match &args.mesh {
        Some(path) => InjectionSettings::from_mesh(&meshd_api::settings::load_mesh_file(path)?),
        None => InjectionSettings::default(),
    }
    .with_discovery_address(args.discovery_address.clone());
    let text = if args.filename.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?;
        s
    } else {
        std::fs::read_to_string(&args.filename)
            .with_context(|| format!("reading {}", args.filename.display()))?
    };
    let shown = args.filename.display().to_string();
    let injected = inject_manifests(&text, &settings, args.kubernetes_version)
        .with_context(|| shown.clone())?;
    print!("{}", injected.to_yaml()?);
    for outcome in &injected.outcomes {
        match outcome {
            ManifestOutcome::Injected { kind, name } => tracing::debug!(kind, name, "injected"),
            ManifestOutcome::Skipped {
                kind,
                name,
                message,
                ..
            } => eprintln!("meshd inject: {kind} {name} left as it is: {message}"),
            ManifestOutcome::PassedThrough { kind, name } => {
                tracing::debug!(kind, name, "not a workload, unchanged")
            }
            ManifestOutcome::UnknownTemplate { kind, name, path } => eprintln!(
                "meshd inject: {kind} {name} left as it is: meshd does not know where kind {kind} keeps its pods; \
                 the pod template at {path} was not injected (in a namespace enabled for injection, the webhook \
                 injects its pods when they are created)"
            ),
        }
    }
    Ok(())
}
