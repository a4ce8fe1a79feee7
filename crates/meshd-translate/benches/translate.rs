//! Translation cost at 1,000 services × 10 endpoints (target: ≤ 10 ms for one proxy).
//! `first_proxy` is the figure the issue names: every fact translated from nothing, plus one proxy's
//! own part; `proxy_config` is what each further proxy costs.

use criterion::{Criterion, criterion_group, criterion_main};
use meshd_translate::synthetic::synthetic_mesh;
use meshd_translate::{NodeId, TranslateSettings, Translator};

fn translate(c: &mut Criterion) {
    let facts = synthetic_mesh(1000, 10).changes();
    let node = NodeId::parse("svc-0-0.ns-0").expect("a valid node id");
    let mut group = c.benchmark_group("translate_1000x10");
    group.sample_size(20);
    group.bench_function("first_proxy", |b| {
        b.iter(|| {
            let (mesh, _) = Translator::new(TranslateSettings::default()).apply(facts.clone());
            mesh.proxy_config(&node)
        });
    });
    let (compiled, _) = Translator::new(TranslateSettings::default()).apply(facts.clone());
    group.bench_function("proxy_config", |b| b.iter(|| compiled.proxy_config(&node)));
    group.finish();
}

criterion_group!(benches, translate);
criterion_main!(benches);
