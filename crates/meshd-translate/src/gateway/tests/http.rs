//! Plain HTTP servers: host routing, merge order, 404, httpsRedirect; binding and incrementality.

use envoy_types::pb::envoy::config::route::v3::{route, route_action, virtual_host};

use super::*;

fn vs_a() -> FactChange {
    virtual_service(
        "shop",
        "a",
        10,
        serde_json::json!({
            "hosts": ["a.example.com"], "gateways": ["edge/public"],
            "http": [{"match": [{"uri": {"prefix": "/api"}}], "route": [{"destination": {"host": "api"}}]}],
        }),
    )
}

fn vs_b() -> FactChange {
    virtual_service(
        "shop",
        "b",
        20,
        serde_json::json!({
            "hosts": ["a.example.com", "b.example.com"], "gateways": ["edge/public"],
            "http": [{"route": [{"destination": {"host": "web"}}]}],
        }),
    )
}

fn clusters(vh: &envoy_types::pb::envoy::config::route::v3::VirtualHost) -> Vec<String> {
    vh.routes
        .iter()
        .map(|r| match &r.action {
            Some(route::Action::Route(a)) => match &a.cluster_specifier {
                Some(route_action::ClusterSpecifier::Cluster(c)) => c.clone(),
                other => panic!("{other:?}"),
            },
            Some(route::Action::DirectResponse(d)) => format!("direct {}", d.status),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_gateway_proxy_gets_one_listener_per_port_and_no_sidecar_listeners() {
    let (_, mesh) = compile(vec![public_http(), vs_b()]);
    let config = mesh.proxy_config(&node(GATEWAY));
    assert!(config.gateway);
    let names: Vec<String> = listeners(&config).into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["0.0.0.0_80"]);
    assert_eq!(config.count(ResourceType::Listener), 1);
    assert!(
        config
            .get(ResourceType::Listener, "virtualOutbound")
            .is_none()
    );
    // The shared clusters stay: upstream goes to the mesh's clusters (auto mTLS there).
    assert!(
        config
            .get(
                ResourceType::Cluster,
                "outbound|80||web.shop.svc.cluster.local"
            )
            .is_some()
    );
    assert!(
        config.own(ResourceType::Cluster).is_empty(),
        "no inbound side"
    );
    // The sidecar is as before: its two listeners, no gateway route table.
    let sidecar = mesh.proxy_config(&node(SIDECAR));
    let names: Vec<String> = listeners(&sidecar).into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["virtualOutbound", "virtualInbound"]);
    assert!(sidecar.get(ResourceType::Route, "http.80").is_none());
}

/// The gateway's Service (in the pod's namespace, selecting it) maps port 80 to 8080: the server on
/// port 80 listens on 8080, as in Istio, and keeps port 80 in its routes; a change of that Service
/// marks the gateway proxy.
#[test]
fn a_server_port_binds_where_the_gateway_service_targets_it() {
    let ingress = |target: u16| {
        let mut fact = service(80, crate::Protocol::Http, "10.96.0.9");
        if let Fact::Service(s) = &mut fact {
            let s = Arc::make_mut(s);
            s.ports[0].target_port = TargetPort::Number(target);
            s.selector = [("meshd.io/gateway".to_string(), "ingress".to_string())].into();
        }
        change(FactKind::Service, "edge", "ingress", Some(fact))
    };
    let (mut t, mesh) = compile(vec![public_http(), vs_b(), ingress(8080)]);
    let config = mesh.proxy_config(&node(GATEWAY));
    let l = listeners(&config);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].name, "0.0.0.0_8080");
    let address = format!("{:?}", l[0].address);
    assert!(
        address.contains("port_value: 8080") || address.contains("PortValue(8080)"),
        "{address}"
    );
    assert!(
        config.get(ResourceType::Route, "http.80").is_some(),
        "routes keep the server port"
    );
    let (mesh, changes) = t.apply(vec![ingress(8081)]);
    assert!(changes.affects_proxy(&node(GATEWAY)));
    let names: Vec<String> = listeners(&mesh.proxy_config(&node(GATEWAY)))
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["0.0.0.0_8081"]);
}

