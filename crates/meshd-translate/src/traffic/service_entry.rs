//! ServiceEntry (SPEC §8) into Envoy, as Istio translates it: one cluster per host and port
//! (`outbound|<port>||<host>`) whose type follows `resolution` (NONE → ORIGINAL_DST, STATIC → EDS,
//! DNS → STRICT_DNS, DNS_ROUND_ROBIN → LOGICAL_DNS), HTTP ports as virtual hosts (so VirtualServices
//! route them) and `virtualOutbound` chains: by `addresses`:port, or for an entry without addresses by
//! the port alone (HTTP by Host, in the shared route `<port>` whose last virtual host is ALLOW_ANY's
//! passthrough or REGISTRY_ONLY's 502; TLS/HTTPS by SNI per host, with `tls_inspector` on those ports
//! only; other TCP only for resolution NONE, "any IP on that port"). Under REGISTRY_ONLY the ports
//! Services proxy as HTTP get the same `<port>` route and chain ([`catch_all_ports`]), so that an
//! unknown address on them is answered 502 (Istio's `0.0.0.0_<port>` listener of every HTTP port).
//! Only versions in force are read; an older entry keeps an address:port another one also claims.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, ListenerFilter, ListenerFilterChainMatchPredicate, listener_filter,
    listener_filter_chain_match_predicate,
};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteConfiguration, VirtualHost, route,
};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::google::protobuf::UInt32Value;
use meshd_api::mesh::OutboundTrafficPolicy;
use meshd_api::networking::service_entry::{Location, Resolution};
use meshd_api::networking::{Protocol as EntryProtocol, ServiceEntrySpec};
use meshd_api::validate::references::age_order;

use crate::configs::Configs;
use crate::envoy::{ads, pack, seconds, socket, tcp_proxy_filter};
use crate::facts::{Config, Fact, FactKind, ObjectKey, ServicePort, TargetPort};
use crate::naming::{BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER, outbound_cluster_name, route_name};
use crate::outbound::{http_connection_manager, set_http2};
use crate::protocol::Protocol;
use crate::traffic::cidrs::{contains, prefix};
use crate::traffic::sni::{SniRoute, l4_chain, tls_chains};
use crate::traffic::tcp::TcpChain;

/// A TCP port's chains on some addresses (none: any address): `tcp[]` routes, the host's cluster.
pub(crate) type Tcp<'s> = dyn Fn(&EntryPort<'_>, &[CidrRange]) -> Vec<TcpChain> + 's;

/// A TLS port's `tls[]` routes on some addresses (none: any address).
pub(crate) type Sni<'s> = dyn Fn(&EntryPort<'_>, &[CidrRange]) -> Vec<SniRoute> + 's;

/// The accepted ServiceEntries, oldest first (the first to claim an address:port keeps it).
pub(crate) fn entries(configs: &Configs) -> Vec<(&ObjectKey, &Arc<Config<ServiceEntrySpec>>)> {
    let mut list: Vec<_> = configs
        .in_force(FactKind::ServiceEntry)
        .filter_map(|(key, fact)| match fact {
            Fact::ServiceEntry(c) => Some((key, c)),
            _ => None,
        })
        .collect();
    list.sort_by_key(|(key, c)| age_order(c.created, &key.namespace, &key.name));
    list
}

/// The port numbers of the accepted ServiceEntry that has `host`, for a route naming it without a port.
pub(crate) fn ports(configs: &Configs, host: &str) -> Option<Vec<u16>> {
    entries(configs)
        .into_iter()
        .find(|(_, c)| c.spec.hosts.iter().any(|h| h == host))
        .map(|(_, c)| {
            c.spec
                .ports
                .iter()
                .filter_map(|p| port_number(p.number))
                .collect()
        })
}

fn port_number(n: u32) -> Option<u16> {
    u16::try_from(n).ok().filter(|p| *p != 0)
}

