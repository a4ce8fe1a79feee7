//! The reducers: what each kind keeps of an object, and the errors for what it cannot use.

use meshd_index::{EndpointSliceKind, Kind, MeshKind, PodKind, ReduceError, ServiceKind};
use meshd_translate::Protocol;
use meshd_translate::facts::{Fact, ObjectKey, TargetPort};

fn object<K: Kind>(yaml: &str) -> K::Object {
    serde_yaml::from_str(yaml).unwrap()
}

fn reduce<K: Kind>(yaml: &str) -> Result<(ObjectKey, Option<Fact>), ReduceError> {
    K::key_and_fact(&object::<K>(yaml))
}

#[test]
fn a_service_keeps_vips_tcp_ports_and_selector() {
    let (key, fact) = reduce::<ServiceKind>(
        "metadata: {name: web, namespace: shop}\nspec:\n  clusterIP: 10.96.0.10\n  clusterIPs: [10.96.0.10, 'fd00::10']\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80, targetPort: http-web}\n  - {name: dns, port: 53, protocol: UDP}\n  - {name: grpc-x, port: 90, targetPort: '9000'}\n  - {name: dup, port: 80}\n",
    )
    .unwrap();
    assert_eq!(key, ObjectKey::new("shop", "web"));
    let Some(Fact::Service(s)) = fact else {
        panic!("a Service fact")
    };
    assert_eq!(s.vips, ["10.96.0.10", "fd00::10"]);
    let ports: Vec<_> = s
        .ports
        .iter()
        .map(|p| (p.port, p.protocol, p.target_port.clone()))
        .collect();
    assert_eq!(
        ports,
        [
            (80, Protocol::Http, TargetPort::Named("http-web".into())),
            (90, Protocol::Grpc, TargetPort::Number(9000)),
        ]
    );
    assert_eq!(s.selector["app"], "web");
}

#[test]
fn external_name_and_headless_services() {
    let (_, fact) =
        reduce::<ServiceKind>("metadata: {name: ext, namespace: shop}\nspec: {type: ExternalName, externalName: example.org}\n").unwrap();
    assert_eq!(fact, None, "an ExternalName Service contributes nothing");
    let (_, fact) = reduce::<ServiceKind>(
        "metadata: {name: db, namespace: shop}\nspec: {clusterIP: None, ports: [{port: 5432}]}\n",
    )
    .unwrap();
    let Some(Fact::Service(s)) = fact else {
        panic!("a Service fact")
    };
    assert!(s.vips.is_empty(), "headless: no VIP");
}

#[test]
fn errors_name_the_kind_the_object_and_the_field() {
    let err = reduce::<ServiceKind>(
        "metadata: {name: web, namespace: shop}\nspec: {ports: [{port: 80}, {port: 70000}]}\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Service shop/web: spec.ports[1].port: 70000 is not 1-65535"
    );
    let err = reduce::<ServiceKind>(
        "metadata: {name: web, namespace: shop}\nspec: {ports: [{port: 80, targetPort: 0}]}\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Service shop/web: spec.ports[0].targetPort: 0 is not 1-65535"
    );
    let err = reduce::<ServiceKind>("metadata: {name: web}\nspec: {}\n").unwrap_err();
    assert_eq!(err.to_string(), "Service web: metadata.namespace: missing");
    let err = reduce::<PodKind>("metadata: {namespace: shop}\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "Pod shop/<no name>: metadata.name: missing"
    );
    let err = reduce::<PodKind>(
        "metadata: {name: web-0, namespace: shop}\nspec: {containers: [{name: a, ports: [{name: http, containerPort: 0}]}]}\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Pod shop/web-0: spec.containers[0].ports[0].containerPort: 0 is not 1-65535"
    );
    let err =
        reduce::<MeshKind>("metadata: {name: default}\nspec: {proxy: {uid: 0}}\n").unwrap_err();
    assert!(
        err.to_string().starts_with("Mesh default: spec.proxy.uid"),
        "{err}"
    );
}

