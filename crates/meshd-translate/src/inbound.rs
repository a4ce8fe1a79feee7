//! The proxy-specific half: `virtualInbound` on 15006 and the `inbound|<port>||` clusters that carry
//! captured inbound connections to the app on the pod's own address.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, FilterChainMatch, Listener};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action, route_match,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::google::protobuf::UInt32Value;
use crate::envoy::{seconds, socket, tcp_proxy_filter};
use crate::facts::{Service, TargetPort, Workload};
use crate::naming::*;
use crate::outbound::{http_connection_manager, inbound_bind_config, original_dst_filter, set_http2};
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

/// `virtualInbound` on 15006: a chain per targeted app port (HTTP terminated with an inline route so
/// per-request stats and, later, policy apply; TCP proxied), every other port passed through.
pub(crate) fn virtual_inbound(ports: &[InboundPort]) -> Listener {
    let chains = ports
        .iter()
        .map(|p| {
            let cluster = inbound_cluster_name(p.port);
            let filter = if p.protocol.is_http() {
                http_connection_manager(
                    &cluster,
                    RouteSpecifier::RouteConfig(inbound_route(&cluster)),
                )
            } else {
                tcp_proxy_filter(&cluster, &cluster)
            };
            FilterChain {
                name: cluster.clone(),
                filter_chain_match: Some(FilterChainMatch {
                    destination_port: Some(UInt32Value {
                        value: u32::from(p.port),
                    }),
                    ..Default::default()
                }),
                filters: vec![filter],
                ..Default::default()
            }
        })
        .collect();
    Listener {
        name: VIRTUAL_INBOUND.into(),
        address: Some(socket("0.0.0.0", meshd_api::names::PORT_INBOUND_CAPTURE)),
        listener_filters: vec![original_dst_filter()],
        filter_chains: chains,
        default_filter_chain: Some(FilterChain {
            name: INBOUND_PASSTHROUGH_CLUSTER.into(),
            filters: vec![tcp_proxy_filter(
                INBOUND_PASSTHROUGH_CLUSTER,
                INBOUND_PASSTHROUGH_CLUSTER,
            )],
            ..Default::default()
        }),
        traffic_direction: TrafficDirection::Inbound as i32,
        ..Default::default()
    }
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
