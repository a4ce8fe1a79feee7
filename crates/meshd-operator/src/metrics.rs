//! Reconcile metrics: `meshd_reconcile_total{result}` and `meshd_reconcile_duration_seconds`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `success`, `invalid` (spec refused, nothing applied) or `error`.
    pub result: &'static str,
}

#[derive(Clone, Debug)]
pub struct Metrics {
    pub reconciles: Family<ResultLabel, Counter>,
    pub duration: Histogram,
    /// 1 while this replica holds the Lease and runs the Mesh controller.
    pub leader: Gauge,
}

impl Metrics {
    /// Registers the metrics in `registry`; the returned handles stay valid after the borrow ends.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "meshd_reconcile",
            "Mesh reconciles by result",
            m.reconciles.clone(),
        );
        registry.register(
            "meshd_reconcile_duration_seconds",
            "Time to reconcile one Mesh",
            m.duration.clone(),
        );
        registry.register(
            "meshd_controller_leader",
            "1 while this replica holds the Lease and runs the Mesh controller",
            m.leader.clone(),
        );
        m
    }

    pub fn observe(&self, result: &'static str, seconds: f64) {
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
        self.duration.observe(seconds);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        // 1 ms to ~16 s.
        Self {
            reconciles: Family::default(),
            duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            leader: Gauge::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_documented_names() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.observe("success", 0.01);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("meshd_reconcile_total{result=\"success\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("meshd_reconcile_duration_seconds_count 1"),
            "{text}"
        );
    }
}
