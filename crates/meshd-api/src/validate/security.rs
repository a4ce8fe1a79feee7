//! Per-object checks of PeerAuthentication and AuthorizationPolicy (SPEC §9), following Istio's
//! validation where SPEC is silent.

use super::FieldError;
use super::common::*;
use crate::security::authorization_policy::{
    Action, CONDITION_KEYS, Condition, ISTIO_ONLY_CONDITION_KEYS, ISTIO_ONLY_CONDITION_PREFIXES,
    Operation, Source,
};
use crate::security::{AuthorizationPolicy, PeerAuthentication};

pub(super) fn peer_authentication(pa: &PeerAuthentication) -> Vec<FieldError> {
    let mut r = Report::default();
    metadata(&mut r, &pa.metadata);
    let spec = &pa.spec;
    if let Some(s) = &spec.selector {
        labels(&mut r, "spec.selector.matchLabels", &s.match_labels);
    }
    let has_selector = spec
        .selector
        .as_ref()
        .is_some_and(|s| !s.match_labels.is_empty());
    if !spec.port_level_mtls.is_empty() && !has_selector {
        r.field(
            "spec.portLevelMtls",
            "needs a selector (ports belong to a workload)",
        );
    }
    for k in spec.port_level_mtls.keys() {
        let path = key("spec.portLevelMtls", k);
        match crate::values::parse_port(k) {
            Ok(_) if k.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => r.bad(&path, k, "is not a port number (1-65535)"),
        }
    }
    r.errors
}

pub(super) fn authorization_policy(ap: &AuthorizationPolicy) -> Vec<FieldError> {
    let mut r = Report::default();
    metadata(&mut r, &ap.metadata);
    let spec = &ap.spec;
    let targets = [
        spec.selector.is_some(),
        spec.target_ref.is_some(),
        !spec.target_refs.is_empty(),
    ];
    if targets.iter().filter(|t| **t).count() > 1 {
        r.field(
            "spec",
            "may have only one of selector, targetRef or targetRefs",
        );
    }
    if let Some(s) = &spec.selector {
        labels(&mut r, "spec.selector.matchLabels", &s.match_labels);
    }
    let action = spec.action.unwrap_or_default();
    match (action, &spec.provider) {
        (Action::Custom, None) => r.field("spec.provider", "is required with action CUSTOM"),
        (Action::Custom, Some(p)) if p.name.is_empty() => {
            r.field("spec.provider.name", "is required")
        }
        (a, Some(_)) if a != Action::Custom => r.field(
            "spec.provider",
            format!("is only for action CUSTOM, not {}", a.as_str()),
        ),
        _ => {}
    }
    // What meshd cannot enforce is refused rather than left out of the proxies' config.
    if action == Action::Custom {
        r.field(
            "spec.action",
            "CUSTOM (an external authorizer) is not supported by meshd",
        );
    }
    if spec.target_ref.is_some() || !spec.target_refs.is_empty() {
        r.field(
            "spec.targetRef",
            "is not supported by meshd; select workloads with spec.selector",
        );
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        let rp = idx("spec.rules", i);
        for (j, from) in rule.from.iter().enumerate() {
            let fp = at(&idx(&at(&rp, "from"), j), "source");
            match &from.source {
                Some(s) if !source_is_empty(s) => source(&mut r, &fp, s),
                _ => r.field(&fp, "is required and must not be empty"),
            }
        }
        for (j, to) in rule.to.iter().enumerate() {
            let tp = at(&idx(&at(&rp, "to"), j), "operation");
            match &to.operation {
                Some(o) if !operation_is_empty(o) => operation(&mut r, &tp, o),
                _ => r.field(&tp, "is required and must not be empty"),
            }
        }
        for (j, c) in rule.when.iter().enumerate() {
            condition(&mut r, &idx(&at(&rp, "when"), j), c);
        }
    }
    r.errors
}

