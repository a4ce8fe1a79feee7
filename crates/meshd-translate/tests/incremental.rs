//! Incremental translation gives the same bytes as translating the same facts from nothing, whatever
//! the history of changes; and one change recompiles (and reports) only what depends on it.

use std::collections::BTreeMap;
use std::sync::Arc;

use meshd_api::MeshSpec;
use meshd_api::mesh::OutboundTrafficPolicy;
use meshd_translate::facts::{Fact, FactChange, FactKind, ObjectKey, TargetPort};
use meshd_translate::synthetic::{endpoint, synthetic_mesh};
use meshd_translate::{CompiledMesh, NodeId, ResourceType, TranslateSettings, Translator};
use proptest::prelude::*;

type State = BTreeMap<(FactKind, ObjectKey), Fact>;

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
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0..9usize, any::<u8>()).prop_map(|(s, b)| Edit::AddEndpoint(s, b)),
        (0..9usize).prop_map(Edit::DropEndpoints),
        (0..9usize).prop_map(Edit::RemoveService),
        (0..9usize).prop_map(Edit::RestoreService),
        (0..9usize).prop_map(Edit::MovePort),
        (0..9usize).prop_map(Edit::Relabel),
        (0..18usize).prop_map(Edit::RemoveWorkload),
        (0..9usize).prop_map(Edit::RemoveSlice),
        (0..9usize, 0..9usize).prop_map(|(a, b)| Edit::SharedVip(a, b)),
        any::<bool>().prop_map(Edit::Policy),
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
            state.insert(k.clone(), Fact::Mesh(Arc::new(spec)));
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

fn initial() -> State {
    synthetic_mesh(9, 2)
        .changes()
        .into_iter()
        .map(|c| ((c.kind, c.key), c.fact.expect("all present")))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn incremental_translation_equals_translation_from_nothing(edits in proptest::collection::vec(edit(), 1..12)) {
        let mut state = initial();
        let mut incremental = Translator::new(TranslateSettings::default());
        incremental.apply(everything(&state));
        for e in &edits {
            let changes = apply_edit(&mut state, e);
            let (mesh, _) = incremental.apply(changes);
            let (fresh, _) = Translator::new(TranslateSettings::default()).apply(everything(&state));
            prop_assert_eq!(dump(&mesh, &state), dump(&fresh, &state), "after {:?}", e);
            prop_assert_eq!(&mesh.warnings, &fresh.warnings);
        }
    }
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
