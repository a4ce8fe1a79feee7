//! The agent's flags (SPEC §2 `meshd agent`; each also `MESHD_<FLAG>`), parsed by clap into typed values
//! ([`AgentFlags`]), and the settings the agent runs with ([`AgentSettings`]): the same values with the
//! few that depend on each other combined and checked once.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use meshd_api::mesh::LogLevel;
use meshd_translate::{NodeId, XdsAddress};

use crate::AgentError;
use crate::probes::AppProbes;

/// TLS to the control plane (xDS and the CA).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum XdsTls {
    /// TLS for a `HOST:PORT` address, plaintext on a Unix socket.
    #[default]
    Auto,
    True,
    False,
}

/// `meshd agent`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct AgentFlags {
    /// The pod's name (downward API `metadata.name`); on a VM, the workload's name.
    #[arg(long, env = "MESHD_POD_NAME")]
    pub pod_name: Option<String>,
    /// The pod's namespace (`metadata.namespace`).
    #[arg(long, env = "MESHD_POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    /// The pod's IP (`status.podIP`): node metadata, and where HTTP/TCP app probes go.
    #[arg(long, env = "MESHD_POD_IP")]
    pub pod_ip: Option<IpAddr>,
    /// The pod's service account, for the node metadata (the certificate's identity comes from the
    /// token).
    #[arg(long, env = "MESHD_SERVICE_ACCOUNT")]
    pub service_account: Option<String>,
    /// The node the pod runs on.
    #[arg(long, env = "MESHD_NODE_NAME")]
    pub node_name: Option<String>,
    /// The Mesh this proxy belongs to.
    #[arg(long, env = "MESHD_MESH", default_value = meshd_api::names::DEFAULT_MESH)]
    pub mesh: String,
    /// The control plane (xDS and CA): `HOST:PORT` or `unix:PATH`.
    #[arg(long, env = "MESHD_DISCOVERY_ADDRESS", default_value = meshd_api::names::DEFAULT_DISCOVERY_ADDRESS, value_parser = parse_address)]
    pub discovery_address: XdsAddress,
    /// The CA, when it is not at --discovery-address (Istio's CA_ADDR).
    #[arg(long, env = "MESHD_CA_ADDRESS", value_parser = parse_address)]
    pub ca_address: Option<XdsAddress>,
    /// TLS to the control plane, verifying the name `meshd.meshd-system.svc` against --ca-file: `auto`
    /// (TLS for HOST:PORT, plaintext on a Unix socket), `true` or `false`.
    #[arg(long, env = "MESHD_XDS_TLS", value_enum, default_value = "auto")]
    pub xds_tls: XdsTls,
    /// The mesh root (the control plane's `root-cert.pem`): trust anchor for its TLS.
    #[arg(
        long,
        env = "MESHD_CA_FILE",
        default_value = "/var/run/meshd/ca-root/root-cert.pem"
    )]
    pub ca_file: PathBuf,
    /// The credential presented to the CA (in pods the projected ServiceAccount token, audience
    /// `meshd`); re-read for every request. Without it the agent asks for no certificate.
    #[arg(
        long,
        env = "MESHD_TOKEN_FILE",
        default_value = "/var/run/secrets/tokens/meshd-token"
    )]
    pub token_file: PathBuf,
    /// The mesh's trust domain.
    #[arg(long, env = "MESHD_TRUST_DOMAIN", default_value = meshd_api::names::DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
    /// Envoy's log level: trace, debug, info, warning, error, critical.
    #[arg(long, env = "MESHD_ENVOY_LOG_LEVEL", default_value = "info", value_parser = parse_log_level)]
    pub envoy_log_level: LogLevel,
    /// Envoy worker threads (0 is taken as 1).
    #[arg(long, env = "MESHD_CONCURRENCY", default_value = "2")]
    pub concurrency: u32,
    /// The app's original probes and lifecycle hooks as JSON,
    /// `{"<container>/<livez|readyz|startupz|poststart|prestop>": <handler>}`, run on
    /// `GET /app-health/<container>/<kind>`.
    #[arg(long, env = "MESHD_APP_PROBES", value_parser = parse_probes)]
    pub app_probes: Option<AppProbes>,
    /// Pod labels for the node metadata, `KEY=VALUE` (repeat, or comma-separated).
    #[arg(long = "label", env = "MESHD_LABELS", value_parser = parse_labels)]
    pub labels: Vec<Labels>,
    /// The Envoy program.
    #[arg(long, env = "MESHD_ENVOY_PATH", default_value = "envoy")]
    pub envoy_path: PathBuf,
    /// Where the Envoy bootstrap is written and the SDS socket (`sds.sock`) is served.
    #[arg(long, env = "MESHD_CONFIG_DIR", default_value = "/etc/meshd/proxy")]
    pub config_dir: PathBuf,
    /// The longest Envoy drains on SIGTERM, e.g. `5s`, `500ms`; it is stopped as soon as no TCP
    /// connection or HTTP request is in flight.
    #[arg(long, env = "MESHD_DRAIN_DURATION", default_value = "5s", value_parser = duration_flag)]
    pub drain_duration: Duration,
    /// The gateway this proxy runs for (gateway pods only).
    #[arg(long, env = "MESHD_GATEWAY")]
    pub gateway: Option<String>,
    /// `/healthz/ready` (the proxy's readiness and startup probe).
    #[arg(long, env = "MESHD_HEALTH_LISTEN", default_value = "0.0.0.0:15021")]
    pub health_listen: SocketAddr,
    /// App probes, merged metrics and `/quitquitquit`.
    #[arg(long, env = "MESHD_AGENT_LISTEN", default_value = "0.0.0.0:15020")]
    pub agent_listen: SocketAddr,
    /// Envoy's admin port (on 127.0.0.1).
    #[arg(long, env = "MESHD_ADMIN_PORT", default_value = "15000", value_parser = clap::value_parser!(u16).range(1..))]
    pub admin_port: u16,
}

