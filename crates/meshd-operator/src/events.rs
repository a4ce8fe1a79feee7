//! Events on the Mesh, behind a small trait so tests can record them; production uses kube's Recorder.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// One Event about a Mesh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshEvent {
    pub warning: bool,
    /// `Reconciled`, `GatewayCreated`, `WebhookCertRotated`, `InvalidSpec`, `ReconcileFailed`.
    pub reason: &'static str,
    pub note: String,
}

pub trait EventSink: Send + Sync {
    fn publish<'a>(&'a self, mesh: &'a ObjectReference, event: MeshEvent) -> BoxFuture<'a, ()>;
}

/// Events through the API server (events.k8s.io/v1).
pub struct KubeEvents(pub Recorder);

impl KubeEvents {
    pub fn new(client: kube::Client, identity: &str) -> Self {
        let reporter = Reporter {
            controller: "meshd".into(),
            instance: Some(identity.into()),
        };
        Self(Recorder::new(client, reporter))
    }
}

impl EventSink for KubeEvents {
    fn publish<'a>(&'a self, mesh: &'a ObjectReference, event: MeshEvent) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let ev = Event {
                type_: if event.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: event.reason.into(),
                note: Some(event.note),
                action: "Reconcile".into(),
                secondary: None,
            };
            // An Event that cannot be written must not fail the reconcile.
            if let Err(error) = self.0.publish(&ev, mesh).await {
                tracing::warn!(%error, reason = event.reason, "could not publish event");
            }
        })
    }
}
