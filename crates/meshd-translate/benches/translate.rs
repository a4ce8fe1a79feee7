//! Translation cost at 1,000 services × 10 endpoints (target: ≤ 20 ms for one proxy).
//! `compile` is the once-per-snapshot part; `proxy_config` what each further proxy costs;
//! `first_proxy` is both, the figure the issue names.

use criterion::{Criterion, criterion_group, criterion_main};
use meshd_translate::synthetic::synthetic_mesh;
use meshd_translate::{CompiledMesh, NodeId};

fn translate(c: &mut Criterion) {
    let snapshot = synthetic_mesh(1000, 10);
    let node = NodeId::parse("svc-0-0.ns-0").expect("a valid node id");
    let mut group = c.benchmark_group("translate_1000x10");
    group.sample_size(20);
    group.bench_function("first_proxy", |b| {
        b.iter(|| CompiledMesh::compile(&snapshot).proxy_config(&node));
    });
    let compiled = CompiledMesh::compile(&snapshot);
    group.bench_function("proxy_config", |b| b.iter(|| compiled.proxy_config(&node)));
    group.finish();
}

criterion_group!(benches, translate);
criterion_main!(benches);
