//! A VirtualService's `tls[]` on a sidecar's TLS or HTTPS port, Istio's way (`core/tls.go`): each
//! route with a match that fits the port becomes a filter chain by SNI (`server_names` = those
//! matches' `sniHosts`, short names resolved as hosts are) whose `tcp_proxy` goes to the route's
//! destinations ([`super::tcp::l4_filter`]); an SNI an earlier route names stays that route's. A
//! connection whose SNI no route names falls to the port's chain without SNI: its `tcp[]` route, else
//! the host's own cluster (Istio's TCP fall-through). Matches with `sourceLabels` are not applied
//! here (they are per proxy); a match's `destinationSubnets` must hold the chain's addresses.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, FilterChainMatch};
use envoy_types::pb::google::protobuf::UInt32Value;
use meshd_api::networking::VirtualServiceSpec;
use meshd_api::validate::references::resolve_host;

use super::cidrs::within_any;
use super::routes::RouteContext;
use super::tcp::l4_filter;
use crate::facts::ObjectKey;

/// The SNI names the chains of one listener (or one address:port) hold so far.
#[derive(Default)]
pub(crate) struct Claimed {
    names: BTreeSet<String>,
    /// A chain without `server_names` (a `*` host) exists.
    any: bool,
}

impl Claimed {
    /// The `server_names` of a new chain for `hosts` (`*`: every SNI, an empty list): the ones no
    /// earlier chain holds; `None` when nothing is left.
    pub fn claim<'a>(&mut self, hosts: impl IntoIterator<Item = &'a str>) -> Option<Vec<String>> {
        let hosts: Vec<&str> = hosts.into_iter().collect();
        if hosts.contains(&"*") {
            return (!std::mem::replace(&mut self.any, true)).then(Vec::new);
        }
        // SNI is matched without regard to case: one name, one chain.
        let fresh: Vec<String> = hosts
            .into_iter()
            .map(str::to_ascii_lowercase)
            .filter(|h| self.names.insert(h.clone()))
            .collect();
        (!fresh.is_empty()).then_some(fresh)
    }
}

/// One `tls[]` route as a chain: the SNI names it takes (empty: every SNI) and its `tcp_proxy`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SniRoute {
    pub server_names: Vec<String>,
    pub filter: Filter,
    /// The VirtualService whose route it is, when known: a wildcard one over several hosts gives
    /// each host the same routes, and the same SNI from it twice is no conflict.
    pub vs: Option<ObjectKey>,
}

/// The `tls[]` routes of `vs` for the port of `ctx`, in order, for a chain on `addresses` (empty:
/// any address); `stat_prefix` names their `tcp_proxy`s.
pub(crate) fn sni_routes(
    vs: &VirtualServiceSpec,
    ctx: &RouteContext<'_>,
    addresses: &[CidrRange],
    stat_prefix: &str,
) -> Vec<SniRoute> {
    let mut claimed = Claimed::default();
    let mut out = Vec::new();
    for route in &vs.tls {
        let names: Vec<String> = route
            .matches
            .iter()
            .filter(|m| {
                m.port.is_none_or(|p| p == u32::from(ctx.port))
                    && ctx
                        .source
                        .selected_by(&m.source_labels, m.source_namespace.as_deref())
                    && (m.destination_subnets.is_empty()
                        || within_any(addresses, &m.destination_subnets))
            })
            .flat_map(|m| &m.sni_hosts)
            .map(|h| resolve_host(h, ctx.namespace, ctx.domain))
            .collect();
        if names.is_empty() {
            continue;
        }
        let Some(server_names) = claimed.claim(names.iter().map(String::as_str)) else {
            continue;
        };
        if let Some(filter) = l4_filter(&route.route, ctx, stat_prefix) {
            out.push(SniRoute {
                server_names,
                filter,
                vs: None,
            });
        }
    }
    out
}

/// A `virtualOutbound` chain on `port` and `ranges` (empty: any address), by SNI when
/// `server_names` has some.
pub(crate) fn l4_chain(
    name: String,
    port: u16,
    ranges: Vec<CidrRange>,
    server_names: Vec<String>,
    filter: Filter,
) -> FilterChain {
    FilterChain {
        name,
        filter_chain_match: Some(FilterChainMatch {
            destination_port: Some(UInt32Value {
                value: u32::from(port),
            }),
            prefix_ranges: ranges,
            server_names,
            ..Default::default()
        }),
        filters: vec![filter],
        ..Default::default()
    }
}

/// The chains of one TLS port on `ranges`: one per SNI route (named `<name>.tls<i>`), then `<name>`
/// for every other SNI with the `*` route, else `fallback`. Without ranges (a port of any address)
/// the chains match on TLS and `<name>` takes only `own_names` (the host's) that no route took.
pub(crate) fn tls_chains(
    name: &str,
    port: u16,
    ranges: &[CidrRange],
    routes: Vec<SniRoute>,
    own_names: Vec<String>,
    fallback: impl FnOnce() -> Filter,
) -> Vec<FilterChain> {
    let chain = |name: String, server_names: Vec<String>, filter: Filter| {
        let mut c = l4_chain(name, port, ranges.to_vec(), server_names, filter);
        if ranges.is_empty()
            && let Some(m) = c.filter_chain_match.as_mut()
        {
            m.transport_protocol = "tls".into();
        }
        c
    };
    let mut any = None;
    let mut chains = Vec::new();
    for (i, r) in routes.into_iter().enumerate() {
        if r.server_names.is_empty() {
            any.get_or_insert(r.filter);
        } else {
            chains.push(chain(format!("{name}.tls{i}"), r.server_names, r.filter));
        }
    }
    if !ranges.is_empty() {
        chains.push(chain(
            name.to_string(),
            Vec::new(),
            any.unwrap_or_else(fallback),
        ));
        return chains;
    }
    let taken: BTreeSet<&String> = chains
        .iter()
        .filter_map(|c| c.filter_chain_match.as_ref())
        .flat_map(|m| &m.server_names)
        .collect();
    let own: Vec<String> = own_names
        .into_iter()
        .map(|n| n.to_ascii_lowercase())
        .filter(|n| !taken.contains(n))
        .collect();
    if !own.is_empty() {
        chains.push(chain(name.to_string(), own, any.unwrap_or_else(fallback)));
    }
    chains
}

#[cfg(test)]
#[path = "sni_tests.rs"]
mod tests;
