//! The objects a snapshot is made of, and how they become one.

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use meshd_api::Mesh;
use meshd_translate::MeshSnapshot;

/// One object read from a file or the API server.
#[derive(Clone, Debug)]
pub enum ParsedObject {
    Service(Box<Service>),
    EndpointSlice(Box<EndpointSlice>),
    Pod(Box<Pod>),
    Mesh(Box<Mesh>),
}

/// Every object of the kinds translation reads.
#[derive(Clone, Debug, Default)]
pub struct MeshObjects {
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    pub pods: Vec<Pod>,
    pub meshes: Vec<Mesh>,
}

impl MeshObjects {
    pub fn push(&mut self, object: ParsedObject) {
        match object {
            ParsedObject::Service(o) => self.services.push(*o),
            ParsedObject::EndpointSlice(o) => self.endpoint_slices.push(*o),
            ParsedObject::Pod(o) => self.pods.push(*o),
            ParsedObject::Mesh(o) => self.meshes.push(*o),
        }
    }

    /// The snapshot for Mesh `mesh_name`: its spec (defaults when there is no such Mesh, which the
    /// caller is told through the returned flag) and every Service, EndpointSlice and Pod.
    pub fn snapshot(&self, mesh_name: &str, cluster_domain: &str) -> (MeshSnapshot, bool) {
        let mesh = self
            .meshes
            .iter()
            .find(|m| meshd_api::settings::mesh_name(m) == mesh_name);
        let snapshot = MeshSnapshot {
            services: self.services.clone(),
            endpoint_slices: self.endpoint_slices.clone(),
            pods: self.pods.clone(),
            mesh: mesh.map(|m| m.spec.clone()).unwrap_or_default(),
            cluster_domain: cluster_domain.to_string(),
        };
        (snapshot, mesh.is_some())
    }
}
