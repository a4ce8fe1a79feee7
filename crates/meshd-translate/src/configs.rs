//! The traffic and security resources translation holds (every kind with [`FactKind::has_verdict`]):
//! each one's latest version, the version in force, and the verdicts (SPEC §8). A rejected update
//! leaves the last accepted version in force; a resource never accepted has nothing in force.
//!
//! Generic over kinds: a kind's facts are [`crate::facts::Config`]s and [`Fact::checked`] gives their
//! object-level problems. ServiceEntry, DestinationRule and VirtualService are also judged against each
//! other and the Services (`meshd_api::validate::verdicts::judge`, the checks `meshd validate` runs);
//! every other kind with a verdict is in force when it is valid on its own, unless [`extra_checks`]
//! says otherwise for it.

use std::collections::BTreeMap;
use std::sync::Arc;

use meshd_api::status::{Verdict, VerdictKey, reason};
use meshd_api::validate::FieldError;
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
}

/// The hosts whose routes and clusters may differ after a judgement.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    /// A wildcard host or a ServiceEntry moved: every host may differ.
    pub all: bool,
    pub hosts: std::collections::BTreeSet<String>,
}

/// Resources by host: exact hosts in a map, wildcards (`*.example.com`) in a list.
#[derive(Debug, Default)]
struct HostIndex {
    exact: std::collections::HashMap<String, Vec<ObjectKey>>,
    wildcard: Vec<(String, ObjectKey)>,
}

fn vkey(kind: FactKind, key: &ObjectKey) -> VerdictKey {
    VerdictKey::new(kind.name(), &key.namespace, &key.name)
}

/// Cross-resource checks of a kind judged on its own (not ServiceEntry, DestinationRule or
/// VirtualService, which [`judge`] checks together): problems of `fact` given what is in force. A kind
/// that needs them adds its arm here (the mTLS kinds, a Gateway's credentials).
/// None so far: a Gateway's `credentialName` Secrets are not facts yet (issue 11).
fn extra_checks(kind: FactKind, fact: &Fact, configs: &Configs) -> Vec<FieldError> {
    let _ = (kind, fact, configs);
    Vec::new()
}

/// The kinds [`judge`] checks against each other.
fn cross_checked(kind: FactKind) -> bool {
    matches!(
        kind,
        FactKind::ServiceEntry | FactKind::DestinationRule | FactKind::VirtualService
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
        let (Some(index), Some(table)) = (self.hosts.get(&kind), self.tables.get(&kind)) else {
            return Vec::new();
        };
        let mut keys: Vec<&ObjectKey> = index.exact.get(fqdn).into_iter().flatten().collect();
        keys.extend(
            index
                .wildcard
                .iter()
                .filter(|(pattern, _)| meshd_api::validate::references::host_matches(pattern, fqdn))
                .map(|(_, k)| k),
        );
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter_map(|k| table.get_key_value(k))
            .filter_map(|(k, t)| t.in_force.as_ref().map(|f| (k, f)))
            .collect()
    }

    /// The versions in force of one kind whose (resolved) host is `fqdn` itself: a DestinationRule
    /// for exactly that host, not one for a wildcard that matches it. Found in the index, without
    /// resolving every candidate's host again.
    pub fn for_host(&self, kind: FactKind, fqdn: &str) -> Vec<(&ObjectKey, &Fact)> {
        let (Some(index), Some(table)) = (self.hosts.get(&kind), self.tables.get(&kind)) else {
            return Vec::new();
        };
        let mut keys: Vec<&ObjectKey> = index.exact.get(fqdn).into_iter().flatten().collect();
        keys.extend(
            index
                .wildcard
                .iter()
                .filter(|(pattern, _)| pattern == fqdn)
                .map(|(_, k)| k),
        );
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter_map(|k| table.get_key_value(k))
            .filter_map(|(k, t)| t.in_force.as_ref().map(|f| (k, f)))
            .collect()
    }

    /// The hosts of the versions that moved in or out of force since the last call.
    pub fn take_touched(&mut self, domain: &str) -> Touched {
        use meshd_api::validate::references::resolve_host;
        let mut t = Touched::default();
        for (key, fact) in std::mem::take(&mut self.moved) {
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
                    vs.add(resolve_host(h, &key.namespace, domain), key);
                }
            }
        }
        for (key, fact) in self.in_force(FactKind::DestinationRule) {
            if let Fact::DestinationRule(c) = fact {
                dr.add(resolve_host(&c.spec.host, &key.namespace, domain), key);
            }
        }
        self.hosts.insert(FactKind::VirtualService, vs);
        self.hosts.insert(FactKind::DestinationRule, dr);
    }

    /// Judges every resource again; whether any version in force changed.
    pub fn judge(&mut self, domain: &str, services: &dyn ServiceHosts) -> bool {
        let empty = Table::new();
        let table = |k| self.tables.get(&k).unwrap_or(&empty);
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
        let judgement = judge(domain, services, &ses, &drs, &vss);
        let mut changed = self.apply(FactKind::ServiceEntry, judgement.service_entries);
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

    /// A kind judged on its own: in force when valid and [`extra_checks`] find nothing.
    fn judge_alone(&self, kind: FactKind) -> Vec<Judged> {
        let Some(table) = self.tables.get(&kind) else {
            return Vec::new();
        };
        let check = |fact: &Fact| -> Option<(&'static str, Vec<FieldError>)> {
            let problems = fact.checked().map(|c| c.problems).unwrap_or_default();
            if !problems.is_empty() {
                return Some((reason::INVALID, problems.to_vec()));
            }
            let extra = extra_checks(kind, fact, self);
            (!extra.is_empty()).then_some((reason::DANGLING_REFERENCE, extra))
        };
        table
            .values()
            .map(|t| match check(&t.latest) {
                None => Judged {
                    in_force: InForce::Latest,
                    rejected: None,
                },
                Some(rejected) => Judged {
                    in_force: match &t.in_force {
                        Some(prev) if !prev.same(&t.latest) && check(prev).is_none() => {
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
    fn add(&mut self, host: String, key: &ObjectKey) {
        if host.starts_with('*') {
            self.wildcard.push((host, key.clone()));
        } else {
            self.exact.entry(host).or_default().push(key.clone());
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
