//! What translation reads: small facts about the mesh, reduced from Kubernetes objects (or files of them)
//! by meshd-index's reducers. Translation never sees the objects themselves; each fact holds only what
//! some Envoy resource depends on, so an object change that touches nothing here changes nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use meshd_api::MeshSpec;
use meshd_api::networking::{
    DestinationRuleSpec, GatewaySpec, ServiceEntrySpec, VirtualServiceSpec,
};
use meshd_api::security::authorization_policy::{Action, Rule};
use meshd_api::security::peer_authentication::PeerMtlsMode;
use meshd_api::validate::FieldError;

use crate::Protocol;

/// Namespace and name; cluster-scoped objects (Mesh) have an empty namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// A Service that has a virtual IP or selects pods (ExternalName Services have no fact).
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    /// Cluster IPs, `spec.clusterIP` first; empty for headless Services.
    pub vips: Vec<String>,
    /// TCP ports (UDP and SCTP are not proxied), sorted by port, one per port number.
    pub ports: Vec<ServicePort>,
    pub selector: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServicePort {
    pub port: u16,
    /// The port's name, which EndpointSlice ports refer to; empty when unnamed.
    pub name: String,
    pub protocol: Protocol,
    /// The pod port: a number, or a container port name resolved per pod.
    pub target_port: TargetPort,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TargetPort {
    Number(u16),
    Named(String),
}

/// One EndpointSlice of an IP address type, attached to its Service by `kubernetes.io/service-name`.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointSlice {
    pub service: String,
    pub ports: Vec<EndpointPort>,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EndpointPort {
    pub name: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub addresses: Vec<String>,
    /// `conditions.ready`, true when unset.
    pub ready: bool,
    /// `conditions.serving`, `ready` when unset.
    pub serving: bool,
    pub terminating: bool,
    /// The Pod named by `targetRef`, when it names one.
    pub pod: Option<String>,
}

/// A Pod, as far as its own proxy's config and the endpoints that name it depend on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// `status.podIP` first, then the other `status.podIPs`; empty until the pod has one.
    pub ips: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    /// The `meshd.io/mesh` label: the pod carries a meshd sidecar of that mesh.
    pub mesh: Option<String>,
    /// Named container ports (the first of each name), for Services with a named `targetPort`.
    pub ports: Vec<EndpointPort>,
}

impl Workload {
    pub fn named_port(&self, name: &str) -> Option<u16> {
        self.ports.iter().find(|p| p.name == name).map(|p| p.port)
    }
}

/// A PeerAuthentication: the mTLS mode its workloads accept (SPEC §9).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerAuthentication {
    /// `selector.matchLabels`; empty: the whole namespace (the whole mesh, in meshd-system).
    pub selector: BTreeMap<String, String>,
    /// `mtls.mode`; `Unset` inherits from the enclosing scope.
    pub mode: PeerMtlsMode,
    /// `portLevelMtls`: target (container) port → mode, for workload policies.
    pub ports: BTreeMap<u16, PeerMtlsMode>,
    /// Which of two policies of one scope is older: the oldest wins.
    pub age: Age,
}

/// When an object was made, for "the oldest wins": its `creationTimestamp`, else the name of the file
/// it was read from. Ordered oldest first; objects with a timestamp before those without.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Age {
    /// `(creationTimestamp as Unix seconds) is None`, so that timestamps sort first.
    pub untimed: bool,
    pub created: i64,
    /// The config file, when file-fed; empty otherwise.
    pub file: String,
}

/// An AuthorizationPolicy: who may call the workloads it selects (SPEC §9).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuthorizationPolicy {
    /// `selector.matchLabels`; empty: the whole namespace (the whole mesh, in meshd-system).
    pub selector: BTreeMap<String, String>,
    pub action: Action,
    pub rules: Vec<Rule>,
}

