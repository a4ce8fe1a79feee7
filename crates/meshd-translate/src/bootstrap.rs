//! The Envoy bootstrap `meshd bootstrap` prints and `meshd agent` writes (SPEC §2, §6): ADS to the control
//! plane over TCP (optionally TLS) or a Unix socket, admin on 127.0.0.1:15000, Prometheus stats on 15090,
//! and the `sds-grpc` cluster to the agent's SDS socket (SPEC §9). Nothing in the bootstrap uses that
//! cluster: only config that names an SDS secret ([`sds_secret_config`]) does, so with mTLS DISABLE an
//! Envoy started by hand needs no agent.

use std::collections::BTreeMap;
use std::str::FromStr;

use envoy_types::pb::envoy::config::core::v3::{
    ApiConfigSource, ApiVersion, ConfigSource, GrpcService, api_config_source, config_source,
    grpc_service,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig;
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use meshd_api::names::{PORT_ENVOY_ADMIN, PORT_ENVOY_STATS};
use serde_json::{Value, json};

use crate::TranslateError;
use crate::node::NodeId;

/// The bootstrap cluster through which Envoy fetches secrets from the agent (Istio's name).
pub const SDS_CLUSTER: &str = "sds-grpc";
/// The bootstrap's one static listener (Prometheus stats on 15090): not one of the control plane's.
pub const STATS_LISTENER: &str = "prometheus_stats";
/// SDS names (Istio's): the workload's certificate chain and key, and the mesh trust bundle.
pub const SDS_DEFAULT: &str = "default";
pub const SDS_ROOTCA: &str = "ROOTCA";
/// The agent's SDS socket, under its config directory.
pub const SDS_SOCKET_FILE: &str = "sds.sock";

/// How generated config names a secret the agent serves: SDS over the `sds-grpc` cluster. The listener
/// or cluster waits for it (no initial fetch timeout), as Istio's do, rather than starting without it.
pub fn sds_secret_config(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(ConfigSource {
            resource_api_version: ApiVersion::V3 as i32,
            initial_fetch_timeout: Some(ProtoDuration {
                seconds: 0,
                nanos: 0,
            }),
            config_source_specifier: Some(config_source::ConfigSourceSpecifier::ApiConfigSource(
                ApiConfigSource {
                    api_type: api_config_source::ApiType::Grpc as i32,
                    transport_api_version: ApiVersion::V3 as i32,
                    set_node_on_first_message_only: true,
                    grpc_services: vec![GrpcService {
                        target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                            grpc_service::EnvoyGrpc {
                                cluster_name: SDS_CLUSTER.to_string(),
                                ..Default::default()
                            },
                        )),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
    }
}

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
    /// The agent's SDS socket; `None` leaves the `sds-grpc` cluster out.
    pub sds_socket: Option<String>,
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
            "clusters": clusters(p),
            "listeners": [stats_listener()],
        },
    })
}

fn clusters(p: &BootstrapParams) -> Vec<Value> {
    let mut clusters = vec![xds_cluster(p), stats_cluster()];
    if let Some(path) = &p.sds_socket {
        clusters.push(sds_cluster(path));
    }
    clusters
}

/// gRPC (HTTP/2) to the agent's Unix socket.
fn sds_cluster(path: &str) -> Value {
    json!({
        "name": SDS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": SDS_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": path}}}}]}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            },
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
        "name": STATS_LISTENER,
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
            sds_socket: None,
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

    #[test]
    fn the_sds_cluster_points_at_the_agent_socket_and_nothing_uses_it() {
        let mut p = params("unix:/tmp/xds.sock");
        assert!(
            !bootstrap(&p).to_string().contains(SDS_CLUSTER),
            "no socket, no SDS cluster"
        );
        p.sds_socket = Some("/etc/meshd/proxy/sds.sock".into());
        let b = bootstrap(&p);
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        let sds = clusters.iter().find(|c| c["name"] == SDS_CLUSTER).unwrap();
        assert_eq!(
            sds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["pipe"]
                ["path"],
            "/etc/meshd/proxy/sds.sock"
        );
        assert!(
            sds["typed_extension_protocol_options"]
                .to_string()
                .contains("http2_protocol_options")
        );
        // Only the cluster's own definition names it: no listener or secret in the bootstrap does.
        assert_eq!(b.to_string().matches(SDS_CLUSTER).count(), 2);
    }

    #[test]
    fn secrets_are_fetched_over_the_sds_cluster_and_waited_for() {
        let c = sds_secret_config(SDS_ROOTCA);
        assert_eq!(c.name, "ROOTCA");
        let source = c.sds_config.unwrap();
        assert_eq!(source.initial_fetch_timeout.unwrap().seconds, 0);
        let Some(config_source::ConfigSourceSpecifier::ApiConfigSource(api)) =
            source.config_source_specifier
        else {
            panic!("not an API config source");
        };
        assert_eq!(api.api_type, api_config_source::ApiType::Grpc as i32);
        let Some(grpc_service::TargetSpecifier::EnvoyGrpc(target)) =
            &api.grpc_services[0].target_specifier
        else {
            panic!("not Envoy's gRPC client");
        };
        assert_eq!(target.cluster_name, SDS_CLUSTER);
    }
}
