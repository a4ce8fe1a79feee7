//! `meshd proxy-status [POD.NAMESPACE]`: every connected proxy and, per xDS type, whether the last config
//! sent reached it (SPEC §2, §7), like `istioctl proxy-status`. Every control-plane replica is asked for
//! its `/debug/syncz` (`meshd_api::syncz`), and the answers are merged: straight at `--control-plane`
//! URLs, or through the API server's pod proxy to each replica behind Service `meshd`.
//! Exit 1 when a proxy is out of sync, so scripts can wait on it.

mod render;
mod source;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use meshd_api::syncz::{MergedProxy, SyncReport, merge};

use source::{Answer, ControlPlaneUrl};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Sources: --control-plane asks a control plane's metrics port directly (meshd controlplane); without it,\n\
every replica behind Service meshd in meshd-system is asked through the API server's pod proxy\n\
(RBAC: list endpointslices and get pods/proxy in meshd-system; see README).\n\
\n\
Exit status: 0 when every proxy is in sync; 1 when a proxy is NACKED, or STALE for longer than\n\
--stale-after, when a control-plane replica did not answer, or when the named proxy is not\n\
connected; 64 on bad flags.")]
pub struct Args {
    /// One proxy, by node id `POD.NAMESPACE`: its per-type versions, nonces and NACK detail.
    #[arg(value_name = "POD.NAMESPACE")]
    proxy: Option<String>,
    /// Kubeconfig file; the default kubeconfig (or in-cluster config) when unset.
    #[arg(long, env = "MESHD_KUBECONFIG", conflicts_with = "control_plane")]
    kubeconfig: Option<PathBuf>,
    /// A control plane's metrics address, e.g. `http://127.0.0.1:15014`; repeat (or comma-separate) for
    /// several replicas.
    #[arg(
        long = "control-plane",
        value_name = "URL",
        env = "MESHD_CONTROL_PLANE",
        value_delimiter = ',',
        value_parser = ControlPlaneUrl::parse
    )]
    control_plane: Vec<ControlPlaneUrl>,
    /// Output format.
    #[arg(
        short = 'o',
        long,
        value_enum,
        default_value = "table",
        env = "MESHD_OUTPUT"
    )]
    output: Output,
    /// A type sent this long ago without an answer counts as out of sync (exit 1).
    #[arg(long, default_value = "30s", env = "MESHD_STALE_AFTER", value_parser = parse_duration)]
    stale_after: Duration,
    /// How long to wait for each control-plane replica.
    #[arg(long, default_value = "10s", env = "MESHD_TIMEOUT", value_parser = parse_duration)]
    timeout: Duration,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    meshd_api::duration::parse_duration(s).map_err(|e| format!("{s:?} {e}"))
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let answers = runtime.block_on(source::ask_all(
        &args.control_plane,
        args.kubeconfig.as_deref(),
        args.timeout,
    ))?;
    let reports: Vec<SyncReport> = answers
        .iter()
        .filter_map(|a| a.report.as_ref().ok().cloned())
        .collect();
    for a in &answers {
        if let Err(e) = &a.report {
            eprintln!("meshd proxy-status: control plane {}: {e}", a.source);
        }
    }
    let incomplete = answers.iter().any(|a| a.report.is_err());
    if reports.is_empty() && (args.output == Output::Table || args.proxy.is_some()) {
        // Nothing to show: an empty table would read as "no proxies". JSON still lists the errors.
        return Ok(1);
    }
    let proxies = merge(&reports);
    let out_of_sync = |p: &MergedProxy| {
        p.states
            .values()
            .any(|s| s.is_out_of_sync(args.stale_after))
    };
    let several = answers.len() > 1;
    let code = match &args.proxy {
        Some(name) => {
            let Some(proxy) = proxies.iter().find(|p| p.name() == name) else {
                eprintln!(
                    "meshd proxy-status: proxy {name} is not connected to {}",
                    asked(&answers)
                );
                return Ok(1);
            };
            match args.output {
                Output::Table => print!("{}", render::one(proxy)),
                Output::Json => println!("{}", serde_json::to_string_pretty(proxy)?),
            }
            i32::from(out_of_sync(proxy) || incomplete)
        }
        None => {
            match args.output {
                Output::Table => {
                    print!("{}", render::table(&proxies, several));
                    for p in &proxies {
                        for s in &p.superseded {
                            eprintln!(
                                "meshd proxy-status: {} reconnected: shown from {}; an older stream on {} (connected {}) is left out",
                                p.name(),
                                p.control_plane,
                                s.control_plane,
                                s.connected_at
                            );
                        }
                    }
                    if proxies.is_empty() && !incomplete {
                        eprintln!(
                            "meshd proxy-status: no proxy is connected to {}",
                            asked(&answers)
                        );
                    }
                }
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&render::json(&answers, &proxies))?
                ),
            }
            i32::from(proxies.iter().any(out_of_sync) || incomplete)
        }
    };
    Ok(code)
}

/// "control plane meshd-a" or "the 2 control-plane replicas".
fn asked(answers: &[Answer]) -> String {
    match answers {
        [one] => format!("control plane {}", one.name()),
        many => format!("the {} control-plane replicas", many.len()),
    }
}
