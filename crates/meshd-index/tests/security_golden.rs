//! Golden xDS output for mTLS and authorization (SPEC §9): the small mesh of `security.yaml` (an HTTP and
//! a TCP service, meshed pods and one without a sidecar) under each Mesh mode, with PeerAuthentications
//! at every scope and AuthorizationPolicies of each action, reduced by the kinds' reducers and rendered
//! as Envoy's proto-JSON. What each file must show is also spelled out, so a careless bless cannot hide
//! a regression.

mod support;

use std::sync::Arc;

use meshd_api::MeshSpec;
use meshd_api::mesh::MtlsMode;
use meshd_translate::facts::{Fact, FactChange, FactKind, ObjectKey};
use meshd_translate::{CompiledMesh, NodeId, ResourceType, TranslateSettings, Translator};
use serde_json::Value;
use support::{check_golden, descriptor_pool, load, reduce_documents, render, render_types};

fn mesh_fact(mode: MtlsMode) -> FactChange {
    let mut spec = MeshSpec::default();
    spec.mtls.mode = mode;
    FactChange {
        kind: FactKind::Mesh,
        key: ObjectKey::new("", "default"),
        fact: Some(Fact::Mesh(Arc::new(spec))),
    }
}

/// `security.yaml`, the given extra documents, and the Mesh in `mode`.
fn compile(mode: MtlsMode, extra: &str) -> CompiledMesh {
    let mut changes = load("security.yaml");
    changes.extend(reduce_documents(extra));
    changes.push(mesh_fact(mode));
    Translator::new(TranslateSettings::default())
        .apply(changes)
        .0
}

fn config(compiled: &CompiledMesh, node: &str, types: &[ResourceType]) -> Value {
    let config = compiled.proxy_config(&NodeId::parse(node).unwrap());
    assert!(config.known, "{node}");
    render_types(&descriptor_pool(), &config, types)
}

fn inbound(json: &Value) -> &Value {
    json["lds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "virtualInbound")
        .unwrap()
}

fn chain_names(listener: &Value) -> Vec<String> {
    listener["filterChains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn chain<'a>(listener: &'a Value, name: &str) -> &'a Value {
    listener["filterChains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no chain {name}"))
}

fn by_name<'a>(json: &'a Value, ty: &str, name: &str) -> &'a Value {
    json[ty]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name || r["clusterName"] == name)
        .unwrap_or_else(|| panic!("no {ty} {name}"))
}

const WEB: &str = "outbound|80||web.shop.svc.cluster.local";
const DB: &str = "outbound|5432||db.shop.svc.cluster.local";

/// The SANs a cluster's mTLS transport socket checks, and its SNI; `None` when plaintext only.
fn client_tls(json: &Value, cluster: &str) -> Option<(Vec<String>, String)> {
    let matches = by_name(json, "cds", cluster)["transportSocketMatches"].as_array()?;
    assert_eq!(matches.len(), 2);
    assert_eq!(matches[1]["name"], "tlsMode-disabled");
    assert_eq!(matches[0]["match"], serde_json::json!({"tlsMode": "meshd"}));
    let tls = &matches[0]["transportSocket"]["typedConfig"];
    let common = &tls["commonTlsContext"];
    assert_eq!(common["alpnProtocols"], serde_json::json!(["istio"]));
    assert_eq!(
        common["tlsCertificateSdsSecretConfigs"][0]["name"],
        "default"
    );
    let combined = &common["combinedValidationContext"];
    assert_eq!(
        combined["validationContextSdsSecretConfig"]["name"],
        "ROOTCA"
    );
    assert_eq!(common["tlsParams"]["tlsMinimumProtocolVersion"], "TLSv1_2");
    let sans = combined["defaultValidationContext"]["matchTypedSubjectAltNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["matcher"]["exact"].as_str().unwrap().to_string())
        .collect();
    Some((sans, tls["sni"].as_str().unwrap().to_string()))
}

/// The endpoints of a cluster with whether each is marked for mTLS.
fn endpoints(json: &Value, cluster: &str) -> Vec<(String, bool)> {
    by_name(json, "eds", cluster)["endpoints"][0]["lbEndpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let ip = e["endpoint"]["address"]["socketAddress"]["address"]
                .as_str()
                .unwrap()
                .to_string();
            let meshed = e["metadata"]["filterMetadata"]["envoy.transport_socket_match"]["tlsMode"]
                == "meshd";
            (ip, meshed)
        })
        .collect()
}

