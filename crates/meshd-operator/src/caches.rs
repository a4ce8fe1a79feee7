//! The leader's caches: reflector stores fed by watches, so a reconcile reads the cluster from memory
//! (a no-op reconcile sends no request at all). [`Caches::watch`] returns the stores and the [`Feeds`]
//! that fill them: the Controller consumes the owned kinds' feeds as its triggers
//! ([`crate::reconcile::run_controller`]); tests drive them alone ([`Feeds::drive`]) to call the
//! reconcile directly.

use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use meshd_api::names;
use serde::de::DeserializeOwned;

use crate::counts::{self, Tally};
use crate::desired::{MANAGED_SELECTOR, ObjectKind};

/// One kind's changes as the Controller wants them.
pub type Changes<K> = BoxStream<'static, Result<K, watcher::Error>>;

#[derive(Clone)]
pub struct Caches {
    pub tally: Tally,
    /// Secret meshd-webhook-tls.
    pub webhook_secret: Store<Secret>,
    /// The objects Meshes own (label `app.kubernetes.io/managed-by=meshd`).
    pub configmaps: Store<ConfigMap>,
    pub deployments: Store<Deployment>,
    pub services: Store<Service>,
    pub webhooks: Store<MutatingWebhookConfiguration>,
}

/// The watches behind [`Caches`]; nothing is cached until they are polled.
pub struct Feeds {
    pub configmaps: Changes<ConfigMap>,
    pub deployments: Changes<Deployment>,
    pub services: Changes<Service>,
    pub webhooks: Changes<MutatingWebhookConfiguration>,
    pub webhook_secret: Changes<Secret>,
    /// Watches that trigger no reconcile themselves (the counts).
    pub background: Vec<BoxFuture<'static, ()>>,
}

fn feed<K>(api: Api<K>, config: watcher::Config) -> (Store<K>, Changes<K>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let changes = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .touched_objects()
        .boxed();
    (store, changes)
}

impl Caches {
    pub fn watch(client: &kube::Client) -> (Self, Feeds) {
        let owned = watcher::Config::default().labels(MANAGED_SELECTOR);
        let (configmaps, configmap_feed) = feed(
            Api::<ConfigMap>::namespaced(client.clone(), names::SYSTEM_NAMESPACE),
            owned.clone(),
        );
        let (deployments, deployment_feed) =
            feed(Api::<Deployment>::all(client.clone()), owned.clone());
        let (services, service_feed) = feed(Api::<Service>::all(client.clone()), owned.clone());
        let (webhooks, webhook_feed) = feed(
            Api::<MutatingWebhookConfiguration>::all(client.clone()),
            owned,
        );
        let (webhook_secret, secret_feed) = feed(
            Api::<Secret>::namespaced(client.clone(), names::SYSTEM_NAMESPACE),
            watcher::Config::default()
                .fields(&format!("metadata.name={}", names::WEBHOOK_TLS_SECRET)),
        );
        let (leases, lease_feed) = feed(
            Api::<Lease>::namespaced(client.clone(), names::SYSTEM_NAMESPACE),
            watcher::Config::default().labels(counts::LABEL_XDS_REPLICA),
        );
        let (pods, pod_feed) = feed(
            Api::<PartialObjectMeta<Pod>>::all(client.clone()),
            watcher::Config::default().labels(counts::INJECTED_POD_SELECTOR),
        );
        let caches = Self {
            tally: Tally { leases, pods },
            webhook_secret,
            configmaps,
            deployments,
            services,
            webhooks,
        };
        let feeds = Feeds {
            configmaps: configmap_feed,
            deployments: deployment_feed,
            services: service_feed,
            webhooks: webhook_feed,
            webhook_secret: secret_feed,
            background: vec![
                drain("replica Leases", lease_feed),
                drain("injected pods", pod_feed),
            ],
        };
        (caches, feeds)
    }

    /// Waits (at most `limit`) until every watch listed once: before that, a missing object in a store
    /// does not mean a missing object in the cluster.
    pub async fn wait_until_ready(&self, limit: Duration) -> bool {
        let all = async {
            let _ = self.webhook_secret.wait_until_ready().await;
            let _ = self.configmaps.wait_until_ready().await;
            let _ = self.deployments.wait_until_ready().await;
            let _ = self.services.wait_until_ready().await;
            let _ = self.webhooks.wait_until_ready().await;
            let _ = self.tally.leases.wait_until_ready().await;
            let _ = self.tally.pods.wait_until_ready().await;
        };
        tokio::time::timeout(limit, all).await.is_ok()
    }

    /// The cached object of `kind`, as JSON (what the API server would answer to a GET).
    pub fn live(
        &self,
        kind: ObjectKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<serde_json::Value> {
        fn get<K>(
            store: &Store<K>,
            namespace: Option<&str>,
            name: &str,
        ) -> Option<serde_json::Value>
        where
            K: Resource<DynamicType = ()> + Clone + serde::Serialize,
        {
            let mut key = ObjectRef::new(name);
            if let Some(ns) = namespace {
                key = key.within(ns);
            }
            store.get(&key).and_then(|o| serde_json::to_value(&*o).ok())
        }
        match kind {
            ObjectKind::ConfigMap => get(&self.configmaps, namespace, name),
            ObjectKind::Deployment => get(&self.deployments, namespace, name),
            ObjectKind::Service => get(&self.services, namespace, name),
            ObjectKind::MutatingWebhookConfiguration => get(&self.webhooks, namespace, name),
        }
    }

    /// `(namespace, name)` of the cached `kind` objects carrying every `label=value` of `labels`.
    pub fn labelled(&self, kind: ObjectKind, labels: &[(&str, &str)]) -> Vec<(String, String)> {
        fn pick<K: Resource<DynamicType = ()> + Clone>(
            store: &Store<K>,
            labels: &[(&str, &str)],
        ) -> Vec<(String, String)> {
            store
                .state()
                .iter()
                .filter(|o| {
                    let have = o.labels();
                    labels
                        .iter()
                        .all(|(k, v)| have.get(*k).is_some_and(|h| v.is_empty() || h == v))
                })
                .map(|o| (o.namespace().unwrap_or_default(), o.name_any()))
                .collect()
        }
        match kind {
            ObjectKind::ConfigMap => pick(&self.configmaps, labels),
            ObjectKind::Deployment => pick(&self.deployments, labels),
            ObjectKind::Service => pick(&self.services, labels),
            ObjectKind::MutatingWebhookConfiguration => pick(&self.webhooks, labels),
        }
    }
}

impl Feeds {
    /// Runs every watch until it ends (never, unless dropped): for callers without a Controller.
    pub async fn drive(self) {
        let mut all = self.background;
        all.push(drain("ConfigMaps", self.configmaps));
        all.push(drain("Deployments", self.deployments));
        all.push(drain("Services", self.services));
        all.push(drain("MutatingWebhookConfigurations", self.webhooks));
        all.push(drain("webhook Secret", self.webhook_secret));
        futures::future::join_all(all).await;
    }
}

fn drain<T: Send, E: std::fmt::Display + Send>(
    what: &'static str,
    stream: impl futures::Stream<Item = Result<T, E>> + Send + 'static,
) -> BoxFuture<'static, ()> {
    Box::pin(stream.for_each(move |event| {
        if let Err(error) = event {
            tracing::warn!(watch = what, %error, "watch failed; retrying");
        }
        futures::future::ready(())
    }))
}
