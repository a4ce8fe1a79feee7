//! The gateway Deployment's pods are selected (SPEC §10): the pods of each `Mesh.spec.gateways[]`
//! Deployment carry the labels a Gateway's `selector` matches (examples/gateway.yaml selects
//! `meshd.io/gateway: ingress`), are gateway pods (the `meshd.io/gateway` label, which is how the
//! control plane tells them from sidecars), match their Deployment's own selector, and run
//! `meshd agent --gateway <name>` without traffic capture (no init container, no added capability).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use meshd_api::networking::Gateway;
use meshd_api::validate::gateway_credentials::selects_gateway_pod;
use meshd_operator::desired::{DesiredInputs, ObjectKind, WebhookEndpoint, desired_objects};

fn example(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../examples/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("the example")
}

fn gateway_deployment() -> Deployment {
    let mut mesh =
        meshd_api::settings::parse_mesh_yaml(&example("mesh.yaml")).expect("mesh parses");
    mesh.metadata.uid = Some("11111111-2222-3333-4444-555555555555".into());
    let inputs = DesiredInputs {
        webhook: WebhookEndpoint::Service,
        ca_bundle: "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n".into(),
        discovery_address: "meshd.meshd-system.svc:15012".into(),
    };
    let objects = desired_objects(&mesh, &inputs).expect("desired objects");
    let object = objects
        .iter()
        .find(|o| o.kind == ObjectKind::Deployment && o.name == "ingress")
        .expect("the ingress gateway's Deployment");
    serde_json::from_value(object.body.clone()).expect("a Deployment")
}

#[test]
fn the_gateway_deployments_pods_are_selected() {
    let deployment = gateway_deployment();
    let spec = deployment.spec.expect("spec");
    let template = spec.template;
    let labels: BTreeMap<String, String> = template
        .metadata
        .and_then(|m| m.labels)
        .expect("pod labels");

    // A Gateway selecting the Mesh's gateway by its label selects these pods, and they are gateway
    // pods; a Gateway selecting another gateway does not.
    let gateway: Gateway = serde_yaml::Deserializer::from_str(&example("gateway.yaml"))
        .map(serde::Deserialize::deserialize)
        .find_map(|g: Result<serde_yaml::Value, _>| {
            let v = g.ok()?;
            (v["kind"] == "Gateway").then(|| serde_yaml::from_value(v).expect("a Gateway"))
        })
        .expect("examples/gateway.yaml has a Gateway");
    assert_eq!(
        gateway.spec.selector,
        BTreeMap::from([(meshd_api::names::LABEL_GATEWAY.into(), "ingress".into())])
    );
    assert!(
        selects_gateway_pod(&gateway.spec.selector, &labels),
        "{labels:?}"
    );
    let other = BTreeMap::from([(meshd_api::names::LABEL_GATEWAY.into(), "egress".into())]);
    assert!(!selects_gateway_pod(&other, &labels));

    // The Deployment manages exactly these pods.
    let own = spec.selector.match_labels.expect("matchLabels");
    assert!(
        own.iter().all(|(k, v)| labels.get(k) == Some(v)),
        "{own:?} vs {labels:?}"
    );

    // `meshd agent --gateway ingress` (the flag as its env var), no capture.
    let pod = template.spec.expect("pod spec");
    assert!(
        pod.init_containers.is_none_or(|c| c.is_empty()),
        "no meshd init"
    );
    let [agent] = pod.containers.as_slice() else {
        panic!("one container: {:?}", pod.containers);
    };
    assert_eq!(agent.command.as_deref(), Some(&["meshd".to_string()][..]));
    assert_eq!(agent.args.as_deref(), Some(&["agent".to_string()][..]));
    let env: BTreeMap<&str, Option<&str>> = agent
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.as_deref()))
        .collect();
    assert_eq!(env["MESHD_GATEWAY"], Some("ingress"));
    assert_eq!(env["MESHD_XDS_TLS"], Some("true"));
    assert!(env.contains_key("MESHD_TOKEN_FILE") && env.contains_key("MESHD_CA_FILE"));
    let caps = agent
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
        .expect("capabilities");
    assert!(caps.add.as_ref().is_none_or(|a| a.is_empty()), "{caps:?}");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    // The agent's readiness (listeners active) is what the kubelet asks.
    let probe = agent.readiness_probe.as_ref().expect("readiness probe");
    assert_eq!(
        probe.http_get.as_ref().and_then(|h| h.path.as_deref()),
        Some("/healthz/ready")
    );
}
