//! Traffic towards a gateway pod: sidecars reach it as a plain endpoint (its listeners are the
//! Gateways' servers, not the mesh's mTLS), even though it carries the mesh's label.

use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;

use super::*;
use crate::facts::EndpointSlice;

fn meshed(labels: &[(&str, &str)]) -> Fact {
    let Fact::Workload(w) = workload(labels) else {
        unreachable!("a workload")
    };
    let mut w = (*w).clone();
    w.mesh = Some("default".into());
    Fact::Workload(Arc::new(w))
}

fn slice(pod: &str) -> Fact {
    Fact::EndpointSlice(Arc::new(EndpointSlice {
        service: "front".into(),
        ports: vec![crate::facts::EndpointPort {
            name: "p".into(),
            port: 80,
        }],
        endpoints: vec![crate::facts::Endpoint {
            pod: Some(pod.into()),
            ..crate::synthetic::endpoint("10.0.9.1")
        }],
    }))
}

/// Whether the one endpoint of `front`'s cluster is marked for mTLS.
fn marked(mesh: &CompiledMesh) -> bool {
    let r = mesh
        .shared(ResourceType::Endpoint)
        .find(|r| &*r.name == "outbound|80||front.edge.svc.cluster.local")
        .expect("front's load assignment");
    let a = ClusterLoadAssignment::decode(r.body.value.as_slice()).unwrap();
    a.endpoints[0].lb_endpoints[0].metadata.is_some()
}

#[test]
fn a_gateway_pod_is_no_mtls_endpoint_though_it_carries_the_mesh_label() {
    let front = change(
        FactKind::Service,
        "edge",
        "front",
        Some(service(80, crate::Protocol::Http, "10.96.0.9")),
    );
    let sidecar = change(
        FactKind::Workload,
        "edge",
        "ingress-0",
        Some(meshed(&[("istio", "ingress")])),
    );
    let endpoints = change(
        FactKind::EndpointSlice,
        "edge",
        "front-1",
        Some(slice("ingress-0")),
    );
    let (mut t, mesh) = compile(vec![front, sidecar, endpoints]);
    assert!(marked(&mesh), "a meshed sidecar pod takes mTLS");
    let (mesh, _) = t.apply(vec![change(
        FactKind::Workload,
        "edge",
        "ingress-0",
        Some(meshed(&[
            ("istio", "ingress"),
            ("meshd.io/gateway", "ingress"),
        ])),
    )]);
    assert!(!marked(&mesh), "a gateway pod is reached in plaintext");
}
