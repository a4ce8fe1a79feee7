//! The Envoy bootstrap `meshd bootstrap` prints and `meshd agent` writes (SPEC §2, §6): ADS to the control
//! plane over TCP (optionally TLS) or a Unix socket, admin on 127.0.0.1:15000, Prometheus stats on 15090.

use std::collections::BTreeMap;
use std::str::FromStr;

use meshd_api::names::{PORT_ENVOY_ADMIN, PORT_ENVOY_STATS};
use serde_json::{Value, json};

use crate::TranslateError;
use crate::snapshot::NodeId;

/// Where the control plane listens: `HOST:PORT` or `unix:PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XdsAddress {
    Tcp { host: String, port: u16 },
    Unix(String),
}

impl FromStr for XdsAddress {
    type Err = TranslateError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| TranslateError::BadXdsAddress {
            value: value.to_string(),
            reason: reason.into(),
        };
        if let Some(path) = value.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("the socket path is empty"));
            }
            return Ok(Self::Unix(path.to_string()));
        }
        let (host, port) = value.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port: u16 = port.parse().map_err(|_| bad("the port is not 1-65535"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err(bad("host and port are both needed"));
        }
        Ok(Self::Tcp {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for XdsAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{path}"),
            Self::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Delta xDS (the default) or state-of-the-world.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdsApi {
    #[default]
    Delta,
    Sotw,
}

/// Output format of `meshd bootstrap`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BootstrapFormat {
    #[default]
    Json,
    Yaml,
}

/// Everything that varies between bootstraps.
#[derive(Clone, Debug)]
pub struct BootstrapParams {
    pub node: NodeId,
    pub xds: XdsAddress,
    pub api: XdsApi,
    /// TLS to the control plane: the server name to verify and the CA bundle file.
    pub tls: Option<(String, String)>,
    pub labels: BTreeMap<String, String>,
    pub service_account: Option<String>,
    pub ips: Vec<String>,
}

/// The bootstrap as JSON (which Envoy also reads as YAML).
pub fn bootstrap(p: &BootstrapParams) -> Value {
    let api_type = match p.api {
        XdsApi::Delta => "DELTA_GRPC",
        XdsApi::Sotw => "GRPC",
    };
    let ads_source = json!({"ads": {}, "resource_api_version": "V3"});
    json!({
        "node": {
            "id": p.node.to_string(),
            "cluster": format!("{}.{}", p.service_account.as_deref().unwrap_or("default"), p.node.namespace),
            "metadata": {
                "labels": p.labels,
                "service_account": p.service_account.clone().unwrap_or_default(),
                "ips": p.ips,
                "namespace": p.node.namespace,
            },
        },
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": PORT_ENVOY_ADMIN}},
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": api_type,
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
                "set_node_on_first_message_only": true,
            },
            "cds_config": ads_source,
            "lds_config": ads_source,
        },
        "static_resources": {
            "clusters": [xds_cluster(p), stats_cluster()],
            "listeners": [stats_listener()],
        },
    })
}

fn xds_cluster(p: &BootstrapParams) -> Value {
    let (kind, address) = match &p.xds {
        XdsAddress::Unix(path) => ("STATIC", json!({"pipe": {"path": path}})),
        XdsAddress::Tcp { host, port } => {
            let kind = if host.parse::<std::net::IpAddr>().is_ok() {
                "STATIC"
            } else {
                "LOGICAL_DNS"
            };
            (
                kind,
                json!({"socket_address": {"address": host, "port_value": port}}),
            )
        }
    };
    let mut cluster = json!({
        "name": "xds-grpc",
        "type": kind,
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "xds-grpc",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            },
        },
    });
    if let Some((server_name, ca_file)) = &p.tls {
        cluster["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": server_name,
                "common_tls_context": {
                    "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                    "alpn_protocols": ["h2"],
                    "validation_context": {
                        "trusted_ca": {"filename": ca_file},
                        "match_typed_subject_alt_names": [
                            {"san_type": "DNS", "matcher": {"exact": server_name}},
                        ],
                    },
                },
            },
        });
    }
    cluster
}

