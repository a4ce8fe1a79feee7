//! Webhook selection as the API server does it: label selectors (matchLabels, In, NotIn, Exists,
//! DoesNotExist, ANDed) and rules (CREATE of pods), table-driven.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, RuleWithOperations};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use meshd_inject::selection::{
    NotCalled, Selection, Unmet, rules_cover_pod_create, select, webhook_called,
};
use pretty_assertions::assert_eq;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
    }
}

fn selector(match_labels: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>) -> LabelSelector {
    LabelSelector {
        match_labels: (!match_labels.is_empty()).then(|| labels(match_labels)),
        match_expressions: (!exprs.is_empty()).then_some(exprs),
    }
}

fn unmet(requirement: &str, key: &str, actual: Option<&str>) -> Selection {
    Selection::Unmet(Unmet {
        requirement: requirement.into(),
        key: key.into(),
        actual: actual.map(String::from),
    })
}

/// name, selector, the labels, the outcome.
type Case<'a> = (
    &'a str,
    Option<LabelSelector>,
    &'a [(&'a str, &'a str)],
    Selection,
);

#[test]
fn selectors_against_labels() {
    let m = Selection::Matches;
    let cases: Vec<Case> = vec![
        ("absent selector", None, &[], m.clone()),
        (
            "empty selector",
            Some(selector(&[], vec![])),
            &[("a", "1")],
            m.clone(),
        ),
        (
            "matchLabels equal",
            Some(selector(&[("app", "web")], vec![])),
            &[("app", "web")],
            m.clone(),
        ),
        (
            "matchLabels other value",
            Some(selector(&[("app", "web")], vec![])),
            &[("app", "db")],
            unmet("app=web", "app", Some("db")),
        ),
        (
            "matchLabels absent",
            Some(selector(&[("app", "web")], vec![])),
            &[],
            unmet("app=web", "app", None),
        ),
        (
            "In, value listed",
            Some(selector(&[], vec![expr("m", "In", &["a", "b"])])),
            &[("m", "b")],
            m.clone(),
        ),
        (
            "In, value not listed",
            Some(selector(&[], vec![expr("m", "In", &["a", "b"])])),
            &[("m", "c")],
            unmet("m In [a, b]", "m", Some("c")),
        ),
        (
            "In, label absent",
            Some(selector(&[], vec![expr("m", "In", &["a"])])),
            &[],
            unmet("m In [a]", "m", None),
        ),
        (
            "NotIn, label absent",
            Some(selector(&[], vec![expr("i", "NotIn", &["false"])])),
            &[],
            m.clone(),
        ),
        (
            "NotIn, other value",
            Some(selector(&[], vec![expr("i", "NotIn", &["false"])])),
            &[("i", "true")],
            m.clone(),
        ),
        (
            "NotIn, value listed",
            Some(selector(&[], vec![expr("i", "NotIn", &["false"])])),
            &[("i", "false")],
            unmet("i NotIn [false]", "i", Some("false")),
        ),
        (
            "Exists, present",
            Some(selector(&[], vec![expr("e", "Exists", &[])])),
            &[("e", "")],
            m.clone(),
        ),
        (
            "Exists, absent",
            Some(selector(&[], vec![expr("e", "Exists", &[])])),
            &[],
            unmet("e Exists", "e", None),
        ),
        (
            "DoesNotExist, absent",
            Some(selector(&[], vec![expr("d", "DoesNotExist", &[])])),
            &[],
            m.clone(),
        ),
        (
            "DoesNotExist, present",
            Some(selector(&[], vec![expr("d", "DoesNotExist", &[])])),
            &[("d", "x")],
            unmet("d DoesNotExist", "d", Some("x")),
        ),
        (
            "ANDed: the first unmet is reported",
            Some(selector(
                &[("app", "web")],
                vec![
                    expr("a", "Exists", &[]),
                    expr("b", "In", &["1"]),
                    expr("c", "Exists", &[]),
                ],
            )),
            &[("app", "web"), ("a", "x"), ("b", "2")],
            unmet("b In [1]", "b", Some("2")),
        ),
        (
            "unknown operator",
            Some(selector(&[], vec![expr("k", "Equals", &["v"])])),
            &[],
            Selection::Invalid(
                "matchExpressions[0].operator: \"Equals\" is not In, NotIn, Exists or DoesNotExist"
                    .into(),
            ),
        ),
        (
            "In without values",
            Some(selector(&[], vec![expr("k", "In", &[])])),
            &[("k", "v")],
            Selection::Invalid("matchExpressions[0] (k In): needs values".into()),
        ),
        (
            "Exists with values",
            Some(selector(
                &[],
                vec![expr("x", "DoesNotExist", &[]), expr("k", "Exists", &["v"])],
            )),
            &[],
            Selection::Invalid("matchExpressions[1] (k Exists): takes no values".into()),
        ),
    ];
    for (name, sel, pod, want) in cases {
        assert_eq!(select(sel.as_ref(), &labels(pod)), want, "{name}");
    }
}