/// The labels of one `--label` value: `KEY=VALUE[,KEY=VALUE…]`; empty text is no label.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels(pub Vec<(String, String)>);

fn parse_address(s: &str) -> Result<XdsAddress, String> {
    s.parse()
        .map_err(|e: meshd_translate::TranslateError| e.to_string())
}

fn parse_log_level(s: &str) -> Result<LogLevel, String> {
    LogLevel::parse(s)
        .ok_or_else(|| format!("{s:?} is not one of trace, debug, info, warning, error, critical"))
}

fn parse_probes(s: &str) -> Result<AppProbes, String> {
    if s.trim().is_empty() {
        return Ok(AppProbes::default());
    }
    AppProbes::parse(s)
}

fn parse_labels(s: &str) -> Result<Labels, String> {
    s.split(',')
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("label {l:?} is not KEY=VALUE"))
        })
        .collect::<Result<_, _>>()
        .map(Labels)
}

fn duration_flag(s: &str) -> Result<Duration, String> {
    parse_duration("", s).map_err(|_| format!("{s:?} is not a duration like 500ms, 5s or 1m"))
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub node: NodeId,
    pub pod_ip: Option<IpAddr>,
    pub service_account: Option<String>,
    pub node_name: Option<String>,
    pub mesh: String,
    pub xds: XdsAddress,
    /// TLS to the control plane: (server name, CA file).
    pub xds_tls: Option<(String, String)>,
    pub trust_domain: String,
    pub log_level: LogLevel,
    pub concurrency: u32,
    pub app_probes: AppProbes,
    pub labels: BTreeMap<String, String>,
    pub envoy_path: PathBuf,
    pub config_dir: PathBuf,
    pub drain_duration: Duration,
    pub gateway: Option<String>,
    pub health_listen: SocketAddr,
    pub agent_listen: SocketAddr,
    pub admin_port: u16,
    /// Where the workload certificate comes from.
    pub ca: CaSettings,
}

/// The CA the agent asks for its certificate.
#[derive(Debug, Clone)]
pub struct CaSettings {
    pub address: XdsAddress,
    /// TLS to the CA: (server name, trust anchor file); the same as xDS's for the same address.
    pub tls: Option<(String, PathBuf)>,
    pub token_file: PathBuf,
}

