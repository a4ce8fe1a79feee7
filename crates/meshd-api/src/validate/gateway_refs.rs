//! Gateways against each other and the VirtualServices bound to them (SPEC §10), Istio's rules: which
//! VirtualServices a Gateway binds and for which hosts ([`binds_gateway`], [`gateway_host`]), which
//! gateway pods a Gateway selects, and the verdicts that follow: two Gateways selecting one pod with one
//! port and different protocols (the younger is rejected, [`judge_gateways`]), and a VirtualService
//! host that no server of its Gateways accepts ([`unbound_hosts`]). The control plane and `meshd
//! validate` run the same functions.

use std::collections::BTreeMap;

use super::FieldError;
use super::references::{host_matches, resolve_host};
use super::verdicts::{Candidate, Judged, choose};
use crate::networking::{GatewaySpec, Protocol, VirtualServiceSpec};
use crate::status::reason;

/// A gateway pod as the checks see it (a Pod labelled `meshd.io/gateway`).
#[derive(Clone, Copy, Debug)]
pub struct GatewayPod<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// A Gateway in force, as the VirtualService checks see it.
#[derive(Clone, Copy, Debug)]
pub struct GatewayRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub spec: &'a GatewaySpec,
}

/// Whether a Gateway's `selector` picks a pod: every label of it matches (an empty selector picks
/// every gateway pod, in any namespace).
pub fn selects_pod(spec: &GatewaySpec, labels: &BTreeMap<String, String>) -> bool {
    spec.selector
        .iter()
        .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
}

/// Whether a VirtualService in `vs_namespace` lists the Gateway `namespace/name` in `gateways`
/// (`<ns>/<name>`, or `<name>` meaning the VirtualService's own namespace).
pub fn binds_gateway(
    spec: &VirtualServiceSpec,
    vs_namespace: &str,
    namespace: &str,
    name: &str,
) -> bool {
    spec.gateways.iter().any(|g| match g.split_once('/') {
        Some((ns, n)) => ns == namespace && n == name,
        None => g != "mesh" && vs_namespace == namespace && g == name,
    })
}

/// The host a server host (`[ns/]dnsName` of a Gateway in `gateway_namespace`) and a VirtualService
/// host (resolved, of a VirtualService in `vs_namespace`) have in common: the more specific of the two
/// when one covers the other (`*.example.com` and `a.example.com` → `a.example.com`); `None` when they
/// are disjoint or the server binds no VirtualService of that namespace (`ns/`, `./` = the Gateway's
/// namespace, `*/` or nothing = any).
pub fn gateway_host(
    server_host: &str,
    gateway_namespace: &str,
    vs_namespace: &str,
    vs_host: &str,
) -> Option<String> {
    let (ns, name) = server_host.split_once('/').unwrap_or(("*", server_host));
    let allowed = match ns {
        "*" => true,
        "." => vs_namespace == gateway_namespace,
        ns => vs_namespace == ns,
    };
    if !allowed {
        return None;
    }
    if host_matches(name, vs_host) {
        Some(vs_host.to_string())
    } else if host_matches(vs_host, name) {
        Some(name.to_string())
    } else {
        None
    }
}

/// The `spec.hosts[i]` of a VirtualService in `namespace` that no server of the Gateways it binds
/// accepts, as errors (none when it also binds `mesh`, or binds no Gateway in `gateways`: one that does
/// not exist yet is not judged).
pub fn unbound_hosts(
    spec: &VirtualServiceSpec,
    namespace: &str,
    domain: &str,
    gateways: &[GatewayRef<'_>],
) -> Vec<FieldError> {
    if super::verdicts::binds_mesh(spec) {
        return Vec::new();
    }
    let bound: Vec<&GatewayRef<'_>> = gateways
        .iter()
        .filter(|g| binds_gateway(spec, namespace, g.namespace, g.name))
        .collect();
    if bound.is_empty() {
        return Vec::new();
    }
    let names: Vec<String> = bound
        .iter()
        .map(|g| format!("{}/{}", g.namespace, g.name))
        .collect();
    let mut errors = Vec::new();
    for (i, h) in spec.hosts.iter().enumerate() {
        let host = resolve_host(h, namespace, domain);
        let accepted = bound.iter().any(|g| {
            g.spec.servers.iter().any(|s| {
                s.hosts
                    .iter()
                    .any(|sh| gateway_host(sh, g.namespace, namespace, &host).is_some())
            })
        });
        if !accepted {
            errors.push(
                FieldError::new(
                    format!("spec.hosts[{i}]"),
                    format!(
                        "is not a host any server of Gateway {} accepts for this namespace",
                        names.join(", ")
                    ),
                )
                .with_str(h),
            );
        }
    }
    errors
}

/// Judges Gateways oldest first: `own` checks one version on its own (beyond the object-level
/// problems, e.g. its credentials); then a server port that an older accepted Gateway selecting one
/// of the same `pods` serves with another protocol is a conflict, naming `spec.servers[i].port.protocol`.
pub fn judge_gateways<'a>(
    list: &[Candidate<'a, GatewaySpec>],
    pods: &[GatewayPod<'_>],
    mut own: impl FnMut(usize, &'a GatewaySpec) -> Result<(), (&'static str, Vec<FieldError>)>,
) -> Vec<Judged> {
    let mut out: Vec<Option<Judged>> = vec![None; list.len()];
    // Per pod (index in `pods`) and port: the protocol and the Gateway holding it.
    let mut claims: BTreeMap<(usize, u32), (Protocol, String)> = BTreeMap::new();
    let mut order: Vec<usize> = (0..list.len()).collect();
    order.sort_by(|a, b| list[*a].order().cmp(&list[*b].order()));
    for i in order {
        let c = &list[i];
        out[i] = Some(choose(c, |spec| {
            own(i, spec)?;
            let selected: Vec<usize> = (0..pods.len())
                .filter(|p| selects_pod(spec, pods[*p].labels))
                .collect();
            let mut errors = Vec::new();
            for (k, s) in spec.servers.iter().enumerate() {
                let Some(protocol) = s.port.protocol else {
                    continue;
                };
                let held = selected
                    .iter()
                    .filter_map(|p| claims.get(&(*p, s.port.number)))
                    .find(|(q, _)| *q != protocol);
                if let Some((q, other)) = held {
                    errors.push(
                        FieldError::new(
                            format!("spec.servers[{k}].port.protocol"),
                            format!(
                                "differs from Gateway {other} ({}) on port {} of a gateway pod both select; the older Gateway wins",
                                q.as_str(),
                                s.port.number
                            ),
                        )
                        .with_str(protocol.as_str()),
                    );
                }
            }
            if !errors.is_empty() {
                return Err((reason::CONFLICT, errors));
            }
            for s in &spec.servers {
                if let Some(protocol) = s.port.protocol {
                    for p in &selected {
                        claims
                            .entry((*p, s.port.number))
                            .or_insert((protocol, c.display()));
                    }
                }
            }
            Ok(())
        }));
    }
    out.into_iter()
        .map(|j| j.expect("every index judged once"))
        .collect()
}

#[cfg(test)]
#[path = "gateway_refs_tests.rs"]
mod tests;
