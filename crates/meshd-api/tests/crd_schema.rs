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

// ---- the traffic and security kinds (SPEC §3, §8, §9, §10) ----

fn crd_of(kind: &str) -> Value {
    let c = crd::all()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("{kind} CRD is in crd::all()"));
    serde_json::to_value(c).expect("CRD serializes")
}

/// The schema node at a dotted path below `spec`, `[]` stepping into list items and `{}` into map values.
fn node(kind: &str, path: &str) -> Value {
    let mut n =
        crd_of(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            .clone();
    for step in path.split('.').filter(|s| !s.is_empty()) {
        let (name, suffix) = match step.find(['[', '{']) {
            Some(i) => step.split_at(i),
            None => (step, ""),
        };
        if !name.is_empty() {
            n = n["properties"][name].clone();
        }
        for s in suffix.as_bytes().chunks(2) {
            n = match s {
                b"[]" => n["items"].clone(),
                b"{}" => n["additionalProperties"].clone(),
                _ => panic!("bad step {step}"),
            };
        }
        assert!(n.is_object(), "{kind}: no schema node at {path}");
    }
    n
}

fn sorted(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|x| x.to_string())
        .collect();
    v.sort();
    v
}

fn rules(n: &Value) -> String {
    serde_json::to_string(&n["x-kubernetes-validations"]).unwrap()
}

const KINDS: [(&str, &str, &str, &[&str]); 6] = [
    (
        "VirtualService",
        "virtualservices.networking.meshd.io",
        "vs",
        &["HOSTS", "GATEWAYS", "ACCEPTED", "AGE"],
    ),
    (
        "DestinationRule",
        "destinationrules.networking.meshd.io",
        "dr",
        &["HOST", "SUBSETS", "ACCEPTED", "AGE"],
    ),
    (
        "ServiceEntry",
        "serviceentries.networking.meshd.io",
        "se",
        &["HOSTS", "LOCATION", "RESOLUTION", "ACCEPTED", "AGE"],
    ),
    (
        "Gateway",
        "gateways.networking.meshd.io",
        "gw",
        &["SERVERS", "ACCEPTED", "AGE"],
    ),
    (
        "PeerAuthentication",
        "peerauthentications.security.meshd.io",
        "pa",
        &["MODE", "ACCEPTED", "AGE"],
    ),
    (
        "AuthorizationPolicy",
        "authorizationpolicies.security.meshd.io",
        "ap",
        &["ACTION", "ACCEPTED", "AGE"],
    ),
];

#[test]
fn traffic_and_security_kinds_have_names_status_and_columns() {
    for (kind, name, short, columns) in KINDS {
        let c = crd_of(kind);
        assert_eq!(c["metadata"]["name"], name);
        assert_eq!(c["spec"]["scope"], "Namespaced", "{kind}");
        assert_eq!(
            c["spec"]["names"]["shortNames"],
            serde_json::json!([short]),
            "{kind}"
        );
        let v = &c["spec"]["versions"][0];
        assert_eq!(v["name"], "v1alpha1");
        assert!(
            v["subresources"]["status"].is_object(),
            "{kind}: status subresource"
        );
        let cols = v["additionalPrinterColumns"].as_array().unwrap();
        let names: Vec<&str> = cols.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, columns, "{kind}");
        let accepted = cols.iter().find(|c| c["name"] == "ACCEPTED").unwrap();
        assert_eq!(accepted["jsonPath"], meshd_api::status::ACCEPTED_COLUMN);
        let status = &v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
        assert_eq!(
            status["conditions"]["x-kubernetes-list-type"], "map",
            "{kind}"
        );
        assert!(status["observedGeneration"].is_object(), "{kind}");
        let mut defaults = Vec::new();
        find_defaults(&v["schema"]["openAPIV3Schema"], kind, &mut defaults);
        assert!(
            defaults.is_empty(),
            "schema defaults the API server would apply: {defaults:?}"
        );
    }
}

fn find_defaults(n: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(obj) = n.as_object() {
        if obj.contains_key("default") {
            out.push(path.to_string());
        }
        for (k, v) in obj {
            find_defaults(v, &format!("{path}.{k}"), out);
        }
    }
}

