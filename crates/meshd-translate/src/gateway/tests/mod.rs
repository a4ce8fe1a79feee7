//! Gateway proxies' config through the whole translation (facts in, a proxy's resources out): a mesh
//! with Services in `shop`, a gateway pod `ingress-0.edge` and a sidecar `web-0.shop`.

mod http;
mod policy;
mod tls;
mod upstream;

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::listener::v3::{Filter, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use meshd_api::validate::Validate;
use prost::Message;

use crate::facts::{
    Config, Fact, FactChange, FactKind, ObjectKey, Service, ServicePort, TargetPort, Workload,
};
use crate::{CompiledMesh, NodeId, ProxyConfig, ResourceType, TranslateSettings, Translator};

pub(super) const GATEWAY: &str = "ingress-0.edge";
pub(super) const SIDECAR: &str = "web-0.shop";

pub(super) fn service(port: u16, protocol: crate::Protocol, vip: &str) -> Fact {
    Fact::Service(Arc::new(Service {
        vips: vec![vip.into()],
        ports: vec![ServicePort {
            port,
            name: "p".into(),
            protocol,
            target_port: TargetPort::Number(port),
        }],
        selector: BTreeMap::new(),
    }))
}

pub(super) fn workload(labels: &[(&str, &str)]) -> Fact {
    Fact::Workload(Arc::new(Workload {
        ips: vec!["10.0.9.1".into()],
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        service_account: "ingress".into(),
        mesh: None,
        ports: Vec::new(),
    }))
}

pub(super) fn change(kind: FactKind, ns: &str, name: &str, fact: Option<Fact>) -> FactChange {
    FactChange {
        kind,
        key: ObjectKey::new(ns, name),
        fact,
    }
}

/// A Gateway `ns/name` made at `created` (older first wins), checked as the reducer checks it.
pub(super) fn gateway(ns: &str, name: &str, created: i64, spec: serde_json::Value) -> FactChange {
    let object: meshd_api::networking::Gateway = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.meshd.io/v1alpha1", "kind": "Gateway",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }))
    .unwrap();
    let problems = object.validate();
    let fact = Fact::Gateway(Arc::new(Config {
        generation: None,
        created: Some(created),
        spec: object.spec,
        problems,
    }));
    change(FactKind::Gateway, ns, name, Some(fact))
}

pub(super) fn virtual_service(
    ns: &str,
    name: &str,
    created: i64,
    spec: serde_json::Value,
) -> FactChange {
    let object: meshd_api::networking::VirtualService = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.meshd.io/v1alpha1", "kind": "VirtualService",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }))
    .unwrap();
    let problems = object.validate();
    let fact = Fact::VirtualService(Arc::new(Config {
        generation: None,
        created: Some(created),
        spec: object.spec,
        problems,
    }));
    change(FactKind::VirtualService, ns, name, Some(fact))
}

pub(super) fn destination_rule(
    ns: &str,
    name: &str,
    created: i64,
    spec: serde_json::Value,
) -> FactChange {
    let object: meshd_api::networking::DestinationRule =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "networking.meshd.io/v1alpha1", "kind": "DestinationRule",
            "metadata": {"name": name, "namespace": ns}, "spec": spec,
        }))
        .unwrap();
    let problems = object.validate();
    let fact = Fact::DestinationRule(Arc::new(Config {
        generation: None,
        created: Some(created),
        spec: object.spec,
        problems,
    }));
    change(FactKind::DestinationRule, ns, name, Some(fact))
}

/// Services web (HTTP 80), api (HTTP 8080), db (TCP 5432), secure (TLS 443) in `shop`; the gateway pod
/// (`istio: ingress`) and a sidecar pod.
pub(super) fn mesh() -> Vec<FactChange> {
    use crate::Protocol::*;
    vec![
        change(
            FactKind::Service,
            "shop",
            "web",
            Some(service(80, Http, "10.96.0.1")),
        ),
        change(
            FactKind::Service,
            "shop",
            "api",
            Some(service(8080, Http, "10.96.0.2")),
        ),
        change(
            FactKind::Service,
            "shop",
            "db",
            Some(service(5432, Tcp, "10.96.0.3")),
        ),
        change(
            FactKind::Service,
            "shop",
            "secure",
            Some(service(443, Tls, "10.96.0.4")),
        ),
        change(
            FactKind::Workload,
            "edge",
            "ingress-0",
            Some(workload(&[
                ("istio", "ingress"),
                ("meshd.io/gateway", "ingress"),
            ])),
        ),
        change(
            FactKind::Workload,
            "shop",
            "web-0",
            Some(workload(&[("app", "web")])),
        ),
    ]
}

