//! Gateway proxies (SPEC §10): a Workload labelled `meshd.io/gateway` gets no sidecar listeners but one
//! listener per port (`0.0.0.0_<port>`) from the servers of every Gateway in force that selects it, in
//! any namespace. Plain HTTP servers of a port share one route table (`http.<port>`, [`http`]); HTTPS
//! and TLS servers are filter chains picked by SNI ([`listeners`]), terminating TLS with the Secrets
//! their `credentialName` names ([`tls`]) or passing it through by the bound VirtualServices' `tls[]`
//! routes; TCP servers are the bound VirtualServices' `tcp[]` routes. The clusters are the shared ones.
//!
//! What a gateway proxy's config depends on is collected once per judgement ([`GatewayInputs`]): when it
//! differs, every gateway proxy's own part is recomputed.

mod http;
mod listeners;
mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use meshd_api::networking::gateway::Server;
use meshd_api::networking::{GatewaySpec, Protocol, VirtualServiceSpec};
use meshd_api::validate::gateway_refs::selects_pod;
use meshd_api::validate::references::{age_order, resolve_host};

use crate::configs::Configs;
use crate::facts::{Config, Fact, FactKind, ObjectKey, Service, TargetPort, Workload};
use crate::translator::CompiledService;

pub use tls::credential_sds_names;

/// Whether a pod runs a gateway proxy rather than a sidecar (SPEC §10).
pub fn is_gateway(workload: &Workload) -> bool {
    workload
        .labels
        .contains_key(meshd_api::names::LABEL_GATEWAY)
}

/// Everything a gateway proxy's config is built from: the Gateways in force and the VirtualServices in
/// force bound to a Gateway, each oldest first, and the ports of the hosts those route to.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct GatewayInputs {
    pub gateways: Vec<(ObjectKey, Arc<Config<GatewaySpec>>)>,
    pub bound: Vec<(ObjectKey, Arc<Config<VirtualServiceSpec>>)>,
    /// Ports of every destination host of `bound` (resolved) that has known ports.
    pub ports: BTreeMap<String, Vec<u16>>,
    /// The DestinationRules of those hosts: the routes' hash policies and the `tcp_proxy`s' idle
    /// timeouts, as the sidecars' routes carry them.
    pub rules: crate::traffic::HostRules,
    pub domain: String,
}

impl GatewayInputs {
    /// From what is in force; `ports_of` gives a host's ports (a Service's, else a ServiceEntry's).
    pub fn collect(
        configs: &Configs,
        domain: &str,
        ports_of: &dyn Fn(&str) -> Option<Vec<u16>>,
    ) -> Self {
        let gateways = by_age(configs, FactKind::Gateway, |f| match f {
            Fact::Gateway(c) => Some(c),
            _ => None,
        });
        let bound = by_age(configs, FactKind::VirtualService, |f| match f {
            Fact::VirtualService(c) if c.spec.gateways.iter().any(|g| g != "mesh") => Some(c),
            _ => None,
        });
        let mut ports = BTreeMap::new();
        let mut hosts = BTreeSet::new();
        for (key, vs) in &bound {
            for host in destination_hosts(&vs.spec) {
                let fqdn = resolve_host(host, &key.namespace, domain);
                if let Some(p) = ports_of(&fqdn) {
                    ports.insert(fqdn.clone(), p);
                }
                hosts.insert(fqdn);
            }
        }
        Self {
            gateways,
            bound,
            ports,
            rules: crate::traffic::HostRules::collect(
                configs,
                domain,
                hosts.iter().map(String::as_str),
            ),
            domain: domain.to_string(),
        }
    }

    pub fn ports_of(&self, fqdn: &str) -> Option<Vec<u16>> {
        self.ports.get(fqdn).cloned()
    }
}

/// The versions in force of a kind that `pick` takes, oldest first (Istio's order).
fn by_age<T>(
    configs: &Configs,
    kind: FactKind,
    pick: impl Fn(&Fact) -> Option<&Arc<Config<T>>>,
) -> Vec<(ObjectKey, Arc<Config<T>>)> {
    let mut list: Vec<_> = configs
        .in_force(kind)
        .filter_map(|(key, fact)| Some((key.clone(), Arc::clone(pick(fact)?))))
        .collect();
    list.sort_by(|(a, ca), (b, cb)| {
        age_order(ca.created, &a.namespace, &a.name).cmp(&age_order(
            cb.created,
            &b.namespace,
            &b.name,
        ))
    });
    list
}

/// Every destination host a VirtualService names (routes and mirrors of all three route kinds).
fn destination_hosts(spec: &VirtualServiceSpec) -> impl Iterator<Item = &str> {
    let http = spec.http.iter().flat_map(|r| {
        r.route
            .iter()
            .map(|d| &d.destination)
            .chain(r.mirror.iter())
            .chain(r.mirrors.iter().map(|m| &m.destination))
    });
    let l4 = spec
        .tcp
        .iter()
        .flat_map(|r| &r.route)
        .chain(spec.tls.iter().flat_map(|r| &r.route))
        .map(|d| &d.destination);
    http.chain(l4).map(|d| d.host.as_str())
}

/// One server of a Gateway selecting the proxy.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ServerRef<'a> {
    pub gateway: &'a ObjectKey,
    pub index: usize,
    pub server: &'a Server,
    /// The gateway pod: `sourceLabels`/`sourceNamespace` matches are checked against it.
    pub source: crate::traffic::Source<'a>,
}

