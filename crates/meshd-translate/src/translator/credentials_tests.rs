//! Gateway credentials through the Translator: a Gateway naming a missing Secret is rejected and
//! re-judged when the Secret comes; a credential change marks the gateway proxies of its namespace
//! (and only those); gateway proxies hold their own namespace's credentials, sidecars those of their
//! namespace a DestinationRule names.

use std::collections::BTreeMap;
use std::sync::Arc;

use meshd_api::networking::GatewaySpec;
use meshd_api::status::{VerdictKey, reason};

use crate::facts::{Config, Fact, FactChange, FactKind, ObjectKey, TlsCredential, Workload};
use crate::{NodeId, ResourceType, TranslateSettings, Translator};

fn change(kind: FactKind, ns: &str, name: &str, fact: Option<Fact>) -> FactChange {
    FactChange {
        kind,
        key: ObjectKey::new(ns, name),
        fact,
    }
}

fn pod(labels: &[(&str, &str)]) -> Option<Fact> {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some(Fact::Workload(Arc::new(Workload {
        ips: vec!["10.0.0.9".into()],
        labels,
        service_account: "default".into(),
        mesh: None,
        ports: Vec::new(),
    })))
}

fn credential(tag: &str) -> Option<Fact> {
    Some(Fact::TlsCredential(Arc::new(TlsCredential {
        cert_chain: format!("cert-{tag}").into_bytes(),
        key: format!("key-{tag}").into_bytes(),
        ca: None,
    })))
}

fn gateway(credential: &str) -> Option<Fact> {
    let spec: GatewaySpec = serde_json::from_value(serde_json::json!({
        "selector": {"app": "edge"},
        "servers": [
            {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]},
            {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"],
             "tls": {"mode": "SIMPLE", "credentialName": credential}},
        ],
    }))
    .expect("a Gateway spec");
    Some(Fact::Gateway(Arc::new(Config {
        generation: Some(3),
        created: None,
        spec,
        problems: Vec::new(),
    })))
}

fn node(ns: &str, pod: &str) -> NodeId {
    NodeId {
        pod: pod.into(),
        namespace: ns.into(),
    }
}

fn secrets(t: &mut Translator, n: &NodeId) -> Vec<String> {
    let (mesh, _) = t.apply(Vec::new());
    mesh.proxy_config(n)
        .own(ResourceType::Secret)
        .iter()
        .map(|r| r.name.to_string())
        .collect()
}

#[test]
fn a_gateway_naming_a_missing_secret_is_rejected_until_the_secret_comes() {
    let mut t = Translator::new(TranslateSettings::default());
    let gw_pod = [("app", "edge"), (meshd_api::names::LABEL_GATEWAY, "edge")];
    let (mesh, _) = t.apply(vec![
        change(FactKind::Workload, "edge", "gw-0", pod(&gw_pod)),
        change(FactKind::Gateway, "config", "web", gateway("web-cert")),
        change(FactKind::Gateway, "config", "other", gateway("other-cert")),
        // In the Gateway's namespace, not the gateway pod's: does not count.
        change(
            FactKind::TlsCredential,
            "config",
            "web-cert",
            credential("x"),
        ),
        change(
            FactKind::TlsCredential,
            "edge",
            "other-cert",
            credential("o"),
        ),
    ]);
    let v = &mesh.verdicts[&VerdictKey::new("Gateway", "config", "web")];
    assert!(!v.accepted);
    assert_eq!(v.reason, reason::DANGLING_REFERENCE);
    assert!(
        v.message.contains("spec.servers[1].tls.credentialName")
            && v.message.contains("\"web-cert\"")
            && v.message.contains("namespace edge"),
        "{}",
        v.message
    );
    assert!(
        mesh.verdicts[&VerdictKey::new("Gateway", "config", "other")].accepted,
        "other Gateways are unaffected"
    );

    let (mesh, changes) = t.apply(vec![change(
        FactKind::TlsCredential,
        "edge",
        "web-cert",
        credential("w"),
    )]);
    assert!(mesh.verdicts[&VerdictKey::new("Gateway", "config", "web")].accepted);
    assert!(changes.affects_proxy(&node("edge", "gw-0")));

    // The Secret goes: rejected again, as a whole.
    let (mesh, _) = t.apply(vec![change(
        FactKind::TlsCredential,
        "edge",
        "web-cert",
        None,
    )]);
    assert!(!mesh.verdicts[&VerdictKey::new("Gateway", "config", "web")].accepted);
}

