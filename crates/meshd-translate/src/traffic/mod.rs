//! Traffic management (SPEC §8) in the translation: which accepted VirtualService routes a Service's
//! host, and its HTTP routes ([`routes`], [`matches`]). Only versions in force (`configs`) are read.
//!
//! Subsets are their own EDS clusters ([`subsets`]); DestinationRule policies go on the clusters
//! ([`policy`]), their `tls` with the endpoints ([`tls`]); `tcp[]` routes are the port's `tcp_proxy`s,
//! by `destinationSubnets` ([`tcp`], [`cidrs`]), `tls[]` routes chains by SNI before them ([`sni`]);
//! ServiceEntries become clusters, routes and outbound chains ([`service_entry`]). Which
//! VirtualService a proxy sees (`exportTo`) and which matches apply to it (`sourceLabels`,
//! `sourceNamespace`): [`source`]; which DestinationRules apply to a proxy's clusters (`exportTo`,
//! Istio's per-namespace lookup): [`rules_for`]; a proxy whose view differs gets its own routes,
//! chains and clusters.

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

use envoy_types::pb::envoy::config::route::v3::Route;
use meshd_api::names::SYSTEM_NAMESPACE;
use meshd_api::networking::DestinationRuleSpec;
use meshd_api::networking::destination_rule::TrafficPolicy;
use meshd_api::validate::references::{Export, age_order, resolve_host};

use crate::configs::Configs;
use crate::facts::{Fact, FactKind, ObjectKey};
use routes::{RouteContext, http_routes};
pub(crate) use source::Source;

/// Who asks for a host's DestinationRules: proxies of `proxy_namespace` (`""`: the shared view),
/// for a host whose Service or ServiceEntry is of `service_namespace`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RuleLookup<'a> {
    pub service_namespace: &'a str,
    pub proxy_namespace: &'a str,
}

/// The DestinationRules that apply to `fqdn` for `lookup`'s proxies, oldest first, and their
/// namespace: Istio's lookup (`PushContext.destinationRule`), where the rules of one namespace for one
/// host merge (the verdicts give them one `exportTo`). First the proxy's own namespace's rules, when
/// exported to it (`~` or only other namespaces: not even there); in the root namespace
/// (`meshd-system`) only its rules private to it. Then the service namespace's rules exported to
/// the proxy's namespace, then the root namespace's. The shared view (no namespace) gets the service
/// namespace's public rules, else the root namespace's.
pub(crate) fn rules_for<'a>(
    configs: &'a Configs,
    fqdn: &str,
    lookup: RuleLookup<'_>,
) -> (Option<&'a str>, Vec<&'a DestinationRuleSpec>) {
    choose_rules(configs.for_host(FactKind::DestinationRule, fqdn), lookup)
}

/// [`rules_for`] among a host's rules in force (`Configs::for_host`).
fn choose_rules<'a>(
    for_host: Vec<(&'a ObjectKey, &'a Fact)>,
    lookup: RuleLookup<'_>,
) -> (Option<&'a str>, Vec<&'a DestinationRuleSpec>) {
    let mut rules: Vec<_> = for_host
        .into_iter()
        .filter_map(|(key, fact)| match fact {
            Fact::DestinationRule(c) => Some((key, c)),
            _ => None,
        })
        .collect();
    if rules.is_empty() {
        return (None, Vec::new());
    }
    let proxy = lookup.proxy_namespace;
    // Whether the rules of `ns` for the host apply to the proxy: `exportTo` is one per namespace.
    let applies = |ns: &str, private_only: bool| {
        rules
            .iter()
            .find(|(k, _)| k.namespace == ns)
            .is_some_and(|(_, c)| {
                let export_to = &c.spec.export_to;
                if private_only {
                    matches!(export_to.as_slice(), [x] if x == "." || x == ns)
                } else {
                    Export::of(export_to).visible_to(ns, proxy)
                }
            })
    };
    let own = (proxy != SYSTEM_NAMESPACE && applies(proxy, false))
        || (proxy == SYSTEM_NAMESPACE && applies(proxy, true));
    let chosen = if own {
        proxy
    } else if applies(lookup.service_namespace, false) {
        lookup.service_namespace
    } else if applies(SYSTEM_NAMESPACE, false) {
        SYSTEM_NAMESPACE
    } else {
        return (None, Vec::new());
    };
    rules.retain(|(k, _)| k.namespace == chosen);
    rules.sort_by(|(a, ca), (b, cb)| {
        age_order(ca.created, &a.namespace, &a.name).cmp(&age_order(
            cb.created,
            &b.namespace,
            &b.name,
        ))
    });
    let namespace = rules.first().map(|(k, _)| k.namespace.as_str());
    (namespace, rules.into_iter().map(|(_, c)| &c.spec).collect())
}

/// Whether proxies' DestinationRules for a host of `service_namespace` may differ from the shared
/// view's because of this rule of `namespace`: it is restricted, or of another namespace than the
/// service's and the root one (a public rule of the root namespace applies to everyone the
/// service's does not cover, the shared view included).
pub(crate) fn rule_varies(
    spec: &DestinationRuleSpec,
    namespace: &str,
    service_namespace: &str,
) -> bool {
    !Export::of(&spec.export_to).public
        || (namespace != service_namespace && namespace != SYSTEM_NAMESPACE)
}

