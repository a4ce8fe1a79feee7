//! The traffic bench's first translation without criterion, for a load-independent count:
//! `traffic_cost N [plain|vs_dr]` translates from nothing N times (1,000 Services × 10 endpoints,
//! without or with a VirtualService and a DestinationRule each, plus one proxy's config) and prints
//! the minimum and median wall time. Under `valgrind --tool=callgrind`, the difference of the
//! instructions at N = 3 and N = 1, halved, is one translation's (docs/perf-traffic.md).

use std::time::Instant;

use meshd_translate::synthetic::{synthetic_mesh, traffic_changes};
use meshd_translate::{NodeId, TranslateSettings, Translator};

// meshd's allocator, as meshd builds it (meshd_xds::heap, which this crate cannot depend on): the
// translation's figure is the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(30)
        .max(1);
    let only = args.next();
    let mesh = synthetic_mesh(1000, 10);
    let plain = mesh.changes();
    let mut with = plain.clone();
    with.extend(traffic_changes(&mesh));
    let node = NodeId::parse("client-0.ns-0").expect("a valid node id");
    for (name, facts) in [("plain", &plain), ("vs_dr", &with)] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        // Per run: the translation up to the proxy's config, and the drop of the translator and
        // the result (which a running control plane does not pay per translation).
        let mut runs: Vec<(f64, f64)> = (0..n)
            .map(|_| {
                let input = facts.clone();
                let started = Instant::now();
                let mut translator = Translator::new(TranslateSettings::default());
                let (compiled, _) = translator.apply(input);
                let config = compiled.proxy_config(&node);
                let translated = started.elapsed().as_secs_f64() * 1e3;
                drop((config, compiled, translator));
                (
                    translated,
                    started.elapsed().as_secs_f64() * 1e3 - translated,
                )
            })
            .collect();
        let mut times: Vec<f64> = runs.iter().map(|r| r.0).collect();
        runs.sort_by(|a, b| f64::total_cmp(&(a.0 + a.1), &(b.0 + b.1)));
        let with_drop = runs[n / 2].0 + runs[n / 2].1;
        times.sort_by(f64::total_cmp);
        println!(
            "{name}: min {:.1} ms, median {:.1} ms over {n} (median with the drop: {with_drop:.1} ms)",
            times[0],
            times[n / 2]
        );
    }
}
