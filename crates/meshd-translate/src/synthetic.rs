//! A generated mesh of any size, for benchmarks, tests and the xDS load tool: `services` Services in 10
//! namespaces, each with an HTTP, a gRPC or a TCP port (round robin) and `endpoints` ready endpoints,
//! and one client Pod per namespace (`client-<i>.ns-<i>`) plus the endpoint Pods' own.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Protocol;
use crate::facts::{
    Endpoint, EndpointPort, EndpointSlice, Fact, FactChange, FactKind, ObjectKey, Service,
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
