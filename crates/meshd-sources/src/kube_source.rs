//! The in-cluster source: watches of Services, EndpointSlices, Pods and Meshes kept in a [`KubeIndex`],
//! published as snapshots. Objects are watched untyped and decoded one by one, so one object that does
//! not decode is logged and skipped (its last good version kept) instead of wedging the watch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use meshd_translate::MeshSnapshot;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::SourceError;
use crate::objects::{MeshObjects, ParsedObject};

/// The kinds the control plane watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WatchedKind {
    Service,
    EndpointSlice,
    Pod,
    Mesh,
}

impl WatchedKind {
    pub const ALL: [WatchedKind; 4] = [Self::Service, Self::EndpointSlice, Self::Pod, Self::Mesh];

    pub fn name(self) -> &'static str {
        match self {
            Self::Service => "Service",
            Self::EndpointSlice => "EndpointSlice",
            Self::Pod => "Pod",
            Self::Mesh => "Mesh",
        }
    }

    pub fn api_resource(self) -> ApiResource {
        match self {
            Self::Service => ApiResource::erase::<Service>(&()),
            Self::EndpointSlice => ApiResource::erase::<EndpointSlice>(&()),
            Self::Pod => ApiResource::erase::<Pod>(&()),
            Self::Mesh => ApiResource::erase::<meshd_api::Mesh>(&()),
        }
    }

    /// An untyped object as the typed one this kind stands for.
    pub fn decode(self, object: &DynamicObject) -> Result<ParsedObject, SourceError> {
        fn typed<T: DeserializeOwned>(
            kind: WatchedKind,
            o: &DynamicObject,
        ) -> Result<Box<T>, SourceError> {
            let decode = |source| SourceError::Decode {
                kind: kind.name(),
                name: key(o).join("/"),
                source,
            };
            let value = serde_json::to_value(o).map_err(decode)?;
            serde_json::from_value(value).map_err(decode)
        }
        Ok(match self {
            Self::Service => ParsedObject::Service(typed(self, object)?),
            Self::EndpointSlice => ParsedObject::EndpointSlice(typed(self, object)?),
            Self::Pod => ParsedObject::Pod(typed(self, object)?),
            Self::Mesh => ParsedObject::Mesh(typed(self, object)?),
        })
    }
}

fn key(o: &DynamicObject) -> [String; 2] {
    [
        o.metadata.namespace.clone().unwrap_or_default(),
        o.metadata.name.clone().unwrap_or_default(),
    ]
}

type Key = (WatchedKind, [String; 2]);

/// Everything the watches have seen, by kind, namespace and name.
#[derive(Debug, Default)]
pub struct KubeIndex {
    objects: BTreeMap<Key, ParsedObject>,
    /// Objects of a kind being re-listed (between `Init` and `InitDone`).
    relisting: BTreeMap<WatchedKind, BTreeMap<Key, ParsedObject>>,
    synced: BTreeSet<WatchedKind>,
}

impl KubeIndex {
    /// Applies one watch event. A decode failure is returned for the caller to log; the index keeps the
    /// object's previous version.
    pub fn apply(
        &mut self,
        kind: WatchedKind,
        event: Event<DynamicObject>,
    ) -> Result<(), SourceError> {
        match event {
            Event::Apply(o) => {
                let parsed = kind.decode(&o)?;
                self.objects.insert((kind, key(&o)), parsed);
            }
            Event::Delete(o) => {
                self.objects.remove(&(kind, key(&o)));
            }
            Event::Init => {
                self.relisting.insert(kind, BTreeMap::new());
            }
            Event::InitApply(o) => {
                let k = (kind, key(&o));
                let parsed = match kind.decode(&o) {
                    Ok(p) => p,
                    Err(e) => {
                        // Keep what we had for it, if anything, through the relist.
                        if let Some(old) = self.objects.get(&k) {
                            self.relisting
                                .entry(kind)
                                .or_default()
                                .insert(k, old.clone());
                        }
                        return Err(e);
                    }
                };
                self.relisting.entry(kind).or_default().insert(k, parsed);
            }
            Event::InitDone => {
                let fresh = self.relisting.remove(&kind).unwrap_or_default();
                self.objects.retain(|(k, _), _| *k != kind);
                self.objects.extend(fresh);
                self.synced.insert(kind);
            }
        }
        Ok(())
    }

    /// Whether every kind has been listed once; until then a snapshot would be missing objects.
    pub fn synced(&self) -> bool {
        WatchedKind::ALL.iter().all(|k| self.synced.contains(k))
    }

