//! Per-object checks of Gateway (SPEC §10): servers, their ports, hosts and TLS.

use std::collections::BTreeMap;

use super::FieldError;
use super::common::*;
use crate::networking::Gateway;

pub(super) fn gateway(gw: &Gateway) -> Vec<FieldError> {
    use crate::networking::Protocol;
    use crate::networking::TlsProtocol;
    use crate::networking::gateway::ServerTlsMode;
    let mut r = Report::default();
    metadata(&mut r, &gw.metadata);
    let spec = &gw.spec;
    if spec.servers.is_empty() {
        r.field("spec.servers", "needs at least one server");
    }
    labels(&mut r, "spec.selector", &spec.selector);
    let mut protocols: BTreeMap<u32, (usize, Protocol)> = BTreeMap::new();
    let mut names = BTreeMap::new();
    for (i, s) in spec.servers.iter().enumerate() {
        let sp = idx("spec.servers", i);
        let pp = at(&sp, "port");
        port(&mut r, &at(&pp, "number"), s.port.number);
        if s.port.name.is_empty() {
            r.field(&at(&pp, "name"), "is required");
        } else if let Some(first) = names.insert(s.port.name.as_str(), i) {
            r.bad(
                &at(&pp, "name"),
                &s.port.name,
                format!("is also the port name of spec.servers[{first}]"),
            );
        }
        match s.port.protocol {
            None => r.field(&at(&pp, "protocol"), "is required"),
            Some(p) => match protocols.get(&s.port.number) {
                Some((first, q)) if *q != p => r.bad(
                    &at(&pp, "protocol"),
                    p.as_str(),
                    format!(
                        "differs from spec.servers[{first}] ({}) on the same port {}",
                        q.as_str(),
                        s.port.number
                    ),
                ),
                Some(_) => {}
                None => {
                    protocols.insert(s.port.number, (i, p));
                }
            },
        }
        if s.hosts.is_empty() {
            r.field(&at(&sp, "hosts"), "is required");
        }
        for (j, h) in s.hosts.iter().enumerate() {
            server_host(&mut r, &idx(&at(&sp, "hosts"), j), h);
        }
        let needs_tls = matches!(s.port.protocol, Some(Protocol::Https | Protocol::Tls));
        let Some(tls) = &s.tls else {
            if needs_tls {
                r.field(&at(&sp, "tls"), "is required for HTTPS and TLS servers");
            }
            continue;
        };
        let tp = at(&sp, "tls");
        if needs_tls
            && matches!(
                tls.mode,
                Some(ServerTlsMode::Simple | ServerTlsMode::Mutual)
            )
            && tls.credential_name.is_none()
        {
            r.field(
                &at(&tp, "credentialName"),
                "is required for SIMPLE and MUTUAL (meshd serves certificates from Secrets, not files)",
            );
        }
        if let Some(name) = &tls.credential_name
            && !is_dns_subdomain(name)
        {
            r.bad(&at(&tp, "credentialName"), name, "is not a Secret name");
        }
        for (field, v) in [
            ("minProtocolVersion", tls.min_protocol_version),
            ("maxProtocolVersion", tls.max_protocol_version),
        ] {
            if let Some(v @ (TlsProtocol::Tlsv1_0 | TlsProtocol::Tlsv1_1)) = v {
                r.bad(
                    &at(&tp, field),
                    v.as_str(),
                    "is older than TLS 1.2; meshd serves TLS 1.2 and newer only",
                );
            }
        }
        if let (Some(min), Some(max)) = (tls.min_protocol_version, tls.max_protocol_version)
            && min != TlsProtocol::TlsAuto
            && max != TlsProtocol::TlsAuto
            && min > max
        {
            r.bad(
                &at(&tp, "minProtocolVersion"),
                min.as_str(),
                format!("is newer than maxProtocolVersion {}", max.as_str()),
            );
        }
    }
    r.errors
}

/// `[namespace/]host`: namespace a DNS label, `.` or `*`; host as for VirtualServices, `*` allowed.
fn server_host(r: &mut Report, path: &str, h: &str) {
    let (ns, name) = h.split_once('/').unwrap_or(("*", h));
    if !(ns == "." || ns == "*" || is_dns_label(ns)) {
        r.bad(
            path,
            h,
            "has a namespace part that is not \".\", \"*\" or a namespace",
        );
    } else if !(name == "*" || is_host(name)) {
        r.bad(path, h, HOST_PROBLEM);
    }
}
