//! The `Mesh` custom resource (`meshd.io/v1alpha1`, cluster-scoped, short name `mesh`). SPEC.md §3.
//!
//! Every optional field has a serde default, so a parsed `MeshSpec` is already the resolved settings the
//! webhook and the xDS server read (the operator writes it, defaults applied, to ConfigMap
//! `meshd-mesh-<name>`). The same defaults appear in the CRD schema, so `kubectl get -o yaml` shows them.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One port number, 1–65535.
pub type Port = u16;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "meshd.io",
    version = "v1alpha1",
    kind = "Mesh",
    plural = "meshes",
    shortname = "mesh",
    status = "MeshStatus",
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"MTLS","type":"string","jsonPath":".status.mtls.summary"}"#,
    printcolumn = r#"{"name":"GATEWAYS","type":"string","jsonPath":".status.gatewayReplicas"}"#,
    printcolumn = r#"{"name":"PROXIES","type":"integer","jsonPath":".status.connectedProxies"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
// No `reason: FieldValueDuplicate`: the API server turns that reason into `Duplicate value: "object"` and
// drops the message. `messageExpression` names the gateway; `message` is the fallback.
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.gateways) || self.gateways.all(g, self.gateways.exists_one(h, h.name == g.name && h.__namespace__ == g.__namespace__))",
        "message": "spec.gateways: each gateway needs a unique name within its namespace",
        "messageExpression": "'spec.gateways: gateway ' + self.gateways.filter(g, self.gateways.filter(h, h.name == g.name && h.__namespace__ == g.__namespace__).size() > 1).map(g, '\"' + g.__namespace__ + '/' + g.name + '\"')[0] + ' appears more than once: each gateway needs a unique name within its namespace'",
        "fieldPath": ".gateways"
    }
]))]
pub struct MeshSpec {
    /// SPIFFE trust domain of workload identities: spiffe://<trustDomain>/ns/<ns>/sa/<sa>.
    #[serde(default = "default_trust_domain")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub trust_domain: String,
    /// The sidecar proxy injected into pods.
    #[serde(default)]
    pub proxy: ProxySpec,
    /// How pods are injected.
    #[serde(default)]
    pub injection: InjectionSpec,
    /// How the init container captures the pod's traffic.
    #[serde(default)]
    pub traffic_capture: TrafficCaptureSpec,
    /// Mutual TLS between sidecars.
    #[serde(default)]
    pub mtls: MtlsSpec,
    /// What happens to traffic towards destinations the mesh does not know.
    #[serde(default)]
    pub outbound_traffic_policy: OutboundTrafficPolicy,
    /// Ingress/egress gateways: one Envoy Deployment and Service each, owned by the Mesh.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub gateways: Vec<GatewaySpec>,
}

impl Default for MeshSpec {
    fn default() -> Self {
        Self {
            trust_domain: default_trust_domain(),
            proxy: ProxySpec::default(),
            injection: InjectionSpec::default(),
            traffic_capture: TrafficCaptureSpec::default(),
            mtls: MtlsSpec::default(),
            outbound_traffic_policy: OutboundTrafficPolicy::default(),
            gateways: Vec::new(),
        }
    }
}

fn default_trust_domain() -> String {
    crate::names::DEFAULT_TRUST_DOMAIN.to_string()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxySpec {
    /// Proxy image; unset means the meshd-proxy image of the running meshd version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Envoy's log level.
    #[serde(default)]
    pub log_level: LogLevel,
    /// Requests and limits of the sidecar container.
    #[serde(default = "default_proxy_resources")]
    pub resources: ResourceRequirements,
    /// Envoy worker threads; 0 means one per core.
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 0, max = 64))]
    pub concurrency: u32,
    /// uid and gid the proxy runs as; its traffic is never captured.
    #[serde(default = "default_proxy_uid")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub uid: i64,
}

impl Default for ProxySpec {
    fn default() -> Self {
        Self {
            image: None,
            log_level: LogLevel::default(),
            resources: default_proxy_resources(),
            concurrency: default_concurrency(),
            uid: default_proxy_uid(),
        }
    }
}

