//! A VirtualService's `tcp[]` for one service port, Istio's way (`core/networkfilter.go`): in route
//! order, a route whose match fits the port (no match fits every port) takes the chain's addresses
//! its `destinationSubnets` cover (none: all of them) that no earlier route took, as a chain's
//! `tcp_proxy` to one cluster or weighted clusters (weight 0 dropped); what is left goes to the
//! host's own cluster ([`tcp_chains`]). A Service's VIP is one address: a subnet either holds it or
//! not; a ServiceEntry's CIDR may be split by narrower subnets (Envoy picks the longest prefix).
//! A match whose `sourceLabels` the proxy's pod does not carry, or whose `sourceNamespace` is not the
//! pod's, does not fit (per-proxy views: `translator::variants`). A gateway's TCP and `tls[]`
//! passthrough routes use the first route that fits ([`tcp_filter`]) and the same destinations
//! ([`l4_filter`]).

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use meshd_api::networking::VirtualServiceSpec;
use meshd_api::networking::virtual_service::RouteDestination;

use super::cidrs::{contains, intersect, prefix};
use super::routes::RouteContext;
use crate::envoy::pack;
use envoy_types::pb::google::protobuf::Duration;
use prost::Message;

/// The `tcp_proxy` filter for a port a VirtualService's `tcp[]` routes, if one does.
pub(crate) fn tcp_filter(
    vs: &VirtualServiceSpec,
    ctx: &RouteContext<'_>,
    stat_prefix: &str,
) -> Option<Filter> {
    let route = vs.tcp.iter().find(|r| {
        r.matches.is_empty()
            || r.matches.iter().any(|m| {
                m.port.is_none_or(|p| p == u32::from(ctx.port))
                    && m.destination_subnets.is_empty()
                    && ctx
                        .source
                        .selected_by(&m.source_labels, m.source_namespace.as_deref())
            })
    })?;
    l4_filter(&route.route, ctx, stat_prefix)
}

/// One chain of a TCP port: the addresses it matches (empty: any address) and its `tcp_proxy`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TcpChain {
    pub ranges: Vec<CidrRange>,
    pub filter: Filter,
}

/// The chains of a TCP port on `addresses` (empty: any address), covering all of them: `vs`'s
/// `tcp[]` routes (when a VirtualService routes the host), then `own` (the host's cluster) for the
/// addresses no route took whole.
pub(crate) fn tcp_chains(
    vs: Option<(&VirtualServiceSpec, &RouteContext<'_>)>,
    addresses: &[CidrRange],
    stat_prefix: &str,
    own: impl FnOnce() -> Filter,
) -> Vec<TcpChain> {
    // Any address is both families' whole space, given back as "no ranges".
    let all: Vec<CidrRange> = if addresses.is_empty() {
        ["0.0.0.0/0", "::/0"]
            .iter()
            .filter_map(|a| prefix(a))
            .collect()
    } else {
        addresses.to_vec()
    };
    let mut taken: Vec<CidrRange> = Vec::new();
    let mut out = Vec::new();
    let routes = vs
        .into_iter()
        .flat_map(|(vs, ctx)| vs.tcp.iter().map(move |r| (r, ctx)));
    for (route, ctx) in routes {
        let mut ranges: Vec<CidrRange> = if route.matches.is_empty() {
            all.clone()
        } else {
            Vec::new()
        };
        let fitting = route.matches.iter().filter(|m| {
            m.port.is_none_or(|p| p == u32::from(ctx.port))
                && ctx
                    .source
                    .selected_by(&m.source_labels, m.source_namespace.as_deref())
        });
        for m in fitting {
            let part = if m.destination_subnets.is_empty() {
                all.clone()
            } else {
                intersect(&all, &m.destination_subnets)
            };
            for r in part {
                if !ranges.contains(&r) {
                    ranges.push(r);
                }
            }
        }
        ranges.retain(|r| !taken.iter().any(|t| contains(t, r)));
        if ranges.is_empty() {
            continue;
        }
        let Some(filter) = l4_filter(&route.route, ctx, stat_prefix) else {
            continue;
        };
        taken.extend(ranges.iter().cloned());
        out.push(TcpChain { ranges, filter });
    }
    let rest: Vec<CidrRange> = all
        .iter()
        .filter(|a| !taken.iter().any(|t| contains(t, a)))
        .cloned()
        .collect();
    if !rest.is_empty() {
        out.push(TcpChain {
            ranges: rest,
            filter: own(),
        });
    }
    if addresses.is_empty() {
        for c in &mut out {
            if c.ranges == all {
                c.ranges.clear();
            }
        }
    }
    out
}

/// `filter` (a `tcp_proxy`) closing connections idle for `idle` (DestinationRule
/// `connectionPool.tcp.idleTimeout`; Envoy's default is 1 h).
pub(crate) fn with_idle_timeout(filter: Filter, idle: Option<Duration>) -> Filter {
    let Some(idle) = idle else { return filter };
    let Some(filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
        return filter;
    };
    let Ok(mut proxy) = TcpProxy::decode(any.value.as_slice()) else {
        return filter;
    };
    proxy.idle_timeout = Some(idle);
    Filter {
        name: filter.name,
        config_type: Some(filter::ConfigType::TypedConfig(pack(&proxy))),
    }
}

/// The `tcp_proxy` to an L4 route's destinations (one cluster, or weighted clusters without the
/// weight-0 ones); `None` when no destination is left. With the context's DestinationRules (a
/// gateway's), the first destination's `tcp.idleTimeout` is its idle timeout, as Istio's gateways;
/// a sidecar's chains take their host's ([`super::service_tcp_chains`]).
pub(crate) fn l4_filter(
    route: &[RouteDestination],
    ctx: &RouteContext<'_>,
    stat_prefix: &str,
) -> Option<Filter> {
    let live: Vec<_> = route
        .iter()
        .filter(|d| route.len() == 1 || d.weight.unwrap_or(0) > 0)
        .collect();
    let cluster_specifier = match live.as_slice() {
        [] => return None,
        [one] => tcp_proxy::ClusterSpecifier::Cluster(ctx.cluster(&one.destination)),
        many => tcp_proxy::ClusterSpecifier::WeightedClusters(tcp_proxy::WeightedCluster {
            clusters: many
                .iter()
                .map(|d| tcp_proxy::weighted_cluster::ClusterWeight {
                    name: ctx.cluster(&d.destination),
                    weight: d.weight.and_then(|w| u32::try_from(w).ok()).unwrap_or(0),
                    ..Default::default()
                })
                .collect(),
        }),
    };
    let proxy = TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(cluster_specifier),
        idle_timeout: live.first().and_then(|d| ctx.idle_timeout(&d.destination)),
        ..Default::default()
    };
    Some(Filter {
        name: "envoy.filters.network.tcp_proxy".to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack(&proxy))),
    })
}

#[cfg(test)]
#[path = "tcp_tests.rs"]
mod tests;
