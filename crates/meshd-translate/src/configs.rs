//! The traffic and security resources translation holds (every kind with [`FactKind::has_verdict`]):
//! each one's latest version, the version in force, and the verdicts (SPEC §8). A rejected update
//! leaves the last accepted version in force; a resource never accepted has nothing in force.
//!
//! Generic over kinds: a kind's facts are [`crate::facts::Config`]s and [`Fact::checked`] gives their
//! object-level problems. Gateways are judged first, against each other and the gateway pods they select
//! (`meshd_api::validate::gateway_refs::judge_gateways`, with [`extra_checks`]); ServiceEntry,
//! DestinationRule and VirtualService then against each other, the Services and the Gateways in force
//! (`meshd_api::validate::verdicts::judge`, the checks `meshd validate` runs); every other kind with a
//! verdict is in force when it is valid on its own, unless [`extra_checks`] says otherwise for it.

use std::collections::BTreeMap;
use std::sync::Arc;

use meshd_api::status::{Verdict, VerdictKey, reason};
use meshd_api::validate::FieldError;
use meshd_api::validate::gateway_credentials::{
    SecretFacts, credential_namespaces, credential_problems,
};
use meshd_api::validate::gateway_refs::{GatewayPod, GatewayRef, judge_gateways};
use meshd_api::validate::verdicts::{Candidate, InForce, Judged, ServiceHosts, judge};

use crate::facts::{Config, Fact, FactKind, ObjectKey};

/// Every verdict by resource: a persistent map, so each generation shares it at the cost of a pointer.
pub type Verdicts = imbl::OrdMap<VerdictKey, Arc<Verdict>>;

/// One resource: its latest version and the one in force.
#[derive(Debug, Clone)]
pub(crate) struct Tracked {
    pub latest: Fact,
    pub in_force: Option<Fact>,
}

/// The resources of one kind by key.
pub(crate) type Table = BTreeMap<ObjectKey, Tracked>;

#[derive(Debug, Default)]
pub(crate) struct Configs {
    tables: BTreeMap<FactKind, Table>,
    pub verdicts: Verdicts,
    /// VirtualServices and DestinationRules in force by the hosts they name (resolved), so that a
    /// Service's lookup does not scan them all.
    hosts: BTreeMap<FactKind, HostIndex>,
    /// Versions that left force since the last judgement (deleted or replaced), and the new ones:
    /// their hosts are the ones whose translation may differ.
    moved: Vec<(ObjectKey, Fact)>,
    /// A resource that had a version in force was deleted since the last judgement.
    removed_in_force: bool,
    /// What a Gateway's `credentialName`s are checked against.
    pub edge: EdgeFacts,
}

/// The `kubernetes.io/tls` Secrets and the gateway pods, as a Gateway's checks need them.
#[derive(Debug, Default)]
pub(crate) struct EdgeFacts {
    pub secrets: BTreeMap<ObjectKey, SecretFacts>,
    /// Gateway pods (labelled `meshd.io/gateway`) by key: their labels.
    pub gateway_pods: BTreeMap<ObjectKey, BTreeMap<String, String>>,
}

impl EdgeFacts {
    /// Sets or removes one Secret; whether a check's answer may differ.
    pub fn set_secret(&mut self, key: ObjectKey, facts: Option<SecretFacts>) -> bool {
        match facts {
            Some(f) => self.secrets.insert(key, f) != Some(f),
            None => self.secrets.remove(&key).is_some(),
        }
    }

    /// Sets or removes one gateway pod's labels; whether a check's answer may differ.
    pub fn set_gateway_pod(
        &mut self,
        key: ObjectKey,
        labels: Option<&BTreeMap<String, String>>,
    ) -> bool {
        match labels {
            Some(l) => self.gateway_pods.insert(key, l.clone()).as_ref() != Some(l),
            None => self.gateway_pods.remove(&key).is_some(),
        }
    }
}

/// The hosts whose routes and clusters may differ after a judgement.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    /// A wildcard host or a ServiceEntry moved: every host may differ.
    pub all: bool,
    pub hosts: std::collections::BTreeSet<String>,
}

/// Resources in force by host: exact hosts in a map, wildcards (`*.example.com`) in a list. Each
/// entry holds the version in force (rebuilt whenever what is in force moves), so a lookup reads
/// no table.
#[derive(Debug, Default)]
struct HostIndex {
    exact: foldhash::HashMap<String, Vec<(ObjectKey, Fact)>>,
    wildcard: Vec<(String, ObjectKey, Fact)>,
}

/// Below this many routing versions moved, their hosts are always found one by one
/// ([`Configs::take_touched`]): it costs little, and a small mesh's change compiles only its hosts.
const BULK_MOVE: usize = 64;

