//! Security kinds, `security.meshd.io/v1alpha1` (SPEC §9): Istio's `security.istio.io/v1` shapes, so an
//! Istio user's YAML deserializes after changing only the apiVersion. Same conventions as
//! [`crate::networking`].

pub mod authorization_policy;
pub mod mesh_mtls;
pub mod peer_authentication;

pub use authorization_policy::{AuthorizationPolicy, AuthorizationPolicySpec};
pub use mesh_mtls::{MeshMtlsStatus, MtlsOverride};
pub use peer_authentication::{PeerAuthentication, PeerAuthenticationSpec};
