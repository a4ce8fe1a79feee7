//! A Warning Event on a proxy's Pod when the proxy rejects its config (a NACK), with Envoy's error: what
//! `kubectl describe pod` shows a person who asks why a change did not reach it.
//!
//! The xDS server publishes one [`NackNotice`] per NACK episode (the first NACK of a type since it was
//! last ACKed on the stream). On top of that, [`NackLimiter`] allows one Event per pod and type per
//! [`EVENT_INTERVAL`], so a proxy that reconnects and rejects every push cannot flood the namespace.
//! Every replica reports the NACKs on its own streams: they are facts about those streams, not desired
//! state, so this needs no leadership.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::Api;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use meshd_api::syncz::{NackNotice, XdsType};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// The Event's reason.
pub const REASON: &str = "XdsConfigRejected";

/// At most one Event per pod and xDS type in this long.
pub const EVENT_INTERVAL: Duration = Duration::from_secs(300);

/// events.k8s.io/v1 refuses a `note` longer than this (bytes).
const NOTE_MAX: usize = 1024;

/// Which NACKs become Events: one per (namespace, pod, type) per interval.
#[derive(Debug)]
pub struct NackLimiter {
    interval: Duration,
    last: HashMap<(String, String, XdsType), Instant>,
}

impl NackLimiter {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: HashMap::new(),
        }
    }

    /// Whether `notice` gets an Event at `now`; remembers it when it does.
    pub fn allow(&mut self, notice: &NackNotice, now: Instant) -> bool {
        let interval = self.interval;
        // Forget what can no longer hold anything back, so the map stays as small as the active NACKs.
        self.last.retain(|_, at| now.duration_since(*at) < interval);
        let key = (
            notice.namespace.clone(),
            notice.pod.clone(),
            notice.xds_type,
        );
        if self.last.contains_key(&key) {
            return false;
        }
        self.last.insert(key, now);
        true
    }
}

/// The Event's note: type, rejected version and Envoy's error, cut to what the API server accepts.
pub fn note(notice: &NackNotice) -> String {
    let mut note = format!(
        "the proxy rejected its {} config (version {}): {}",
        notice.xds_type.as_str(),
        notice.nack.version,
        notice.nack.detail
    );
    if note.len() > NOTE_MAX {
        let mut end = NOTE_MAX - 3;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

/// Turns `nacks` into Warning Events on the proxies' Pods until `cancel`. `instance` names this replica
/// in the Events' reporting instance.
pub async fn run(
    client: kube::Client,
    instance: String,
    mut nacks: broadcast::Receiver<NackNotice>,
    interval: Duration,
    cancel: CancellationToken,
) {
    let reporter = Reporter {
        controller: "meshd-xds".into(),
        instance: Some(instance),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let mut limiter = NackLimiter::new(interval);
    loop {
        let notice = tokio::select! {
            () = cancel.cancelled() => return,
            next = nacks.recv() => match next {
                Ok(notice) => notice,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "NACKs arrived faster than Events could be written; some got none");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if !notice.pod_found || !limiter.allow(&notice, Instant::now()) {
            continue;
        }
        publish(&client, &recorder, &notice).await;
    }
}

async fn publish(client: &kube::Client, recorder: &Recorder, notice: &NackNotice) {
    // The Pod's uid makes the Event show in `kubectl describe pod` (it matches on uid).
    let pods: Api<Pod> = Api::namespaced(client.clone(), &notice.namespace);
    let pod = match pods.get_opt(&notice.pod).await {
        Ok(Some(pod)) => pod,
        Ok(None) => {
            tracing::debug!(node = %notice.node_id, "the NACKing proxy's Pod is gone; no Event");
            return;
        }
        Err(error) => {
            tracing::warn!(node = %notice.node_id, %error, "cannot read the NACKing proxy's Pod; no Event");
            return;
        }
    };
    let regarding = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(notice.pod.clone()),
        namespace: Some(notice.namespace.clone()),
        uid: pod.metadata.uid,
        ..ObjectReference::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: REASON.into(),
        note: Some(note(notice)),
        action: "PushConfig".into(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &regarding).await {
        tracing::warn!(node = %notice.node_id, %error, reason = REASON, "cannot publish Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshd_api::syncz::{Nack, Timestamp};

    fn notice(pod: &str, ty: XdsType, detail: &str) -> NackNotice {
        NackNotice {
            node_id: format!("{pod}.shop"),
            pod: pod.into(),
            namespace: "shop".into(),
            pod_found: true,
            xds_type: ty,
            nack: Nack {
                version: "v7".into(),
                nonce: "1-3".into(),
                detail: detail.into(),
                at: Timestamp::UNIX_EPOCH,
            },
        }
    }

    #[test]
    fn one_event_per_pod_and_type_per_interval() {
        let mut l = NackLimiter::new(Duration::from_secs(300));
        let t0 = Instant::now();
        assert!(l.allow(&notice("web-1", XdsType::Cds, "x"), t0));
        assert!(!l.allow(
            &notice("web-1", XdsType::Cds, "y"),
            t0 + Duration::from_secs(10)
        ));
        assert!(
            l.allow(&notice("web-1", XdsType::Lds, "x"), t0),
            "another type"
        );
        assert!(
            l.allow(&notice("web-2", XdsType::Cds, "x"), t0),
            "another pod"
        );
        assert!(l.allow(
            &notice("web-1", XdsType::Cds, "z"),
            t0 + Duration::from_secs(300)
        ));
    }

    #[test]
    fn the_note_names_type_version_and_error_and_fits_the_api() {
        let n = note(&notice(
            "web-1",
            XdsType::Lds,
            "Proto constraint validation failed",
        ));
        assert_eq!(
            n,
            "the proxy rejected its LDS config (version v7): Proto constraint validation failed"
        );
        let long = note(&notice("web-1", XdsType::Cds, &"é".repeat(2000)));
        assert!(
            long.len() <= NOTE_MAX && long.ends_with("..."),
            "{}",
            long.len()
        );
    }
}
