//! The traffic bench's first translation without criterion, for a load-independent count:
//! `traffic_cost N [plain|vs_dr]` translates from nothing N times (1,000 Services × 10 endpoints,
//! without or with a VirtualService and a DestinationRule each, plus one proxy's config) and prints
//! the minimum and median wall time. Under `valgrind --tool=callgrind`, the difference of the
//! instructions at N = 3 and N = 1, halved, is one translation's (docs/perf-traffic.md).

use std::time::Instant;

use meshd_translate::synthetic::{synthetic_mesh, traffic_changes};
use meshd_translate::{NodeId, TranslateSettings, Translator};

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
        let mut times: Vec<f64> = (0..n)
            .map(|_| {
                let started = Instant::now();
                let (compiled, _) =
                    Translator::new(TranslateSettings::default()).apply(facts.clone());
                drop(compiled.proxy_config(&node));
                started.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{name}: min {:.1} ms, median {:.1} ms over {n}",
            times[0],
            times[n / 2]
        );
    }
}
