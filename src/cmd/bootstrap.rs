//! `meshd bootstrap --node-id POD.NAMESPACE --xds-address ADDR`: prints the Envoy bootstrap the agent
//! would use (SPEC §2), to run Envoy by hand or debug.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use meshd_translate::{BootstrapFormat, BootstrapParams, NodeId, XdsAddress, XdsApi};

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Api {
    Delta,
    Sotw,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Format {
    Yaml,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The proxy's identity, `<pod>.<namespace>`.
    #[arg(long, env = "MESHD_NODE_ID", value_parser = NodeId::parse)]
    node_id: NodeId,
    /// Control plane: `HOST:PORT` or `unix:PATH`.
    #[arg(long, env = "MESHD_XDS_ADDRESS", default_value = meshd_api::names::DEFAULT_DISCOVERY_ADDRESS, value_parser = parse_address)]
    xds_address: XdsAddress,
    /// Delta xDS (default) or state-of-the-world.
    #[arg(long, env = "MESHD_XDS_API", value_enum, default_value = "delta")]
    xds_api: Api,
    /// Talk TLS to a `HOST:PORT` control plane, verifying --xds-server-name against --ca-file.
    #[arg(long, env = "MESHD_XDS_TLS")]
    xds_tls: bool,
    /// Name the control plane's certificate must carry, whatever the address.
    #[arg(long, env = "MESHD_XDS_SERVER_NAME", default_value = meshd_api::names::CONTROL_PLANE_SERVER_NAME)]
    xds_server_name: String,
    /// CA bundle that signed the control plane's certificate.
    #[arg(
        long,
        env = "MESHD_CA_FILE",
        default_value = "/var/run/meshd/ca-root/root-cert.pem"
    )]
    ca_file: PathBuf,
    /// Pod labels for the node metadata, `KEY=VALUE` (repeat, or comma-separated).
    #[arg(long = "label", env = "MESHD_LABELS", value_delimiter = ',', value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// The pod's service account, for the node metadata.
    #[arg(long, env = "MESHD_SERVICE_ACCOUNT")]
    service_account: Option<String>,
    /// The pod's IPs, for the node metadata (repeat, or comma-separated).
    #[arg(long = "pod-ip", env = "MESHD_POD_IPS", value_delimiter = ',')]
    pod_ips: Vec<std::net::IpAddr>,
    /// The agent's config directory: the bootstrap's `sds-grpc` cluster points at its `sds.sock`.
    #[arg(long, env = "MESHD_CONFIG_DIR", default_value = "/etc/meshd/proxy")]
    config_dir: PathBuf,
    /// Output format; Envoy reads both.
    #[arg(long, env = "MESHD_FORMAT", value_enum, default_value = "yaml")]
    format: Format,
}

fn parse_address(s: &str) -> Result<XdsAddress, String> {
    s.parse()
        .map_err(|e: meshd_translate::TranslateError| e.to_string())
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("label {s:?} is not KEY=VALUE"))
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let tls = match (&args.xds_address, args.xds_tls) {
        (XdsAddress::Unix(_), true) => {
            anyhow::bail!("--xds-tls needs a HOST:PORT --xds-address, not a Unix socket")
        }
        (_, true) => Some((
            args.xds_server_name.clone(),
            args.ca_file.display().to_string(),
        )),
        (_, false) => None,
    };
    let params = BootstrapParams {
        node: args.node_id,
        xds: args.xds_address,
        api: match args.xds_api {
            Api::Delta => XdsApi::Delta,
            Api::Sotw => XdsApi::Sotw,
        },
        tls,
        labels: args.labels.into_iter().collect::<BTreeMap<_, _>>(),
        service_account: args.service_account,
        ips: args.pod_ips.iter().map(ToString::to_string).collect(),
        sds_socket: Some(
            args.config_dir
                .join(meshd_translate::SDS_SOCKET_FILE)
                .display()
                .to_string(),
        ),
    };
    let format = match args.format {
        Format::Yaml => BootstrapFormat::Yaml,
        Format::Json => BootstrapFormat::Json,
    };
    let value = meshd_translate::bootstrap(&params);
    let text = match format {
        BootstrapFormat::Json => {
            serde_json::to_string_pretty(&value).context("rendering the bootstrap")? + "\n"
        }
        BootstrapFormat::Yaml => {
            serde_yaml::to_string(&value).context("rendering the bootstrap")?
        }
    };
    print!("{text}");
    Ok(0)
}
