//! Test and demo harness: network namespaces on a bridge, capture, Envoy via meshd agent, small HTTP
//! apps; torn down on Drop.
//!
//! - [`netns`]: a network-namespace guard ([`NetNs`]) with veth links, addresses and routes, commands run
//!   inside it (optionally as another uid/gid), and closures run on a thread inside it.
//! - [`tcp`]: real TCP endpoints inside a namespace: a listener that names itself to every client and
//!   reports each connection's original destination (`SO_ORIGINAL_DST`), and a connector that runs as a
//!   given uid so that owner-based capture rules see it.
//! - [`mesh`]: a one-machine mesh (control plane, bridge, pods with capture, agent, Envoy and an [`app`]).
//! - [`mtls_cost`]: the mTLS and plaintext paths side by side over the same pods, timed in alternation.
//! - [`pki`]: a throwaway CA issuing PEM certificates (the demo's edge, TLS tests).
//! - [`tls`]: an HTTPS client (rustls) with a given trust anchor, SNI and client certificate, reporting
//!   the certificate and version the server presented (the gateway edge).
//! - [`prereq`]: checks for root, namespaces and binaries; prints `SKIP: <reason>`, or fails under `CI=true`.

pub mod app;
pub mod load;
pub mod mesh;
pub mod mtls_cost;
pub mod netns;
pub mod pki;
pub mod pod;
pub mod prereq;
pub mod signal;
pub mod tcp;
pub mod tls;

pub use netns::{Identity, NetNs, link_veth};
pub use prereq::require;
