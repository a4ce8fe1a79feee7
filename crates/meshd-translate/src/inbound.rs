//! The proxy-specific half: `virtualInbound` on 15006 and the `inbound|<port>||` clusters that carry
//! captured inbound connections to the app on the pod's own address.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
    ListenerFilterChainMatchPredicate, filter, listener_filter,
    listener_filter_chain_match_predicate,
};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action, route_match,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::{
    ForwardClientCertDetails, RouteSpecifier, SetCurrentClientCertDetails,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::r#type::v3::Int32Range;
use envoy_types::pb::google::protobuf::UInt32Value;
use meshd_api::mesh::MtlsMode;

use crate::authz::WorkloadRbac;
use crate::envoy::{pack, seconds, socket, tcp_proxy_filter};
use crate::facts::{Service, TargetPort, Workload};
use crate::mtls::{MESH_CLIENT_ALPNS, server_tls};
use crate::naming::*;
use crate::outbound::{inbound_bind_config, original_dst_filter, set_http2};
use crate::peer::WorkloadMtls;
use crate::protocol::Protocol;

/// One app port on this pod that some Service targets.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct InboundPort {
    pub port: u16,
    pub protocol: Protocol,
}

/// The ports of this pod that Services selecting it target (named target ports resolved against the
/// pod's container ports), one entry per port; the first Service in (name, port) order sets the protocol.
/// `services`: the Services of the pod's namespace, sorted by name.
pub(crate) fn inbound_ports<'a>(
    workload: &Workload,
    services: impl Iterator<Item = &'a Service>,
) -> Vec<InboundPort> {
    let mut ports: BTreeMap<u16, Protocol> = BTreeMap::new();
    for service in services {
        if !selects(service, workload) {
            continue;
        }
        for p in &service.ports {
            let port = match &p.target_port {
                TargetPort::Number(n) => Some(*n),
                TargetPort::Named(name) => workload.named_port(name),
            };
            if let Some(port) = port {
                ports.entry(port).or_insert(p.protocol);
            }
        }
    }
    ports
        .into_iter()
        .map(|(port, protocol)| InboundPort { port, protocol })
        .collect()
}

/// Whether the Service's selector (non-empty) matches the pod's labels.
pub(crate) fn selects(service: &Service, workload: &Workload) -> bool {
    !service.selector.is_empty()
        && service
            .selector
            .iter()
            .all(|(k, v)| workload.labels.get(k) == Some(v))
}

/// `inbound|<port>||`: a static cluster to the app at `<pod IP>:<port>`, from 127.0.0.6.
pub(crate) fn inbound_cluster(pod_ip: &str, port: &InboundPort) -> Cluster {
    let name = inbound_cluster_name(port.port);
    let mut cluster = Cluster {
        name: name.clone(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        connect_timeout: Some(seconds(10)),
        upstream_bind_config: Some(inbound_bind_config()),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name,
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket(pod_ip, port.port)),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    if port.protocol.is_http2() {
        set_http2(&mut cluster);
    }
    cluster
}

/// What a workload's inbound side enforces: its mTLS modes (SPEC §9) and its RBAC filters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InboundPolicy<'a> {
    pub mtls: &'a WorkloadMtls,
    pub trust_domain: &'a str,
    pub rbac: &'a WorkloadRbac,
}

/// `virtualInbound` on 15006: chains per targeted app port (HTTP terminated with an inline route so
/// per-request stats and policy apply; TCP proxied), every other port passed through to the original
/// destination; each in its mTLS mode (see [`chains`]).
pub(crate) fn virtual_inbound(ports: &[InboundPort], policy: &InboundPolicy<'_>) -> Listener {
    let mut chains = Vec::new();
    let mut modes: Vec<(u16, MtlsMode)> = Vec::new();
    for p in ports {
        let mode = policy.mtls.port(p.port);
        modes.push((p.port, mode));
        let target = Target::App(inbound_cluster_name(p.port), p.protocol.is_http());
        chains.extend(port_chains(Some(p.port), &target, mode, policy).0);
    }
    // `portLevelMtls` ports that no Service targets: their own mode, to the original destination.
    for (&port, &mode) in &policy.mtls.ports {
        if mode != policy.mtls.mode && !ports.iter().any(|p| p.port == port) {
            modes.push((port, mode));
            chains.extend(port_chains(Some(port), &Target::Passthrough, mode, policy).0);
        }
    }
    let (passthrough, default) = port_chains(None, &Target::Passthrough, policy.mtls.mode, policy);
    chains.extend(passthrough);
    let mut listener_filters = vec![original_dst_filter()];
    listener_filters.extend(tls_inspector(policy.mtls.mode, &modes));
    Listener {
        name: VIRTUAL_INBOUND.into(),
        address: Some(socket("0.0.0.0", meshd_api::names::PORT_INBOUND_CAPTURE)),
        listener_filters,
        // A client that sends nothing first (server-first protocols) still gets through.
        continue_on_listener_filters_timeout: inspects_tls(&chains),
        filter_chains: chains,
        default_filter_chain: default,
        traffic_direction: TrafficDirection::Inbound as i32,
        ..Default::default()
    }
}

