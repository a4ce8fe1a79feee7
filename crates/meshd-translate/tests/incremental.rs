//! Incremental translation gives the same bytes as translating the same facts from nothing, whatever
//! the history of changes; and one change recompiles (and reports) only what depends on it.

use std::collections::BTreeMap;
use std::sync::Arc;

use meshd_api::MeshSpec;
use meshd_api::mesh::{MtlsMode, OutboundTrafficPolicy};
use meshd_api::security::authorization_policy::{Action, From, Rule, Source};
use meshd_api::security::peer_authentication::PeerMtlsMode;
use meshd_api::status::VerdictKey;
use meshd_translate::facts::{
    Age, AuthorizationPolicy, Config, Fact, FactChange, FactKind, ObjectKey, PeerAuthentication,
    TargetPort,
};
use meshd_translate::synthetic::{endpoint, synthetic_mesh};
use meshd_translate::{
    CompiledMesh, NodeId, ProxyConfig, ResourceType, TranslateSettings, Translator,
};
use proptest::prelude::*;

type State = BTreeMap<(FactKind, ObjectKey), Fact>;

/// A valid policy's fact.
fn config<T>(spec: T) -> meshd_translate::facts::Config<T> {
    meshd_translate::facts::Config {
        generation: None,
        created: None,
        spec,
        problems: Vec::new(),
    }
}

fn everything(state: &State) -> Vec<FactChange> {
    state
        .iter()
        .map(|((kind, key), fact)| FactChange {
            kind: *kind,
            key: key.clone(),
            fact: Some(fact.clone()),
        })
        .collect()
}

/// Every shared resource and every proxy's config, as (name, bytes).
fn dump(mesh: &CompiledMesh, state: &State) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for ty in ResourceType::ALL {
        for r in mesh.shared(ty) {
            out.push((ty.short().into(), r.name.to_string(), r.body.value.clone()));
        }
    }
    for (kind, key) in state.keys() {
        if *kind != FactKind::Workload {
            continue;
        }
        let node = NodeId {
            pod: key.name.clone(),
            namespace: key.namespace.clone(),
        };
        let config = mesh.proxy_config(&node);
        for ty in ResourceType::ALL {
            for r in config.own(ty) {
                out.push((format!("{node}"), r.name.to_string(), r.body.value.clone()));
            }
        }
    }
    out
}

