//! Per-object validation of the traffic and security kinds, table-driven: a YAML document in, every
//! problem out as `meshd validate` prints it (`FIELD: problem`, the field path first).

use meshd_api::validate::{Outcome, check_documents};
use pretty_assertions::assert_eq;

/// The problems of each document of `yaml`, in order.
fn problems(yaml: &str) -> Vec<String> {
    check_documents(yaml)
        .into_iter()
        .flat_map(|c| match c.outcome {
            Outcome::Object { errors, .. } => errors.iter().map(ToString::to_string).collect(),
            Outcome::Unreadable { problem } => vec![format!("document {}: {problem}", c.number)],
            Outcome::Skipped { kind } => vec![format!("skipped {kind}")],
        })
        .collect()
}

const VS: &str = "apiVersion: networking.meshd.io/v1alpha1\nkind: VirtualService\nmetadata: {name: reviews, namespace: shop}\n";
const DR: &str = "apiVersion: networking.meshd.io/v1alpha1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: shop}\n";
const SE: &str = "apiVersion: networking.meshd.io/v1alpha1\nkind: ServiceEntry\nmetadata: {name: ext, namespace: shop}\n";
const GW: &str = "apiVersion: networking.meshd.io/v1alpha1\nkind: Gateway\nmetadata: {name: edge, namespace: shop}\n";
const PA: &str = "apiVersion: security.meshd.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: pa, namespace: shop}\n";
const AP: &str = "apiVersion: security.meshd.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: ap, namespace: shop}\n";

fn check(cases: &[(&str, &str, &[&str])]) {
    for (head, spec, want) in cases {
        let yaml = format!("{head}spec:\n{spec}");
        assert_eq!(problems(&yaml), *want, "\n{yaml}");
    }
}

