//! Traffic resources at 1,000 services × 10 endpoints, each Service with a VirtualService (90/10 to
//! subsets v1/v2, retries) and a DestinationRule (two subsets, connection pool, outlier detection):
//! translation for one proxy from nothing (target ≤ 15 ms), against the same mesh without them; and
//! changing one VirtualService's weights: its time, and what is pushed (resources, bytes per proxy).

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use meshd_translate::synthetic::{synthetic_mesh, traffic_changes, virtual_service as vs};
use meshd_translate::{NodeId, ResourceType, TranslateSettings, Translator};

fn traffic(c: &mut Criterion) {
    let mesh = synthetic_mesh(1000, 10);
    let plain = mesh.changes();
    let mut with = plain.clone();
    with.extend(traffic_changes(&mesh));
    let node = NodeId::parse("client-0.ns-0").expect("a valid node id");
    let mut group = c.benchmark_group("traffic_1000x10");
    group.sample_size(10);
    for (name, facts) in [("first_proxy_plain", &plain), ("first_proxy_vs_dr", &with)] {
        // Timed: from the facts to the proxy's config. Not timed: copying the input, and dropping
        // the translator and its result (a running control plane keeps its translator; the
        // `traffic_cost` example prints the drop).
        group.bench_function(name, |b| {
            b.iter_batched(
                || facts.clone(),
                |facts| {
                    let mut translator = Translator::new(TranslateSettings::default());
                    let (compiled, _) = translator.apply(facts);
                    let config = compiled.proxy_config(&node);
                    (translator, compiled, config)
                },
                BatchSize::PerIteration,
            );
        });
    }

    // One VirtualService's weights change (an HTTP service: svc-0): what is pushed, and its time.
    let key = mesh.services[0].0.clone();
    let mut translator = Translator::new(TranslateSettings::default());
    let (before, _) = translator.apply(with.clone());
    let (after, changed) = translator.apply(vec![vs(&key, 50)]);
    let (a, b) = (before.proxy_config(&node), after.proxy_config(&node));
    let (mut pushed, mut bytes) = (Vec::new(), 0);
    for ty in ResourceType::ALL {
        for name in changed.names(ty) {
            if let Some(r) = b.get(ty, name)
                && a.get(ty, name).is_none_or(|o| o.version != r.version)
            {
                pushed.push(format!("{ty:?} {name}"));
                bytes += r.body.value.len();
            }
        }
    }
    println!(
        "one VirtualService's weights changed: pushes {} resource(s) {pushed:?}, {bytes} bytes per proxy (delta)",
        pushed.len()
    );
    let mut n = 0;
    group.bench_function("one_vs_weight_change", |bench| {
        bench.iter(|| {
            n += 1;
            translator.apply(vec![vs(&key, if n % 2 == 0 { 50 } else { 10 })])
        })
    });
    group.finish();
}

criterion_group!(benches, traffic);
criterion_main!(benches);