#[test]
fn strict_requires_mtls_inbound_and_clients_use_it_towards_meshed_endpoints_only() {
    let compiled = compile(MtlsMode::Strict, "");
    let json = config(&compiled, "web-0.shop", &ResourceType::ALL);
    check_golden("security-strict.json", &json);

    let inbound = inbound(&json);
    assert_eq!(
        chain_names(inbound),
        [
            "inbound|8080||-mtls",
            "inbound|8080||-refused",
            "InboundPassthroughCluster-mtls"
        ]
    );
    assert!(
        inbound.get("defaultFilterChain").is_none(),
        "plaintext to another port matches nothing: closed"
    );
    let mtls = chain(inbound, "inbound|8080||-mtls");
    assert_eq!(mtls["filterChainMatch"]["transportProtocol"], "tls");
    let server = &mtls["transportSocket"]["typedConfig"];
    assert_eq!(server["requireClientCertificate"], true);
    assert_eq!(
        server["commonTlsContext"]["combinedValidationContext"]["defaultValidationContext"]["matchTypedSubjectAltNames"]
            [0]["matcher"]["prefix"],
        "spiffe://cluster.local/"
    );
    let refused = chain(inbound, "inbound|8080||-refused");
    assert_eq!(
        refused["filterChainMatch"]["transportProtocol"],
        "raw_buffer"
    );
    assert_eq!(
        refused["filters"][0]["typedConfig"]["cluster"],
        "BlackHoleCluster"
    );
    assert_eq!(
        inbound["listenerFilters"][1]["name"],
        "envoy.filters.listener.tls_inspector"
    );

    // web mixes a meshed pod (targetRef) and one without a sidecar; db's pod is found by its IP.
    assert_eq!(
        client_tls(&json, WEB),
        Some((
            vec!["spiffe://cluster.local/ns/shop/sa/web".to_string()],
            "outbound_.80_._.web.shop.svc.cluster.local".to_string()
        ))
    );
    assert_eq!(
        endpoints(&json, WEB),
        [("10.0.1.1".into(), true), ("10.0.1.2".into(), false)]
    );
    assert_eq!(
        client_tls(&json, DB).map(|t| t.0),
        Some(vec!["spiffe://cluster.local/ns/shop/sa/db".to_string()])
    );
    assert_eq!(endpoints(&json, DB), [("10.0.2.1".into(), true)]);
}

#[test]
fn permissive_accepts_mesh_mtls_plaintext_and_the_apps_own_tls() {
    let compiled = compile(MtlsMode::Permissive, "");
    let json = config(&compiled, "web-0.shop", &[ResourceType::Listener]);
    check_golden("security-permissive.json", &json);
    let inbound = inbound(&json);
    assert_eq!(
        chain_names(inbound),
        [
            "inbound|8080||-mtls",
            "inbound|8080||-tls",
            "inbound|8080||",
            "InboundPassthroughCluster-mtls"
        ]
    );
    let mtls = &chain(inbound, "inbound|8080||-mtls")["filterChainMatch"];
    assert_eq!(
        mtls["applicationProtocols"],
        serde_json::json!([
            "istio",
            "istio-peer-exchange",
            "istio-http/1.0",
            "istio-http/1.1",
            "istio-h2"
        ])
    );
    // TLS without a mesh ALPN is the app's own: passed to it as bytes, not terminated.
    let own = chain(inbound, "inbound|8080||-tls");
    assert_eq!(own["filterChainMatch"]["transportProtocol"], "tls");
    assert!(own.get("transportSocket").is_none());
    assert_eq!(own["filters"][0]["name"], "envoy.filters.network.tcp_proxy");
    assert_eq!(
        chain(inbound, "inbound|8080||")["filterChainMatch"]["transportProtocol"],
        "raw_buffer"
    );
    assert_eq!(
        inbound["defaultFilterChain"]["name"],
        "InboundPassthroughCluster"
    );
    // Under mTLS the app hears who called: Envoy sets x-forwarded-client-cert.
    let hcm = &chain(inbound, "inbound|8080||-mtls")["filters"][0]["typedConfig"];
    assert_eq!(hcm["forwardClientCertDetails"], "SANITIZE_SET");
    assert_eq!(hcm["setCurrentClientCertDetails"]["uri"], true);
}