#[test]
fn enums_in_the_traffic_and_security_schemas() {
    for (kind, path, want) in [
        (
            "ServiceEntry",
            "location",
            &["MESH_EXTERNAL", "MESH_INTERNAL"][..],
        ),
        (
            "ServiceEntry",
            "resolution",
            &["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"],
        ),
        (
            "DestinationRule",
            "trafficPolicy.loadBalancer.simple",
            &[
                "UNSPECIFIED",
                "LEAST_CONN",
                "RANDOM",
                "PASSTHROUGH",
                "ROUND_ROBIN",
                "LEAST_REQUEST",
            ],
        ),
        (
            "DestinationRule",
            "trafficPolicy.tls.mode",
            &["DISABLE", "SIMPLE", "MUTUAL", "MESH_MUTUAL", "ISTIO_MUTUAL"],
        ),
        (
            "DestinationRule",
            "subsets[].trafficPolicy.portLevelSettings[].tls.mode",
            &["DISABLE", "SIMPLE", "MUTUAL", "MESH_MUTUAL", "ISTIO_MUTUAL"],
        ),
        (
            "Gateway",
            "servers[].tls.mode",
            &[
                "PASSTHROUGH",
                "SIMPLE",
                "MUTUAL",
                "AUTO_PASSTHROUGH",
                "MESH_MUTUAL",
                "ISTIO_MUTUAL",
                "OPTIONAL_MUTUAL",
            ],
        ),
        (
            "Gateway",
            "servers[].tls.minProtocolVersion",
            &["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"],
        ),
        (
            "PeerAuthentication",
            "mtls.mode",
            &["UNSET", "DISABLE", "PERMISSIVE", "STRICT"],
        ),
        (
            "PeerAuthentication",
            "portLevelMtls{}.mode",
            &["UNSET", "DISABLE", "PERMISSIVE", "STRICT"],
        ),
        (
            "AuthorizationPolicy",
            "action",
            &["ALLOW", "DENY", "AUDIT", "CUSTOM"],
        ),
        (
            "VirtualService",
            "http[].redirect.scheme",
            &["http", "https"],
        ),
    ] {
        assert_eq!(
            sorted(&node(kind, path)["enum"]),
            sorted(&serde_json::json!(want)),
            "{kind} {path}"
        );
    }
    assert_eq!(
        node("VirtualService", "http[].redirect.redirectCode")["enum"],
        serde_json::json!([301, 302, 303, 307, 308])
    );
    assert_eq!(
        node("VirtualService", "http[].fault.abort.grpcStatus")["enum"][14],
        "UNAVAILABLE"
    );
    // Protocols are Istio's, in any case: a CEL rule rather than an enum.
    for (kind, path) in [
        ("ServiceEntry", "ports[].protocol"),
        ("Gateway", "servers[].port.protocol"),
    ] {
        assert!(
            rules(&node(kind, path)).contains("self.upperAscii() in ['HTTP', 'HTTPS'"),
            "{kind} {path}"
        );
    }
    assert!(rules(&node("Gateway", "servers[].tls.minProtocolVersion")).contains("TLSV1_1"));
}

#[test]
fn ranges_in_the_traffic_and_security_schemas() {
    for (kind, path, lo, hi) in [
        (
            "VirtualService",
            "http[].route[].destination.port.number",
            1.0,
            65535.0,
        ),
        ("VirtualService", "http[].match[].port", 1.0, 65535.0),
        ("VirtualService", "tcp[].match[].port", 1.0, 65535.0),
        ("VirtualService", "http[].route[].weight", 0.0, 100.0),
        ("VirtualService", "tcp[].route[].weight", 0.0, 100.0),
        (
            "VirtualService",
            "http[].mirrorPercentage.value",
            0.0,
            100.0,
        ),
        (
            "VirtualService",
            "http[].fault.abort.percentage.value",
            0.0,
            100.0,
        ),
        (
            "VirtualService",
            "http[].fault.delay.percentage.value",
            0.0,
            100.0,
        ),
        (
            "VirtualService",
            "http[].fault.abort.httpStatus",
            200.0,
            599.0,
        ),
        ("VirtualService", "http[].redirect.port", 1.0, 65535.0),
        (
            "DestinationRule",
            "trafficPolicy.portLevelSettings[].port.number",
            1.0,
            65535.0,
        ),
        (
            "DestinationRule",
            "trafficPolicy.outlierDetection.maxEjectionPercent",
            0.0,
            100.0,
        ),
        ("ServiceEntry", "ports[].number", 1.0, 65535.0),
        ("ServiceEntry", "ports[].targetPort", 1.0, 65535.0),
        ("ServiceEntry", "endpoints[].ports{}", 1.0, 65535.0),
        ("Gateway", "servers[].port.number", 1.0, 65535.0),
    ] {
        let n = node(kind, path);
        assert_eq!(n["minimum"].as_f64(), Some(lo), "{kind} {path}");
        assert_eq!(n["maximum"].as_f64(), Some(hi), "{kind} {path}");
    }
}

