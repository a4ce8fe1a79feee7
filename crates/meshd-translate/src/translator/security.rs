//! What the security facts recompile: a PeerAuthentication, a Pod or the Mesh's mTLS settings change
//! which endpoints get mTLS (load assignments, and the identities their clusters check) and what the
//! selected proxies' inbound sides accept; an AuthorizationPolicy changes only inbound sides.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use meshd_api::mesh::MtlsMode;
use meshd_api::names::SYSTEM_NAMESPACE;
use meshd_api::networking::destination_rule::ClientTlsSettings;

use super::{ChangeSet, Translator};
use crate::facts::{
    AuthorizationPolicy, EndpointSlice, Fact, FactKind, ObjectKey, PeerAuthentication, Workload,
};
use crate::mtls::{auto_mtls, mesh_sni, meshed_endpoint_metadata, spiffe_id};
use crate::outbound::PortView;
use crate::peer::resolve;

/// What one batch of changes touched, resolved once at its end.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    /// Pods whose endpoints may change, with the IPs they had or have.
    pub(super) pods: Vec<(ObjectKey, Vec<String>)>,
    /// Namespaces whose PeerAuthentications changed (endpoints and proxies) ...
    pub(super) peer_namespaces: BTreeSet<String>,
    /// ... and whose AuthorizationPolicies changed (proxies only).
    pub(super) authz_namespaces: BTreeSet<String>,
    /// Every endpoint and every proxy (the Mesh's mTLS settings, a mesh-wide PeerAuthentication).
    pub everything: bool,
    /// Every proxy (a mesh-wide AuthorizationPolicy).
    pub(super) all_proxies: bool,
}

impl Translator {
    pub(super) fn set_peer(
        &mut self,
        key: ObjectKey,
        new: Option<Arc<PeerAuthentication>>,
        touched: &mut Touched,
    ) {
        if key.namespace == SYSTEM_NAMESPACE {
            touched.everything = true;
        }
        touched.peer_namespaces.insert(key.namespace.clone());
        match new {
            Some(p) => self.peers.insert(key, p),
            None => self.peers.remove(&key),
        };
    }

    pub(super) fn set_authz(
        &mut self,
        key: ObjectKey,
        new: Option<Arc<AuthorizationPolicy>>,
        touched: &mut Touched,
    ) {
        if key.namespace == SYSTEM_NAMESPACE {
            touched.all_proxies = true;
        }
        touched.authz_namespaces.insert(key.namespace.clone());
        match new {
            Some(p) => self.authz.insert(key, p),
            None => self.authz.remove(&key),
        };
    }

    /// Takes the PeerAuthentications and AuthorizationPolicies in force (after a judgement) and marks
    /// what those that changed reach. Returns whether a PeerAuthentication in force changed.
    pub(super) fn sync_security(
        &mut self,
        endpoints_of: &mut BTreeSet<ObjectKey>,
        out: &mut ChangeSet,
    ) -> bool {
        let mut touched = Touched::default();
        let peers: BTreeMap<ObjectKey, &PeerAuthentication> = self
            .configs
            .in_force(FactKind::PeerAuthentication)
            .filter_map(|(k, f)| match f {
                Fact::PeerAuthentication(c) => Some((k.clone(), &c.spec)),
                _ => None,
            })
            .collect();
        let authz: BTreeMap<ObjectKey, &AuthorizationPolicy> = self
            .configs
            .in_force(FactKind::AuthorizationPolicy)
            .filter_map(|(k, f)| match f {
                Fact::AuthorizationPolicy(c) => Some((k.clone(), &c.spec)),
                _ => None,
            })
            .collect();
        let peer_changes = changes(&self.peers, &peers);
        let authz_changes = changes(&self.authz, &authz);
        let peers_changed = !peer_changes.is_empty();
        for (key, new) in peer_changes {
            self.set_peer(key, new, &mut touched);
        }
        for (key, new) in authz_changes {
            self.set_authz(key, new, &mut touched);
        }
        self.pod_index().apply_touched(touched, endpoints_of, out);
        peers_changed
    }

    /// The Pod behind an endpoint address: its `targetRef`, else the Pod with that IP.
    fn endpoint_pod(
        &self,
        namespace: &str,
        pod: Option<&str>,
        ip: &str,
    ) -> Option<(&ObjectKey, &Workload)> {
        if let Some(name) = pod
            && let Some((key, w)) = self
                .workloads
                .get_key_value(&ObjectKey::new(namespace, name))
        {
            return Some((key, w));
        }
        let key = self.ip_pods.get(ip)?.iter().next()?;
        Some((key, self.workloads.get(key)?))
    }

