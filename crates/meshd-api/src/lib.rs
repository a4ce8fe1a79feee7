//! meshd's API: the custom resources users apply and the names, labels, annotations and ports they see
//! (SPEC.md). Pure types; every other crate speaks in these words.

#![forbid(unsafe_code)]

pub mod crd;
pub mod duration;
pub mod mesh;
pub mod names;
pub mod networking;
pub mod schema;
pub mod security;
pub mod selector;
pub mod settings;
pub mod status;
pub mod syncz;
pub mod text;
pub mod validate;
pub mod values;

pub use mesh::{Mesh, MeshSpec, MeshStatus};