#[test]
fn disable_generates_no_tls_at_all() {
    let compiled = compile(MtlsMode::Disable, "");
    let json = config(&compiled, "web-0.shop", &ResourceType::ALL);
    check_golden("security-disable.json", &json);
    assert_eq!(
        json["sds"],
        serde_json::json!([]),
        "a sidecar holds no SDS Secret"
    );
    let mut rest = json.clone();
    rest.as_object_mut().expect("an object").remove("sds");
    let text = rest.to_string();
    for needle in ["transportSocket", "sds", "tls_inspector", "tlsMode"] {
        assert!(!text.contains(needle), "{needle} in a DISABLE config");
    }
    assert_eq!(chain_names(inbound(&json)), ["inbound|8080||"]);
}

const PEER_POLICIES: &str = r#"
apiVersion: security.meshd.io/v1alpha1
kind: PeerAuthentication
metadata: {name: default, namespace: meshd-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.meshd.io/v1alpha1
kind: PeerAuthentication
metadata: {name: shop-newer, namespace: shop, creationTimestamp: "2025-02-01T00:00:00Z"}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.meshd.io/v1alpha1
kind: PeerAuthentication
metadata: {name: shop-older, namespace: shop, creationTimestamp: "2025-01-01T00:00:00Z"}
spec:
  mtls: {mode: PERMISSIVE}
---
apiVersion: security.meshd.io/v1alpha1
kind: PeerAuthentication
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  mtls: {mode: DISABLE}
  portLevelMtls:
    "8080": {mode: STRICT}
    "9000": {mode: PERMISSIVE}
"#;

#[test]
fn peer_authentication_workload_over_namespace_over_mesh_over_the_mesh_default() {
    // The Mesh says DISABLE; the mesh-wide PeerAuthentication overrides it.
    let compiled = compile(MtlsMode::Disable, PEER_POLICIES);
    let web = config(&compiled, "web-0.shop", &[ResourceType::Listener]);
    check_golden("security-peer-precedence.json", &inbound(&web).clone());
    let web_in = inbound(&web);
    // Workload: DISABLE, with 8080 STRICT (a Service port) and 9000 PERMISSIVE (no Service: passthrough).
    assert_eq!(
        chain_names(web_in),
        [
            "inbound|8080||-mtls",
            "inbound|8080||-refused",
            "InboundPassthroughCluster|9000-mtls",
            "InboundPassthroughCluster|9000-tls",
            "InboundPassthroughCluster|9000",
        ]
    );
    assert_eq!(
        web_in["defaultFilterChain"]["name"],
        "InboundPassthroughCluster"
    );
    assert!(
        web_in["defaultFilterChain"]
            .get("transportSocket")
            .is_none()
    );
    // The inspector runs only where a port accepts mTLS.
    let disabled = &web_in["listenerFilters"][1]["filterDisabled"];
    assert_eq!(
        disabled["notMatch"]["orMatch"]["rules"],
        serde_json::json!([
            {"destinationPortRange": {"start": 8080, "end": 8081}},
            {"destinationPortRange": {"start": 9000, "end": 9001}}
        ])
    );

    // Namespace: the older of shop's two policies (PERMISSIVE) wins over the mesh-wide STRICT.
    let db = config(&compiled, "db-0.shop", &[ResourceType::Listener]);
    assert!(chain_names(inbound(&db)).contains(&"inbound|5432||-tls".to_string()));
    // Mesh-wide: STRICT in a namespace without policies of its own.
    let batch = config(&compiled, "batch-0.jobs", &[ResourceType::Listener]);
    assert_eq!(
        chain_names(inbound(&batch)),
        ["InboundPassthroughCluster-mtls"]
    );

    // Clients follow the server's mode on the endpoint's port: web's 8080 is STRICT (mTLS), db is
    // PERMISSIVE (mTLS). With db-0's workload policy DISABLE it gets plaintext and its cluster no TLS.
    let client = config(
        &compiled,
        "batch-0.jobs",
        &[ResourceType::Cluster, ResourceType::Endpoint],
    );
    assert_eq!(endpoints(&client, WEB)[0], ("10.0.1.1".into(), true));
    assert!(client_tls(&client, DB).is_some());
    let db_off = "---\napiVersion: security.meshd.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: db, namespace: shop}\nspec:\n  selector: {matchLabels: {app: db}}\n  mtls: {mode: DISABLE}\n";
    let compiled = compile(MtlsMode::Disable, &format!("{PEER_POLICIES}{db_off}"));
    let client = config(
        &compiled,
        "batch-0.jobs",
        &[ResourceType::Cluster, ResourceType::Endpoint],
    );
    assert_eq!(client_tls(&client, DB), None);
    assert_eq!(endpoints(&client, DB), [("10.0.2.1".into(), false)]);
}

const AUTHZ_POLICIES: &str = r#"
apiVersion: security.meshd.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: allow-frontend, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/frontend]}}]
    to: [{operation: {methods: [GET], paths: ["/api/*"]}}]
  - from: [{source: {ipBlocks: [10.0.9.0/24]}}]
    when: [{key: "request.headers[X-Canary]", values: ["yes"]}]