    pub fn snapshot(&self, mesh_name: &str, cluster_domain: &str) -> (MeshSnapshot, bool) {
        let mut objects = MeshObjects::default();
        for o in self.objects.values() {
            objects.push(o.clone());
        }
        objects.snapshot(mesh_name, cluster_domain)
    }
}

/// Watches the cluster and publishes snapshots (at most every 100 ms) until `cancel`.
pub async fn run_kube_source(
    client: kube::Client,
    mesh_name: String,
    cluster_domain: String,
    tx: watch::Sender<Arc<MeshSnapshot>>,
    cancel: CancellationToken,
) {
    let streams = WatchedKind::ALL.map(|kind| {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.api_resource());
        watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .map(move |e| (kind, e))
            .boxed()
    });
    let mut events = futures::stream::select_all(streams);
    let mut index = KubeIndex::default();
    let mut dirty = false;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            next = events.next() => match next {
                None => return,
                Some((kind, Ok(event))) => match index.apply(kind, event) {
                    Ok(()) => dirty = true,
                    Err(e) => tracing::warn!(error = %e, "skipping an object that does not decode"),
                },
                Some((kind, Err(e))) => tracing::warn!(kind = kind.name(), error = %e, "watch failed; retrying"),
            },
            _ = tick.tick() => {
                if dirty && index.synced() {
                    dirty = false;
                    let (snapshot, _) = index.snapshot(&mesh_name, &cluster_domain);
                    tx.send_if_modified(|current| {
                        let changed = **current != snapshot;
                        if changed {
                            *current = Arc::new(snapshot);
                        }
                        changed
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dynamic(json: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json).unwrap()
    }

    fn service(name: &str, port: serde_json::Value) -> DynamicObject {
        dynamic(serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": port}]},
        }))
    }

    #[test]
    fn watch_events_become_a_snapshot_and_bad_objects_are_skipped() {
        let mut index = KubeIndex::default();
        for kind in WatchedKind::ALL {
            index.apply(kind, Event::Init).unwrap();
        }
        index
            .apply(
                WatchedKind::Service,
                Event::InitApply(service("web", 80.into())),
            )
            .unwrap();
        let err = index
            .apply(
                WatchedKind::Service,
                Event::InitApply(service("bad", "eighty".into())),
            )
            .unwrap_err();
        assert!(err.to_string().contains("Service shop/bad"), "{err}");
        index
            .apply(
                WatchedKind::Mesh,
                Event::InitApply(dynamic(serde_json::json!({
                    "apiVersion": "meshd.io/v1alpha1", "kind": "Mesh",
                    "metadata": {"name": "default"},
                    "spec": {"outboundTrafficPolicy": "REGISTRY_ONLY"},
                }))),
            )
            .unwrap();
        assert!(!index.synced());
        for kind in WatchedKind::ALL {
            index.apply(kind, Event::InitDone).unwrap();
        }
        assert!(index.synced());
        let (snap, mesh_found) = index.snapshot("default", "example.org");
        assert!(mesh_found);
        assert_eq!(snap.services.len(), 1);
        assert_eq!(snap.services[0].metadata.name.as_deref(), Some("web"));
        assert_eq!(snap.cluster_domain, "example.org");
        assert_eq!(
            snap.mesh.outbound_traffic_policy,
            meshd_api::mesh::OutboundTrafficPolicy::RegistryOnly
        );

        // A later bad update keeps the last good version; a delete removes it.
        let e = index.apply(
            WatchedKind::Service,
            Event::Apply(service("web", "x".into())),
        );
        assert!(e.is_err());
        assert_eq!(
            index.snapshot("default", "x").0.services[0]
                .spec
                .as_ref()
                .unwrap()
                .ports
                .as_ref()
                .unwrap()[0]
                .port,
            80
        );
        index
            .apply(
                WatchedKind::Service,
                Event::Delete(service("web", 80.into())),
            )
            .unwrap();
        assert!(index.snapshot("default", "x").0.services.is_empty());
    }

    #[test]
    fn a_relist_drops_objects_deleted_while_disconnected() {
        let mut index = KubeIndex::default();
        index
            .apply(
                WatchedKind::Service,
                Event::Apply(service("old", 80.into())),
            )
            .unwrap();
        index.apply(WatchedKind::Service, Event::Init).unwrap();
        index
            .apply(
                WatchedKind::Service,
                Event::InitApply(service("new", 80.into())),
            )
            .unwrap();
        index.apply(WatchedKind::Service, Event::InitDone).unwrap();
        let names: Vec<_> = index
            .snapshot("default", "x")
            .0
            .services
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["new"]);
    }
}
