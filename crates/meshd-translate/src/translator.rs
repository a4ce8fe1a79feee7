//! Incremental translation: facts in, compiled resources out, recompiling only what a change touches.
//!
//! What depends on what:
//! - a Service's clusters and routes: that Service's fact (and the cluster domain);
//! - a Service port's ClusterLoadAssignment: the Service's ports and the EndpointSlices naming it;
//! - `virtualOutbound`: every Service's VIPs, ports and protocols, and the Mesh's outbound policy;
//! - a proxy's own part (`virtualInbound`, `inbound|<port>||`): its Workload and the Services of its
//!   namespace that select it ([`CompiledMesh::proxy_config`], computed by each stream when needed).
//!
//! Compiling the same facts gives the same bytes whatever the order or the history of changes (see
//! the `incremental` tests): every resource is built from the current facts alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use meshd_api::MeshSpec;
use meshd_api::validate::gateway_credentials::SecretFacts;

use crate::authz::AuthzPolicies;
use crate::configs::Configs;
use crate::credentials::Credentials;
use crate::facts::{EndpointSlice, Fact, FactChange, FactKind, ObjectKey, Service, Workload};
use crate::gateway::{GatewayInputs, is_gateway};
use crate::inbound::selects;
use crate::naming::{outbound_cluster_name, route_name, service_fqdn};
use crate::node::NodeId;
use crate::outbound::{
    PortView, load_assignment, outbound_cluster, route_configuration, special_clusters,
    virtual_outbound,
};
use crate::peer::PeerPolicies;
use crate::proxy::CompiledMesh;
use crate::resources::{RenamedClusters, Resource, ResourceSet, ResourceType};
use crate::traffic::Source;
use crate::traffic::subsets::{EndpointPods, Pods, subset_cluster_name, subsets_of};

mod entries;
mod parallel;
mod pod_index;
mod security;
mod variants;

pub(crate) use variants::Variant;

use pod_index::EndpointRef;
use security::Touched;

/// Which Mesh applies, and the cluster's DNS domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranslateSettings {
    pub mesh_name: String,
    /// `cluster.local` unless `--cluster-domain` says otherwise.
    pub cluster_domain: String,
}

impl Default for TranslateSettings {
    fn default() -> Self {
        Self {
            mesh_name: meshd_api::names::DEFAULT_MESH.to_string(),
            cluster_domain: meshd_api::names::DEFAULT_CLUSTER_DOMAIN.to_string(),
        }
    }
}

/// A Service as compiled: its fact and the names of the shared resources it produced.
#[derive(Debug)]
pub(crate) struct CompiledService {
    pub fact: Arc<Service>,
    pub fqdn: String,
    /// One per port, in port order.
    pub clusters: Vec<String>,
    pub routes: Vec<String>,
}

impl CompiledService {
    pub fn views<'a>(&'a self, key: &'a ObjectKey) -> impl Iterator<Item = PortView<'a>> {
        self.fact
            .ports
            .iter()
            .zip(&self.clusters)
            .map(move |(port, cluster)| PortView {
                service: key,
                fqdn: &self.fqdn,
                vips: &self.fact.vips,
                port,
                cluster,
            })
    }
}

/// Whether a Service is compiled whole, or only what its endpoints feed (clusters, load assignments,
/// subsets): a Pod or an EndpointSlice changed, not the Service or what routes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Whole {
    Yes,
    Endpoints,
}

/// One Service's compiled resources, in the order they are put, and its subset clusters' names.
struct ServiceOutput {
    key: ObjectKey,
    resources: Vec<(ResourceType, Arc<Resource>)>,
    subsets: Vec<String>,
}

/// Where compiled Services are put (the translator's own, taken out while its Services compile).
struct Puts {
    shared: ResourceSet,
    subset_clusters: BTreeMap<ObjectKey, Vec<String>>,
}

impl Puts {
    /// Puts what [`Translator::compile_service`] produced into the shared set (only the resources
    /// whose bytes differ are marked changed, and pushed) and removes the subset clusters the Service
    /// no longer has.
    fn service(&mut self, service: ServiceOutput, out: &mut ChangeSet) {
        for (ty, resource) in service.resources {
            out.put(&mut self.shared, ty, resource);
        }
        let old = self
            .subset_clusters
            .remove(&service.key)
            .unwrap_or_default();
        for name in old.iter().filter(|n| !service.subsets.contains(n)) {
            out.remove(&mut self.shared, ResourceType::Cluster, name);
            out.remove(&mut self.shared, ResourceType::Endpoint, name);
        }
        if !service.subsets.is_empty() {
            self.subset_clusters.insert(service.key, service.subsets);
        }
    }
}

/// What one [`Translator::apply`] changed: the shared resources (by name, per type) and the proxies
/// whose own part may differ. Streams look at these names only.
#[derive(Debug, Default)]
pub struct ChangeSet {
    names: [Vec<Arc<str>>; ResourceType::COUNT],
    proxies: BTreeSet<NodeId>,
    all_proxies: bool,
}

impl ChangeSet {
    /// Shared resources of a type that were added, changed or removed.
    pub fn names(&self, ty: ResourceType) -> &[Arc<str>] {
        &self.names[ty.index()]
    }