    /// Auto mTLS for one Service port: endpoints whose pods carry a sidecar of this mesh (not a
    /// gateway proxy) and accept mTLS on the port are marked, and the cluster checks their identities; a port with no such
    /// endpoint stays plaintext (no SDS: DISABLE needs no agent). The DestinationRule's `tls` for
    /// the port (and `subset`), when set, replaces all of this ([`crate::traffic::tls`]).
    pub(super) fn secure(
        &self,
        view: &PortView<'_>,
        tls: Option<&ClientTlsSettings>,
        pods: &BTreeMap<&str, &str>,
        assignment: &mut ClusterLoadAssignment,
        cluster: &mut Cluster,
    ) {
        let identities = self.mark_meshed(view, pods, assignment);
        secure_cluster(view, tls, &identities, cluster);
    }

    /// Marks the endpoints of `assignment` that get auto mTLS (see [`Self::secure`]) and returns
    /// the identities their cluster is to check.
    pub(super) fn mark_meshed(
        &self,
        view: &PortView<'_>,
        pods: &BTreeMap<&str, &str>,
        assignment: &mut ClusterLoadAssignment,
    ) -> Vec<String> {
        let mut identities = BTreeSet::new();
        let namespace = &view.service.namespace;
        for lb in assignment
            .endpoints
            .iter_mut()
            .flat_map(|l| l.lb_endpoints.iter_mut())
        {
            let Some(lb_endpoint::HostIdentifier::Endpoint(ep)) = &lb.host_identifier else {
                continue;
            };
            let Some((ip, port)) = socket_of(ep) else {
                continue;
            };
            let pod = pods.get(ip).copied();
            let Some((key, w)) = self.endpoint_pod(namespace, pod, ip) else {
                continue;
            };
            // A gateway pod carries the mesh's label, but its listeners are its Gateways' servers.
            if w.mesh.as_deref() != Some(self.settings.mesh_name.as_str())
                || crate::gateway::is_gateway(w)
            {
                continue;
            }
            let mode = resolve(&self.peers, self.mesh.mtls.mode, &key.namespace, &w.labels);
            if mode.port(port) == MtlsMode::Disable {
                continue;
            }
            // Formatted once per identity below, not once per endpoint.
            identities.insert((key.namespace.as_str(), w.service_account.as_str()));
            lb.metadata = Some(meshed_endpoint_metadata());
        }
        identities
            .into_iter()
            .map(|(namespace, account)| spiffe_id(&self.mesh.trust_domain, namespace, account))
            .collect()
    }
}

/// Whether [`secure_cluster`] leaves a cluster as `outbound_cluster` built it: no identity to check
/// and no `tls` mode.
pub(super) fn stays_plaintext(tls: Option<&ClientTlsSettings>, identities: &[String]) -> bool {
    identities.is_empty() && tls.and_then(|t| t.mode).is_none()
}

/// A cluster's upstream TLS: the DestinationRule's `tls`, else auto mTLS to `identities` (the
/// endpoints [`Translator::mark_meshed`] marked), else none.
pub(super) fn secure_cluster(
    view: &PortView<'_>,
    tls: Option<&ClientTlsSettings>,
    identities: &[String],
    cluster: &mut Cluster,
) {
    if stays_plaintext(tls, identities) {
        return;
    }
    let sni = mesh_sni(view.port.port, "", view.fqdn);
    if !crate::traffic::tls::apply(cluster, tls, &sni, identities) && !identities.is_empty() {
        auto_mtls(cluster, &sni, identities);
    }
}

/// The keys whose policy differs between `held` and `in_force`, with the new one (`None`: gone).
fn changes<T: Clone + PartialEq>(
    held: &imbl::OrdMap<ObjectKey, Arc<T>>,
    in_force: &BTreeMap<ObjectKey, &T>,
) -> Vec<(ObjectKey, Option<Arc<T>>)> {
    let mut out: Vec<(ObjectKey, Option<Arc<T>>)> = in_force
        .iter()
        .filter(|(k, new)| held.get(*k).is_none_or(|old| **old != ***new))
        .map(|(k, new)| (k.clone(), Some(Arc::new((*new).clone()))))
        .collect();
    out.extend(
        held.keys()
            .filter(|k| !in_force.contains_key(*k))
            .map(|k| (k.clone(), None)),
    );
    out
}

/// The Pod each endpoint address names by `targetRef`.
pub(super) fn endpoint_pods<'a>(slices: &[&'a EndpointSlice]) -> BTreeMap<&'a str, &'a str> {
    let mut pods = BTreeMap::new();
    for ep in slices.iter().flat_map(|s| &s.endpoints) {
        if let Some(pod) = &ep.pod {
            for a in &ep.addresses {
                pods.entry(a.as_str()).or_insert(pod.as_str());
            }
        }
    }
    pods
}

fn socket_of(ep: &envoy_types::pb::envoy::config::endpoint::v3::Endpoint) -> Option<(&str, u16)> {
    use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
    let Some(address::Address::SocketAddress(sa)) = ep.address.as_ref()?.address.as_ref() else {
        return None;
    };
    let Some(socket_address::PortSpecifier::PortValue(port)) = sa.port_specifier else {
        return None;
    };
    Some((sa.address.as_str(), u16::try_from(port).ok()?))
}
