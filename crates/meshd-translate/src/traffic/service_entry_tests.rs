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

/// No VirtualService's `tcp[]`: a port's one chain on `addresses` to the entry host's cluster.
fn own_cluster(e: &EntryPort<'_>, addresses: &[CidrRange]) -> Vec<crate::traffic::tcp::TcpChain> {
    vec![crate::traffic::tcp::TcpChain {
        ranges: addresses.to_vec(),
        filter: crate::envoy::tcp_proxy_filter(&e.cluster, &e.cluster),
    }]
}

/// The entries' chains on a listener without others, no `tcp[]` routes, `sni` their `tls[]` routes,
/// and the warnings.
fn entry_chains(ports: &[EntryPort<'_>], sni: &Sni<'_>) -> (Vec<FilterChain>, Vec<String>) {
    let mut warnings = Vec::new();
    let chains = outbound_chains(
        ports,
        &mut BTreeSet::new(),
        &BTreeSet::new(),
        &own_cluster,
        sni,
        &mut warnings,
    );
    (chains, warnings)
}

/// The chains' names with their SNIs and addresses.
fn chain_matches(chains: &[FilterChain]) -> Vec<(String, Vec<String>, Vec<String>)> {
    chains
        .iter()
        .map(|c| {
            let m = c.filter_chain_match.clone().unwrap_or_default();
            let ranges = m
                .prefix_ranges
                .iter()
                .map(|r| {
                    let len = r.prefix_len.as_ref().map_or(0, |l| l.value);
                    format!("{}/{len}", r.address_prefix)
                })
                .collect();
            (c.name.clone(), m.server_names, ranges)
        })
        .collect()
}

#[test]
fn a_tls_port_on_a_cidr_tells_its_hosts_apart_by_sni_and_a_single_address_does_not() {
    let key = ObjectKey::new("shop", "partners");
    let spec = ServiceEntrySpec {
        hosts: vec![
            "a.partners.example.com".into(),
            "b.partners.example.com".into(),
        ],
        addresses: vec!["240.1.0.0/16".into(), "240.2.0.1".into()],
        ..Default::default()
    };
    let ports = ports_of(&key, &spec, 8443, Protocol::Tls);
    let (chains, warnings) = entry_chains(&ports, &|_: &EntryPort<'_>, _: &[CidrRange]| Vec::new());
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        chain_matches(&chains),
        [
            (
                "a.partners.example.com:8443".to_string(),
                s(&["a.partners.example.com"]),
                s(&["240.1.0.0/16"])
            ),
            (
                "b.partners.example.com:8443".to_string(),
                s(&["b.partners.example.com"]),
                s(&["240.1.0.0/16"])
            ),
            // The address written without a prefix length is one destination: no SNI needed.
            (
                "a.partners.example.com:8443.ip".to_string(),
                Vec::new(),
                s(&["240.2.0.1/32"])
            ),
        ]
    );
    let Some(envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(any)) =
        &chains[1].filters[0].config_type
    else {
        panic!("{chains:?}");
    };
    let proxy = <envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy as prost::Message>::decode(any.value.as_slice()).unwrap();
    assert_eq!(
        format!("{:?}", proxy.cluster_specifier),
        r#"Some(Cluster("outbound|8443||b.partners.example.com"))"#,
        "b's own cluster"
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    // The listener inspects TLS on that port.
    assert!(tls_inspector(&chains).is_some());
}

#[test]
fn a_wildcard_virtual_services_sni_over_several_hosts_is_one_chain_without_a_conflict() {
    let key = ObjectKey::new("shop", "cdn");
    let spec = ServiceEntrySpec {
        hosts: vec!["a.cdn.example.com".into(), "b.cdn.example.com".into()],
        ..Default::default()
    };
    let ports = ports_of(&key, &spec, 443, Protocol::Https);
    // Every host's view of `vs`'s one tls[] route: the same SNI, from the same VirtualService.
    let chains_with = |vs_of: &dyn Fn(&str) -> ObjectKey| {
        let sni = |e: &EntryPort<'_>, _: &[CidrRange]| {
            vec![SniRoute {
                server_names: vec!["eu.cdn.example.com".into()],
                filter: crate::envoy::tcp_proxy_filter(
                    &e.cluster,
                    "outbound|443||a.cdn.example.com",
                ),
                vs: Some(vs_of(e.host)),
            }]
        };
        let (chains, warnings) = entry_chains(&ports, &sni);
        (chain_matches(&chains), warnings)
    };
    let (chains, warnings) = chains_with(&|_| ObjectKey::new("shop", "cdn-wildcard"));
    assert!(warnings.is_empty(), "{warnings:?}");
    let names: Vec<(&str, &[String])> = chains
        .iter()
        .map(|(n, sni, _)| (n.as_str(), sni.as_slice()))
        .collect();
    assert_eq!(
        names,
        [
            (
                "a.cdn.example.com:443.tls0",
                &["eu.cdn.example.com".to_string()][..]
            ),
            (
                "a.cdn.example.com:443",
                &["a.cdn.example.com".to_string()][..]
            ),
            (
                "b.cdn.example.com:443",
                &["b.cdn.example.com".to_string()][..]
            ),
        ]
    );
    // Two VirtualServices claiming one SNI do conflict: the later one is left out, said.
    let (chains, warnings) = chains_with(&|host| ObjectKey::new("shop", host));
    assert_eq!(chains.len(), 3, "{chains:?}");
    assert_eq!(
        warnings,
        ["ServiceEntry shop/cdn port 443: SNI eu.cdn.example.com is already claimed; skipped"]
    );
}