#[test]
fn virtual_service() {
    check(&[
        (
            VS,
            "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 90\n    - destination: {host: reviews, subset: v2}\n      weight: 10\n    timeout: 1.5s\n    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: \"5xx,connect-failure,503\"}\n",
            &[],
        ),
        (
            VS,
            "  hosts: [reviews]\n",
            &["spec: needs at least one http, tcp or tls route"],
        ),
        (
            VS,
            "  http:\n  - route:\n    - destination: {host: reviews}\n",
            &["spec.hosts: is required (delegate VirtualServices are not supported)"],
        ),
        (
            VS,
            "  hosts: [\"*\"]\n  http:\n  - route:\n    - destination: {host: reviews}\n",
            &[
                "spec.hosts[0]: \"*\" is valid only on a VirtualService bound to gateways (not mesh)",
            ],
        ),
        (
            VS,
            "  hosts: [\"*\"]\n  gateways: [shop/edge]\n  http:\n  - route:\n    - destination: {host: reviews}\n",
            &[],
        ),
        (
            VS,
            "  hosts: [\"a*.shop\", \"*.shop.svc\"]\n  http:\n  - route:\n    - destination: {host: reviews}\n",
            &[
                "spec.hosts[0]: \"a*.shop\" is not a host (a DNS name such as reviews or reviews.shop.svc.cluster.local, optionally with a leading \"*.\")",
            ],
        ),
        (
            VS,
            "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 0\n    - destination: {host: reviews, subset: v2}\n",
            &[
                "spec.http[0].route: has weights that are all 0, so no destination would get traffic",
            ],
        ),
        (
            VS,
            "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, port: {number: 70000}}\n      weight: 101\n",
            &[
                "spec.http[0].route[0].destination.port.number: 70000 is not a port (1-65535)",
                "spec.http[0].route[0].weight: 101 is out of range (0-100)",
            ],
        ),
        (
            VS,
            "  hosts: [reviews]\n  http:\n  - timeout: \"10\"\n    route:\n    - destination: {host: reviews}\n    retries: {perTryTimeout: 0.5ms, retryOn: \"5xx,sometimes\"}\n",
            &[
                "spec.http[0].timeout: \"10\" has no unit (write e.g. 10s, 500ms or 1h30m)",
                "spec.http[0].retries.perTryTimeout: \"0.5ms\" is shorter than 1ms",
                "spec.http[0].retries.retryOn: \"sometimes\" is not an Envoy retry condition (5xx, gateway-error, connect-failure, refused-stream, reset, retriable-4xx, unavailable, cancelled, … or an HTTP status code)",
            ],
        ),
        (
            VS,
            "  hosts: [reviews]\n  http:\n  - match:\n    - uri: {prefix: /api, exact: /api}\n      headers:\n        x-user: {regex: \"^(?!admin)\"}\n    route:\n    - destination: {host: reviews}\n",
            &[
                "spec.http[0].match[0].uri: needs exactly one of exact, prefix or regex",
                "spec.http[0].match[0].headers[x-user].regex: \"^(?!admin)\" is not an RE2 regex: look-around, including look-ahead and look-behind, is not supported",
            ],
        ),
        (
            VS,
            "  hosts: [reviews]\n  http:\n  - redirect: {uri: /v2, redirectCode: 305}\n    rewrite: {uri: /v3}\n",
            &[
                "spec.http[0].rewrite: cannot be combined with redirect",
                "spec.http[0].redirect.redirectCode: 305 is not a redirect code Envoy sends (301, 302, 303, 307, 308)",
            ],
        ),
        (
            VS,
            "  hosts: [reviews]\n  http:\n  - fault:\n      abort: {httpStatus: 503, grpcStatus: UNAVAILABLE, percentage: {value: 150}}\n      delay: {percentage: {value: 10}}\n    route:\n    - destination: {host: reviews}\n",
            &[
                "spec.http[0].fault.delay: needs exactly one of fixedDelay or exponentialDelay",
                "spec.http[0].fault.abort: needs exactly one of httpStatus, grpcStatus or http2Error",
                "spec.http[0].fault.abort.percentage.value: 150 is not a percentage (0-100)",
            ],
        ),
        (
            VS,
            "  hosts: [reviews]\n  http:\n  - headers:\n      request:\n        set: {\":path\": /x, host: evil, x-ok: \"1\"}\n    route:\n    - destination: {host: reviews}\n",
            &[
                "spec.http[0].headers.request.set[:path]: \":path\" cannot be modified (Envoy refuses pseudo-headers and host; use rewrite.authority)",
                "spec.http[0].headers.request.set[host]: \"host\" cannot be modified (Envoy refuses pseudo-headers and host; use rewrite.authority)",
            ],
        ),
        (
            VS,
            "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n    mirror: {host: shadow}\n    mirrors:\n    - destination: {host: shadow2}\n",
            &["spec.http[0]: may have only one of mirror or mirrors"],
        ),
        (
            VS,
            "  hosts: [db]\n  tcp:\n  - match:\n    - destinationSubnets: [10.0.0.0/33]\n      port: 5432\n    route: []\n  tls:\n  - route:\n    - destination: {host: db}\n",
            &[
                "spec.tls[0].match: is required (TLS routes match on sniHosts)",
                "spec.tcp[0].match[0].destinationSubnets[0]: \"10.0.0.0/33\" is not an IP address or CIDR such as 10.0.0.0/8",
                "spec.tcp[0].route: needs at least one destination",
            ],
        ),
        (
            VS,
            "  hosts: [pay, \"*.pay.example.com\"]\n  tls:\n  - match:\n    - sniHosts: [pay, eu.pay.example.com, \"*.eu.pay.example.com\", api.example.com, \"*.example.com\"]\n    route:\n    - destination: {host: pay}\n",
            &[
                "spec.tls[0].match[0].sniHosts[3]: \"api.example.com\" is not one of the VirtualService's hosts nor covered by one (Istio requires each sniHost to be)",
                "spec.tls[0].match[0].sniHosts[4]: \"*.example.com\" is not one of the VirtualService's hosts nor covered by one (Istio requires each sniHost to be)",
            ],
        ),
        (
            VS,
            "  hosts: [db]\n  tcp:\n  - match: [{sourceNamespace: Shop_1}]\n    route: [{destination: {host: db}}]\n",
            &["spec.tcp[0].match[0].sourceNamespace: \"Shop_1\" is not a namespace name"],
        ),
        (
            VS,
            "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n      wieght: 10\n",
            &[
                "spec.http[0].route[0].wieght: is not a field of this kind (misspelt, or not supported)",
            ],
        ),
    ]);
}

