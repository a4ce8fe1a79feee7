//! DestinationRule subsets as their own EDS clusters (`outbound|<port>|<subset>|<fqdn>`), each with
//! the endpoints whose pod carries the subset's labels (SPEC §8: the Pod `targetRef` names, else the
//! Pod whose IP the endpoint has).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::facts::{Endpoint, EndpointSlice, ObjectKey, Workload};
use meshd_api::networking::DestinationRuleSpec;

/// The subsets one host's rules (oldest first) define: name → labels, the first of a name wins.
pub(crate) fn subsets_of<'a>(
    rules: &[&'a DestinationRuleSpec],
) -> BTreeMap<&'a str, &'a BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for s in rules.iter().flat_map(|r| &r.subsets) {
        out.entry(s.name.as_str()).or_insert(&s.labels);
    }
    out
}

/// `outbound|<port>|<subset>|<fqdn>`.
pub(crate) fn subset_cluster_name(port: u16, subset: &str, fqdn: &str) -> String {
    meshd_api::text::concat(&[
        "outbound|",
        meshd_api::text::Digits::new(port).as_str(),
        "|",
        subset,
        "|",
        fqdn,
    ])
}

/// The Pods an endpoint's subset labels are read from: by key, and by IP (every namespace).
pub(crate) struct Pods<'a> {
    pub workloads: &'a imbl::OrdMap<ObjectKey, Arc<Workload>>,
    pub by_ip: &'a foldhash::HashMap<String, BTreeSet<ObjectKey>>,
}

impl<'a> Pods<'a> {
    /// The pod an endpoint address belongs to: by `targetRef`, else the first (by name) in the
    /// namespace with that IP.
    fn pod_of(&self, namespace: &str, pod: Option<&str>, address: &str) -> Option<&'a Workload> {
        let found = match pod {
            Some(name) => self.workloads.get(&ObjectKey::new(namespace, name)),
            None => self
                .by_ip
                .get(address)?
                .iter()
                .find(|k| k.namespace == namespace)
                .and_then(|k| self.workloads.get(k)),
        };
        found.map(|w| &**w)
    }
}

/// A Service's endpoint slices with the pod of each address, looked up once for all its subsets.
pub(crate) struct EndpointPods<'a> {
    slices: Vec<(&'a EndpointSlice, Vec<Vec<Option<&'a Workload>>>)>,
}

impl<'a> EndpointPods<'a> {
    pub(crate) fn new(
        slices: impl Iterator<Item = &'a EndpointSlice>,
        namespace: &str,
        pods: &Pods<'a>,
    ) -> Self {
        let slices = slices
            .map(|slice| {
                let of_endpoints = slice
                    .endpoints
                    .iter()
                    .map(|ep| {
                        ep.addresses
                            .iter()
                            .map(|a| pods.pod_of(namespace, ep.pod.as_deref(), a))
                            .collect()
                    })
                    .collect();
                (slice, of_endpoints)
            })
            .collect();
        Self { slices }
    }

    /// The slices with only the addresses whose pod has every label of `labels` (and only the
    /// endpoints left with an address).
    pub(crate) fn select(&self, labels: &BTreeMap<String, String>) -> Vec<EndpointSlice> {
        let matches = |w: &Option<&Workload>| {
            w.is_some_and(|w| labels.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
        };
        self.slices
            .iter()
            .map(|(slice, pods)| EndpointSlice {
                service: slice.service.clone(),
                ports: slice.ports.clone(),
                endpoints: slice
                    .endpoints
                    .iter()
                    .zip(pods)
                    .filter(|(_, pods)| pods.iter().any(matches))
                    .map(|(ep, pods)| Endpoint {
                        addresses: ep
                            .addresses
                            .iter()
                            .zip(pods)
                            .filter(|(_, pod)| matches(pod))
                            .map(|(a, _)| a.clone())
                            .collect(),
                        ready: ep.ready,
                        serving: ep.serving,
                        terminating: ep.terminating,
                        pod: ep.pod.clone(),
                    })
                    .collect(),
            })
            .collect()
    }
}
