//! The indexes of Pods and EndpointSlices: a Service's slices, the slices that name a Pod (by
//! `targetRef` or address), the Pods of an address. They are the translator's own fields, borrowed
//! together as a [`PodIndex`] apart from the rest, so that a large batch's Pods and slices are
//! indexed on one core while its traffic and security resources are judged on another
//! (`Translator::apply`): nothing here reads the judged resources, and the judgement reads no Pod
//! or slice (gateway Pods reach it through `configs.edge`, set before).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::security::Touched;
use super::{ChangeSet, CompiledService, Translator};
use crate::facts::{EndpointSlice, ObjectKey, Workload};
use crate::node::NodeId;

/// What an endpoint names: the Pod of its `targetRef`, and its addresses (the Pod with that IP when
/// there is no `targetRef`, or it names no known Pod).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum EndpointRef {
    Pod(ObjectKey),
    Ip(String),
}

/// An [`EndpointRef`] borrowed from its slice (the namespace is the slice's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum NamedBy<'a> {
    Pod(&'a str),
    Ip(&'a str),
}

impl NamedBy<'_> {
    fn owned(self, namespace: &str) -> EndpointRef {
        match self {
            Self::Pod(name) => EndpointRef::Pod(ObjectKey::new(namespace, name)),
            Self::Ip(ip) => EndpointRef::Ip(ip.to_string()),
        }
    }
}

/// What a slice's endpoints name, sorted and without repeats.
fn named_by(slice: Option<&EndpointSlice>) -> Vec<NamedBy<'_>> {
    let mut refs: Vec<NamedBy<'_>> = Vec::new();
    for ep in slice.iter().flat_map(|s| &s.endpoints) {
        refs.extend(ep.pod.as_deref().map(NamedBy::Pod));
        refs.extend(ep.addresses.iter().map(|a| NamedBy::Ip(a)));
    }
    refs.sort_unstable();
    refs.dedup();
    refs
}

/// The indexes, borrowed from the [`Translator`] (the fields keep their names).
pub(super) struct PodIndex<'a> {
    pub(super) slices: &'a mut BTreeMap<ObjectKey, Arc<EndpointSlice>>,
    pub(super) slices_of: &'a mut BTreeMap<ObjectKey, BTreeSet<String>>,
    pub(super) refs: &'a mut foldhash::HashMap<EndpointRef, Vec<Arc<ObjectKey>>>,
    pub(super) workloads: &'a mut imbl::OrdMap<ObjectKey, Arc<Workload>>,
    pub(super) ip_pods: &'a mut foldhash::HashMap<String, BTreeSet<ObjectKey>>,
    /// Read only: when everything is touched, every Service's endpoints are.
    pub(super) services: &'a imbl::OrdMap<ObjectKey, Arc<CompiledService>>,
}

impl Translator {
    pub(super) fn pod_index(&mut self) -> PodIndex<'_> {
        self.split_for_judgement().1
    }
}