/// The namespace of a host's Service (`<name>.<ns>.svc.<domain>`), else of the oldest accepted
/// ServiceEntry naming it (Istio's service namespace), else `""`.
pub(crate) fn host_namespace<'a>(configs: &'a Configs, fqdn: &'a str, domain: &str) -> &'a str {
    let service = crate::naming::service_of_fqdn(fqdn, domain).map(|(_, ns)| ns);
    service.unwrap_or_else(|| {
        configs
            .in_force(FactKind::ServiceEntry)
            .filter_map(|(key, fact)| match fact {
                Fact::ServiceEntry(c) if c.spec.hosts.iter().any(|h| h == fqdn) => {
                    Some(age_order(c.created, &key.namespace, &key.name))
                }
                _ => None,
            })
            .min()
            .map_or("", |(_, namespace, _)| namespace)
    })
}

/// The DestinationRule policy of `fqdn`'s cluster for `port` (and `subset`), if any rule has one.
pub(crate) fn cluster_policy<'a>(
    configs: &'a Configs,
    fqdn: &str,
    port: u16,
    subset: Option<&str>,
    lookup: RuleLookup<'_>,
) -> policy::Policy<'a> {
    merged_policy(&rules_for(configs, fqdn, lookup).1, port, subset)
}

/// The policy of one host's rules (oldest first) for `port` and `subset`: the first rule with a
/// `trafficPolicy`, the first subset of that name.
pub(crate) fn merged_policy<'a>(
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
/// timeout): what is in force as sidecars of one namespace see it, a gateway's snapshot of it for
/// gateways.
pub(crate) trait DestinationPolicies {
    fn policy<'s>(&'s self, fqdn: &str, port: u16, subset: Option<&str>) -> policy::Policy<'s>;
}

/// What is in force, as sidecars of `namespace` see it ([`rules_for`] per destination host).
pub(crate) struct SidecarRules<'a> {
    pub configs: &'a Configs,
    pub domain: &'a str,
    pub namespace: &'a str,
}

impl DestinationPolicies for SidecarRules<'_> {
    fn policy<'s>(&'s self, fqdn: &str, port: u16, subset: Option<&str>) -> policy::Policy<'s> {
        // Most destinations' hosts have no rule: no need to find their namespace.
        let for_host = self.configs.for_host(FactKind::DestinationRule, fqdn);
        if for_host.is_empty() {
            return merged_policy(&[], port, subset);
        }
        let lookup = RuleLookup {
            service_namespace: host_namespace(self.configs, fqdn, self.domain),
            proxy_namespace: self.namespace,
        };
        merged_policy(&choose_rules(for_host, lookup).1, port, subset)
    }
}

/// The DestinationRules of some hosts, as they were in force: what a gateway's routes to those
/// hosts carry from them.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct HostRules(std::collections::BTreeMap<String, Vec<DestinationRuleSpec>>);

impl HostRules {
    /// The rules in force for `hosts` (resolved), oldest first, as the shared view sees them
    /// (gateways get no per-namespace lookup yet).
    pub(crate) fn collect<'h>(
        configs: &Configs,
        domain: &str,
        hosts: impl IntoIterator<Item = &'h str>,
    ) -> Self {
        let mut out = std::collections::BTreeMap::new();
        for fqdn in hosts {
            let lookup = RuleLookup {
                service_namespace: host_namespace(configs, fqdn, domain),
                proxy_namespace: Source::SHARED.namespace,
            };
            let (_, rules) = rules_for(configs, fqdn, lookup);
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

/// The routes of a service port a VirtualService routes for proxies of `source`, or `None` (the
/// default route applies).
pub(crate) fn service_routes(
    configs: &Configs,
    fqdn: &str,
    port: u16,
    domain: &str,
    ports_of: &dyn Fn(&str) -> Option<Vec<u16>>,
    source: Source<'_>,
    service_namespace: &str,
) -> Option<Vec<Route>> {
    let lookup = RuleLookup {
        service_namespace,
        proxy_namespace: source.namespace,
    };
    let hash = cluster_policy(configs, fqdn, port, None, lookup).consistent_hash();
    let Some((key, vs)) = source::virtual_service_for(configs, fqdn, source) else {
        let cluster = crate::naming::outbound_cluster_name(port, fqdn);
        return hash.map(|h| vec![routes::default_route(&cluster, Some(h))]);
    };
    let rules = SidecarRules {
        configs,
        domain,
        namespace: source.namespace,
    };
    let ctx = RouteContext {
        namespace: &key.namespace,
        domain,
        port,
        ports_of,
        hash: Some(&rules),
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
    /// The namespace of the host's Service or ServiceEntry (where its DestinationRules are looked up).
    pub namespace: &'a str,
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
        let lookup = RuleLookup {
            service_namespace: self.namespace,
            proxy_namespace: self.source.namespace,
        };
        cluster_policy(self.configs, self.fqdn, self.port, None, lookup).tcp_idle_timeout()
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