#[test]
fn unmet_requirements_read_as_sentences() {
    let Selection::Unmet(u) = select(
        Some(&selector(
            &[],
            vec![expr("meshd.io/mesh", "In", &["default"])],
        )),
        &labels(&[]),
    ) else {
        panic!("unmet")
    };
    assert_eq!(
        u.to_string(),
        "meshd.io/mesh In [default]: no label meshd.io/mesh"
    );
    let Selection::Unmet(u) = select(
        Some(&selector(
            &[],
            vec![expr("meshd.io/inject", "DoesNotExist", &[])],
        )),
        &labels(&[("meshd.io/inject", "enabled")]),
    ) else {
        panic!("unmet")
    };
    assert_eq!(
        u.to_string(),
        "meshd.io/inject DoesNotExist: the label meshd.io/inject is \"enabled\""
    );
}

fn rule(
    ops: &[&str],
    groups: &[&str],
    versions: &[&str],
    resources: &[&str],
    scope: Option<&str>,
) -> RuleWithOperations {
    let v = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect());
    RuleWithOperations {
        operations: v(ops),
        api_groups: v(groups),
        api_versions: v(versions),
        resources: v(resources),
        scope: scope.map(String::from),
    }
}

#[test]
fn rules_cover_a_pod_create_or_not() {
    let pods = rule(&["CREATE"], &[""], &["v1"], &["pods"], Some("Namespaced"));
    let cases = [
        ("CREATE pods", vec![pods.clone()], true),
        ("no rules", vec![], false),
        (
            "UPDATE only",
            vec![rule(&["UPDATE"], &[""], &["v1"], &["pods"], None)],
            false,
        ),
        (
            "any operation",
            vec![rule(&["*"], &[""], &["v1"], &["pods"], None)],
            true,
        ),
        (
            "a subresource only",
            vec![rule(&["CREATE"], &[""], &["v1"], &["pods/exec"], None)],
            false,
        ),
        (
            "every resource and subresource",
            vec![rule(&["CREATE"], &["*"], &["*"], &["*/*"], Some("*"))],
            true,
        ),
        (
            "another group",
            vec![rule(&["CREATE"], &["apps"], &["v1"], &["pods"], None)],
            false,
        ),
        (
            "cluster scope only",
            vec![rule(
                &["CREATE"],
                &[""],
                &["v1"],
                &["pods"],
                Some("Cluster"),
            )],
            false,
        ),
        (
            "one of several rules",
            vec![
                rule(&["CREATE"], &["apps"], &["v1"], &["deployments"], None),
                pods,
            ],
            true,
        ),
    ];
    for (name, rules, want) in cases {
        assert_eq!(rules_cover_pod_create(Some(&rules)), want, "{name}");
    }
    assert!(!rules_cover_pod_create(None));
}

#[test]
fn a_webhook_is_called_when_rules_and_both_selectors_match() {
    let webhook = MutatingWebhook {
        name: "namespace.meshd.io".into(),
        rules: Some(vec![rule(&["CREATE"], &[""], &["v1"], &["pods"], None)]),
        namespace_selector: Some(selector(
            &[],
            vec![expr("meshd.io/inject", "In", &["enabled"])],
        )),
        object_selector: Some(selector(
            &[],
            vec![expr("meshd.io/inject", "NotIn", &["false"])],
        )),
        ..Default::default()
    };
    let enabled = labels(&[("meshd.io/inject", "enabled")]);
    assert_eq!(webhook_called(&webhook, &enabled, &labels(&[])), Ok(()));
    let err = webhook_called(&webhook, &labels(&[]), &labels(&[])).expect_err("namespace");
    assert_eq!(
        err.to_string(),
        "namespaceSelector: meshd.io/inject In [enabled]: no label meshd.io/inject"
    );
    let err = webhook_called(&webhook, &enabled, &labels(&[("meshd.io/inject", "false")]))
        .expect_err("object");
    assert!(matches!(err, NotCalled::ObjectSelector(_)), "{err}");
    let mut no_rules = webhook.clone();
    no_rules.rules = None;
    assert_eq!(
        webhook_called(&no_rules, &enabled, &labels(&[])),
        Err(NotCalled::Rules)
    );
    let mut bad = webhook;
    bad.object_selector = Some(selector(&[], vec![expr("k", "Equal", &["v"])]));
    assert_eq!(
        webhook_called(&bad, &enabled, &labels(&[]))
            .expect_err("invalid")
            .to_string(),
        "invalid selector: objectSelector.matchExpressions[0].operator: \"Equal\" is not In, NotIn, Exists or DoesNotExist"
    );
}
