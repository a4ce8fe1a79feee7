//! `meshd_xds_*` metrics, registered into the caller's registry (SPEC §7).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

#[derive(Clone, Debug)]
pub struct XdsMetrics {
    /// Responses sent, by xDS type (`cds`, `eds`, `lds`, `rds`).
    pub pushes: Family<Labels, Counter>,
    /// NACKs received, by type.
    pub nacks: Family<Labels, Counter>,
    /// From a mesh change to the response that carries it.
    pub push_seconds: Histogram,
    /// Open ADS streams.
    pub connected_proxies: Gauge,
    pub compile_seconds: Histogram,
    /// ADS streams refused, by reason (`unauthenticated`, `permission_denied`, `unavailable`).
    pub refused: Family<Labels, Counter>,
}

impl XdsMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::unregistered();
        registry.register(
            "meshd_xds_pushes",
            "xDS responses sent to proxies",
            m.pushes.clone(),
        );
        registry.register(
            "meshd_xds_nacks",
            "xDS responses rejected by proxies",
            m.nacks.clone(),
        );
        registry.register(
            "meshd_xds_push_seconds",
            "Time from a mesh change to the xDS response carrying it",
            m.push_seconds.clone(),
        );
        registry.register(
            "meshd_proxies_connected",
            "Proxies with an open ADS stream to this replica",
            m.connected_proxies.clone(),
        );
        registry.register(
            "meshd_xds_translation_seconds",
            "Time to translate a mesh snapshot",
            m.compile_seconds.clone(),
        );
        registry.register(
            "meshd_xds_streams_refused",
            "ADS streams refused, by reason (unauthenticated, permission_denied, unavailable)",
            m.refused.clone(),
        );
        m
    }

    pub(crate) fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&vec![("reason", reason)]).inc();
    }

    pub(crate) fn unregistered() -> Self {
        Self {
            pushes: Family::default(),
            nacks: Family::default(),
            push_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            connected_proxies: Gauge::default(),
            compile_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 15)),
            refused: Family::default(),
        }
    }
}