#[test]
fn hosts_are_routed_by_the_merged_routes_oldest_first_and_other_hosts_get_404() {
    // b is given first but a is older: a's routes come first for a.example.com.
    let (_, mesh) = compile(vec![public_http(), vs_b(), vs_a()]);
    let config = mesh.proxy_config(&node(GATEWAY));
    let rc = route(&config, "http.80");
    let hosts: Vec<(&str, Vec<&str>)> = rc
        .virtual_hosts
        .iter()
        .map(|v| {
            (
                v.name.as_str(),
                v.domains.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        hosts,
        [
            (
                "a.example.com:80",
                vec!["a.example.com", "a.example.com:80"]
            ),
            (
                "b.example.com:80",
                vec!["b.example.com", "b.example.com:80"]
            ),
            ("blackhole:80", vec!["*"]),
        ]
    );
    assert_eq!(
        clusters(&rc.virtual_hosts[0]),
        [
            "outbound|8080||api.shop.svc.cluster.local",
            "outbound|80||web.shop.svc.cluster.local"
        ]
    );
    assert_eq!(
        clusters(&rc.virtual_hosts[1]),
        ["outbound|80||web.shop.svc.cluster.local"]
    );
    assert_eq!(clusters(&rc.virtual_hosts[2]), ["direct 404"]);
    assert_eq!(verdict(&mesh, "VirtualService", "shop", "a"), "accepted");
}

#[test]
fn a_star_host_takes_the_catch_all_and_https_redirect_requires_tls() {
    let redirect = gateway(
        "edge",
        "public",
        10,
        serde_json::json!({
            "selector": {"istio": "ingress"},
            "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*.example.com"],
                         "tls": {"httpsRedirect": true}}],
        }),
    );
    let star = virtual_service(
        "shop",
        "star",
        30,
        serde_json::json!({
            "hosts": ["*"], "gateways": ["edge/public"],
            "http": [{"route": [{"destination": {"host": "web"}}]}],
        }),
    );
    let (_, mesh) = compile(vec![redirect, star]);
    assert_eq!(verdict(&mesh, "VirtualService", "shop", "star"), "accepted");
    let rc = route(&mesh.proxy_config(&node(GATEWAY)), "http.80");
    // `*` meets the server's `*.example.com`: the server's host is served, with a redirect.
    assert_eq!(rc.virtual_hosts.len(), 2, "{:?}", rc.virtual_hosts);
    let vh = &rc.virtual_hosts[0];
    assert_eq!(vh.domains, ["*.example.com", "*.example.com:80"]);
    assert_eq!(vh.require_tls, virtual_host::TlsRequirementType::All as i32);
    assert_eq!(rc.virtual_hosts[1].name, "blackhole:80");

    // A `*` server with a `*` VirtualService: its virtual host is the catch-all, no 404 host.
    let (_, mesh) = compile(vec![
        public_http(),
        virtual_service(
            "shop",
            "star",
            30,
            serde_json::json!({
                "hosts": ["*"], "gateways": ["edge/public"],
                "http": [{"route": [{"destination": {"host": "web"}}]}],
            }),
        ),
    ]);
    let rc = route(&mesh.proxy_config(&node(GATEWAY)), "http.80");
    assert_eq!(rc.virtual_hosts.len(), 1);
    assert_eq!(rc.virtual_hosts[0].domains, ["*"]);
    assert_eq!(
        rc.virtual_hosts[0].require_tls,
        virtual_host::TlsRequirementType::None as i32
    );
}

