//! DestinationRule subsets as their own EDS clusters (`outbound|<port>|<subset>|<fqdn>`), each with
//! the endpoints whose pod carries the subset's labels (SPEC §8: the Pod `targetRef` names, else the
//! Pod whose IP the endpoint has).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use meshd_api::validate::references::resolve_host;

use crate::configs::Configs;
use crate::facts::{EndpointSlice, Fact, FactKind, ObjectKey, Workload};

/// The subsets accepted DestinationRules define for `fqdn` (rules of one host merge): name → labels.
pub(crate) fn subsets_for(
    configs: &Configs,
    fqdn: &str,
    domain: &str,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (key, fact) in configs.naming(FactKind::DestinationRule, fqdn) {
        let Fact::DestinationRule(c) = fact else {
            continue;
        };
        if resolve_host(&c.spec.host, &key.namespace, domain) != fqdn {
            continue;
        }
        for s in &c.spec.subsets {
            out.entry(s.name.clone())
                .or_insert_with(|| s.labels.clone());
        }
    }
    out
}

/// `outbound|<port>|<subset>|<fqdn>`.
pub(crate) fn subset_cluster_name(port: u16, subset: &str, fqdn: &str) -> String {
    format!("outbound|{port}|{subset}|{fqdn}")
}

/// The Pods an endpoint's subset labels are read from: by key, and by IP (every namespace).
pub(crate) struct Pods<'a> {
    pub workloads: &'a imbl::OrdMap<ObjectKey, Arc<Workload>>,
    pub by_ip: &'a BTreeMap<String, BTreeSet<ObjectKey>>,
}

impl Pods<'_> {
    /// The pod an endpoint address belongs to: by `targetRef`, else the first (by name) in the
    /// namespace with that IP.
    fn pod_of(&self, namespace: &str, pod: Option<&str>, address: &str) -> Option<&Workload> {
        let key = match pod {
            Some(name) => ObjectKey::new(namespace, name),
            None => self
                .by_ip
                .get(address)?
                .iter()
                .find(|k| k.namespace == namespace)?
                .clone(),
        };
        self.workloads.get(&key).map(|w| &**w)
    }
}

/// `slice` with only the addresses whose pod has every label of `labels`.
pub(crate) fn filter_slice(
    slice: &EndpointSlice,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    pods: &Pods<'_>,
) -> EndpointSlice {
    let mut out = slice.clone();
    for ep in &mut out.endpoints {
        ep.addresses.retain(|address| {
            pods.pod_of(namespace, ep.pod.as_deref(), address)
                .is_some_and(|w| labels.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
        });
    }
    out.endpoints.retain(|ep| !ep.addresses.is_empty());
    out
}