#[test]
fn credential_changes_reach_the_gateway_proxies_of_their_namespace_only() {
    let mut t = Translator::new(TranslateSettings::default());
    let gw_pod = [(meshd_api::names::LABEL_GATEWAY, "edge")];
    t.apply(vec![
        change(FactKind::Workload, "edge", "gw-0", pod(&gw_pod)),
        change(FactKind::Workload, "edge", "app-0", pod(&[("app", "web")])),
        change(FactKind::Workload, "other", "gw-1", pod(&gw_pod)),
    ]);
    let (_, changes) = t.apply(vec![change(
        FactKind::TlsCredential,
        "edge",
        "web-cert",
        credential("1"),
    )]);
    assert!(changes.affects_proxy(&node("edge", "gw-0")));
    assert!(!changes.affects_proxy(&node("edge", "app-0")), "a sidecar");
    assert!(
        !changes.affects_proxy(&node("other", "gw-1")),
        "another namespace"
    );
    assert_eq!(
        secrets(&mut t, &node("edge", "gw-0")),
        ["kubernetes://web-cert"]
    );
    assert!(secrets(&mut t, &node("edge", "app-0")).is_empty());
    assert!(secrets(&mut t, &node("other", "gw-1")).is_empty());

    // A rotated certificate: a new body under the same name.
    let before = {
        let (mesh, _) = t.apply(Vec::new());
        mesh.proxy_config(&node("edge", "gw-0"))
            .get(ResourceType::Secret, "kubernetes://web-cert")
            .map(|r| r.version.clone())
    };
    let (mesh, changes) = t.apply(vec![change(
        FactKind::TlsCredential,
        "edge",
        "web-cert",
        credential("2"),
    )]);
    assert!(changes.affects_proxy(&node("edge", "gw-0")));
    let after = mesh
        .proxy_config(&node("edge", "gw-0"))
        .get(ResourceType::Secret, "kubernetes://web-cert")
        .map(|r| r.version.clone());
    assert!(before.is_some() && after.is_some() && before != after);
    // The same content again is no change.
    let (_, changes) = t.apply(vec![change(
        FactKind::TlsCredential,
        "edge",
        "web-cert",
        credential("2"),
    )]);
    assert!(changes.is_empty());
}

#[test]
fn a_gateway_is_judged_again_when_its_gateway_pods_change() {
    let mut t = Translator::new(TranslateSettings::default());
    let selected = [("app", "edge"), (meshd_api::names::LABEL_GATEWAY, "edge")];
    let accepted = |t: &mut Translator, changes| {
        let (mesh, _) = t.apply(changes);
        mesh.verdicts[&VerdictKey::new("Gateway", "config", "web")].accepted
    };
    let first = vec![
        change(FactKind::Gateway, "config", "web", gateway("web-cert")),
        change(
            FactKind::TlsCredential,
            "config",
            "web-cert",
            credential("c"),
        ),
    ];
    assert!(
        accepted(&mut t, first),
        "no gateway pod selected: the Gateway's own namespace"
    );
    let pod_in_edge = vec![change(FactKind::Workload, "edge", "gw-0", pod(&selected))];
    assert!(
        !accepted(&mut t, pod_in_edge),
        "a selected gateway pod in edge, which has no such Secret"
    );
    let relabelled = vec![change(
        FactKind::Workload,
        "edge",
        "gw-0",
        pod(&[("app", "other"), (meshd_api::names::LABEL_GATEWAY, "edge")]),
    )];
    assert!(accepted(&mut t, relabelled), "no longer selected");
}

/// The rule's host: a rule for a host nobody serves is not in force.
fn web_service() -> Fact {
    Fact::Service(Arc::new(crate::facts::Service {
        vips: vec!["10.96.0.1".into()],
        ports: vec![crate::facts::ServicePort {
            port: 80,
            name: "http".into(),
            protocol: crate::Protocol::Http,
            target_port: crate::facts::TargetPort::Number(80),
        }],
        selector: BTreeMap::new(),
    }))
}

fn rule_naming(secret: &str) -> Option<Fact> {
    let spec: meshd_api::networking::DestinationRuleSpec =
        serde_json::from_value(serde_json::json!({
            "host": "web.shop.svc.cluster.local",
            "trafficPolicy": {"tls": {"mode": "MUTUAL", "credentialName": secret}},
        }))
        .expect("a DestinationRule spec");
    Some(Fact::DestinationRule(Arc::new(Config {
        generation: None,
        created: None,
        spec,
        problems: Vec::new(),
    })))
}

#[test]
fn a_sidecar_gets_the_secrets_destination_rules_name_and_is_pushed_when_they_change() {
    let mut t = Translator::new(TranslateSettings::default());
    let (app, elsewhere) = (node("apps", "app-0"), node("other", "app-1"));
    t.apply(vec![
        change(FactKind::Workload, "apps", "app-0", pod(&[("app", "a")])),
        change(FactKind::Workload, "other", "app-1", pod(&[("app", "b")])),
        change(FactKind::TlsCredential, "apps", "client", credential("1")),
        change(FactKind::TlsCredential, "apps", "unnamed", credential("1")),
        change(FactKind::Service, "shop", "web", Some(web_service())),
    ]);
    assert!(secrets(&mut t, &app).is_empty(), "no rule names one yet");
    // A rule naming `client`: every sidecar is pushed, those with the Secret get it.
    let rule = change(
        FactKind::DestinationRule,
        "shop",
        "web",
        rule_naming("client"),
    );
    let (_, changes) = t.apply(vec![rule]);
    assert!(changes.affects_proxy(&app) && changes.affects_proxy(&elsewhere));
    assert_eq!(secrets(&mut t, &app), ["kubernetes://client"]);
    assert!(
        secrets(&mut t, &elsewhere).is_empty(),
        "not its namespace's"
    );
    // The Secret arriving in the other namespace pushes its sidecars, then they hold it.
    let (_, changes) = t.apply(vec![change(
        FactKind::TlsCredential,
        "other",
        "client",
        credential("2"),
    )]);
    assert!(changes.affects_proxy(&elsewhere) && !changes.affects_proxy(&app));
    assert_eq!(secrets(&mut t, &elsewhere), ["kubernetes://client"]);
    // The rule gone: the sidecars hold no Secret again.
    let (_, changes) = t.apply(vec![change(FactKind::DestinationRule, "shop", "web", None)]);
    assert!(changes.affects_proxy(&app));
    assert!(secrets(&mut t, &app).is_empty());
}
