//! The per-pod override annotations (`sidecar.meshd.io/…`, `traffic.meshd.io/…`), parsed strictly: one
//! bad value refuses the pod, and the refusal names every bad annotation with its value.

use std::collections::BTreeMap;
use std::fmt;

use meshd_api::mesh::{CaptureMode, LogLevel};
use meshd_api::names;
use meshd_api::values::{
    IncludeCidrs, IncludePorts, IpCidr, parse_bool, parse_cidr_list, parse_include_cidrs,
    parse_include_ports, parse_port_list, parse_resource_quantity,
};

use crate::decision::PortConflict;

/// What a pod's annotations override; `None` keeps the mesh's setting.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodOverrides {
    pub proxy_cpu: Option<String>,
    pub proxy_memory: Option<String>,
    pub proxy_cpu_limit: Option<String>,
    pub proxy_memory_limit: Option<String>,
    pub log_level: Option<LogLevel>,
    pub native_sidecar: Option<bool>,
    pub hold_application: Option<bool>,
    pub rewrite_app_probes: Option<bool>,
    pub capture_mode: Option<CaptureMode>,
    pub include_inbound_ports: Option<IncludePorts>,
    pub include_outbound_ports: Option<Vec<u16>>,
    pub exclude_inbound_ports: Option<Vec<u16>>,
    pub exclude_outbound_ports: Option<Vec<u16>>,
    pub exclude_outbound_cidrs: Option<Vec<IpCidr>>,
    pub include_outbound_cidrs: Option<IncludeCidrs>,
}

/// One annotation that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadAnnotation {
    pub name: String,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for BadAnnotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "annotation {}={:?}: {}",
            self.name, self.value, self.reason
        )
    }
}

/// Why a pod is refused: every bad annotation, in name order, then every container port the proxy
/// needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusal {
    pub bad: Vec<BadAnnotation>,
    pub conflicts: Vec<PortConflict>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("meshd cannot inject this pod: ")?;
        let problems = self
            .bad
            .iter()
            .map(|b| b as &dyn fmt::Display)
            .chain(self.conflicts.iter().map(|c| c as &dyn fmt::Display));
        for (i, p) in problems.enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        if !self.conflicts.is_empty() {
            write!(
                f,
                " (move the app off that port, or label the pod {}: \"false\" to run it without the mesh)",
                names::LABEL_INJECT
            )?;
        }
        Ok(())
    }
}