    /// Whether this proxy's own part (its Workload, the Services selecting it) may have changed.
    pub fn affects_proxy(&self, node: &NodeId) -> bool {
        self.all_proxies || self.proxies.contains(node)
    }

    pub fn is_empty(&self) -> bool {
        !self.all_proxies && self.proxies.is_empty() && self.names.iter().all(Vec::is_empty)
    }

    fn put(&mut self, shared: &mut ResourceSet, ty: ResourceType, resource: Arc<Resource>) {
        let name = Arc::clone(&resource.name);
        if shared.put(ty, resource) {
            self.names[ty.index()].push(name);
        }
    }

    fn remove(&mut self, shared: &mut ResourceSet, ty: ResourceType, name: &str) {
        if shared.remove(ty, name) {
            self.names[ty.index()].push(name.into());
        }
    }
}

/// What the judgement of the traffic and security resources reads and writes.
struct Judgement<'a> {
    configs: &'a mut Configs,
    variants: &'a mut variants::ProxyVariants,
    services: &'a foldhash::HashMap<String, Arc<CompiledService>>,
    domain: &'a str,
}

impl Judgement<'_> {
    /// Judges every held resource again; when what is in force moved, the hosts whose resources
    /// follow it.
    fn judge(self) -> Option<crate::configs::Touched> {
        let hosts = ServiceHostsOf {
            by_host: self.services,
            domain: self.domain,
        };
        if !self.configs.judge(self.domain, &hosts) {
            return None;
        }
        self.variants.find_hosts(self.configs, self.domain);
        let mut touched = self.configs.take_touched(self.domain, self.services.len());
        // A route's hash policy is its destinations' DestinationRules': the hosts whose
        // VirtualServices route to a moved host are compiled again too.
        if !touched.all {
            let routing = crate::traffic::routing_to(self.configs, &touched.hosts, self.domain);
            touched.all |= routing.all;
            touched.hosts.extend(routing.hosts);
        }
        Some(touched)
    }
}

/// The translation's state: the facts it has been given and what it compiled from them.
#[derive(Debug)]
pub struct Translator {
    settings: TranslateSettings,
    meshes: BTreeMap<String, Arc<MeshSpec>>,
    mesh: Arc<MeshSpec>,
    slices: BTreeMap<ObjectKey, Arc<EndpointSlice>>,
    /// Service → the names of the EndpointSlices (in its namespace) that name it.
    slices_of: BTreeMap<ObjectKey, BTreeSet<String>>,
    workloads: imbl::OrdMap<ObjectKey, Arc<Workload>>,
    services: imbl::OrdMap<ObjectKey, Arc<CompiledService>>,
    /// The same Services by host: routes and verdicts look hosts up by name, thousands of times in
    /// a large mesh, without building a key for each.
    services_by_host: foldhash::HashMap<String, Arc<CompiledService>>,
    peers: PeerPolicies,
    authz: AuthzPolicies,
    /// EndpointSlices by what their endpoints name (a Pod, an address): whose load assignment and
    /// cluster a Pod's change touches (its sidecar, service account and mTLS mode decide them).
    /// (A hash map: it holds two entries per endpoint, looked up one by one, never in order.)
    refs: foldhash::HashMap<EndpointRef, Vec<Arc<ObjectKey>>>,
    /// Pods by IP, for endpoints without `targetRef` (looked up one by one, never in order).
    ip_pods: foldhash::HashMap<String, BTreeSet<ObjectKey>>,
    shared: ResourceSet,
    outbound_warnings: Vec<String>,
    configs: Configs,
    /// Each Service's subset clusters (`outbound|<port>|<subset>|<fqdn>`), to remove stale ones.
    subset_clusters: BTreeMap<ObjectKey, Vec<String>>,
    /// The ServiceEntries' clusters, assignments and routes, to remove stale ones.
    entry_resources: Vec<(ResourceType, String)>,
    /// The ports whose unknown destinations end in the `<port>` route's catch-all (`entries.rs`).
    catch_all_ports: BTreeSet<u16>,
    /// What gateway proxies' own parts are built from; when it changes, they are all marked.
    gateways: Arc<GatewayInputs>,
    /// What building the gateway proxies' configs left out, for the caller to log.
    gateway_warnings: Vec<String>,
    /// TLS credentials (`kubernetes.io/tls` Secrets), served over SDS to gateway proxies and, those
    /// a DestinationRule names, to sidecars.
    credentials: Credentials,
    /// The Secrets the DestinationRules in force name (`tls.credentialName`): each sidecar's own.
    upstream_credentials: Arc<BTreeSet<String>>,
    /// Hosts whose routes may differ between proxies, and each proxy's own view of them.
    variants: variants::ProxyVariants,
}

/// The Services' hosts, as the verdicts' checks ask for them.
struct ServiceHostsOf<'a> {
    by_host: &'a foldhash::HashMap<String, Arc<CompiledService>>,
    domain: &'a str,
}

