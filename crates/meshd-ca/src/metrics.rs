//! `meshd_certificate_requests_total{result="issued"|"refused"}` (SPEC §9).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub result: &'static str,
}

/// The CA's metrics.
#[derive(Clone, Debug, Default)]
pub struct CaMetrics {
    pub requests: Family<RequestLabels, Counter>,
}

impl CaMetrics {
    /// Registers the metrics in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "meshd_certificate_requests",
            "Certificate requests to the mesh CA, by result (issued, refused)",
            m.requests.clone(),
        );
        m
    }

    pub(crate) fn count(&self, issued: bool) {
        let result = if issued { "issued" } else { "refused" };
        self.requests.get_or_create(&RequestLabels { result }).inc();
    }
}