/// The translation's protocol of an entry port: TCP unless it says an HTTP flavour.
fn protocol(p: Option<EntryProtocol>) -> Protocol {
    match p {
        Some(EntryProtocol::Http) => Protocol::Http,
        Some(EntryProtocol::Http2 | EntryProtocol::GrpcWeb) => Protocol::Http2,
        Some(EntryProtocol::Grpc) => Protocol::Grpc,
        Some(EntryProtocol::Https) => Protocol::Https,
        Some(EntryProtocol::Tls) => Protocol::Tls,
        _ => Protocol::Tcp,
    }
}

/// One host and port of an accepted entry, as its builders see it.
pub(crate) struct EntryPort<'a> {
    pub key: &'a ObjectKey,
    pub spec: &'a ServiceEntrySpec,
    pub host: &'a str,
    /// As a Service port (name, protocol, the endpoints' port), for the shared builders.
    pub port: ServicePort,
    pub cluster: String,
    /// A DestinationRule subset of the host: its name and the endpoint labels it selects.
    pub subset: Option<(String, BTreeMap<String, String>)>,
}

impl<'a> EntryPort<'a> {
    /// The same host and port as one subset's cluster (`outbound|<port>|<subset>|<host>`): the
    /// endpoints carrying the subset's labels (Istio filters DNS and STATIC entries' endpoints so).
    pub fn with_subset(&self, name: &str, labels: &BTreeMap<String, String>) -> EntryPort<'a> {
        EntryPort {
            key: self.key,
            spec: self.spec,
            host: self.host,
            port: self.port.clone(),
            cluster: crate::traffic::subsets::subset_cluster_name(self.port.port, name, self.host),
            subset: Some((name.to_string(), labels.clone())),
        }
    }

    pub fn resolution(&self) -> Resolution {
        self.spec.resolution.unwrap_or_default()
    }

    /// MESH_INTERNAL entries' endpoints may get auto mTLS; MESH_EXTERNAL ones never do (Istio).
    pub fn internal(&self) -> bool {
        self.spec.location == Some(Location::MeshInternal)
    }
}

/// Every host × port of the accepted entries, oldest entry first.
pub(crate) fn entry_ports<'a>(
    configs: &'a Configs,
    source: crate::traffic::Source<'_>,
) -> Vec<EntryPort<'a>> {
    let mut out = Vec::new();
    for (key, c) in entries(configs) {
        // Only the entries exported to the proxy's namespace (the shared view: the public ones).
        if !c.spec.export_to.is_empty()
            && !meshd_api::validate::references::Export::of(&c.spec.export_to)
                .visible_to(&key.namespace, source.namespace)
        {
            continue;
        }
        for host in &c.spec.hosts {
            for p in &c.spec.ports {
                let Some(number) = port_number(p.number) else {
                    continue;
                };
                let target = p.target_port.and_then(port_number).unwrap_or(number);
                out.push(EntryPort {
                    key,
                    spec: &c.spec,
                    host,
                    port: ServicePort {
                        port: number,
                        name: p.name.clone(),
                        protocol: protocol(p.protocol),
                        target_port: TargetPort::Number(target),
                    },
                    cluster: outbound_cluster_name(number, host),
                    subset: None,
                });
            }
        }
    }
    out
}

/// The entry's endpoints on this port: `(address, port, weight)`; the host itself for DNS without
/// endpoints.
fn endpoints(e: &EntryPort<'_>) -> Vec<(String, u16, u32)> {
    let TargetPort::Number(target) = e.port.target_port else {
        return Vec::new();
    };
    if e.spec.endpoints.is_empty() {
        return match e.resolution() {
            Resolution::Dns | Resolution::DnsRoundRobin if !e.host.starts_with('*') => {
                vec![(e.host.to_string(), target, 1)]
            }
            _ => Vec::new(),
        };
    }
    let selected = |labels: &BTreeMap<String, String>| match &e.subset {
        Some((_, want)) => want.iter().all(|(k, v)| labels.get(k) == Some(v)),
        None => true,
    };
    e.spec
        .endpoints
        .iter()
        .filter(|ep| selected(&ep.labels))
        .map(|ep| {
            let port = ep
                .ports
                .get(&e.port.name)
                .and_then(|p| port_number(*p))
                .unwrap_or(target);
            (
                ep.address.clone(),
                port,
                ep.weight.filter(|w| *w > 0).unwrap_or(1),
            )
        })
        .collect()
}

