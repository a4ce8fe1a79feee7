//! All of meshd's CustomResourceDefinitions, as `meshd crd` prints them and `crds/` stores them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;

use crate::mesh::Mesh;
use crate::networking::{DestinationRule, Gateway, ServiceEntry, VirtualService};
use crate::security::{AuthorizationPolicy, PeerAuthentication};

/// Every CRD meshd installs, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![Mesh::crd()];
    crds.extend(
        [
            VirtualService::crd(),
            DestinationRule::crd(),
            ServiceEntry::crd(),
            Gateway::crd(),
            PeerAuthentication::crd(),
            AuthorizationPolicy::crd(),
        ]
        .into_iter()
        .map(without_defaults),
    );
    crds
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

/// The traffic and security kinds default field by field in Rust (so a missing field is reported by
/// name, not as a parse error), and schemars writes those Rust defaults into the schema. The API server
/// would apply them (an empty `host` in place of a missing one) and checks that each default passes its
/// own schema, so they are removed: these kinds have no schema defaults, as in Istio. `null` is dropped
/// from enums for the same reason (`nullable` already admits it).
fn without_defaults(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            strip(schema);
        }
    }
    crd
}

fn strip(node: &mut JSONSchemaProps) {
    node.default = None;
    if let Some(values) = &mut node.enum_ {
        values.retain(|v| !v.0.is_null());
    }
    for child in node.properties.iter_mut().flat_map(|p| p.values_mut()) {
        strip(child);
    }
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    };
    match &mut node.items {
        Some(JSONSchemaPropsOrArray::Schema(s)) => strip(s),
        Some(JSONSchemaPropsOrArray::Schemas(list)) => list.iter_mut().for_each(strip),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(s)) = &mut node.additional_properties {
        strip(s);
    }
}
