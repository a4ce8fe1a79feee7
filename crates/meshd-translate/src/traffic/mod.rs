//! Traffic management (SPEC §8) in the translation: which accepted VirtualService routes a Service's
//! host, and its HTTP routes ([`routes`], [`matches`]). Only versions in force (`configs`) are read.
//!
//! Subsets are their own EDS clusters ([`subsets`]); DestinationRule policies go on the clusters
//! ([`policy`]), their `tls` with the endpoints ([`tls`]); `tcp[]` routes are the port's `tcp_proxy`s,
//! by `destinationSubnets` ([`tcp`], [`cidrs`]), `tls[]` routes chains by SNI before them ([`sni`]);
//! ServiceEntries become clusters, routes and outbound chains ([`service_entry`]). Which
//! VirtualService a proxy sees (`exportTo`) and which matches apply to it (`sourceLabels`,
//! `sourceNamespace`): [`source`]; a proxy whose view differs gets its own routes and chains. Not yet:
//! DestinationRule `exportTo` (their policies are every proxy's).

pub(crate) mod cidrs;
pub(crate) mod matches;
pub(crate) mod policy;
pub(crate) mod routes;
pub(crate) mod service_entry;
pub(crate) mod sni;
pub(crate) mod source;
pub(crate) mod subsets;
pub(crate) mod tcp;
pub(crate) mod tls;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::route::v3::Route;
use meshd_api::networking::DestinationRuleSpec;
use meshd_api::networking::destination_rule::{ClientTlsSettings, TrafficPolicy};
use meshd_api::validate::references::{age_order, resolve_host};

use crate::configs::Configs;
use crate::facts::{Fact, FactKind};
use routes::{RouteContext, http_routes};
pub(crate) use source::Source;

/// The accepted DestinationRules for `fqdn`, oldest first (rules of one host merge).
fn rules_for<'a>(configs: &'a Configs, fqdn: &str) -> Vec<&'a DestinationRuleSpec> {
    let mut rules: Vec<_> = configs
        .for_host(FactKind::DestinationRule, fqdn)
        .into_iter()
        .filter_map(|(key, fact)| match fact {
            Fact::DestinationRule(c) => Some((key, c)),
            _ => None,
        })
        .collect();
    rules.sort_by(|(a, ca), (b, cb)| {
        age_order(ca.created, &a.namespace, &a.name).cmp(&age_order(
            cb.created,
            &b.namespace,
            &b.name,
        ))
    });
    rules.into_iter().map(|(_, c)| &c.spec).collect()
}

/// The DestinationRule policy of `fqdn`'s cluster for `port` (and `subset`), if any rule has one.
pub(crate) fn cluster_policy<'a>(
    configs: &'a Configs,
    fqdn: &str,
    port: u16,
    subset: Option<&str>,
) -> policy::Policy<'a> {
    merged_policy(&rules_for(configs, fqdn), port, subset)
}

/// The policy of one host's rules (oldest first) for `port` and `subset`: the first rule with a
/// `trafficPolicy`, the first subset of that name.
fn merged_policy<'a>(
    rules: &[&'a DestinationRuleSpec],
    port: u16,
    subset: Option<&str>,
) -> policy::Policy<'a> {
    let rule: Option<&TrafficPolicy> = rules.iter().find_map(|r| r.traffic_policy.as_ref());
    let own = subset.and_then(|name| {
        rules
            .iter()
            .flat_map(|r| &r.subsets)
            .find(|s| s.name == name)
            .and_then(|s| s.traffic_policy.as_ref())
    });
    policy::Policy::of(rule, own, port)
}

/// Where the routes find their destinations' DestinationRule policies (hash policy, TCP idle
/// timeout): what is in force for sidecars, a gateway's snapshot of it for gateways.
pub(crate) trait DestinationPolicies {
    fn policy<'s>(&'s self, fqdn: &str, port: u16, subset: Option<&str>) -> policy::Policy<'s>;
}

impl DestinationPolicies for Configs {
    fn policy<'s>(&'s self, fqdn: &str, port: u16, subset: Option<&str>) -> policy::Policy<'s> {
        cluster_policy(self, fqdn, port, subset)
    }
}

/// The DestinationRules of some hosts, as they were in force: what a gateway's routes to those
/// hosts carry from them.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct HostRules(std::collections::BTreeMap<String, Vec<DestinationRuleSpec>>);

impl HostRules {
    /// The rules in force for `hosts` (resolved), oldest first.
    pub(crate) fn collect<'h>(configs: &Configs, hosts: impl IntoIterator<Item = &'h str>) -> Self {
        let mut out = std::collections::BTreeMap::new();
        for fqdn in hosts {
            let rules = rules_for(configs, fqdn);
            if !rules.is_empty() {
                out.insert(fqdn.to_string(), rules.into_iter().cloned().collect());
            }
        }
        Self(out)
    }
}

impl DestinationPolicies for HostRules {
    fn policy<'s>(&'s self, fqdn: &str, port: u16, subset: Option<&str>) -> policy::Policy<'s> {
        let rules: Vec<&DestinationRuleSpec> = self.0.get(fqdn).into_iter().flatten().collect();
        merged_policy(&rules, port, subset)
    }
}