fn inspects_tls(chains: &[FilterChain]) -> bool {
    chains.iter().any(|c| {
        c.filter_chain_match
            .as_ref()
            .is_some_and(|m| !m.transport_protocol.is_empty())
    })
}

/// Where a chain's connections go: the app's port (HTTP or TCP) or the original destination.
enum Target {
    App(String, bool),
    Passthrough,
}

impl Target {
    fn cluster(&self) -> &str {
        match self {
            Self::App(cluster, _) => cluster,
            Self::Passthrough => INBOUND_PASSTHROUGH_CLUSTER,
        }
    }

    fn http(&self) -> bool {
        matches!(self, Self::App(_, true))
    }
}

/// The chains of one port (`None`: every port no other chain names) in one mode, and the listener's
/// default chain when `port` is `None`. Every connection to a named port matches one of its chains:
/// - DISABLE: one plaintext chain.
/// - PERMISSIVE: TLS with a mesh ALPN → mTLS; TLS without (the app's own TLS) → passed on as bytes;
///   anything else → plaintext.
/// - STRICT: TLS → mTLS (a client without a mesh certificate fails the handshake); anything else →
///   closed without a byte of answer.
fn port_chains(
    port: Option<u16>,
    target: &Target,
    mode: MtlsMode,
    policy: &InboundPolicy<'_>,
) -> (Vec<FilterChain>, Option<FilterChain>) {
    let base = match (port, target) {
        (Some(p), Target::Passthrough) => format!("{INBOUND_PASSTHROUGH_CLUSTER}|{p}"),
        _ => target.cluster().to_string(),
    };
    let chain = |suffix: &str, transport: &str, alpn: &[&str], filters, tls| FilterChain {
        name: format!("{base}{suffix}"),
        filter_chain_match: Some(FilterChainMatch {
            destination_port: port.map(|p| UInt32Value {
                value: u32::from(p),
            }),
            transport_protocol: transport.into(),
            application_protocols: alpn.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        }),
        filters,
        transport_socket: tls,
        ..Default::default()
    };
    let plaintext = || filters(target, policy.rbac, false);
    let mtls = || Some(server_tls(policy.trust_domain, target.http()));
    let default = |chain: FilterChain| {
        port.is_none().then_some(FilterChain {
            filter_chain_match: None,
            ..chain
        })
    };
    match mode {
        MtlsMode::Disable => {
            let only = chain("", "", &[], plaintext(), None);
            match port {
                Some(_) => (vec![only], None),
                None => (Vec::new(), default(only)),
            }
        }
        MtlsMode::Permissive => {
            let mut chains = vec![chain(
                MTLS_CHAIN,
                "tls",
                &MESH_CLIENT_ALPNS,
                filters(target, policy.rbac, true),
                mtls(),
            )];
            let plain = chain("", "raw_buffer", &[], plaintext(), None);
            match port {
                Some(_) => {
                    let own_tls = tcp_filters(target.cluster(), policy.rbac);
                    chains.push(chain(OWN_TLS_CHAIN, "tls", &[], own_tls, None));
                    chains.push(plain);
                    (chains, None)
                }
                // The default chain takes plaintext and TLS without a mesh ALPN alike.
                None => (chains, default(plain)),
            }
        }
        MtlsMode::Strict => {
            let mut chains = vec![chain(
                MTLS_CHAIN,
                "tls",
                &[],
                filters(target, policy.rbac, true),
                mtls(),
            )];
            // On a named port plaintext must not reach the default chain; elsewhere no default
            // chain: a connection that matches nothing is closed.
            if port.is_some() {
                let refuse = vec![tcp_proxy_filter(
                    &format!("{base}{REFUSED_CHAIN}"),
                    BLACKHOLE_CLUSTER,
                )];
                chains.push(chain(REFUSED_CHAIN, "raw_buffer", &[], refuse, None));
            }
            (chains, None)
        }
    }
}