fn vkey(kind: FactKind, key: &ObjectKey) -> VerdictKey {
    VerdictKey::new(kind.name(), &key.namespace, &key.name)
}

/// Cross-resource checks of a kind judged on its own (not ServiceEntry, DestinationRule or
/// VirtualService, which [`judge`] checks together): problems of `fact` given what is in force. A kind
/// that needs them adds its arm here. A Gateway: its `credentialName`s must name `kubernetes.io/tls`
/// Secrets where its gateway pods run (SPEC §10).
fn extra_checks(
    kind: FactKind,
    fact: &Fact,
    key: &ObjectKey,
    configs: &Configs,
) -> Vec<FieldError> {
    match (kind, fact) {
        (FactKind::Gateway, Fact::Gateway(gw)) => {
            let edge = &configs.edge;
            let pods = edge
                .gateway_pods
                .iter()
                .map(|(k, labels)| (k.namespace.as_str(), labels));
            let namespaces = credential_namespaces(&gw.spec, &key.namespace, pods);
            let secret =
                |ns: &str, name: &str| edge.secrets.get(&ObjectKey::new(ns, name)).copied();
            credential_problems(&gw.spec, &namespaces, &secret)
        }
        _ => Vec::new(),
    }
}

/// The kinds [`judge`] and [`judge_gateways`] check against each other.
fn cross_checked(kind: FactKind) -> bool {
    matches!(
        kind,
        FactKind::ServiceEntry
            | FactKind::DestinationRule
            | FactKind::VirtualService
            | FactKind::Gateway
    )
}

impl Configs {
    /// Sets or removes one resource's latest version (`kind` has a verdict); whether that changed
    /// anything. A fact of another kind or without [`Fact::checked`] is refused (false).
    pub fn set(&mut self, kind: FactKind, key: ObjectKey, fact: Option<Fact>) -> bool {
        let table = self.tables.entry(kind).or_default();
        match fact {
            Some(latest) if latest.kind() == kind && latest.checked().is_some() => {
                match table.get_mut(&key) {
                    Some(t) if t.latest.same(&latest) => false,
                    Some(t) => {
                        t.latest = latest;
                        true
                    }
                    None => {
                        table.insert(
                            key,
                            Tracked {
                                latest,
                                in_force: None,
                            },
                        );
                        true
                    }
                }
            }
            Some(_) => false,
            None => {
                self.verdicts.remove(&vkey(kind, &key));
                let removed = table.remove(&key);
                if let Some(Tracked {
                    in_force: Some(f), ..
                }) = &removed
                {
                    self.moved.push((key, f.clone()));
                    self.removed_in_force = true;
                }
                removed.is_some()
            }
        }
    }

