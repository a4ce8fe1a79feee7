//! Proxies whose routes or clusters differ from the shared ones (SPEC §8: a VirtualService's,
//! DestinationRule's or ServiceEntry's `exportTo`, a DestinationRule of the proxy's own namespace, a
//! match's `sourceLabels`/`sourceNamespace`): each gets the resources of the hosts it sees
//! differently as its own, under the shared names, which they shadow ([`crate::ProxyConfig::get`]),
//! and the entries and subsets only it sees. Only hosts a VirtualService with such fields names,
//! hosts with a DestinationRule that is restricted or of another namespace, and entries not exported
//! everywhere, are looked at, so a mesh without them costs one scan of the VirtualServices,
//! DestinationRules and ServiceEntries after a judgement that moved something; proxies with equal
//! views share one set of resources.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use meshd_api::validate::references::{Export, host_matches, resolve_host};
use meshd_api::validate::verdicts::binds_mesh;

use super::{ChangeSet, CompiledService, ServiceOutput, Translator};
use crate::configs::Configs;
use crate::facts::{Fact, FactKind, ObjectKey};
use crate::gateway::is_gateway;
use crate::node::NodeId;
use crate::outbound::route_configuration;
use crate::resources::{Resource, ResourceType};
use crate::traffic::service_entry::entries;
use crate::traffic::source::{View, varies};
use crate::traffic::{RuleLookup, Source, host_namespace, rule_varies, rules_for};

/// One proxy's own versions of shared resources (same names, other bodies), sorted by type and name.
pub(crate) type Variant = Vec<(ResourceType, Arc<Resource>)>;

#[derive(Debug, Default)]
pub(crate) struct ProxyVariants {
    /// The (resolved) hosts of the VirtualServices in force whose routes vary by proxy; wildcards
    /// included.
    hosts: BTreeSet<String>,
    /// A ServiceEntry in force is not exported everywhere: proxies' views of the entries may differ.
    restricted_entries: bool,
    /// The hosts with a DestinationRule in force that is restricted or of another namespace than
    /// the host's and the root one: proxies may see other rules for them than the shared view.
    rule_hosts: BTreeSet<String>,
    /// Each sidecar whose view differs from the shared one, by its Pod.
    pub by_proxy: imbl::OrdMap<ObjectKey, Arc<Variant>>,
}

impl ProxyVariants {
    /// Finds the hosts again, after the versions in force changed.
    pub fn find_hosts(&mut self, configs: &Configs, domain: &str) {
        self.hosts.clear();
        self.rule_hosts.clear();
        self.restricted_entries = entries(configs)
            .iter()
            .any(|(_, c)| !c.spec.export_to.is_empty() && !Export::of(&c.spec.export_to).public);
        for (key, fact) in configs.in_force(FactKind::DestinationRule) {
            let Fact::DestinationRule(c) = fact else {
                continue;
            };
            let host = resolve_host(&c.spec.host, &key.namespace, domain);
            if rule_varies(
                &c.spec,
                &key.namespace,
                host_namespace(configs, &host, domain),
            ) {
                self.rule_hosts.insert(host);
            }
        }
        for (key, fact) in configs.in_force(FactKind::VirtualService) {
            let Fact::VirtualService(c) = fact else {
                continue;
            };
            if binds_mesh(&c.spec) && varies(&c.spec) {
                self.hosts.extend(
                    c.spec
                        .hosts
                        .iter()
                        .map(|h| resolve_host(h, &key.namespace, domain)),
                );
            }
        }
    }

    /// Whether some host's DestinationRules may differ between proxies.
    pub fn has_rule_hosts(&self) -> bool {
        !self.rule_hosts.is_empty()
    }

    fn names(&self, fqdn: &str) -> bool {
        self.hosts.contains(fqdn)
            || self
                .hosts
                .iter()
                .any(|h| h.starts_with('*') && host_matches(h, fqdn))
    }
}

fn same(a: &Variant, b: &Variant) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && x.1.same(&y.1))
}