impl ProxySpec {
    /// The image to inject: the spec's, or this meshd version's meshd-proxy.
    pub fn image_or_default(&self) -> String {
        self.image
            .clone()
            .unwrap_or_else(crate::names::default_proxy_image)
    }
}

fn default_concurrency() -> u32 {
    2
}

fn default_proxy_uid() -> i64 {
    i64::from(crate::names::PROXY_UID)
}

/// 100m CPU / 128Mi requested, 2 CPU / 1Gi limit: Istio's sidecar defaults.
pub fn default_proxy_resources() -> ResourceRequirements {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let q = |s: &str| Quantity(s.to_string());
    ResourceRequirements {
        requests: Some(
            [
                ("cpu".to_string(), q("100m")),
                ("memory".to_string(), q("128Mi")),
            ]
            .into(),
        ),
        limits: Some(
            [
                ("cpu".to_string(), q("2")),
                ("memory".to_string(), q("1Gi")),
            ]
            .into(),
        ),
        ..Default::default()
    }
}

/// Envoy's log levels. (`off` is left out on purpose: YAML 1.1 readers such as kubectl take a bare `off`
/// for the boolean false.)
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warning,
    Error,
    Critical,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Trace,
            Self::Debug,
            Self::Info,
            Self::Warning,
            Self::Error,
            Self::Critical,
        ]
        .into_iter()
        .find(|l| l.as_str() == s)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InjectionSpec {
    /// Inject the proxy as a native sidecar (init container with restartPolicy Always).
    /// `auto`: native when the API server is 1.29 or newer, or its version is unknown.
    #[serde(default)]
    pub native_sidecar: NativeSidecar,
    /// Start app containers only once the proxy is ready.
    #[serde(default = "default_true")]
    pub hold_application_until_proxy_starts: bool,
    /// What the API server does when the webhook cannot be reached.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
}

impl Default for InjectionSpec {
    fn default() -> Self {
        Self {
            native_sidecar: NativeSidecar::default(),
            hold_application_until_proxy_starts: true,
            failure_policy: FailurePolicy::default(),
        }
    }
}

fn default_true() -> bool {
    true
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NativeSidecar {
    #[default]
    Auto,
    True,
    False,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum FailurePolicy {
    #[default]
    Fail,
    Ignore,
}

impl FailurePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "Fail",
            Self::Ignore => "Ignore",
        }
    }
}

/// An IPv4 or IPv6 CIDR as text; validated in the schema by CEL and again by [`crate::settings`].
pub type Cidr = String;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficCaptureSpec {
    /// `iptables` (iptables-restore, legacy or nft backend detected), `nftables` (native), or `none`.
    #[serde(default)]
    pub mode: CaptureMode,
    /// Inbound ports never redirected to the proxy.
    #[serde(default)]
    #[schemars(length(max = 64), inner(range(min = 1)))]
    pub exclude_inbound_ports: Vec<Port>,
    /// Outbound ports never redirected to the proxy.
    #[serde(default)]
    #[schemars(length(max = 64), inner(range(min = 1)))]
    pub exclude_outbound_ports: Vec<Port>,
    /// Outbound destinations never redirected to the proxy.
    #[serde(default, rename = "excludeOutboundCIDRs")]
    #[schemars(length(max = 64), inner(length(max = 43)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(c, isCIDR(c))",
        "message": "spec.trafficCapture.excludeOutboundCIDRs: every entry must be an IPv4 or IPv6 CIDR such as 10.0.0.0/8",
        "messageExpression": "'spec.trafficCapture.excludeOutboundCIDRs: ' + self.filter(c, !isCIDR(c)).map(c, '\"' + c + '\"').join(', ') + ': every entry must be an IPv4 or IPv6 CIDR such as 10.0.0.0/8'"
    }]))]
    pub exclude_outbound_cidrs: Vec<Cidr>,
    /// Only these outbound destinations are redirected; `*` (the default) means all.
    #[serde(default = "default_include_cidrs", rename = "includeOutboundCIDRs")]
    #[schemars(length(max = 64), inner(length(max = 43)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(c, c == '*' || isCIDR(c))",
        "message": "spec.trafficCapture.includeOutboundCIDRs: every entry must be '*' or an IPv4 or IPv6 CIDR such as 10.0.0.0/8",
        "messageExpression": "'spec.trafficCapture.includeOutboundCIDRs: ' + self.filter(c, c != '*' && !isCIDR(c)).map(c, '\"' + c + '\"').join(', ') + ': every entry must be \\'*\\' or an IPv4 or IPv6 CIDR such as 10.0.0.0/8'"
    }]))]
    pub include_outbound_cidrs: Vec<Cidr>,
}