impl ServiceHostsOf<'_> {
    /// `<name>.<namespace>.svc.<domain>`'s Service: namespace, name and what was compiled.
    fn lookup<'f>(&self, fqdn: &'f str) -> Option<(&'f str, &'f str, &Arc<CompiledService>)> {
        let (name, namespace) = crate::naming::service_of_fqdn(fqdn, self.domain)?;
        let s = self.by_host.get(fqdn)?;
        Some((namespace, name, s))
    }
}

impl meshd_api::validate::verdicts::ServiceHosts for ServiceHostsOf<'_> {
    fn service(&self, fqdn: &str) -> Option<(String, Vec<u16>)> {
        let (namespace, name, s) = self.lookup(fqdn)?;
        Some((
            format!("{namespace}/{name}"),
            s.fact.ports.iter().map(|p| p.port).collect(),
        ))
    }

    fn has(&self, fqdn: &str) -> bool {
        self.by_host.contains_key(fqdn)
    }
}

impl Translator {
    pub fn new(settings: TranslateSettings) -> Self {
        let mut shared = ResourceSet::default();
        for cluster in special_clusters() {
            shared.put(
                ResourceType::Cluster,
                Resource::new(cluster.name.clone(), &cluster),
            );
        }
        let mut translator = Self {
            settings,
            meshes: BTreeMap::new(),
            mesh: Arc::default(),
            slices: BTreeMap::new(),
            slices_of: BTreeMap::new(),
            workloads: imbl::OrdMap::new(),
            services: imbl::OrdMap::new(),
            services_by_host: foldhash::HashMap::default(),
            peers: PeerPolicies::new(),
            authz: AuthzPolicies::new(),
            refs: foldhash::HashMap::default(),
            ip_pods: foldhash::HashMap::default(),
            shared,
            outbound_warnings: Vec::new(),
            configs: Configs::default(),
            subset_clusters: BTreeMap::new(),
            entry_resources: Vec::new(),
            catch_all_ports: BTreeSet::new(),
            gateways: Arc::default(),
            gateway_warnings: Vec::new(),
            credentials: Credentials::new(),
            upstream_credentials: Arc::default(),
            variants: variants::ProxyVariants::default(),
        };
        translator.rebuild_outbound(&mut ChangeSet::default());
        translator
    }