/// One random edit of the facts.
#[derive(Clone, Debug)]
enum Edit {
    AddEndpoint(usize, u8),
    DropEndpoints(usize),
    RemoveService(usize),
    RestoreService(usize),
    MovePort(usize),
    Relabel(usize),
    RemoveWorkload(usize),
    RemoveSlice(usize),
    SharedVip(usize, usize),
    Policy(bool),
    /// Workload w gets (or loses) the `meshd.io/mesh` label.
    Meshed(usize),
    /// Slice s's first endpoint names its pod by `targetRef`.
    TargetRef(usize),
    /// A PeerAuthentication: scope (0 mesh-wide, 1 namespace, 2 workload), namespace, mode (4 = gone).
    Peer(u8, usize, u8),
    /// An AuthorizationPolicy in a namespace (meshd-system for 10), or its removal.
    Authz(usize, bool),
    /// The Mesh's mTLS mode.
    MeshMtls(u8),
    /// A ServiceEntry in namespace n, towards workload w's IP: (n, w, shape); shape 0 removes it,
    /// else it picks location, resolution, protocol, and whether it has an address (a Service's VIP).
    Entry(usize, usize, u8),
    /// Workload w gets (or loses) the `meshd.io/gateway` label: a gateway proxy.
    GatewayPod(usize),
    /// A Gateway in namespace n selecting `app: svc-<s>` (or every gateway pod): shape 0 removes it,
    /// else it picks the servers (HTTP, TCP on the same port, TLS passthrough, HTTPS).
    Gateway(usize, usize, u8),
    /// A VirtualService in namespace n bound to Gateway `ns-<g>/gw` (or removed, shape 0) routing
    /// HTTP, TCP or TLS to service s.
    BoundVs(usize, usize, usize, u8),
    /// Service s's traffic resources (shape 0 removes them): bit 0 a DestinationRule with subsets
    /// v1/v2, bit 1 a VirtualService splitting 90/10 between them (50/50 with bit 3), bit 2 that
    /// VirtualService also routes `/next` to the next Service by FQDN without a port, bit 4 it sends
    /// pods labelled `version: v2` (HTTP and TCP) to the next Service, bit 5 it is exported only to
    /// its namespace: per-proxy variants.
    Traffic(usize, u8),
    /// Workload w's `version` label: v1, v2 or none.
    Version(usize, u8),
    /// A DestinationRule for service s's host in the namespace of service o (meshd-system for 9):
    /// shape 0 removes it, else `exportTo` is omitted, `.`, s's namespace, `~`, or `.` and s's
    /// namespace; its subset v1 selects `version: v2` and it hashes by a cookie. Per-proxy clusters.
    ForeignRule(usize, usize, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => (0..9usize, any::<u8>()).prop_map(|(s, b)| Edit::AddEndpoint(s, b)),
        1 => (0..9usize).prop_map(Edit::DropEndpoints),
        1 => (0..9usize).prop_map(Edit::RemoveService),
        1 => (0..9usize).prop_map(Edit::RestoreService),
        1 => (0..9usize).prop_map(Edit::MovePort),
        1 => (0..9usize).prop_map(Edit::Relabel),
        1 => (0..18usize).prop_map(Edit::RemoveWorkload),
        1 => (0..9usize).prop_map(Edit::RemoveSlice),
        1 => (0..9usize, 0..9usize).prop_map(|(a, b)| Edit::SharedVip(a, b)),
        1 => any::<bool>().prop_map(Edit::Policy),
        1 => (0..18usize).prop_map(Edit::Meshed),
        1 => (0..9usize).prop_map(Edit::TargetRef),
        1 => (0..3u8, 0..3usize, 0..5u8).prop_map(|(a, b, c)| Edit::Peer(a, b, c)),
        1 => (0..11usize, any::<bool>()).prop_map(|(n, b)| Edit::Authz(n, b)),
        1 => (0..3u8).prop_map(Edit::MeshMtls),
        1 => (0..3usize, 0..18usize, 0..32u8).prop_map(|(n, w, v)| Edit::Entry(n, w, v)),
        3 => (0..9usize, 0..64u8).prop_map(|(s, t)| Edit::Traffic(s, t)),
        1 => (0..18usize, 0..3u8).prop_map(|(w, v)| Edit::Version(w, v)),
        2 => (0..9usize, 0..10usize, 0..6u8).prop_map(|(s, o, v)| Edit::ForeignRule(s, o, v)),
        // Gateways need a gateway pod, a Gateway selecting it and a VirtualService bound to it at
        // once: their edits are likelier, on the first two services' pods and namespaces.
        4 => (0..4usize).prop_map(Edit::GatewayPod),
        4 => (0..2usize, 0..3usize, 0..6u8).prop_map(|(n, s, v)| Edit::Gateway(n, s, v)),
        4 => (0..2usize, 0..2usize, 0..9usize, 0..8u8).prop_map(|(n, g, s, v)| Edit::BoundVs(n, g, s, v)),
    ]
}