impl PodIndex<'_> {
    pub(super) fn set_slice(
        &mut self,
        key: ObjectKey,
        new: Option<Arc<EndpointSlice>>,
        endpoints_of: &mut BTreeSet<ObjectKey>,
    ) {
        let old = match &new {
            Some(s) => self.slices.insert(key.clone(), Arc::clone(s)),
            None => self.slices.remove(&key),
        };
        self.set_refs(&key, old.as_deref(), new.as_deref());
        if let Some(old) = old {
            let service = ObjectKey::new(key.namespace.clone(), old.service.clone());
            if let Some(names) = self.slices_of.get_mut(&service) {
                names.remove(&key.name);
                if names.is_empty() {
                    self.slices_of.remove(&service);
                }
            }
            endpoints_of.insert(service);
        }
        if let Some(new) = new {
            let service = ObjectKey::new(key.namespace.clone(), new.service.clone());
            self.slices_of
                .entry(service.clone())
                .or_default()
                .insert(key.name);
            endpoints_of.insert(service);
        }
    }

    pub(super) fn set_workload(
        &mut self,
        key: ObjectKey,
        new: Option<Arc<Workload>>,
        touched: &mut Touched,
    ) {
        let old = match &new {
            Some(w) => self.workloads.insert(key.clone(), Arc::clone(w)),
            None => self.workloads.remove(&key),
        };
        if same_for_endpoints(old.as_deref(), new.as_deref()) {
            return;
        }
        let mut ips: Vec<String> = Vec::new();
        for w in old.iter().chain(&new) {
            ips.extend(w.ips.iter().cloned());
        }
        for ip in old.iter().flat_map(|w| &w.ips) {
            if let Some(pods) = self.ip_pods.get_mut(ip) {
                pods.remove(&key);
                if pods.is_empty() {
                    self.ip_pods.remove(ip);
                }
            }
        }
        for ip in new.iter().flat_map(|w| &w.ips) {
            self.ip_pods
                .entry(ip.clone())
                .or_default()
                .insert(key.clone());
        }
        touched.pods.push((key, ips));
    }

    /// Keeps [`Translator::refs`] in step with one slice's endpoints: only the references that came
    /// or went are touched, and the slice's key is allocated once for all of them (a first
    /// translation indexes every endpoint of the mesh here).
    pub(super) fn set_refs(
        &mut self,
        key: &ObjectKey,
        old: Option<&EndpointSlice>,
        new: Option<&EndpointSlice>,
    ) {
        let (old, new) = (named_by(old), named_by(new));
        for r in old.iter().filter(|r| new.binary_search(r).is_err()) {
            let r = r.owned(&key.namespace);
            if let Some(slices) = self.refs.get_mut(&r) {
                slices.retain(|s| **s != *key);
                if slices.is_empty() {
                    self.refs.remove(&r);
                }
            }
        }
        let mut shared: Option<Arc<ObjectKey>> = None;
        for r in new.iter().filter(|r| old.binary_search(r).is_err()) {
            let slice = shared.get_or_insert_with(|| Arc::new(key.clone()));
            self.refs
                .entry(r.owned(&key.namespace))
                .or_default()
                .push(Arc::clone(slice));
        }
    }

    /// The Services whose endpoints name this pod (by name or by one of `ips`).
    fn services_naming(&self, pod: &ObjectKey, ips: &[String], into: &mut BTreeSet<ObjectKey>) {
        let refs = std::iter::once(EndpointRef::Pod(pod.clone()))
            .chain(ips.iter().cloned().map(EndpointRef::Ip));
        for r in refs {
            for slice in self.refs.get(&r).into_iter().flatten() {
                if let Some(s) = self.slices.get(&**slice) {
                    into.insert(ObjectKey::new(slice.namespace.clone(), s.service.clone()));
                }
            }
        }
    }

    /// Marks what `touched` reaches: Services to recompile (into `endpoints_of`) and proxies.
    pub(super) fn apply_touched(
        &mut self,
        touched: Touched,
        endpoints_of: &mut BTreeSet<ObjectKey>,
        out: &mut ChangeSet,
    ) {
        if touched.everything {
            endpoints_of.extend(self.services.keys().cloned());
            out.all_proxies = true;
            return;
        }
        out.all_proxies |= touched.all_proxies;
        for (pod, ips) in &touched.pods {
            self.services_naming(pod, ips, endpoints_of);
        }
        for ns in touched.peer_namespaces.iter() {
            for (key, w) in self
                .workloads
                .range(ObjectKey::new(ns.clone(), String::new())..)
                .take_while(|(k, _)| &k.namespace == ns)
            {
                self.services_naming(key, &w.ips, endpoints_of);
            }
        }
        for ns in touched
            .peer_namespaces
            .iter()
            .chain(&touched.authz_namespaces)
        {
            for (key, _) in self
                .workloads
                .range(ObjectKey::new(ns.clone(), String::new())..)
                .take_while(|(k, _)| &k.namespace == ns)
            {
                out.proxies.insert(NodeId {
                    pod: key.name.clone(),
                    namespace: key.namespace.clone(),
                });
            }
        }
    }
}

/// Whether two versions of a Pod look the same to the endpoints naming it (container ports, say, do
/// not matter to them).
fn same_for_endpoints(a: Option<&Workload>, b: Option<&Workload>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            a.ips == b.ips
                && a.labels == b.labels
                && a.service_account == b.service_account
                && a.mesh == b.mesh
        }
        (None, None) => true,
        _ => false,
    }
}
