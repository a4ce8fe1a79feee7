//! HTTPS and TLS servers: SNI chains, TLS settings per server, MUTUAL, PASSTHROUGH; TCP servers; a
//! Gateway rejected for a protocol conflict leaving the older one in force.

use envoy_types::pb::envoy::config::core::v3::transport_socket;
use envoy_types::pb::envoy::config::listener::v3::FilterChain;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    DownstreamTlsContext, common_tls_context, tls_parameters::TlsProtocol,
};

use super::*;

fn tls_context(chain: &FilterChain) -> DownstreamTlsContext {
    let socket = chain.transport_socket.as_ref().expect("a transport socket");
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else {
        panic!("typed config");
    };
    DownstreamTlsContext::decode(any.value.as_slice()).unwrap()
}

fn https_gateway() -> FactChange {
    gateway(
        "edge",
        "secure",
        10,
        serde_json::json!({
            "selector": {"istio": "ingress"},
            "servers": [
                {"port": {"number": 443, "name": "https-a", "protocol": "HTTPS"}, "hosts": ["a.example.com"],
                 "tls": {"mode": "SIMPLE", "credentialName": "a-cert", "minProtocolVersion": "TLSV1_3"}},
                {"port": {"number": 443, "name": "https-b", "protocol": "HTTPS"}, "hosts": ["shop/b.example.com"],
                 "tls": {"mode": "MUTUAL", "credentialName": "b-cert"}},
                {"port": {"number": 443, "name": "https-any", "protocol": "HTTPS"}, "hosts": ["*"],
                 "tls": {"mode": "SIMPLE", "credentialName": "any-cert"}},
                {"port": {"number": 443, "name": "https-again", "protocol": "HTTPS"}, "hosts": ["a.example.com"],
                 "tls": {"mode": "SIMPLE", "credentialName": "again"}},
                {"port": {"number": 8443, "name": "mesh", "protocol": "HTTPS"}, "hosts": ["*"],
                 "tls": {"mode": "ISTIO_MUTUAL"}},
            ],
        }),
    )
}