/// A `kubernetes.io/tls` Secret (SPEC §10): a Gateway's certificate, key and, for MUTUAL, client CA,
/// as PEM bytes checked by the reducer. Its Debug never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsCredential {
    /// `tls.crt`: the certificate chain, leaf first.
    pub cert_chain: Vec<u8>,
    /// `tls.key`: the private key.
    pub key: Vec<u8>,
    /// `ca.crt`: the CA that client certificates must chain to (MUTUAL), when the Secret has one.
    pub ca: Option<Vec<u8>>,
}

impl fmt::Debug for TlsCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCredential")
            .field(
                "cert_chain",
                &format_args!("{} bytes", self.cert_chain.len()),
            )
            .field("key", &format_args!("<redacted>"))
            .field("ca", &self.ca.as_ref().map(|c| c.len()))
            .finish()
    }
}

/// A traffic or security resource (SPEC §8, §9) as translation reads it: its spec, what the
/// object-level checks found in it, and what its verdict and precedence need. An invalid resource is a
/// fact too, so that its verdict is published and its last accepted version kept in force.
#[derive(Clone, Debug, PartialEq)]
pub struct Config<T> {
    /// `metadata.generation` (the verdict's observedGeneration); file-fed objects usually have none.
    pub generation: Option<i64>,
    /// `metadata.creationTimestamp` in seconds: where Istio takes the oldest, the oldest wins.
    pub created: Option<i64>,
    pub spec: T,
    /// Problems of the object on its own ([`meshd_api::validate::Validate`]); empty when it is valid.
    /// A document that did not decode has a default `spec` and its decode error here.
    pub problems: Vec<FieldError>,
}

/// What the verdict of any [`Config`] needs, whatever its spec.
#[derive(Clone, Copy, Debug)]
pub struct Checked<'a> {
    pub generation: Option<i64>,
    pub problems: &'a [FieldError],
}

impl<T> Config<T> {
    pub fn checked(&self) -> Checked<'_> {
        Checked {
            generation: self.generation,
            problems: &self.problems,
        }
    }
}

/// The kinds of fact. Adding a kind: a variant here and in [`Fact`], its reducer (meshd-index) and its
/// translation ([`crate::Translator::apply`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FactKind {
    Service,
    EndpointSlice,
    Workload,
    Mesh,
    PeerAuthentication,
    AuthorizationPolicy,
    VirtualService,
    DestinationRule,
    ServiceEntry,
    Gateway,
    TlsCredential,
}

impl FactKind {
    pub const ALL: [FactKind; 11] = [
        Self::Service,
        Self::EndpointSlice,
        Self::Workload,
        Self::Mesh,
        Self::PeerAuthentication,
        Self::AuthorizationPolicy,
        Self::VirtualService,
        Self::DestinationRule,
        Self::ServiceEntry,
        Self::Gateway,
        Self::TlsCredential,
    ];

    /// The object's kind, as in `kind:`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Service => "Service",
            Self::EndpointSlice => "EndpointSlice",
            Self::Workload => "Pod",
            Self::Mesh => "Mesh",
            Self::PeerAuthentication => "PeerAuthentication",
            Self::AuthorizationPolicy => "AuthorizationPolicy",
            Self::VirtualService => "VirtualService",
            Self::DestinationRule => "DestinationRule",
            Self::ServiceEntry => "ServiceEntry",
            Self::Gateway => "Gateway",
            Self::TlsCredential => "Secret",
        }
    }

    /// Whether objects of this kind get a verdict (`status.conditions[type=Accepted]`): their facts are
    /// [`Config`]s, [`Fact::checked`] answers for them, and translation reads only the version in force.
    pub fn has_verdict(self) -> bool {
        matches!(
            self,
            Self::VirtualService
                | Self::DestinationRule
                | Self::ServiceEntry
                | Self::Gateway
                | Self::PeerAuthentication
                | Self::AuthorizationPolicy
        )
    }
}