    /// Applies changed facts and returns the compiled mesh with what changed since the last call.
    pub fn apply(&mut self, changes: Vec<FactChange>) -> (CompiledMesh, ChangeSet) {
        let mut out = ChangeSet::default();
        let mut services: BTreeMap<ObjectKey, Option<Arc<Service>>> = BTreeMap::new();
        let mut endpoints_of: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut judge = false;
        // Namespaces whose pods changed: their subsets' endpoints may differ.
        let mut pods_changed: BTreeSet<String> = BTreeSet::new();
        let mut peers_changed = false;
        // Namespaces whose credentials changed: their gateway proxies get new Secrets.
        let mut credentials_changed: BTreeSet<String> = BTreeSet::new();
        // Pods and EndpointSlices are indexed after the other facts are taken (below).
        let mut slices: Vec<(ObjectKey, Option<Arc<EndpointSlice>>)> = Vec::new();
        let mut pods: Vec<(ObjectKey, Option<Arc<Workload>>)> = Vec::new();
        for FactChange { kind, key, fact } in changes {
            match (kind, fact) {
                // Kinds with a verdict (FactKind::has_verdict): held and judged in `configs`.
                (
                    FactKind::VirtualService
                    | FactKind::DestinationRule
                    | FactKind::ServiceEntry
                    | FactKind::Gateway
                    | FactKind::PeerAuthentication
                    | FactKind::AuthorizationPolicy,
                    fact,
                ) => {
                    judge |= self.configs.set(kind, key, fact);
                }
                (FactKind::Service, Some(Fact::Service(s))) => {
                    services.insert(key, Some(s));
                }
                (FactKind::Service, _) => {
                    services.insert(key, None);
                }
                (FactKind::EndpointSlice, fact) => {
                    let new = match fact {
                        Some(Fact::EndpointSlice(s)) => Some(s),
                        _ => None,
                    };
                    slices.push((key, new));
                }
                (FactKind::Workload, fact) => {
                    let node = NodeId {
                        pod: key.name.clone(),
                        namespace: key.namespace.clone(),
                    };
                    pods_changed.insert(key.namespace.clone());
                    let new = match fact {
                        Some(Fact::Workload(w)) => Some(w),
                        _ => None,
                    };
                    // A gateway pod came, went or was relabelled: the Gateways selecting it look
                    // for their credentials in its namespace.
                    let gateway = new.as_deref().filter(|w| is_gateway(w)).map(|w| &w.labels);
                    judge |= self.configs.edge.set_gateway_pod(key.clone(), gateway);
                    pods.push((key, new));
                    out.proxies.insert(node);
                }
                (FactKind::TlsCredential, fact) => {
                    let new = match fact {
                        Some(Fact::TlsCredential(c)) => Some(c),
                        _ => None,
                    };
                    let facts = new.as_ref().map(|c| SecretFacts {
                        has_ca: c.ca.is_some(),
                    });
                    let changed = match new {
                        Some(c) => self
                            .credentials
                            .insert(key.clone(), Arc::clone(&c))
                            .is_none_or(|old| old != c),
                        None => self.credentials.remove(&key).is_some(),
                    };
                    if changed {
                        credentials_changed.insert(key.namespace.clone());
                    }
                    judge |= self.configs.edge.set_secret(key, facts);
                }
                (FactKind::Mesh, fact) => match fact {
                    Some(Fact::Mesh(m)) => {
                        self.meshes.insert(key.name, m);
                    }
                    _ => {
                        self.meshes.remove(&key.name);
                    }
                },
            }
        }
        let mesh = self
            .meshes
            .get(&self.settings.mesh_name)
            .cloned()
            .unwrap_or_default();
        let mut outbound_dirty = *mesh != *self.mesh;
        let policy_changed = mesh.outbound_traffic_policy != self.mesh.outbound_traffic_policy;
        let mut touched = Touched {
            everything: mesh.mtls.mode != self.mesh.mtls.mode
                || mesh.trust_domain != self.mesh.trust_domain,
            ..Touched::default()
        };
        self.mesh = mesh;
        // MESH_INTERNAL entries' auto mTLS follows their endpoint pods' sidecars and modes (and the
        // PeerAuthentications in force, known after the judgement below).
        let identities_moved = touched.everything || !pods_changed.is_empty();

        // Services whose selection changed, old and new, by namespace: their pods are marked once.
        let mut selecting: BTreeMap<String, Vec<Arc<Service>>> = BTreeMap::new();
        // The Services to compile whole (clusters, routes, endpoints, subsets): each once, after the
        // judgement, which may put their VirtualServices and DestinationRules in force.
        let mut compile: BTreeSet<ObjectKey> = BTreeSet::new();
        // Hosts that stay but whose port numbers changed. (A VirtualService routing to a host that came
        // or went moves in or out of force: the judgement finds those.)
        let mut ports_moved: BTreeSet<String> = BTreeSet::new();
        for (key, fact) in services {
            let ports_before = self.services.get(&key).map(|s| port_numbers(&s.fact));
            outbound_dirty |= self.set_service(&key, fact, &mut out, &mut selecting);
            let ports_after = self.services.get(&key).map(|s| port_numbers(&s.fact));
            if ports_before != ports_after {
                judge = true;
                if ports_before.is_some() && ports_after.is_some() {
                    let domain = &self.settings.cluster_domain;
                    ports_moved.insert(service_fqdn(&key.name, &key.namespace, domain));
                }
            }
            compile.insert(key);
        }

        // The judgement (with the Services known) and the Pods and slices' indexes read and write
        // apart: with many of both (a first translation), they run at once.
        let concurrently = judge && slices.len() + pods.len() >= parallel::PER_THREAD;
        let (judged, index) = self.split_for_judgement();
        let index_batch = move || {
            let mut index = index;
            for (key, new) in slices {
                index.set_slice(key, new, &mut endpoints_of);
            }
            for (key, new) in pods {
                index.set_workload(key, new, &mut touched);
            }
            index.apply_touched(touched, &mut endpoints_of, &mut out);
            (endpoints_of, out)
        };
        let judge_batch = move || judge.then(|| judged.judge());
        let (moved, (mut endpoints_of, mut out)) = if concurrently {
            parallel::join(judge_batch, index_batch)
        } else {
            (judge_batch(), index_batch())
        };
        if let Some(moved) = moved {
            if let Some(touched) = moved {
                // A VirtualService's tcp[] routes are in the outbound listener's chains.
                outbound_dirty |= self.touched_services(&touched, &mut compile);
                // PeerAuthentications in force may have moved: MESH_INTERNAL entries follow them.
                peers_changed |= self.sync_security(&mut endpoints_of, &mut out);
                outbound_dirty |= self.compile_entries(&touched, &mut out);
            }
            self.refresh_gateways(&mut out);
            self.refresh_upstream_credentials(&mut out);
        }
        if !ports_moved.is_empty() {
            // A route to a host without a port takes the host's only port.
            let domain = &self.settings.cluster_domain;
            let touched = crate::traffic::routing_to(&self.configs, &ports_moved, domain);
            if touched.all || !touched.hosts.is_empty() {
                outbound_dirty |= self.touched_services(&touched, &mut compile);
                outbound_dirty |= self.compile_entries(&touched, &mut out);
            }
        }
        // The entries' shared HTTP routes end in the policy's catch-all.
        if policy_changed || ((identities_moved || peers_changed) && self.has_internal_entries()) {
            self.compile_entries(&crate::configs::Touched::default(), &mut out);
        }
        for (namespace, services) in selecting {
            self.mark_selected(&namespace, &services, &mut out);
        }
        for namespace in credentials_changed {
            self.mark_credential_holders(&namespace, &mut out);
        }
        // Subsets select endpoints by their pods' labels: a pod change may move them.
        let with_subsets = self
            .subset_clusters
            .keys()
            .filter(|k| pods_changed.contains(&k.namespace))
            .cloned();
        let endpoints_of: BTreeSet<ObjectKey> =
            endpoints_of.into_iter().chain(with_subsets).collect();
        // A proxy's own clusters of a host (its DestinationRules differ) carry their endpoints'
        // identities, and its own subsets their endpoints.
        let own_endpoints = !endpoints_of.is_empty() && self.variants.has_rule_hosts();
        // Each Service compiles from the facts alone, so many compile at once; what they produced is
        // put into the shared set in key order, as one by one would.
        let work: Vec<(&ObjectKey, Whole)> = compile
            .iter()
            .map(|k| (k, Whole::Yes))
            .chain(
                endpoints_of
                    .difference(&compile)
                    .map(|k| (k, Whole::Endpoints)),
            )
            .collect();
        // `virtualOutbound` reads the Services and what is in force, not what they compile to: it is
        // built beside them.
        if outbound_dirty {
            self.sync_catch_all_ports(&mut out);
        }
        // Compiling reads neither the shared set nor the subset clusters: they are taken out, and
        // each Service's output is put into them, in key order, while later ones still compile.
        let mut puts = Puts {
            shared: std::mem::take(&mut self.shared),
            subset_clusters: std::mem::take(&mut self.subset_clusters),
        };
        let outbound = || outbound_dirty.then(|| self.shared_outbound());
        let mut services = || {
            parallel::for_each_in_order(
                &work,
                |(key, whole)| self.compile_service(key, *whole),
                |service| puts.service(service, &mut out),
            );
        };
        let (outbound, ()) = if outbound_dirty && work.len() >= parallel::PER_THREAD {
            parallel::join(outbound, services)
        } else {
            (outbound(), services())
        };
        self.shared = puts.shared;
        self.subset_clusters = puts.subset_clusters;
        if let Some(outbound) = outbound {
            self.put_outbound(outbound, &mut out);
        }
        if judge
            || outbound_dirty
            || own_endpoints
            || !compile.is_empty()
            || !pods_changed.is_empty()
        {
            self.refresh_variants(&mut out);
        }
        (self.compiled(), out)
    }

