//! Per-object checks of VirtualService (SPEC §8, §10), following Istio's own validation where SPEC is
//! silent. HTTP routes are in `http_route.rs`.

use super::FieldError;
use super::common::*;
use super::http_route::{http_route, weights};
use crate::networking::VirtualService;
use crate::networking::virtual_service::{RouteDestination, VirtualServiceSpec};

pub(super) fn virtual_service(vs: &VirtualService) -> Vec<FieldError> {
    let mut r = Report::default();
    metadata(&mut r, &vs.metadata);
    let spec = &vs.spec;
    vs_hosts(&mut r, spec);
    for (i, g) in spec.gateways.iter().enumerate() {
        gateway_ref(&mut r, &idx("spec.gateways", i), g);
    }
    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        r.field("spec", "needs at least one http, tcp or tls route");
    }
    for (i, route) in spec.http.iter().enumerate() {
        http_route(&mut r, &idx("spec.http", i), route);
    }
    for (i, route) in spec.tls.iter().enumerate() {
        let path = idx("spec.tls", i);
        if route.matches.is_empty() {
            r.field(
                &at(&path, "match"),
                "is required (TLS routes match on sniHosts)",
            );
        }
        for (j, m) in route.matches.iter().enumerate() {
            let mp = idx(&at(&path, "match"), j);
            if m.sni_hosts.is_empty() {
                r.field(&at(&mp, "sniHosts"), "is required");
            }
            for (k, h) in m.sni_hosts.iter().enumerate() {
                let hp = idx(&at(&mp, "sniHosts"), k);
                host(&mut r, &hp, h, true);
                if !spec.hosts.iter().any(|vh| sni_within(h, vh)) {
                    r.bad(
                        &hp,
                        h,
                        "is not one of the VirtualService's hosts nor covered by one (Istio requires each sniHost to be)",
                    );
                }
            }
            ips_or_cidrs(
                &mut r,
                &at(&mp, "destinationSubnets"),
                &m.destination_subnets,
            );
            if let Some(p) = m.port {
                port(&mut r, &at(&mp, "port"), p);
            }
            labels(&mut r, &at(&mp, "sourceLabels"), &m.source_labels);
            if let Some(ns) = &m.source_namespace
                && !is_dns_label(ns)
            {
                r.bad(&at(&mp, "sourceNamespace"), ns, "is not a namespace name");
            }
        }
        l4_route(&mut r, &at(&path, "route"), &route.route);
    }
    for (i, route) in spec.tcp.iter().enumerate() {
        let path = idx("spec.tcp", i);
        for (j, m) in route.matches.iter().enumerate() {
            let mp = idx(&at(&path, "match"), j);
            ips_or_cidrs(
                &mut r,
                &at(&mp, "destinationSubnets"),
                &m.destination_subnets,
            );
            if let Some(s) = &m.source_subnet {
                ip_or_cidr(&mut r, &at(&mp, "sourceSubnet"), s);
            }
            if let Some(p) = m.port {
                port(&mut r, &at(&mp, "port"), p);
            }
            labels(&mut r, &at(&mp, "sourceLabels"), &m.source_labels);
            if let Some(ns) = &m.source_namespace
                && !is_dns_label(ns)
            {
                r.bad(&at(&mp, "sourceNamespace"), ns, "is not a namespace name");
            }
        }
        l4_route(&mut r, &at(&path, "route"), &route.route);
    }
    export_to(&mut r, "spec.exportTo", &spec.export_to);
    r.errors
}

/// Whether SNI `sni` (a name or `*.domain`) is `host` or a name `host` covers, as Istio's
/// `SubsetOf`: a wildcard SNI only under a wildcard host.
fn sni_within(sni: &str, host: &str) -> bool {
    match (sni.strip_prefix('*'), host.strip_prefix('*')) {
        (_, Some("")) => true,
        (Some(s), Some(h)) => {
            s.len() >= h.len() && s.to_ascii_lowercase().ends_with(&h.to_ascii_lowercase())
        }
        (Some(_), None) => false,
        (None, _) => crate::validate::references::host_matches(host, sni),
    }
}

/// `*` is a host only for VirtualServices bound to gateways and not to `mesh` (SPEC §10).
fn vs_hosts(r: &mut Report, spec: &VirtualServiceSpec) {
    if spec.hosts.is_empty() {
        r.field(
            "spec.hosts",
            "is required (delegate VirtualServices are not supported)",
        );
    }
    let mesh_bound = spec.gateways.is_empty() || spec.gateways.iter().any(|g| g == "mesh");
    for (i, h) in spec.hosts.iter().enumerate() {
        let path = idx("spec.hosts", i);
        if h == "*" && mesh_bound {
            r.bad(
                &path,
                h,
                "is valid only on a VirtualService bound to gateways (not mesh)",
            );
        } else {
            host(r, &path, h, true);
        }
    }
}

fn gateway_ref(r: &mut Report, path: &str, g: &str) {
    let name = match g.split_once('/') {
        Some((ns, name)) if is_dns_label(ns) => name,
        Some(_) => "",
        None => g,
    };
    if !is_dns_subdomain(name) {
        r.bad(path, g, "is not mesh, a Gateway name or namespace/name");
    }
}

fn l4_route(r: &mut Report, path: &str, route: &[RouteDestination]) {
    if route.is_empty() {
        r.field(path, "needs at least one destination");
    }
    for (i, d) in route.iter().enumerate() {
        let dp = idx(path, i);
        destination(r, &at(&dp, "destination"), &d.destination);
        range(r, &at(&dp, "weight"), d.weight.map(i64::from), 0, 100);
    }
    weights(r, path, route.iter().map(|d| d.weight));
}
