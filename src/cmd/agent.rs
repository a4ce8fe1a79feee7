//! `meshd agent`: the sidecar's entrypoint (SPEC §2; the injected pod contract in docs/design.md), and
//! the same command joins a VM to a file-fed mesh. The flags are `meshd_agent::AgentFlags`, typed by
//! clap's value parsers (a bad value exits 64 naming the flag). `meshd agent wait` is the classic-mode
//! postStart hold.

use std::time::Duration;

use meshd_agent::{AgentFlags, AgentSettings};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    wait: Option<Sub>,
    #[command(flatten)]
    flags: AgentFlags,
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
    let settings = match AgentSettings::from_flags(args.flags) {
        Ok(s) => s,
        Err(e) => return Ok(fail(&e)),
    };
    Ok(match runtime()?.block_on(meshd_agent::run(settings)) {
        Ok(_) => 0,
        Err(e) => fail(&e),
    })
}