#[test]
fn server_hosts_bind_virtual_services_of_their_namespaces_only() {
    let gw = gateway(
        "edge",
        "public",
        10,
        serde_json::json!({
            "selector": {"istio": "ingress"},
            "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                         "hosts": ["other/a.example.com", "./b.example.com"]}],
        }),
    );
    let (_, mesh) = compile(vec![gw, vs_b()]);
    // shop/b names hosts the server binds only for namespaces other and edge: rejected, no routes.
    let message = verdict(&mesh, "VirtualService", "shop", "b");
    assert!(
        message.contains("spec.hosts[0]: \"a.example.com\" is not a host any server of Gateway edge/public accepts"),
        "{message}"
    );
    let rc = route(&mesh.proxy_config(&node(GATEWAY)), "http.80");
    assert_eq!(rc.virtual_hosts.len(), 1, "only the 404 host");
}

#[test]
fn a_virtual_service_also_bound_to_mesh_is_not_checked_against_the_gateway() {
    let both = virtual_service(
        "shop",
        "both",
        10,
        serde_json::json!({
            "hosts": ["web", "x.example.com"], "gateways": ["mesh", "edge/public"],
            "http": [{"route": [{"destination": {"host": "web"}}]}],
        }),
    );
    let gw = gateway(
        "edge",
        "public",
        10,
        serde_json::json!({
            "selector": {"istio": "ingress"},
            "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*.example.com"]}],
        }),
    );
    let (_, mesh) = compile(vec![gw, both]);
    assert_eq!(verdict(&mesh, "VirtualService", "shop", "both"), "accepted");
    let rc = route(&mesh.proxy_config(&node(GATEWAY)), "http.80");
    // web.shop.svc.cluster.local is no host of the server: served by sidecars only.
    let names: Vec<&str> = rc.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["x.example.com:80", "blackhole:80"]);
}

/// The sidecar's resources, every type, as (name, bytes).
fn bytes(config: &ProxyConfig) -> Vec<(String, Vec<u8>)> {
    ResourceType::ALL
        .iter()
        .flat_map(|ty| config.resources(*ty))
        .map(|r| (r.name.to_string(), r.body.value.clone()))
        .collect()
}

#[test]
fn gateway_changes_mark_the_gateway_proxies_and_leave_sidecars_byte_identical() {
    let (mut t, before) = compile(Vec::new());
    let sidecar_before = bytes(&before.proxy_config(&node(SIDECAR)));
    let (mesh, changes) = t.apply(vec![public_http()]);
    assert!(changes.affects_proxy(&node(GATEWAY)), "a new Gateway");
    assert!(!changes.affects_proxy(&node(SIDECAR)));
    let (mesh2, changes) = t.apply(vec![vs_a()]);
    assert!(
        changes.affects_proxy(&node(GATEWAY)),
        "a bound VirtualService"
    );
    assert!(!changes.affects_proxy(&node(SIDECAR)));
    assert_eq!(bytes(&mesh2.proxy_config(&node(SIDECAR))), sidecar_before);
    let gw_before = mesh.proxy_config(&node(GATEWAY));
    let gw_after = mesh2.proxy_config(&node(GATEWAY));
    assert_ne!(
        gw_before.type_version(ResourceType::Route),
        gw_after.type_version(ResourceType::Route)
    );
    // api's ports change: the route's cluster may differ, the gateway proxy is recomputed.
    let (_, changes) = t.apply(vec![change(
        FactKind::Service,
        "shop",
        "api",
        Some(super::service(9090, crate::Protocol::Http, "10.96.0.2")),
    )]);
    assert!(changes.affects_proxy(&node(GATEWAY)));
    // The pod loses the label the Gateway selects: no listener left.
    let (mesh3, changes) = t.apply(vec![change(
        FactKind::Workload,
        "edge",
        "ingress-0",
        Some(workload(&[("meshd.io/gateway", "ingress")])),
    )]);
    assert!(changes.affects_proxy(&node(GATEWAY)));
    let config = mesh3.proxy_config(&node(GATEWAY));
    assert_eq!(config.count(ResourceType::Listener), 0);
    assert_eq!(
        mesh3.refresh(&gw_after, true).count(ResourceType::Listener),
        0
    );
}
