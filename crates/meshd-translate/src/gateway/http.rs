//! A gateway's HTTP route table: one virtual host per host a bound VirtualService and a server have in
//! common, answering to `host` and `host:<port>`; the routes of every VirtualService for that host
//! merged oldest first (Istio's order), each built by the sidecars' route builder. A host without a
//! route gets 404 (a catch-all virtual host answering 404 directly, unless a `*` host is routed);
//! servers with `tls.httpsRedirect` make their virtual hosts `require_tls: ALL` (301 to https).

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteConfiguration, VirtualHost, route, virtual_host,
};
use envoy_types::pb::google::protobuf::BoolValue;
use meshd_api::validate::gateway_refs::{binds_gateway, gateway_host};
use meshd_api::validate::references::resolve_host;

use super::{GatewayInputs, ServerRef};
use crate::traffic::Source;
use crate::traffic::matches::route_match;
use crate::traffic::routes::{RouteContext, http_routes};

/// One virtual host being assembled.
#[derive(Default)]
struct Host {
    routes: Vec<Route>,
    redirect: bool,
}

fn redirects(s: &ServerRef<'_>) -> bool {
    s.server
        .tls
        .as_ref()
        .and_then(|t| t.https_redirect)
        .unwrap_or(false)
}

/// The route table `name` of `servers` (all on `port`).
pub(super) fn route_configuration(
    name: String,
    port: u16,
    servers: &[ServerRef<'_>],
    inputs: &GatewayInputs,
) -> RouteConfiguration {
    let mut hosts: BTreeMap<String, Host> = BTreeMap::new();
    // A redirecting server answers 301 for its hosts whether or not a VirtualService routes them.
    for s in servers.iter().filter(|s| redirects(s)) {
        for h in s.dns_names() {
            hosts.entry(h.to_ascii_lowercase()).or_default().redirect = true;
        }
    }
    let ports_of = |fqdn: &str| inputs.ports_of(fqdn);
    for (key, vs) in &inputs.bound {
        let vs_hosts: Vec<String> = vs
            .spec
            .hosts
            .iter()
            .map(|h| resolve_host(h, &key.namespace, &inputs.domain))
            .collect();
        // The hosts this VirtualService routes here, and whether a redirecting server serves them.
        let mut mine: BTreeMap<String, bool> = BTreeMap::new();
        for s in servers {
            let gw = s.gateway;
            if !binds_gateway(&vs.spec, &key.namespace, &gw.namespace, &gw.name) {
                continue;
            }
            for h in &vs_hosts {
                for sh in &s.server.hosts {
                    // Envoy refuses two virtual hosts with one domain in any case.
                    if let Some(common) = gateway_host(sh, &gw.namespace, &key.namespace, h) {
                        *mine.entry(common.to_ascii_lowercase()).or_default() |= redirects(s);
                    }
                }
            }
        }
        if mine.is_empty() || vs.spec.http.is_empty() {
            continue;
        }
        let ctx = RouteContext {
            namespace: &key.namespace,
            domain: &inputs.domain,
            port,
            ports_of: &ports_of,
            hash: Some(&inputs.rules),
            source: servers.first().map_or(Source::SHARED, |s| s.source),
        };
        let routes = http_routes(&vs.spec.http, &ctx);
        for (host, redirect) in mine {
            let entry = hosts.entry(host).or_default();
            entry.routes.extend(routes.iter().cloned());
            entry.redirect |= redirect;
        }
    }
    let catch_all = hosts.contains_key("*");
    let mut virtual_hosts: Vec<VirtualHost> = hosts
        .into_iter()
        .map(|(host, h)| VirtualHost {
            name: format!("{host}:{port}"),
            domains: if host == "*" {
                vec![host]
            } else {
                let with_port = format!("{host}:{port}");
                vec![host, with_port]
            },
            routes: h.routes,
            require_tls: if h.redirect {
                virtual_host::TlsRequirementType::All as i32
            } else {
                virtual_host::TlsRequirementType::None as i32
            },
            ..Default::default()
        })
        .collect();
    if !catch_all {
        virtual_hosts.push(not_found(port));
    }
    RouteConfiguration {
        name,
        virtual_hosts,
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

/// `blackhole:<port>`: every host no virtual host answers to gets 404 (Istio's name).
fn not_found(port: u16) -> VirtualHost {
    VirtualHost {
        name: format!("blackhole:{port}"),
        domains: vec!["*".into()],
        routes: vec![Route {
            name: "404".into(),
            r#match: Some(route_match(None)),
            action: Some(route::Action::DirectResponse(DirectResponseAction {
                status: 404,
                ..Default::default()
            })),
            ..Default::default()
        }],
        ..Default::default()
    }
}
