//! A generated mesh of any size, for benchmarks and the xDS load tool: `services` Services in 10
//! namespaces, each with an HTTP, a gRPC or a TCP port (round robin) and `endpoints` ready endpoints,
//! and one client Pod per namespace (`client-<i>.ns-<i>`) plus the endpoint Pods' own.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::MeshSnapshot;

const NAMESPACES: usize = 10;

fn meta(name: &str, ns: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        labels: (!labels.is_empty()).then_some(labels),
        ..Default::default()
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

/// A mesh of `services` Services with `endpoints` endpoints each.
pub fn synthetic_mesh(services: usize, endpoints: usize) -> MeshSnapshot {
    let mut snap = MeshSnapshot::default();
    for s in 0..services {
        let ns = format!("ns-{}", s % NAMESPACES);
        let name = format!("svc-{s}");
        let (port_name, port) = match s % 3 {
            0 => ("http-web", 80),
            1 => ("grpc-api", 9090),
            _ => ("tcp-db", 5432),
        };
        let selector = BTreeMap::from([("app".to_string(), name.clone())]);
        snap.services.push(Service {
            metadata: meta(&name, &ns, BTreeMap::new()),
            spec: Some(ServiceSpec {
                cluster_ip: Some(format!("10.96.{}.{}", s / 250, s % 250 + 1)),
                selector: Some(selector.clone()),
                ports: Some(vec![ServicePort {
                    name: Some(port_name.into()),
                    port,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let slice_labels =
            BTreeMap::from([("kubernetes.io/service-name".to_string(), name.clone())]);
        snap.endpoint_slices.push(EndpointSlice {
            metadata: meta(&format!("{name}-abcde"), &ns, slice_labels),
            address_type: "IPv4".into(),
            endpoints: (0..endpoints)
                .map(|e| Endpoint {
                    addresses: vec![endpoint_ip(s, e)],
                    ..Default::default()
                })
                .collect(),
            ports: Some(vec![EndpointPort {
                name: Some(port_name.into()),
                port: Some(port),
                ..Default::default()
            }]),
        });
        if s < NAMESPACES {
            snap.pods.push(pod(
                &format!("client-{s}"),
                &ns,
                &format!("10.127.0.{}", s + 1),
                BTreeMap::new(),
            ));
        }
        snap.pods
            .push(pod(&format!("{name}-0"), &ns, &endpoint_ip(s, 0), selector));
    }
    snap
}

fn pod(name: &str, ns: &str, ip: &str, labels: BTreeMap<String, String>) -> Pod {
    Pod {
        metadata: meta(name, ns, labels),
        spec: Some(PodSpec {
            service_account_name: Some("default".into()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            pod_ip: Some(ip.into()),
            ..Default::default()
        }),
    }
}
