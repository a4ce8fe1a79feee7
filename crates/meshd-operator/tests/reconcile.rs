//! The reconcile loop against a fake API server (tests/common): every request is recorded and asserted.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{FakeApi, RecordedEvents, example_mesh};
use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::runtime::controller::Action;
use meshd_api::Mesh;
use meshd_operator::caches::Caches;
use meshd_operator::metrics::Metrics;
use meshd_operator::reconcile::{self, Outcome};
use meshd_operator::{Context, OperatorConfig, counts, webhook_tls};
use serde_json::json;

const MESH: &str = "/apis/meshd.io/v1alpha1/meshes/default";
const SECRET: &str = "/api/v1/namespaces/meshd-system/secrets/meshd-webhook-tls";
const CM: &str = "/api/v1/namespaces/meshd-system/configmaps/meshd-mesh-default";
const DEPLOY: &str = "/apis/apps/v1/namespaces/meshd-system/deployments/ingress";
const SVC: &str = "/api/v1/namespaces/meshd-system/services/ingress";
const REPLICA_LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/meshd-system/leases/meshd-xds-meshd-0";
const MWC: &str =
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/meshd-injector-default";

struct Setup {
    fake: FakeApi,
    ctx: Arc<Context>,
    events: Arc<RecordedEvents>,
}

/// A fake API server holding `mesh` and one replica's Lease reporting 3 connected proxies, and a
/// Context whose caches are filled (the log is cleared once they are).
async fn setup(mesh: &Mesh) -> Setup {
    let fake = FakeApi::default();
    fake.put(MESH, serde_json::to_value(mesh).unwrap());
    let lease = counts::replica_lease("meshd-0", "default", 3, k8s_openapi::jiff::Timestamp::now());
    fake.put(REPLICA_LEASE, serde_json::to_value(lease).unwrap());
    let events = Arc::new(RecordedEvents::default());
    let client = fake.client();
    let (caches, feeds) = Caches::watch(&client);
    tokio::spawn(feeds.drive());
    caches.tally.wait_until_ready(Duration::from_secs(5)).await;
    let ctx = Arc::new(Context::new(
        client,
        OperatorConfig::new("meshd-0"),
        Metrics::default(),
        events.clone(),
        caches,
    ));
    fake.clear_log();
    Setup { fake, ctx, events }
}

impl Setup {
    /// The Context a newly elected leader has: the same caches (the same cluster), an empty memo.
    fn new_leader(&self) -> Arc<Context> {
        Arc::new(Context::new(
            self.fake.client(),
            OperatorConfig::new("meshd-1"),
            Metrics::default(),
            self.events.clone(),
            self.ctx.caches.clone(),
        ))
    }
    /// One reconcile, once the caches hold every change made so far (as the Controller's would).
    async fn reconcile(&self, mesh: &Mesh) -> Result<Outcome, meshd_operator::Error> {
        self.fake.settled().await;
        reconcile::reconcile_mesh(mesh, &self.ctx).await
    }
    fn mesh(&self) -> Mesh {
        serde_json::from_value(self.fake.get(MESH).expect("mesh stored"))
            .expect("stored mesh parses")
    }
    fn write_lines(&self) -> Vec<String> {
        self.fake
            .writes()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }
}

fn condition<'a>(
    mesh: &'a Mesh,
    t: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    mesh.status
        .as_ref()
        .expect("status")
        .conditions
        .iter()
        .find(|c| c.type_ == t)
        .expect("condition present")
}

fn decode_ca_bundle(mwc: &serde_json::Value, i: usize) -> String {
    let b: ByteString =
        serde_json::from_value(mwc["webhooks"][i]["clientConfig"]["caBundle"].clone()).unwrap();
    String::from_utf8(b.0).unwrap()
}