#[test]
fn required_fields_in_the_traffic_and_security_schemas() {
    for (kind, path, want) in [
        ("VirtualService", "", &["hosts"][..]),
        ("VirtualService", "http[].route[]", &["destination"]),
        ("VirtualService", "http[].route[].destination", &["host"]),
        ("VirtualService", "tls[]", &["match"]),
        ("VirtualService", "tls[].match[]", &["sniHosts"]),
        ("VirtualService", "http[].mirrors[]", &["destination"]),
        ("DestinationRule", "", &["host"]),
        ("DestinationRule", "subsets[]", &["name"]),
        (
            "DestinationRule",
            "trafficPolicy.portLevelSettings[]",
            &["port"],
        ),
        ("ServiceEntry", "", &["hosts"]),
        ("ServiceEntry", "ports[]", &["number", "name"]),
        ("Gateway", "servers[]", &["port", "hosts"]),
        ("Gateway", "servers[].port", &["number", "protocol", "name"]),
        ("AuthorizationPolicy", "rules[].when[]", &["key"]),
    ] {
        assert_eq!(
            sorted(&node(kind, path)["required"]),
            sorted(&serde_json::json!(want)),
            "{kind} {path}"
        );
    }
    assert_eq!(node("VirtualService", "hosts")["minItems"], 1);
    assert_eq!(node("Gateway", "servers[].hosts")["minItems"], 1);
}

