//! Mesh → its spec, validated as `kubectl apply` would (SPEC §3): an invalid Mesh is not used.

use std::sync::Arc;

use meshd_api::Mesh;
use meshd_translate::facts::{Fact, FactKind, ObjectKey};

use crate::ReduceError;
use crate::kinds::Kind;

pub struct MeshKind;

impl Kind for MeshKind {
    type Object = Mesh;
    const FACT: FactKind = FactKind::Mesh;
    const NAMESPACED: bool = false;

    /// A Mesh file without a name is the default Mesh, as `meshd webhook --mesh FILE` reads it.
    fn key(mesh: &Mesh) -> Result<ObjectKey, ReduceError> {
        Ok(ObjectKey::new("", meshd_api::settings::mesh_name(mesh)))
    }

    fn reduce(mesh: &Mesh, key: &ObjectKey) -> Result<Option<Fact>, ReduceError> {
        let errors = meshd_api::settings::validate(&mesh.spec);
        if !errors.is_empty() {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(ReduceError::new("Mesh", key, errors.join("; ")));
        }
        Ok(Some(Fact::Mesh(Arc::new(mesh.spec.clone()))))
    }
}
