//! The names users and their scripts see: labels, annotations, ports, object names. SPEC.md §1–§7.
//! Everything that crosses a process or API boundary is spelled here once.

/// API group and version of the Mesh resource.
pub const GROUP: &str = "meshd.io";
pub const VERSION: &str = "v1alpha1";
pub const NETWORKING_GROUP: &str = "networking.meshd.io";
pub const SECURITY_GROUP: &str = "security.meshd.io";

/// The namespace the control plane runs in; never injected.
pub const SYSTEM_NAMESPACE: &str = "meshd-system";
/// The control plane's Service (webhook 443, xDS + CA 15012, metrics 15014).
pub const CONTROL_PLANE_SERVICE: &str = "meshd";
/// The Mesh a namespace labelled `meshd.io/inject=enabled` belongs to.
pub const DEFAULT_MESH: &str = "default";
/// Field manager for every server-side apply meshd does.
pub const FIELD_MANAGER: &str = "meshd";
/// Namespaces the webhook never injects into, whatever their labels say.
pub const NEVER_INJECT_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    SYSTEM_NAMESPACE,
];

/// Namespace label (`enabled`/`disabled`) and pod label (`"true"`/`"false"`) that opt in or out.
pub const LABEL_INJECT: &str = "meshd.io/inject";
/// Names the Mesh of a namespace (opt-in for a non-default mesh) and of an injected pod.
pub const LABEL_MESH: &str = "meshd.io/mesh";
/// Set on every object the operator owns, with the Mesh's name as value.
pub const LABEL_OWNED_BY_MESH: &str = "meshd.io/owned-by-mesh";
/// Names the gateway of a gateway Deployment's pods.
pub const LABEL_GATEWAY: &str = "meshd.io/gateway";
pub const LABEL_APP_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// JSON record of what injection added; makes injection idempotent and reversible.
pub const ANNOTATION_STATUS: &str = "meshd.io/status";
pub const ANNOTATION_DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

/// Per-pod proxy overrides, `sidecar.meshd.io/<name>`.
pub const SIDECAR_ANNOTATION_PREFIX: &str = "sidecar.meshd.io/";
pub const ANNOTATION_PROXY_CPU: &str = "sidecar.meshd.io/proxyCPU";
pub const ANNOTATION_PROXY_MEMORY: &str = "sidecar.meshd.io/proxyMemory";
pub const ANNOTATION_PROXY_CPU_LIMIT: &str = "sidecar.meshd.io/proxyCPULimit";
pub const ANNOTATION_PROXY_MEMORY_LIMIT: &str = "sidecar.meshd.io/proxyMemoryLimit";
pub const ANNOTATION_LOG_LEVEL: &str = "sidecar.meshd.io/logLevel";
pub const ANNOTATION_NATIVE_SIDECAR: &str = "sidecar.meshd.io/nativeSidecar";
pub const ANNOTATION_HOLD_APPLICATION: &str = "sidecar.meshd.io/holdApplicationUntilProxyStarts";
/// `"false"` leaves the pod's probes and lifecycle hooks as they are (Istio's `rewriteAppHTTPProbers`).
pub const ANNOTATION_REWRITE_APP_PROBES: &str = "sidecar.meshd.io/rewriteAppProbes";

/// Per-pod capture overrides, `traffic.meshd.io/<name>`.
pub const TRAFFIC_ANNOTATION_PREFIX: &str = "traffic.meshd.io/";
pub const ANNOTATION_EXCLUDE_INBOUND_PORTS: &str = "traffic.meshd.io/excludeInboundPorts";
pub const ANNOTATION_EXCLUDE_OUTBOUND_PORTS: &str = "traffic.meshd.io/excludeOutboundPorts";
pub const ANNOTATION_EXCLUDE_OUTBOUND_CIDRS: &str = "traffic.meshd.io/excludeOutboundCIDRs";
pub const ANNOTATION_INCLUDE_OUTBOUND_CIDRS: &str = "traffic.meshd.io/includeOutboundCIDRs";
pub const ANNOTATION_INCLUDE_INBOUND_PORTS: &str = "traffic.meshd.io/includeInboundPorts";
pub const ANNOTATION_INCLUDE_OUTBOUND_PORTS: &str = "traffic.meshd.io/includeOutboundPorts";
/// `iptables`, `nftables` or `none` for one pod (`none`: no `meshd-init`).
pub const ANNOTATION_CAPTURE_MODE: &str = "traffic.meshd.io/captureMode";

/// Injected container names.
pub const INIT_CONTAINER: &str = "meshd-init";
pub const PROXY_CONTAINER: &str = "meshd-proxy";

/// Data-plane ports (SPEC §5).
pub const PORT_ENVOY_ADMIN: u16 = 15000;
pub const PORT_OUTBOUND_CAPTURE: u16 = 15001;
pub const PORT_INBOUND_CAPTURE: u16 = 15006;
pub const PORT_AGENT: u16 = 15020;
pub const PORT_HEALTH: u16 = 15021;
pub const PORT_ENVOY_STATS: u16 = 15090;
/// The proxy's own ports, never captured inbound.
pub const PROXY_OWN_PORTS: [u16; 3] = [PORT_ENVOY_STATS, PORT_HEALTH, PORT_AGENT];

/// Control-plane ports (SPEC §1).
pub const PORT_XDS: u16 = 15012;
pub const PORT_METRICS: u16 = 15014;
pub const PORT_WEBHOOK_SERVICE: u16 = 443;
pub const PORT_WEBHOOK_CONTAINER: u16 = 9443;
pub const WEBHOOK_PATH: &str = "/inject";

/// The proxy's uid and gid; its traffic is never captured.
pub const PROXY_UID: u32 = 1337;
pub const PROXY_GID: u32 = 1337;

/// Where injected sidecars find the control plane, and the TLS name it presents whatever the address.
pub const DEFAULT_DISCOVERY_ADDRESS: &str = "meshd.meshd-system.svc:15012";
pub const CONTROL_PLANE_SERVER_NAME: &str = "meshd.meshd-system.svc";
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// Audience of the projected ServiceAccount token the agent presents to the CA.
pub const TOKEN_AUDIENCE: &str = "meshd";

/// Objects the operator owns.
pub const CA_ROOT_CONFIGMAP: &str = "meshd-ca-root";
pub const WEBHOOK_TLS_SECRET: &str = "meshd-webhook-tls";
/// Key of the resolved settings inside `meshd-mesh-<name>`.
pub const MESH_CONFIG_KEY: &str = "mesh.yaml";

pub fn mesh_configmap_name(mesh: &str) -> String {
    format!("meshd-mesh-{mesh}")
}

pub fn webhook_configuration_name(mesh: &str) -> String {
    format!("meshd-injector-{mesh}")
}

/// The proxy image used when `spec.proxy.image` is unset: the meshd-proxy image of this meshd version.
pub fn default_proxy_image() -> String {
    format!("ghcr.io/meshd/meshd-proxy:{}", env!("CARGO_PKG_VERSION"))
}

/// The Envoy API version meshd speaks.
pub const ENVOY_API_VERSION: &str = "v3";
