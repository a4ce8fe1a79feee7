//! One reducer per kind: Kubernetes object → fact. A reducer reads only what translation needs and
//! checks it; a value translation could not use is an error naming the field, and the source keeps the
//! object's last good fact.

mod config;
mod endpoints;
mod mesh;
mod pod;
mod secret;
mod security;
mod service;

pub use config::{
    ConfigKind, ConfigObject, DestinationRuleKind, GatewayKind, ServiceEntryKind,
    VirtualServiceKind,
};
pub use endpoints::EndpointSliceKind;
pub use mesh::MeshKind;
pub use pod::PodKind;
pub use secret::{TLS_SECRET_TYPE, TlsSecretKind};
pub use security::{AuthorizationPolicyKind, PeerAuthenticationKind};
pub use service::ServiceKind;

/// A port number from the API (i32) that must be 1–65535.
fn port(value: i32) -> Option<u16> {
    u16::try_from(value).ok().filter(|p| *p > 0)
}
