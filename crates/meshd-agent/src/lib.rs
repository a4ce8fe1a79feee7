//! The sidecar agent: Envoy bootstrap, supervision, health, app probes, merged metrics and drain
