//! The CRDs' CEL rules, run. There is no API server here, so cel-interpreter stands in for its cel-go,
//! with the Kubernetes library functions the rules use (`isIP`, `isCIDR`, `upperAscii`, `join`) added.
//! Every rule and messageExpression compiles; Istio's own examples and meshd's examples pass every rule
//! at every node they reach (as the API server evaluates them: only on fields that are present); broken
//! resources fail with the message the API server would print.

use std::sync::Arc;

use cel_interpreter::extractors::This;
use cel_interpreter::{Context, Program, Value as Cel};
use meshd_api::crd;
use serde_json::Value;

/// Each kind's schema, generated once.
fn schemas() -> &'static Vec<(String, Value)> {
    static SCHEMAS: std::sync::OnceLock<Vec<(String, Value)>> = std::sync::OnceLock::new();
    SCHEMAS.get_or_init(|| {
        crd::all()
            .into_iter()
            .map(|c| {
                let kind = c.spec.names.kind.clone();
                let v = serde_json::to_value(c).unwrap();
                (
                    kind,
                    v["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone(),
                )
            })
            .collect()
    })
}

fn schema_of(kind: &str) -> Option<&'static Value> {
    schemas().iter().find(|(k, _)| k == kind).map(|(_, s)| s)
}

fn context(self_value: &Value) -> Context<'static> {
    let mut ctx = Context::default();
    ctx.add_function("isIP", |s: Arc<String>| {
        s.parse::<std::net::IpAddr>().is_ok()
    });
    ctx.add_function("isCIDR", |s: Arc<String>| {
        s.contains('/') && s.parse::<meshd_api::values::IpCidr>().is_ok()
    });
    ctx.add_function("upperAscii", |This(s): This<Arc<String>>| {
        s.to_ascii_uppercase()
    });
    ctx.add_function(
        "join",
        |This(list): This<Arc<Vec<Cel>>>, sep: Arc<String>| {
            list.iter()
                .map(|v| match v {
                    Cel::String(s) => s.to_string(),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>()
                .join(&sep)
        },
    );
    ctx.add_variable("self", escaped(self_value))
        .expect("self converts");
    ctx
}

/// Field names that are CEL reserved words are `__name__` in Kubernetes CEL (`__namespace__`).
fn escaped(v: &Value) -> Value {
    const RESERVED: [&str; 18] = [
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "in",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ];
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let k = if RESERVED.contains(&k.as_str()) {
                        format!("__{k}__")
                    } else {
                        k.clone()
                    };
                    (k, escaped(v))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(escaped).collect()),
        other => other.clone(),
    }
}