#[tokio::test]
async fn first_reconcile_applies_every_object_then_a_second_pass_writes_nothing() {
    let mesh = example_mesh();
    let s = setup(&mesh).await;
    let outcome = s.reconcile(&mesh).await.expect("first reconcile");
    assert!(
        matches!(outcome, Outcome::Applied(ref w) if w.len() == 5),
        "{outcome:?}"
    );
    assert_eq!(
        s.write_lines(),
        [
            format!("PATCH {SECRET}"),
            format!("PATCH {CM}"),
            format!("PATCH {DEPLOY}"),
            format!("PATCH {SVC}"),
            format!("PATCH {MWC}"),
            format!("PATCH {MESH}/status"),
        ]
    );
    for w in s.fake.writes().iter() {
        assert_eq!(
            w.param("fieldManager").as_deref(),
            Some("meshd"),
            "{}",
            w.path
        );
        assert_eq!(w.param("force").as_deref(), Some("true"), "{}", w.path);
        assert_eq!(w.content_type, "application/apply-patch+yaml");
    }
    // The status too is server-side applied, under the same field manager.
    let status_patch = s.fake.writes().into_iter().last().unwrap();
    assert_eq!(status_patch.content_type, "application/apply-patch+yaml");
    assert_eq!(status_patch.param("fieldManager").as_deref(), Some("meshd"));
    assert_eq!(status_patch.body["kind"], "Mesh");

    // Owned objects carry the labels and a controller owner reference to the Mesh.
    for path in [CM, DEPLOY, SVC, MWC] {
        let obj = s.fake.get(path).unwrap();
        assert_eq!(
            obj["metadata"]["labels"]["meshd.io/owned-by-mesh"], "default",
            "{path}"
        );
        assert_eq!(
            obj["metadata"]["labels"]["app.kubernetes.io/managed-by"], "meshd",
            "{path}"
        );
        let owner = &obj["metadata"]["ownerReferences"][0];
        assert_eq!(
            (
                owner["kind"].as_str(),
                owner["uid"].as_str(),
                owner["controller"].as_bool()
            ),
            (Some("Mesh"), Some("0b9d6c3e-mesh-default"), Some(true)),
            "{path}"
        );
    }
    // The Secret has no owner (shared by all meshes); the caBundle is its ca.crt.
    let secret = s.fake.get(SECRET).unwrap();
    assert!(secret["metadata"].get("ownerReferences").is_none());
    let ca: ByteString = serde_json::from_value(secret["data"]["ca.crt"].clone()).unwrap();
    let mwc = s.fake.get(MWC).unwrap();
    assert_eq!(decode_ca_bundle(&mwc, 0), String::from_utf8(ca.0).unwrap());
    assert_eq!(
        mwc["webhooks"][0]["clientConfig"]["service"],
        json!({"name": "meshd", "namespace": "meshd-system", "path": "/inject", "port": 443})
    );
    let cm = s.fake.get(CM).unwrap();
    let settings =
        meshd_api::settings::parse_mesh_yaml(cm["data"]["mesh.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(
        settings.spec, mesh.spec,
        "the ConfigMap carries the resolved spec"
    );

    let stored = s.mesh();
    let status = stored.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.gateway_replicas.as_deref(), Some("0/1"));
    assert_eq!(status.connected_proxies, 3);
    assert_eq!(condition(&stored, "WebhookReady").status, "True");
    assert_eq!(condition(&stored, "GatewaysReady").status, "False");
    assert!(
        condition(&stored, "GatewaysReady")
            .message
            .contains("meshd-system/ingress 0/1 ready")
    );
    assert_eq!(condition(&stored, "Ready").status, "False");
    assert_eq!(s.events.reasons(), ["GatewayCreated", "Reconciled"]);
    let first_requests = s.fake.requests().len();
    let first_writes = s.fake.writes().len();

    // Second pass over the stored (status-carrying) Mesh: everything is read from the caches and nothing
    // changed, so not one request.
    s.fake.clear_log();
    let outcome = s.reconcile(&stored).await.expect("no-op reconcile");
    assert_eq!(outcome, Outcome::Applied(vec![]));
    assert_eq!(
        s.write_lines(),
        Vec::<String>::new(),
        "a no-op reconcile must not write"
    );
    assert_eq!(
        s.events.reasons(),
        ["GatewayCreated", "Reconciled"],
        "no Event for a no-op"
    );
    let noop_requests = s.fake.requests();
    assert!(
        noop_requests.iter().all(|r| r.method != "GET"),
        "no GET: {noop_requests:?}"
    );
    assert_eq!(noop_requests.len(), 0, "{noop_requests:?}");

    // A new leader (fresh memo, same cluster): one dry-run apply per owned object, still no GET or write.
    let fresh = s.new_leader();
    s.fake.clear_log();
    reconcile::reconcile_mesh(&stored, &fresh)
        .await
        .expect("no-op reconcile");
    let cold = s.fake.requests();
    assert!(s.fake.writes().is_empty(), "{:?}", s.write_lines());
    assert!(cold.iter().all(|r| r.is_dry_run()), "{cold:?}");
    println!(
        "FIGURE api requests for examples/mesh.yaml: first reconcile {first_requests} ({first_writes} writes), \
         no-op reconcile {} (0 writes, 0 GETs), no-op after a leader change {} ({} dry-run applies, 0 writes, 0 GETs)",
        noop_requests.len(),
        cold.len(),
        cold.len(),
    );
    for r in &cold {
        println!("  no-op after a leader change: {}", r.line());
    }

    // A gateway replica that runs but is not ready (no Gateway selects it yet, or its listeners do not
    // serve): GatewaysReady is False naming the gateway, and GATEWAYS says 0/1.
    let mut deploy = s.fake.get(DEPLOY).unwrap();
    deploy["status"] = json!({"readyReplicas": 0, "replicas": 1});
    s.fake.put(DEPLOY, deploy.clone());
    s.fake.clear_log();
    s.reconcile(&stored).await.unwrap();
    let waiting = s.mesh();
    let gateways = condition(&waiting, "GatewaysReady");
    assert_eq!(
        (gateways.status.as_str(), gateways.reason.as_str()),
        ("False", "ReplicasNotReady")
    );
    assert!(
        gateways.message.contains("meshd-system/ingress 0/1 ready")
            && gateways.message.contains("once a Gateway selects it"),
        "{}",
        gateways.message
    );
    assert_eq!(
        condition(&waiting, "Ready").message,
        "not ready: GatewaysReady"
    );
    assert_eq!(
        waiting.status.as_ref().unwrap().gateway_replicas.as_deref(),
        Some("0/1")
    );

    // The replica becomes ready (a Gateway selected it and its listeners serve): one status write,
    // GatewaysReady True, GATEWAYS 1/1, and the Mesh Ready.
    deploy["status"] = json!({"readyReplicas": 1, "replicas": 1});
    s.fake.put(DEPLOY, deploy);
    s.fake.clear_log();
    s.reconcile(&waiting).await.unwrap();
    assert_eq!(s.write_lines(), [format!("PATCH {MESH}/status")]);
    let ready = s.mesh();
    let gateways = condition(&ready, "GatewaysReady");
    assert_eq!(
        (gateways.status.as_str(), gateways.reason.as_str()),
        ("True", "AllReplicasReady"),
        "{}",
        gateways.message
    );
    assert_eq!(condition(&ready, "Ready").status, "True");
    let status = ready.status.as_ref().unwrap();
    assert_eq!(status.gateway_replicas.as_deref(), Some("1/1"));
    assert_eq!(status.gateways[0].ready_replicas, 1);
    // Unchanged conditions keep their transition time.
    assert_eq!(
        condition(&ready, "WebhookReady").last_transition_time,
        condition(&stored, "WebhookReady").last_transition_time
    );
}