fn invalid(flag: &'static str, value: &str, reason: impl Into<String>) -> AgentError {
    AgentError::Invalid {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn required(flag: &'static str, value: Option<String>) -> Result<String, AgentError> {
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or(AgentError::Missing { flag })
}

/// `100ms`, `5s`, `1m`, or bare seconds.
pub fn parse_duration(flag: &'static str, s: &str) -> Result<Duration, AgentError> {
    let bad = || invalid(flag, s, "not a duration like 500ms, 5s or 1m");
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(bad()),
    }
}

/// Whether to talk TLS to `address`; `true` on a Unix socket is refused (naming `flag`).
fn tls_for(address: &XdsAddress, tls: XdsTls, flag: &'static str) -> Result<bool, AgentError> {
    match (address, tls) {
        (_, XdsTls::False) | (XdsAddress::Unix(_), XdsTls::Auto) => Ok(false),
        (XdsAddress::Tcp { .. }, XdsTls::Auto | XdsTls::True) => Ok(true),
        (XdsAddress::Unix(_), XdsTls::True) => Err(invalid(
            flag,
            &address.to_string(),
            "--xds-tls true needs a HOST:PORT address, not a Unix socket",
        )),
    }
}

impl AgentSettings {
    /// Combines and checks the flags.
    pub fn from_flags(f: AgentFlags) -> Result<Self, AgentError> {
        let pod = required("--pod-name", f.pod_name)?;
        let namespace = required("--pod-namespace", f.pod_namespace)?;
        let node = NodeId { pod, namespace };
        let server_name = meshd_api::names::CONTROL_PLANE_SERVER_NAME.to_string();
        let xds_tls = tls_for(&f.discovery_address, f.xds_tls, "--discovery-address")?
            .then(|| (server_name.clone(), f.ca_file.display().to_string()));
        let ca_address = f.ca_address.unwrap_or_else(|| f.discovery_address.clone());
        let ca_tls = tls_for(&ca_address, f.xds_tls, "--ca-address")?
            .then(|| (server_name, f.ca_file.clone()));
        if f.envoy_path.as_os_str().is_empty() {
            return Err(invalid("--envoy-path", "", "empty"));
        }
        let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
        Ok(Self {
            node,
            pod_ip: f.pod_ip,
            service_account: non_empty(f.service_account),
            node_name: non_empty(f.node_name),
            mesh: f.mesh,
            xds: f.discovery_address,
            xds_tls,
            trust_domain: f.trust_domain,
            log_level: f.envoy_log_level,
            concurrency: f.concurrency,
            app_probes: f.app_probes.unwrap_or_default(),
            labels: f.labels.into_iter().flat_map(|l| l.0).collect(),
            envoy_path: f.envoy_path,
            config_dir: f.config_dir,
            drain_duration: f.drain_duration,
            gateway: non_empty(f.gateway),
            health_listen: f.health_listen,
            agent_listen: f.agent_listen,
            admin_port: f.admin_port,
            ca: CaSettings {
                address: ca_address,
                tls: ca_tls,
                token_file: f.token_file,
            },
        })
    }

    /// Parses `meshd agent` flags (tests, and callers without clap of their own).
    pub fn from_args<I, T>(args: I) -> Result<Self, AgentError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            flags: AgentFlags,
        }
        let cli = <Cli as clap::Parser>::try_parse_from(
            std::iter::once(std::ffi::OsString::from("agent"))
                .chain(args.into_iter().map(Into::into)),
        )
        .map_err(|e| AgentError::Invalid {
            flag: "flags",
            value: String::new(),
            reason: e.to_string().lines().next().unwrap_or_default().to_string(),
        })?;
        Self::from_flags(cli.flags)
    }

    /// The agent's SDS socket, `<config-dir>/sds.sock`, which the bootstrap's `sds-grpc` cluster names.
    pub fn sds_socket(&self) -> PathBuf {
        self.config_dir.join(meshd_translate::SDS_SOCKET_FILE)
    }

    /// The agent's xDS proxy socket, `<config-dir>/xds.sock`, which the bootstrap's `xds-grpc`
    /// cluster names.
    pub fn xds_socket(&self) -> PathBuf {
        self.config_dir.join(crate::xds_proxy::XDS_SOCKET_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: [&str; 6] = [
        "--pod-name",
        "web-0",
        "--pod-namespace",
        "shop",
        "--config-dir",
        "/tmp",
    ];

    /// BASE + `extra`, on a Unix socket unless `extra` names another address.
    fn parse(extra: &[&str]) -> Result<AgentSettings, AgentError> {
        let unix = ["--discovery-address", "unix:/tmp/x.sock"];
        let address: &[&str] = if extra.contains(&"--discovery-address") {
            &[]
        } else {
            &unix
        };
        AgentSettings::from_args(BASE.iter().chain(address).chain(extra))
    }

    #[test]
    fn good_flags_become_typed_settings() {
        let s = parse(&[
            "--pod-ip",
            "10.0.0.5",
            "--label",
            "app=web,version=v1",
            "--label",
            "tier=front",
            "--drain-duration",
            "1500ms",
            "--concurrency",
            "2",
        ])
        .unwrap();
        assert_eq!(s.node.to_string(), "web-0.shop");
        assert_eq!(s.drain_duration, Duration::from_millis(1500));
        assert_eq!(s.concurrency, 2);
        assert_eq!(s.labels.len(), 3);
        assert_eq!(s.labels["version"], "v1");
        assert_eq!(s.sds_socket(), PathBuf::from("/tmp/sds.sock"));
        assert_eq!(s.xds_socket(), PathBuf::from("/tmp/xds.sock"));
        // Unix socket: plaintext xDS, and the CA at the same address.
        assert!(s.xds_tls.is_none() && s.ca.tls.is_none());
        assert_eq!(s.ca.address, s.xds);
        assert_eq!(
            s.ca.token_file,
            PathBuf::from("/var/run/secrets/tokens/meshd-token")
        );
    }

    #[test]
    fn a_tcp_control_plane_gets_tls_unless_told_otherwise() {
        let s = parse(&[
            "--discovery-address",
            "cp.example:15012",
            "--ca-file",
            "/r.pem",
        ])
        .unwrap();
        let (name, file) = s.xds_tls.unwrap();
        assert_eq!(name, "meshd.meshd-system.svc");
        assert_eq!(file, "/r.pem");
        assert_eq!(s.ca.tls.unwrap().1, PathBuf::from("/r.pem"));
        let s = parse(&["--discovery-address", "cp:15012", "--xds-tls", "false"]).unwrap();
        assert!(s.xds_tls.is_none() && s.ca.tls.is_none());
        let s = parse(&["--ca-address", "ca.example:15012"]).unwrap();
        assert!(s.xds_tls.is_none(), "xDS on the Unix socket");
        assert!(s.ca.tls.is_some(), "the CA over TCP");
    }

    #[test]
    fn bad_values_name_flag_and_value() {
        let cases: [(&[&str], &str); 9] = [
            (&["--xds-tls", "true"], "--discovery-address"),
            (&["--xds-tls", "yes"], "--xds-tls"),
            (&["--concurrency", "two"], "--concurrency"),
            (&["--drain-duration", "5 parsecs"], "--drain-duration"),
            (&["--envoy-log-level", "loud"], "--envoy-log-level"),
            (&["--health-listen", "15021"], "--health-listen"),
            (&["--pod-ip", "10.0.0"], "--pod-ip"),
            (&["--app-probes", "{\"a/livez\":"], "--app-probes"),
            (&["--admin-port", "0"], "--admin-port"),
        ];
        for (args, flag) in cases {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 64, "{err}");
            assert!(err.to_string().contains(flag), "{args:?}: {err}");
        }
        let err = parse(&["--label", "novalue"]).unwrap_err();
        assert!(err.to_string().contains("novalue"), "{err}");
        let err = AgentSettings::from_args(["--pod-namespace", "shop"]).unwrap_err();
        assert!(err.to_string().contains("--pod-name"), "{err}");
    }

    #[test]
    fn empty_optional_values_mean_unset() {
        let s = parse(&[
            "--service-account",
            "",
            "--gateway",
            "",
            "--app-probes",
            "",
            "--label",
            "",
        ])
        .unwrap();
        assert!(s.service_account.is_none() && s.gateway.is_none());
        assert!(s.labels.is_empty());
    }
}