impl ServerRef<'_> {
    /// `https.<port>.<portName>.<gateway>.<namespace>`: the RDS name and filter chain name of one
    /// terminating server (Istio's form).
    pub fn chain_name(&self, scheme: &str) -> String {
        format!(
            "{scheme}.{}.{}.{}.{}",
            self.server.port.number,
            self.server.port.name,
            self.gateway.name,
            self.gateway.namespace
        )
    }

    /// The server's hosts without their namespace part.
    pub fn dns_names(&self) -> impl Iterator<Item = &str> {
        self.server
            .hosts
            .iter()
            .map(|h| h.split_once('/').map_or(h.as_str(), |(_, name)| name))
    }
}

/// A gateway proxy's own resources: listeners, their route tables, and the SDS names of the
/// credentials its TLS servers reference (`kubernetes://<secret>`, `kubernetes://<secret>-cacert`).
#[derive(Clone, Debug, Default)]
pub struct GatewayConfig {
    pub listeners: Vec<Listener>,
    pub routes: Vec<RouteConfiguration>,
    pub credentials: BTreeSet<String>,
    /// Servers or routes left out (a port another Gateway holds with another protocol, an SNI an
    /// earlier server claims): for the caller to log.
    pub warnings: Vec<String>,
}

/// The kind of listener a server protocol gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PortKind {
    /// HTTP, HTTP2, GRPC (and GRPC-WEB): plain HTTP, one route table.
    Http,
    /// HTTPS, TLS: filter chains by SNI.
    Tls,
    /// TCP and the protocols served as TCP.
    Tcp,
}

impl PortKind {
    fn of(p: Protocol) -> Self {
        match p {
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb => Self::Http,
            Protocol::Https | Protocol::Tls => Self::Tls,
            Protocol::Tcp | Protocol::Mongo | Protocol::Mysql | Protocol::Redis => Self::Tcp,
        }
    }
}

/// The config of the gateway proxy of `workload`: the servers of the Gateways selecting it, by port.
/// A port keeps the protocol of the oldest Gateway's server on it (the verdicts reject a younger one
/// that differs; one still in force from before is left out here).
///
/// A server's port is the gateway Service's port, as in Istio: the listener binds where that Service
/// port targets on the pod (`bind`; the port itself when no Service of the pod has it), so a gateway
/// pod running as non-root listens on 8080/8443 for a Service's 80/443.
pub(crate) fn gateway_config(
    inputs: &GatewayInputs,
    namespace: &str,
    workload: &Workload,
    targets: &[(u16, u16)],
) -> GatewayConfig {
    let bind = |port: u16| {
        targets
            .iter()
            .find(|(p, _)| *p == port)
            .map_or(port, |(_, t)| *t)
    };
    let mut out = GatewayConfig::default();
    let mut ports: BTreeMap<u16, (Protocol, Vec<ServerRef<'_>>)> = BTreeMap::new();
    let source = crate::traffic::Source {
        namespace,
        labels: &workload.labels,
    };
    for (key, gw) in &inputs.gateways {
        if !selects_pod(&gw.spec, &workload.labels) {
            continue;
        }
        for (index, server) in gw.spec.servers.iter().enumerate() {
            let (Some(protocol), Ok(port)) =
                (server.port.protocol, u16::try_from(server.port.number))
            else {
                continue;
            };
            let (held, list) = ports.entry(port).or_insert((protocol, Vec::new()));
            if *held != protocol {
                out.warnings.push(format!(
                    "Gateway {key} spec.servers[{index}]: port {port} is already served as {}; left out",
                    held.as_str()
                ));
                continue;
            }
            list.push(ServerRef {
                gateway: key,
                index,
                server,
                source,
            });
        }
    }
    let mut bound: BTreeMap<u16, u16> = BTreeMap::new();
    for (port, (protocol, servers)) in &ports {
        let at = bind(*port);
        if let Some(first) = bound.insert(at, *port) {
            out.warnings.push(format!(
                "gateway ports {first} and {port} both target pod port {at}; port {port} left out"
            ));
            bound.insert(at, first);
            continue;
        }
        let listener = listeners::listener(
            *port,
            at,
            PortKind::of(*protocol),
            servers,
            inputs,
            &mut out,
        );
        out.listeners.push(listener);
    }
    out
}

/// The Services of one namespace (the map is sorted by namespace, then name).
pub(crate) fn namespace_services<'a>(
    services: &'a imbl::OrdMap<ObjectKey, Arc<CompiledService>>,
    namespace: &'a str,
) -> impl Iterator<Item = &'a Service> {
    services
        .range(ObjectKey::new(namespace, String::new())..)
        .take_while(move |(k, _)| k.namespace == namespace)
        .map(|(_, s)| &*s.fact)
}

/// (Service port, pod port) for each port of the Services selecting a gateway pod: where its
/// listener for a server on that Service port binds.
pub(crate) fn pod_ports<'a>(
    services: impl Iterator<Item = &'a Service>,
    workload: &Workload,
) -> Vec<(u16, u16)> {
    services
        .filter(|s| crate::inbound::selects(s, workload))
        .flat_map(|s| &s.ports)
        .filter_map(|p| {
            let target = match &p.target_port {
                TargetPort::Number(n) => Some(*n),
                TargetPort::Named(name) => workload.named_port(name),
            };
            Some((p.port, target?))
        })
        .collect()
}

#[cfg(test)]
mod tests;
