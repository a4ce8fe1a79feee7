//! The CRDs meshd installs must be accepted by a real kube-apiserver: structural schemas (every node typed),
//! the CEL rules and printer columns SPEC §3 asks for, and a default for every optional Mesh field.
//! `crds/meshd.yaml` must be exactly `meshd crd`'s output.

use meshd_api::crd;
use serde_json::Value;

fn mesh_crd() -> Value {
    let crds = crd::all();
    let mesh = crds
        .iter()
        .find(|c| c.spec.names.kind == "Mesh")
        .expect("Mesh CRD is in crd::all()");
    serde_json::to_value(mesh).expect("CRD serializes")
}

fn mesh_schema() -> Value {
    mesh_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Walks a schema and returns the paths of nodes the apiserver would call non-structural.
fn structural_violations(node: &Value, path: &str, out: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        out.push(format!("{path}: schema node is not an object"));
        return;
    };
    let typed = obj.get("type").and_then(Value::as_str).is_some();
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if !typed && !int_or_string && !preserve {
        out.push(format!("{path}: no type"));
    }
    for forbidden in [
        "$ref",
        "definitions",
        "$defs",
        "additionalItems",
        "patternProperties",
        "dependencies",
    ] {
        if obj.contains_key(forbidden) {
            out.push(format!(
                "{path}: {forbidden} is not allowed in a structural schema"
            ));
        }
    }
    // Inside anyOf/oneOf/allOf/not, a structural schema may not declare types, defaults or descriptions.
    for junctor in ["anyOf", "oneOf", "allOf"] {
        if let Some(items) = obj.get(junctor).and_then(Value::as_array) {
            for (i, item) in items.iter().enumerate() {
                for k in [
                    "type",
                    "default",
                    "description",
                    "nullable",
                    "properties",
                    "items",
                ] {
                    if item.get(k).is_some() && !int_or_string {
                        out.push(format!("{path}.{junctor}[{i}]: `{k}` under a junctor"));
                    }
                }
            }
        }
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            structural_violations(v, &format!("{path}.{k}"), out);
        }
    }
    if let Some(items) = obj.get("items") {
        structural_violations(items, &format!("{path}[]"), out);
    }
    if let Some(extra) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        structural_violations(extra, &format!("{path}{{}}"), out);
    }
}

#[test]
fn every_crd_schema_is_structural() {
    for c in crd::all() {
        let v = serde_json::to_value(&c).unwrap();
        for version in v["spec"]["versions"].as_array().unwrap() {
            let mut violations = Vec::new();
            structural_violations(
                &version["schema"]["openAPIV3Schema"],
                &c.spec.names.kind,
                &mut violations,
            );
            assert!(
                violations.is_empty(),
                "non-structural schema nodes:\n{}",
                violations.join("\n")
            );
        }
    }
}

#[test]
fn the_walker_catches_an_untyped_node() {
    let mut out = Vec::new();
    let bad =
        serde_json::json!({"type": "object", "properties": {"x": {"description": "untyped"}}});
    structural_violations(&bad, "T", &mut out);
    assert_eq!(out, ["T.x: no type"]);
}

#[test]
fn mesh_is_cluster_scoped_with_status_and_short_name() {
    let c = mesh_crd();
    assert_eq!(c["metadata"]["name"], "meshes.meshd.io");
    assert_eq!(c["spec"]["scope"], "Cluster");
    assert_eq!(
        c["spec"]["names"]["shortNames"],
        serde_json::json!(["mesh"])
    );
    let v = &c["spec"]["versions"][0];
    assert_eq!(v["name"], "v1alpha1");
    assert!(v["subresources"]["status"].is_object());
    let columns: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["READY", "MTLS", "GATEWAYS", "PROXIES", "AGE"]);
}

#[test]
fn every_optional_mesh_field_has_a_default() {
    let spec = &mesh_schema()["properties"]["spec"];
    let mut missing = Vec::new();
    for (group, node) in spec["properties"].as_object().unwrap() {
        if node.get("default").is_none() {
            missing.push(group.clone());
        }
        if let Some(props) = node["properties"].as_object() {
            for (k, v) in props {
                // `image` defaults to the running meshd's proxy image, decided at injection time.
                if v.get("default").is_none() && k != "image" {
                    missing.push(format!("{group}.{k}"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "fields without a default: {missing:?}");
    assert_eq!(
        spec["properties"]["trustDomain"]["default"],
        "cluster.local"
    );
    assert_eq!(
        spec["properties"]["mtls"]["properties"]["mode"]["default"],
        "PERMISSIVE"
    );
    assert_eq!(
        spec["properties"]["proxy"]["properties"]["uid"]["default"],
        1337
    );
}

#[test]
fn enums_ranges_and_cel_rules_are_in_the_schema() {
    let spec = &mesh_schema()["properties"]["spec"]["properties"];
    assert_eq!(
        spec["mtls"]["properties"]["mode"]["enum"],
        serde_json::json!(["PERMISSIVE", "STRICT", "DISABLE"])
    );
    assert_eq!(
        spec["outboundTrafficPolicy"]["enum"],
        serde_json::json!(["ALLOW_ANY", "REGISTRY_ONLY"])
    );
    let capture = &spec["trafficCapture"]["properties"];
    let port = &capture["excludeInboundPorts"]["items"];
    assert_eq!(port["minimum"].as_f64(), Some(1.0));
    assert_eq!(port["maximum"].as_f64(), Some(65535.0));
    let rules = |node: &Value| -> String {
        node["x-kubernetes-validations"]
            .as_array()
            .map(|r| serde_json::to_string(r).unwrap())
            .unwrap_or_default()
    };
    assert!(rules(&capture["excludeOutboundCIDRs"]).contains("isCIDR"));
    assert!(rules(&capture["includeOutboundCIDRs"]).contains("isCIDR"));
    assert!(rules(&mesh_schema()["properties"]["spec"]).contains("exists_one(h, h.name == g.name"));
    let ttl = &spec["mtls"]["properties"]["certificateTTL"];
    assert_eq!(ttl["default"], "24h");
    assert_eq!(ttl["pattern"], "^[1-9][0-9]{0,6}(s|m|h|d)$");
    assert!(rules(ttl).contains("duration('60s')"), "{ttl}");
    // CEL cost estimation needs bounded lists.
    assert!(spec["gateways"]["maxItems"].is_number());
    assert!(capture["excludeOutboundCIDRs"]["maxItems"].is_number());
}

#[test]
fn crds_dir_matches_meshd_crd_output() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds/meshd.yaml");
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    let generated = crd::to_yaml().unwrap();
    if std::env::var_os("MESHD_BLESS").is_some() {
        std::fs::write(path, &generated).unwrap();
        return;
    }
    assert!(
        on_disk == generated,
        "crds/meshd.yaml differs from `meshd crd`; run `make crds` (or MESHD_BLESS=1 cargo test -p meshd-api) and review the diff"
    );
}
