//! The proxy-independent half of the translation: every Service port's cluster, load assignment and route,
//! and the `virtualOutbound` listener that dispatches captured connections by original destination VIP:port.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    BindConfig, CidrRange, HealthStatus, Http2ProtocolOptions, SocketAddress, TrafficDirection,
    socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, Listener, ListenerFilter, filter, listener_filter,
};
use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use envoy_types::pb::google::protobuf::UInt32Value;
use meshd_api::mesh::OutboundTrafficPolicy;

use crate::envoy::{ads, pack, seconds, socket, tcp_proxy_filter};
use crate::facts::{EndpointSlice, ObjectKey, ServicePort};
use crate::naming::*;
use crate::protocol::Protocol;
use crate::traffic::sni::{SniRoute, l4_chain, tls_chains};
use crate::traffic::tcp::TcpChain;

/// One Service port as the builders see it: the Service's names and VIPs, and the port.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PortView<'a> {
    pub service: &'a ObjectKey,
    pub fqdn: &'a str,
    /// Cluster IPs; empty for headless Services (no VIP to dispatch on).
    pub vips: &'a [String],
    pub port: &'a ServicePort,
    pub cluster: &'a str,
}

/// The EDS answer for one service port: ready endpoints (ready true or unset) as HEALTHY, terminating
/// but still serving ones as DRAINING (no new requests, open ones finish), everything else left out.
pub(crate) fn load_assignment<'a>(
    view: &PortView<'_>,
    slices: impl Iterator<Item = &'a EndpointSlice>,
) -> ClusterLoadAssignment {
    let mut hosts: BTreeMap<(&str, u16), HealthStatus> = BTreeMap::new();
    for slice in slices {
        let port = slice.ports.iter().find(|p| p.name == view.port.name);
        let Some(port) = port.map(|p| p.port) else {
            continue;
        };
        for ep in &slice.endpoints {
            let health = match (ep.ready, ep.terminating && ep.serving) {
                (true, _) => HealthStatus::Healthy,
                (false, true) => HealthStatus::Draining,
                (false, false) => continue,
            };
            for addr in &ep.addresses {
                let entry = hosts.entry((addr.as_str(), port)).or_insert(health);
                if health == HealthStatus::Healthy {
                    *entry = health;
                }
            }
        }
    }
    let lb_endpoints = hosts
        .into_iter()
        .map(|((ip, port), health)| LbEndpoint {
            health_status: health as i32,
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(socket(ip, port)),
                ..Default::default()
            })),
            ..Default::default()
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: view.cluster.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `outbound|<port>||<fqdn>`: EDS over ADS, HTTP/2 upstream for http2/grpc ports.
pub(crate) fn outbound_cluster(view: &PortView<'_>) -> Cluster {
    let mut cluster = Cluster {
        name: view.cluster.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: view.cluster.to_string(),
        }),
        connect_timeout: Some(seconds(10)),
        lb_policy: cluster::LbPolicy::LeastRequest as i32,
        ..Default::default()
    };
    if view.port.protocol.is_http2() {
        set_http2(&mut cluster);
    }
    cluster
}

pub(crate) fn set_http2(cluster: &mut Cluster) {
    let options = HttpProtocolOptions {
        upstream_protocol_options: Some(http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
            http_protocol_options::ExplicitHttpConfig {
                protocol_config: Some(
                    http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                        Http2ProtocolOptions::default(),
                    ),
                ),
            },
        )),
        ..Default::default()
    };
    cluster.typed_extension_protocol_options.insert(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
        pack(&options),
    );
}

/// The clusters every proxy has besides the services': passthrough, blackhole, inbound passthrough.
pub(crate) fn special_clusters() -> Vec<Cluster> {
    let original_dst = |name: &str| Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(seconds(10)),
        ..Default::default()
    };
    let mut inbound = original_dst(INBOUND_PASSTHROUGH_CLUSTER);
    inbound.upstream_bind_config = Some(inbound_bind_config());
    let blackhole = Cluster {
        name: BLACKHOLE_CLUSTER.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        connect_timeout: Some(seconds(10)),
        ..Default::default()
    };
    vec![blackhole, inbound, original_dst(PASSTHROUGH_CLUSTER)]
}