#[test]
fn destination_rule() {
    check(&[
        (
            DR,
            "  host: reviews\n  trafficPolicy:\n    loadBalancer: {consistentHash: {httpCookie: {name: user, ttl: 0s}}}\n    connectionPool: {tcp: {maxConnections: 100, connectTimeout: 30ms}, http: {http1MaxPendingRequests: 10}}\n    outlierDetection: {consecutive5xxErrors: 7, interval: 5m, baseEjectionTime: 15m}\n  subsets:\n  - {name: v1, labels: {version: v1}}\n",
            &[],
        ),
        (
            DR,
            "  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v1, labels: {version: v2}}\n  - {name: V3}\n",
            &[
                "spec.host: is required",
                "spec.subsets[1].name: \"v1\" is also the name of spec.subsets[0]",
                "spec.subsets[2].name: \"V3\" is not a subset name (a DNS label)",
            ],
        ),
        (
            DR,
            "  host: \"*\"\n  trafficPolicy:\n    loadBalancer:\n      simple: ROUND_ROBIN\n      consistentHash: {httpHeaderName: x-user, useSourceIp: true}\n",
            &[
                "spec.host: \"*\" is not a host (a DNS name such as reviews or reviews.shop.svc.cluster.local, optionally with a leading \"*.\")",
                "spec.trafficPolicy.loadBalancer: may have only one of simple or consistentHash",
                "spec.trafficPolicy.loadBalancer.consistentHash: needs exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName",
            ],
        ),
        (
            DR,
            "  host: reviews\n  trafficPolicy:\n    outlierDetection: {interval: 10, maxEjectionPercent: 120}\n    tls: {mode: MUTUAL}\n    portLevelSettings:\n    - port: {number: 80}\n    - port: {number: 80}\n      connectionPool: {http: {idleTimeout: 1d}}\n",
            &[
                "spec.trafficPolicy.outlierDetection.interval: does not parse: invalid type: integer `10`, expected a string",
            ],
        ),
        (
            DR,
            "  host: reviews\n  trafficPolicy:\n    outlierDetection: {interval: \"10\", maxEjectionPercent: 120}\n    tls: {mode: MUTUAL}\n    portLevelSettings:\n    - port: {number: 80}\n    - port: {number: 80}\n      connectionPool: {http: {idleTimeout: 1d}}\n",
            &[
                "spec.trafficPolicy.outlierDetection.interval: \"10\" has no unit (write e.g. 10s, 500ms or 1h30m)",
                "spec.trafficPolicy.outlierDetection.maxEjectionPercent: 120 is out of range (0-100)",
                "spec.trafficPolicy.tls.clientCertificate: is required with mode MUTUAL",
                "spec.trafficPolicy.tls.privateKey: is required with mode MUTUAL",
                "spec.trafficPolicy.portLevelSettings[1].port.number: 80 also has portLevelSettings[0]",
                "spec.trafficPolicy.portLevelSettings[1].connectionPool.http.idleTimeout: \"1d\" has an unknown unit \"d\" (units are ns, us, ms, s, m, h)",
            ],
        ),
        (
            DR,
            "  host: reviews\n  trafficPolicy:\n    tls: {mode: SIMPLE, caCertificates: /etc/ca.pem, sni: reviews.example.com, subjectAltNames: [reviews.example.com]}\n    portLevelSettings:\n    - port: {number: 80}\n      tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem}\n  subsets:\n  - name: v1\n    trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n",
            &[],
        ),
        (
            DR,
            "  host: reviews\n  trafficPolicy:\n    tls: {mode: SIMPLE, credentialName: reviews-ca, subjectAltNames: [\"\"]}\n  subsets:\n  - name: v1\n    trafficPolicy: {tls: {mode: MESH_MUTUAL, caCertificates: /etc/ca.pem}}\n",
            &[
                "spec.trafficPolicy.tls.subjectAltNames[0]: is empty",
                "spec.subsets[0].trafficPolicy.tls.caCertificates: \"/etc/ca.pem\" cannot be set with the mesh's own certificates (mode MESH_MUTUAL/ISTIO_MUTUAL)",
            ],
        ),
        (
            DR,
            "  host: reviews\n  trafficPolicy:\n    tls: {mode: MUTUAL, credentialName: reviews-client}\n    portLevelSettings:\n    - port: {number: 80}\n      tls: {mode: ISTIO_MUTUAL, credentialName: reviews-client}\n",
            &[
                "spec.trafficPolicy.portLevelSettings[0].tls.credentialName: \"reviews-client\" cannot be set with the mesh's own certificates (mode MESH_MUTUAL/ISTIO_MUTUAL)",
            ],
        ),
        (
            DR,
            "  host: reviews\n  trafficPolicy:\n    loadBalancer: {simple: FASTEST}\n",
            &[
                "spec.trafficPolicy.loadBalancer.simple: does not parse: unknown variant `FASTEST`, expected one of `UNSPECIFIED`, `LEAST_CONN`, `RANDOM`, `PASSTHROUGH`, `ROUND_ROBIN`, `LEAST_REQUEST`",
            ],
        ),
    ]);
}

