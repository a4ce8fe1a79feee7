//! The agent's own metrics, appended to Envoy's on `/stats/prometheus`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProbeLabels {
    pub probe: String,
    pub result: &'static str,
}

#[derive(Clone)]
pub(crate) struct AgentMetrics {
    registry: Arc<Registry>,
    pub envoy_starts: Counter,
    pub envoy_up: Gauge,
    pub probes: Family<ProbeLabels, Counter>,
}

impl AgentMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("meshd_agent");
        let envoy_starts = Counter::default();
        let envoy_up = Gauge::default();
        let probes = Family::<ProbeLabels, Counter>::default();
        registry.register(
            "envoy_starts",
            "Times the agent started Envoy",
            envoy_starts.clone(),
        );
        registry.register("envoy_up", "1 while Envoy runs", envoy_up.clone());
        registry.register(
            "app_probes",
            "App probes run, by probe and result",
            probes.clone(),
        );
        Self {
            registry: Arc::new(registry),
            envoy_starts,
            envoy_up,
            probes,
        }
    }

    /// Prometheus text (without OpenMetrics' `# EOF`, since it follows Envoy's text).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            return String::new();
        }
        out.lines()
            .filter(|l| *l != "# EOF")
            .map(|l| format!("{l}\n"))
            .collect()
    }
}