#[test]
fn one_ofs_durations_and_cidrs_are_cel_rules() {
    for (kind, path, fields) in [
        (
            "VirtualService",
            "http[].match[].uri",
            "has(self.exact) ? 1 : 0) + (has(self.prefix) ? 1 : 0) + (has(self.regex) ? 1 : 0) == 1",
        ),
        (
            "VirtualService",
            "http[].match[].headers{}",
            "(has(self.regex) ? 1 : 0) == 1",
        ),
        (
            "VirtualService",
            "http[].corsPolicy.allowOrigins[]",
            "(has(self.regex) ? 1 : 0) == 1",
        ),
        (
            "VirtualService",
            "http[].fault.abort",
            "(has(self.httpStatus) ? 1 : 0) + (has(self.grpcStatus) ? 1 : 0) + (has(self.http2Error) ? 1 : 0) == 1",
        ),
        (
            "VirtualService",
            "http[].fault.delay",
            "(has(self.fixedDelay) ? 1 : 0) + (has(self.exponentialDelay) ? 1 : 0) == 1",
        ),
        (
            "VirtualService",
            "http[].redirect",
            "(has(self.port) ? 1 : 0) + (has(self.derivePort) ? 1 : 0) <= 1",
        ),
        (
            "VirtualService",
            "http[].rewrite",
            "(has(self.uri) ? 1 : 0) + (has(self.uriRegexRewrite) ? 1 : 0) <= 1",
        ),
        (
            "VirtualService",
            "http[]",
            "(has(self.route) ? 1 : 0) + (has(self.redirect) ? 1 : 0) + (has(self.directResponse) ? 1 : 0) <= 1",
        ),
        (
            "DestinationRule",
            "trafficPolicy.loadBalancer.consistentHash",
            "(has(self.httpQueryParameterName) ? 1 : 0) == 1",
        ),
        (
            "DestinationRule",
            "trafficPolicy.loadBalancer",
            "(has(self.simple) ? 1 : 0) + (has(self.consistentHash) ? 1 : 0) <= 1",
        ),
        ("VirtualService", "", "self.hosts.exists(h, h == '*')"),
        (
            "DestinationRule",
            "",
            "self.subsets.exists_one(t, t.name == s.name)",
        ),
        (
            "ServiceEntry",
            "ports",
            "self.exists_one(q, q.number == p.number)",
        ),
        ("PeerAuthentication", "", "has(self.selector)"),
        ("PeerAuthentication", "portLevelMtls", "int(k) <= 65535"),
        ("Gateway", "servers[]", "has(self.tls)"),
        (
            "VirtualService",
            "tcp[].match[].destinationSubnets",
            "isIP(c) || isCIDR(c)",
        ),
        (
            "VirtualService",
            "tls[].match[].destinationSubnets",
            "isIP(c) || isCIDR(c)",
        ),
        ("ServiceEntry", "addresses", "isIP(c) || isCIDR(c)"),
        (
            "AuthorizationPolicy",
            "rules[].from[].source.ipBlocks",
            "isIP(c) || isCIDR(c)",
        ),
        (
            "AuthorizationPolicy",
            "rules[].from[].source.notIpBlocks",
            "isIP(c) || isCIDR(c)",
        ),
    ] {
        assert!(
            rules(&node(kind, path)).contains(fields),
            "{kind} {path}: {}",
            rules(&node(kind, path))
        );
    }
    for (kind, path) in [
        ("VirtualService", "http[].timeout"),
        ("VirtualService", "http[].retries.perTryTimeout"),
        ("VirtualService", "http[].fault.delay.fixedDelay"),
        (
            "DestinationRule",
            "trafficPolicy.connectionPool.tcp.connectTimeout",
        ),
        ("DestinationRule", "trafficPolicy.outlierDetection.interval"),
        (
            "DestinationRule",
            "subsets[].trafficPolicy.outlierDetection.baseEjectionTime",
        ),
    ] {
        let n = node(kind, path);
        assert_eq!(
            n["pattern"],
            meshd_api::duration::DURATION_PATTERN,
            "{kind} {path}"
        );
        assert!(
            rules(&n).contains("duration(self) >= duration('1ms')"),
            "{kind} {path}"
        );
    }
    // A cookie TTL may be 0s (a session cookie): the pattern, no minimum.
    let ttl = node(
        "DestinationRule",
        "trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl",
    );
    assert_eq!(ttl["pattern"], meshd_api::duration::DURATION_PATTERN);
    assert!(ttl.get("x-kubernetes-validations").is_none());
}

/// Every CEL rule says what is wrong, and a rule about values shows the value: a message that names
/// the fields, or a messageExpression that uses `self`.
#[test]
fn every_cel_rule_has_a_message() {
    for c in crd::all() {
        let v = serde_json::to_value(&c).unwrap();
        let mut found = Vec::new();
        collect_rules(
            &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
            1,
            &c.spec.names.kind,
            &mut found,
        );
        for r in found {
            let msg = r.rule.get("message").and_then(Value::as_str);
            let expr = r.rule.get("messageExpression").and_then(Value::as_str);
            // Both is fine: the API server shows the messageExpression, and the message when the
            // expression itself fails.
            if let Some(m) = msg {
                assert!(m.len() > 15, "{}: terse message {m:?}", r.path);
            }
            if let Some(e) = expr {
                assert!(
                    e.contains("self"),
                    "{}: messageExpression without the value",
                    r.path
                );
            }
            assert!(
                msg.is_some() || expr.is_some(),
                "{}: needs a message or a messageExpression: {}",
                r.path,
                r.rule
            );
        }
    }
}

/// The most items or characters a rule could walk at `n`: its bound, for an object its largest field's,
/// for a number 1; None for an unbounded string, list or map.
fn size(n: &Value) -> Option<u64> {
    let bound = n["maxItems"]
        .as_u64()
        .or(n["maxProperties"].as_u64())
        .or(n["maxLength"].as_u64());
    match n["type"].as_str() {
        _ if bound.is_some() => bound,
        Some("integer" | "number" | "boolean") => Some(1),
        Some("string") if n["enum"].is_array() => Some(32),
        Some("object") if n["properties"].is_object() => n["properties"]
            .as_object()?
            .values()
            .map(size)
            .try_fold(1, |m, s| s.map(|s| m.max(s))),
        _ => None,
    }
}

