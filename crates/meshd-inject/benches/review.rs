//! Per-review time for each admission fixture, and its ratio to a bare serde_json parse + serialize of
//! the same body (the floor for any webhook that reads and answers JSON). Target: ≤ 3×.
//!
//! `cargo bench -p meshd-inject --bench review` — criterion's figures per fixture, then a table of
//! the ratios (median of repeated timed loops, same process, same inputs).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use meshd_inject::{InjectionSettings, review};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/admission"
);

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = std::fs::read_dir(FIXTURES)
        .expect("fixtures directory")
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "json").then(|| {
                let name = path
                    .file_stem()
                    .expect("stem")
                    .to_string_lossy()
                    .into_owned();
                (name, std::fs::read(&path).expect("read fixture"))
            })
        })
        .collect();
    all.sort();
    all
}

fn baseline(body: &[u8]) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_slice(body).expect("fixture is JSON");
    serde_json::to_vec(&v).expect("serialize")
}

fn benches(c: &mut Criterion) {
    let settings = InjectionSettings::default();
    for (name, body) in fixtures() {
        let mut group = c.benchmark_group(name);
        group.bench_function("review", |b| {
            b.iter(|| review(black_box(&body), &settings, None))
        });
        group.bench_function("serde_json_baseline", |b| {
            b.iter(|| baseline(black_box(&body)))
        });
        group.finish();
    }
}

/// Median time of one call of `f`, from `rounds` timed loops of `n` calls.
fn median_per_call(mut f: impl FnMut(), n: u32, rounds: usize) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed() / n
        })
        .collect();
    times.sort();
    times[rounds / 2]
}

fn ratio_table() {
    let settings = InjectionSettings::default();
    println!(
        "\n{:<34} {:>10} {:>12} {:>7}",
        "fixture", "review µs", "baseline µs", "ratio"
    );
    let mut worst: f64 = 0.0;
    for (name, body) in fixtures() {
        let r = median_per_call(
            || drop(black_box(review(black_box(&body), &settings, None))),
            500,
            11,
        );
        let b = median_per_call(|| drop(black_box(baseline(black_box(&body)))), 500, 11);
        let ratio = r.as_secs_f64() / b.as_secs_f64();
        worst = worst.max(ratio);
        println!(
            "{name:<34} {:>10.1} {:>12.1} {ratio:>6.2}×",
            r.as_secs_f64() * 1e6,
            b.as_secs_f64() * 1e6
        );
    }
    println!("worst ratio {worst:.2}× (target ≤ 3×)");
}

criterion_group!(review_benches, benches);

fn main() {
    review_benches();
    Criterion::default().configure_from_args().final_summary();
    ratio_table();
}