#[test]
fn an_endpoint_slice_keeps_conditions_and_the_pod() {
    let (key, fact) = reduce::<EndpointSliceKind>(
        "metadata: {name: web-x1, namespace: shop, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{name: http, port: 8080}, {name: nope}]\nendpoints:\n- addresses: [10.0.1.1]\n  targetRef: {kind: Pod, name: web-0, namespace: shop}\n- addresses: [10.0.1.3]\n  conditions: {ready: false, serving: true, terminating: true}\n",
    )
    .unwrap();
    assert_eq!(key, ObjectKey::new("shop", "web-x1"));
    let Some(Fact::EndpointSlice(s)) = fact else {
        panic!("a slice fact")
    };
    assert_eq!(s.service, "web");
    assert_eq!(s.ports.len(), 1, "a port without a number is no port");
    let e = &s.endpoints;
    assert!(e[0].ready && e[0].serving && !e[0].terminating);
    assert_eq!(e[0].pod.as_deref(), Some("web-0"));
    assert!(!e[1].ready && e[1].serving && e[1].terminating && e[1].pod.is_none());
    let (_, fact) = reduce::<EndpointSliceKind>(
        "metadata: {name: x, namespace: shop, labels: {kubernetes.io/service-name: web}}\naddressType: FQDN\nendpoints: []\n",
    )
    .unwrap();
    assert_eq!(fact, None, "FQDN slices name nothing Envoy connects to");
}

#[test]
fn a_pod_becomes_a_workload() {
    let (key, fact) = reduce::<PodKind>(
        "metadata: {name: web-0, namespace: shop, labels: {app: web, meshd.io/mesh: default}}\nspec:\n  serviceAccountName: web\n  containers:\n  - {name: a, ports: [{name: http, containerPort: 8080}, {containerPort: 9}]}\n  - {name: b, ports: [{name: http, containerPort: 8081}]}\nstatus: {podIP: 10.0.1.1, podIPs: [{ip: 10.0.1.1}, {ip: 'fd00::1'}]}\n",
    )
    .unwrap();
    assert_eq!(key, ObjectKey::new("shop", "web-0"));
    let Some(Fact::Workload(w)) = fact else {
        panic!("a workload")
    };
    assert_eq!(w.ips, ["10.0.1.1", "fd00::1"]);
    assert_eq!(w.service_account, "web");
    assert_eq!(w.mesh.as_deref(), Some("default"));
    assert_eq!(w.named_port("http"), Some(8080), "the first of a name");
}

#[test]
fn a_peer_authentication_keeps_scope_modes_ports_and_age() {
    use meshd_api::security::peer_authentication::PeerMtlsMode;
    use meshd_index::PeerAuthenticationKind;
    let yaml = "metadata: {name: web, namespace: shop, creationTimestamp: '2025-01-02T03:04:05Z'}\nspec:\n  selector: {matchLabels: {app: web}}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    '8080': {mode: DISABLE}\n    '9090': {}\n";
    let Some(Fact::PeerAuthentication(pa)) = reduce::<PeerAuthenticationKind>(yaml).unwrap().1
    else {
        panic!("a PeerAuthentication fact")
    };
    assert!(pa.problems.is_empty(), "{:?}", pa.problems);
    let pa = &pa.spec;
    assert_eq!(pa.selector["app"], "web");
    assert_eq!(pa.mode, PeerMtlsMode::Strict);
    assert_eq!(
        pa.ports.iter().map(|(p, m)| (*p, *m)).collect::<Vec<_>>(),
        [(8080, PeerMtlsMode::Disable), (9090, PeerMtlsMode::Unset)]
    );
    assert_eq!((pa.age.untimed, pa.age.created), (false, 1_735_787_045));
    // Without a timestamp, read from a file: as old as the file's name.
    let object =
        object::<PeerAuthenticationKind>("metadata: {name: ns, namespace: shop}\nspec: {}\n");
    let key = PeerAuthenticationKind::key(&object).unwrap();
    let Some(Fact::PeerAuthentication(pa)) =
        PeerAuthenticationKind::reduce_file(&object, &key, "/etc/meshd/a.yaml").unwrap()
    else {
        panic!("a PeerAuthentication fact")
    };
    let pa = &pa.spec;
    assert!(pa.age.untimed);
    assert_eq!(pa.age.file, "/etc/meshd/a.yaml");
    assert_eq!(pa.mode, PeerMtlsMode::Unset, "no mtls: inherits");
}

/// The problems an invalid policy's fact carries (it becomes a fact all the same, for its verdict).
fn problems(fact: Option<Fact>) -> Vec<String> {
    match fact {
        Some(Fact::PeerAuthentication(c)) => c.problems.iter().map(ToString::to_string).collect(),
        Some(Fact::AuthorizationPolicy(c)) => c.problems.iter().map(ToString::to_string).collect(),
        Some(Fact::VirtualService(c)) => c.problems.iter().map(ToString::to_string).collect(),
        Some(Fact::DestinationRule(c)) => c.problems.iter().map(ToString::to_string).collect(),
        Some(Fact::ServiceEntry(c)) => c.problems.iter().map(ToString::to_string).collect(),
        other => panic!("a policy fact, not {other:?}"),
    }
}