---
apiVersion: security.meshd.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]
---
apiVersion: security.meshd.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: audit-all, namespace: shop}
spec:
  action: AUDIT
  rules: [{}]
---
apiVersion: security.meshd.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: allow-db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]
    to: [{operation: {ports: ["5432"]}}]
  - from: [{source: {principals: ["*"]}}]
    to: [{operation: {methods: [GET]}}]
---
apiVersion: security.meshd.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: deny-jobs-deletes, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  action: DENY
  rules:
  - from: [{source: {namespaces: [jobs]}}]
    to: [{operation: {methods: [DELETE]}}]
---
apiVersion: security.meshd.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: nothing-for-batch, namespace: meshd-system}
spec:
  selector: {matchLabels: {app: batch}}
"#;

/// The RBAC filters of a chain: (filter name, Envoy action, policy names).
fn rbac_of(filters: &[Value]) -> Vec<(String, String, Vec<String>)> {
    filters
        .iter()
        .filter(|f| f["name"].as_str().unwrap().contains("rbac"))
        .map(|f| {
            let rules = &f["typedConfig"]["rules"];
            let names = rules["policies"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            (
                f["name"].as_str().unwrap().to_string(),
                rules["action"].as_str().unwrap_or("ALLOW").to_string(),
                names,
            )
        })
        .collect()
}

#[test]
fn authorization_policies_become_rbac_filters_in_istios_order() {
    let compiled = compile(MtlsMode::Strict, AUTHZ_POLICIES);
    let web = config(&compiled, "web-0.shop", &[ResourceType::Listener]);
    check_golden("security-authz-web.json", &inbound(&web).clone());
    let hcm = &chain(inbound(&web), "inbound|8080||-mtls")["filters"][0]["typedConfig"];
    let filters = hcm["httpFilters"].as_array().unwrap();
    assert_eq!(
        rbac_of(filters),
        [
            (
                "envoy.filters.http.rbac".into(),
                "LOG".into(),
                vec!["ns[shop]-policy[audit-all]-rule[0]".into()]
            ),
            (
                "envoy.filters.http.rbac".into(),
                "DENY".into(),
                vec!["ns[shop]-policy[deny-admin]-rule[0]".into()]
            ),
            (
                "envoy.filters.http.rbac".into(),
                "ALLOW".into(),
                vec![
                    "ns[shop]-policy[allow-frontend]-rule[0]".into(),
                    "ns[shop]-policy[allow-frontend]-rule[1]".into()
                ]
            ),
        ]
    );
    assert_eq!(
        filters.last().unwrap()["name"],
        "envoy.filters.http.router",
        "policy before the router"
    );
    let allow =
        &filters[2]["typedConfig"]["rules"]["policies"]["ns[shop]-policy[allow-frontend]-rule[0]"];
    assert_eq!(
        allow["principals"][0]["authenticated"]["principalName"]["exact"],
        "spiffe://cluster.local/ns/shop/sa/frontend"
    );
    // The passthrough chain is TCP: the ALLOW rules need HTTP, so none is left there (it denies all),
    // and the DENY rule loses its path, so it denies every connection (Istio's wider deny).
    let tcp = chain(inbound(&web), "InboundPassthroughCluster-mtls")["filters"]
        .as_array()
        .unwrap();
    let tcp_rbac = rbac_of(tcp);
    assert_eq!(tcp_rbac[0].1, "LOG");
    assert_eq!(
        tcp_rbac[1],
        (
            "envoy.filters.network.rbac".into(),
            "DENY".into(),
            vec!["ns[shop]-policy[deny-admin]-rule[0]".into()]
        )
    );
    assert_eq!(tcp_rbac[2].1, "ALLOW");
    assert!(tcp_rbac[2].2.is_empty(), "{tcp_rbac:?}");

    // db is TCP: the HTTP-only rule of allow-db is dropped (smaller allow), deny-jobs-deletes loses
    // its method (wider deny: every connection from namespace jobs).
    let db = config(&compiled, "db-0.shop", &[ResourceType::Listener]);
    check_golden("security-authz-db.json", &inbound(&db).clone());
    let tcp = chain(inbound(&db), "inbound|5432||-mtls")["filters"]
        .as_array()
        .unwrap();
    let rbac = rbac_of(tcp);
    assert_eq!(
        rbac.iter()
            .map(|r| (r.1.as_str(), r.2.clone()))
            .collect::<Vec<_>>(),
        [
            (
                "LOG",
                vec!["ns[shop]-policy[audit-all]-rule[0]".to_string()]
            ),
            (
                "DENY",
                vec!["ns[shop]-policy[deny-jobs-deletes]-rule[0]".to_string()]
            ),
            (
                "ALLOW",
                vec!["ns[shop]-policy[allow-db]-rule[0]".to_string()]
            ),
        ]
    );
    let deny =
        &tcp[1]["typedConfig"]["rules"]["policies"]["ns[shop]-policy[deny-jobs-deletes]-rule[0]"];
    assert_eq!(deny["permissions"][0]["any"], true, "the method is gone");
    assert_eq!(
        deny["principals"][0]["authenticated"]["principalName"]["safeRegex"]["regex"],
        "spiffe://[^/]+/ns/jobs/sa/[^/]+"
    );

    // A meshd-system policy with a selector applies in every namespace: an ALLOW without rules denies
    // everything batch-0 serves.
    let batch = config(&compiled, "batch-0.jobs", &[ResourceType::Listener]);
    let tcp = chain(inbound(&batch), "InboundPassthroughCluster-mtls")["filters"]
        .as_array()
        .unwrap();
    assert_eq!(
        rbac_of(tcp),
        [("envoy.filters.network.rbac".into(), "ALLOW".into(), vec![])]
    );
}

#[test]
fn rbac_bytes_do_not_depend_on_hash_map_order() {
    // Envoy's policy map is a HashMap: encoded naively, two translations of the same facts differ.
    let node = NodeId::parse("web-0.shop").unwrap();
    let bytes = || {
        let compiled = compile(MtlsMode::Strict, AUTHZ_POLICIES);
        let config = compiled.proxy_config(&node);
        config
            .resources(ResourceType::Listener)
            .map(|r| r.body.value.clone())
            .collect::<Vec<_>>()
    };
    let first = bytes();
    for _ in 0..8 {
        assert_eq!(bytes(), first);
    }
}

#[test]
fn the_whole_security_mesh_renders() {
    // Every proxy of the mesh renders (no unknown type in any typed config).
    let compiled = compile(
        MtlsMode::Permissive,
        &format!("{PEER_POLICIES}---{AUTHZ_POLICIES}"),
    );
    for node in ["web-0.shop", "legacy-0.shop", "db-0.shop", "batch-0.jobs"] {
        let config = compiled.proxy_config(&NodeId::parse(node).unwrap());
        render(&descriptor_pool(), &config);
    }
}

/// MESH_INTERNAL ServiceEntries get auto mTLS towards endpoints that are pods of the mesh; MESH_EXTERNAL
/// ones never do (Istio), even when the endpoint is such a pod (web-0, 10.0.1.1).
#[test]
fn only_mesh_internal_service_entries_get_auto_mtls() {
    let mut extra = String::new();
    for (name, location) in [
        ("vm-internal", "MESH_INTERNAL"),
        ("vm-external", "MESH_EXTERNAL"),
    ] {
        extra.push_str(&format!(
            "---
apiVersion: networking.meshd.io/v1alpha1
kind: ServiceEntry
metadata: {{name: {name}, namespace: shop}}
spec:
  hosts: [{name}.example.com]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  location: {location}
  resolution: STATIC
  endpoints: [{{address: 10.0.1.1}}]
"
        ));
    }
    let compiled = compile(MtlsMode::Strict, &extra);
    let json = config(&compiled, "web-0.shop", &[ResourceType::Cluster]);
    let internal = by_name(&json, "cds", "outbound|8080||vm-internal.example.com");
    assert!(
        internal
            .to_string()
            .contains("spiffe://cluster.local/ns/shop/sa/web"),
        "MESH_INTERNAL: auto mTLS checking the pod's identity: {internal}"
    );
    let external = by_name(&json, "cds", "outbound|8080||vm-external.example.com");
    assert!(
        external.get("transportSocketMatches").is_none()
            && external.get("transportSocket").is_none(),
        "MESH_EXTERNAL: no mTLS: {external}"
    );
}

/// `Mesh.status.mtls` (SPEC §9): the mode in force mesh-wide is the mesh-wide PeerAuthentication's,
/// not the Mesh's DISABLE; the overrides are the policies that give a meshed pod another mode, and
/// every pod's inbound side shows the mode the status gives it.
#[test]
fn the_mesh_status_names_the_mode_the_proxies_got_and_what_overrides_it() {
    use meshd_api::security::MtlsOverride;
    let compiled = compile(MtlsMode::Disable, PEER_POLICIES);
    let status = compiled.mtls_status("default");
    assert_eq!(status.mode, MtlsMode::Strict);
    assert_eq!(status.source, "PeerAuthentication meshd-system/default");
    assert_eq!(status.summary, "STRICT (2 overrides)");
    assert_eq!((status.overrides, status.overridden_pods), (2, 2));
    // shop-newer is not in force (shop-older is older); web's own DISABLE hides shop's PERMISSIVE
    // from web-0, but db-0 gets it.
    assert_eq!(
        status.overridden_by,
        [
            MtlsOverride {
                namespace: "shop".into(),
                name: "shop-older".into(),
                scope: "Namespace".into(),
                mode: MtlsMode::Permissive,
                ports: Default::default(),
            },
            MtlsOverride {
                namespace: "shop".into(),
                name: "web".into(),
                scope: "Workload".into(),
                mode: MtlsMode::Disable,
                ports: [
                    ("8080".to_string(), MtlsMode::Strict),
                    ("9000".to_string(), MtlsMode::Permissive)
                ]
                .into(),
            },
        ]
    );
    // The pod the status leaves at STRICT has STRICT's inbound side; the overridden ones do not.
    let batch = config(&compiled, "batch-0.jobs", &[ResourceType::Listener]);
    assert_eq!(
        chain_names(inbound(&batch)),
        ["InboundPassthroughCluster-mtls"]
    );
    let db = config(&compiled, "db-0.shop", &[ResourceType::Listener]);
    assert!(chain_names(inbound(&db)).contains(&"inbound|5432||-tls".to_string()));

    // Without the mesh-wide policy the Mesh's own mode is in force; shop's PERMISSIVE still overrides
    // it, and so does web's policy, whose own DISABLE now agrees but whose ports do not. Without any
    // policy nothing does.
    let without_mesh_wide = PEER_POLICIES.split_once("---\n").unwrap().1;
    let status = compile(MtlsMode::Disable, without_mesh_wide).mtls_status("default");
    assert_eq!(status.source, "spec.mtls.mode");
    assert_eq!(status.summary, "DISABLE (2 overrides)");
    let names: Vec<&str> = status
        .overridden_by
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(names, ["shop-older", "web"]);
    let status = compile(MtlsMode::Strict, "").mtls_status("default");
    assert_eq!(status.summary, "STRICT");
    assert_eq!((status.overrides, status.overridden_pods), (0, 0));
    assert!(status.overridden_by.is_empty());
    // Another mesh's pods are not counted.
    let status = compile(MtlsMode::Disable, PEER_POLICIES).mtls_status("blue");
    assert_eq!(status.summary, "STRICT");
}
