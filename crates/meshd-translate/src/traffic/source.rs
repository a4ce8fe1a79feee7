//! Who is asking (SPEC §8, Istio's semantics): a VirtualService's `exportTo` decides which
//! namespaces' sidecars see it, and a match's `sourceLabels`/`sourceNamespace` which sidecars it
//! applies to (Istio drops the others' matches at config time: `sourceMatchHTTP`, `sourceMatchTCP`).
//!
//! The shared routes and chains are the view of [`Source::SHARED`]: no namespace and no labels, so it
//! sees only VirtualServices exported everywhere and no match with a source condition. A proxy whose
//! view of a host differs ([`View`]) gets that host's resources as its own, under the same names
//! (`Translator::proxy_variants`).

use std::collections::BTreeMap;

use meshd_api::networking::VirtualServiceSpec;
use meshd_api::validate::references::{Export, age_order};
use meshd_api::validate::verdicts::binds_mesh;

use crate::configs::Configs;
use crate::facts::{Fact, FactKind, ObjectKey};

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// The proxy routes are built for: its namespace and its pod's labels.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Source<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

impl Source<'_> {
    /// The view every proxy shares unless its own differs.
    pub const SHARED: Source<'static> = Source {
        namespace: "",
        labels: &NO_LABELS,
    };

    /// Whether a match with these source conditions applies to this proxy (labels: a subset of
    /// the pod's; namespace: the pod's).
    pub fn selected_by(&self, labels: &BTreeMap<String, String>, namespace: Option<&str>) -> bool {
        labels.iter().all(|(k, v)| self.labels.get(k) == Some(v))
            && namespace.is_none_or(|ns| ns == self.namespace)
    }
}

/// The accepted VirtualService bound to sidecars (`mesh`) that routes `fqdn` for proxies of
/// `source`, its key: among those exported to the proxy's namespace, one private to it first, then
/// one exported to it by name, then a public one; the oldest within a rank (Istio's order; the
/// verdicts refuse the ones outranked everywhere).
pub(crate) fn virtual_service_for<'a>(
    configs: &'a Configs,
    fqdn: &str,
    source: Source<'_>,
) -> Option<(&'a ObjectKey, &'a VirtualServiceSpec)> {
    configs
        .naming(FactKind::VirtualService, fqdn)
        .into_iter()
        .filter_map(|(key, fact)| match fact {
            Fact::VirtualService(c) if binds_mesh(&c.spec) => {
                let rank = rank(&c.spec, &key.namespace, source.namespace)?;
                Some((
                    rank,
                    age_order(c.created, &key.namespace, &key.name),
                    key,
                    c,
                ))
            }
            _ => None,
        })
        .min_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)))
        .map(|(_, _, key, c)| (key, &c.spec))
}

/// Istio's rank of a VirtualService for proxies of `ns` (`None`: not exported there).
fn rank(spec: &VirtualServiceSpec, own: &str, ns: &str) -> Option<u8> {
    if spec.export_to.is_empty() {
        return Some(2);
    }
    Export::of(&spec.export_to).rank(own, ns)
}

/// Whether a VirtualService's routes may differ between proxies: a restricted `exportTo`, or a
/// match with a source condition.
pub(crate) fn varies(spec: &VirtualServiceSpec) -> bool {
    !Export::of(&spec.export_to).public
        || spec
            .http
            .iter()
            .flat_map(|r| &r.matches)
            .any(|m| !m.source_labels.is_empty() || m.source_namespace.is_some())
        || spec
            .tcp
            .iter()
            .flat_map(|r| &r.matches)
            .any(|m| !m.source_labels.is_empty() || m.source_namespace.is_some())
        || spec
            .tls
            .iter()
            .flat_map(|r| &r.matches)
            .any(|m| !m.source_labels.is_empty() || m.source_namespace.is_some())
}

/// What decides a proxy's routes for one host: the VirtualService it sees and which of its
/// source-conditioned matches apply. Proxies with equal views get equal resources.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct View {
    pub virtual_service: Option<ObjectKey>,
    pub selected: Vec<bool>,
}

impl View {
    pub fn of(configs: &Configs, fqdn: &str, source: Source<'_>) -> Self {
        let Some((key, vs)) = virtual_service_for(configs, fqdn, source) else {
            return Self {
                virtual_service: None,
                selected: Vec::new(),
            };
        };
        let http = vs
            .http
            .iter()
            .flat_map(|r| &r.matches)
            .filter(|m| !m.source_labels.is_empty() || m.source_namespace.is_some())
            .map(|m| source.selected_by(&m.source_labels, m.source_namespace.as_deref()));
        let tcp = vs
            .tcp
            .iter()
            .flat_map(|r| &r.matches)
            .filter(|m| !m.source_labels.is_empty() || m.source_namespace.is_some())
            .map(|m| source.selected_by(&m.source_labels, m.source_namespace.as_deref()));
        let tls = vs
            .tls
            .iter()
            .flat_map(|r| &r.matches)
            .filter(|m| !m.source_labels.is_empty() || m.source_namespace.is_some())
            .map(|m| source.selected_by(&m.source_labels, m.source_namespace.as_deref()));
        Self {
            virtual_service: Some(key.clone()),
            selected: http.chain(tcp).chain(tls).collect(),
        }
    }
}