#[test]
fn service_entry() {
    check(&[
        (
            SE,
            "  hosts: [api.example.com]\n  ports:\n  - {number: 443, name: https, protocol: tls}\n  resolution: DNS\n",
            &[],
        ),
        (
            SE,
            "  hosts: [\"*.example.com\"]\n  addresses: [240.0.0.1, nope]\n  ports:\n  - {number: 443, name: https}\n  - {number: 443, name: https}\n  resolution: DNS\n",
            &[
                "spec.hosts[0]: \"*.example.com\" is a wildcard, which DNS resolution cannot resolve (add endpoints or use resolution NONE)",
                "spec.addresses[1]: \"nope\" is not an IP address or CIDR such as 10.0.0.0/8",
                "spec.ports[1].number: 443 is also the number of spec.ports[0]",
                "spec.ports[1].name: \"https\" is also the name of spec.ports[0]",
            ],
        ),
        (
            SE,
            "  hosts: [db.internal]\n  ports:\n  - {number: 5432, name: tcp-pg, protocol: TCP}\n  resolution: STATIC\n  endpoints:\n  - {address: db.example.com, ports: {pg: 5433}}\n",
            &[
                "spec.endpoints[0].address: \"db.example.com\" is not an IP address (resolution STATIC)",
                "spec.endpoints[0].ports[pg]: \"pg\" is not the name of one of spec.ports",
            ],
        ),
        (
            SE,
            "  hosts: [db.internal]\n  endpoints:\n  - {address: 10.0.0.1}\n",
            &["spec.endpoints: must be empty with resolution NONE (use STATIC or DNS)"],
        ),
        (
            SE,
            "  hosts: [db.internal]\n  ports:\n  - {number: 5432, name: pg, protocol: SCTP}\n",
            &[
                "spec.ports[0].protocol: does not parse: \"SCTP\" is not a protocol (HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, MONGO, MYSQL, REDIS; any case)",
            ],
        ),
    ]);
}

