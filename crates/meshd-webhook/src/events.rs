//! Events on the pod's owner: through kube's Recorder in the controller ([`RecorderEvents`]), as log
//! lines in the standalone webhook ([`LogEvents`]). Never called for a dry run.
//!
//! The pod does not exist yet when the webhook sees it, so the Event goes on its owner (ReplicaSet,
//! Job…); a bare pod gets a log line only. The webhook calls these on the request path, so
//! [`RecorderEvents`] only queues: one task publishes, and a full queue drops (logged).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use meshd_inject::SkipReason;
use meshd_inject::review::PodRef;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Receives what happened to each pod CREATE. Called on the request path: implementations must not
/// block (hand the Event to a task or a channel).
pub trait InjectionEvents: Send + Sync + 'static {
    fn injected(&self, pod: &PodRef);
    fn skipped(&self, pod: &PodRef, reason: SkipReason);
    /// The pod was refused (bad override annotations); `message` names each one.
    fn refused(&self, pod: &PodRef, message: &str);
}

/// Events as log lines, for `meshd webhook` (which has no API client).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogEvents;

fn owner(pod: &PodRef) -> String {
    pod.owner
        .as_ref()
        .map(|o| format!("{}/{}", o.kind, o.name))
        .unwrap_or_else(|| "-".into())
}

impl InjectionEvents for LogEvents {
    fn injected(&self, pod: &PodRef) {
        tracing::info!(pod = %pod.display_name(), owner = %owner(pod), "event Injected");
    }

    fn skipped(&self, pod: &PodRef, reason: SkipReason) {
        tracing::info!(pod = %pod.display_name(), owner = %owner(pod), reason = reason.label(), "event InjectionSkipped");
    }

    fn refused(&self, pod: &PodRef, message: &str) {
        tracing::warn!(pod = %pod.display_name(), owner = %owner(pod), message, "event InjectionRefused");
    }
}

const QUEUE: usize = 256;

/// Events on the pod's owner, published by a background task.
pub struct RecorderEvents {
    queue: mpsc::Sender<(ObjectReference, Event)>,
}

impl RecorderEvents {
    /// Starts the publishing task (until `cancel`).
    pub fn start(client: kube::Client, instance: String, cancel: CancellationToken) -> Self {
        let reporter = Reporter {
            controller: "meshd-injector".into(),
            instance: Some(instance),
        };
        let recorder = Recorder::new(client, reporter);
        let (queue, mut rx) = mpsc::channel::<(ObjectReference, Event)>(QUEUE);
        tokio::spawn(async move {
            loop {
                let (owner, event) = tokio::select! {
                    () = cancel.cancelled() => return,
                    next = rx.recv() => match next {
                        Some(item) => item,
                        None => return,
                    },
                };
                if let Err(e) = recorder.publish(&event, &owner).await {
                    tracing::warn!(kind = ?owner.kind, name = ?owner.name, reason = %event.reason, error = %e, "cannot publish Event");
                }
            }
        });
        Self { queue }
    }

    fn send(&self, pod: &PodRef, type_: EventType, reason: &str, note: String) {
        let Some(owner) = owner_reference(pod) else {
            return;
        };
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Inject".into(),
            secondary: None,
        };
        if self.queue.try_send((owner, event)).is_err() {
            tracing::warn!(pod = %pod.display_name(), reason, "Event queue full; Event dropped");
        }
    }
}

/// The pod's controlling owner as an Event's `regarding`, in the pod's namespace.
pub fn owner_reference(pod: &PodRef) -> Option<ObjectReference> {
    let owner = pod.owner.as_ref()?;
    Some(ObjectReference {
        api_version: Some(owner.api_version.clone()),
        kind: Some(owner.kind.clone()),
        name: Some(owner.name.clone()),
        namespace: Some(pod.namespace.clone()),
        uid: Some(owner.uid.clone()),
        ..ObjectReference::default()
    })
}

impl InjectionEvents for RecorderEvents {
    fn injected(&self, pod: &PodRef) {
        LogEvents.injected(pod);
        let note = format!("sidecar injected into pod {}", pod.display_name());
        self.send(pod, EventType::Normal, "Injected", note);
    }

    fn skipped(&self, pod: &PodRef, reason: SkipReason) {
        LogEvents.skipped(pod, reason);
        let note = format!(
            "pod {}: injection skipped ({})",
            pod.display_name(),
            reason.label()
        );
        self.send(pod, EventType::Normal, "InjectionSkipped", note);
    }

    fn refused(&self, pod: &PodRef, message: &str) {
        LogEvents.refused(pod, message);
        let note = format!("pod {} refused: {message}", pod.display_name());
        self.send(pod, EventType::Warning, "InjectionRefused", note);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    #[test]
    fn the_event_goes_on_the_owner_in_the_pods_namespace() {
        let mut pod = PodRef {
            namespace: "shop".into(),
            name: None,
            generate_name: Some("web-7d9f-".into()),
            owner: None,
        };
        assert_eq!(owner_reference(&pod), None, "a bare pod gets no Event");
        pod.owner = Some(OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "web-7d9f".into(),
            uid: "u-1".into(),
            controller: Some(true),
            ..OwnerReference::default()
        });
        let r = owner_reference(&pod).expect("owner");
        assert_eq!(r.kind.as_deref(), Some("ReplicaSet"));
        assert_eq!(r.name.as_deref(), Some("web-7d9f"));
        assert_eq!(r.namespace.as_deref(), Some("shop"));
        assert_eq!(r.uid.as_deref(), Some("u-1"));
    }
}