fn source_is_empty(s: &Source) -> bool {
    [
        &s.principals,
        &s.not_principals,
        &s.request_principals,
        &s.not_request_principals,
        &s.namespaces,
        &s.not_namespaces,
        &s.service_accounts,
        &s.not_service_accounts,
        &s.ip_blocks,
        &s.not_ip_blocks,
        &s.remote_ip_blocks,
        &s.not_remote_ip_blocks,
        &s.trust_domains,
        &s.not_trust_domains,
    ]
    .iter()
    .all(|l| l.is_empty())
}

fn source(r: &mut Report, path: &str, s: &Source) {
    for (field, list) in [
        ("principals", &s.principals),
        ("notPrincipals", &s.not_principals),
        ("requestPrincipals", &s.request_principals),
        ("notRequestPrincipals", &s.not_request_principals),
        ("namespaces", &s.namespaces),
        ("notNamespaces", &s.not_namespaces),
    ] {
        for (i, v) in list.iter().enumerate() {
            wildcard_value(r, &idx(&at(path, field), i), v);
        }
    }
    for (field, list) in [
        ("ipBlocks", &s.ip_blocks),
        ("notIpBlocks", &s.not_ip_blocks),
        ("remoteIpBlocks", &s.remote_ip_blocks),
        ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
    ] {
        ips_or_cidrs(r, &at(path, field), list);
    }
    let accounts = !s.service_accounts.is_empty() || !s.not_service_accounts.is_empty();
    let namespaces = !s.namespaces.is_empty() || !s.not_namespaces.is_empty();
    if accounts && namespaces {
        r.field(
            path,
            "may not combine serviceAccounts with namespaces (Istio's rule)",
        );
    }
}

fn operation_is_empty(o: &Operation) -> bool {
    [
        &o.hosts,
        &o.not_hosts,
        &o.ports,
        &o.not_ports,
        &o.methods,
        &o.not_methods,
        &o.paths,
        &o.not_paths,
    ]
    .iter()
    .all(|l| l.is_empty())
}

fn operation(r: &mut Report, path: &str, o: &Operation) {
    for (field, list) in [
        ("hosts", &o.hosts),
        ("notHosts", &o.not_hosts),
        ("methods", &o.methods),
        ("notMethods", &o.not_methods),
        ("paths", &o.paths),
        ("notPaths", &o.not_paths),
    ] {
        for (i, v) in list.iter().enumerate() {
            wildcard_value(r, &idx(&at(path, field), i), v);
        }
    }
    for (field, list) in [("ports", &o.ports), ("notPorts", &o.not_ports)] {
        for (i, p) in list.iter().enumerate() {
            if crate::values::parse_port(p).is_err() || p.trim() != p {
                r.bad(
                    &idx(&at(path, field), i),
                    p,
                    "is not a port number (1-65535)",
                );
            }
        }
    }
}

fn condition(r: &mut Report, path: &str, c: &Condition) {
    let kp = at(path, "key");
    let header = c
        .key
        .strip_prefix("request.headers[")
        .and_then(|k| k.strip_suffix(']'));
    let known = CONDITION_KEYS.contains(&c.key.as_str())
        || ISTIO_ONLY_CONDITION_KEYS.contains(&c.key.as_str())
        || ISTIO_ONLY_CONDITION_PREFIXES
            .iter()
            .any(|p| c.key.starts_with(p));
    if c.key.is_empty() {
        r.field(&kp, "is required");
    } else if let Some(name) = header {
        header_name(r, &kp, name, false);
    } else if !known {
        r.bad(
            &kp,
            &c.key,
            "is not a condition key (source.ip, source.namespace, source.principal, request.headers[NAME], destination.port, …)",
        );
    }
    if c.values.is_empty() && c.not_values.is_empty() {
        r.field(path, "needs values or notValues");
    }
    for (field, list) in [("values", &c.values), ("notValues", &c.not_values)] {
        for (i, v) in list.iter().enumerate() {
            let vp = idx(&at(path, field), i);
            match c.key.as_str() {
                "source.ip" | "remote.ip" | "destination.ip" => ip_or_cidr(r, &vp, v),
                "destination.port" if crate::values::parse_port(v).is_err() => {
                    r.bad(&vp, v, "is not a port number (1-65535)")
                }
                _ => {}
            }
        }
    }
}