#[test]
fn gateway() {
    check(&[
        (
            GW,
            "  selector: {meshd.io/gateway: ingress}\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"shop/*.example.com\"]\n    tls: {mode: SIMPLE, credentialName: shop-cert, minProtocolVersion: TLSV1_3}\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n    tls: {httpsRedirect: true}\n",
            &[],
        ),
        (
            GW,
            "  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a/b/c]\n  - port: {number: 443, name: https, protocol: TCP}\n    hosts: [\"*\"]\n  - port: {number: 8443, name: tls, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: SIMPLE, minProtocolVersion: TLSV1_1}\n",
            &[
                "spec.servers[0].hosts[0]: \"a/b/c\" is not a host (a DNS name such as reviews or reviews.shop.svc.cluster.local, optionally with a leading \"*.\")",
                "spec.servers[0].tls: is required for HTTPS and TLS servers",
                "spec.servers[1].port.name: \"https\" is also the port name of spec.servers[0]",
                "spec.servers[1].port.protocol: \"TCP\" differs from spec.servers[0] (HTTPS) on the same port 443",
                "spec.servers[2].tls.credentialName: is required for SIMPLE and MUTUAL (meshd serves certificates from Secrets, not files)",
                "spec.servers[2].tls.minProtocolVersion: \"TLSV1_1\" is older than TLS 1.2; meshd serves TLS 1.2 and newer only",
            ],
        ),
        (
            GW,
            "  selector: {app: \"*\"}\n",
            &[
                "spec.servers: needs at least one server",
                "spec.selector[app]: \"*\" is not a label value (63 characters: letters, digits, -_.)",
            ],
        ),
    ]);
}

#[test]
fn security() {
    check(&[
        (PA, "  mtls: {mode: STRICT}\n", &[]),
        (
            PA,
            "  selector: {matchLabels: {app: reviews}}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n",
            &[],
        ),
        (
            PA,
            "  portLevelMtls:\n    http: {mode: DISABLE}\n    \"0\": {mode: STRICT}\n",
            &[
                "spec.portLevelMtls: needs a selector (ports belong to a workload)",
                "spec.portLevelMtls[0]: \"0\" is not a port number (1-65535)",
                "spec.portLevelMtls[http]: \"http\" is not a port number (1-65535)",
            ],
        ),
        (
            PA,
            "  mtls: {mode: SOMETIMES}\n",
            &[
                "spec.mtls.mode: does not parse: unknown variant `SOMETIMES`, expected one of `UNSET`, `DISABLE`, `PERMISSIVE`, `STRICT`",
            ],
        ),
        (
            AP,
            "  selector: {matchLabels: {app: reviews}}\n  action: DENY\n  rules:\n  - from:\n    - source: {principals: [cluster.local/ns/shop/sa/frontend], ipBlocks: [10.0.0.0/8]}\n    to:\n    - operation: {methods: [POST], paths: [\"/admin/*\"], ports: [\"8080\"]}\n    when:\n    - {key: \"request.headers[x-user]\", values: [bob]}\n",
            &[],
        ),
        (AP, "  {}\n", &[]),
        (
            AP,
            "  action: DENY\n  provider: {name: opa}\n  rules:\n  - from:\n    - source: {}\n    - source: {ipBlocks: [10.0.0.0/40], principals: [\"a*b\"]}\n    to:\n    - operation: {ports: [\"http\"]}\n    when:\n    - {key: source.nickname, values: [x]}\n    - {key: source.ip}\n",
            &[
                "spec.provider: is only for action CUSTOM, not DENY",
                "spec.rules[0].from[0].source: is required and must not be empty",
                "spec.rules[0].from[1].source.principals[0]: \"a*b\" may use * only as its first or last character",
                "spec.rules[0].from[1].source.ipBlocks[0]: \"10.0.0.0/40\" is not an IP address or CIDR such as 10.0.0.0/8",
                "spec.rules[0].to[0].operation.ports[0]: \"http\" is not a port number (1-65535)",
                "spec.rules[0].when[0].key: \"source.nickname\" is not a condition key (source.ip, source.namespace, source.principal, request.headers[NAME], destination.port, …)",
                "spec.rules[0].when[1]: needs values or notValues",
            ],
        ),
    ]);
}

#[test]
fn documents_name_the_kind_and_version() {
    let istio = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: reviews}\n";
    assert_eq!(
        problems(istio),
        [
            "apiVersion: \"networking.istio.io/v1\" is not networking.meshd.io/v1alpha1 (an Istio resource: change only the apiVersion)"
        ]
    );
    assert_eq!(
        problems("kind: Deployment\napiVersion: apps/v1\n---\n- a\n---\nfoo: bar\n---\nkind: [\n"),
        [
            "skipped Deployment",
            "document 2: is not an object with apiVersion and kind",
            "document 3: has no kind",
            "document 4: is not YAML: did not find expected node content at line 9 column 1, while parsing a flow node",
        ]
    );
    assert_eq!(
        problems(
            "apiVersion: networking.meshd.io/v1alpha1\nkind: DestinationRule\nmetadata: {namespace: Shop}\nspec: {host: reviews}\n"
        ),
        [
            "metadata.name: is required",
            "metadata.namespace: \"Shop\" is not a namespace name (a DNS label)"
        ]
    );
}

#[test]
fn kubernetes_documents() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec:\n  clusterIP: 10.96.0.300\n  ports: [{port: 0}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {podIP: nope}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: edge-cert, namespace: shop}\ntype: kubernetes.io/tls\nstringData: {tls.crt: x}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv4\nendpoints: [{addresses: [\"fd00::1\"]}]\n---\napiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec: {trafficCapture: {excludeOutboundCIDRs: [10.0.0.0/33]}}\n";
    assert_eq!(
        problems(yaml),
        [
            "spec.clusterIP: \"10.96.0.300\" is not an IP address or None",
            "spec.ports[0].port: 0 is out of range (1-65535)",
            "status.podIP: \"nope\" is not an IP address",
            "data[tls.key]: is required (in data or stringData)",
            "endpoints[0].addresses[0]: \"fd00::1\" is not an IPv4 address",
            "spec.trafficCapture.excludeOutboundCIDRs[0]: \"10.0.0.0/33\" is not an IPv4 or IPv6 CIDR",
        ]
    );
}

/// Istio's examples survive the trip through the types unchanged: no field dropped, renamed or altered
/// (numbers compared by value: `10` and `10.0` are one percentage; protocols by name, in any case).
#[test]
fn istio_examples_round_trip_through_the_types() {
    use meshd_api::validate::Document;
    fn same(a: &serde_json::Value, b: &serde_json::Value, path: &str) {
        use serde_json::Value as V;
        match (a, b) {
            (V::Number(x), V::Number(y)) => assert_eq!(x.as_f64(), y.as_f64(), "{path}"),
            (V::Object(x), V::Object(y)) => {
                for (k, v) in x {
                    match y.get(k) {
                        Some(w) => same(v, w, &format!("{path}.{k}")),
                        None => assert!(v.is_null(), "{path}.{k} dropped"),
                    }
                }
                for k in y.keys() {
                    assert!(x.contains_key(k) || k == "status", "{path}.{k} added");
                }
            }
            (V::Array(x), V::Array(y)) => {
                assert_eq!(x.len(), y.len(), "{path}");
                for (i, (v, w)) in x.iter().zip(y).enumerate() {
                    same(v, w, &format!("{path}[{i}]"));
                }
            }
            // Protocols are read in any case and written upper case.
            (V::String(x), V::String(y)) if path.ends_with(".protocol") => {
                assert_eq!(x.to_uppercase(), *y, "{path}")
            }
            _ => assert_eq!(a, b, "{path}"),
        }
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/istio");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for doc in text.split("\n---\n") {
            let input: serde_json::Value = match serde_yaml::from_str(doc) {
                Ok(v @ serde_json::Value::Object(_)) => v,
                _ => continue,
            };
            let checked = check_documents(doc);
            let Outcome::Object {
                object: Some(object),
                ..
            } = &checked[0].outcome
            else {
                continue; // kinds meshd does not read
            };
            let output = match object {
                Document::VirtualService(o) => serde_json::to_value(o),
                Document::DestinationRule(o) => serde_json::to_value(o),
                Document::ServiceEntry(o) => serde_json::to_value(o),
                Document::Gateway(o) => serde_json::to_value(o),
                Document::PeerAuthentication(o) => serde_json::to_value(o),
                Document::AuthorizationPolicy(o) => serde_json::to_value(o),
                other => panic!("unexpected {other:?}"),
            }
            .unwrap();
            let mut input = input;
            input.as_object_mut().unwrap().remove("status");
            same(&input["spec"], &output["spec"], "spec");
            same(&input["metadata"], &output["metadata"], "metadata");
            seen += 1;
        }
    }
    assert!(seen > 70, "only {seen} examples");
}

proptest::proptest! {
    /// Whatever the text, checking it never panics.
    #[test]
    fn checking_never_panics(text in "\\PC{0,200}") {
        let _ = check_documents(&text);
    }

    /// Nor does a real resource with any one field replaced by junk.
    #[test]
    fn a_mangled_resource_never_panics(at in 0usize..400, junk in "[a-z0-9*:/.\\[\\]{}-]{0,12}") {
        let yaml = include_str!("../../../examples/canary.yaml");
        let cut = yaml.char_indices().map(|(i, _)| i).nth(at % yaml.len()).unwrap_or(0);
        let mangled = format!("{}{junk}{}", &yaml[..cut], &yaml[cut..]);
        let _ = check_documents(&mangled);
    }
}

/// A field written with its default value is a field of the kind, even where the type leaves defaults
/// out when it serializes (Mesh `certificateTTL`); a misspelt one is still named.
#[test]
fn fields_at_their_default_are_known_and_typos_are_named() {
    let mesh = "apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec:\n  mtls: {mode: STRICT, certificateTTL: 24h}\n";
    assert_eq!(problems(mesh), Vec::<String>::new());
    let typo = "apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec:\n  mtls: {mode: STRICT, certificateTtl: 24h}\n  gateways: [{name: in, namespace: edge, replicas: 1, replicaz: 2}]\n";
    assert_eq!(
        problems(typo),
        [
            "spec.gateways[0].replicaz: is not a field of this kind (misspelt, or not supported)",
            "spec.mtls.certificateTtl: is not a field of this kind (misspelt, or not supported)",
        ]
    );
}