struct FoundRule {
    path: String,
    rule: Value,
    /// How many times the API server may evaluate it for one object: the product of the maxItems /
    /// maxProperties of every list and map above it.
    cardinality: u64,
    /// Items or characters the rule may walk over at its own node (maxItems, maxProperties, maxLength).
    own_size: u64,
}

fn collect_rules(n: &Value, cardinality: u64, path: &str, out: &mut Vec<FoundRule>) {
    let bound = |n: &Value, key: &str| n[key].as_u64();
    for rule in n["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        // What the rule may walk: its own node, or the fields of an object it names (`self.gateways`).
        let text = rule.to_string();
        let own_size = size(n).or_else(|| {
            n["properties"]
                .as_object()?
                .iter()
                .filter(|(k, _)| text.contains(&format!("self.{k}")))
                .map(|(_, child)| size(child).unwrap_or(u64::MAX))
                .max()
        });
        out.push(FoundRule {
            path: path.to_string(),
            rule: rule.clone(),
            cardinality,
            own_size: own_size.unwrap_or(u64::MAX),
        });
    }
    for (k, child) in n["properties"].as_object().into_iter().flatten() {
        collect_rules(child, cardinality, &format!("{path}.{k}"), out);
    }
    if n["items"].is_object() {
        let c = cardinality.saturating_mul(bound(n, "maxItems").unwrap_or(u64::MAX));
        collect_rules(&n["items"], c, &format!("{path}[]"), out);
    }
    if n["additionalProperties"].is_object() {
        let c = cardinality.saturating_mul(bound(n, "maxProperties").unwrap_or(u64::MAX));
        collect_rules(&n["additionalProperties"], c, &format!("{path}{{}}"), out);
    }
}

/// The API server refuses a CRD whose CEL rules could cost too much: each rule's estimated cost times
/// the number of times it can run (its cardinality) must stay under 10^7, and the CRD's total under 10^8.
/// Without maxItems/maxProperties above a rule, or maxLength/maxItems on what it walks, the estimate is
/// huge. This mirrors that estimate's shape with a deliberately high per-evaluation cost (40 per step,
/// squared for nested quantifiers), so a schema that passes here passes there; it is not the server's
/// exact cost model.
#[test]
fn cel_rules_stay_within_the_cost_budget() {
    for c in crd::all() {
        let v = serde_json::to_value(&c).unwrap();
        let mut found = Vec::new();
        collect_rules(
            &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
            1,
            &c.spec.names.kind,
            &mut found,
        );
        let mut total: u64 = 0;
        for r in &found {
            assert!(
                r.cardinality < u64::MAX,
                "{}: a list or map above this rule has no maxItems/maxProperties",
                r.path
            );
            let text = format!(
                "{}{}",
                r.rule["rule"],
                r.rule
                    .get("messageExpression")
                    .map(Value::to_string)
                    .unwrap_or_default()
            );
            let walks = [
                "all(",
                "exists(",
                "exists_one(",
                "filter(",
                "map(",
                "join(",
                "matches(",
                "isCIDR(",
                "isIP(",
                "upperAscii(",
                "duration(self)",
            ]
            .iter()
            .any(|f| text.contains(f));
            let nested = text.matches("exists_one(").count() + text.matches(".all(").count() > 1;
            if walks {
                assert!(
                    r.own_size < u64::MAX,
                    "{}: the rule walks a value without maxItems/maxLength",
                    r.path
                );
            }
            let per_eval = match (walks, nested) {
                (false, _) => 40,
                (true, false) => 40 * r.own_size,
                (true, true) => 40 * r.own_size * r.own_size,
            };
            let cost = r.cardinality.saturating_mul(per_eval);
            assert!(
                cost <= 10_000_000,
                "{}: estimated cost {cost} over 10^7 ({} evaluations × {per_eval})",
                r.path,
                r.cardinality
            );
            total = total.saturating_add(cost);
        }
        assert!(
            total <= 100_000_000,
            "{}: estimated total cost {total} over 10^8",
            c.spec.names.kind
        );
        eprintln!(
            "{}: {} CEL rules, estimated total cost {total}",
            c.spec.names.kind,
            found.len()
        );
    }
}