fn stats_cluster() -> Value {
    json!({
        "name": "prometheus_stats",
        "type": "STATIC",
        "connect_timeout": "0.250s",
        "load_assignment": {
            "cluster_name": "prometheus_stats",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": PORT_ENVOY_ADMIN},
            }}}]}],
        },
    })
}

/// 0.0.0.0:15090 serving only `/stats/prometheus` from the admin port, so the admin API stays local.
fn stats_listener() -> Value {
    json!({
        "name": "prometheus_stats",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": PORT_ENVOY_STATS}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "stats",
                "codec_type": "AUTO",
                "route_config": {"virtual_hosts": [{
                    "name": "stats",
                    "domains": ["*"],
                    "routes": [{
                        "match": {"path": "/stats/prometheus"},
                        "route": {"cluster": "prometheus_stats"},
                    }],
                }]},
                "http_filters": [{
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                }],
            },
        }]}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(xds: &str) -> BootstrapParams {
        BootstrapParams {
            node: NodeId::parse("web-0.shop").unwrap(),
            xds: xds.parse().unwrap(),
            api: XdsApi::Delta,
            tls: None,
            labels: BTreeMap::from([("app".into(), "web".into())]),
            service_account: Some("web".into()),
            ips: vec!["10.0.0.5".into()],
        }
    }

    #[test]
    fn addresses_parse_or_name_the_problem() {
        assert_eq!(
            "unix:/run/x.sock".parse::<XdsAddress>().unwrap(),
            XdsAddress::Unix("/run/x.sock".into())
        );
        assert_eq!(
            "[::1]:15012".parse::<XdsAddress>().unwrap(),
            XdsAddress::Tcp {
                host: "::1".into(),
                port: 15012
            }
        );
        let err = "meshd:99999".parse::<XdsAddress>().unwrap_err().to_string();
        assert!(err.contains("meshd:99999") && err.contains("port"), "{err}");
        assert!("unix:".parse::<XdsAddress>().is_err());
        assert!("nohost".parse::<XdsAddress>().is_err());
    }

    #[test]
    fn unix_socket_becomes_a_pipe_and_delta_is_the_default() {
        let b = bootstrap(&params("unix:/tmp/xds.sock"));
        assert_eq!(
            b["dynamic_resources"]["ads_config"]["api_type"],
            "DELTA_GRPC"
        );
        let xds = &b["static_resources"]["clusters"][0];
        assert_eq!(
            xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["pipe"]
                ["path"],
            "/tmp/xds.sock"
        );
        assert_eq!(b["node"]["id"], "web-0.shop");
        assert_eq!(b["node"]["metadata"]["labels"]["app"], "web");
        assert_eq!(
            b["admin"]["address"]["socket_address"]["address"],
            "127.0.0.1"
        );
        assert!(xds.get("transport_socket").is_none());
    }

    #[test]
    fn tcp_with_tls_verifies_the_control_plane_name() {
        let mut p = params("meshd.meshd-system.svc:15012");
        p.api = XdsApi::Sotw;
        p.tls = Some((
            "meshd.meshd-system.svc".into(),
            "/var/run/meshd/ca-root/root-cert.pem".into(),
        ));
        let b = bootstrap(&p);
        assert_eq!(b["dynamic_resources"]["ads_config"]["api_type"], "GRPC");
        let xds = &b["static_resources"]["clusters"][0];
        assert_eq!(xds["type"], "LOGICAL_DNS");
        let tls = &xds["transport_socket"]["typed_config"];
        assert_eq!(tls["sni"], "meshd.meshd-system.svc");
        assert_eq!(
            tls["common_tls_context"]["tls_params"]["tls_minimum_protocol_version"],
            "TLSv1_2"
        );
    }
}
