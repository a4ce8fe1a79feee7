//! All of meshd's CustomResourceDefinitions, as `meshd crd` prints them and `crds/` stores them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::mesh::Mesh;

/// Every CRD meshd installs, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![Mesh::crd()]
}

/// The CRDs as one multi-document YAML stream, exactly what `crds/meshd.yaml` holds.
pub fn to_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