/// docs/design.md's "Istio fields accepted but not acted on" lists exactly the fields whose description
/// says "meshd does not act on" (DestinationRule's nested traffic policies folded into
/// `spec.trafficPolicy`), so the list the lead decides from cannot drift from the types.
#[test]
fn design_doc_lists_every_field_meshd_does_not_act_on() {
    fn walk(n: &Value, path: &str, out: &mut std::collections::BTreeSet<String>) {
        let described = n["description"].as_str().unwrap_or_default();
        if described.contains("meshd does not act on") {
            let mut p = path.to_string();
            for prefix in [
                "spec.subsets[].trafficPolicy.portLevelSettings[].",
                "spec.subsets[].trafficPolicy.",
                "spec.trafficPolicy.portLevelSettings[].",
            ] {
                if let Some(rest) = p.strip_prefix(prefix) {
                    p = format!("spec.trafficPolicy.{rest}");
                }
            }
            out.insert(p);
            return;
        }
        for (k, v) in n["properties"].as_object().into_iter().flatten() {
            walk(v, &format!("{path}.{k}"), out);
        }
        if n["items"].is_object() {
            walk(&n["items"], &format!("{path}[]"), out);
        }
        if n["additionalProperties"].is_object() {
            walk(&n["additionalProperties"], &format!("{path}{{}}"), out);
        }
    }
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/design.md"))
        .unwrap();
    let list = doc
        .split("<!-- not-acted-on list: begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- not-acted-on list: end -->").next())
        .expect("docs/design.md has the not-acted-on list markers");
    for (kind, _, _, _) in KINDS {
        let mut from_crd = std::collections::BTreeSet::new();
        walk(&node(kind, ""), "spec", &mut from_crd);
        let line = list
            .lines()
            .find(|l| l.starts_with(&format!("- **{kind}**: ")))
            .unwrap_or_default();
        let from_doc: std::collections::BTreeSet<String> = line
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        assert_eq!(
            from_doc, from_crd,
            "{kind}: docs/design.md vs the CRD's descriptions"
        );
    }
}

/// What users see when the API server refuses a Mesh: the bad CIDR entries and the duplicate gateway are
/// named by `messageExpression` (a static `message` stays as the fallback), and no rule uses
/// `reason: FieldValueDuplicate`, which the API server prints as `Duplicate value: "object"`, dropping
/// the message.
#[test]
fn cel_messages_name_the_bad_entry_and_the_duplicate_gateway() {
    let spec = &mesh_schema()["properties"]["spec"];
    let capture = &spec["properties"]["trafficCapture"]["properties"];
    let rule = |node: &Value| node["x-kubernetes-validations"][0].clone();
    for (field, filter) in [
        ("excludeOutboundCIDRs", "self.filter(c, !isCIDR(c))"),
        (
            "includeOutboundCIDRs",
            "self.filter(c, c != '*' && !isCIDR(c))",
        ),
    ] {
        let r = rule(&capture[field]);
        let expression = r["messageExpression"].as_str().unwrap_or("");
        assert!(
            expression.contains(&format!("'spec.trafficCapture.{field}: '"))
                && expression.contains(filter)
                && expression.contains(".join(', ')"),
            "{field}: {r}"
        );
        assert!(r["message"].is_string(), "{field}: the fallback message");
    }
    let r = rule(spec);
    let expression = r["messageExpression"].as_str().unwrap_or("");
    assert!(
        expression.contains("'spec.gateways: gateway '")
            && expression.contains("g.__namespace__ + '/' + g.name")
            && expression.contains("appears more than once"),
        "{r}"
    );
    assert_eq!(r["fieldPath"], ".gateways");
    let all = serde_json::to_string(&mesh_crd()).unwrap();
    assert!(
        !all.contains("FieldValueDuplicate"),
        "a rule still has reason FieldValueDuplicate"
    );
    // The list-type that would add its own `Duplicate value` error is not on the gateways either.
    assert!(
        spec["properties"]["gateways"]
            .get("x-kubernetes-list-type")
            .is_none()
    );
}
