//! Proxies whose routes differ from the shared ones (SPEC §8: a VirtualService's `exportTo`, a
//! match's `sourceLabels`/`sourceNamespace`): each gets the resources of the hosts it sees
//! differently as its own, under the shared names, which they shadow
//! ([`crate::ProxyConfig::get`]). Only hosts a VirtualService with such fields names are looked at,
//! so a mesh without them costs one scan of the VirtualServices after a judgement that moved
//! something; proxies with equal views share one set of resources.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use meshd_api::validate::references::{host_matches, resolve_host};
use meshd_api::validate::verdicts::binds_mesh;

use super::{ChangeSet, CompiledService, Translator};
use crate::configs::Configs;
use crate::facts::{Fact, FactKind, ObjectKey};
use crate::gateway::is_gateway;
use crate::node::NodeId;
use crate::outbound::route_configuration;
use crate::resources::{Resource, ResourceType};
use crate::traffic::Source;
use crate::traffic::source::{View, varies};

/// One proxy's own versions of shared resources (same names, other bodies), sorted by type and name.
pub(crate) type Variant = Vec<(ResourceType, Arc<Resource>)>;

#[derive(Debug, Default)]
pub(crate) struct ProxyVariants {
    /// The (resolved) hosts of the VirtualServices in force whose routes vary by proxy; wildcards
    /// included.
    hosts: BTreeSet<String>,
    /// Each sidecar whose view differs from the shared one, by its Pod.
    pub by_proxy: imbl::OrdMap<ObjectKey, Arc<Variant>>,
}

impl ProxyVariants {
    /// Finds the hosts again, after the versions in force changed.
    pub fn find_hosts(&mut self, configs: &Configs, domain: &str) {
        self.hosts.clear();
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
    /// Every sidecar's variant from the current state; the proxies whose variant changed (or came
    /// or went) are marked in `out`.
    pub(super) fn refresh_variants(&mut self, out: &mut ChangeSet) {
        if self.variants.hosts.is_empty() && self.variants.by_proxy.is_empty() {
            return;
        }
        let varying: Vec<(&ObjectKey, &Arc<CompiledService>)> = self
            .services
            .iter()
            .filter(|(_, s)| self.variants.names(&s.fqdn))
            .collect();
        let shared: Vec<View> = varying
            .iter()
            .map(|(_, s)| View::of(&self.configs, &s.fqdn, Source::SHARED))
            .collect();
        let mut built: HashMap<Vec<(usize, View)>, Option<Arc<Variant>>> = HashMap::new();
        let mut next = imbl::OrdMap::new();
        for (pod, workload) in &self.workloads {
            if is_gateway(workload) || varying.is_empty() {
                continue;
            }
            let source = Source {
                namespace: &pod.namespace,
                labels: &workload.labels,
            };
            let differs: Vec<(usize, View)> = varying
                .iter()
                .enumerate()
                .filter_map(|(i, (_, s))| {
                    let view = View::of(&self.configs, &s.fqdn, source);
                    (view != shared[i]).then_some((i, view))
                })
                .collect();
            if differs.is_empty() {
                continue;
            }
            let variant = match built.get(&differs) {
                Some(v) => v.clone(),
                None => {
                    let services = differs.iter().map(|(i, _)| varying[*i]);
                    let v = self.variant(services, source);
                    built.insert(differs, v.clone());
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

    /// The resources of `services` as proxies of `source` see them, where they differ from the
    /// shared ones: their HTTP ports' route configurations and, when one has another port,
    /// `virtualOutbound` (its `tcp[]` chains).
    fn variant<'a>(
        &self,
        services: impl Iterator<Item = (&'a ObjectKey, &'a Arc<CompiledService>)>,
        source: Source<'_>,
    ) -> Option<Arc<Variant>> {
        let mut own: Variant = Vec::new();
        let mut tcp = false;
        for (key, service) in services {
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
