//! Traffic management (SPEC §8) in the translation: which accepted VirtualService routes a Service's
//! host, and its HTTP routes ([`routes`], [`matches`]). Only versions in force (`configs`) are read.
//!
//! Subsets are their own EDS clusters ([`subsets`]). Not yet: DestinationRule traffic policies, CORS, TCP/TLS routes,
//! ServiceEntry listeners; `exportTo` and `sourceLabels` are not applied per proxy (the routes are
//! shared by every proxy).

mod matches;
pub(crate) mod routes;
pub(crate) mod subsets;

use envoy_types::pb::envoy::config::route::v3::Route;
use meshd_api::networking::VirtualServiceSpec;
use meshd_api::validate::references::{age_order, host_matches, resolve_host};
use meshd_api::validate::verdicts::binds_mesh;

use crate::configs::Configs;
use crate::facts::{Fact, FactKind};
use routes::{RouteContext, http_routes};

/// The accepted VirtualService bound to sidecars (`mesh`) that routes `fqdn`, its namespace: the
/// oldest when several do (the verdicts refuse the ones it outranks everywhere).
pub(crate) fn virtual_service_for<'a>(
    configs: &'a Configs,
    fqdn: &str,
    domain: &str,
) -> Option<(&'a str, &'a VirtualServiceSpec)> {
    configs
        .in_force(FactKind::VirtualService)
        .filter_map(|(key, fact)| match fact {
            Fact::VirtualService(c) => Some((key, c)),
            _ => None,
        })
        .filter(|(key, c)| {
            binds_mesh(&c.spec)
                && c.spec
                    .hosts
                    .iter()
                    .any(|h| host_matches(&resolve_host(h, &key.namespace, domain), fqdn))
        })
        .min_by(|(a, ca), (b, cb)| {
            age_order(ca.created, &a.namespace, &a.name).cmp(&age_order(
                cb.created,
                &b.namespace,
                &b.name,
            ))
        })
        .map(|(key, c)| (key.namespace.as_str(), &c.spec))
}

/// The routes of a service port a VirtualService routes, or `None` (the default route applies).
pub(crate) fn service_routes(
    configs: &Configs,
    fqdn: &str,
    port: u16,
    domain: &str,
    ports_of: &dyn Fn(&str) -> Option<Vec<u16>>,
) -> Option<Vec<Route>> {
    let (namespace, vs) = virtual_service_for(configs, fqdn, domain)?;
    let ctx = RouteContext {
        namespace,
        domain,
        port,
        ports_of,
        consistent_hash: false,
    };
    Some(http_routes(&vs.http, &ctx))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