#[test]
fn invalid_security_policies_are_facts_with_problems_naming_the_field() {
    use meshd_index::{AuthorizationPolicyKind, PeerAuthenticationKind};
    let p = problems(
        reduce::<PeerAuthenticationKind>(
            "metadata: {name: p, namespace: shop}\nspec:\n  portLevelMtls:\n    '8080': {mode: STRICT}\n",
        )
        .unwrap()
        .1,
    );
    assert!(
        p.iter()
            .any(|p| p.contains("spec.portLevelMtls: needs a selector")),
        "{p:?}"
    );
    let p = problems(
        reduce::<AuthorizationPolicyKind>(
            "metadata: {name: a, namespace: shop}\nspec:\n  rules: [{to: [{operation: {ports: ['70000']}}]}]\n",
        )
        .unwrap()
        .1,
    );
    assert!(
        p.iter()
            .any(|p| p.contains("spec.rules[0].to[0].operation.ports[0]: \"70000\"")),
        "{p:?}"
    );
    let p = problems(
        reduce::<AuthorizationPolicyKind>(
            "metadata: {name: a, namespace: shop}\nspec:\n  action: CUSTOM\n  provider: {name: ext}\n",
        )
        .unwrap()
        .1,
    );
    assert_eq!(
        p,
        ["spec.action: CUSTOM (an external authorizer) is not supported by meshd"]
    );
    // A document that does not decode is a rejected fact of its own, not a failed file.
    let p = problems(PeerAuthenticationKind::undecodable(
        "spec.mtls.mode: unknown variant `STRICTER`",
    ));
    assert_eq!(
        p,
        ["spec.mtls.mode: does not parse: unknown variant `STRICTER`"]
    );
}

/// The traffic kinds alike: an invalid object is a fact whose problems name the field and value.
#[test]
fn invalid_traffic_resources_are_facts_with_problems_naming_the_field() {
    use meshd_index::{DestinationRuleKind, ServiceEntryKind, VirtualServiceKind};
    let p = problems(
        reduce::<VirtualServiceKind>(
            "metadata: {name: r, namespace: shop}\nspec:\n  hosts: [reviews]\n  http:\n  - match: [{uri: {regex: '(?<=a)b'}}]\n    route: [{destination: {host: reviews}, weight: 0}, {destination: {host: ratings}, weight: 0}]\n",
        )
        .unwrap()
        .1,
    );
    assert!(
        p.iter()
            .any(|p| p.contains("spec.http[0].match[0].uri.regex")),
        "an RE2-rejected regex: {p:?}"
    );
    assert!(
        p.iter().any(|p| p.contains("spec.http[0].route")),
        "weights all zero: {p:?}"
    );
    let p = problems(
        reduce::<DestinationRuleKind>(
            "metadata: {name: r, namespace: shop}\nspec:\n  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}, {name: v1, labels: {version: v2}}]\n",
        )
        .unwrap()
        .1,
    );
    assert!(
        p.iter()
            .any(|p| p.contains("spec.subsets[1].name") && p.contains("\"v1\"")),
        "a subset named twice: {p:?}"
    );
    let p = problems(
        reduce::<ServiceEntryKind>(
            "metadata: {name: e, namespace: shop}\nspec:\n  hosts: [api.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: NONE\n  endpoints: [{address: 10.0.0.1}]\n",
        )
        .unwrap()
        .1,
    );
    assert!(
        p.iter().any(|p| p.contains("spec.endpoints")),
        "endpoints under resolution NONE: {p:?}"
    );
}

#[test]
fn an_authorization_policy_keeps_selector_action_and_rules() {
    use meshd_api::security::authorization_policy::Action;
    use meshd_index::AuthorizationPolicyKind;
    let Some(Fact::AuthorizationPolicy(ap)) = reduce::<AuthorizationPolicyKind>(
        "metadata: {name: a, namespace: shop}\nspec:\n  selector: {matchLabels: {app: db}}\n  action: DENY\n  rules: [{from: [{source: {namespaces: [jobs]}}]}]\n",
    )
    .unwrap()
    .1
    else {
        panic!("an AuthorizationPolicy fact")
    };
    let ap = &ap.spec;
    assert_eq!(ap.action, Action::Deny);
    assert_eq!(ap.selector["app"], "db");
    assert_eq!(
        ap.rules[0].from[0].source.as_ref().unwrap().namespaces,
        ["jobs"]
    );
    let Some(Fact::AuthorizationPolicy(ap)) =
        reduce::<AuthorizationPolicyKind>("metadata: {name: a, namespace: shop}\nspec: {}\n")
            .unwrap()
            .1
    else {
        panic!("an AuthorizationPolicy fact")
    };
    let ap = &ap.spec;
    assert_eq!(
        (ap.action, ap.rules.len()),
        (Action::Allow, 0),
        "ALLOW with no rules"
    );
}