fn apply_edit(state: &mut State, edit: &Edit) -> Vec<FactChange> {
    let base = synthetic_mesh(9, 2);
    let mut touched: Vec<(FactKind, ObjectKey)> = Vec::new();
    let slice_key = |s: usize| (FactKind::EndpointSlice, base.slices[s].0.clone());
    let service_key = |s: usize| (FactKind::Service, base.services[s].0.clone());
    match edit {
        Edit::AddEndpoint(s, b) => {
            let k = slice_key(*s);
            if let Some(Fact::EndpointSlice(slice)) = state.get_mut(&k) {
                Arc::make_mut(slice)
                    .endpoints
                    .push(endpoint(&format!("10.250.0.{b}")));
            }
            touched.push(k);
        }
        Edit::DropEndpoints(s) => {
            let k = slice_key(*s);
            if let Some(Fact::EndpointSlice(slice)) = state.get_mut(&k) {
                Arc::make_mut(slice).endpoints.clear();
            }
            touched.push(k);
        }
        Edit::RemoveService(s) => {
            let k = service_key(*s);
            state.remove(&k);
            touched.push(k);
        }
        Edit::RestoreService(s) => {
            let k = service_key(*s);
            state.insert(
                k.clone(),
                Fact::Service(Arc::new(base.services[*s].1.clone())),
            );
            touched.push(k);
        }
        Edit::MovePort(s) => {
            let k = service_key(*s);
            if let Some(Fact::Service(svc)) = state.get_mut(&k) {
                let svc = Arc::make_mut(svc);
                for p in &mut svc.ports {
                    p.port = p.port.wrapping_add(1).max(1);
                    p.target_port = TargetPort::Number(p.port);
                }
            }
            touched.push(k);
        }
        Edit::Relabel(s) => {
            let k = service_key(*s);
            if let Some(Fact::Service(svc)) = state.get_mut(&k) {
                Arc::make_mut(svc)
                    .selector
                    .insert("app".into(), format!("svc-{}", (s + 1) % 9));
            }
            touched.push(k);
        }
        Edit::RemoveWorkload(w) => {
            let k = (FactKind::Workload, base.workloads[*w].0.clone());
            state.remove(&k);
            touched.push(k);
        }
        Edit::RemoveSlice(s) => {
            let k = slice_key(*s);
            state.remove(&k);
            touched.push(k);
        }
        Edit::SharedVip(a, b) => {
            let vip = base.services[*b].1.vips.clone();
            let k = service_key(*a);
            if let Some(Fact::Service(svc)) = state.get_mut(&k) {
                Arc::make_mut(svc).vips = vip;
            }
            touched.push(k);
        }
        Edit::Policy(registry_only) => {
            let mut spec = MeshSpec::default();
            if *registry_only {
                spec.outbound_traffic_policy = OutboundTrafficPolicy::RegistryOnly;
            }
            let k = (FactKind::Mesh, ObjectKey::new("", "default"));
            if let Some(Fact::Mesh(old)) = state.get(&k) {
                spec.mtls = old.mtls.clone();
            }
            state.insert(k.clone(), Fact::Mesh(Arc::new(spec)));
            touched.push(k);
        }
        Edit::MeshMtls(m) => {
            let k = (FactKind::Mesh, ObjectKey::new("", "default"));
            let mut spec = match state.get(&k) {
                Some(Fact::Mesh(old)) => (**old).clone(),
                _ => MeshSpec::default(),
            };
            spec.mtls.mode =
                [MtlsMode::Permissive, MtlsMode::Strict, MtlsMode::Disable][*m as usize];
            state.insert(k.clone(), Fact::Mesh(Arc::new(spec)));
            touched.push(k);
        }
        Edit::Meshed(w) => {
            let k = (FactKind::Workload, base.workloads[*w].0.clone());
            if let Some(Fact::Workload(wl)) = state.get_mut(&k) {
                let wl = Arc::make_mut(wl);
                wl.mesh = match wl.mesh {
                    Some(_) => None,
                    None => Some("default".into()),
                };
            }
            touched.push(k);
        }
        Edit::TargetRef(s) => {
            let k = slice_key(*s);
            let pod = format!("svc-{s}-0");
            if let Some(Fact::EndpointSlice(slice)) = state.get_mut(&k)
                && let Some(ep) = Arc::make_mut(slice).endpoints.first_mut()
            {
                ep.pod = Some(pod);
            }
            touched.push(k);
        }
        Edit::Peer(scope, ns, mode) => {
            let (namespace, selector) = match scope {
                0 => ("meshd-system".to_string(), BTreeMap::new()),
                1 => (format!("ns-{ns}"), BTreeMap::new()),
                _ => (
                    format!("ns-{ns}"),
                    BTreeMap::from([("app".to_string(), format!("svc-{ns}"))]),
                ),
            };
            let k = (
                FactKind::PeerAuthentication,
                ObjectKey::new(namespace, format!("pa-{scope}")),
            );
            let modes = [
                PeerMtlsMode::Unset,
                PeerMtlsMode::Disable,
                PeerMtlsMode::Permissive,
                PeerMtlsMode::Strict,
            ];
            match modes.get(*mode as usize) {
                Some(m) => {
                    let port = base.services[*ns].1.ports[0].port;
                    state.insert(
                        k.clone(),
                        Fact::PeerAuthentication(Arc::new(config(PeerAuthentication {
                            selector: selector.clone(),
                            mode: *m,
                            ports: if selector.is_empty() {
                                BTreeMap::new()
                            } else {
                                BTreeMap::from([(port, PeerMtlsMode::Disable)])
                            },
                            age: Age::default(),
                        }))),
                    );
                }
                None => {
                    state.remove(&k);
                }
            }
            touched.push(k);
        }
        Edit::Entry(ns, w, shape) => {
            let k = (
                FactKind::ServiceEntry,
                ObjectKey::new(format!("ns-{ns}"), "se"),
            );
            if *shape == 0 {
                state.remove(&k);
            } else {
                let ip = base.workloads[*w].1.ips[0].clone();
                let vip = base.services[*w % 9].1.vips[0].clone();
                let resolution = ["STATIC", "NONE", "DNS", "STATIC"][usize::from(shape >> 3)];
                let spec = serde_json::json!({
                    "hosts": [format!("se-{ns}.example.com")],
                    "addresses": if shape & 1 == 1 { vec![vip] } else { Vec::new() },
                    "ports": [{"number": 80, "name": "p",
                               "protocol": if shape & 2 == 2 { "HTTP" } else { "TCP" }}],
                    "location": if shape & 4 == 4 { "MESH_INTERNAL" } else { "MESH_EXTERNAL" },
                    "resolution": resolution,
                    "endpoints": if shape >> 3 == 1 { Vec::new() } else { vec![serde_json::json!({"address": ip})] },
                });
                state.insert(
                    k.clone(),
                    Fact::ServiceEntry(Arc::new(Config {
                        generation: None,
                        created: None,
                        spec: serde_json::from_value(spec).expect("a ServiceEntry spec"),
                        problems: Vec::new(),
                    })),
                );
            }
            touched.push(k);
        }
        Edit::GatewayPod(w) => {
            let k = (FactKind::Workload, base.workloads[*w].0.clone());
            if let Some(Fact::Workload(wl)) = state.get_mut(&k) {
                let labels = &mut Arc::make_mut(wl).labels;
                if labels.remove("meshd.io/gateway").is_none() {
                    labels.insert("meshd.io/gateway".into(), "ingress".into());
                }
            }
            touched.push(k);
        }
        Edit::Gateway(ns, svc, shape) => {
            let k = (FactKind::Gateway, ObjectKey::new(format!("ns-{ns}"), "gw"));
            let selector = if *svc == 2 {
                serde_json::json!({})
            } else {
                serde_json::json!({"app": format!("svc-{svc}")})
            };
            let servers = match shape {
                1 => {
                    serde_json::json!([{"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}])
                }
                2 => {
                    serde_json::json!([{"port": {"number": 8080, "name": "tcp", "protocol": "TCP"}, "hosts": ["*"]}])
                }
                3 => {
                    serde_json::json!([{"port": {"number": 9443, "name": "tls", "protocol": "TLS"}, "hosts": ["*.example.com"], "tls": {"mode": "PASSTHROUGH"}}])
                }
                4 => serde_json::json!([
                    {"port": {"number": 8443, "name": "https", "protocol": "HTTPS"}, "hosts": ["ns-1/*"], "tls": {"mode": "SIMPLE", "credentialName": "c"}},
                    {"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"], "tls": {"httpsRedirect": true}},
                ]),
                _ => serde_json::json!([]),
            };
            if servers.as_array().is_some_and(Vec::is_empty) {
                state.remove(&k);
            } else {
                let spec = serde_json::json!({"selector": selector, "servers": servers});
                state.insert(
                    k.clone(),
                    Fact::Gateway(Arc::new(Config {
                        generation: None,
                        created: Some(*ns as i64),
                        spec: serde_json::from_value(spec).expect("a Gateway spec"),
                        problems: Vec::new(),
                    })),
                );
            }
            touched.push(k);
        }
        Edit::BoundVs(ns, gw, svc, shape) => {
            let k = (
                FactKind::VirtualService,
                ObjectKey::new(format!("ns-{ns}"), "gvs"),
            );
            let (service, _) = &base.services[*svc];
            let host = format!("{}.{}.svc.cluster.local", service.name, service.namespace);
            let gateways = vec![format!("ns-{gw}/gw")];
            let spec = match shape {
                1 | 5 => Some(serde_json::json!({
                    "hosts": [if *shape == 1 { "a.example.com" } else { "*" }], "gateways": gateways,
                    "http": [{"route": [{"destination": {"host": host}}]}],
                })),
                2 => Some(serde_json::json!({
                    "hosts": ["*"], "gateways": gateways,
                    "tcp": [{"route": [{"destination": {"host": host}}]}],
                })),
                3 => Some(serde_json::json!({
                    "hosts": ["s.example.com"], "gateways": gateways,
                    "tls": [{"match": [{"sniHosts": ["s.example.com"]}], "route": [{"destination": {"host": host}}]}],
                })),
                4 => Some(serde_json::json!({
                    "hosts": ["other.example.net"], "gateways": gateways,
                    "http": [{"route": [{"destination": {"host": host}}]}],
                })),
                _ => None,
            };
            match spec {
                Some(spec) => {
                    state.insert(
                        k.clone(),
                        Fact::VirtualService(Arc::new(config(
                            serde_json::from_value(spec).expect("a VirtualService spec"),
                        ))),
                    );
                }
                None => {
                    state.remove(&k);
                }
            }
            touched.push(k);
        }
        Edit::Traffic(s, shape) => {
            let key = &base.services[*s].0;
            let dr = (FactKind::DestinationRule, key.clone());
            let vs = (FactKind::VirtualService, key.clone());
            let next = &base.services[(s + 1) % 9].0;
            let next = format!("{}.{}.svc.cluster.local", next.name, next.namespace);
            let v2 = if shape & 8 == 8 { 50 } else { 10 };
            let mut http = vec![serde_json::json!({"route": [
                {"destination": {"host": key.name, "subset": "v1"}, "weight": 100 - v2},
                {"destination": {"host": key.name, "subset": "v2"}, "weight": v2},
            ]})];
            if shape & 4 == 4 {
                http.insert(
                    0,
                    serde_json::json!({"match": [{"uri": {"prefix": "/next"}}],
                    "route": [{"destination": {"host": next}}]}),
                );
            }
            let mut spec = serde_json::json!({"hosts": [key.name], "http": http});
            if shape & 16 == 16 {
                let v2 = serde_json::json!({"match": [{"sourceLabels": {"version": "v2"}}],
                    "route": [{"destination": {"host": next}}]});
                spec["http"]
                    .as_array_mut()
                    .expect("a list")
                    .insert(0, v2.clone());
                spec["tcp"] = serde_json::json!([v2]);
            }
            if shape & 32 == 32 {
                spec["exportTo"] = serde_json::json!(["."]);
            }
            let specs = [
                (
                    dr.clone(),
                    shape & 1 == 1,
                    serde_json::json!({
                        "host": key.name,
                        // A consistent hash: the routes to this host (another Service's `/next`
                        // among them) carry its hash policy.
                        "trafficPolicy": {"outlierDetection": {"consecutive5xxErrors": 5},
                                          "loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}},
                        "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                    {"name": "v2", "labels": {"version": "v2"}}],
                    }),
                ),
                (vs.clone(), shape & 2 == 2, spec),
            ];
            for (k, present, spec) in specs {
                if !present {
                    state.remove(&k);
                } else {
                    let fact = match k.0 {
                        FactKind::DestinationRule => Fact::DestinationRule(Arc::new(config(
                            serde_json::from_value(spec).expect("a DestinationRule spec"),
                        ))),
                        _ => Fact::VirtualService(Arc::new(config(
                            serde_json::from_value(spec).expect("a VirtualService spec"),
                        ))),
                    };
                    state.insert(k.clone(), fact);
                }
                touched.push(k);
            }
        }
        Edit::ForeignRule(s, o, shape) => {
            let (service, _) = &base.services[*s];
            let namespace = match base.services.get(*o) {
                Some((other, _)) => other.namespace.clone(),
                None => "meshd-system".to_string(),
            };
            let k = (
                FactKind::DestinationRule,
                ObjectKey::new(namespace, format!("for-{}", service.name)),
            );
            let export_to = match shape {
                1 => None,
                2 => Some(vec![".".to_string()]),
                3 => Some(vec![service.namespace.clone()]),
                4 => Some(vec!["~".to_string()]),
                _ => Some(vec![".".to_string(), service.namespace.clone()]),
            };
            if *shape == 0 {
                state.remove(&k);
            } else {
                let mut spec = serde_json::json!({
                    "host": format!("{}.{}.svc.cluster.local", service.name, service.namespace),
                    "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpCookie": {"name": "u", "ttl": "10s"}}}},
                    "subsets": [{"name": "v1", "labels": {"version": "v2"}}],
                });
                if let Some(e) = export_to {
                    spec["exportTo"] = serde_json::json!(e);
                }
                state.insert(
                    k.clone(),
                    Fact::DestinationRule(Arc::new(config(
                        serde_json::from_value(spec).expect("a DestinationRule spec"),
                    ))),
                );
            }
            touched.push(k);
        }
        Edit::Version(w, v) => {
            let k = (FactKind::Workload, base.workloads[*w].0.clone());
            if let Some(Fact::Workload(wl)) = state.get_mut(&k) {
                let labels = &mut Arc::make_mut(wl).labels;
                match v {
                    0 => labels.insert("version".into(), "v1".into()),
                    1 => labels.insert("version".into(), "v2".into()),
                    _ => labels.remove("version"),
                };
            }
            touched.push(k);
        }
        Edit::Authz(ns, present) => {
            let namespace = if *ns == 10 {
                "meshd-system".to_string()
            } else {
                format!("ns-{ns}")
            };
            let k = (
                FactKind::AuthorizationPolicy,
                ObjectKey::new(namespace, "ap"),
            );
            if *present {
                let rule = Rule {
                    from: vec![From {
                        source: Some(Source {
                            namespaces: vec!["ns-1".into()],
                            ..Default::default()
                        }),
                    }],
                    ..Default::default()
                };
                state.insert(
                    k.clone(),
                    Fact::AuthorizationPolicy(Arc::new(config(AuthorizationPolicy {
                        selector: BTreeMap::new(),
                        action: Action::Deny,
                        rules: vec![rule],
                    }))),
                );
            } else {
                state.remove(&k);
            }
            touched.push(k);
        }
    }
    touched
        .into_iter()
        .map(|(kind, key)| FactChange {
            fact: state.get(&(kind, key.clone())).cloned(),
            kind,
            key,
        })
        .collect()
}

