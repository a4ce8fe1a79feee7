//! A VirtualService's `tcp[]` for one service port, Istio's way (`core/networkfilter.go`): the first
//! route whose match fits the port (no match fits every port) becomes the chain's `tcp_proxy`, to one
//! cluster or weighted clusters (weight 0 dropped); a match whose `sourceLabels` the proxy's pod does
//! not carry, or whose `sourceNamespace` is not the pod's, does not fit. Not yet: `destinationSubnets`
//! matches (a route that has them is skipped). A gateway's `tls[]` passthrough routes use the same
//! destinations ([`l4_filter`]).

use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use meshd_api::networking::VirtualServiceSpec;
use meshd_api::networking::virtual_service::RouteDestination;

use super::routes::RouteContext;
use crate::envoy::pack;

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

/// The `tcp_proxy` to an L4 route's destinations (one cluster, or weighted clusters without the
/// weight-0 ones); `None` when no destination is left.
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
        ..Default::default()
    };
    Some(Filter {
        name: "envoy.filters.network.tcp_proxy".to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack(&proxy))),
    })
}
