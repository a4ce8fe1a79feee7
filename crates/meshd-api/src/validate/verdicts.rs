//! Which version of each ServiceEntry, DestinationRule and VirtualService is in force, and why a
//! rejected one is not (SPEC §8). One pure function, [`judge`], for the control plane (over the facts
//! it holds, with the version each resource had in force before) and for `meshd validate` (over files).
//!
//! Order: ServiceEntries first (a host claimed by a Service or an older ServiceEntry is a conflict),
//! then DestinationRules (their host must be served; several rules of one namespace for one host merge
//! as Istio merges them, and a rule that contradicts an older one is a conflict), then VirtualServices
//! (destinations must exist; a VirtualService that another one outranks for every namespace that sees
//! it is a conflict). Each level is checked against what is in force at the levels before it.
//!
//! A version whose checks fail is not used: the resource keeps its previous version in force when that
//! one still passes, else nothing of it applies.

use std::collections::{BTreeMap, BTreeSet};

use super::gateway_refs::{GatewayRef, unbound_hosts};
use super::references::{self, Export, age_order, host_matches, resolve_host};
use super::{FieldError, References};
use crate::networking::{DestinationRuleSpec, ServiceEntrySpec, VirtualServiceSpec};
use crate::status::reason;

/// One resource as the checks see it.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a, T> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// `creationTimestamp` in seconds; unknown counts as newest.
    pub created: Option<i64>,
    pub latest: &'a T,
    /// What the object-level checks ([`super::Validate`]) found in `latest`.
    pub latest_errors: &'a [FieldError],
    /// The version in force before `latest` arrived, when there is one and it differs.
    pub previous: Option<&'a T>,
}

impl<T> Candidate<'_, T> {
    pub(super) fn order(&self) -> (i64, &str, &str) {
        age_order(self.created, self.namespace, self.name)
    }

    pub(super) fn display(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Which version is in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InForce {
    Latest,
    Previous,
    Nothing,
}

/// The verdict on one candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    pub in_force: InForce,
    /// Why the latest version is not in force: a [`reason`] and every problem.
    pub rejected: Option<(&'static str, Vec<FieldError>)>,
}

impl Judged {
    fn pending() -> Self {
        Self {
            in_force: InForce::Nothing,
            rejected: None,
        }
    }
}

/// The hosts of Kubernetes Services (never rejected): `namespace/name` and port numbers by FQDN.
pub trait ServiceHosts {
    fn service(&self, fqdn: &str) -> Option<(String, Vec<u16>)>;

    /// Whether a Service has this host (what most checks ask: no name or ports built).
    fn has(&self, fqdn: &str) -> bool {
        self.service(fqdn).is_some()
    }
}

impl ServiceHosts for BTreeMap<String, (String, Vec<u16>)> {
    fn service(&self, fqdn: &str) -> Option<(String, Vec<u16>)> {
        self.get(fqdn).cloned()
    }
}

/// Verdicts in the order of the inputs.
#[derive(Clone, Debug, Default)]
pub struct Judgement {
    pub service_entries: Vec<Judged>,
    pub destination_rules: Vec<Judged>,
    pub virtual_services: Vec<Judged>,
}

/// Judges every candidate; `domain` resolves short names (`reviews` → `reviews.<ns>.svc.<domain>`).
/// `gateways`: the Gateways in force ([`super::gateway_refs::judge_gateways`] judges them first), which
/// the hosts of VirtualServices bound to them must be served by.
pub fn judge(
    domain: &str,
    services: &dyn ServiceHosts,
    service_entries: &[Candidate<'_, ServiceEntrySpec>],
    destination_rules: &[Candidate<'_, DestinationRuleSpec>],
    virtual_services: &[Candidate<'_, VirtualServiceSpec>],
    gateways: &[GatewayRef<'_>],
) -> Judgement {
    let ses = judge_service_entries(services, service_entries);
    let mut catalog = Catalog {
        services,
        entries: Vec::new(),
        subsets: BTreeMap::new(),
        wildcard_subsets: Vec::new(),
    };
    for (c, j) in service_entries.iter().zip(&ses) {
        if let Some(spec) = pick(c, j) {
            catalog.entries.push(spec);
        }
    }
    let drs = judge_destination_rules(domain, &catalog, destination_rules);
    for (c, j) in destination_rules.iter().zip(&drs) {
        if let Some(spec) = pick(c, j) {
            let host = resolve_host(&spec.host, c.namespace, domain);
            if host.starts_with('*') {
                let named = spec.subsets.iter().map(|s| (host.clone(), s.name.clone()));
                catalog.wildcard_subsets.extend(named);
            } else if !spec.subsets.is_empty() {
                let names = catalog.subsets.entry(host).or_default();
                names.extend(spec.subsets.iter().map(|s| s.name.clone()));
            }
        }
    }
    let vss = judge_virtual_services(domain, &catalog, virtual_services, gateways);
    Judgement {
        service_entries: ses,
        destination_rules: drs,
        virtual_services: vss,
    }
}

/// The version a verdict put in force.
pub fn pick<'a, T>(c: &Candidate<'a, T>, j: &Judged) -> Option<&'a T> {
    match j.in_force {
        InForce::Latest => Some(c.latest),
        InForce::Previous => c.previous,
        InForce::Nothing => None,
    }
}

/// What is in force so far, as the reference checks ask it.
struct Catalog<'a> {
    services: &'a dyn ServiceHosts,
    entries: Vec<&'a ServiceEntrySpec>,
    /// Subset names by resolved DestinationRule host; wildcard hosts apart.
    subsets: BTreeMap<String, BTreeSet<String>>,
    wildcard_subsets: Vec<(String, String)>,
}

impl Catalog<'_> {
    fn entry(&self, fqdn: &str) -> Option<&ServiceEntrySpec> {
        self.entries
            .iter()
            .copied()
            .find(|e| e.hosts.iter().any(|h| h == fqdn))
            .or_else(|| {
                self.entries
                    .iter()
                    .copied()
                    .find(|e| e.hosts.iter().any(|h| host_matches(h, fqdn)))
            })
    }
}

impl References for Catalog<'_> {
    fn has_host(&self, fqdn: &str) -> bool {
        self.services.has(fqdn) || self.entry(fqdn).is_some()
    }

    fn host_ports(&self, fqdn: &str) -> Option<Vec<u16>> {
        if let Some((_, ports)) = self.services.service(fqdn) {
            return Some(ports);
        }
        let entry = self.entry(fqdn)?;
        Some(
            entry
                .ports
                .iter()
                .filter_map(|p| u16::try_from(p.number).ok())
                .collect(),
        )
    }

    fn has_subset(&self, fqdn: &str, subset: &str) -> bool {
        self.subsets.get(fqdn).is_some_and(|s| s.contains(subset))
            || self
                .wildcard_subsets
                .iter()
                .any(|(host, name)| name == subset && host_matches(host, fqdn))
    }
}