/// Reads every `sidecar.meshd.io/` and `traffic.meshd.io/` annotation. Unknown names under those
/// prefixes are refused too: a typo must not silently do nothing.
pub fn parse_overrides(
    annotations: Option<&BTreeMap<String, String>>,
) -> Result<PodOverrides, Refusal> {
    let mut o = PodOverrides::default();
    let mut bad = Vec::new();
    let Some(annotations) = annotations else {
        return Ok(o);
    };
    for (name, value) in annotations {
        if !name.starts_with(names::SIDECAR_ANNOTATION_PREFIX)
            && !name.starts_with(names::TRAFFIC_ANNOTATION_PREFIX)
        {
            continue;
        }
        let mut refuse = |reason: String| {
            bad.push(BadAnnotation {
                name: name.clone(),
                value: value.clone(),
                reason,
            })
        };
        let quantity = |v: &str| {
            parse_resource_quantity(v)
                .map(|_| v.to_string())
                .map_err(|e| e.to_string())
        };
        match name.as_str() {
            names::ANNOTATION_PROXY_CPU => match quantity(value) {
                Ok(q) => o.proxy_cpu = Some(q),
                Err(e) => refuse(e),
            },
            names::ANNOTATION_PROXY_MEMORY => match quantity(value) {
                Ok(q) => o.proxy_memory = Some(q),
                Err(e) => refuse(e),
            },
            names::ANNOTATION_PROXY_CPU_LIMIT => match quantity(value) {
                Ok(q) => o.proxy_cpu_limit = Some(q),
                Err(e) => refuse(e),
            },
            names::ANNOTATION_PROXY_MEMORY_LIMIT => match quantity(value) {
                Ok(q) => o.proxy_memory_limit = Some(q),
                Err(e) => refuse(e),
            },
            names::ANNOTATION_LOG_LEVEL => match LogLevel::parse(value) {
                Some(l) => o.log_level = Some(l),
                None => {
                    refuse("not a log level (trace, debug, info, warning, error, critical)".into())
                }
            },
            names::ANNOTATION_NATIVE_SIDECAR => match parse_bool(value) {
                Ok(b) => o.native_sidecar = Some(b),
                Err(e) => refuse(e.to_string()),
            },
            names::ANNOTATION_HOLD_APPLICATION => match parse_bool(value) {
                Ok(b) => o.hold_application = Some(b),
                Err(e) => refuse(e.to_string()),
            },
            names::ANNOTATION_REWRITE_APP_PROBES => match parse_bool(value) {
                Ok(b) => o.rewrite_app_probes = Some(b),
                Err(e) => refuse(e.to_string()),
            },
            names::ANNOTATION_CAPTURE_MODE => match CaptureMode::parse(value) {
                Some(m) => o.capture_mode = Some(m),
                None => refuse("not a capture mode (iptables, nftables, none)".into()),
            },
            names::ANNOTATION_INCLUDE_INBOUND_PORTS => match parse_include_ports(value) {
                Ok(p) => o.include_inbound_ports = Some(p),
                Err(e) => refuse(e.to_string()),
            },
            names::ANNOTATION_INCLUDE_OUTBOUND_PORTS => match parse_port_list(value) {
                Ok(p) => o.include_outbound_ports = Some(p),
                Err(e) => refuse(e.to_string()),
            },
            names::ANNOTATION_EXCLUDE_INBOUND_PORTS => match parse_port_list(value) {
                Ok(p) => o.exclude_inbound_ports = Some(p),
                Err(e) => refuse(e.to_string()),
            },
            names::ANNOTATION_EXCLUDE_OUTBOUND_PORTS => match parse_port_list(value) {
                Ok(p) => o.exclude_outbound_ports = Some(p),
                Err(e) => refuse(e.to_string()),
            },
            names::ANNOTATION_EXCLUDE_OUTBOUND_CIDRS => match parse_cidr_list(value) {
                Ok(c) => o.exclude_outbound_cidrs = Some(c),
                Err(e) => refuse(e.to_string()),
            },
            names::ANNOTATION_INCLUDE_OUTBOUND_CIDRS => match parse_include_cidrs(value) {
                Ok(c) => o.include_outbound_cidrs = Some(c),
                Err(e) => refuse(e.to_string()),
            },
            _ => refuse("unknown meshd annotation".into()),
        }
    }
    if bad.is_empty() {
        Ok(o)
    } else {
        Err(Refusal {
            bad,
            ..Refusal::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn good_overrides_are_read() {
        let a = annotations(&[
            ("sidecar.meshd.io/proxyCPU", "200m"),
            ("sidecar.meshd.io/proxyMemory", "96Mi"),
            ("sidecar.meshd.io/logLevel", "debug"),
            ("sidecar.meshd.io/nativeSidecar", "false"),
            ("traffic.meshd.io/excludeOutboundPorts", "5432,6379"),
            ("traffic.meshd.io/includeOutboundCIDRs", "*"),
            ("sidecar.meshd.io/rewriteAppProbes", "false"),
            ("traffic.meshd.io/captureMode", "none"),
            ("traffic.meshd.io/includeInboundPorts", "8080,9090"),
            ("traffic.meshd.io/includeOutboundPorts", "5432"),
            ("team", "payments"),
        ]);
        let o = parse_overrides(Some(&a)).unwrap();
        assert_eq!(o.proxy_cpu.as_deref(), Some("200m"));
        assert_eq!(o.proxy_memory.as_deref(), Some("96Mi"));
        assert_eq!(o.log_level, Some(LogLevel::Debug));
        assert_eq!(o.native_sidecar, Some(false));
        assert_eq!(o.exclude_outbound_ports, Some(vec![5432, 6379]));
        assert_eq!(o.include_outbound_cidrs, Some(IncludeCidrs::All));
        assert_eq!(o.rewrite_app_probes, Some(false));
        assert_eq!(o.capture_mode, Some(CaptureMode::None));
        assert_eq!(
            o.include_inbound_ports,
            Some(IncludePorts::Only(vec![8080, 9090]))
        );
        assert_eq!(o.include_outbound_ports, Some(vec![5432]));
        assert_eq!(parse_overrides(None).unwrap(), PodOverrides::default());
    }

    #[test]
    fn every_bad_annotation_is_named() {
        let a = annotations(&[
            ("sidecar.meshd.io/proxyCPU", "lots"),
            ("sidecar.meshd.io/logLevel", "loud"),
            ("sidecar.meshd.io/holdApplicationUntilProxyStarts", "yes"),
            ("sidecar.meshd.io/proxyCpu", "1"),
            ("traffic.meshd.io/excludeOutboundPorts", "5432,99999"),
            ("traffic.meshd.io/excludeOutboundCIDRs", "10.0.0.0/33"),
            ("traffic.meshd.io/includeOutboundCIDRs", "all"),
        ]);
        let refusal = parse_overrides(Some(&a)).unwrap_err();
        let named: Vec<_> = refusal.bad.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(named.len(), 7, "{refusal}");
        let text = refusal.to_string();
        for (k, v) in &a {
            assert!(
                text.contains(k.as_str()) && text.contains(&format!("{v:?}")),
                "{k}={v} missing from {text}"
            );
        }
    }

    #[test]
    fn bad_values_of_the_istio_habit_annotations_are_named() {
        let a = annotations(&[
            ("sidecar.meshd.io/rewriteAppProbes", "no"),
            ("traffic.meshd.io/captureMode", "ebpf"),
            ("traffic.meshd.io/includeInboundPorts", "http"),
            ("traffic.meshd.io/includeOutboundPorts", "*"),
        ]);
        let text = parse_overrides(Some(&a)).unwrap_err().to_string();
        for (k, v) in &a {
            assert!(
                text.contains(&format!("annotation {k}={v:?}")),
                "{k}={v} missing from {text}"
            );
        }
        assert!(text.contains("iptables, nftables, none"), "{text}");
    }
}
