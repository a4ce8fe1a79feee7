//! Whether a pod is injected at all: the rules the handler can evaluate from the request alone.
//! (Namespace labels are the MutatingWebhookConfiguration's selectors' job: the handler never sees them.)

use k8s_openapi::api::core::v1::{Container, Pod};
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
    /// The pod already carries another mesh's proxy or init container (istio-proxy, linkerd-init…).
    OtherMesh,
}

impl SkipReason {
    pub const ALL: [Self; 6] = [
        Self::NotPodCreate,
        Self::OptedOut,
        Self::SystemNamespace,
        Self::HostNetwork,
        Self::AlreadyInjected,
        Self::OtherMesh,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::NotPodCreate => "not_pod_create",
            Self::OptedOut => "opted_out",
            Self::SystemNamespace => "system_namespace",
            Self::HostNetwork => "host_network",
            Self::AlreadyInjected => "already_injected",
            Self::OtherMesh => "other_mesh",
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
            Self::OtherMesh => {
                "the pod already carries another mesh's proxy or init container; two meshes cannot capture one pod's traffic"
            }
        }
    }
}

/// Containers other meshes inject. A pod carrying one is left as it is, as Linkerd and Kuma leave a pod
/// that already has a sidecar: it works under that mesh, and a second capture would break it.
pub const OTHER_MESH_CONTAINERS: [&str; 10] = [
    "istio-proxy",
    "istio-init",
    "istio-validation",
    "linkerd-proxy",
    "linkerd-init",
    "linkerd-network-validator",
    "kuma-sidecar",
    "kuma-init",
    "consul-dataplane",
    "consul-connect-inject-init",
];

/// Ports the meshd proxy listens on in every pod (SPEC §5): an app container declaring one of them
/// cannot run beside the proxy.
pub const PROXY_PORTS: [u16; 6] = [
    names::PORT_ENVOY_ADMIN,
    names::PORT_OUTBOUND_CAPTURE,
    names::PORT_INBOUND_CAPTURE,
    names::PORT_AGENT,
    names::PORT_HEALTH,
    names::PORT_ENVOY_STATS,
];

/// Every container of the pod with its field path: `spec.containers[i]`, `spec.initContainers[i]`.
fn containers(pod: &Pod) -> impl Iterator<Item = (String, &Container)> {
    let spec = pod.spec.as_ref();
    let app = spec
        .into_iter()
        .flat_map(|s| s.containers.iter().enumerate())
        .map(|(i, c)| (format!("spec.containers[{i}]"), c));
    let init = spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten().enumerate())
        .map(|(i, c)| (format!("spec.initContainers[{i}]"), c));
    init.chain(app)
}

/// The first container of another mesh, as `spec.containers[1] "istio-proxy"`.
fn other_mesh_container(pod: &Pod) -> Option<String> {
    containers(pod)
        .find(|(_, c)| OTHER_MESH_CONTAINERS.contains(&c.name.as_str()))
        .map(|(field, c)| format!("{field} {:?}", c.name))
}

/// The skip's description for logs, Events and `meshd inject`, naming the container when there is one.
pub fn describe_skip(pod: &Pod, reason: SkipReason) -> String {
    match (reason, other_mesh_container(pod)) {
        (SkipReason::OtherMesh, Some(container)) => format!(
            "the pod already carries another mesh's container {container}; two meshes cannot capture one pod's traffic"
        ),
        _ => reason.describe().to_string(),
    }
}

/// A container port the meshd proxy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConflict {
    /// `spec.containers[0].ports[1].containerPort`
    pub field: String,
    pub container: String,
    pub port: u16,
}

impl std::fmt::Display for PortConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: container {:?} uses port {}, which the meshd proxy listens on",
            self.field, self.container, self.port
        )
    }
}

/// Every container port that the proxy needs, in container order.
pub fn port_conflicts(pod: &Pod) -> Vec<PortConflict> {
    let mut out = Vec::new();
    for (field, c) in containers(pod) {
        for (j, p) in c.ports.iter().flatten().enumerate() {
            if let Some(port) = u16::try_from(p.container_port)
                .ok()
                .filter(|port| PROXY_PORTS.contains(port))
            {
                out.push(PortConflict {
                    field: format!("{field}.ports[{j}].containerPort"),
                    container: c.name.clone(),
                    port,
                });
            }
        }
    }
    out
}

/// The first rule that says "leave this pod alone", in a fixed order: already injected first (so that
/// re-injection is always a no-op), then the namespace, then the pod's own opt-out, then hostNetwork, then
/// another mesh's containers.
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
    if other_mesh_container(pod).is_some() {
        return Some(SkipReason::OtherMesh);
    }
    None
}