/// Indices of `list` oldest first.
fn by_age<T>(list: &[Candidate<'_, T>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..list.len()).collect();
    order.sort_by(|a, b| list[*a].order().cmp(&list[*b].order()));
    order
}

/// Tries the latest version, then the previous one, with `check` (which may record claims when it
/// accepts); the first failure of the latest is the verdict's reason.
pub(super) fn choose<'a, T>(
    c: &Candidate<'a, T>,
    mut check: impl FnMut(&'a T) -> Result<(), (&'static str, Vec<FieldError>)>,
) -> Judged {
    let rejected = if c.latest_errors.is_empty() {
        match check(c.latest) {
            Ok(()) => {
                return Judged {
                    in_force: InForce::Latest,
                    rejected: None,
                };
            }
            Err(e) => e,
        }
    } else {
        (reason::INVALID, c.latest_errors.to_vec())
    };
    let in_force = match c.previous {
        Some(prev) if check(prev).is_ok() => InForce::Previous,
        _ => InForce::Nothing,
    };
    Judged {
        in_force,
        rejected: Some(rejected),
    }
}

fn judge_service_entries(
    services: &dyn ServiceHosts,
    list: &[Candidate<'_, ServiceEntrySpec>],
) -> Vec<Judged> {
    let mut out = vec![Judged::pending(); list.len()];
    // Host → the ServiceEntries that hold it (their namespace, export and name).
    let mut claims: BTreeMap<&str, Vec<(&str, Export, String)>> = BTreeMap::new();
    for i in by_age(list) {
        let c = &list[i];
        out[i] = choose(c, |spec| {
            let export = Export::of(&spec.export_to);
            let mut errors = Vec::new();
            for (k, h) in spec.hosts.iter().enumerate() {
                let path = format!("spec.hosts[{k}]");
                if let Some((service, _)) = services.service(h) {
                    errors.push(
                        FieldError::new(path, format!("is the host of Service {service}"))
                            .with_str(h),
                    );
                } else if let Some((_, _, other)) = claims.get(h.as_str()).and_then(|held| {
                    held.iter()
                        .find(|(ns, e, _)| export.overlaps(c.namespace, e, ns))
                }) {
                    errors.push(
                        FieldError::new(
                            path,
                            format!(
                                "is also a host of ServiceEntry {other}, which is older and wins"
                            ),
                        )
                        .with_str(h),
                    );
                }
            }
            if !errors.is_empty() {
                return Err((reason::CONFLICT, errors));
            }
            for h in &spec.hosts {
                claims.entry(h.as_str()).or_default().push((
                    c.namespace,
                    export.clone(),
                    c.display(),
                ));
            }
            Ok(())
        });
    }
    out
}

/// What the rules of one namespace for one host merged so far; rules by their index in the list (named
/// only in a verdict's message).
struct Merged {
    first: usize,
    export: Export,
    policy_from: Option<usize>,
    subsets: BTreeMap<String, usize>,
}

fn judge_destination_rules(
    domain: &str,
    catalog: &Catalog<'_>,
    list: &[Candidate<'_, DestinationRuleSpec>],
) -> Vec<Judged> {
    let mut out = vec![Judged::pending(); list.len()];
    let mut merged: BTreeMap<(&str, String), Merged> = BTreeMap::new();
    for i in by_age(list) {
        let c = &list[i];
        out[i] = choose(c, |spec| {
            let refs = references::destination_rule(spec, c.namespace, domain, catalog);
            if !refs.is_empty() {
                return Err((reason::DANGLING_REFERENCE, refs));
            }
            let host = resolve_host(&spec.host, c.namespace, domain);
            let export = Export::of(&spec.export_to);
            let key = (c.namespace, host.clone());
            let Some(m) = merged.get_mut(&key) else {
                merged.insert(
                    key,
                    Merged {
                        first: i,
                        export,
                        policy_from: spec.traffic_policy.as_ref().map(|_| i),
                        subsets: spec.subsets.iter().map(|s| (s.name.clone(), i)).collect(),
                    },
                );
                return Ok(());
            };
            let mut errors = Vec::new();
            if m.export != export {
                errors.push(FieldError::new(
                    "spec.exportTo",
                    format!(
                        "differs from that of DestinationRule {}, an older rule for {host} in this namespace (rules for one host merge only with the same exportTo)",
                        list[m.first].display()
                    ),
                ));
            }
            if let (Some(_), Some(other)) = (&spec.traffic_policy, m.policy_from) {
                errors.push(FieldError::new(
                    "spec.trafficPolicy",
                    format!(
                        "is also set by DestinationRule {}, an older rule for {host} in this namespace (only one trafficPolicy applies)",
                        list[other].display()
                    ),
                ));
            }
            for (k, s) in spec.subsets.iter().enumerate() {
                if let Some(other) = m.subsets.get(&s.name) {
                    errors.push(
                        FieldError::new(
                            format!("spec.subsets[{k}].name"),
                            format!("is also a subset of DestinationRule {}, an older rule for {host} in this namespace", list[*other].display()),
                        )
                        .with_str(&s.name),
                    );
                }
            }
            if !errors.is_empty() {
                return Err((reason::CONFLICT, errors));
            }
            if spec.traffic_policy.is_some() {
                m.policy_from = Some(i);
            }
            for s in &spec.subsets {
                m.subsets.insert(s.name.clone(), i);
            }
            Ok(())
        });
    }
    out
}

/// A VirtualService routes sidecars' traffic when bound to `mesh` (the default).
pub fn binds_mesh(spec: &VirtualServiceSpec) -> bool {
    spec.gateways.is_empty() || spec.gateways.iter().any(|g| g == "mesh")
}

/// One viable VirtualService version, for the precedence checks.
struct Routing<'a> {
    index: usize,
    namespace: &'a str,
    order: (i64, &'a str, &'a str),
    export: Export,
    hosts: Vec<String>,
}

impl Routing<'_> {
    /// Whether `self` outranks `other` for proxies in `ns` (Istio: private, then exported by name, then
    /// public; within a rank the oldest).
    fn beats(&self, other: &Routing<'_>, ns: &str) -> bool {
        match (
            self.export.rank(self.namespace, ns),
            other.export.rank(other.namespace, ns),
        ) {
            (Some(a), Some(b)) => (a, self.order) < (b, other.order),
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Whether `self` outranks `other` in every namespace that sees `other`.
    fn beats_everywhere(&self, other: &Routing<'_>) -> bool {
        if other.export.public {
            // Namespaces no export names see both only if both are public: there `self` must be older.
            if !self.export.public || self.order > other.order {
                return false;
            }
        }
        let named: BTreeSet<&str> = self
            .export
            .named(self.namespace)
            .chain(other.export.named(other.namespace))
            .collect();
        named
            .into_iter()
            .filter(|ns| other.export.visible_to(other.namespace, ns))
            .all(|ns| self.beats(other, ns))
            && (other.export.public || other.export.named(other.namespace).next().is_some())
    }
}

fn judge_virtual_services(
    domain: &str,
    catalog: &Catalog<'_>,
    list: &[Candidate<'_, VirtualServiceSpec>],
    gateways: &[GatewayRef<'_>],
) -> Vec<Judged> {
    // Phase one: the version each would have in force on its own (object and reference checks).
    let mut chosen: Vec<(Judged, Option<&VirtualServiceSpec>)> = list
        .iter()
        .map(|c| {
            let j = choose(c, |spec| {
                let mut refs = references::virtual_service(spec, c.namespace, domain, catalog);
                refs.extend(unbound_hosts(spec, c.namespace, domain, gateways));
                if refs.is_empty() {
                    Ok(())
                } else {
                    Err((reason::DANGLING_REFERENCE, refs))
                }
            });
            let spec = pick(c, &j);
            (j, spec)
        })
        .collect();
    // Phase two: precedence among the mesh-bound ones that share a host.
    let routing: Vec<Routing<'_>> = chosen
        .iter()
        .enumerate()
        .filter_map(|(i, (_, spec))| {
            let spec = spec.filter(|s| binds_mesh(s))?;
            let c = &list[i];
            Some(Routing {
                index: i,
                namespace: c.namespace,
                order: c.order(),
                export: Export::of(&spec.export_to),
                hosts: spec
                    .hosts
                    .iter()
                    .map(|h| resolve_host(h, c.namespace, domain))
                    .collect(),
            })
        })
        .collect();
    let mut by_host: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (r, routing_vs) in routing.iter().enumerate() {
        for h in &routing_vs.hosts {
            by_host.entry(h.as_str()).or_default().push(r);
        }
    }
    for v in &routing {
        let mut errors = Vec::new();
        for (k, h) in v.hosts.iter().enumerate() {
            let winner = by_host[h.as_str()]
                .iter()
                .map(|w| &routing[*w])
                .find(|w| w.index != v.index && w.beats_everywhere(v));
            if let Some(w) = winner {
                let c = &list[v.index];
                let written = chosen[v.index].1.map_or("", |s| s.hosts[k].as_str());
                errors.push(
                    FieldError::new(
                        format!("spec.hosts[{k}]"),
                        format!(
                            "is also a host of VirtualService {}/{}, which takes precedence for every namespace that sees {} (older, or exported more specifically)",
                            list[w.index].namespace, list[w.index].name, c.display()
                        ),
                    )
                    .with_str(written),
                );
            }
        }
        if errors.is_empty() {
            continue;
        }
        let (judged, _) = &mut chosen[v.index];
        match judged.in_force {
            // The latest loses: its verdict; the previous version stays only if nothing outranks it.
            InForce::Latest => {
                judged.rejected = Some((reason::CONFLICT, errors));
                judged.in_force = match list[v.index].previous {
                    Some(prev) if !outranked(domain, &routing, v, prev, &list[v.index]) => {
                        InForce::Previous
                    }
                    _ => InForce::Nothing,
                };
            }
            // The previous version loses: nothing of it applies any more; the verdict stays the latest's.
            InForce::Previous | InForce::Nothing => judged.in_force = InForce::Nothing,
        }
    }
    chosen.into_iter().map(|(j, _)| j).collect()
}

/// Whether some other viable VirtualService outranks `spec` (a version of `v`) everywhere.
fn outranked(
    domain: &str,
    routing: &[Routing<'_>],
    v: &Routing<'_>,
    spec: &VirtualServiceSpec,
    c: &Candidate<'_, VirtualServiceSpec>,
) -> bool {
    if !binds_mesh(spec) {
        return false;
    }
    let prev = Routing {
        index: v.index,
        namespace: c.namespace,
        order: c.order(),
        export: Export::of(&spec.export_to),
        hosts: spec
            .hosts
            .iter()
            .map(|h| resolve_host(h, c.namespace, domain))
            .collect(),
    };
    routing.iter().any(|w| {
        w.index != v.index
            && w.hosts.iter().any(|h| prev.hosts.contains(h))
            && w.beats_everywhere(&prev)
    })
}

#[cfg(test)]
#[path = "verdicts_tests.rs"]
mod tests;
