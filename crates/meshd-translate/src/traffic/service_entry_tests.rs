//! Route configurations of ServiceEntry HTTP ports: what Envoy would refuse never leaves here.

use super::*;

fn ports<'a>(key: &'a ObjectKey, spec: &'a ServiceEntrySpec) -> Vec<EntryPort<'a>> {
    spec.hosts
        .iter()
        .map(|host| EntryPort {
            key,
            spec,
            host,
            port: ServicePort {
                port: 80,
                name: "http".into(),
                protocol: Protocol::Http,
                target_port: TargetPort::Number(80),
            },
            cluster: outbound_cluster_name(80, host),
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