#[tokio::test]
async fn a_mesh_without_gateways_is_ready() {
    let mut mesh = example_mesh();
    mesh.spec.gateways.clear();
    let s = setup(&mesh).await;
    s.reconcile(&mesh).await.unwrap();
    let stored = s.mesh();
    let gateways = condition(&stored, "GatewaysReady");
    assert_eq!(
        (gateways.status.as_str(), gateways.reason.as_str()),
        ("True", "AllReplicasReady")
    );
    assert_eq!(condition(&stored, "Ready").status, "True");
    assert_eq!(
        stored.status.as_ref().unwrap().gateway_replicas.as_deref(),
        Some("0/0")
    );
}

#[tokio::test]
async fn drift_is_repaired_with_one_apply_per_changed_object() {
    let mesh = example_mesh();
    let s = setup(&mesh).await;
    s.reconcile(&mesh).await.unwrap();
    let stored = s.mesh();
    let mut deploy = s.fake.get(DEPLOY).unwrap();
    deploy["spec"]["replicas"] = json!(5);
    s.fake.put(DEPLOY, deploy);
    s.fake.remove(SVC);
    s.fake.clear_log();
    let outcome = s.reconcile(&stored).await.unwrap();
    assert_eq!(
        s.write_lines(),
        [format!("PATCH {DEPLOY}"), format!("PATCH {SVC}")]
    );
    assert!(matches!(outcome, Outcome::Applied(ref w) if w.len() == 2));
    assert_eq!(s.fake.get(DEPLOY).unwrap()["spec"]["replicas"], 1);
    let applied = &s.fake.writes()[0];
    assert_eq!(
        applied.body["spec"]["replicas"], 1,
        "the apply body is the desired object"
    );
    assert_eq!(applied.param("fieldManager").as_deref(), Some("meshd"));
}