/// The load assignment of an entry's port: its endpoints' addresses (IPs for STATIC, names for DNS).
pub(crate) fn load_assignment(e: &EntryPort<'_>) -> ClusterLoadAssignment {
    let mut eps = endpoints(e);
    if e.resolution() == Resolution::DnsRoundRobin {
        // LOGICAL_DNS takes one endpoint (the verdicts refuse several).
        eps.truncate(1);
    }
    let lb_endpoints = eps
        .into_iter()
        .map(|(address, port, weight)| LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(socket(&address, port)),
                ..Default::default()
            })),
            load_balancing_weight: Some(UInt32Value { value: weight }),
            ..Default::default()
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: e.cluster.clone(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The cluster of an entry's port (before its DestinationRule policy). STATIC clusters are EDS: their
/// assignment is served beside them; DNS clusters carry theirs.
pub(crate) fn cluster(e: &EntryPort<'_>) -> Cluster {
    use cluster::DiscoveryType;
    let typed = |t: DiscoveryType| Some(cluster::ClusterDiscoveryType::Type(t as i32));
    let mut c = Cluster {
        name: e.cluster.clone(),
        connect_timeout: Some(seconds(10)),
        lb_policy: cluster::LbPolicy::LeastRequest as i32,
        ..Default::default()
    };
    match e.resolution() {
        // DYNAMIC_DNS (a dynamic forward proxy in Istio) is not translated: the original destination.
        Resolution::None | Resolution::DynamicDns => {
            c.cluster_discovery_type = typed(DiscoveryType::OriginalDst);
            c.lb_policy = cluster::LbPolicy::ClusterProvided as i32;
        }
        Resolution::Static => {
            c.cluster_discovery_type = typed(DiscoveryType::Eds);
            c.eds_cluster_config = Some(cluster::EdsClusterConfig {
                eds_config: Some(ads()),
                service_name: e.cluster.clone(),
            });
        }
        Resolution::Dns | Resolution::DnsRoundRobin => {
            c.cluster_discovery_type = typed(if e.resolution() == Resolution::Dns {
                DiscoveryType::StrictDns
            } else {
                DiscoveryType::LogicalDns
            });
            c.dns_lookup_family = cluster::DnsLookupFamily::V4Only as i32;
            c.load_assignment = Some(load_assignment(e));
        }
    }
    if e.port.protocol.is_http2() {
        set_http2(&mut c);
    }
    c
}

/// The RDS name of the shared route of entry HTTP ports without addresses: the port number.
pub(crate) fn port_route_name(port: u16) -> String {
    port.to_string()
}

fn virtual_host(name: String, domains: Vec<String>, routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        name,
        domains,
        routes,
        ..Default::default()
    }
}

/// The ports whose unknown destinations end in the `<port>` route's catch-all although no entry
/// without addresses has them: under REGISTRY_ONLY, the ports `service_http_ports` (those Services
/// proxy as HTTP, by a VIP), whose answer is then 502 rather than a closed connection. Under
/// ALLOW_ANY none: those destinations pass through as TCP, whatever protocol they speak.
pub(crate) fn catch_all_ports(
    policy: OutboundTrafficPolicy,
    service_http_ports: impl Iterator<Item = u16>,
) -> BTreeSet<u16> {
    match policy {
        OutboundTrafficPolicy::RegistryOnly => service_http_ports.collect(),
        OutboundTrafficPolicy::AllowAny => BTreeSet::new(),
    }
}