    /// The versions in force of one kind, by key (what translation reads).
    pub fn in_force(&self, kind: FactKind) -> impl Iterator<Item = (&ObjectKey, &Fact)> + '_ {
        self.tables
            .get(&kind)
            .into_iter()
            .flatten()
            .filter_map(|(k, t)| t.in_force.as_ref().map(|f| (k, f)))
    }

    /// The versions in force of one kind (VirtualService, DestinationRule) that name `fqdn`, exactly
    /// or by a wildcard, each once.
    pub fn naming(&self, kind: FactKind, fqdn: &str) -> Vec<(&ObjectKey, &Fact)> {
        self.indexed(kind, fqdn, |pattern| {
            meshd_api::validate::references::host_matches(pattern, fqdn)
        })
    }

    /// The versions in force of one kind whose (resolved) host is `fqdn` itself: a DestinationRule
    /// for exactly that host, not one for a wildcard that matches it. Found in the index, without
    /// resolving every candidate's host again.
    pub fn for_host(&self, kind: FactKind, fqdn: &str) -> Vec<(&ObjectKey, &Fact)> {
        self.indexed(kind, fqdn, |pattern| pattern == fqdn)
    }

    /// The index's entries for `fqdn` and the wildcards `wildcard` takes, by key, each once.
    fn indexed(
        &self,
        kind: FactKind,
        fqdn: &str,
        wildcard: impl Fn(&str) -> bool,
    ) -> Vec<(&ObjectKey, &Fact)> {
        let Some(index) = self.hosts.get(&kind) else {
            return Vec::new();
        };
        let mut found: Vec<(&ObjectKey, &Fact)> = index
            .exact
            .get(fqdn)
            .into_iter()
            .flatten()
            .map(|(k, f)| (k, f))
            .collect();
        found.extend(
            index
                .wildcard
                .iter()
                .filter(|(pattern, _, _)| wildcard(pattern))
                .map(|(_, k, f)| (k, f)),
        );
        found.sort_by(|a, b| a.0.cmp(b.0));
        found.dedup_by(|a, b| a.0 == b.0);
        found
    }

    /// The hosts of the versions that moved in or out of force since the last call, in a mesh of
    /// `services` Services.
    pub fn take_touched(&mut self, domain: &str, services: usize) -> Touched {
        use meshd_api::validate::references::resolve_host;
        let mut t = Touched::default();
        let moved = std::mem::take(&mut self.moved);
        // When at least as many routing versions moved as there are Services (a first translation,
        // a bulk apply), every host is marked, without resolving each version's hosts and then
        // finding what routes to them: that compiles no more Services than versions moved, so it
        // costs about what naming them would, and a Service that did not change gives the same
        // bytes, which push nothing.
        let moved_routing = moved
            .iter()
            .filter(|(_, f)| matches!(f, Fact::VirtualService(_) | Fact::DestinationRule(_)))
            .count();
        if moved_routing >= services.max(BULK_MOVE) {
            t.all = true;
            return t;
        }
        for (key, fact) in moved {
            let hosts: Vec<String> = match &fact {
                Fact::VirtualService(c) => c.spec.hosts.clone(),
                Fact::DestinationRule(c) => vec![c.spec.host.clone()],
                // Their proxies are marked by `Translator::sync_security`.
                Fact::Gateway(_) | Fact::PeerAuthentication(_) | Fact::AuthorizationPolicy(_) => {
                    Vec::new()
                }
                _ => {
                    t.all = true;
                    Vec::new()
                }
            };
            for h in hosts {
                let h = resolve_host(&h, &key.namespace, domain);
                t.all |= h.starts_with('*');
                t.hosts.insert(h);
            }
        }
        t
    }

    fn index_hosts(&mut self, domain: &str) {
        use meshd_api::validate::references::resolve_host;
        let mut vs = HostIndex::default();
        let mut dr = HostIndex::default();
        for (key, fact) in self.in_force(FactKind::VirtualService) {
            if let Fact::VirtualService(c) = fact {
                for h in &c.spec.hosts {
                    vs.add(resolve_host(h, &key.namespace, domain), key, fact);
                }
            }
        }
        for (key, fact) in self.in_force(FactKind::DestinationRule) {
            if let Fact::DestinationRule(c) = fact {
                dr.add(
                    resolve_host(&c.spec.host, &key.namespace, domain),
                    key,
                    fact,
                );
            }
        }
        self.hosts.insert(FactKind::VirtualService, vs);
        self.hosts.insert(FactKind::DestinationRule, dr);
    }

    /// Judges every resource again; whether any version in force changed.
    pub fn judge(&mut self, domain: &str, services: &dyn ServiceHosts) -> bool {
        let judged = self.judge_gateways();
        let mut changed = self.apply(FactKind::Gateway, judged);
        let empty = Table::new();
        let table = |k| self.tables.get(&k).unwrap_or(&empty);
        let gateways: Vec<GatewayRef<'_>> = table(FactKind::Gateway)
            .iter()
            .filter_map(|(key, t)| match &t.in_force {
                Some(Fact::Gateway(c)) => Some(GatewayRef {
                    namespace: &key.namespace,
                    name: &key.name,
                    spec: &c.spec,
                }),
                _ => None,
            })
            .collect();
        let ses = candidates(table(FactKind::ServiceEntry), |f| match f {
            Fact::ServiceEntry(c) => Some(&**c),
            _ => None,
        });
        let drs = candidates(table(FactKind::DestinationRule), |f| match f {
            Fact::DestinationRule(c) => Some(&**c),
            _ => None,
        });
        let vss = candidates(table(FactKind::VirtualService), |f| match f {
            Fact::VirtualService(c) => Some(&**c),
            _ => None,
        });
        let judgement = judge(domain, services, &ses, &drs, &vss, &gateways);
        changed |= self.apply(FactKind::ServiceEntry, judgement.service_entries);
        changed |= self.apply(FactKind::DestinationRule, judgement.destination_rules);
        changed |= self.apply(FactKind::VirtualService, judgement.virtual_services);
        let alone: Vec<FactKind> = self
            .tables
            .keys()
            .copied()
            .filter(|k| !cross_checked(*k))
            .collect();
        for kind in alone {
            let judged = self.judge_alone(kind);
            changed |= self.apply(kind, judged);
        }
        changed |= std::mem::take(&mut self.removed_in_force);
        if changed {
            self.index_hosts(domain);
        }
        changed
    }

    /// Gateways, oldest first: their object-level problems, [`extra_checks`], then a port another
    /// Gateway selecting one of the same pods serves with another protocol.
    fn judge_gateways(&self) -> Vec<Judged> {
        let Some(table) = self.tables.get(&FactKind::Gateway) else {
            return Vec::new();
        };
        let pods: Vec<GatewayPod<'_>> = self
            .edge
            .gateway_pods
            .iter()
            .map(|(key, labels)| GatewayPod {
                namespace: &key.namespace,
                labels,
            })
            .collect();
        let rows: Vec<(&ObjectKey, &Tracked)> = table.iter().collect();
        let list = candidates(table, |f| match f {
            Fact::Gateway(c) => Some(&**c),
            _ => None,
        });
        judge_gateways(&list, &pods, |i, spec| {
            let (key, t) = rows[i];
            // The version being checked: the latest, or the one in force before it.
            let fact = match (&t.latest, &t.in_force) {
                (Fact::Gateway(c), _) if std::ptr::eq(&c.spec, spec) => &t.latest,
                (_, Some(prev)) => prev,
                _ => &t.latest,
            };
            let extra = extra_checks(FactKind::Gateway, fact, key, self);
            if extra.is_empty() {
                Ok(())
            } else {
                Err((reason::DANGLING_REFERENCE, extra))
            }
        })
    }

    /// A kind judged on its own: in force when valid and [`extra_checks`] find nothing.
    fn judge_alone(&self, kind: FactKind) -> Vec<Judged> {
        let Some(table) = self.tables.get(&kind) else {
            return Vec::new();
        };
        let check = |key: &ObjectKey, fact: &Fact| -> Option<(&'static str, Vec<FieldError>)> {
            let problems = fact.checked().map(|c| c.problems).unwrap_or_default();
            if !problems.is_empty() {
                return Some((reason::INVALID, problems.to_vec()));
            }
            let extra = extra_checks(kind, fact, key, self);
            (!extra.is_empty()).then_some((reason::DANGLING_REFERENCE, extra))
        };
        table
            .iter()
            .map(|(key, t)| match check(key, &t.latest) {
                None => Judged {
                    in_force: InForce::Latest,
                    rejected: None,
                },
                Some(rejected) => Judged {
                    in_force: match &t.in_force {
                        Some(prev) if !prev.same(&t.latest) && check(key, prev).is_none() => {
                            InForce::Previous
                        }
                        _ => InForce::Nothing,
                    },
                    rejected: Some(rejected),
                },
            })
            .collect()
    }

    /// Applies one kind's verdicts (in table order): in-force versions and the verdict map; whether
    /// anything in force changed.
    fn apply(&mut self, kind: FactKind, judged: Vec<Judged>) -> bool {
        let Some(table) = self.tables.get_mut(&kind) else {
            return false;
        };
        let mut changed = false;
        for ((key, t), j) in table.iter_mut().zip(judged) {
            let in_force = match j.in_force {
                InForce::Latest => Some(t.latest.clone()),
                InForce::Previous => t.in_force.clone(),
                InForce::Nothing => None,
            };
            let same = match (&in_force, &t.in_force) {
                (Some(a), Some(b)) => a.same(b),
                (None, None) => true,
                _ => false,
            };
            if !same {
                changed = true;
                let old = std::mem::replace(&mut t.in_force, in_force);
                self.moved.extend(
                    old.into_iter()
                        .chain(t.in_force.clone())
                        .map(|f| (key.clone(), f)),
                );
            }
            let generation = t.latest.checked().and_then(|c| c.generation);
            let verdict = match j.rejected {
                None => Verdict::accepted(generation),
                Some((reason, errors)) => {
                    Verdict::rejected(generation, reason, &errors, t.in_force.is_some())
                }
            };
            let vkey = vkey(kind, key);
            if self.verdicts.get(&vkey).is_none_or(|v| **v != verdict) {
                self.verdicts.insert(vkey, Arc::new(verdict));
            }
        }
        changed
    }
}

impl HostIndex {
    fn add(&mut self, host: String, key: &ObjectKey, fact: &Fact) {
        if host.starts_with('*') {
            self.wildcard.push((host, key.clone(), fact.clone()));
        } else {
            let entries = self.exact.entry(host).or_default();
            entries.push((key.clone(), fact.clone()));
        }
    }
}

/// A table's resources as `judge` takes them (`spec` picks the kind's [`Config`] out of a fact).
fn candidates<'a, T: 'a>(
    table: &'a Table,
    spec: impl Fn(&'a Fact) -> Option<&'a Config<T>>,
) -> Vec<Candidate<'a, T>> {
    table
        .iter()
        .filter_map(|(key, t)| {
            let latest = spec(&t.latest)?;
            let previous = t
                .in_force
                .as_ref()
                .filter(|p| !p.same(&t.latest))
                .and_then(&spec);
            Some(Candidate {
                namespace: &key.namespace,
                name: &key.name,
                created: latest.created,
                latest: &latest.spec,
                latest_errors: &latest.problems,
                previous: previous.map(|p| &p.spec),
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "configs_tests.rs"]
mod tests;
