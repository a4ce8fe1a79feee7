//! Changing one VirtualService's weights in a mesh of 1,000 Services, each with a VirtualService and a
//! DestinationRule (issue 10's figure): only that Service's route is recompiled and reported, and the
//! bytes of every other resource stay the same.

use std::sync::Arc;

use meshd_translate::synthetic::{synthetic_mesh, traffic_changes, virtual_service};
use meshd_translate::{CompiledMesh, NodeId, ResourceType, TranslateSettings, Translator};

fn dump(mesh: &CompiledMesh) -> Vec<(ResourceType, String, Vec<u8>)> {
    ResourceType::ALL
        .into_iter()
        .flat_map(|ty| {
            mesh.shared(ty)
                .map(move |r| (ty, r.name.to_string(), r.body.value.clone()))
        })
        .collect()
}

#[test]
fn one_virtual_service_weight_change_recompiles_only_its_route() {
    let mesh = synthetic_mesh(1000, 10);
    let mut facts = mesh.changes();
    facts.extend(traffic_changes(&mesh));
    let mut translator = Translator::new(TranslateSettings::default());
    let (before, _) = translator.apply(facts);
    // svc-0 has an HTTP port: its VirtualService's http[] routes are its route configuration.
    let key = &mesh.services[0].0;
    let (after, changed) = translator.apply(vec![virtual_service(key, 50)]);

    let route = "svc-0.ns-0.svc.cluster.local:80";
    assert_eq!(changed.names(ResourceType::Route), [Arc::from(route)]);
    for ty in [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Listener,
    ] {
        assert!(
            changed.names(ty).is_empty(),
            "{}: {:?}",
            ty.short(),
            changed.names(ty)
        );
    }
    for (key, _) in mesh.workloads.iter() {
        let node = NodeId {
            pod: key.name.clone(),
            namespace: key.namespace.clone(),
        };
        assert!(!changed.affects_proxy(&node), "{node}'s own part");
    }
    let (a, b) = (dump(&before), dump(&after));
    assert_eq!(a.len(), b.len(), "no resource added or removed");
    let differ: Vec<String> = a
        .into_iter()
        .zip(b)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| format!("{:?} {}", a.0, a.1))
        .collect();
    assert_eq!(differ, [format!("Route {route}")]);
    assert!(
        after.verdicts.values().all(|v| v.accepted),
        "every resource accepted"
    );
}