/// The route configurations of the entries' HTTP ports: one per entry and port with addresses (a
/// virtual host per host, the addresses answering as the first), and one per port number for the
/// entries without and for `catch_all` (a virtual host per host, then `*`: the passthrough under
/// ALLOW_ANY, 502 under REGISTRY_ONLY). `routes` gives a host's routes (a VirtualService's, or the
/// default one).
pub(crate) fn route_configurations(
    ports: &[EntryPort<'_>],
    policy: OutboundTrafficPolicy,
    catch_all: &BTreeSet<u16>,
    routes: &dyn Fn(&EntryPort<'_>) -> Vec<Route>,
) -> Vec<RouteConfiguration> {
    let mut addressed: BTreeMap<String, Vec<VirtualHost>> = BTreeMap::new();
    let mut by_port: BTreeMap<u16, (BTreeSet<&str>, Vec<VirtualHost>)> = catch_all
        .iter()
        .map(|port| (*port, Default::default()))
        .collect();
    for e in ports.iter().filter(|e| e.port.protocol.is_http()) {
        let vhost_name = route_name(e.host, e.port.port);
        if e.spec.addresses.is_empty() {
            let (seen, vhosts) = by_port.entry(e.port.port).or_default();
            if seen.insert(e.host) {
                vhosts.push(virtual_host(
                    vhost_name,
                    vec![e.host.to_string()],
                    routes(e),
                ));
            }
            continue;
        }
        let name = route_name(&e.spec.hosts[0], e.port.port);
        let vhosts = addressed.entry(name).or_default();
        if vhosts.iter().any(|v| v.domains.iter().any(|d| d == e.host)) {
            // A host listed twice: Envoy refuses a domain in two virtual hosts.
            continue;
        }
        let mut domains = vec![e.host.to_string()];
        if vhosts.is_empty() {
            domains.extend(
                e.spec
                    .addresses
                    .iter()
                    .filter(|a| !a.contains('/'))
                    .map(|a| {
                        if a.contains(':') {
                            format!("[{a}]")
                        } else {
                            a.clone()
                        }
                    }),
            );
        }
        vhosts.push(virtual_host(vhost_name, domains, routes(e)));
    }
    let config = |name: String, virtual_hosts: Vec<VirtualHost>| RouteConfiguration {
        name,
        virtual_hosts,
        validate_clusters: Some(envoy_types::pb::google::protobuf::BoolValue { value: false }),
        ignore_port_in_host_matching: true,
        ..Default::default()
    };
    let mut out: Vec<RouteConfiguration> = addressed
        .into_iter()
        .map(|(name, vhosts)| config(name, vhosts))
        .collect();
    for (port, (_, mut vhosts)) in by_port {
        vhosts.push(catch_all_host(policy));
        out.push(config(port_route_name(port), vhosts));
    }
    out
}

/// Istio's last virtual host: `allow_any` (to the original destination) or `block_all` (502).
fn catch_all_host(policy: OutboundTrafficPolicy) -> VirtualHost {
    let route = match policy {
        OutboundTrafficPolicy::AllowAny => {
            crate::traffic::routes::default_route(PASSTHROUGH_CLUSTER, None)
        }
        OutboundTrafficPolicy::RegistryOnly => Route {
            name: "block_all".into(),
            r#match: crate::traffic::routes::default_route(BLACKHOLE_CLUSTER, None).r#match,
            action: Some(route::Action::DirectResponse(DirectResponseAction {
                status: 502,
                ..Default::default()
            })),
            ..Default::default()
        },
    };
    let name = match policy {
        OutboundTrafficPolicy::AllowAny => "allow_any",
        OutboundTrafficPolicy::RegistryOnly => "block_all",
    };
    virtual_host(name.into(), vec!["*".into()], vec![route])
}

/// The `virtualOutbound` chains of the entries' ports that nothing in `claimed` (the Services'
/// `(prefix, port)`s; an empty prefix is the whole port) has, then the `<port>` route's chain of
/// each `catch_all` port no entry took whole; `tcp` gives a TCP port's chains (its host's `tcp[]`
/// routes, its cluster), `sni` a TLS port's `tls[]` routes (chains by SNI before those). What is
/// skipped is said in `warnings`.
pub(crate) fn outbound_chains(
    ports: &[EntryPort<'_>],
    claimed: &mut BTreeSet<(String, u16)>,
    catch_all: &BTreeSet<u16>,
    tcp: &Tcp<'_>,
    sni: &Sni<'_>,
    warnings: &mut Vec<String>,
) -> Vec<FilterChain> {
    let mut chains = Vec::new();
    // Which VirtualService's route holds an SNI of a port without addresses.
    let mut sni_owners = BTreeMap::new();
    // One chain per entry and port: the first host names it (the others are its virtual hosts).
    let mut done: BTreeSet<(&ObjectKey, u16)> = BTreeSet::new();
    for e in ports {
        let port = e.port.port;
        if !done.insert((e.key, port)) {
            continue;
        }
        let http = e.port.protocol.is_http();
        let ranges: Vec<CidrRange> = e.spec.addresses.iter().filter_map(|a| prefix(a)).collect();
        let tls = matches!(e.port.protocol, Protocol::Tls | Protocol::Https);
        if ranges.is_empty() && tls {
            let claims = SniClaims {
                claimed: &mut *claimed,
                owners: &mut sni_owners,
            };
            sni_chains(e, ports, claims, (tcp, sni), &mut chains, warnings);
            continue;
        }
        let original_dst = matches!(e.resolution(), Resolution::None | Resolution::DynamicDns);
        if ranges.is_empty() && !http && !original_dst {
            warnings.push(format!(
                "ServiceEntry {}/{} port {port}: a non-HTTP port without addresses is reachable only with resolution NONE; skipped",
                e.key.namespace, e.key.name
            ));
            continue;
        }
        let keys: Vec<(String, u16)> = if ranges.is_empty() {
            vec![(String::new(), port)]
        } else {
            ranges
                .iter()
                .map(|r| {
                    let len = r.prefix_len.as_ref().map_or(0, |l| l.value);
                    (format!("{}/{len}", r.address_prefix), port)
                })
                .collect()
        };
        if keys.iter().any(|k| claimed.contains(k)) {
            // Address-less HTTP ports share one chain per port: only the first needs it.
            if !(ranges.is_empty() && http && claimed.contains(&(String::from("http"), port))) {
                warnings.push(format!(
                    "ServiceEntry {}/{} port {port}: its address:port is already claimed; skipped",
                    e.key.namespace, e.key.name
                ));
            }
            continue;
        }
        claimed.extend(keys);
        let name = if ranges.is_empty() {
            port_chain_name(port)
        } else {
            route_name(e.host, port)
        };
        if http {
            let route = if ranges.is_empty() {
                claimed.insert(("http".into(), port));
                port_route_name(port)
            } else {
                route_name(&e.spec.hosts[0], port)
            };
            chains.push(l4_chain(
                name,
                port,
                ranges,
                Vec::new(),
                rds(&e.cluster, route),
            ));
            continue;
        }
        // The addresses written as CIDRs: on a TLS port Istio tells the hosts there apart by SNI.
        let cidrs: Vec<CidrRange> = e
            .spec
            .addresses
            .iter()
            .filter(|a| a.contains('/'))
            .filter_map(|a| prefix(a))
            .collect();
        for (k, group) in tcp(e, &ranges).into_iter().enumerate() {
            let suffix = |n: String| if k == 0 { n } else { format!("{n}.{k}") };
            let name = suffix(name.clone());
            // Without ranges only a plain TCP port (TLS ones went by SNI above).
            let routes = if tls && !group.ranges.is_empty() {
                sni(e, &group.ranges)
            } else {
                Vec::new()
            };
            if routes.is_empty() {
                let (by_sni, plain): (Vec<CidrRange>, Vec<CidrRange>) = if tls {
                    group
                        .ranges
                        .into_iter()
                        .partition(|r| cidrs.iter().any(|c| contains(c, r)))
                } else {
                    (Vec::new(), group.ranges)
                };
                if !by_sni.is_empty() {
                    let hosts = ports
                        .iter()
                        .filter(|o| std::ptr::eq(o.spec, e.spec) && o.port.port == port);
                    let mut named = BTreeSet::new();
                    for host in hosts.filter(|h| named.insert(h.host.to_ascii_lowercase())) {
                        let filter = if std::ptr::eq(host, e) {
                            group.filter.clone()
                        } else {
                            host_filter(tcp, host, &by_sni)
                        };
                        chains.push(l4_chain(
                            suffix(route_name(host.host, port)),
                            port,
                            by_sni.clone(),
                            vec![host.host.to_ascii_lowercase()],
                            filter,
                        ));
                    }
                }
                // (No ranges at all: any address.)
                if by_sni.is_empty() || !plain.is_empty() {
                    // (A name apart from the first host's SNI chain on the CIDRs.)
                    let name = if by_sni.is_empty() {
                        name
                    } else {
                        format!("{name}.ip")
                    };
                    chains.push(l4_chain(name, port, plain, Vec::new(), group.filter));
                }
            } else {
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
    }
    // After the entries: one that takes a port whole (NONE TCP, HTTP without addresses) keeps it.
    for &port in catch_all {
        if claimed.insert((String::new(), port)) {
            let stat_prefix = format!("outbound_{}", port_chain_name(port));
            let filter = rds(&stat_prefix, port_route_name(port));
            chains.push(l4_chain(
                port_chain_name(port),
                port,
                Vec::new(),
                Vec::new(),
                filter,
            ));
        }
    }
    chains
}

/// The `tcp_proxy` of `host` on exactly `ranges`: its `tcp[]` route there, else its own cluster.
fn host_filter(tcp: &Tcp<'_>, host: &EntryPort<'_>, ranges: &[CidrRange]) -> Filter {
    tcp(host, ranges)
        .into_iter()
        .find(|c| c.ranges == ranges)
        .map_or_else(
            || tcp_proxy_filter(&host.cluster, &host.cluster),
            |c| c.filter,
        )
}

/// The name of a chain taking a whole port (any address): Istio's listener name.
fn port_chain_name(port: u16) -> String {
    format!("0.0.0.0_{port}")
}

/// What the chains of a listener hold: `(prefix, port)`s and `sni:<name>`s, and the VirtualService
/// whose `tls[]` route holds an SNI of a port without addresses.
struct SniClaims<'c> {
    claimed: &'c mut BTreeSet<(String, u16)>,
    owners: &'c mut BTreeMap<(String, u16), ObjectKey>,
}

/// A TLS port without addresses: chains by SNI per host (as Istio's TLS ports), its `tls[]` routes'
/// then its own name to its `tcp[]` route or cluster; an SNI an earlier chain of the port has is
/// skipped, with a warning unless the same VirtualService's route holds it (a wildcard one over
/// several hosts routes their SNIs once). The listener needs [`tls_inspector`] on the port.
fn sni_chains(
    e: &EntryPort<'_>,
    ports: &[EntryPort<'_>],
    claims: SniClaims<'_>,
    (tcp, sni): (&Tcp<'_>, &Sni<'_>),
    chains: &mut Vec<FilterChain>,
    warnings: &mut Vec<String>,
) {
    let SniClaims { claimed, owners } = claims;
    let port = e.port.port;
    for host in ports
        .iter()
        .filter(|o| std::ptr::eq(o.spec, e.spec) && o.port.port == port)
    {
        // Any address: the chain of the rest of the port (no ranges), if no subnet route took all.
        let own = || {
            tcp(host, &[])
                .into_iter()
                .find(|c| c.ranges.is_empty())
                .map_or_else(
                    || tcp_proxy_filter(&host.cluster, &host.cluster),
                    |c| c.filter,
                )
        };
        let name = route_name(host.host, port);
        let routes = sni(host, &[]);
        // tls_chains names route i's chain `<name>.tls<i>`.
        let owner_of: BTreeMap<String, ObjectKey> = routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((format!("{name}.tls{i}"), r.vs.clone()?)))
            .collect();
        let built = tls_chains(&name, port, &[], routes, vec![host.host.into()], own);
        for mut chain in built {
            let owner = owner_of.get(&chain.name);
            let Some(m) = chain.filter_chain_match.as_mut() else {
                continue;
            };
            let (fresh, taken): (Vec<String>, Vec<String>) = std::mem::take(&mut m.server_names)
                .into_iter()
                .partition(|n| claimed.insert((format!("sni:{n}"), port)));
            if let Some(owner) = owner {
                for n in &fresh {
                    owners.insert((n.clone(), port), owner.clone());
                }
            }
            // The same VirtualService's route already holds these: nothing is lost.
            let taken: Vec<String> = taken
                .into_iter()
                .filter(|n| owner.is_none() || owners.get(&(n.clone(), port)) != owner)
                .collect();
            if !taken.is_empty() {
                warnings.push(format!(
                    "ServiceEntry {}/{} port {port}: SNI {} is already claimed; skipped",
                    e.key.namespace,
                    e.key.name,
                    taken.join(", ")
                ));
            }
            if !fresh.is_empty() {
                m.server_names = fresh;
                chains.push(chain);
            }
        }
    }
}

/// `tls_inspector` for the ports of `chains` that match on SNI, disabled on every other port (a
/// server-first protocol never waits for it); `None` when no chain does.
pub(crate) fn tls_inspector(chains: &[FilterChain]) -> Option<ListenerFilter> {
    let ports: BTreeSet<u16> = chains
        .iter()
        .filter_map(|c| c.filter_chain_match.as_ref())
        .filter(|m| !m.server_names.is_empty())
        .filter_map(|m| m.destination_port.as_ref())
        .filter_map(|p| u16::try_from(p.value).ok())
        .collect();
    let needed = crate::inbound::any_of(ports.into_iter().collect())?;
    Some(ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".into(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(pack(
            &TlsInspector::default(),
        ))),
        filter_disabled: Some(ListenerFilterChainMatchPredicate {
            rule: Some(listener_filter_chain_match_predicate::Rule::NotMatch(
                Box::new(needed),
            )),
        }),
    })
}

fn rds(stat_prefix: &str, route: String) -> Filter {
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        Rds, http_connection_manager::RouteSpecifier,
    };
    http_connection_manager(
        stat_prefix,
        RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: route,
        }),
    )
}

/// The `(prefix, port)`s the chains of a listener already match on (an empty prefix: any address).
pub(crate) fn claims(chains: &[FilterChain]) -> BTreeSet<(String, u16)> {
    let mut out = BTreeSet::new();
    for m in chains.iter().filter_map(|c| c.filter_chain_match.as_ref()) {
        let Some(port) = m
            .destination_port
            .as_ref()
            .and_then(|p| u16::try_from(p.value).ok())
        else {
            continue;
        };
        if m.prefix_ranges.is_empty() {
            out.insert((String::new(), port));
        }
        for r in &m.prefix_ranges {
            let len = r.prefix_len.as_ref().map_or(0, |l| l.value);
            out.insert((format!("{}/{len}", r.address_prefix), port));
        }
    }
    out
}

#[cfg(test)]
#[path = "service_entry_tests.rs"]
mod tests;