    /// Borrows the state the judgement reads and writes apart from the Pods and slices' indexes.
    fn split_for_judgement(&mut self) -> (Judgement<'_>, pod_index::PodIndex<'_>) {
        (
            Judgement {
                configs: &mut self.configs,
                variants: &mut self.variants,
                services: &self.services_by_host,
                domain: &self.settings.cluster_domain,
            },
            pod_index::PodIndex {
                slices: &mut self.slices,
                slices_of: &mut self.slices_of,
                refs: &mut self.refs,
                workloads: &mut self.workloads,
                ip_pods: &mut self.ip_pods,
                services: &self.services,
            },
        )
    }

    /// Takes one Service's new fact (or its removal) and drops the resources it no longer produces;
    /// [`Translator::compile_service`] compiles the rest. Whether `virtualOutbound` must be rebuilt.
    fn set_service(
        &mut self,
        key: &ObjectKey,
        fact: Option<Arc<Service>>,
        out: &mut ChangeSet,
        selecting: &mut BTreeMap<String, Vec<Arc<Service>>>,
    ) -> bool {
        let old = self.services.get(key).cloned();
        let new = fact.map(|fact| {
            let fqdn = service_fqdn(&key.name, &key.namespace, &self.settings.cluster_domain);
            let clusters = fact
                .ports
                .iter()
                .map(|p| outbound_cluster_name(p.port, &fqdn))
                .collect();
            let routes = fact
                .ports
                .iter()
                .filter(|p| p.protocol.is_http() && !fact.vips.is_empty())
                .map(|p| route_name(&fqdn, p.port))
                .collect();
            Arc::new(CompiledService {
                fact,
                fqdn,
                clusters,
                routes,
            })
        });
        // The proxies whose inbound side this Service feeds, before and after.
        let inbound_changed = match (&old, &new) {
            (Some(a), Some(b)) => {
                a.fact.selector != b.fact.selector
                    || a.fact
                        .ports
                        .iter()
                        .map(|p| (&p.target_port, p.protocol))
                        .ne(b.fact.ports.iter().map(|p| (&p.target_port, p.protocol)))
            }
            (None, None) => false,
            _ => true,
        };
        if inbound_changed {
            let list = selecting.entry(key.namespace.clone()).or_default();
            list.extend(old.iter().chain(&new).map(|s| Arc::clone(&s.fact)));
        }
        let outbound_changed = match (&old, &new) {
            (Some(a), Some(b)) => {
                a.fact.vips != b.fact.vips
                    || a.fact.ports.iter().map(|p| (p.port, p.protocol)).ne(b
                        .fact
                        .ports
                        .iter()
                        .map(|p| (p.port, p.protocol)))
            }
            (None, None) => false,
            _ => true,
        };
        if let Some(old) = &old {
            let (clusters, routes): (&[String], &[String]) = match &new {
                Some(n) => (&n.clusters, &n.routes),
                None => (&[], &[]),
            };
            for name in old.clusters.iter().filter(|n| !clusters.contains(n)) {
                out.remove(&mut self.shared, ResourceType::Cluster, name);
                out.remove(&mut self.shared, ResourceType::Endpoint, name);
            }
            for name in old.routes.iter().filter(|n| !routes.contains(n)) {
                out.remove(&mut self.shared, ResourceType::Route, name);
            }
        }
        if let Some(old) = &old {
            self.services_by_host.remove(&old.fqdn);
        }
        match new {
            Some(new) => {
                self.services_by_host
                    .insert(new.fqdn.clone(), Arc::clone(&new));
                self.services.insert(key.clone(), new)
            }
            None => self.services.remove(key),
        };
        outbound_changed
    }

