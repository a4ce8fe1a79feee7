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

/// The traffic and security examples (a canary, a ServiceEntry, a Gateway, PeerAuthentications, an
/// AuthorizationPolicy) are valid as they stand, and there is one of each kind.
#[test]
fn traffic_and_security_examples_validate() {
    use meshd_api::validate::{Outcome, check_documents};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(dir).expect("examples/ exists") {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for checked in check_documents(&text) {
            match checked.outcome {
                Outcome::Object { kind, errors, .. } => {
                    assert!(errors.is_empty(), "{}: {kind}: {errors:?}", path.display());
                    kinds.push(kind);
                }
                other => panic!("{}: document {}: {other:?}", path.display(), checked.number),
            }
        }
    }
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "AuthorizationPolicy",
            "DestinationRule",
            "Gateway",
            "Mesh",
            "PeerAuthentication",
            "ServiceEntry",
            "VirtualService"
        ]
    );
}

/// The canary splits 90/10 between subsets the DestinationRule defines.
#[test]
fn the_canary_example_splits_between_defined_subsets() {
    use meshd_api::validate::{Document, Outcome, check_documents};
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/canary.yaml");
    let docs = check_documents(&std::fs::read_to_string(path).unwrap());
    let mut subsets = Vec::new();
    let mut split = Vec::new();
    for c in docs {
        let Outcome::Object {
            object: Some(o), ..
        } = c.outcome
        else {
            panic!("{c:?}")
        };
        match o {
            Document::DestinationRule(dr) => {
                subsets = dr.spec.subsets.iter().map(|s| s.name.clone()).collect()
            }
            Document::VirtualService(vs) => {
                let last = vs.spec.http.last().expect("a default route");
                split = last
                    .route
                    .iter()
                    .map(|d| (d.destination.subset.clone().unwrap(), d.weight.unwrap()))
                    .collect();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(subsets, ["v1", "v2"]);
    assert_eq!(split, [("v1".to_string(), 90), ("v2".to_string(), 10)]);
}