/// Every rule failing on `doc` (or erroring), as `path: message`, the way the API server reports them.
fn failures(schema: &Value, doc: &Value, path: &str, out: &mut Vec<String>) {
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let text = rule["rule"].as_str().unwrap();
        let program = Program::compile(text).unwrap_or_else(|e| panic!("{path}: {text}: {e}"));
        let ctx = context(doc);
        match program.execute(&ctx) {
            Ok(Cel::Bool(true)) => {}
            Ok(Cel::Bool(false)) => {
                let message = match rule["messageExpression"].as_str() {
                    Some(expr) => match Program::compile(expr)
                        .unwrap_or_else(|e| panic!("{path}: {expr}: {e}"))
                        .execute(&ctx)
                    {
                        Ok(Cel::String(s)) => s.to_string(),
                        other => panic!("{path}: messageExpression {expr} gave {other:?}"),
                    },
                    None => rule["message"].as_str().unwrap().to_string(),
                };
                out.push(format!("{path}: {message}"));
            }
            other => out.push(format!("{path}: rule {text} evaluated to {other:?}")),
        }
    }
    match doc {
        Value::Object(map) => {
            for (k, v) in map {
                if v.is_null() {
                    continue;
                }
                let child = if let Some(s) = schema["properties"].get(k) {
                    s
                } else if schema["additionalProperties"].is_object() {
                    &schema["additionalProperties"]
                } else {
                    continue;
                };
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                failures(child, v, &p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                failures(&schema["items"], v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn check(yaml: &str) -> Vec<String> {
    let mut out = Vec::new();
    for doc in yaml.split("\n---\n") {
        let doc: Value = match serde_yaml::from_str(doc) {
            Ok(v @ Value::Object(_)) => v,
            _ => continue,
        };
        if let Some(schema) = schema_of(doc["kind"].as_str().unwrap_or_default()) {
            failures(schema, &doc, "", &mut out);
        }
    }
    out
}

#[test]
fn every_rule_and_message_expression_compiles() {
    fn walk(n: &Value, path: &str, count: &mut usize) {
        for rule in n["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for key in ["rule", "messageExpression"] {
                if let Some(text) = rule[key].as_str() {
                    Program::compile(text).unwrap_or_else(|e| panic!("{path} {key} {text}: {e}"));
                    *count += 1;
                }
            }
        }
        for (k, v) in n["properties"].as_object().into_iter().flatten() {
            walk(v, &format!("{path}.{k}"), count);
        }
        for k in ["items", "additionalProperties"] {
            if n[k].is_object() {
                walk(&n[k], path, count);
            }
        }
    }
    let mut count = 0;
    for (kind, schema) in schemas() {
        walk(schema, kind, &mut count);
    }
    assert!(count > 60, "only {count} expressions found");
}

#[test]
fn istio_examples_and_meshd_examples_pass_every_rule() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let mut files = Vec::new();
    for dir in ["tests/fixtures/istio", "examples"] {
        for entry in std::fs::read_dir(format!("{root}/{dir}")).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    let mut documents = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        documents += text.matches("\nkind: ").count();
        let failed = check(&text);
        assert!(
            failed.is_empty(),
            "{}:\n{}",
            file.display(),
            failed.join("\n")
        );
    }
    assert!(documents > 70, "only {documents} documents");
}

const VS: &str =
    "apiVersion: networking.meshd.io/v1alpha1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n";

#[test]
fn broken_resources_fail_with_the_api_servers_message() {
    for (yaml, want) in [
        (
            format!("{VS}  hosts: [\"*\"]\n  http:\n  - route:\n    - destination: {{host: reviews}}\n"),
            vec!["spec: hosts: \"*\" is valid only on a VirtualService bound to gateways (gateways set, without mesh)"],
        ),
        (
            format!("{VS}  hosts: [reviews]\n  http:\n  - match:\n    - uri: {{exact: /a, prefix: /b}}\n      headers: {{x-a: {{}}}}\n    route:\n    - destination: {{host: reviews}}\n    timeout: 0.5ms\n"),
            vec![
                "spec.http[0].match[0].uri: exactly one of exact, prefix or regex must be set",
                "spec.http[0].match[0].headers.x-a: exactly one of exact, prefix or regex must be set",
                "spec.http[0].timeout: \"0.5ms\" is not a duration of at least 1ms, such as 10s, 500ms or 1h30m",
            ],
        ),
        (
            format!("{VS}  hosts: [reviews]\n  http:\n  - redirect: {{uri: /x, port: 8080, derivePort: FROM_REQUEST_PORT}}\n    route:\n    - destination: {{host: reviews}}\n  - fault: {{abort: {{httpStatus: 503, grpcStatus: UNAVAILABLE}}}}\n  tcp:\n  - match:\n    - destinationSubnets: [10.0.0.0/8, 10.1.0.0/99, bogus]\n"),
            vec![
                "spec.http[0]: at most one of route, redirect or directResponse may be set",
                "spec.http[0].redirect: at most one of port or derivePort may be set",
                "spec.http[1]: one of route, redirect or directResponse is required",
                "spec.http[1].fault.abort: exactly one of httpStatus, grpcStatus or http2Error must be set",
                "spec.tcp[0].match[0].destinationSubnets: destinationSubnets: \"10.1.0.0/99\", \"bogus\" is not an IP address or CIDR such as 10.0.0.0/8",
            ],
        ),
        (
            "apiVersion: networking.meshd.io/v1alpha1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: reviews\n  trafficPolicy:\n    loadBalancer: {consistentHash: {httpHeaderName: x, useSourceIp: true}}\n  subsets:\n  - {name: v1}\n  - {name: v1}\n".to_string(),
            vec![
                "spec: subsets: each subset needs a unique name",
                "spec.trafficPolicy.loadBalancer.consistentHash: exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName must be set",
            ],
        ),
        (
            "apiVersion: networking.meshd.io/v1alpha1\nkind: ServiceEntry\nmetadata: {name: e}\nspec:\n  hosts: [a.example.com]\n  ports:\n  - {number: 80, name: http, protocol: sctp}\n  - {number: 80, name: http2}\n  resolution: NONE\n  endpoints: [{address: 1.2.3.4}]\n".to_string(),
            vec![
                "spec: endpoints: resolution NONE takes no endpoints (use STATIC or DNS)",
                "spec.ports: ports: each port number may appear once",
                "spec.ports[0].protocol: \"sctp\" is not a protocol (HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, MONGO, MYSQL, REDIS; any case)",
            ],
        ),
        (
            "apiVersion: networking.meshd.io/v1alpha1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  servers:\n  - port: {number: 443, name: https, protocol: https}\n    hosts: [\"*\"]\n  - port: {number: 8443, name: tls, protocol: TLS}\n    hosts: [\"*\"]\n    tls: {mode: SIMPLE, credentialName: c, minProtocolVersion: TLSV1_0}\n".to_string(),
            vec![
                "spec.servers[0]: tls: HTTPS and TLS servers need tls settings",
                "spec.servers[1].tls.minProtocolVersion: TLSV1_0 is older than TLS 1.2; meshd serves TLS 1.2 and newer only",
            ],
        ),
        (
            "apiVersion: security.meshd.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec:\n  portLevelMtls:\n    \"8080\": {mode: STRICT}\n    \"70000\": {mode: STRICT}\n".to_string(),
            vec![
                "spec: portLevelMtls needs a selector (ports belong to a workload)",
                "spec.portLevelMtls: portLevelMtls: \"70000\" is not a port number (1-65535)",
            ],
        ),
        (
            "apiVersion: security.meshd.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec:\n  action: CUSTOM\n  rules:\n  - from:\n    - source: {ipBlocks: [\"::1\", 10.0.0.0/8, 300.0.0.1]}\n".to_string(),
            vec![
                "spec: provider is set exactly when action is CUSTOM",
                "spec.rules[0].from[0].source.ipBlocks: ipBlocks: \"300.0.0.1\" is not an IP address or CIDR such as 10.0.0.0/8",
            ],
        ),
    ] {
        let mut got = check(&yaml);
        got.sort();
        let mut want = want;
        want.sort();
        assert_eq!(got, want, "\n{yaml}");
    }
}