/// One fact, shared: the index, translation and every compiled generation hold the same allocation.
#[derive(Clone, Debug, PartialEq)]
pub enum Fact {
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
    Workload(Arc<Workload>),
    /// A Mesh's spec (defaults filled in).
    Mesh(Arc<MeshSpec>),
    /// Its spec as translation reads it (the object's checks in `problems`).
    PeerAuthentication(Arc<Config<PeerAuthentication>>),
    AuthorizationPolicy(Arc<Config<AuthorizationPolicy>>),
    VirtualService(Arc<Config<VirtualServiceSpec>>),
    DestinationRule(Arc<Config<DestinationRuleSpec>>),
    ServiceEntry(Arc<Config<ServiceEntrySpec>>),
    /// Checked and judged; translated with issue 11 (gateways).
    Gateway(Arc<Config<GatewaySpec>>),
    /// A `kubernetes.io/tls` Secret's certificate and key (a Gateway's `credentialName`).
    TlsCredential(Arc<TlsCredential>),
}

impl Fact {
    pub fn kind(&self) -> FactKind {
        match self {
            Self::Service(_) => FactKind::Service,
            Self::EndpointSlice(_) => FactKind::EndpointSlice,
            Self::Workload(_) => FactKind::Workload,
            Self::Mesh(_) => FactKind::Mesh,
            Self::PeerAuthentication(_) => FactKind::PeerAuthentication,
            Self::AuthorizationPolicy(_) => FactKind::AuthorizationPolicy,
            Self::VirtualService(_) => FactKind::VirtualService,
            Self::DestinationRule(_) => FactKind::DestinationRule,
            Self::ServiceEntry(_) => FactKind::ServiceEntry,
            Self::Gateway(_) => FactKind::Gateway,
            Self::TlsCredential(_) => FactKind::TlsCredential,
        }
    }

    /// Generation and object-level problems of a kind with a verdict ([`FactKind::has_verdict`]);
    /// `None` for the others. A kind with a verdict adds its arm here.
    pub fn checked(&self) -> Option<Checked<'_>> {
        match self {
            Self::VirtualService(c) => Some(c.checked()),
            Self::DestinationRule(c) => Some(c.checked()),
            Self::ServiceEntry(c) => Some(c.checked()),
            Self::Gateway(c) => Some(c.checked()),
            Self::PeerAuthentication(c) => Some(c.checked()),
            Self::AuthorizationPolicy(c) => Some(c.checked()),
            Self::Service(_)
            | Self::EndpointSlice(_)
            | Self::Workload(_)
            | Self::Mesh(_)
            | Self::TlsCredential(_) => None,
        }
    }

    /// Same content (the pointer first: a republished fact is usually the same allocation).
    pub fn same(&self, other: &Fact) -> bool {
        match (self, other) {
            (Self::Service(a), Self::Service(b)) => Arc::ptr_eq(a, b) || a == b,
            (Self::EndpointSlice(a), Self::EndpointSlice(b)) => Arc::ptr_eq(a, b) || a == b,
            (Self::Workload(a), Self::Workload(b)) => Arc::ptr_eq(a, b) || a == b,
            (Self::Mesh(a), Self::Mesh(b)) => Arc::ptr_eq(a, b) || a == b,
            (Self::PeerAuthentication(a), Self::PeerAuthentication(b)) => {
                Arc::ptr_eq(a, b) || a == b
            }
            (Self::AuthorizationPolicy(a), Self::AuthorizationPolicy(b)) => {
                Arc::ptr_eq(a, b) || a == b
            }
            (Self::VirtualService(a), Self::VirtualService(b)) => Arc::ptr_eq(a, b) || a == b,
            (Self::DestinationRule(a), Self::DestinationRule(b)) => Arc::ptr_eq(a, b) || a == b,
            (Self::ServiceEntry(a), Self::ServiceEntry(b)) => Arc::ptr_eq(a, b) || a == b,
            (Self::Gateway(a), Self::Gateway(b)) => Arc::ptr_eq(a, b) || a == b,
            (Self::TlsCredential(a), Self::TlsCredential(b)) => Arc::ptr_eq(a, b) || a == b,
            _ => false,
        }
    }
}

/// One fact added, changed (`Some`) or gone (`None`).
#[derive(Clone, Debug, PartialEq)]
pub struct FactChange {
    pub kind: FactKind,
    pub key: ObjectKey,
    pub fact: Option<Fact>,
}
