//! Cost of one endpoint change at 100, 1,000 and 5,000 services × 10 endpoints: the translation's time
//! (target: ≤ 1 ms, flat in the number of services) and the bytes a delta proxy is sent (printed).

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use meshd_translate::facts::{Fact, FactChange, FactKind};
use meshd_translate::synthetic::{endpoint, synthetic_mesh};
use meshd_translate::{NodeId, ResourceType, TranslateSettings, Translator};

fn endpoint_change(c: &mut Criterion) {
    let node = NodeId::parse("client-0.ns-0").expect("a valid node id");
    let mut group = c.benchmark_group("endpoint_change");
    group.sample_size(50);
    for services in [100, 1000, 5000] {
        let mesh = synthetic_mesh(services, 10);
        let (key, mut slice) = mesh.slices[0].clone();
        slice.endpoints.push(endpoint("10.255.0.1"));
        let change = FactChange {
            kind: FactKind::EndpointSlice,
            key,
            fact: Some(Fact::EndpointSlice(Arc::new(slice))),
        };
        let mut translator = Translator::new(TranslateSettings::default());
        let (before, _) = translator.apply(mesh.changes());
        let (after, changed) = translator.apply(vec![change.clone()]);
        let (a, b) = (before.proxy_config(&node), after.proxy_config(&node));
        let (mut count, mut bytes) = (0, 0);
        for ty in ResourceType::ALL {
            for name in changed.names(ty) {
                if let Some(r) = b.get(ty, name)
                    && a.get(ty, name).is_none_or(|o| o.version != r.version)
                {
                    count += 1;
                    bytes += r.body.value.len();
                }
            }
        }
        println!(
            "{services} services x 10 endpoints: one endpoint change pushes {count} resource(s), {bytes} bytes per proxy (delta)"
        );
        // A running control plane: one translator, changes applied one after another (the endpoint
        // added, then removed again, and so on), each returning its compiled mesh.
        let (key, original) = mesh.slices[0].clone();
        let back = FactChange {
            kind: FactKind::EndpointSlice,
            key,
            fact: Some(Fact::EndpointSlice(Arc::new(original))),
        };
        let mut n = 1u64;
        group.bench_function(format!("{services}"), |bench| {
            bench.iter(|| {
                n += 1;
                let c = if n % 2 == 1 { &change } else { &back };
                translator.apply(vec![c.clone()])
            })
        });
    }
    group.finish();
}

criterion_group!(benches, endpoint_change);
criterion_main!(benches);