impl Default for TrafficCaptureSpec {
    fn default() -> Self {
        Self {
            mode: CaptureMode::default(),
            exclude_inbound_ports: Vec::new(),
            exclude_outbound_ports: Vec::new(),
            exclude_outbound_cidrs: Vec::new(),
            include_outbound_cidrs: default_include_cidrs(),
        }
    }
}

fn default_include_cidrs() -> Vec<Cidr> {
    vec!["*".to_string()]
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMode {
    #[default]
    Iptables,
    Nftables,
    None,
}

impl CaptureMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Iptables => "iptables",
            Self::Nftables => "nftables",
            Self::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Iptables, Self::Nftables, Self::None]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MtlsSpec {
    #[serde(default)]
    pub mode: MtlsMode,
    /// Lifetime of workload certificates, `<n>s|m|h|d` from `60s` to `90d`; agents renew at half-life.
    /// A change applies from the next issuance.
    // Left out of the resolved settings when it is the default, so that settings written before the
    // field existed read the same.
    #[serde(
        default = "default_certificate_ttl",
        rename = "certificateTTL",
        skip_serializing_if = "is_default_certificate_ttl"
    )]
    #[schemars(
        length(min = 2, max = 8),
        regex(pattern = r"^[1-9][0-9]{0,6}(s|m|h|d)$"),
        // schemars leaves out a default that `skip_serializing_if` skips; the CRD shows it anyway.
        extend("default" = "24h"),
        extend("x-kubernetes-validations" = [{
            "rule": "self.endsWith('d') ? int(self.substring(0, size(self) - 1)) <= 90 : duration(self) >= duration('60s') && duration(self) <= duration('2160h')",
            "message": "spec.mtls.certificateTTL must be between 60s and 90d"
        }])
    )]
    pub certificate_ttl: String,
}

impl Default for MtlsSpec {
    fn default() -> Self {
        Self {
            mode: MtlsMode::default(),
            certificate_ttl: default_certificate_ttl(),
        }
    }
}

impl MtlsSpec {
    /// The certificate lifetime; `None` when `certificateTTL` is not a valid duration in range.
    pub fn certificate_ttl(&self) -> Option<std::time::Duration> {
        parse_certificate_ttl(&self.certificate_ttl)
    }
}

/// The default workload certificate lifetime (SPEC §9).
pub const DEFAULT_CERTIFICATE_TTL: &str = "24h";
/// The shortest and longest `certificateTTL` (SPEC §9: `60s`…`90d`).
pub const MIN_CERTIFICATE_TTL: std::time::Duration = std::time::Duration::from_secs(60);
pub const MAX_CERTIFICATE_TTL: std::time::Duration = std::time::Duration::from_secs(90 * 86_400);

fn default_certificate_ttl() -> String {
    DEFAULT_CERTIFICATE_TTL.to_string()
}

fn is_default_certificate_ttl(ttl: &str) -> bool {
    ttl == DEFAULT_CERTIFICATE_TTL
}

