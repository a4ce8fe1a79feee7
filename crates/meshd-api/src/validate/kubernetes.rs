//! Checks of the non-mesh documents a file-fed mesh reads (SPEC §2, §9, §10), and of the Mesh: the fields
//! meshd uses, so a typo in a Pod IP or a Secret key is found before the control plane runs.

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::FieldError;
use super::common::*;
use crate::mesh::Mesh;

/// The Mesh's checks (`settings::validate`), as FieldErrors.
pub(super) fn mesh(m: &Mesh) -> Vec<FieldError> {
    let mut r = Report::default();
    metadata(&mut r, &m.metadata);
    r.errors
        .extend(crate::settings::validate(&m.spec).into_iter().map(|e| {
            let problem = match e.reason.strip_prefix("not ") {
                Some(_) => format!("is {}", e.reason),
                None => format!("is invalid: {}", e.reason),
            };
            FieldError::new(e.field, problem).with_str(&e.value)
        }));
    r.errors
}

pub(super) fn service(s: &Service) -> Vec<FieldError> {
    let mut r = Report::default();
    metadata(&mut r, &s.metadata);
    let Some(spec) = &s.spec else { return r.errors };
    if let Some(ip) = spec.cluster_ip.as_deref()
        && ip != "None"
        && !ip.is_empty()
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        r.bad("spec.clusterIP", ip, "is not an IP address or None");
    }
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        let pp = idx("spec.ports", i);
        range(&mut r, &at(&pp, "port"), Some(i64::from(p.port)), 1, 65535);
        if let Some(IntOrString::Int(t)) = &p.target_port {
            range(
                &mut r,
                &at(&pp, "targetPort"),
                Some(i64::from(*t)),
                1,
                65535,
            );
        }
    }
    r.errors
}

pub(super) fn endpoint_slice(e: &EndpointSlice) -> Vec<FieldError> {
    let mut r = Report::default();
    metadata(&mut r, &e.metadata);
    let want_v6 = match e.address_type.as_str() {
        "IPv4" => Some(false),
        "IPv6" => Some(true),
        "FQDN" => None,
        other => {
            r.bad("addressType", other, "is not IPv4, IPv6 or FQDN");
            None
        }
    };
    for (i, ep) in e.endpoints.iter().enumerate() {
        for (j, a) in ep.addresses.iter().enumerate() {
            let path = idx(&at(&idx("endpoints", i), "addresses"), j);
            match (want_v6, a.parse::<std::net::IpAddr>()) {
                (Some(v6), Ok(ip)) if ip.is_ipv6() != v6 => {
                    r.bad(&path, a, format!("is not an {} address", e.address_type))
                }
                (Some(_), Err(_)) => r.bad(&path, a, "is not an IP address"),
                _ => {}
            }
        }
    }
    for (i, p) in e.ports.iter().flatten().enumerate() {
        range(
            &mut r,
            &at(&idx("ports", i), "port"),
            p.port.map(i64::from),
            1,
            65535,
        );
    }
    r.errors
}

pub(super) fn pod(p: &Pod) -> Vec<FieldError> {
    let mut r = Report::default();
    metadata(&mut r, &p.metadata);
    if let Some(ip) = p.status.as_ref().and_then(|s| s.pod_ip.as_deref())
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        r.bad("status.podIP", ip, "is not an IP address");
    }
    r.errors
}

/// `kubernetes.io/tls` Secrets need `tls.crt` and `tls.key` (SPEC §10); service-account-token Secrets
/// need the service-account annotation and `token` (SPEC §9), in `data` or `stringData`.
pub(super) fn secret(s: &Secret) -> Vec<FieldError> {
    let mut r = Report::default();
    metadata(&mut r, &s.metadata);
    let has = |k: &str| {
        s.data.as_ref().is_some_and(|d| d.contains_key(k))
            || s.string_data.as_ref().is_some_and(|d| d.contains_key(k))
    };
    let needed: &[&str] = match s.type_.as_deref() {
        Some("kubernetes.io/tls") => &["tls.crt", "tls.key"],
        Some("kubernetes.io/service-account-token") => {
            let annotated = s
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("kubernetes.io/service-account.name"));
            if !annotated {
                r.field(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "is required on a service-account-token Secret",
                );
            }
            &["token"]
        }
        _ => &[],
    };
    for k in needed {
        if !has(k) {
            r.field(&key("data", k), "is required (in data or stringData)");
        }
    }
    r.errors
}
