//! One gateway listener per port. Plain HTTP: one chain, the port's route table. HTTPS/TLS: a chain
//! per terminating server with `server_names` from its hosts (`*`: no SNI restriction) and its own
//! route table, and per passthrough server a chain per bound `tls[]` route by its `sniHosts` (an SNI
//! no chain names finds none: the connection is closed); `tls_inspector` reads the SNI. TCP: the first
//! bound `tcp[]` route. An SNI an earlier chain claims is not claimed again (Envoy refuses duplicate
//! matches); a port without any chain closes every connection (BlackHoleCluster).

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    Rds, http_connection_manager::RouteSpecifier,
};
use envoy_types::pb::google::protobuf::BoolValue;
use meshd_api::networking::Protocol;
use meshd_api::networking::gateway::ServerTlsMode;
use meshd_api::validate::gateway_refs::{binds_gateway, gateway_host};
use meshd_api::validate::references::resolve_host;

use super::{GatewayConfig, GatewayInputs, PortKind, ServerRef, http, tls};
use crate::envoy::{ads, pack, socket, tcp_proxy_filter};
use crate::naming::BLACKHOLE_CLUSTER;
use crate::outbound::{connection_manager, hcm_filter};
use crate::traffic::routes::RouteContext;
use crate::traffic::sni::Claimed;
use crate::traffic::tcp::{l4_filter, tcp_filter};

/// The HTTP connection manager of a gateway server, with its route table `route` over RDS. The
/// gateway is the edge: the downstream address is the client's (`use_remote_address`, as Istio's
/// gateways), appended to `x-forwarded-for`.
fn http_connection_manager(route: &str) -> Filter {
    let mut hcm = connection_manager(
        route,
        RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: route.to_string(),
        }),
    );
    hcm.use_remote_address = Some(BoolValue { value: true });
    hcm_filter(&hcm)
}

fn tls_inspector() -> ListenerFilter {
    ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".into(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(pack(
            &TlsInspector::default(),
        ))),
        ..Default::default()
    }
}

/// `0.0.0.0_<port>` for `servers` (all of one kind of protocol, oldest Gateway first).
pub(super) fn listener(
    port: u16,
    bind: u16,
    kind: PortKind,
    servers: &[ServerRef<'_>],
    inputs: &GatewayInputs,
    out: &mut GatewayConfig,
) -> Listener {
    let name = format!("0.0.0.0_{bind}");
    let mut listener_filters = Vec::new();
    let filter_chains = match kind {
        PortKind::Http => {
            let route = format!("http.{port}");
            out.routes.push(http::route_configuration(
                route.clone(),
                port,
                servers,
                inputs,
            ));
            vec![FilterChain {
                name: route.clone(),
                filters: vec![http_connection_manager(&route)],
                ..Default::default()
            }]
        }
        PortKind::Tls => {
            listener_filters.push(tls_inspector());
            let mut claimed = Claimed::default();
            let mut chains = Vec::new();
            for s in servers {
                let mode = s.server.tls.as_ref().and_then(|t| t.mode);
                match mode.unwrap_or(ServerTlsMode::Passthrough) {
                    ServerTlsMode::Passthrough => {
                        passthrough(port, s, inputs, &mut claimed, &mut chains, out)
                    }
                    ServerTlsMode::AutoPassthrough | ServerTlsMode::OptionalMutual => {
                        out.warnings.push(format!(
                            "Gateway {} spec.servers[{}].tls.mode: not supported; left out",
                            s.gateway, s.index
                        ));
                    }
                    _ => chains.extend(terminating(port, s, inputs, &mut claimed, out)),
                }
            }
            chains
        }
        PortKind::Tcp => servers
            .iter()
            .find_map(|s| tcp_chain(port, s, inputs))
            .into_iter()
            .collect(),
    };
    let default_filter_chain = filter_chains.is_empty().then(|| FilterChain {
        name: BLACKHOLE_CLUSTER.into(),
        filters: vec![tcp_proxy_filter(&name, BLACKHOLE_CLUSTER)],
        ..Default::default()
    });
    Listener {
        name,
        address: Some(socket("0.0.0.0", bind)),
        listener_filters,
        filter_chains,
        default_filter_chain,
        traffic_direction: TrafficDirection::Outbound as i32,
        ..Default::default()
    }
}

/// A server that terminates TLS: its chain by SNI, HTTPS to its own route table, TLS to the first
/// bound `tcp[]` route.
fn terminating(
    port: u16,
    s: &ServerRef<'_>,
    inputs: &GatewayInputs,
    claimed: &mut Claimed,
    out: &mut GatewayConfig,
) -> Option<FilterChain> {
    let https = s.server.port.protocol == Some(Protocol::Https);
    let settings = s.server.tls.as_ref()?;
    let mut credentials = BTreeSet::new();
    let transport_socket = tls::downstream(settings, https, &mut credentials)?;
    let Some(server_names) = claimed.claim(s.dns_names()) else {
        out.warnings.push(format!(
            "Gateway {} spec.servers[{}].hosts: every host is an earlier server's on port {port}; left out",
            s.gateway, s.index
        ));
        return None;
    };
    out.credentials.append(&mut credentials);
    let name = s.chain_name(if https { "https" } else { "tls" });
    let filter = if https {
        out.routes.push(http::route_configuration(
            name.clone(),
            port,
            std::slice::from_ref(s),
            inputs,
        ));
        http_connection_manager(&name)
    } else {
        tcp_chain(port, s, inputs)
            .and_then(|c| c.filters.into_iter().next())
            .unwrap_or_else(|| tcp_proxy_filter(&name, BLACKHOLE_CLUSTER))
    };
    Some(FilterChain {
        name,
        filter_chain_match: Some(FilterChainMatch {
            server_names,
            ..Default::default()
        }),
        filters: vec![filter],
        transport_socket: Some(transport_socket),
        ..Default::default()
    })
}

/// The VirtualServices bound to `s`'s Gateway (their namespace and spec), oldest first.
fn bound<'a>(
    s: &'a ServerRef<'a>,
    inputs: &'a GatewayInputs,
) -> impl Iterator<Item = (&'a str, &'a meshd_api::networking::VirtualServiceSpec)> + 'a {
    inputs
        .bound
        .iter()
        .filter(|(key, vs)| {
            binds_gateway(
                &vs.spec,
                &key.namespace,
                &s.gateway.namespace,
                &s.gateway.name,
            )
        })
        .map(|(key, vs)| (key.namespace.as_str(), &vs.spec))
}

