//! meshd's API: the custom resources users apply and the names, labels, annotations and ports they see
//! (SPEC.md). Pure types; every other crate speaks in these words.

pub mod crd;
pub mod mesh;
pub mod names;
pub mod settings;
pub mod values;

pub use mesh::{Mesh, MeshSpec, MeshStatus};