    /// One Service's routes (unless only its endpoints moved), clusters, load assignments and
    /// subset clusters, from what is in force. Reads only: [`Puts::service`] stores them.
    fn compile_service(&self, key: &ObjectKey, whole: Whole) -> ServiceOutput {
        let mut output = ServiceOutput {
            key: key.clone(),
            resources: Vec::new(),
            subsets: Vec::new(),
        };
        if let Some(service) = self.services.get(key) {
            if whole == Whole::Yes {
                for view in service.views(key) {
                    if view.port.protocol.is_http() && !view.vips.is_empty() {
                        let route =
                            route_configuration(&view, self.vs_routes(&view, Source::SHARED));
                        output.resources.push((
                            ResourceType::Route,
                            Resource::new(route.name.clone(), &route),
                        ));
                    }
                }
            }
            // The clusters carry the DestinationRule's policy; compiled with their endpoints (mTLS).
            self.compile_clusters(key, service, Source::SHARED, &mut output);
        }
        output
    }

    /// The routes a VirtualService in force gives one service port for proxies of `source`, if one
    /// routes it.
    fn vs_routes(
        &self,
        view: &PortView<'_>,
        source: Source<'_>,
    ) -> Option<Vec<envoy_types::pb::envoy::config::route::v3::Route>> {
        let ports_of = |fqdn: &str| self.ports_of(fqdn);
        crate::traffic::service_routes(
            &self.configs,
            view.fqdn,
            view.port.port,
            &self.settings.cluster_domain,
            &ports_of,
            source,
            &view.service.namespace,
        )
    }

