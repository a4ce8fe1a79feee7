//! Traffic capture: settings in, iptables-restore or nftables documents out, applied atomically in the
//! pod's network namespace (SPEC.md §5).
//!
//! - [`settings`], [`rules`], [`iptables`], [`nftables`], [`plan`]: the pure part. Typed
//!   [`CaptureSettings`] in, [`CaptureRules`] (one rule list, Istio's order) out, rendered as an
//!   `iptables-restore` document or an nftables script, and wrapped in a [`Plan`]: the exact commands
//!   and their stdin. No I/O; `--dry-run` prints a plan, golden files pin it.
//! - [`apply`] and [`validate`]: the I/O part. Detect the iptables backend, read the current state, run a
//!   plan's commands (one atomic call per family), and prove capture with a real connection.

#![forbid(unsafe_code)]

pub mod apply;
mod error;
pub mod iptables;
pub mod nftables;
pub mod plan;
pub mod rules;
pub mod settings;
pub mod validate;

pub use apply::{apply, cleanup, detect_backend, plan_for_namespace};
pub use error::CaptureError;
pub use plan::{Backend, Plan, Step};
pub use rules::{CaptureRules, Family};
pub use settings::{CaptureSettings, InboundPorts};
