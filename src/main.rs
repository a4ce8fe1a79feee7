//! `meshd`: one binary that is the operator, the injection webhook, the xDS control plane and CA, the
//! capture init step and the sidecar agent (SPEC.md §2). Each subcommand's wiring lives in `cmd/`.

#![forbid(unsafe_code)]

mod cmd;
mod logging;

use clap::Parser;

/// mimalloc (why: `meshd_xds::heap`).
#[global_allocator]
static ALLOCATOR: meshd_xds::heap::Allocator = meshd_xds::heap::Allocator;

/// Exit code for bad flags (EX_USAGE).
const EXIT_USAGE: i32 = 64;

fn main() {
    let cli = match cmd::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("meshd: {}", one_line(&e.to_string()));
            std::process::exit(EXIT_USAGE);
        }
    };
    let format = cli.log_format;
    logging::init(format, cli.log_level.as_deref());
    match cmd::run(cli.command) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // Once: a JSON log line for log collectors, a plain line for people.
            match format {
                logging::LogFormat::Json => tracing::error!("{e:#}"),
                logging::LogFormat::Plain => eprintln!("meshd: {e:#}"),
            }
            std::process::exit(1);
        }
    }
}

/// clap's first line, and the next one when the first ends in a colon ("the following required
/// arguments were not provided:" names them below).
fn one_line(reason: &str) -> String {
    let mut lines = reason.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines
        .next()
        .unwrap_or("bad arguments")
        .trim_start_matches("error: ");
    match (first.ends_with(':'), lines.next()) {
        (true, Some(next)) => format!("{first} {next}"),
        _ => first.to_string(),
    }
}