/// `<n>s`, `<n>m`, `<n>h` or `<n>d` between 60 s and 90 days: the form the CRD schema accepts.
pub fn parse_certificate_ttl(text: &str) -> Option<std::time::Duration> {
    let unit = text.chars().last()?;
    let seconds_per_unit: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return None,
    };
    let number = &text[..text.len() - 1];
    if number.is_empty() || number.starts_with('0') || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ttl =
        std::time::Duration::from_secs(number.parse::<u64>().ok()?.checked_mul(seconds_per_unit)?);
    (MIN_CERTIFICATE_TTL..=MAX_CERTIFICATE_TTL)
        .contains(&ttl)
        .then_some(ttl)
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum MtlsMode {
    /// Servers accept mTLS and plaintext; clients use mTLS towards meshed endpoints.
    #[default]
    Permissive,
    /// Servers accept only mTLS.
    Strict,
    /// No mTLS; the generated config needs no SDS.
    Disable,
}

impl MtlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Permissive => "PERMISSIVE",
            Self::Strict => "STRICT",
            Self::Disable => "DISABLE",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundTrafficPolicy {
    /// Unknown destinations pass through the proxy untouched.
    #[default]
    AllowAny,
    /// Unknown destinations are refused.
    RegistryOnly,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Name of the gateway's Deployment and Service.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Namespace of the Deployment and Service.
    #[serde(default = "default_gateway_namespace")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: String,
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    #[serde(default)]
    pub service: GatewayServiceSpec,
    #[serde(default = "default_proxy_resources")]
    pub resources: ResourceRequirements,
}

fn default_gateway_namespace() -> String {
    crate::names::SYSTEM_NAMESPACE.to_string()
}

fn default_replicas() -> i32 {
    1
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.ports.all(p, self.ports.exists_one(q, q.name == p.name))",
    "message": "service.ports: each port needs a unique name"
}]))]
pub struct GatewayServiceSpec {
    #[serde(default, rename = "type")]
    pub service_type: GatewayServiceType,
    #[serde(default = "default_gateway_ports")]
    #[schemars(length(min = 1, max = 16))]
    pub ports: Vec<GatewayPort>,
}

impl Default for GatewayServiceSpec {
    fn default() -> Self {
        Self {
            service_type: GatewayServiceType::default(),
            ports: default_gateway_ports(),
        }
    }
}

fn default_gateway_ports() -> Vec<GatewayPort> {
    vec![
        GatewayPort {
            name: "http2".into(),
            port: 80,
            target_port: 8080,
        },
        GatewayPort {
            name: "https".into(),
            port: 443,
            target_port: 8443,
        },
    ]
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum GatewayServiceType {
    #[default]
    LoadBalancer,
    ClusterIP,
    NodePort,
}

impl GatewayServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoadBalancer => "LoadBalancer",
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayPort {
    /// Port name; its prefix (http, http2, grpc, https, tls, tcp) gives the protocol, as for Services.
    #[schemars(
        length(min = 1, max = 15),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    #[schemars(range(min = 1))]
    pub port: Port,
    /// Port Envoy listens on inside the gateway pod (non-root, so above 1024).
    #[schemars(range(min = 1025))]
    pub target_port: Port,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeshStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, ControlPlaneReady, WebhookReady, GatewaysReady.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub gateways: Vec<GatewayStatus>,
    /// Ready/desired replicas over all gateways, e.g. "2/2", for `kubectl get mesh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_replicas: Option<String>,
    #[serde(default)]
    pub connected_proxies: i64,
    #[serde(default)]
    pub injected_pods: i64,
    /// The mTLS mode in force mesh-wide and what overrides it (SPEC §9); absent until the control
    /// plane has read the PeerAuthentications and pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<crate::security::MeshMtlsStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    pub name: String,
    pub namespace: String,
    pub ready_replicas: i32,
    pub desired_replicas: i32,
}

/// Condition types of `status.conditions`.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const CONTROL_PLANE_READY: &str = "ControlPlaneReady";
    pub const WEBHOOK_READY: &str = "WebhookReady";
    pub const GATEWAYS_READY: &str = "GatewaysReady";
}