/// The synthetic mesh, and in every namespace the `kubernetes.io/tls` credential `c` that the
/// Gateways' HTTPS servers name (without it they would be rejected, and a rejected update keeps the
/// previous version in force: history, which a translation from nothing cannot know).
fn initial() -> State {
    let mut state: State = synthetic_mesh(9, 2)
        .changes()
        .into_iter()
        .map(|c| ((c.kind, c.key), c.fact.expect("all present")))
        .collect();
    for ns in 0..9 {
        let credential = meshd_translate::facts::TlsCredential {
            cert_chain: b"certificate".to_vec(),
            key: b"key".to_vec(),
            ca: None,
        };
        state.insert(
            (
                FactKind::TlsCredential,
                ObjectKey::new(format!("ns-{ns}"), "c"),
            ),
            Fact::TlsCredential(Arc::new(credential)),
        );
    }
    state
}

/// Records the version of each judged resource that is accepted now.
fn remember_accepted(state: &State, mesh: &CompiledMesh, accepted: &mut State) {
    for ((kind, key), fact) in state.iter().filter(|((k, _), _)| k.has_verdict()) {
        let verdict = mesh.verdicts.get(&VerdictKey::new(
            kind.name(),
            key.namespace.clone(),
            key.name.clone(),
        ));
        if verdict.is_some_and(|v| v.accepted) {
            accepted.insert((*kind, key.clone()), fact.clone());
        }
    }
}

