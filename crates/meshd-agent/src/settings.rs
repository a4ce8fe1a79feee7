//! The agent's flags as given (strings, so that a bad value is the agent's error with exit 64 rather
//! than the argument parser's), and validated once at start.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use meshd_api::mesh::LogLevel;
use meshd_translate::{NodeId, XdsAddress};

use crate::AgentError;
use crate::probes::AppProbes;

/// The flags as `meshd agent` received them.
#[derive(Debug, Clone, Default)]
pub struct RawSettings {
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
    pub pod_ip: Option<String>,
    pub service_account: Option<String>,
    pub node_name: Option<String>,
    pub mesh: String,
    pub discovery_address: String,
    /// `true`: TLS to the control plane, verified against `ca_file` (a `HOST:PORT` address only).
    pub xds_tls: String,
    pub ca_file: PathBuf,
    pub trust_domain: String,
    pub envoy_log_level: String,
    pub concurrency: String,
    pub app_probes: Option<String>,
    pub labels: Vec<String>,
    pub envoy_path: String,
    pub config_dir: PathBuf,
    pub drain_duration: String,
    pub gateway: Option<String>,
    pub health_listen: String,
    pub agent_listen: String,
    pub admin_port: String,
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

impl AgentSettings {
    pub fn validate(raw: RawSettings) -> Result<Self, AgentError> {
        let pod = required("--pod-name", raw.pod_name)?;
        let namespace = required("--pod-namespace", raw.pod_namespace)?;
        let node = NodeId { pod, namespace };
        let pod_ip = raw
            .pod_ip
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<IpAddr>()
                    .map_err(|_| invalid("--pod-ip", &v, "not an IP address"))
            })
            .transpose()?;
        let xds = raw
            .discovery_address
            .parse::<XdsAddress>()
            .map_err(|e| invalid("--discovery-address", &raw.discovery_address, e.to_string()))?;
        let tls = meshd_api::values::parse_bool(&raw.xds_tls)
            .map_err(|e| invalid("--xds-tls", &raw.xds_tls, e.to_string()))?;
        let xds_tls = match (&xds, tls) {
            (_, false) => None,
            (XdsAddress::Unix(_), true) => {
                return Err(invalid(
                    "--xds-tls",
                    &raw.xds_tls,
                    "needs a HOST:PORT --discovery-address, not a Unix socket",
                ));
            }
            (XdsAddress::Tcp { .. }, true) => Some((
                meshd_api::names::CONTROL_PLANE_SERVER_NAME.to_string(),
                raw.ca_file.display().to_string(),
            )),
        };
        let log_level = LogLevel::parse(&raw.envoy_log_level).ok_or_else(|| {
            invalid(
                "--envoy-log-level",
                &raw.envoy_log_level,
                "not one of trace, debug, info, warning, error, critical",
            )
        })?;
        let concurrency = raw
            .concurrency
            .parse::<u32>()
            .map_err(|_| invalid("--concurrency", &raw.concurrency, "not a whole number"))?;
        let app_probes = match raw.app_probes.as_deref().filter(|j| !j.trim().is_empty()) {
            None => AppProbes::default(),
            Some(json) => {
                AppProbes::parse(json).map_err(|reason| invalid("--app-probes", json, reason))?
            }
        };
        let mut labels = BTreeMap::new();
        for label in raw.labels.iter().filter(|l| !l.is_empty()) {
            let (k, v) = label
                .split_once('=')
                .ok_or_else(|| invalid("--label", label, "not KEY=VALUE"))?;
            labels.insert(k.to_string(), v.to_string());
        }
        if raw.envoy_path.is_empty() {
            return Err(invalid("--envoy-path", "", "empty"));
        }
        let addr = |flag: &'static str, v: &str| {
            v.parse::<SocketAddr>()
                .map_err(|_| invalid(flag, v, "not IP:PORT"))
        };
        let admin_port = match raw.admin_port.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => {
                return Err(invalid(
                    "--admin-port",
                    &raw.admin_port,
                    "not a port 1-65535",
                ));
            }
        };
        Ok(Self {
            node,
            pod_ip,
            service_account: raw.service_account.filter(|s| !s.is_empty()),
            node_name: raw.node_name.filter(|s| !s.is_empty()),
            mesh: raw.mesh,
            xds,
            xds_tls,
            trust_domain: raw.trust_domain,
            log_level,
            concurrency,
            app_probes,
            labels,
            envoy_path: PathBuf::from(raw.envoy_path),
            config_dir: raw.config_dir,
            drain_duration: parse_duration("--drain-duration", &raw.drain_duration)?,
            gateway: raw.gateway.filter(|g| !g.is_empty()),
            health_listen: addr("--health-listen", &raw.health_listen)?,
            agent_listen: addr("--agent-listen", &raw.agent_listen)?,
            admin_port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawSettings {
        RawSettings {
            pod_name: Some("web-0".into()),
            pod_namespace: Some("shop".into()),
            pod_ip: Some("10.0.0.5".into()),
            mesh: "default".into(),
            discovery_address: "unix:/tmp/x.sock".into(),
            xds_tls: "false".into(),
            trust_domain: "cluster.local".into(),
            envoy_log_level: "info".into(),
            concurrency: "2".into(),
            envoy_path: "envoy".into(),
            config_dir: "/tmp".into(),
            drain_duration: "5s".into(),
            health_listen: "0.0.0.0:15021".into(),
            agent_listen: "0.0.0.0:15020".into(),
            admin_port: "15000".into(),
            ..Default::default()
        }
    }

    #[test]
    fn good_flags_validate() {
        let s = AgentSettings::validate(raw()).unwrap();
        assert_eq!(s.node.to_string(), "web-0.shop");
        assert_eq!(s.drain_duration, Duration::from_secs(5));
        assert_eq!(s.concurrency, 2);
    }

    type Breaker = fn(&mut RawSettings);

    #[test]
    fn bad_values_name_flag_and_value() {
        let cases: [(&str, Breaker); 7] = [
            ("--xds-tls", |r| r.xds_tls = "true".into()),
            ("--concurrency", |r| r.concurrency = "two".into()),
            ("--drain-duration", |r| {
                r.drain_duration = "5 parsecs".into()
            }),
            ("--envoy-log-level", |r| r.envoy_log_level = "loud".into()),
            ("--health-listen", |r| r.health_listen = "15021".into()),
            ("--pod-ip", |r| r.pod_ip = Some("10.0.0".into())),
            ("--app-probes", |r| {
                r.app_probes = Some("{\"a/livez\":".into())
            }),
        ];
        for (flag, break_it) in cases {
            let mut r = raw();
            break_it(&mut r);
            let err = AgentSettings::validate(r).unwrap_err();
            assert_eq!(err.exit_code(), 64, "{err}");
            assert!(err.to_string().starts_with(flag), "{err}");
        }
        let mut r = raw();
        r.pod_name = None;
        let err = AgentSettings::validate(r).unwrap_err();
        assert!(err.to_string().contains("--pod-name"), "{err}");
    }
}
