//! examples/mesh.yaml is what users apply first: it must parse, validate, and say what the README says.

use meshd_api::mesh::{CaptureMode, MtlsMode};
use meshd_api::settings::{mesh_name, parse_mesh_yaml, validate};

#[test]
fn example_mesh_is_valid_and_has_one_ingress_gateway() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/mesh.yaml");
    let text = std::fs::read_to_string(path).expect("examples/mesh.yaml exists");
    let mesh = parse_mesh_yaml(&text).expect("examples/mesh.yaml parses as a Mesh");
    assert_eq!(mesh_name(&mesh), "default");
    assert!(
        validate(&mesh.spec).is_empty(),
        "{:?}",
        validate(&mesh.spec)
    );
    assert_eq!(mesh.spec.mtls.mode, MtlsMode::Permissive);
    assert_eq!(mesh.spec.traffic_capture.mode, CaptureMode::Iptables);
    assert_eq!(mesh.spec.gateways.len(), 1);
    assert_eq!(mesh.spec.gateways[0].name, "ingress");
    // The example shows the defaults: it equals a Mesh with an empty spec plus the gateway.
    let mut defaults = parse_mesh_yaml(
        "apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec: {}\n",
    )
    .unwrap()
    .spec;
    defaults.gateways = mesh.spec.gateways.clone();
    assert_eq!(mesh.spec, defaults);
}
