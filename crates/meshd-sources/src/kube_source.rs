//! The in-cluster source: a kube-runtime `watcher` per kind of [`meshd_index::visit_kinds`], each object
//! reduced to its fact on arrival (the object itself is dropped there) and set in the index.
//!
//! Objects are decoded through [`DeserializeGuard`], so one that does not decode is logged with its kind,
//! namespace and name and skipped, like one that does not reduce: its last good fact stays and the
//! watch goes on. A relist (kube-runtime's `Init` … `InitDone`) replaces the kind's facts at once, so
//! objects deleted while the watch was down disappear; until every kind has been listed once, the
//! index is not complete and xDS is not served.

use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use meshd_index::{Kind, KindVisitor, ReduceError, SharedIndex, visit_kinds};
use meshd_translate::facts::{Fact, FactKind, ObjectKey};
use tokio_util::sync::CancellationToken;

/// One object as it arrived: its key (when it has one) and its fact, or why it cannot be used.
#[derive(Debug)]
pub struct Reduced {
    pub key: Option<ObjectKey>,
    pub fact: Result<Option<Fact>, ReduceError>,
}

/// A watch event of one kind, already reduced.
pub struct KindEvent {
    pub kind: FactKind,
    pub event: Result<Event<Reduced>, watcher::Error>,
}

/// Reduces one decoded (or not) object.
fn reduce<K: Kind>(object: DeserializeGuard<K::Object>) -> Reduced {
    match object.0 {
        Ok(o) => match K::key(&o) {
            Ok(key) => Reduced {
                fact: K::reduce(&o, &key),
                key: Some(key),
            },
            Err(e) => Reduced {
                key: None,
                fact: Err(e),
            },
        },
        Err(invalid) => {
            let m = &invalid.metadata;
            let key = m
                .name
                .as_ref()
                .map(|n| ObjectKey::new(m.namespace.clone().unwrap_or_default(), n.clone()));
            let at = key
                .as_ref()
                .map_or("<no name>".to_string(), ToString::to_string);
            if let (Some(key), Some(fact)) = (&key, K::undecodable(&invalid.error.to_string())) {
                return Reduced {
                    key: Some(key.clone()),
                    fact: Ok(Some(fact)),
                };
            }
            Reduced {
                key,
                fact: Err(ReduceError::new(
                    meshd_index::kinds::kind_name::<K>(),
                    at,
                    format!("cannot decode: {}", invalid.error),
                )),
            }
        }
    }
}

struct Watches {
    client: kube::Client,
    streams: Vec<BoxStream<'static, KindEvent>>,
}

impl KindVisitor for Watches {
    fn visit<K: Kind>(&mut self) {
        let api: Api<DeserializeGuard<K::Object>> = Api::all(self.client.clone());
        let mut config = watcher::Config::default();
        if let Some(selector) = K::FIELD_SELECTOR {
            config = config.fields(selector);
        }
        let stream = watcher::watcher(api, config)
            .default_backoff()
            .map(|event| KindEvent {
                kind: K::FACT,
                event: event.map(|e| map_event(e, reduce::<K>)),
            })
            .boxed();
        self.streams.push(stream);
    }
}

fn map_event<A, B>(event: Event<A>, f: impl Fn(A) -> B) -> Event<B> {
    match event {
        Event::Apply(o) => Event::Apply(f(o)),
        Event::Delete(o) => Event::Delete(f(o)),
        Event::Init => Event::Init,
        Event::InitApply(o) => Event::InitApply(f(o)),
        Event::InitDone => Event::InitDone,
    }
}

/// The reduced watch events of every kind, merged.
pub fn watch_all(client: kube::Client) -> BoxStream<'static, KindEvent> {
    let mut watches = Watches {
        client,
        streams: Vec::new(),
    };
    visit_kinds(&mut watches);
    futures::stream::select_all(watches.streams).boxed()
}

/// Feeds the index from reduced watch events: what a relist lists is collected until it is done.
#[derive(Default)]
pub struct WatchFeed {
    relisting: std::collections::BTreeMap<FactKind, Vec<(ObjectKey, Option<Fact>)>>,
}