/// Envoy's connections to the local app come from 127.0.0.6, which the capture rules let through.
pub(crate) fn inbound_bind_config() -> BindConfig {
    BindConfig {
        source_address: Some(SocketAddress {
            address: INBOUND_PASSTHROUGH_SOURCE.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(0)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Route for one HTTP service port: a virtual host answering to the service's short, namespaced and
/// full names (and its VIPs); `routes` when a VirtualService routes the port (an unmatched request gets
/// 404), else everything to the service's cluster with the default retry policy and no route timeout
/// (Envoy's default is 15 s; meshd, like Istio, leaves timeouts to the app unless configured).
pub(crate) fn route_configuration(
    view: &PortView<'_>,
    routes: Option<Vec<Route>>,
) -> RouteConfiguration {
    let (svc, ns) = (&view.service.name, &view.service.namespace);
    let mut domains = vec![
        view.fqdn.to_string(),
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}"),
        svc.clone(),
    ];
    domains.extend(view.vips.iter().map(|ip| {
        if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.clone()
        }
    }));
    let routes =
        routes.unwrap_or_else(|| vec![crate::traffic::routes::default_route(view.cluster, None)]);
    RouteConfiguration {
        name: route_name(view.fqdn, view.port.port),
        virtual_hosts: vec![VirtualHost {
            name: route_name(view.fqdn, view.port.port),
            domains,
            routes,
            ..Default::default()
        }],
        validate_clusters: Some(envoy_types::pb::google::protobuf::BoolValue { value: false }),
        ignore_port_in_host_matching: true,
        ..Default::default()
    }
}

pub(crate) fn http_connection_manager(
    stat_prefix: &str,
    routes: http_connection_manager::RouteSpecifier,
) -> Filter {
    hcm_filter(&connection_manager(stat_prefix, routes))
}

/// The HTTP connection manager as [`http_connection_manager`] packs it, for a caller to adjust.
pub(crate) fn connection_manager(
    stat_prefix: &str,
    routes: http_connection_manager::RouteSpecifier,
) -> HttpConnectionManager {
    HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        codec_type: http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(routes),
        // The fault filter (empty) so that a route's fault config takes effect, as Istio has it.
        http_filters: vec![HttpFilter {
            name: crate::traffic::routes::FAULT_FILTER.into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack(
                &envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault::default(),
            ))),
            ..Default::default()
        }, HttpFilter {
            name: crate::traffic::routes::CORS_FILTER.into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack(
                &envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors::default(),
            ))),
            ..Default::default()
        }, HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack(
                &Router::default(),
            ))),
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(crate) fn hcm_filter(hcm: &HttpConnectionManager) -> Filter {
    Filter {
        name: "envoy.filters.network.http_connection_manager".into(),
        config_type: Some(filter::ConfigType::TypedConfig(pack(hcm))),
    }
}

pub(crate) fn original_dst_filter() -> ListenerFilter {
    ListenerFilter {
        name: "envoy.filters.listener.original_dst".into(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(pack(
            &OriginalDst::default(),
        ))),
        ..Default::default()
    }
}

pub(crate) fn cidr(ip: &str) -> CidrRange {
    let len = if ip.contains(':') { 128 } else { 32 };
    CidrRange {
        address_prefix: ip.to_string(),
        prefix_len: Some(UInt32Value { value: len }),
    }
}

/// `virtualOutbound` on 15001: the original destination picks a filter chain per service VIP:port; what
/// no service claims goes to the passthrough (ALLOW_ANY) or the blackhole (REGISTRY_ONLY). `views` in
/// (namespace, service, port) order: the first to claim a VIP:port keeps it.
/// `tcp` gives a TCP port's chains on its VIPs (a VirtualService's `tcp[]` routes, the port's own
/// cluster); `sni` a TLS/HTTPS port's `tls[]` routes, chains by SNI before those.
pub(crate) fn virtual_outbound<'a>(
    views: impl Iterator<Item = PortView<'a>>,
    policy: OutboundTrafficPolicy,
    tcp: &dyn Fn(&PortView<'_>, &[CidrRange]) -> Vec<TcpChain>,
    sni: &dyn Fn(&PortView<'_>, &[CidrRange]) -> Vec<SniRoute>,
    warnings: &mut Vec<String>,
) -> Listener {
    let mut claimed: BTreeSet<(&str, u16)> = BTreeSet::new();
    let mut chains = Vec::new();
    for view in views {
        let port = view.port.port;
        let vips: Vec<&String> = view
            .vips
            .iter()
            .filter(|ip| claimed.insert((ip.as_str(), port)))
            .collect();
        if vips.len() < view.vips.len() {
            warnings.push(format!(
                "Service {}/{} port {}: its VIP is already claimed by another Service; skipped",
                view.service.namespace, view.service.name, port
            ));
        }
        if vips.is_empty() {
            continue;
        }
        let stat_prefix = view.cluster;
        let name = route_name(view.fqdn, port);
        let ranges: Vec<CidrRange> = vips.iter().map(|ip| cidr(ip)).collect();
        if view.port.protocol.is_http() {
            let filter = http_connection_manager(
                stat_prefix,
                http_connection_manager::RouteSpecifier::Rds(Rds {
                    config_source: Some(ads()),
                    route_config_name: route_name(view.fqdn, port),
                }),
            );
            chains.push(l4_chain(name, port, ranges, Vec::new(), filter));
            continue;
        }
        let tls = matches!(view.port.protocol, Protocol::Tls | Protocol::Https);
        for (k, group) in tcp(&view, &ranges).into_iter().enumerate() {
            let name = if k == 0 {
                name.clone()
            } else {
                format!("{name}.{k}")
            };
            let routes = if tls {
                sni(&view, &group.ranges)
            } else {
                Vec::new()
            };
            chains.extend(tls_chains(
                &name,
                port,
                &group.ranges,
                routes,
                Vec::new(),
                || group.filter,
            ));
        }
    }
    let fallback = match policy {
        OutboundTrafficPolicy::AllowAny => PASSTHROUGH_CLUSTER,
        OutboundTrafficPolicy::RegistryOnly => BLACKHOLE_CLUSTER,
    };
    Listener {
        name: VIRTUAL_OUTBOUND.into(),
        address: Some(socket("0.0.0.0", meshd_api::names::PORT_OUTBOUND_CAPTURE)),
        listener_filters: vec![original_dst_filter()],
        filter_chains: chains,
        default_filter_chain: Some(FilterChain {
            name: fallback.into(),
            filters: vec![tcp_proxy_filter(fallback, fallback)],
            ..Default::default()
        }),
        traffic_direction: TrafficDirection::Outbound as i32,
        ..Default::default()
    }
}