/// What is in force: `state`, with a rejected update's resource at its last accepted version (SPEC
/// §8: a rejected update leaves it in force), history that a translation from nothing cannot know.
fn in_force(state: &State, mesh: &CompiledMesh, accepted: &State) -> State {
    let mut out = state.clone();
    for ((kind, key), fact) in state.iter().filter(|((k, _), _)| k.has_verdict()) {
        let verdict = mesh.verdicts.get(&VerdictKey::new(
            kind.name(),
            key.namespace.clone(),
            key.name.clone(),
        ));
        let kept = verdict.is_some_and(|v| {
            !v.accepted
                && v.message
                    .ends_with("the last accepted version stays in force)")
        });
        if let (true, Some(previous)) = (kept, accepted.get(&(*kind, key.clone()))) {
            out.insert((*kind, key.clone()), previous.clone());
        } else {
            out.insert((*kind, key.clone()), fact.clone());
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn incremental_translation_equals_translation_from_nothing(edits in proptest::collection::vec(edit(), 1..12)) {
        let mut state = initial();
        let mut incremental = Translator::new(TranslateSettings::default());
        let (first, _) = incremental.apply(everything(&state));
        // Every proxy's config as a stream keeps it: refreshed, its own part recomputed only when the
        // ChangeSet names the proxy.
        let nodes: Vec<NodeId> = initial()
            .keys()
            .filter(|(kind, _)| *kind == FactKind::Workload)
            .map(|(_, k)| NodeId { pod: k.name.clone(), namespace: k.namespace.clone() })
            .collect();
        let mut held: Vec<ProxyConfig> = nodes.iter().map(|n| first.proxy_config(n)).collect();
        let mut accepted = BTreeMap::new();
        remember_accepted(&state, &first, &mut accepted);
        for e in &edits {
            let changes = apply_edit(&mut state, e);
            let (mesh, changed) = incremental.apply(changes);
            let in_force = in_force(&state, &mesh, &accepted);
            remember_accepted(&state, &mesh, &mut accepted);
            let (fresh, _) = Translator::new(TranslateSettings::default()).apply(everything(&in_force));
            prop_assert_eq!(dump(&mesh, &state), dump(&fresh, &state), "after {:?}", e);
            prop_assert_eq!(&mesh.warnings, &fresh.warnings);
            for (config, node) in held.iter_mut().zip(&nodes) {
                *config = mesh.refresh(config, changed.affects_proxy(node));
                let want = fresh.proxy_config(node);
                for ty in ResourceType::ALL {
                    let own = |c: &ProxyConfig| {
                        c.own(ty).iter().map(|r| (r.name.to_string(), r.body.value.clone())).collect::<Vec<_>>()
                    };
                    prop_assert_eq!(own(config), own(&want), "{} {} after {:?}", node, ty.short(), e);
                }
            }
        }
    }
}

/// A found case: a Gateway route's update naming a removed Service is rejected and the route it
/// replaces stays in force; compared with a translation from nothing given that route.
#[test]
fn a_rejected_gateway_route_update_keeps_the_route_it_replaces() {
    let edits = [
        Edit::RemoveService(7),
        Edit::Gateway(1, 1, 4),
        Edit::BoundVs(1, 1, 0, 1),
        Edit::GatewayPod(3),
        Edit::BoundVs(1, 0, 7, 1),
    ];
    let mut state = initial();
    let mut incremental = Translator::new(TranslateSettings::default());
    let (first, _) = incremental.apply(everything(&state));
    let mut accepted = BTreeMap::new();
    remember_accepted(&state, &first, &mut accepted);
    let mut mesh = first;
    for e in &edits {
        let changes = apply_edit(&mut state, e);
        mesh = incremental.apply(changes).0;
        remember_accepted(&state, &mesh, &mut accepted);
    }
    let verdict = &mesh.verdicts[&VerdictKey::new("VirtualService", "ns-1", "gvs")];
    assert!(!verdict.accepted, "{verdict:?}");
    assert!(
        verdict
            .message
            .ends_with("the last accepted version stays in force)"),
        "{verdict:?}"
    );
    let (fresh, _) = Translator::new(TranslateSettings::default())
        .apply(everything(&in_force(&state, &mesh, &accepted)));
    assert_eq!(dump(&mesh, &state), dump(&fresh, &state));
    let (from_nothing, _) = Translator::new(TranslateSettings::default()).apply(everything(&state));
    assert_ne!(
        dump(&mesh, &state),
        dump(&from_nothing, &state),
        "the kept route is history"
    );
}

/// A route's hash policy is its destination's DestinationRule's: when svc-1 gets a rule with a
/// consistent hash, svc-0's `/next` route to it changes too.
#[test]
fn a_destination_rule_reaches_the_routes_of_other_hosts_that_route_to_its_host() {
    let mut state = initial();
    let mut incremental = Translator::new(TranslateSettings::default());
    incremental.apply(everything(&state));
    let mut mesh = None;
    for e in [Edit::Traffic(0, 1 | 2 | 4), Edit::Traffic(1, 1)] {
        let changes = apply_edit(&mut state, &e);
        mesh = Some(incremental.apply(changes).0);
    }
    let mesh = mesh.expect("two edits");
    let (fresh, _) = Translator::new(TranslateSettings::default()).apply(everything(&state));
    let next = dump(&fresh, &state)
        .into_iter()
        .find(|(ty, name, _)| ty == "rds" && name.starts_with("svc-0.ns-0"))
        .expect("svc-0's route");
    assert!(
        String::from_utf8_lossy(&next.2).contains("x-user"),
        "the /next route hashes by svc-1's rule"
    );
    assert_eq!(dump(&mesh, &state), dump(&fresh, &state));
}

#[test]
fn an_endpoint_change_recompiles_only_that_load_assignment() {
    let mut state = initial();
    let mut translator = Translator::new(TranslateSettings::default());
    translator.apply(everything(&state));
    let changes = apply_edit(&mut state, &Edit::AddEndpoint(0, 7));
    let (_, changed) = translator.apply(changes);
    assert_eq!(
        changed.names(ResourceType::Endpoint),
        [Arc::from("outbound|80||svc-0.ns-0.svc.cluster.local")]
    );
    for ty in [
        ResourceType::Cluster,
        ResourceType::Listener,
        ResourceType::Route,
    ] {
        assert!(changed.names(ty).is_empty(), "{}", ty.short());
    }
    let node = NodeId::parse("svc-0-0.ns-0").unwrap();
    assert!(!changed.affects_proxy(&node), "no proxy's own part");
}

#[test]
fn a_selector_change_affects_the_pods_it_selected_and_selects() {
    let mut state = initial();
    let mut translator = Translator::new(TranslateSettings::default());
    translator.apply(everything(&state));
    // svc-0 (ns-0) now selects app=svc-1, whose pod lives in ns-1: only svc-0-0 is affected.
    let changes = apply_edit(&mut state, &Edit::Relabel(0));
    let (_, changed) = translator.apply(changes);
    assert!(changed.affects_proxy(&NodeId::parse("svc-0-0.ns-0").unwrap()));
    assert!(!changed.affects_proxy(&NodeId::parse("client-0.ns-0").unwrap()));
    assert!(!changed.affects_proxy(&NodeId::parse("svc-1-0.ns-1").unwrap()));
    assert!(
        changed.names(ResourceType::Listener).is_empty(),
        "VIPs unchanged"
    );
}

/// A MESH_INTERNAL ServiceEntry's auto mTLS follows its endpoint pod: meshing the pod afterwards, or
/// changing the Mesh's mode, recompiles the entry's cluster as translating from nothing would.
#[test]
fn a_mesh_internal_entry_follows_its_endpoint_pods_sidecar_and_the_mesh_mode() {
    let mut state = initial();
    let mut translator = Translator::new(TranslateSettings::default());
    translator.apply(everything(&state));
    // Internal (4), STATIC, HTTP (2), by address (1), towards workload 0's IP.
    for edit in [
        Edit::Entry(0, 0, 7),
        Edit::Meshed(0),
        Edit::MeshMtls(2),
        Edit::MeshMtls(1),
    ] {
        let changes = apply_edit(&mut state, &edit);
        let (mesh, _) = translator.apply(changes);
        let (fresh, _) = Translator::new(TranslateSettings::default()).apply(everything(&state));
        let (a, b) = (dump(&mesh, &state), dump(&fresh, &state));
        let differ: Vec<(&String, &String)> = a
            .iter()
            .chain(&b)
            .filter(|r| !(a.contains(r) && b.contains(r)))
            .map(|(ty, name, _)| (ty, name))
            .collect();
        assert!(differ.is_empty(), "after {edit:?}: differ: {differ:?}");
    }
}

/// A VirtualService routing to another Service without a port takes that Service's only port: when
/// the port moves, the route follows, as translating from nothing gives.
#[test]
fn a_route_to_another_service_follows_its_port() {
    let mut state = initial();
    let mut translator = Translator::new(TranslateSettings::default());
    translator.apply(everything(&state));
    for edit in [Edit::Traffic(0, 0b0111), Edit::MovePort(1)] {
        let changes = apply_edit(&mut state, &edit);
        let (mesh, _) = translator.apply(changes);
        let (fresh, _) = Translator::new(TranslateSettings::default()).apply(everything(&state));
        assert_eq!(dump(&mesh, &state), dump(&fresh, &state), "after {edit:?}");
    }
}