#[tokio::test]
async fn a_gateway_removed_from_the_spec_is_deleted() {
    let mesh = example_mesh();
    let s = setup(&mesh).await;
    s.reconcile(&mesh).await.unwrap();
    let mut changed = s.mesh();
    changed.spec.gateways.clear();
    changed.metadata.generation = Some(2);
    s.fake.clear_log();
    s.reconcile(&changed).await.unwrap();
    assert_eq!(
        s.write_lines(),
        // The ConfigMap's settings lose the gateway too.
        [
            format!("PATCH {CM}"),
            format!("DELETE {DEPLOY}"),
            format!("DELETE {SVC}"),
            format!("PATCH {MESH}/status")
        ]
    );
    assert!(s.fake.get(DEPLOY).is_none() && s.fake.get(SVC).is_none());
    // The gateways to remove are found in the caches (label-selected), not by listing.
    let reads: Vec<_> = s
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert!(reads.is_empty(), "{reads:?}");
    assert_eq!(s.mesh().status.unwrap().observed_generation, Some(2));
}

#[tokio::test]
async fn an_invalid_spec_sets_false_conditions_naming_the_field_and_writes_nothing_else() {
    let mut mesh = example_mesh();
    mesh.spec.traffic_capture.exclude_outbound_cidrs = vec!["10.0.0.0/33".into()];
    let s = setup(&mesh).await;
    let outcome = s.reconcile(&mesh).await.unwrap();
    assert_eq!(outcome, Outcome::Invalid);
    assert_eq!(s.write_lines(), [format!("PATCH {MESH}/status")]);
    assert_eq!(
        s.fake.requests().len(),
        1,
        "nothing read or applied besides the status"
    );
    let stored = s.mesh();
    let ready = condition(&stored, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    assert!(
        ready
            .message
            .contains("spec.trafficCapture.excludeOutboundCIDRs[0]")
            && ready.message.contains("10.0.0.0/33"),
        "{}",
        ready.message
    );
    assert_eq!(s.events.reasons(), ["InvalidSpec"]);
    assert!(s.events.0.lock().unwrap()[0].warning);
    // Same invalid spec again: status unchanged, no write, no repeated Event.
    s.fake.clear_log();
    s.reconcile(&stored).await.unwrap();
    assert!(s.fake.writes().is_empty());
    // The counts still follow the cluster (one status write), without another InvalidSpec Event.
    let lease = counts::replica_lease("meshd-0", "default", 5, k8s_openapi::jiff::Timestamp::now());
    s.fake
        .put(REPLICA_LEASE, serde_json::to_value(lease).unwrap());
    s.reconcile(&stored).await.unwrap();
    assert_eq!(s.write_lines(), [format!("PATCH {MESH}/status")]);
    assert_eq!(s.mesh().status.unwrap().connected_proxies, 5);
    assert_eq!(s.events.reasons(), ["InvalidSpec"], "no repeated Event");
}

#[tokio::test]
async fn an_api_error_fails_the_reconcile_and_error_policy_backs_off_with_a_failed_condition() {
    let mesh = example_mesh();
    let s = setup(&mesh).await;
    s.fake.fail_on("PATCH", "/deployments/");
    s.fake.settled().await;
    let err = reconcile::reconcile(Arc::new(mesh.clone()), s.ctx.clone())
        .await
        .expect_err("500 must fail");
    let text = err.to_string();
    assert!(
        text.contains("apply Deployment meshd-system/ingress") && text.contains("etcdserver"),
        "{text}"
    );
    assert!(
        !s.write_lines()
            .iter()
            .any(|l| l.contains("mutatingwebhook")),
        "stops at the failure"
    );

    let action = reconcile::error_policy(Arc::new(mesh.clone()), &err, s.ctx.clone());
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    let action = reconcile::error_policy(Arc::new(mesh.clone()), &err, s.ctx.clone());
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(10)),
        "backoff doubles"
    );
    // error_policy reports from a spawned task: wait for its status write.
    for _ in 0..200 {
        if s.fake.get(MESH).unwrap().get("status").is_some() && s.events.reasons().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stored = s.mesh();
    let ready = condition(&stored, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ReconcileFailed")
    );
    assert!(
        ready.message.contains("etcdserver") && ready.message.contains("retrying in"),
        "{}",
        ready.message
    );
    assert!(s.events.reasons().contains(&"ReconcileFailed"));

    let mut text = String::new();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::register(&mut registry);
    let ctx = Arc::new(Context::new(
        s.fake.client(),
        OperatorConfig::new("x"),
        metrics,
        s.events.clone(),
        s.ctx.caches.clone(),
    ));
    let _ = reconcile::reconcile(Arc::new(mesh), ctx).await;
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("meshd_reconcile_total{result=\"error\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn certificate_rotation_keeps_the_old_ca_in_the_bundle() {
    let mesh = example_mesh();
    let s = setup(&mesh).await;
    let year = Duration::from_secs(365 * 24 * 3600);
    let hosts = webhook_tls::serving_hosts(None).unwrap();
    let old = webhook_tls::issue(&hosts, SystemTime::now() - year * 7 / 10, year, None).unwrap();
    let b = |t: &str| serde_json::to_value(ByteString(t.as_bytes().to_vec())).unwrap();
    s.fake.put(SECRET, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "meshd-webhook-tls", "namespace": "meshd-system"},
        "data": {"tls.crt": b(&old.cert_pem), "tls.key": b(&old.key_pem), "ca.crt": b(&old.ca_bundle)}}));
    s.reconcile(&mesh).await.unwrap();
    let secret = s.fake.get(SECRET).unwrap();
    let field = |k: &str| {
        String::from_utf8(
            serde_json::from_value::<ByteString>(secret["data"][k].clone())
                .unwrap()
                .0,
        )
        .unwrap()
    };
    let bundle = field("ca.crt");
    let cas = webhook_tls::parse_bundle(bundle.as_bytes()).unwrap();
    assert_eq!(cas.len(), 2, "new CA + previous CA");
    assert_eq!(cas[1].pem, old.ca_bundle, "the previous CA is kept second");
    assert_ne!(field("tls.crt"), old.cert_pem, "a new serving certificate");
    let mwc = s.fake.get(MWC).unwrap();
    for i in 0..3 {
        assert_eq!(
            decode_ca_bundle(&mwc, i),
            bundle,
            "webhook {i} trusts both CAs"
        );
    }
    assert!(s.events.reasons().contains(&"WebhookCertRotated"));
    // The fresh Secret is left alone on the next pass.
    let stored = s.mesh();
    s.fake.clear_log();
    s.reconcile(&stored).await.unwrap();
    assert!(s.fake.writes().is_empty(), "{:?}", s.write_lines());
}