/// Chain name suffixes.
const MTLS_CHAIN: &str = "-mtls";
const OWN_TLS_CHAIN: &str = "-tls";
const REFUSED_CHAIN: &str = "-refused";

fn filters(target: &Target, rbac: &WorkloadRbac, mtls: bool) -> Vec<Filter> {
    if target.http() {
        vec![inbound_hcm(target.cluster(), rbac, mtls)]
    } else {
        tcp_filters(target.cluster(), rbac)
    }
}

fn tcp_filters(cluster: &str, rbac: &WorkloadRbac) -> Vec<Filter> {
    let mut filters = rbac.tcp.clone();
    filters.push(tcp_proxy_filter(cluster, cluster));
    filters
}

/// The inbound HTTP connection manager: RBAC, then the router to the app. Under mTLS the app learns
/// the caller's identity from `x-forwarded-client-cert` (set by Envoy, never taken from the client).
fn inbound_hcm(cluster: &str, rbac: &WorkloadRbac, mtls: bool) -> Filter {
    let mut http_filters = rbac.http.clone();
    http_filters.push(HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack(
            &Router::default(),
        ))),
        ..Default::default()
    });
    let (forward, details) = if mtls {
        (
            ForwardClientCertDetails::SanitizeSet,
            Some(SetCurrentClientCertDetails {
                uri: true,
                ..Default::default()
            }),
        )
    } else {
        (ForwardClientCertDetails::Sanitize, None)
    };
    let hcm = HttpConnectionManager {
        stat_prefix: cluster.to_string(),
        codec_type: http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(RouteSpecifier::RouteConfig(inbound_route(cluster))),
        http_filters,
        forward_client_cert_details: forward as i32,
        set_current_client_cert_details: details,
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.http_connection_manager".into(),
        config_type: Some(filter::ConfigType::TypedConfig(pack(&hcm))),
    }
}

/// A listener filter predicate matching any of `ports` (none: `None`).
pub(crate) fn any_of(ports: Vec<u16>) -> Option<ListenerFilterChainMatchPredicate> {
    let range = |port: u16| ListenerFilterChainMatchPredicate {
        rule: Some(
            listener_filter_chain_match_predicate::Rule::DestinationPortRange(Int32Range {
                start: i32::from(port),
                end: i32::from(port) + 1,
            }),
        ),
    };
    match ports.len() {
        0 => None,
        1 => Some(range(ports[0])),
        _ => Some(ListenerFilterChainMatchPredicate {
            rule: Some(listener_filter_chain_match_predicate::Rule::OrMatch(
                listener_filter_chain_match_predicate::MatchSet {
                    rules: ports.into_iter().map(range).collect(),
                },
            )),
        }),
    }
}

/// `tls_inspector` when some chain matches on TLS, disabled on the ports whose mode is DISABLE (a
/// server-first protocol there never waits for it). `modes`: the ports with chains of their own.
fn tls_inspector(workload: MtlsMode, modes: &[(u16, MtlsMode)]) -> Option<ListenerFilter> {
    let plain: Vec<u16> = modes
        .iter()
        .filter(|(_, m)| *m == MtlsMode::Disable)
        .map(|(p, _)| *p)
        .collect();
    let tls: Vec<u16> = modes
        .iter()
        .filter(|(_, m)| *m != MtlsMode::Disable)
        .map(|(p, _)| *p)
        .collect();
    let disabled = if workload == MtlsMode::Disable {
        // Only the mTLS ports need it: disabled everywhere else.
        let needed = any_of(tls)?;
        Some(ListenerFilterChainMatchPredicate {
            rule: Some(listener_filter_chain_match_predicate::Rule::NotMatch(
                Box::new(needed),
            )),
        })
    } else {
        any_of(plain)
    };
    Some(ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".into(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(pack(
            &TlsInspector::default(),
        ))),
        filter_disabled: disabled,
    })
}

fn inbound_route(cluster: &str) -> RouteConfiguration {
    RouteConfiguration {
        name: cluster.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: cluster.to_string(),
            domains: vec!["*".into()],
            routes: vec![Route {
                name: "default".into(),
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                        cluster.to_string(),
                    )),
                    timeout: Some(seconds(0)),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}
