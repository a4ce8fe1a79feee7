//! The Translator's side of ServiceEntries (`traffic::service_entry` builds them): their clusters,
//! load assignments and routes, recompiled whenever what is in force or the outbound policy changes
//! (only the resources whose bytes differ are pushed), and their `virtualOutbound` chains; with them
//! the `<port>` routes and chains that answer unknown addresses on the Services' HTTP ports.

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::listener::v3::FilterChain;

use super::{ChangeSet, Translator};
use crate::configs::Touched;
use crate::outbound::PortView;
use crate::resources::{Resource, ResourceType};
use crate::traffic::Source;
use crate::traffic::service_entry::{
    EntryPort, catch_all_ports, claims, cluster, entry_ports, load_assignment, outbound_chains,
    route_configurations,
};
use crate::traffic::subsets::subsets_of;
use meshd_api::networking::DestinationRuleSpec;

impl Translator {
    /// Every accepted entry's clusters, assignments and routes; the ones no longer produced are
    /// removed. Whether the outbound listener may differ (an entry with a non-HTTP port is touched).
    pub(super) fn compile_entries(&mut self, touched: &Touched, out: &mut ChangeSet) -> bool {
        let mut tcp_touched = touched.all;
        let produced = self.entry_resources_for(Source::SHARED, |e| {
            tcp_touched |= !e.port.protocol.is_http() && touched.hosts.contains(e.host);
        });
        let names: Vec<(ResourceType, String)> = produced
            .iter()
            .map(|(ty, r)| (*ty, r.name.to_string()))
            .collect();
        for (ty, r) in produced {
            out.put(&mut self.shared, ty, r);
        }
        for (ty, name) in std::mem::take(&mut self.entry_resources) {
            if !names.iter().any(|(t, n)| *t == ty && *n == name) {
                out.remove(&mut self.shared, ty, &name);
            }
        }
        self.entry_resources = names;
        tcp_touched
    }

    /// The clusters, assignments and routes of the entries exported to proxies of `source`, as
    /// they see them; `each` sees every host port (and subset) produced.
    pub(super) fn entry_resources_for(
        &self,
        source: Source<'_>,
        mut each: impl FnMut(&EntryPort<'_>),
    ) -> Vec<(ResourceType, std::sync::Arc<Resource>)> {
        let mut produced: Vec<(ResourceType, std::sync::Arc<Resource>)> = Vec::new();
        let ports = entry_ports(&self.configs, source);
        // Each host port's DestinationRules, looked up once: they give its cluster's policy, its
        // subsets and theirs.
        let rules: Vec<Vec<&DestinationRuleSpec>> = ports
            .iter()
            .map(|e| {
                let lookup = super::rule_lookup(&self.entry_view(e), source);
                crate::traffic::rules_for(&self.configs, e.host, lookup).1
            })
            .collect();
        // Each host port's cluster, then one per DestinationRule subset of the host, each with its
        // port's rules.
        let mut clusters = Vec::new();
        for (e, rules) in ports.iter().zip(&rules) {
            clusters.extend(
                subsets_of(rules)
                    .into_iter()
                    .map(|(name, labels)| (e.with_subset(name, labels), rules)),
            );
        }
        let each_cluster = ports
            .iter()
            .zip(&rules)
            .chain(clusters.iter().map(|(e, rules)| (e, *rules)));
        for (e, rules) in each_cluster {
            each(e);
            let view = self.entry_view(e);
            let mut c = cluster(e);
            let subset = e.subset.as_ref().map(|(name, _)| name.as_str());
            let policy = crate::traffic::merged_policy(rules, e.port.port, subset);
            crate::traffic::policy::apply(&mut c, &policy);
            let tls = policy.tls;
            let mut secured = false;
            if c.eds_cluster_config.is_some() {
                let mut assignment = load_assignment(e);
                if e.internal() {
                    // Endpoints that are pods of this mesh (by IP) get auto mTLS, unless the
                    // DestinationRule's `tls` says otherwise.
                    self.secure(&view, tls, &Default::default(), &mut assignment, &mut c);
                    secured = true;
                }
                produced.push((
                    ResourceType::Endpoint,
                    Resource::new(e.cluster.clone(), &assignment),
                ));
            }
            if !secured {
                // No auto mTLS here (MESH_EXTERNAL, or no EDS): only an explicit `tls` applies, e.g.
                // SIMPLE origination towards an external host.
                let sni = crate::mtls::mesh_sni(e.port.port, "", e.host);
                crate::traffic::tls::apply(&mut c, tls, &sni, &[]);
            }
            produced.push((ResourceType::Cluster, Resource::new(e.cluster.clone(), &c)));
        }
        let routes = |e: &EntryPort<'_>| {
            let view = self.entry_view(e);
            self.vs_routes(&view, source)
                .unwrap_or_else(|| vec![crate::traffic::routes::default_route(&e.cluster, None)])
        };
        let policy = self.mesh.outbound_traffic_policy;
        for r in route_configurations(&ports, policy, &self.catch_all_ports, &routes) {
            produced.push((ResourceType::Route, Resource::new(r.name.clone(), &r)));
        }
        produced
    }

    /// Whether a MESH_INTERNAL entry is in force (its clusters depend on pods and PeerAuthentications).
    pub(super) fn has_internal_entries(&self) -> bool {
        crate::traffic::service_entry::entries(&self.configs)
            .iter()
            .any(|(_, c)| {
                c.spec.location
                    == Some(meshd_api::networking::service_entry::Location::MeshInternal)
            })
    }

    fn entry_view<'a>(&self, e: &'a EntryPort<'a>) -> PortView<'a> {
        PortView {
            service: e.key,
            fqdn: e.host,
            vips: &e.spec.addresses,
            port: &e.port,
            cluster: &e.cluster,
        }
    }

    /// The entries' chains for `virtualOutbound`, after the Services' `chains`.
    pub(super) fn entry_chains(
        &self,
        chains: &[FilterChain],
        source: Source<'_>,
        warnings: &mut Vec<String>,
    ) -> Vec<FilterChain> {
        let ports = entry_ports(&self.configs, source);
        let mut claimed = claims(chains);
        let ports_of = |fqdn: &str| self.ports_of(fqdn);
        let tcp = |e: &EntryPort<'_>, addresses: &[CidrRange]| {
            let at = self.host_port(&ports_of, &self.entry_view(e), source);
            crate::traffic::service_tcp_chains(&at, addresses, &e.cluster)
        };
        let sni = |e: &EntryPort<'_>, addresses: &[CidrRange]| {
            let at = self.host_port(&ports_of, &self.entry_view(e), source);
            crate::traffic::service_sni_routes(&at, addresses, &e.cluster)
        };
        outbound_chains(
            &ports,
            &mut claimed,
            &self.catch_all_ports,
            &tcp,
            &sni,
            warnings,
        )
    }

    /// Before `virtualOutbound` is rebuilt: the ports Services proxy as HTTP whose unknown
    /// destinations get the `<port>` route's catch-all (REGISTRY_ONLY only); when they change, the
    /// entries' routes are recompiled with them.
    pub(super) fn sync_catch_all_ports(&mut self, out: &mut ChangeSet) {
        let http_ports = self
            .services
            .values()
            .filter(|s| !s.fact.vips.is_empty())
            .flat_map(|s| &s.fact.ports)
            .filter(|p| p.protocol.is_http())
            .map(|p| p.port);
        let ports = catch_all_ports(self.mesh.outbound_traffic_policy, http_ports);
        if ports != self.catch_all_ports {
            self.catch_all_ports = ports;
            self.compile_entries(&Touched::default(), out);
        }
    }
}