impl Translator {
    /// The namespace whose DestinationRules proxies of `source` see for `fqdn` (of
    /// `service_namespace`), for a host whose rules may differ between proxies.
    fn rules_seen<'a>(
        &'a self,
        fqdn: &str,
        service_namespace: &str,
        source: Source<'_>,
    ) -> Option<&'a str> {
        if !self.variants.rule_hosts.contains(fqdn) {
            return None;
        }
        let lookup = RuleLookup {
            service_namespace,
            proxy_namespace: source.namespace,
        };
        rules_for(&self.configs, fqdn, lookup).0
    }

    /// Every sidecar's variant from the current state; the proxies whose variant changed (or came
    /// or went) are marked in `out`.
    pub(super) fn refresh_variants(&mut self, out: &mut ChangeSet) {
        let v = &self.variants;
        if v.hosts.is_empty()
            && v.rule_hosts.is_empty()
            && !v.restricted_entries
            && v.by_proxy.is_empty()
        {
            return;
        }
        let varying: Vec<(&ObjectKey, &Arc<CompiledService>)> = self
            .services
            .iter()
            .filter(|(_, s)| {
                self.variants.names(&s.fqdn) || self.variants.rule_hosts.contains(&s.fqdn)
            })
            .collect();
        // What decides a proxy's resources of one varying Service: its view of the routes, and whose
        // DestinationRules it sees.
        let service_view = |(key, s): &(&ObjectKey, &Arc<CompiledService>), source: Source<'_>| {
            (
                View::of(&self.configs, &s.fqdn, source),
                self.rules_seen(&s.fqdn, &key.namespace, source),
            )
        };
        let shared: Vec<(View, Option<&str>)> = varying
            .iter()
            .map(|s| service_view(s, Source::SHARED))
            .collect();
        let entries = entries(&self.configs);
        // The entry hosts a varying VirtualService names.
        let entry_hosts: BTreeSet<&str> = entries
            .iter()
            .flat_map(|(_, c)| &c.spec.hosts)
            .map(String::as_str)
            .filter(|h| self.variants.names(h))
            .collect();
        // The entry hosts whose DestinationRules may differ, with their entries' namespaces.
        let entry_rule_hosts: BTreeSet<(&str, &str)> = entries
            .iter()
            .flat_map(|(key, c)| {
                c.spec
                    .hosts
                    .iter()
                    .map(|h| (h.as_str(), key.namespace.as_str()))
            })
            .filter(|(h, _)| self.variants.rule_hosts.contains(*h))
            .collect();
        let entries_vary = self.variants.restricted_entries
            || !entry_hosts.is_empty()
            || !entry_rule_hosts.is_empty();
        // What decides a proxy's view of the entries: the restricted ones exported to it, its views
        // of the entry hosts that varying VirtualServices name, and whose rules it sees for them.
        type EntryView<'k> = (Vec<&'k ObjectKey>, Vec<View>, Vec<Option<&'k str>>);
        let entry_view = |source: Source<'_>| -> Option<EntryView<'_>> {
            entries_vary.then(|| {
                let visible = entries
                    .iter()
                    .filter(|(key, c)| {
                        !c.spec.export_to.is_empty()
                            && Export::of(&c.spec.export_to)
                                .visible_to(&key.namespace, source.namespace)
                    })
                    .map(|(key, _)| *key)
                    .collect();
                let views = entry_hosts
                    .iter()
                    .map(|h| View::of(&self.configs, h, source))
                    .collect();
                let rules = entry_rule_hosts
                    .iter()
                    .map(|(h, ns)| self.rules_seen(h, ns, source))
                    .collect();
                (visible, views, rules)
            })
        };
        let shared_entries = entry_view(Source::SHARED);
        type Key<'k> = (Vec<(usize, (View, Option<&'k str>))>, Option<EntryView<'k>>);
        let mut built: HashMap<Key<'_>, Option<Arc<Variant>>> = HashMap::new();
        let mut next = imbl::OrdMap::new();
        for (pod, workload) in &self.workloads {
            // Gateway proxies see the shared view (docs/design.md "Per-proxy views").
            if is_gateway(workload) {
                continue;
            }
            let source = Source {
                namespace: &pod.namespace,
                labels: &workload.labels,
            };
            let differs: Vec<(usize, (View, Option<&str>))> = varying
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let view = service_view(s, source);
                    (view != shared[i]).then_some((i, view))
                })
                .collect();
            let own_entries = entry_view(source).filter(|e| Some(e) != shared_entries.as_ref());
            if differs.is_empty() && own_entries.is_none() {
                continue;
            }
            let key = (differs, own_entries);
            let variant = match built.get(&key) {
                Some(v) => v.clone(),
                None => {
                    // The Services whose rules differ: their clusters too.
                    let rules: BTreeSet<usize> = key
                        .0
                        .iter()
                        .filter(|(i, (_, rules))| *rules != shared[*i].1)
                        .map(|(i, _)| *i)
                        .collect();
                    let services = key.0.iter().map(|(i, _)| (varying[*i], rules.contains(i)));
                    let rule_services = rules.iter().map(|i| varying[*i]);
                    let v = self.variant(services, rule_services, key.1.is_some(), source);
                    built.insert(key, v.clone());
                    v
                }
            };
            if let Some(v) = variant {
                next.insert(pod.clone(), v);
            }
        }
        let old = std::mem::replace(&mut self.variants.by_proxy, next);
        let new = &self.variants.by_proxy;
        let keys: BTreeSet<&ObjectKey> = old.keys().chain(new.keys()).collect();
        for key in keys {
            let changed = match (old.get(key), new.get(key)) {
                (Some(a), Some(b)) => !Arc::ptr_eq(a, b) && !same(a, b),
                _ => true,
            };
            if changed {
                out.proxies.insert(NodeId {
                    pod: key.name.clone(),
                    namespace: key.namespace.clone(),
                });
            }
        }
    }

    /// The resources of `services` (and with `entries`, of the ServiceEntries) as proxies of `source`
    /// see them, where they differ from the shared ones: their HTTP ports' route configurations and,
    /// when one has another port, `virtualOutbound` (its `tcp[]` chains, their idle timeouts); for
    /// a Service whose DestinationRules differ (`true`), its clusters, load assignments and subsets,
    /// and the routes of the hosts whose VirtualServices route to it (their hash policies); the
    /// entries' clusters, assignments, routes and chains.
    fn variant<'a>(
        &self,
        services: impl Iterator<Item = ((&'a ObjectKey, &'a Arc<CompiledService>), bool)>,
        rule_services: impl Iterator<Item = (&'a ObjectKey, &'a Arc<CompiledService>)>,
        mut entries: bool,
        source: Source<'_>,
    ) -> Option<Arc<Variant>> {
        let mut own: Variant = Vec::new();
        let mut routed: BTreeMap<&ObjectKey, &Arc<CompiledService>> = BTreeMap::new();
        let mut moved = BTreeSet::new();
        for ((key, service), rules) in services {
            routed.insert(key, service);
            if rules {
                let mut output = ServiceOutput {
                    key: key.clone(),
                    resources: Vec::new(),
                    subsets: Vec::new(),
                };
                self.compile_clusters(key, service, source, &mut output);
                own.extend(output.resources);
            }
        }
        moved.extend(rule_services.map(|(_, s)| s.fqdn.clone()));
        if !moved.is_empty() {
            let domain = &self.settings.cluster_domain;
            let routing = crate::traffic::routing_to(&self.configs, &moved, domain);
            let entry_hosts = || entries_named(&self.configs);
            entries |= routing.all || entry_hosts().iter().any(|h| routing.hosts.contains(*h));
            routed.extend(
                self.services
                    .iter()
                    .filter(|(_, s)| routing.all || routing.hosts.contains(&s.fqdn)),
            );
        }
        let mut tcp = entries;
        if entries {
            own.extend(self.entry_resources_for(source, |_| {}));
        }
        for (key, service) in routed {
            for view in service.views(key) {
                if view.vips.is_empty() {
                    continue;
                }
                if !view.port.protocol.is_http() {
                    tcp = true;
                    continue;
                }
                let route = route_configuration(&view, self.vs_routes(&view, source));
                own.push((
                    ResourceType::Route,
                    Resource::new(route.name.clone(), &route),
                ));
            }
        }
        if tcp {
            let listener = self.outbound_listener(source, &mut Vec::new());
            own.push((
                ResourceType::Listener,
                Resource::new(listener.name.clone(), &listener),
            ));
        }
        own.retain(|(ty, r)| self.shared.get(*ty, &r.name).is_none_or(|s| !s.same(r)));
        own.sort_by(|a, b| (a.0.index(), &a.1.name).cmp(&(b.0.index(), &b.1.name)));
        (!own.is_empty()).then(|| Arc::new(own))
    }
}

/// The hosts of the ServiceEntries in force.
fn entries_named(configs: &Configs) -> Vec<&str> {
    entries(configs)
        .into_iter()
        .flat_map(|(_, c)| c.spec.hosts.iter().map(String::as_str))
        .collect()
}