#[test]
fn https_servers_are_chains_by_sni_with_their_own_tls_settings_and_route_tables() {
    let vs = virtual_service(
        "shop",
        "a",
        10,
        serde_json::json!({
            "hosts": ["a.example.com", "b.example.com"], "gateways": ["edge/secure"],
            "http": [{"route": [{"destination": {"host": "web"}}]}],
        }),
    );
    let (_, mesh) = compile(vec![https_gateway(), vs]);
    let config = mesh.proxy_config(&node(GATEWAY));
    let all = listeners(&config);
    assert_eq!(all.len(), 2);
    let l = &all[0];
    assert_eq!(l.name, "0.0.0.0_443");
    assert_eq!(
        l.listener_filters[0].name,
        "envoy.filters.listener.tls_inspector"
    );
    let chains: Vec<(&str, Vec<&str>)> = l
        .filter_chains
        .iter()
        .map(|c| {
            let m = c.filter_chain_match.as_ref().unwrap();
            (
                c.name.as_str(),
                m.server_names.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    // The fourth server's only host is the first's: left out (Envoy refuses duplicate matches).
    assert_eq!(
        chains,
        [
            ("https.443.https-a.secure.edge", vec!["a.example.com"]),
            ("https.443.https-b.secure.edge", vec!["b.example.com"]),
            ("https.443.https-any.secure.edge", vec![]),
        ]
    );
    assert!(
        mesh.warnings
            .iter()
            .any(|w| w.contains("spec.servers[3].hosts")),
        "{:?}",
        mesh.warnings
    );
    let a = tls_context(&l.filter_chains[0]);
    let common = a.common_tls_context.as_ref().unwrap();
    let params = common.tls_params.as_ref().unwrap();
    assert_eq!(
        params.tls_minimum_protocol_version,
        TlsProtocol::TlSv13 as i32
    );
    assert_eq!(
        common.tls_certificate_sds_secret_configs[0].name,
        "kubernetes://a-cert"
    );
    assert!(a.require_client_certificate.is_none());
    assert_eq!(common.alpn_protocols, ["h2", "http/1.1"]);
    let b = tls_context(&l.filter_chains[1]);
    let common = b.common_tls_context.as_ref().unwrap();
    assert_eq!(
        common
            .tls_params
            .as_ref()
            .unwrap()
            .tls_minimum_protocol_version,
        TlsProtocol::TlSv12 as i32,
        "the default, on the same port as a 1.3 server"
    );
    assert_eq!(b.require_client_certificate.map(|v| v.value), Some(true));
    let Some(common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(ca)) =
        &common.validation_context_type
    else {
        panic!("a CA over SDS");
    };
    assert_eq!(ca.name, "kubernetes://b-cert-cacert");
    let mesh_mutual = tls_context(&all[1].filter_chains[0]);
    let common = mesh_mutual.common_tls_context.as_ref().unwrap();
    assert_eq!(common.tls_certificate_sds_secret_configs[0].name, "default");
    assert_eq!(
        mesh_mutual.require_client_certificate.map(|v| v.value),
        Some(true)
    );
    // Each chain its own route table: b.example.com is served by https-b only (and the `*` one).
    let rb = route(&config, "https.443.https-b.secure.edge");
    assert_eq!(
        rb.virtual_hosts[0].domains,
        ["b.example.com", "b.example.com:443"]
    );
    let ra = route(&config, "https.443.https-a.secure.edge");
    assert_eq!(
        ra.virtual_hosts[0].domains,
        ["a.example.com", "a.example.com:443"]
    );
    assert_eq!(ra.virtual_hosts.len(), 2, "a.example.com and the 404 host");
    let gw = mesh.gateway_config(&node(GATEWAY)).unwrap();
    assert_eq!(
        gw.credentials
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        [
            "kubernetes://a-cert",
            "kubernetes://any-cert",
            "kubernetes://b-cert",
            "kubernetes://b-cert-cacert"
        ]
    );
    assert!(mesh.gateway_config(&node(SIDECAR)).is_none());
}

#[test]
fn passthrough_chains_follow_the_tls_routes_sni_hosts_and_close_the_rest() {
    let gw = || {
        gateway(
            "edge",
            "pass",
            10,
            serde_json::json!({
                "selector": {"istio": "ingress"},
                "servers": [{"port": {"number": 9443, "name": "tls", "protocol": "TLS"}, "hosts": ["*.example.com"],
                             "tls": {"mode": "PASSTHROUGH"}}],
            }),
        )
    };
    // Routes for `hosts`: by SNI on this port, another SNI, and one for a port the server is not on.
    let vs = |hosts: &[&str]| {
        virtual_service(
            "shop",
            "secure",
            10,
            serde_json::json!({
                "hosts": hosts, "gateways": ["edge/pass"],
                "tls": [
                    {"match": [{"sniHosts": ["secure.example.com"], "port": 9443}], "route": [{"destination": {"host": "secure"}}]},
                    {"match": [{"sniHosts": ["web.example.com"]}], "route": [{"destination": {"host": "web", "port": {"number": 80}}}]},
                    {"match": [{"sniHosts": ["secure.example.com"], "port": 1}], "route": [{"destination": {"host": "web"}}]},
                ],
            }),
        )
    };
    // elsewhere.example.org is not a host of the server: rejected.
    let (_, mesh) = compile(vec![
        gw(),
        vs(&[
            "secure.example.com",
            "web.example.com",
            "elsewhere.example.org",
        ]),
    ]);
    assert!(
        verdict(&mesh, "VirtualService", "shop", "secure").contains("spec.hosts[2]"),
        "rejected"
    );
    let (_, mesh) = compile(vec![gw(), vs(&["secure.example.com", "web.example.com"])]);
    assert_eq!(
        verdict(&mesh, "VirtualService", "shop", "secure"),
        "accepted"
    );
    let l = &listeners(&mesh.proxy_config(&node(GATEWAY)))[0];
    let chains: Vec<(Vec<&str>, String)> = l
        .filter_chains
        .iter()
        .map(|c| {
            (
                c.filter_chain_match
                    .as_ref()
                    .unwrap()
                    .server_names
                    .iter()
                    .map(String::as_str)
                    .collect(),
                tcp_cluster(&c.filters[0]),
            )
        })
        .collect();
    assert_eq!(
        chains,
        [
            (
                vec!["secure.example.com"],
                "outbound|443||secure.shop.svc.cluster.local".to_string()
            ),
            (
                vec!["web.example.com"],
                "outbound|80||web.shop.svc.cluster.local".to_string()
            ),
        ]
    );
    assert!(
        l.filter_chains.iter().all(|c| c.transport_socket.is_none()),
        "not terminated"
    );
    assert!(
        l.default_filter_chain.is_none(),
        "an unknown SNI matches no chain: closed"
    );
}

#[test]
fn a_tcp_server_forwards_by_the_bound_tcp_route_and_closes_without_one() {
    let edge = tcp_edge(
        serde_json::json!([
            {"port": {"number": 6000, "name": "none", "protocol": "TCP"}, "hosts": ["*"]},
        ]),
        serde_json::json!([]),
    );
    let (_, mesh) = compile(edge);
    assert_eq!(verdict(&mesh, "VirtualService", "shop", "db"), "accepted");
    let all = listeners(&mesh.proxy_config(&node(GATEWAY)));
    assert_eq!(
        tcp_cluster(&all[0].filter_chains[0].filters[0]),
        "outbound|5432||db.shop.svc.cluster.local"
    );
    assert!(all[1].filter_chains.is_empty());
    let fallback = all[1].default_filter_chain.as_ref().unwrap();
    assert_eq!(tcp_cluster(&fallback.filters[0]), "BlackHoleCluster");
}

#[test]
fn of_two_gateways_claiming_a_port_with_different_protocols_the_younger_is_rejected_whole() {
    let young = gateway(
        "edge",
        "young",
        20,
        serde_json::json!({
            "selector": {"istio": "ingress"},
            "servers": [
                {"port": {"number": 80, "name": "tcp", "protocol": "TCP"}, "hosts": ["*"]},
                {"port": {"number": 9100, "name": "metrics", "protocol": "HTTP"}, "hosts": ["*"]},
            ],
        }),
    );
    let (_, mesh) = compile(vec![young, public_http()]);
    assert_eq!(verdict(&mesh, "Gateway", "edge", "public"), "accepted");
    let message = verdict(&mesh, "Gateway", "edge", "young");
    assert!(
        message.contains("spec.servers[0].port.protocol: \"TCP\" differs from Gateway edge/public (HTTP) on port 80"),
        "{message}"
    );
    let names: Vec<String> = listeners(&mesh.proxy_config(&node(GATEWAY)))
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(
        names,
        ["0.0.0.0_80"],
        "the rejected Gateway's 9100 is not served"
    );
    let l = &listeners(&mesh.proxy_config(&node(GATEWAY)))[0];
    assert_eq!(
        l.filter_chains[0].filters[0].name,
        "envoy.filters.network.http_connection_manager"
    );
}

#[test]
fn a_tls_server_that_terminates_forwards_by_the_tcp_route() {
    let gw = gateway(
        "edge",
        "tls",
        10,
        serde_json::json!({
            "selector": {"istio": "ingress"},
            "servers": [{"port": {"number": 6432, "name": "pg-tls", "protocol": "TLS"}, "hosts": ["db.example.com"],
                         "tls": {"mode": "SIMPLE", "credentialName": "db-cert"}}],
        }),
    );
    let vs = virtual_service(
        "shop",
        "db",
        10,
        serde_json::json!({
            "hosts": ["db.example.com"], "gateways": ["edge/tls"],
            "tcp": [{"route": [{"destination": {"host": "db"}}]}],
        }),
    );
    let (_, mesh) = compile(vec![gw, vs]);
    let l = &listeners(&mesh.proxy_config(&node(GATEWAY)))[0];
    let chain = &l.filter_chains[0];
    assert_eq!(chain.name, "tls.6432.pg-tls.tls.edge");
    assert_eq!(
        tcp_cluster(&chain.filters[0]),
        "outbound|5432||db.shop.svc.cluster.local"
    );
    let common = tls_context(chain).common_tls_context.unwrap();
    assert!(common.alpn_protocols.is_empty(), "not HTTP: no ALPN");
    assert_eq!(
        common.tls_certificate_sds_secret_configs[0].name,
        "kubernetes://db-cert"
    );
}