/// A limit and a port dropped from a Mesh's gateway leave the cluster too: the dry run shows the server
/// would remove them, so the apply does (a "desired ⊆ live" check never saw a removal). CPU `0.5`
/// normalised by the server to `500m` is not drift.
#[tokio::test]
async fn a_field_removed_from_a_gateway_is_removed_from_the_cluster() {
    let mut mesh = example_mesh();
    let limits = [
        ("cpu".to_string(), Quantity("0.5".into())),
        ("memory".to_string(), Quantity("256Mi".into())),
    ];
    mesh.spec.gateways[0].resources.limits = Some(limits.into());
    let s = setup(&mesh).await;
    s.reconcile(&mesh).await.unwrap();
    let limits = |deploy: &serde_json::Value| {
        deploy["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].clone()
    };
    assert_eq!(
        limits(&s.fake.get(DEPLOY).unwrap()),
        json!({"cpu": "500m", "memory": "256Mi"}),
        "the server normalises the quantity"
    );
    // Nothing changed: the normalised quantity is not drift (even for a new leader, which dry-runs).
    let stored = s.mesh();
    let fresh = s.new_leader();
    s.fake.clear_log();
    s.fake.settled().await;
    reconcile::reconcile_mesh(&stored, &fresh).await.unwrap();
    assert!(s.fake.writes().is_empty(), "{:?}", s.write_lines());

    // Drop the CPU limit: only the Deployment (and the settings ConfigMap) change.
    let mut changed = stored.clone();
    changed.metadata.generation = Some(2);
    changed.spec.gateways[0]
        .resources
        .limits
        .as_mut()
        .expect("limits")
        .remove("cpu");
    s.fake.clear_log();
    s.reconcile(&changed).await.unwrap();
    assert_eq!(
        s.write_lines(),
        [
            format!("PATCH {CM}"),
            format!("PATCH {DEPLOY}"),
            format!("PATCH {MESH}/status"),
        ]
    );
    assert_eq!(
        limits(&s.fake.get(DEPLOY).unwrap()),
        json!({"memory": "256Mi"}),
        "the CPU limit is gone"
    );

    // Drop the https port: the Deployment's container port and the Service's port go.
    let mut changed = s.mesh();
    changed.metadata.generation = Some(3);
    changed.spec.gateways[0]
        .service
        .ports
        .retain(|p| p.name != "https");
    s.fake.clear_log();
    s.reconcile(&changed).await.unwrap();
    assert_eq!(
        s.write_lines(),
        [
            format!("PATCH {CM}"),
            format!("PATCH {DEPLOY}"),
            format!("PATCH {SVC}"),
            format!("PATCH {MESH}/status"),
        ]
    );
    let deploy = s.fake.get(DEPLOY).unwrap();
    let container_ports: Vec<i64> = deploy["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_i64().unwrap())
        .collect();
    assert!(!container_ports.contains(&8443), "{container_ports:?}");
    let ports: Vec<String> = s.fake.get(SVC).unwrap()["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ports, ["http2"], "the https port is gone");
}

/// Fields other writers set (an annotation added with kubectl) are theirs: no write, no fight.
#[tokio::test]
async fn another_writers_field_is_not_drift() {
    let mesh = example_mesh();
    let s = setup(&mesh).await;
    s.reconcile(&mesh).await.unwrap();
    let stored = s.mesh();
    s.fake.merge(
        SVC,
        json!({"metadata": {"annotations": {"example.com/owner": "team-a"}}}),
    );
    s.fake.clear_log();
    s.reconcile(&stored).await.unwrap();
    assert!(s.fake.writes().is_empty(), "{:?}", s.write_lines());
    let dry: Vec<String> = s.fake.requests().iter().map(|r| r.line()).collect();
    assert_eq!(
        dry,
        [format!("PATCH {SVC} (dry run)")],
        "only the changed object is checked"
    );
    assert_eq!(
        s.fake.get(SVC).unwrap()["metadata"]["annotations"]["example.com/owner"],
        "team-a"
    );
}
