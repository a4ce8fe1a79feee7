//! `meshd init`: programs traffic capture in the current network namespace (the `meshd-init` init
//! container; SPEC.md §5). Flags mirror `Mesh.spec.trafficCapture` and the `traffic.meshd.io/…`
//! annotations; the webhook passes them as in docs/design.md.

use std::time::Duration;

use anyhow::Context;
use meshd_api::names;
use meshd_api::values::{self, ValueError};
use meshd_capture::{Backend, CaptureRules, CaptureSettings, InboundPorts, Plan};

/// Exit code for bad flag values (EX_USAGE), as clap's own errors.
const EXIT_USAGE: i32 = 64;

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// iptables-restore; the legacy or nft backend is detected (or set with --iptables-backend).
    #[default]
    Iptables,
    /// Native nftables: one `table inet meshd`.
    Nftables,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IptablesBackend {
    /// iptables-legacy when legacy rules already exist in the namespace, iptables-nft otherwise.
    #[default]
    Auto,
    /// iptables-legacy-restore (x_tables).
    Legacy,
    /// iptables-nft-restore (iptables syntax on nf_tables).
    Nft,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// How rules are programmed.
    #[arg(long, value_enum, default_value = "iptables", env = "MESHD_MODE")]
    pub mode: Mode,
    /// Which iptables backend `--mode iptables` uses.
    #[arg(
        long,
        value_enum,
        default_value = "auto",
        env = "MESHD_IPTABLES_BACKEND"
    )]
    pub iptables_backend: IptablesBackend,
    /// Print the exact commands and documents, change nothing.
    #[arg(long, env = "MESHD_DRY_RUN")]
    pub dry_run: bool,
    /// Remove meshd's rules and chains (every backend), and nothing else.
    #[arg(long, env = "MESHD_CLEANUP")]
    pub cleanup: bool,
    /// After applying, prove capture with a real connection to a TEST-NET address.
    #[arg(long, env = "MESHD_VALIDATE")]
    pub validate: bool,
    /// How long --validate waits for the redirected connection, in milliseconds.
    #[arg(long, default_value_t = 5000, env = "MESHD_VALIDATE_TIMEOUT_MS")]
    pub validate_timeout_ms: u64,
    /// uid of the proxy; its traffic is never captured.
    #[arg(long, default_value_t = names::PROXY_UID, env = "MESHD_PROXY_UID")]
    pub proxy_uid: u32,
    /// gid of the proxy; its traffic is never captured.
    #[arg(long, default_value_t = names::PROXY_GID, env = "MESHD_PROXY_GID")]
    pub proxy_gid: u32,
    /// Where outbound TCP is redirected.
    #[arg(long, default_value_t = names::PORT_OUTBOUND_CAPTURE, value_parser = clap::value_parser!(u16).range(1..), env = "MESHD_OUTBOUND_PORT")]
    pub outbound_port: u16,
    /// Where inbound TCP is redirected.
    #[arg(long, default_value_t = names::PORT_INBOUND_CAPTURE, value_parser = clap::value_parser!(u16).range(1..), env = "MESHD_INBOUND_PORT")]
    pub inbound_port: u16,
    /// Inbound ports to capture: `*` (all but the proxy's own and the excluded) or a comma list.
    #[arg(long, default_value = "*", env = "MESHD_INCLUDE_INBOUND_PORTS")]
    pub include_inbound_ports: String,
    /// Inbound ports never captured (comma list).
    #[arg(long, default_value = "", env = "MESHD_EXCLUDE_INBOUND_PORTS")]
    pub exclude_inbound_ports: String,
    /// Outbound ports never captured (comma list).
    #[arg(long, default_value = "", env = "MESHD_EXCLUDE_OUTBOUND_PORTS")]
    pub exclude_outbound_ports: String,
    /// Outbound destinations never captured (comma list of IPv4/IPv6 CIDRs).
    #[arg(
        long = "exclude-outbound-cidrs",
        default_value = "",
        env = "MESHD_EXCLUDE_OUTBOUND_CIDRS"
    )]
    pub exclude_outbound_cidrs: String,
    /// Only these outbound destinations are captured: `*` (all) or a comma list of CIDRs. A loopback
    /// CIDR here captures the app's loopback traffic to it (127.0.0.1 itself never).
    #[arg(
        long = "include-outbound-cidrs",
        default_value = "*",
        env = "MESHD_INCLUDE_OUTBOUND_CIDRS"
    )]
    pub include_outbound_cidrs: String,
    /// Outbound TCP to these ports is captured whatever its destination (comma list), unless an
    /// excluded port or CIDR says otherwise (istio-iptables `-q`).
    #[arg(long, default_value = "", env = "MESHD_INCLUDE_OUTBOUND_PORTS")]
    pub include_outbound_ports: String,
    /// Also capture IPv6.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "MESHD_IPV6")]
    pub ipv6: bool,
}