    /// A host port as proxies of `source` see it, for its TCP and SNI chains.
    fn host_port<'a>(
        &'a self,
        ports_of: &'a dyn Fn(&str) -> Option<Vec<u16>>,
        view: &PortView<'a>,
        source: Source<'a>,
    ) -> crate::traffic::HostPort<'a> {
        crate::traffic::HostPort {
            configs: &self.configs,
            domain: &self.settings.cluster_domain,
            ports_of,
            fqdn: view.fqdn,
            namespace: &view.service.namespace,
            port: view.port.port,
            source,
        }
    }

    /// A host's port numbers: a Service's, else an accepted ServiceEntry's.
    fn ports_of(&self, fqdn: &str) -> Option<Vec<u16>> {
        match self.services_by_host.get(fqdn) {
            Some(s) => Some(s.fact.ports.iter().map(|p| p.port).collect()),
            None => crate::traffic::service_entry::ports(&self.configs, fqdn),
        }
    }

    /// Adds to `compile` the services whose hosts `touched` names (all of them when a wildcard or
    /// ServiceEntry moved), after what is in force changed. Returns whether a touched service has a
    /// TCP port (its outbound chain may have changed).
    fn touched_services(
        &self,
        touched: &crate::configs::Touched,
        compile: &mut BTreeSet<ObjectKey>,
    ) -> bool {
        let mut tcp = false;
        for (key, s) in self
            .services
            .iter()
            .filter(|(_, s)| touched.all || touched.hosts.contains(&s.fqdn))
        {
            tcp |= s.fact.ports.iter().any(|p| !p.protocol.is_http());
            compile.insert(key.clone());
        }
        touched.all || tcp
    }

    /// The pods of a namespace that any of `services` selects: their own part may change.
    fn mark_selected(&self, namespace: &str, services: &[Arc<Service>], out: &mut ChangeSet) {
        let from = ObjectKey::new(namespace, String::new());
        for (pod, workload) in self.workloads.range(from..) {
            if pod.namespace != namespace {
                break;
            }
            let node = NodeId {
                pod: pod.name.clone(),
                namespace: pod.namespace.clone(),
            };
            if !out.proxies.contains(&node) && services.iter().any(|s| selects(s, workload)) {
                out.proxies.insert(node);
            }
        }
    }

    /// The proxies of a namespace that hold its credentials, which changed: its gateway proxies, and
    /// its sidecars when a DestinationRule names a credential.
    fn mark_credential_holders(&self, namespace: &str, out: &mut ChangeSet) {
        let sidecars = !self.upstream_credentials.is_empty();
        let from = ObjectKey::new(namespace, String::new());
        for (pod, workload) in self.workloads.range(from..) {
            if pod.namespace != namespace {
                break;
            }
            if sidecars || is_gateway(workload) {
                out.proxies.insert(NodeId {
                    pod: pod.name.clone(),
                    namespace: pod.namespace.clone(),
                });
            }
        }
    }

    /// A Service's clusters and load assignments, then its subset clusters and theirs, as proxies
    /// of `source` see them (their DestinationRules): all depend on its endpoints (which of them
    /// get mTLS, and the identities a cluster checks). A subset without a policy or mTLS of its own
    /// is its port's cluster under another name, so it is spliced from one encoding of that cluster
    /// ([`RenamedClusters`]), not cloned and encoded again; so is the port's own cluster then.
    fn compile_clusters(
        &self,
        key: &ObjectKey,
        service: &CompiledService,
        source: Source<'_>,
        output: &mut ServiceOutput,
    ) {
        let lookup = crate::traffic::RuleLookup {
            service_namespace: &key.namespace,
            proxy_namespace: source.namespace,
        };
        let (_, rules) = crate::traffic::rules_for(&self.configs, &service.fqdn, lookup);
        let slices: Vec<&EndpointSlice> = self
            .slices_of
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|name| {
                self.slices
                    .get(&ObjectKey::new(key.namespace.clone(), name.clone()))
                    .map(|s| &**s)
            })
            .collect();
        let pods = security::endpoint_pods(&slices);
        let subsets = subsets_of(&rules);
        // Each subset's endpoints: those whose pod has the subset's labels.
        let selected: Vec<(&str, Vec<EndpointSlice>)> = if subsets.is_empty() {
            Vec::new()
        } else {
            let by = Pods {
                workloads: &self.workloads,
                by_ip: &self.ip_pods,
            };
            let endpoints = EndpointPods::new(slices.iter().copied(), &key.namespace, &by);
            subsets
                .iter()
                .map(|(subset, labels)| (*subset, endpoints.select(labels)))
                .collect()
        };
        let mut subset_resources = Vec::new();
        for view in service.views(key) {
            let port = view.port.port;
            let policy = crate::traffic::merged_policy(&rules, port, None);
            let owns: Vec<_> = selected
                .iter()
                .map(|(subset, _)| crate::traffic::merged_policy(&rules, port, Some(subset)))
                .collect();
            let mut with_policy = outbound_cluster(&view);
            // A subset with a policy of its own starts from the cluster before the port's policy.
            let plain = owns
                .iter()
                .any(|own| *own != policy)
                .then(|| with_policy.clone());
            crate::traffic::policy::apply(&mut with_policy, &policy);
            // Encoded once the first cluster that is `with_policy` renamed comes.
            let mut renamed: Option<RenamedClusters> = None;
            for ((subset, slices), own) in selected.iter().zip(owns) {
                let name = subset_cluster_name(port, subset, &service.fqdn);
                let sub = PortView {
                    cluster: &name,
                    ..view
                };
                let mut assignment = load_assignment(&sub, slices.iter());
                let refs: Vec<&EndpointSlice> = slices.iter().collect();
                let identities =
                    self.mark_meshed(&sub, &security::endpoint_pods(&refs), &mut assignment);
                let cluster = if own == policy && security::stays_plaintext(own.tls, &identities) {
                    renamed
                        .get_or_insert_with(|| RenamedClusters::new(&mut with_policy))
                        .named(&name)
                } else {
                    let mut cluster = match &plain {
                        Some(plain) if own != policy => {
                            let mut cluster = plain.clone();
                            crate::traffic::policy::apply(&mut cluster, &own);
                            cluster
                        }
                        _ => with_policy.clone(),
                    };
                    rename_cluster(&mut cluster, &name);
                    security::secure_cluster(&sub, own.tls, &identities, &mut cluster);
                    Resource::new(name.clone(), &cluster)
                };
                subset_resources.push((ResourceType::Cluster, cluster));
                subset_resources.push((
                    ResourceType::Endpoint,
                    Resource::new(name.clone(), &assignment),
                ));
                output.subsets.push(name);
            }
            let mut assignment = load_assignment(&view, slices.iter().copied());
            let identities = self.mark_meshed(&view, &pods, &mut assignment);
            let cluster = match &renamed {
                Some(renamed) if security::stays_plaintext(policy.tls, &identities) => {
                    renamed.named(view.cluster)
                }
                _ => {
                    let mut cluster = with_policy;
                    security::secure_cluster(&view, policy.tls, &identities, &mut cluster);
                    Resource::new(cluster.name.clone(), &cluster)
                }
            };
            output.resources.push((ResourceType::Cluster, cluster));
            output.resources.push((
                ResourceType::Endpoint,
                Resource::new(assignment.cluster_name.clone(), &assignment),
            ));
        }
        output.resources.extend(subset_resources);
    }

    fn rebuild_outbound(&mut self, out: &mut ChangeSet) {
        self.sync_catch_all_ports(out);
        let outbound = self.shared_outbound();
        self.put_outbound(outbound, out);
    }

    /// The shared `virtualOutbound`, encoded, and what building it left out.
    fn shared_outbound(&self) -> (Arc<Resource>, Vec<String>) {
        let mut warnings = Vec::new();
        let listener = self.outbound_listener(Source::SHARED, &mut warnings);
        (Resource::new(listener.name.clone(), &listener), warnings)
    }

    fn put_outbound(
        &mut self,
        (listener, warnings): (Arc<Resource>, Vec<String>),
        out: &mut ChangeSet,
    ) {
        out.put(&mut self.shared, ResourceType::Listener, listener);
        self.outbound_warnings = warnings;
    }

    /// `virtualOutbound` as proxies of `source` see it (their VirtualServices' `tcp[]` routes).
    fn outbound_listener(
        &self,
        source: Source<'_>,
        warnings: &mut Vec<String>,
    ) -> envoy_types::pb::envoy::config::listener::v3::Listener {
        let views = self
            .services
            .iter()
            .flat_map(|(key, service)| service.views(key));
        let ports_of = |fqdn: &str| self.ports_of(fqdn);
        let tcp = |view: &PortView<'_>, addresses: &[CidrRange]| {
            let at = self.host_port(&ports_of, view, source);
            crate::traffic::service_tcp_chains(&at, addresses, view.cluster)
        };
        let sni = |view: &PortView<'_>, addresses: &[CidrRange]| {
            let at = self.host_port(&ports_of, view, source);
            crate::traffic::service_sni_routes(&at, addresses, view.cluster)
        };
        let mut listener = virtual_outbound(
            views,
            self.mesh.outbound_traffic_policy,
            &tcp,
            &sni,
            warnings,
        );
        let entries = self.entry_chains(&listener.filter_chains, source, warnings);
        listener.filter_chains.extend(entries);
        // After original_dst: it matches on the restored destination port.
        listener
            .listener_filters
            .extend(crate::traffic::service_entry::tls_inspector(
                &listener.filter_chains,
            ));
        listener
    }

    /// Collects what gateway proxies are built from again; when it differs, every gateway proxy's own
    /// part is marked changed (a gateway pod's own changes mark it already).
    fn refresh_gateways(&mut self, out: &mut ChangeSet) {
        let ports_of = |fqdn: &str| self.ports_of(fqdn);
        let inputs =
            GatewayInputs::collect(&self.configs, &self.settings.cluster_domain, &ports_of);
        let changed = inputs != *self.gateways;
        if changed {
            self.gateways = Arc::new(inputs);
        }
        self.gateway_warnings.clear();
        // The gateway pods, as the verdicts' facts hold them.
        let pods = self
            .configs
            .edge
            .gateway_pods
            .keys()
            .filter_map(|key| Some((key, self.workloads.get(key)?)));
        for (pod, workload) in pods {
            if changed {
                out.proxies.insert(NodeId {
                    pod: pod.name.clone(),
                    namespace: pod.namespace.clone(),
                });
            }
            let targets = crate::gateway::pod_ports(
                crate::gateway::namespace_services(&self.services, &pod.namespace),
                workload,
            );
            let config =
                crate::gateway::gateway_config(&self.gateways, &pod.namespace, workload, &targets);
            self.gateway_warnings
                .extend(config.warnings.into_iter().map(|w| format!("{pod}: {w}")));
        }
    }

    /// Collects the Secrets the DestinationRules in force name again; when they differ, every
    /// sidecar's own part (its Secrets) is marked changed.
    fn refresh_upstream_credentials(&mut self, out: &mut ChangeSet) {
        let names = crate::traffic::tls::credential_names(&self.configs);
        if names == *self.upstream_credentials {
            return;
        }
        self.upstream_credentials = Arc::new(names);
        for (pod, workload) in self.workloads.iter() {
            if !is_gateway(workload) {
                out.proxies.insert(NodeId {
                    pod: pod.name.clone(),
                    namespace: pod.namespace.clone(),
                });
            }
        }
    }

    fn compiled(&self) -> CompiledMesh {
        CompiledMesh {
            shared: self.shared.clone(),
            services: self.services.clone(),
            workloads: self.workloads.clone(),
            mesh: Arc::clone(&self.mesh),
            peers: self.peers.clone(),
            authz: self.authz.clone(),
            gateways: Arc::clone(&self.gateways),
            mesh_found: self.meshes.contains_key(&self.settings.mesh_name),
            warnings: self
                .outbound_warnings
                .iter()
                .chain(&self.gateway_warnings)
                .cloned()
                .collect(),
            verdicts: self.configs.verdicts.clone(),
            credentials: self.credentials.clone(),
            upstream_credentials: Arc::clone(&self.upstream_credentials),
            variants: self.variants.by_proxy.clone(),
        }
    }
}

/// Where a host port's DestinationRules are looked up for proxies of `source`: the namespace of its
/// Service (or ServiceEntry).
fn rule_lookup<'a>(view: &PortView<'a>, source: Source<'a>) -> crate::traffic::RuleLookup<'a> {
    crate::traffic::RuleLookup {
        service_namespace: &view.service.namespace,
        proxy_namespace: source.namespace,
    }
}

/// A copy of a port's cluster as one of its subsets' (`outbound|<port>|<subset>|<fqdn>`, with
/// that subset's load assignment).
fn rename_cluster(cluster: &mut envoy_types::pb::envoy::config::cluster::v3::Cluster, name: &str) {
    cluster.name = name.to_string();
    if let Some(eds) = &mut cluster.eds_cluster_config {
        eds.service_name = name.to_string();
    }
}

fn port_numbers(s: &Service) -> Vec<u16> {
    s.ports.iter().map(|p| p.port).collect()
}

#[cfg(test)]
#[path = "translator/credentials_tests.rs"]
mod credentials_tests;

#[cfg(test)]
#[path = "translator/variants_tests.rs"]
mod variants_tests;
