//! A destination's DestinationRule on gateway routes, as on the sidecars': the consistent hash as
//! the route's hash policy, `tcp.idleTimeout` on a TCP or TLS server's `tcp_proxy`; a rule that
//! changes reaches the gateway proxy.

use envoy_types::pb::envoy::config::route::v3::route;

use super::*;

fn web_route() -> FactChange {
    virtual_service(
        "shop",
        "web",
        10,
        serde_json::json!({
            "hosts": ["web.example.com"], "gateways": ["edge/public"],
            "http": [{"route": [{"destination": {"host": "web"}}]}],
        }),
    )
}

fn web_rule(header: &str) -> FactChange {
    destination_rule(
        "shop",
        "web",
        10,
        serde_json::json!({
            "host": "web",
            "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpHeaderName": header}}},
        }),
    )
}

/// The header names the gateway's one route to web hashes on.
fn hashed_headers(mesh: &CompiledMesh) -> Vec<String> {
    let rc = route(&mesh.proxy_config(&node(GATEWAY)), "http.80");
    let Some(route::Action::Route(action)) = &rc.virtual_hosts[0].routes[0].action else {
        panic!("{rc:?}");
    };
    action
        .hash_policy
        .iter()
        .map(|h| match &h.policy_specifier {
            Some(
                envoy_types::pb::envoy::config::route::v3::route_action::hash_policy::PolicySpecifier::Header(
                    h,
                ),
            ) => h.header_name.clone(),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_gateway_route_carries_its_destinations_hash_policy_and_follows_the_rule() {
    let (mut t, mesh) = compile(vec![public_http(), web_route()]);
    assert_eq!(
        hashed_headers(&mesh),
        Vec::<String>::new(),
        "no rule, no hash"
    );
    let (mesh, changed) = t.apply(vec![web_rule("x-user")]);
    assert_eq!(hashed_headers(&mesh), ["x-user"]);
    assert!(changed.affects_proxy(&node(GATEWAY)), "{changed:?}");
    let (mesh, _) = t.apply(vec![web_rule("x-session")]);
    assert_eq!(hashed_headers(&mesh), ["x-session"]);
}

fn idle_timeout(f: &Filter) -> Option<i64> {
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!("typed config");
    };
    let proxy = TcpProxy::decode(any.value.as_slice()).unwrap();
    proxy.idle_timeout.map(|d| d.seconds)
}

#[test]
fn a_gateway_tcp_proxy_takes_its_destinations_tcp_idle_timeout() {
    let edge = tcp_edge(
        serde_json::json!([
            {"port": {"number": 6443, "name": "tls", "protocol": "TLS"}, "hosts": ["secure.example.com"],
             "tls": {"mode": "PASSTHROUGH"}},
        ]),
        serde_json::json!([{"match": [{"port": 6443, "sniHosts": ["secure.example.com"]}],
                            "route": [{"destination": {"host": "secure"}}]}]),
    );
    let rule = |host: &str, idle: &str| {
        destination_rule(
            "shop",
            host,
            10,
            serde_json::json!({
                "host": host,
                "trafficPolicy": {"connectionPool": {"tcp": {"idleTimeout": idle}}},
            }),
        )
    };
    let (mut t, mesh) = compile(edge);
    let idle = |mesh: &CompiledMesh| -> Vec<Option<i64>> {
        listeners(&mesh.proxy_config(&node(GATEWAY)))
            .iter()
            .map(|l| idle_timeout(&l.filter_chains[0].filters[0]))
            .collect()
    };
    assert_eq!(idle(&mesh), [None, None], "Envoy's default without a rule");
    let (mesh, _) = t.apply(vec![rule("db", "90s"), rule("secure", "5m")]);
    assert_eq!(idle(&mesh), [Some(90), Some(300)]);
}

#[test]
fn a_destination_rules_credential_name_is_the_gateways_own_namespace_secret() {
    let rule = destination_rule(
        "shop",
        "web",
        10,
        serde_json::json!({
            "host": "web",
            "trafficPolicy": {"tls": {"mode": "MUTUAL", "credentialName": "b-cert"}},
        }),
    );
    let (_, mesh) = compile(vec![public_http(), web_route(), rule]);
    let gateway = mesh.proxy_config(&node(GATEWAY));
    let cluster = gateway
        .get(
            ResourceType::Cluster,
            "outbound|80||web.shop.svc.cluster.local",
        )
        .expect("web's cluster");
    let cluster =
        envoy_types::pb::envoy::config::cluster::v3::Cluster::decode(cluster.body.value.as_slice())
            .unwrap();
    use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
    let Some(ConfigType::TypedConfig(any)) = cluster.transport_socket.and_then(|t| t.config_type)
    else {
        panic!("a TLS transport socket");
    };
    let common = UpstreamTlsContext::decode(any.value.as_slice())
        .unwrap()
        .common_tls_context
        .unwrap();
    assert_eq!(
        common.tls_certificate_sds_secret_configs[0].name,
        "kubernetes://b-cert"
    );
    // Envoy asks for what the cluster names; the gateway holds them (edge has b-cert with ca.crt).
    let secrets: Vec<&str> = gateway
        .resources(ResourceType::Secret)
        .map(|r| &*r.name)
        .collect();
    for name in ["kubernetes://b-cert", "kubernetes://b-cert-cacert"] {
        assert!(secrets.contains(&name), "{name}: {secrets:?}");
    }
    // The sidecar in shop, which has no b-cert, gets none.
    let sidecar = mesh.proxy_config(&node(SIDECAR));
    assert_eq!(sidecar.resources(ResourceType::Secret).count(), 0);
}
