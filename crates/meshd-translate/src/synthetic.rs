//! A generated mesh of any size, for benchmarks, tests and the xDS load tool: `services` Services in 10
//! namespaces, each with an HTTP, a gRPC or a TCP port (round robin) and `endpoints` ready endpoints,
//! and one client Pod per namespace (`client-<i>.ns-<i>`) plus the endpoint Pods' own; and traffic
//! resources for them (a VirtualService and a DestinationRule per Service).

use std::collections::BTreeMap;
use std::sync::Arc;

use meshd_api::networking::{DestinationRuleSpec, VirtualServiceSpec};

use crate::Protocol;
use crate::facts::{
    Config, Endpoint, EndpointPort, EndpointSlice, Fact, FactChange, FactKind, ObjectKey, Service,
    ServicePort, TargetPort, Workload,
};

const NAMESPACES: usize = 10;

/// The facts of a synthetic mesh, in vectors that tests edit before handing them over.
#[derive(Clone, Debug, Default)]
pub struct SyntheticMesh {
    pub services: Vec<(ObjectKey, Service)>,
    pub slices: Vec<(ObjectKey, EndpointSlice)>,
    pub workloads: Vec<(ObjectKey, Workload)>,
}

impl SyntheticMesh {
    /// Every fact, as changes from nothing.
    pub fn changes(&self) -> Vec<FactChange> {
        let change = |kind, key: &ObjectKey, fact| FactChange {
            kind,
            key: key.clone(),
            fact: Some(fact),
        };
        let services = self
            .services
            .iter()
            .map(|(k, s)| change(FactKind::Service, k, Fact::Service(Arc::new(s.clone()))));
        let slices = self.slices.iter().map(|(k, s)| {
            change(
                FactKind::EndpointSlice,
                k,
                Fact::EndpointSlice(Arc::new(s.clone())),
            )
        });
        let workloads = self
            .workloads
            .iter()
            .map(|(k, w)| change(FactKind::Workload, k, Fact::Workload(Arc::new(w.clone()))));
        services.chain(slices).chain(workloads).collect()
    }
}

/// The IP of endpoint `e` of service `s` (10.128.0.0/9, unique up to 8M endpoints).
pub fn endpoint_ip(s: usize, e: usize) -> String {
    let n = s * 64 + e;
    format!(
        "10.{}.{}.{}",
        128 + (n >> 16) % 128,
        (n >> 8) & 255,
        n & 255
    )
}

/// A ready endpoint at `ip`.
pub fn endpoint(ip: &str) -> Endpoint {
    Endpoint {
        addresses: vec![ip.to_string()],
        ready: true,
        serving: true,
        terminating: false,
        pod: None,
    }
}

/// A mesh of `services` Services with `endpoints` endpoints each.
pub fn synthetic_mesh(services: usize, endpoints: usize) -> SyntheticMesh {
    let mut mesh = SyntheticMesh::default();
    for s in 0..services {
        let ns = format!("ns-{}", s % NAMESPACES);
        let name = format!("svc-{s}");
        let (port_name, port) = match s % 3 {
            0 => ("http-web", 80),
            1 => ("grpc-api", 9090),
            _ => ("tcp-db", 5432),
        };
        let selector = BTreeMap::from([("app".to_string(), name.clone())]);
        mesh.services.push((
            ObjectKey::new(&ns, &name),
            Service {
                vips: vec![format!("10.96.{}.{}", s / 250, s % 250 + 1)],
                ports: vec![ServicePort {
                    port,
                    name: port_name.into(),
                    protocol: Protocol::of_port(None, Some(port_name)),
                    target_port: TargetPort::Number(port),
                }],
                selector: selector.clone(),
            },
        ));
        mesh.slices.push((
            ObjectKey::new(&ns, format!("{name}-abcde")),
            EndpointSlice {
                service: name.clone(),
                ports: vec![EndpointPort {
                    name: port_name.into(),
                    port,
                }],
                endpoints: (0..endpoints)
                    .map(|e| endpoint(&endpoint_ip(s, e)))
                    .collect(),
            },
        ));
        if s < NAMESPACES {
            mesh.workloads.push(workload(
                &format!("client-{s}"),
                &ns,
                &format!("10.127.0.{}", s + 1),
                BTreeMap::new(),
            ));
        }
        mesh.workloads.push(workload(
            &format!("{name}-0"),
            &ns,
            &endpoint_ip(s, 0),
            selector,
        ));
    }
    mesh
}

fn workload(
    name: &str,
    ns: &str,
    ip: &str,
    labels: BTreeMap<String, String>,
) -> (ObjectKey, Workload) {
    (
        ObjectKey::new(ns, name),
        Workload {
            ips: vec![ip.into()],
            labels,
            service_account: "default".into(),
            mesh: None,
            ports: Vec::new(),
        },
    )
}

/// A VirtualService for Service `key` (in its namespace, by short name): `100 - v2`% to subset `v1`,
/// `v2`% to `v2`, with retries.
pub fn virtual_service(key: &ObjectKey, v2: i32) -> FactChange {
    let spec: VirtualServiceSpec = serde_json::from_value(serde_json::json!({
        "hosts": [key.name],
        "http": [{"route": [
            {"destination": {"host": key.name, "subset": "v1"}, "weight": 100 - v2},
            {"destination": {"host": key.name, "subset": "v2"}, "weight": v2},
        ], "retries": {"attempts": 3, "retryOn": "5xx"}}],
    }))
    .expect("a fixed, valid VirtualService");
    FactChange {
        kind: FactKind::VirtualService,
        key: key.clone(),
        fact: Some(Fact::VirtualService(Arc::new(config(spec)))),
    }
}

/// A DestinationRule for Service `key`: subsets `v1` and `v2` (label `version`), a connection pool
/// and outlier detection.
pub fn destination_rule(key: &ObjectKey) -> FactChange {
    let spec: DestinationRuleSpec = serde_json::from_value(serde_json::json!({
        "host": key.name,
        "trafficPolicy": {
            "connectionPool": {"http": {"http1MaxPendingRequests": 100}},
            "outlierDetection": {"consecutive5xxErrors": 5},
        },
        "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}],
    }))
    .expect("a fixed, valid DestinationRule");
    FactChange {
        kind: FactKind::DestinationRule,
        key: key.clone(),
        fact: Some(Fact::DestinationRule(Arc::new(config(spec)))),
    }
}

/// A DestinationRule and a VirtualService (90/10) for every Service of `mesh`.
pub fn traffic_changes(mesh: &SyntheticMesh) -> Vec<FactChange> {
    mesh.services
        .iter()
        .flat_map(|(key, _)| [destination_rule(key), virtual_service(key, 10)])
        .collect()
}

fn config<T>(spec: T) -> Config<T> {
    Config {
        generation: Some(1),
        created: Some(1),
        spec,
        problems: Vec::new(),
    }
}