impl WatchFeed {
    pub fn apply(&mut self, index: &SharedIndex, kind: FactKind, event: Event<Reduced>) {
        match event {
            Event::Apply(Reduced {
                key: Some(key),
                fact: Ok(fact),
            }) => {
                index.update(|i| i.set(kind, key, fact));
            }
            Event::Apply(Reduced { fact: Err(e), .. }) => skip(&e),
            Event::Apply(Reduced { key: None, .. }) => {}
            // A deleted object goes, whatever it said.
            Event::Delete(Reduced { key: Some(key), .. }) => {
                index.update(|i| i.set(kind, key, None));
            }
            Event::Delete(Reduced { key: None, .. }) => {}
            Event::Init => {
                self.relisting.insert(kind, Vec::new());
            }
            Event::InitApply(Reduced { key, fact }) => {
                let listed = self.relisting.entry(kind).or_default();
                match (key, fact) {
                    (Some(key), Ok(Some(fact))) => listed.push((key, Some(fact))),
                    // Listed but contributing nothing: left out, so its old fact goes.
                    (_, Ok(None)) | (None, _) => {}
                    // Listed but unusable: its last good fact stays.
                    (Some(key), Err(e)) => {
                        skip(&e);
                        listed.push((key, None));
                    }
                }
            }
            Event::InitDone => {
                let listed = self.relisting.remove(&kind).unwrap_or_default();
                tracing::debug!(kind = kind.name(), objects = listed.len(), "listed");
                index.update(|i| {
                    i.replace_kind(kind, listed);
                    i.mark_synced(kind);
                });
            }
        }
    }
}

fn skip(e: &ReduceError) {
    tracing::warn!(kind = e.kind, object = %e.object, error = %e, "skipping an object meshd cannot use; its last good version stays");
}

/// Watches the cluster into `index` until `cancel`.
pub async fn run_kube_source(client: kube::Client, index: SharedIndex, cancel: CancellationToken) {
    let mut events = watch_all(client);
    let mut feed = WatchFeed::default();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            next = events.next() => match next {
                None => return,
                Some(KindEvent { kind, event: Ok(event) }) => feed.apply(&index, kind, event),
                Some(KindEvent { kind, event: Err(e) }) => {
                    tracing::warn!(kind = kind.name(), error = %e, "watch failed; retrying");
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use meshd_index::{Index, ServiceKind};
    use meshd_translate::facts::Fact;

    use super::*;

    fn service(name: &str, port: serde_json::Value) -> Reduced {
        let guard: DeserializeGuard<k8s_openapi::api::core::v1::Service> =
            serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "shop"},
                "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": port}]},
            }))
            .unwrap();
        reduce::<ServiceKind>(guard)
    }

    fn port_of(index: &SharedIndex, name: &str) -> Option<u16> {
        index.read(
            |i| match i.get(FactKind::Service, &ObjectKey::new("shop", name)) {
                Some(Fact::Service(s)) => Some(s.ports[0].port),
                _ => None,
            },
        )
    }

    const SERVICE: FactKind = FactKind::Service;

    #[test]
    fn watch_events_reach_the_index_and_bad_objects_are_skipped() {
        let index = SharedIndex::new(Index::new([SERVICE]));
        let mut feed = WatchFeed::default();
        feed.apply(&index, SERVICE, Event::Init);
        feed.apply(&index, SERVICE, Event::InitApply(service("web", 80.into())));
        let bad = service("bad", "eighty".into());
        let err = bad.fact.as_ref().unwrap_err().to_string();
        assert!(
            err.starts_with("Service shop/bad: cannot decode: "),
            "{err}"
        );
        feed.apply(&index, SERVICE, Event::InitApply(bad));
        assert!(!index.read(Index::synced), "not complete before InitDone");
        feed.apply(&index, SERVICE, Event::InitDone);
        assert!(index.read(Index::synced));
        assert_eq!(port_of(&index, "web"), Some(80));
        assert_eq!(port_of(&index, "bad"), None);

        // A later bad update keeps the last good fact; a delete removes it.
        feed.apply(&index, SERVICE, Event::Apply(service("web", "x".into())));
        assert_eq!(port_of(&index, "web"), Some(80));
        feed.apply(&index, SERVICE, Event::Apply(service("web", 8080.into())));
        assert_eq!(port_of(&index, "web"), Some(8080));
        feed.apply(&index, SERVICE, Event::Delete(service("web", "x".into())));
        assert_eq!(port_of(&index, "web"), None);
    }

    #[test]
    fn a_relist_drops_objects_deleted_while_disconnected_and_keeps_unusable_ones() {
        let index = SharedIndex::new(Index::new([SERVICE]));
        let mut feed = WatchFeed::default();
        feed.apply(&index, SERVICE, Event::Apply(service("old", 80.into())));
        feed.apply(&index, SERVICE, Event::Apply(service("kept", 81.into())));
        feed.apply(&index, SERVICE, Event::Init);
        feed.apply(&index, SERVICE, Event::InitApply(service("new", 82.into())));
        feed.apply(
            &index,
            SERVICE,
            Event::InitApply(service("kept", "x".into())),
        );
        feed.apply(&index, SERVICE, Event::InitDone);
        assert_eq!(port_of(&index, "old"), None, "gone while disconnected");
        assert_eq!(port_of(&index, "new"), Some(82));
        assert_eq!(port_of(&index, "kept"), Some(81), "its last good fact");
    }
}
