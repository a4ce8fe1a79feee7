//! Whether a pod is injected at all: the rules the handler can evaluate from the request alone.
//! (Namespace labels are the MutatingWebhookConfiguration's selectors' job: the handler never sees them.)

use k8s_openapi::api::core::v1::Pod;
use meshd_api::names;

/// Why a pod was let through without a sidecar. The label is a fixed metric label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// Not a CREATE of a pod (an UPDATE, another resource, a subresource).
    NotPodCreate,
    /// The pod is labelled `meshd.io/inject: "false"`.
    OptedOut,
    /// kube-system, kube-public, kube-node-lease or meshd-system.
    SystemNamespace,
    /// `hostNetwork: true`: capture would rewrite the node's own rules.
    HostNetwork,
    /// The pod already carries `meshd.io/status` or a meshd container.
    AlreadyInjected,
}

impl SkipReason {
    pub const ALL: [Self; 5] = [
        Self::NotPodCreate,
        Self::OptedOut,
        Self::SystemNamespace,
        Self::HostNetwork,
        Self::AlreadyInjected,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::NotPodCreate => "not_pod_create",
            Self::OptedOut => "opted_out",
            Self::SystemNamespace => "system_namespace",
            Self::HostNetwork => "host_network",
            Self::AlreadyInjected => "already_injected",
        }
    }

    /// A sentence for logs and Events.
    pub fn describe(self) -> &'static str {
        match self {
            Self::NotPodCreate => "not a pod CREATE",
            Self::OptedOut => "the pod is labelled meshd.io/inject=false",
            Self::SystemNamespace => "pods in system namespaces are never injected",
            Self::HostNetwork => "hostNetwork pods share the node's network and are never injected",
            Self::AlreadyInjected => "the pod already carries meshd.io/status or a meshd container",
        }
    }
}

/// The first rule that says "leave this pod alone", in a fixed order: already injected first (so that
/// re-injection is always a no-op), then the namespace, then the pod's own opt-out, then hostNetwork.
pub fn skip_reason(pod: &Pod, namespace: &str) -> Option<SkipReason> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let has_meshd_container = spec.is_some_and(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .any(|c| c.name == names::PROXY_CONTAINER || c.name == names::INIT_CONTAINER)
    });
    if meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(names::ANNOTATION_STATUS))
        || has_meshd_container
    {
        return Some(SkipReason::AlreadyInjected);
    }
    if names::NEVER_INJECT_NAMESPACES.contains(&namespace) {
        return Some(SkipReason::SystemNamespace);
    }
    if meta
        .labels
        .as_ref()
        .and_then(|l| l.get(names::LABEL_INJECT))
        .is_some_and(|v| v == "false")
    {
        return Some(SkipReason::OptedOut);
    }
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        return Some(SkipReason::HostNetwork);
    }
    None
}