/// Applies `fqdn`'s DestinationRule policy to one of its clusters; its `tls`, which goes on with
/// the endpoints (`Translator::secure`).
pub(crate) fn apply_policy<'a>(
    cluster: &mut Cluster,
    configs: &'a Configs,
    fqdn: &str,
    port: u16,
    subset: Option<&str>,
) -> Option<&'a ClientTlsSettings> {
    let policy = cluster_policy(configs, fqdn, port, subset);
    policy::apply(cluster, &policy);
    policy.tls
}

/// The routes of a service port a VirtualService routes for proxies of `source`, or `None` (the
/// default route applies).
pub(crate) fn service_routes(
    configs: &Configs,
    fqdn: &str,
    port: u16,
    domain: &str,
    ports_of: &dyn Fn(&str) -> Option<Vec<u16>>,
    source: Source<'_>,
) -> Option<Vec<Route>> {
    let hash = cluster_policy(configs, fqdn, port, None).consistent_hash();
    let Some((key, vs)) = source::virtual_service_for(configs, fqdn, source) else {
        let cluster = crate::naming::outbound_cluster_name(port, fqdn);
        return hash.map(|h| vec![routes::default_route(&cluster, Some(h))]);
    };
    let ctx = RouteContext {
        namespace: &key.namespace,
        domain,
        port,
        ports_of,
        hash: Some(configs),
        source,
    };
    Some(http_routes(&vs.http, &ctx))
}

/// The hosts of the VirtualServices in force that route to one of `moved` (a host whose ports
/// changed): a destination without a port takes its host's only port, so their routes may differ.
pub(crate) fn routing_to(
    configs: &Configs,
    moved: &std::collections::BTreeSet<String>,
    domain: &str,
) -> crate::configs::Touched {
    let mut touched = crate::configs::Touched::default();
    for (key, fact) in configs.in_force(FactKind::VirtualService) {
        let Fact::VirtualService(c) = fact else {
            continue;
        };
        let vs = &c.spec;
        let http = vs.http.iter().flat_map(|r| {
            r.route
                .iter()
                .map(|d| &d.destination)
                .chain(&r.mirror)
                .chain(r.mirrors.iter().map(|m| &m.destination))
        });
        let tcp = vs
            .tcp
            .iter()
            .flat_map(|r| r.route.iter().map(|d| &d.destination));
        let tls = vs
            .tls
            .iter()
            .flat_map(|r| r.route.iter().map(|d| &d.destination));
        let routes_to_moved = http
            .chain(tcp)
            .chain(tls)
            .any(|d| moved.contains(&resolve_host(&d.host, &key.namespace, domain)));
        if routes_to_moved {
            for h in &vs.hosts {
                let h = resolve_host(h, &key.namespace, domain);
                touched.all |= h.starts_with('*');
                touched.hosts.insert(h);
            }
        }
    }
    touched
}

/// One host port as a proxy of `source` sees it: what its TCP and SNI chains are built from.
pub(crate) struct HostPort<'a> {
    pub configs: &'a Configs,
    pub domain: &'a str,
    pub ports_of: &'a dyn Fn(&str) -> Option<Vec<u16>>,
    pub fqdn: &'a str,
    pub port: u16,
    pub source: Source<'a>,
}

impl HostPort<'_> {
    fn context<'c>(&'c self, namespace: &'c str) -> RouteContext<'c> {
        RouteContext {
            namespace,
            domain: self.domain,
            port: self.port,
            ports_of: self.ports_of,
            hash: None,
            source: self.source,
        }
    }

    fn idle_timeout(&self) -> Option<envoy_types::pb::google::protobuf::Duration> {
        cluster_policy(self.configs, self.fqdn, self.port, None).tcp_idle_timeout()
    }
}

/// The chains of a TCP (or TLS) port on `addresses` (empty: any address): a VirtualService's
/// `tcp[]` routes, then `cluster` (the port's own) for the rest; each `tcp_proxy` with its
/// DestinationRule's `connectionPool.tcp.idleTimeout`.
pub(crate) fn service_tcp_chains(
    at: &HostPort<'_>,
    addresses: &[envoy_types::pb::envoy::config::core::v3::CidrRange],
    cluster: &str,
) -> Vec<tcp::TcpChain> {
    let idle = at.idle_timeout();
    let vs = source::virtual_service_for(at.configs, at.fqdn, at.source);
    let ctx = vs.map(|(key, _)| at.context(&key.namespace));
    let routed = vs.zip(ctx.as_ref()).map(|((_, vs), ctx)| (vs, ctx));
    let mut chains = tcp::tcp_chains(routed, addresses, cluster, || {
        crate::envoy::tcp_proxy_filter(cluster, cluster)
    });
    for c in &mut chains {
        c.filter = tcp::with_idle_timeout(std::mem::take(&mut c.filter), idle);
    }
    chains
}

/// The SNI chains of a TLS/HTTPS port on `addresses` a VirtualService's `tls[]` routes.
pub(crate) fn service_sni_routes(
    at: &HostPort<'_>,
    addresses: &[envoy_types::pb::envoy::config::core::v3::CidrRange],
    stat_prefix: &str,
) -> Vec<sni::SniRoute> {
    let Some((key, vs)) = source::virtual_service_for(at.configs, at.fqdn, at.source) else {
        return Vec::new();
    };
    let idle = at.idle_timeout();
    let mut routes = sni::sni_routes(vs, &at.context(&key.namespace), addresses, stat_prefix);
    for r in &mut routes {
        r.filter = tcp::with_idle_timeout(std::mem::take(&mut r.filter), idle);
        r.vs = Some(key.clone());
    }
    routes
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
