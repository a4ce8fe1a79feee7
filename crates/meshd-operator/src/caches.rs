//! The leader's caches: reflector stores fed by watches, so a reconcile reads the cluster from memory.
//! [`Caches::watch`] returns the stores and the [`Feeds`] that fill them; whoever runs the Controller
//! drives the feeds (tests drive them alone, to call the reconcile directly).

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use meshd_api::names;

use crate::counts::{self, Tally};

#[derive(Clone)]
pub struct Caches {
    pub tally: Tally,
}

/// The watches behind [`Caches`]; nothing is cached until they are driven.
pub struct Feeds(Vec<BoxFuture<'static, ()>>);

impl Caches {
    pub fn watch(client: &kube::Client) -> (Self, Feeds) {
        let (leases, lease_writer) = reflector::store();
        let replicas = watcher::Config::default().labels(counts::LABEL_XDS_REPLICA);
        let lease_feed = watcher(
            Api::<Lease>::namespaced(client.clone(), names::SYSTEM_NAMESPACE),
            replicas,
        )
        .default_backoff()
        .reflect(lease_writer);
        let (pods, pod_writer) = reflector::store();
        let injected = watcher::Config::default().labels(counts::INJECTED_POD_SELECTOR);
        let pod_feed = watcher(Api::<PartialObjectMeta<Pod>>::all(client.clone()), injected)
            .default_backoff()
            .reflect(pod_writer);
        let feeds = vec![
            drain("replica Leases", lease_feed),
            drain("injected pods", pod_feed),
        ];
        (
            Self {
                tally: Tally { leases, pods },
            },
            Feeds(feeds),
        )
    }
}

impl Feeds {
    /// Runs every watch until it ends (never, unless dropped).
    pub async fn drive(self) {
        futures::future::join_all(self.0).await;
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
