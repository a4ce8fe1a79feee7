//! `meshd_injections_total{result,reason}` and `meshd_injection_duration_seconds`.

use std::time::Duration;

use meshd_inject::{ReviewResult, SkipReason};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InjectionLabels {
    pub result: String,
    pub reason: String,
}

/// The webhook's metrics; clones share the same series.
#[derive(Debug, Clone)]
pub struct WebhookMetrics {
    injections: Family<InjectionLabels, Counter>,
    duration: Histogram,
}

impl WebhookMetrics {
    /// Registers under full names (`meshd_…`): pass a registry without a prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let injections = Family::<InjectionLabels, Counter>::default();
        // 25 µs … ~0.4 s: a review takes tens of microseconds; the tail shows contention.
        let duration = Histogram::new(exponential_buckets(0.000_025, 2.0, 15));
        registry.register(
            "meshd_injections",
            "Admission reviews answered by the injection webhook, by result and skip/refusal reason",
            injections.clone(),
        );
        registry.register(
            "meshd_injection_duration_seconds",
            "Time to answer one admission review, from body to answer",
            duration.clone(),
        );
        // Every skip reason appears from the start, so dashboards and alerts see zeros, not gaps.
        let metrics = Self {
            injections,
            duration,
        };
        for reason in SkipReason::ALL {
            let _ = metrics.injections.get_or_create(&InjectionLabels {
                result: "skipped".into(),
                reason: reason.label().into(),
            });
        }
        metrics
    }

    pub fn observe(&self, result: &ReviewResult, elapsed: Duration) {
        let labels = InjectionLabels {
            result: result.result_label().into(),
            reason: result.reason_label().into(),
        };
        self.injections.get_or_create(&labels).inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// The count for one label pair (tests, status).
    pub fn count(&self, result: &str, reason: &str) -> u64 {
        self.injections
            .get_or_create(&InjectionLabels {
                result: result.into(),
                reason: reason.into(),
            })
            .get()
    }
}