/// A flag value that did not parse: printed as `meshd: --flag: why (got "value")`.
struct BadFlag {
    flag: &'static str,
    value: String,
    why: ValueError,
}

fn flag<T>(
    flag: &'static str,
    value: &str,
    parse: impl Fn(&str) -> Result<T, ValueError>,
) -> Result<T, BadFlag> {
    parse(value).map_err(|why| BadFlag {
        flag,
        value: value.to_string(),
        why,
    })
}

fn settings(args: &Args) -> Result<CaptureSettings, BadFlag> {
    let include_inbound_ports = match args.include_inbound_ports.trim() {
        "*" => InboundPorts::All,
        list => InboundPorts::Only(flag(
            "--include-inbound-ports",
            list,
            values::parse_port_list,
        )?),
    };
    Ok(CaptureSettings {
        proxy_uid: args.proxy_uid,
        proxy_gid: args.proxy_gid,
        outbound_port: args.outbound_port,
        inbound_port: args.inbound_port,
        proxy_ports: names::PROXY_OWN_PORTS.to_vec(),
        include_inbound_ports,
        exclude_inbound_ports: flag(
            "--exclude-inbound-ports",
            &args.exclude_inbound_ports,
            values::parse_port_list,
        )?,
        exclude_outbound_ports: flag(
            "--exclude-outbound-ports",
            &args.exclude_outbound_ports,
            values::parse_port_list,
        )?,
        exclude_outbound_cidrs: flag(
            "--exclude-outbound-cidrs",
            &args.exclude_outbound_cidrs,
            values::parse_cidr_list,
        )?,
        include_outbound_cidrs: flag(
            "--include-outbound-cidrs",
            &args.include_outbound_cidrs,
            values::parse_include_cidrs,
        )?,
        include_outbound_ports: flag(
            "--include-outbound-ports",
            &args.include_outbound_ports,
            values::parse_port_list,
        )?,
        ipv6: args.ipv6,
    })
}

fn backend(args: &Args) -> Backend {
    match (args.mode, args.iptables_backend) {
        (Mode::Nftables, _) => Backend::Nftables,
        (Mode::Iptables, IptablesBackend::Legacy) => Backend::IptablesLegacy,
        (Mode::Iptables, IptablesBackend::Nft) => Backend::IptablesNft,
        (Mode::Iptables, IptablesBackend::Auto) => meshd_capture::detect_backend(),
    }
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let mut settings = match settings(&args) {
        Ok(s) => s,
        Err(BadFlag { flag, value, why }) => {
            eprintln!("meshd: {flag}: {why} (got {value:?})");
            return Ok(EXIT_USAGE);
        }
    };
    if args.cleanup {
        let plan = meshd_capture::cleanup().context("reading meshd's current rules")?;
        return finish(&plan, args.dry_run, "cleanup");
    }
    if settings.ipv6 && !meshd_capture::apply::ipv6_available() {
        tracing::warn!(
            "this kernel has no IPv6 (/proc/sys/net/ipv6 is missing); programming IPv4 only"
        );
        settings.ipv6 = false;
    }
    let rules = CaptureRules::new(&settings);
    let backend = backend(&args);
    let plan = match meshd_capture::plan_for_namespace(&rules, backend) {
        Ok(plan) => plan,
        // A dry run outside a pod (no root) still shows the document, as for a fresh namespace.
        Err(e) if args.dry_run => {
            tracing::warn!(error = %e, "cannot read current rules; showing the plan for a fresh namespace");
            Plan::install(&rules, backend, &Default::default())
        }
        Err(e) => return Err(e).context(format!("reading current rules ({})", backend.as_str())),
    };
    let code = finish(&plan, args.dry_run, backend.as_str())?;
    if args.validate && !args.dry_run {
        let proven = meshd_capture::validate::validate(
            &settings,
            Duration::from_millis(args.validate_timeout_ms),
        )
        .context("capture rules are applied but do not capture")?;
        tracing::info!(?proven, "capture validated");
    }
    Ok(code)
}

/// Prints (dry run) or applies a plan.
fn finish(plan: &Plan, dry_run: bool, what: &str) -> anyhow::Result<i32> {
    if dry_run {
        print!("{plan}");
        return Ok(0);
    }
    meshd_capture::apply(plan).with_context(|| format!("applying capture rules ({what})"))?;
    tracing::info!(
        backend = what,
        steps = plan.steps.len(),
        "capture rules applied"
    );
    Ok(0)
}
