//! DestinationRule subsets as their own EDS clusters (`outbound|<port>|<subset>|<fqdn>`), each with
//! the endpoints whose pod carries the subset's labels (SPEC §8: the Pod `targetRef` names, else the
//! Pod whose IP the endpoint has).

use std::collections::BTreeMap;
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

/// The pod an endpoint address belongs to: by `targetRef`, else by IP in the namespace.
fn pod_of<'a>(
    namespace: &str,
    pod: Option<&str>,
    address: &str,
    workloads: &'a imbl::OrdMap<ObjectKey, Arc<Workload>>,
) -> Option<&'a Workload> {
    if let Some(name) = pod {
        return workloads
            .get(&ObjectKey::new(namespace, name))
            .map(|w| &**w);
    }
    let from = ObjectKey::new(namespace, String::new());
    workloads
        .range(from..)
        .take_while(|(k, _)| k.namespace == namespace)
        .find(|(_, w)| w.ips.iter().any(|ip| ip == address))
        .map(|(_, w)| &**w)
}

/// `slice` with only the addresses whose pod has every label of `labels`.
pub(crate) fn filter_slice(
    slice: &EndpointSlice,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    workloads: &imbl::OrdMap<ObjectKey, Arc<Workload>>,
) -> EndpointSlice {
    let mut out = slice.clone();
    for ep in &mut out.endpoints {
        ep.addresses.retain(|address| {
            pod_of(namespace, ep.pod.as_deref(), address, workloads)
                .is_some_and(|w| labels.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
        });
    }
    out.endpoints.retain(|ep| !ep.addresses.is_empty());
    out
}
