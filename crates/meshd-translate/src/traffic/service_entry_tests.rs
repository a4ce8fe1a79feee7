//! Route configurations of ServiceEntry HTTP ports: what Envoy would refuse never leaves here.

use super::*;

fn ports<'a>(key: &'a ObjectKey, spec: &'a ServiceEntrySpec) -> Vec<EntryPort<'a>> {
    ports_of(key, spec, 80, Protocol::Http)
}

fn ports_of<'a>(
    key: &'a ObjectKey,
    spec: &'a ServiceEntrySpec,
    port: u16,
    protocol: Protocol,
) -> Vec<EntryPort<'a>> {
    spec.hosts
        .iter()
        .map(|host| EntryPort {
            key,
            spec,
            host,
            port: ServicePort {
                port,
                name: "http".into(),
                protocol,
                target_port: TargetPort::Number(port),
            },
            cluster: outbound_cluster_name(port, host),
            subset: None,
        })
        .collect()
}

#[test]
fn a_host_listed_twice_gets_one_virtual_host() {
    let key = ObjectKey::new("shop", "api");
    for addresses in [vec!["240.0.0.1".to_string()], Vec::new()] {
        let spec = ServiceEntrySpec {
            hosts: vec!["api.example.com".into(), "api.example.com".into()],
            addresses,
            ..Default::default()
        };
        let routes = route_configurations(
            &ports(&key, &spec),
            OutboundTrafficPolicy::AllowAny,
            &BTreeSet::new(),
            &|e: &EntryPort<'_>| vec![crate::traffic::routes::default_route(&e.cluster, None)],
        );
        let domains: Vec<&String> = routes[0]
            .virtual_hosts
            .iter()
            .flat_map(|v| &v.domains)
            .filter(|d| *d == "api.example.com")
            .collect();
        assert_eq!(domains.len(), 1, "{routes:?}");
    }
}

#[test]
fn a_service_http_port_gets_the_port_route_unless_an_entry_takes_the_port_whole() {
    let policy = OutboundTrafficPolicy::RegistryOnly;
    let ports = catch_all_ports(policy, [80, 25, 80].into_iter());
    assert_eq!(ports, BTreeSet::from([25, 80]));
    assert!(catch_all_ports(OutboundTrafficPolicy::AllowAny, [80].into_iter()).is_empty());
    // An entry opening TCP port 25 to any IP keeps it; port 80 gets the 502 route's chain.
    let key = ObjectKey::new("shop", "smtp");
    let spec = ServiceEntrySpec {
        hosts: vec!["smtp.example.com".into()],
        ..Default::default()
    };
    let smtp = ports_of(&key, &spec, 25, Protocol::Tcp);
    let routes = route_configurations(&smtp, policy, &ports, &|_: &EntryPort<'_>| Vec::new());
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["25", "80"], "one `<port>` route per catch-all port");
    assert_eq!(routes[1].virtual_hosts.len(), 1);
    assert_eq!(routes[1].virtual_hosts[0].name, "block_all");
    let mut claimed = BTreeSet::new();
    let mut warnings = Vec::new();
    // No VirtualService: a TCP port's one chain goes to its cluster, a TLS port has no SNI routes.
    let tcp = |e: &EntryPort<'_>, addresses: &[CidrRange]| {
        vec![crate::traffic::tcp::TcpChain {
            ranges: addresses.to_vec(),
            filter: crate::envoy::tcp_proxy_filter(&e.cluster, &e.cluster),
        }]
    };
    let chains = outbound_chains(
        &smtp,
        &mut claimed,
        &ports,
        &tcp,
        &|_: &EntryPort<'_>, _: &[CidrRange]| Vec::new(),
        &mut warnings,
    );
    let names: Vec<&str> = chains.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["0.0.0.0_25", "0.0.0.0_80"], "{chains:?}");
    assert!(warnings.is_empty(), "{warnings:?}");
    let text = format!("{:?}", chains[0].filters);
    assert!(
        text.contains("tcp_proxy"),
        "the entry's chain on 25: {text}"
    );
}