/// The `kubernetes.io/tls` credentials the tests' HTTPS servers name, in the gateway pod's namespace
/// (without them their Gateways are rejected); `b-cert` carries a client CA.
fn credentials() -> Vec<FactChange> {
    ["a-cert", "b-cert", "any-cert", "again", "db-cert"]
        .into_iter()
        .map(|name| {
            let fact = Fact::TlsCredential(Arc::new(crate::facts::TlsCredential {
                cert_chain: format!("cert of {name}").into_bytes(),
                key: format!("key of {name}").into_bytes(),
                ca: (name == "b-cert").then(|| b"client CA".to_vec()),
            }));
            change(FactKind::TlsCredential, "edge", name, Some(fact))
        })
        .collect()
}

pub(super) fn compile(extra: Vec<FactChange>) -> (Translator, CompiledMesh) {
    let mut t = Translator::new(TranslateSettings::default());
    let mut changes = mesh();
    changes.extend(credentials());
    changes.extend(extra);
    let (compiled, _) = t.apply(changes);
    (t, compiled)
}

pub(super) fn node(id: &str) -> NodeId {
    NodeId::parse(id).unwrap()
}

pub(super) fn listeners(config: &ProxyConfig) -> Vec<Listener> {
    config
        .resources(ResourceType::Listener)
        .map(|r| Listener::decode(r.body.value.as_slice()).unwrap())
        .collect()
}

pub(super) fn route(config: &ProxyConfig, name: &str) -> RouteConfiguration {
    let r = config
        .get(ResourceType::Route, name)
        .unwrap_or_else(|| panic!("route {name}"));
    RouteConfiguration::decode(r.body.value.as_slice()).unwrap()
}

pub(super) fn tcp_cluster(f: &Filter) -> String {
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!("typed config");
    };
    let proxy = TcpProxy::decode(any.value.as_slice()).unwrap();
    match proxy.cluster_specifier {
        Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => c,
        other => panic!("one cluster: {other:?}"),
    }
}

pub(super) fn verdict(mesh: &CompiledMesh, kind: &'static str, ns: &str, name: &str) -> String {
    let v = mesh
        .verdicts
        .get(&meshd_api::status::VerdictKey::new(kind, ns, name))
        .unwrap_or_else(|| panic!("a verdict on {kind} {ns}/{name}"));
    if v.accepted {
        "accepted".into()
    } else {
        v.message.clone()
    }
}

/// Gateway `edge/tcp` with a TCP server on 5432 and `more` servers, selecting `istio: ingress`, and
/// VirtualService `shop/db` bound to it: port 5432 to db, and the `tls` routes given.
pub(super) fn tcp_edge(more: serde_json::Value, tls: serde_json::Value) -> Vec<FactChange> {
    let mut servers = vec![
        serde_json::json!({"port": {"number": 5432, "name": "pg", "protocol": "TCP"}, "hosts": ["*"]}),
    ];
    servers.extend(more.as_array().cloned().unwrap_or_default());
    let gw = gateway(
        "edge",
        "tcp",
        10,
        serde_json::json!({"selector": {"istio": "ingress"}, "servers": servers}),
    );
    let vs = virtual_service(
        "shop",
        "db",
        10,
        serde_json::json!({
            "hosts": ["*"], "gateways": ["edge/tcp"],
            "tcp": [{"match": [{"port": 5432}], "route": [{"destination": {"host": "db"}}]}],
            "tls": tls,
        }),
    );
    vec![gw, vs]
}

/// The public Gateway: HTTP on 80 for any host of any namespace, selecting `istio: ingress`.
pub(super) fn public_http() -> FactChange {
    gateway(
        "edge",
        "public",
        10,
        serde_json::json!({
            "selector": {"istio": "ingress"},
            "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
        }),
    )
}