/// A PASSTHROUGH server: one chain per bound `tls[]` route, by the `sniHosts` of its matches on this
/// port that the server's hosts accept, to the route's destinations, TLS untouched.
fn passthrough(
    port: u16,
    s: &ServerRef<'_>,
    inputs: &GatewayInputs,
    claimed: &mut Claimed,
    chains: &mut Vec<FilterChain>,
    out: &mut GatewayConfig,
) {
    let ports_of = |fqdn: &str| inputs.ports_of(fqdn);
    for (namespace, vs) in bound(s, inputs) {
        for (i, route) in vs.tls.iter().enumerate() {
            let mut snis: Vec<String> = Vec::new();
            for m in route
                .matches
                .iter()
                .filter(|m| m.port.is_none_or(|p| p == u32::from(port)))
            {
                for sni in &m.sni_hosts {
                    let sni = resolve_host(sni, namespace, &inputs.domain);
                    for sh in &s.server.hosts {
                        if let Some(common) =
                            gateway_host(sh, &s.gateway.namespace, namespace, &sni)
                            && !snis.contains(&common)
                        {
                            snis.push(common);
                        }
                    }
                }
            }
            if snis.is_empty() {
                continue;
            }
            let Some(server_names) = claimed.claim(snis.iter().map(String::as_str)) else {
                out.warnings.push(format!(
                    "Gateway {} spec.servers[{}]: the sniHosts of a tls[{i}] route are an earlier chain's on port {port}; left out",
                    s.gateway, s.index
                ));
                continue;
            };
            let ctx = RouteContext {
                namespace,
                domain: &inputs.domain,
                port,
                ports_of: &ports_of,
                hash: Some(&inputs.rules),
                source: s.source,
            };
            let name = format!("{}.{i}", s.chain_name("tls"));
            let Some(filter) = l4_filter(&route.route, &ctx, &name) else {
                continue;
            };
            chains.push(FilterChain {
                name,
                filter_chain_match: Some(FilterChainMatch {
                    server_names,
                    ..Default::default()
                }),
                filters: vec![filter],
                ..Default::default()
            });
        }
    }
}

/// The first bound VirtualService with a host the server accepts and a `tcp[]` route for the port.
fn tcp_chain(port: u16, s: &ServerRef<'_>, inputs: &GatewayInputs) -> Option<FilterChain> {
    let ports_of = |fqdn: &str| inputs.ports_of(fqdn);
    let name = s.chain_name("tcp");
    let filter: Filter = bound(s, inputs).find_map(|(namespace, vs)| {
        let accepted = vs.hosts.iter().any(|h| {
            let h = resolve_host(h, namespace, &inputs.domain);
            s.server
                .hosts
                .iter()
                .any(|sh| gateway_host(sh, &s.gateway.namespace, namespace, &h).is_some())
        });
        if !accepted {
            return None;
        }
        let ctx = RouteContext {
            namespace,
            domain: &inputs.domain,
            port,
            ports_of: &ports_of,
            hash: Some(&inputs.rules),
            source: s.source,
        };
        tcp_filter(vs, &ctx, &name)
    })?;
    Some(FilterChain {
        name,
        filters: vec![filter],
        ..Default::default()
    })
}
