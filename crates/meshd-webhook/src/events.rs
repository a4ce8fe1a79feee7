//! Events on the pod's owner. The controller implements [`InjectionEvents`] with kube's Recorder; the
//! standalone webhook logs them ([`LogEvents`]). Never called for a dry run.

use meshd_inject::SkipReason;
use meshd_inject::review::PodRef;

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
