//! Per-object checks of ServiceEntry (SPEC §8), with Istio's resolution rules.

use std::collections::BTreeMap;

use super::FieldError;
use super::common::*;
use crate::networking::ServiceEntry;

pub(super) fn service_entry(se: &ServiceEntry) -> Vec<FieldError> {
    use crate::networking::service_entry::Resolution;
    let mut r = Report::default();
    metadata(&mut r, &se.metadata);
    let spec = &se.spec;
    let resolution = spec.resolution.unwrap_or_default();
    if spec.hosts.is_empty() {
        r.field("spec.hosts", "is required");
    }
    for (i, h) in spec.hosts.iter().enumerate() {
        let hp = idx("spec.hosts", i);
        host(&mut r, &hp, h, false);
        if h.starts_with("*.")
            && matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin)
            && spec.endpoints.is_empty()
        {
            r.bad(&hp, h, "is a wildcard, which DNS resolution cannot resolve (add endpoints or use resolution NONE)");
        }
    }
    ips_or_cidrs(&mut r, "spec.addresses", &spec.addresses);
    let mut numbers = BTreeMap::new();
    let mut names = BTreeMap::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let pp = idx("spec.ports", i);
        port(&mut r, &at(&pp, "number"), p.number);
        if let Some(first) = numbers.insert(p.number, i) {
            r.bad_value(
                &at(&pp, "number"),
                p.number,
                format!("is also the number of spec.ports[{first}]"),
            );
        }
        if p.name.is_empty() {
            r.field(&at(&pp, "name"), "is required");
        } else if let Some(first) = names.insert(p.name.as_str(), i) {
            r.bad(
                &at(&pp, "name"),
                &p.name,
                format!("is also the name of spec.ports[{first}]"),
            );
        }
        if let Some(t) = p.target_port {
            port(&mut r, &at(&pp, "targetPort"), t);
        }
    }
    if spec.workload_selector.is_some() && !spec.endpoints.is_empty() {
        r.field("spec", "may have only one of workloadSelector or endpoints");
    }
    match resolution {
        Resolution::None if !spec.endpoints.is_empty() => r.field(
            "spec.endpoints",
            "must be empty with resolution NONE (use STATIC or DNS)",
        ),
        Resolution::DnsRoundRobin if spec.endpoints.len() > 1 => r.field(
            "spec.endpoints",
            "may have at most one endpoint with resolution DNS_ROUND_ROBIN",
        ),
        _ => {}
    }
    for (i, e) in spec.endpoints.iter().enumerate() {
        let ep = idx("spec.endpoints", i);
        let is_ip = e.address.parse::<std::net::IpAddr>().is_ok();
        if e.address.is_empty() {
            r.field(&at(&ep, "address"), "is required");
        } else if resolution == Resolution::Static && !is_ip && !e.address.starts_with("unix://") {
            r.bad(
                &at(&ep, "address"),
                &e.address,
                "is not an IP address (resolution STATIC)",
            );
        } else if !is_ip && !e.address.starts_with("unix://") && !is_host(&e.address) {
            r.bad(
                &at(&ep, "address"),
                &e.address,
                "is not an IP address or DNS name",
            );
        }
        for (name, number) in &e.ports {
            let pp = key(&at(&ep, "ports"), name);
            if !names.contains_key(name.as_str()) {
                r.bad(&pp, name, "is not the name of one of spec.ports");
            }
            port(&mut r, &pp, *number);
        }
        labels(&mut r, &at(&ep, "labels"), &e.labels);
    }
    export_to(&mut r, "spec.exportTo", &spec.export_to);
    r.errors
}
