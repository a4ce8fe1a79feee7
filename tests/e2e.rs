//! End-to-end against a real cluster: runs only when `MESHD_E2E_KUBECONFIG` names a kubeconfig, and prints
//! why it was skipped otherwise. `make e2e`.
//!
//! It installs the CRDs, runs `meshd controller` from this build on the test machine (out of cluster, with
//! `--kubeconfig`), applies `examples/mesh.yaml`, and checks what the operator owns, ConfigMap
//! `meshd-ca-root` in a fresh namespace, the `kubectl get mesh` columns (the server-side Table), the
//! conditions, the status counts, drift repair, and cleanup when the Mesh is deleted. Identity (SPEC §9):
//! the controller creates Secret `meshd-ca` once and writes its root into `meshd-ca-root`; xDS and the
//! CA are served over TLS only, so a gateway or sidecar that connects (and, with a proxy image, the
//! certificates counted as issued) proves the TLS + TokenReview path end to end; with a proxy image, a
//! PeerAuthentication makes the run's namespace STRICT, and a meshed caller must reach an echo Deployment
//! by its Service VIP while a pod outside the mesh is refused (SPEC §9); then a Gateway selects the
//! `ingress` gateway's pods, which become ready, and one HTTP route through it reaches the echo
//! Deployment from a pod outside the mesh (SPEC §10, `e2e/gateway.rs`); last, a VirtualService applied
//! from YAML (server-side apply) splits 80/20 between two Deployments' subsets, counted from an injected caller, and a
//! bad update of it gets `Accepted=False` naming the field (SPEC §8, `e2e/traffic.rs`). On a failure it
//! prints the Mesh's status and this run's Events (created since the run started, about the Mesh or
//! objects in meshd-system or the run's namespace) before cleanup deletes them.
//!
//! Settings (all `MESHD_E2E_*` variables):
//! - `MESHD_E2E_KUBECONFIG`: the cluster's kubeconfig; without it the suite is skipped (with a message).
//! - `MESHD_E2E_WEBHOOK_URL`: an `https://HOST:PORT/inject` at which the cluster's API server reaches this
//!   machine's port 9443 (for kind: the docker bridge address). Without it the injection checks are skipped
//!   (with a message) and the webhook is registered at an address only this machine reaches.
//! - `MESHD_E2E_DISCOVERY_ADDRESS`: `HOST:PORT` at which the cluster's pods reach this machine's xDS. The
//!   controller listens on `0.0.0.0:PORT` and writes it into sidecars and gateways (`--discovery-address`).
//!   Pods are reached and reach us by IP: the suite needs neither cluster DNS nor kube-proxy.
//! - `MESHD_E2E_PROXY_IMAGE`: a pullable meshd-proxy image, set as the Mesh's proxy image. With it the
//!   gateway's replicas must run and connect (so it needs `MESHD_E2E_DISCOVERY_ADDRESS`), become ready
//!   once a Gateway selects them, and the injected pod must start.
//!
//! The cluster must not already run meshd (the test owns the `default` Mesh for its duration).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use meshd_api::Mesh;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(120);
const SYSTEM: &str = "meshd-system";

/// Straight to the stderr handle: the test harness captures `eprintln!` of passing tests, and a skip or a
/// relaxed check must be seen.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

// After `say!`: the module uses it.
#[path = "e2e/gateway.rs"]
mod gateway;
#[path = "e2e/traffic.rs"]
mod traffic;

fn setting(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// What this run is: its settings, when it started, the namespace it makes.
struct Run {
    kubeconfig: String,
    webhook_url: Option<String>,
    discovery_address: Option<String>,
    proxy_image: Option<String>,
    started: Timestamp,
    namespace: String,
}

impl Run {
    fn from_env() -> Result<Option<Self>> {
        let Some(kubeconfig) = setting("MESHD_E2E_KUBECONFIG") else {
            return Ok(None);
        };
        let run = Self {
            kubeconfig,
            webhook_url: setting("MESHD_E2E_WEBHOOK_URL"),
            discovery_address: setting("MESHD_E2E_DISCOVERY_ADDRESS"),
            proxy_image: setting("MESHD_E2E_PROXY_IMAGE"),
            started: Timestamp::now(),
            namespace: format!("meshd-e2e-{}", std::process::id()),
        };
        if let Some(address) = &run.discovery_address {
            xds_port(address)?;
        }
        if run.proxy_image.is_some() && run.discovery_address.is_none() {
            bail!(
                "MESHD_E2E_PROXY_IMAGE is set but MESHD_E2E_DISCOVERY_ADDRESS is not: gateway pods could not \
                 reach this machine's xDS and would never become ready; set it to HOST:PORT of this machine as \
                 the cluster's pods reach it"
            );
        }
        Ok(Some(run))
    }
}

/// PORT of `HOST:PORT`.
fn xds_port(address: &str) -> Result<u16> {
    address
        .rsplit_once(':')
        .and_then(|(host, port)| (!host.is_empty()).then_some(port))
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("MESHD_E2E_DISCOVERY_ADDRESS={address:?} is not HOST:PORT"))
}

async fn client(path: &str) -> Result<Client> {
    let kc = Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {path}"))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Polls `check` until it returns Some, or fails after `limit` naming what it waited for.
async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last_err = String::new();
    while start.elapsed() < limit {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("timed out after {limit:?} waiting for {what} {last_err}")
}

async fn eventually<T, F, Fut>(what: &str, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    eventually_within(TIMEOUT, what, check).await
}

/// The controller process; killed when the test ends, whatever happens.
struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_controller(run: &Run) -> Result<Controller> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshd"));
    cmd.args([
        "controller",
        "--kubeconfig",
        &run.kubeconfig,
        "--pod-name",
        "meshd-e2e",
    ])
    .args(["--webhook-listen", "0.0.0.0:9443"])
    .args(["--metrics-listen", "127.0.0.1:15014"])
    .stdout(Stdio::inherit())
    .stderr(Stdio::inherit());
    match &run.discovery_address {
        Some(address) => {
            let port = xds_port(address)?;
            cmd.args(["--xds-listen", &format!("0.0.0.0:{port}")])
                .args(["--discovery-address", address]);
        }
        None => {
            say!(
                "e2e: MESHD_E2E_DISCOVERY_ADDRESS unset: xDS listens on 127.0.0.1 only, which no pod reaches"
            );
            cmd.args(["--xds-listen", "127.0.0.1:15012"]);
        }
    }
    let url = run
        .webhook_url
        .clone()
        .unwrap_or_else(|| "https://127.0.0.1:9443/inject".into());
    cmd.args(["--webhook-url", &url]);
    Ok(Controller(
        cmd.spawn().context("starting meshd controller")?,
    ))
}

async fn apply_crds(client: &Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply("meshd-e2e").force();
    for crd in meshd_api::crd::all() {
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        crds.patch(&name, &pp, &Patch::Apply(&crd))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
        eventually(&format!("CRD {name} Established"), || {
            let crds = crds.clone();
            let name = name.clone();
            async move {
                let c = crds.get(&name).await?;
                let established = c
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                Ok(established.then_some(()))
            }
        })
        .await?;
    }
    Ok(())
}

fn condition(mesh: &Mesh, type_: &str) -> Option<(String, String, String)> {
    mesh.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test]
async fn operator_reconciles_the_example_mesh() -> Result<()> {
    let Some(run) = Run::from_env()? else {
        say!(
            "SKIP: e2e: MESHD_E2E_KUBECONFIG is not set, so there is no cluster to test against; set it to a kubeconfig path to run the end-to-end suite"
        );
        return Ok(());
    };
    let client = client(&run.kubeconfig).await?;
    let pp = PatchParams::apply("meshd-e2e").force();
    apply_crds(&client).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            SYSTEM,
            &pp,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM}}),
            ),
        )
        .await?;

    let controller = start_controller(&run)?;

    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mesh.yaml"))?;
    let mut mesh = meshd_api::settings::parse_mesh_yaml(&text)?;
    if let Some(image) = &run.proxy_image {
        mesh.spec.proxy.image = Some(image.clone());
    }
    let meshes: Api<Mesh> = Api::all(client.clone());
    meshes
        .patch("default", &pp, &Patch::Apply(&mesh))
        .await
        .context("applying examples/mesh.yaml")?;

    let result = check_reconciled(&client, &run).await;
    // What a person needs to see, before cleanup deletes it.
    if result.is_err() {
        dump(&client, &run).await;
    }
    // Cleanup runs whatever the checks said, and is itself checked.
    let cleanup = check_cleanup(&client, &run).await;
    drop(controller);
    remove_ca_roots(&client).await;
    // The mesh CA the controller made: the cluster is left as the run found it.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), SYSTEM);
    let _ = secrets.delete("meshd-ca", &DeleteParams::default()).await;
    result?;
    cleanup
}

/// The controller put meshd-ca-root in every namespace; with it stopped, they go too.
async fn remove_ca_roots(client: &Client) {
    let all: Api<ConfigMap> = Api::all(client.clone());
    let ours = kube::api::ListParams::default()
        .fields("metadata.name=meshd-ca-root")
        .labels("app.kubernetes.io/managed-by=meshd");
    let Ok(list) = all.list_metadata(&ours).await else {
        return say!("e2e: could not list the meshd-ca-root ConfigMaps to remove them");
    };
    let mut removed = 0;
    for cm in list.items {
        if let Some(ns) = cm.metadata.namespace.as_deref() {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
            if api
                .delete("meshd-ca-root", &DeleteParams::default())
                .await
                .is_ok()
            {
                removed += 1;
            }
        }
    }
    say!("e2e: removed {removed} meshd-ca-root ConfigMaps");
}

async fn check_reconciled(client: &Client, run: &Run) -> Result<()> {
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), SYSTEM);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), SYSTEM);
    let services: Api<Service> = Api::namespaced(client.clone(), SYSTEM);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), SYSTEM);
    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let meshes: Api<Mesh> = Api::all(client.clone());

    // Owned objects appear, owned by the Mesh.
    let cm = eventually("ConfigMap meshd-mesh-default", || async {
        Ok(configmaps.get_opt("meshd-mesh-default").await?)
    })
    .await?;
    let owner = cm.metadata.owner_references.unwrap_or_default();
    assert!(
        owner
            .iter()
            .any(|o| o.kind == "Mesh" && o.name == "default"),
        "ConfigMap not owned by the Mesh: {owner:?}"
    );
    let resolved = cm
        .data
        .unwrap_or_default()
        .remove("mesh.yaml")
        .context("ConfigMap has no mesh.yaml")?;
    assert!(
        resolved.contains("PERMISSIVE"),
        "resolved settings lack the mTLS default:\n{resolved}"
    );
    eventually("gateway Deployment ingress", || async {
        Ok(deployments.get_opt("ingress").await?)
    })
    .await?;
    eventually("gateway Service ingress", || async {
        Ok(services.get_opt("ingress").await?)
    })
    .await?;
    eventually("Secret meshd-webhook-tls", || async {
        Ok(secrets.get_opt("meshd-webhook-tls").await?)
    })
    .await?;
    // The gateway pods mount it: it must be in the gateway's namespace, with the root of the CA the
    // leader created (Secret meshd-ca, once).
    let ca = eventually(
        "Secret meshd-ca (the mesh CA, made by the leader)",
        || async { Ok(secrets.get_opt("meshd-ca").await?) },
    )
    .await?;
    let ca_data = ca.data.unwrap_or_default();
    for key in [
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
    ] {
        assert!(ca_data.contains_key(key), "Secret meshd-ca lacks {key}");
    }
    let root = String::from_utf8(ca_data["root-cert.pem"].0.clone())?;
    eventually(
        "ConfigMap meshd-ca-root in meshd-system holding the mesh root",
        || async {
            let cm = configmaps.get_opt("meshd-ca-root").await?;
            Ok(cm.filter(|cm| {
                cm.data
                    .as_ref()
                    .and_then(|d| d.get("root-cert.pem"))
                    .is_some_and(|r| *r == root)
            }))
        },
    )
    .await?;
    let mwc = eventually("MutatingWebhookConfiguration with a caBundle", || async {
        let w = webhooks.get_opt("meshd-injector-default").await?;
        Ok(w.filter(|w| {
            w.webhooks.iter().flatten().all(|h| {
                h.client_config
                    .ca_bundle
                    .as_ref()
                    .is_some_and(|b| !b.0.is_empty())
            })
        }))
    })
    .await?;
    for hook in mwc.webhooks.iter().flatten() {
        assert_eq!(hook.failure_policy.as_deref(), Some("Fail"));
        assert_eq!(hook.side_effects, "NoneOnDryRun");
        assert_eq!(hook.timeout_seconds, Some(10));
    }

    // Status: observedGeneration and the four conditions, each with a reason.
    let mesh = eventually("Mesh status with conditions", || async {
        let m = meshes.get("default").await?;
        let done = m
            .status
            .as_ref()
            .is_some_and(|s| s.observed_generation == m.metadata.generation)
            && [
                "Ready",
                "ControlPlaneReady",
                "WebhookReady",
                "GatewaysReady",
            ]
            .iter()
            .all(|t| condition(&m, t).is_some());
        Ok(done.then_some(m))
    })
    .await?;
    let (webhook_ready, reason, message) = condition(&mesh, "WebhookReady").expect("checked above");
    assert_eq!(webhook_ready, "True", "WebhookReady: {reason}: {message}");
    if run.proxy_image.is_some() {
        check_gateway_runs_but_is_not_ready(&meshes, client).await?;
        check_certificates_issued().await?;
    } else {
        say!(
            "e2e: MESHD_E2E_PROXY_IMAGE unset: the gateway image may not be pullable, so its replicas are not required to run"
        );
    }

    // `kubectl get mesh` columns, as the API server renders them.
    let req = http::Request::get("/apis/meshd.io/v1alpha1/meshes")
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())?;
    let table: serde_json::Value = client.request(req).await?;
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .context("no Table columns")?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for want in ["READY", "MTLS", "GATEWAYS", "PROXIES", "AGE"] {
        assert!(
            columns.contains(&want),
            "column {want} missing from {columns:?}"
        );
    }
    let gateways_column = columns
        .iter()
        .position(|c| *c == "GATEWAYS")
        .expect("checked");
    let cells = &table["rows"][0]["cells"];
    assert_eq!(
        cells[gateways_column], "0/1",
        "GATEWAYS counts ready gateway replicas (none before a Gateway selects them): {cells}"
    );

    // Drift repair: a deleted Service and an edited ConfigMap are put back.
    services.delete("ingress", &DeleteParams::default()).await?;
    eventually("gateway Service recreated", || async {
        Ok(services
            .get_opt("ingress")
            .await?
            .filter(|s| s.metadata.deletion_timestamp.is_none()))
    })
    .await?;
    configmaps
        .patch(
            "meshd-mesh-default",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"mesh.yaml": "tampered"}})),
        )
        .await?;
    eventually("ConfigMap restored", || async {
        let cm = configmaps.get("meshd-mesh-default").await?;
        Ok(cm
            .data
            .unwrap_or_default()
            .get("mesh.yaml")
            .filter(|d| d.contains("PERMISSIVE"))
            .map(|_| ()))
    })
    .await?;

    check_fresh_namespace(client, run).await?;
    if run.webhook_url.is_some() {
        check_injection(client, run).await?;
    } else {
        say!(
            "SKIP: e2e injection: MESHD_E2E_WEBHOOK_URL is not set, so the API server cannot reach this machine's webhook"
        );
    }
    Ok(())
}

/// The gateway's replica runs and connects to xDS, but is not ready while no Gateway selects it (SPEC
/// §10): GatewaysReady and Ready say so.
async fn check_gateway_runs_but_is_not_ready(meshes: &Api<Mesh>, client: &Client) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), SYSTEM);
    eventually("the gateway's replica running", || async {
        let list = pods
            .list(&kube::api::ListParams::default().labels("meshd.io/gateway=ingress"))
            .await?;
        Ok(list.items.into_iter().find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
                })
        }))
    })
    .await?;
    let mesh = meshes.get("default").await?;
    let gateways = mesh
        .status
        .as_ref()
        .map(|s| s.gateways.clone())
        .unwrap_or_default();
    assert!(
        !gateways.is_empty() && gateways.iter().all(|g| g.ready_replicas == 0),
        "no Gateway selects the gateway's pods, so none is ready: {gateways:?}"
    );
    let (status, reason, message) = condition(&mesh, "GatewaysReady").expect("checked above");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ReplicasNotReady"),
        "GatewaysReady: {message}"
    );
    assert!(
        message.contains("meshd-system/ingress"),
        "the message names the gateway: {message}"
    );
    let (ready, _, why) = condition(&mesh, "Ready").expect("checked above");
    assert_eq!(
        (ready.as_str(), why.as_str()),
        ("False", "not ready: GatewaysReady")
    );
    let (cp, _, cp_message) = condition(&mesh, "ControlPlaneReady").expect("checked above");
    assert_eq!(cp, "True", "ControlPlaneReady: {cp_message}");
    eventually_within(
        Duration::from_secs(30),
        "status.connectedProxies counting the gateway",
        || async {
            let m = meshes.get("default").await?;
            Ok(m.status.filter(|s| s.connected_proxies >= 1).map(|_| ()))
        },
    )
    .await
}

/// The gateway's agent got its certificate over TLS with its projected token (a TokenReview):
/// `meshd_certificate_requests_total{result="issued"}` on the controller's metrics port.
async fn check_certificates_issued() -> Result<()> {
    eventually_within(
        Duration::from_secs(60),
        "meshd_certificate_requests_total{result=\"issued\"} >= 1",
        || async {
            let text = metrics().await?;
            let issued = text
                .lines()
                .find(|l| l.starts_with("meshd_certificate_requests_total{result=\"issued\"}"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            Ok((issued >= 1.0).then_some(()))
        },
    )
    .await
}

/// The controller's `/metrics` (it listens on 127.0.0.1:15014 in this suite).
async fn metrics() -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect("127.0.0.1:15014").await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text)
}

/// A namespace made now gets ConfigMap meshd-ca-root within seconds, before a pod in it needs it.
async fn check_fresh_namespace(client: &Client, run: &Run) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": run.namespace, "labels": {"meshd.io/inject": "enabled"}}
            }))?,
        )
        .await?;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &run.namespace);
    let cm = eventually_within(
        Duration::from_secs(10),
        "ConfigMap meshd-ca-root in a fresh namespace",
        || async { Ok(configmaps.get_opt("meshd-ca-root").await?) },
    )
    .await?;
    let data = cm.data.unwrap_or_default();
    assert!(
        data.contains_key("root-cert.pem"),
        "no root-cert.pem: {data:?}"
    );
    configmaps
        .delete("meshd-ca-root", &DeleteParams::default())
        .await?;
    eventually_within(
        Duration::from_secs(10),
        "a deleted meshd-ca-root recreated",
        || async {
            Ok(configmaps
                .get_opt("meshd-ca-root")
                .await?
                .filter(|c| c.metadata.deletion_timestamp.is_none()))
        },
    )
    .await?;
    Ok(())
}

fn container_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
        })
        .map(|c| c.name.clone())
        .collect()
}

/// Volumes are mounted before any container starts or its image is pulled: a pod past that point is
/// past ContainerCreating (what a missing meshd-ca-root blocked forever).
fn past_container_creating(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    let statuses = status
        .into_iter()
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .collect::<Vec<_>>();
    statuses.iter().any(|c| {
        let state = c.state.as_ref();
        state.is_some_and(|s| s.running.is_some() || s.terminated.is_some())
            || state
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
                .is_some_and(|r| {
                    matches!(r, "ErrImagePull" | "ImagePullBackOff" | "CrashLoopBackOff")
                })
    })
}

/// A labelled namespace gets injected pods that start; an opted-out pod is left alone; the Mesh counts
/// the injected pods.
async fn check_injection(client: &Client, run: &Run) -> Result<()> {
    let ns = &run.namespace;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = |name: &str, opt_out: bool| -> Result<Pod> {
        let labels = if opt_out {
            json!({"meshd.io/inject": "false"})
        } else {
            json!({})
        };
        Ok(serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
        }))?)
    };
    let injected = pods
        .create(&PostParams::default(), &pod("injected", false)?)
        .await?;
    let names = container_names(&injected);
    assert!(
        names.contains(&"meshd-proxy".to_string()),
        "pod not injected: {names:?}"
    );
    let annotations = injected.metadata.annotations.unwrap_or_default();
    assert!(
        annotations.contains_key("meshd.io/status"),
        "no meshd.io/status annotation"
    );
    let started = eventually("the injected pod past ContainerCreating", || async {
        let p = pods.get("injected").await?;
        Ok(past_container_creating(&p).then_some(p))
    })
    .await?;
    if run.proxy_image.is_some() {
        let init = started
            .status
            .as_ref()
            .and_then(|s| s.init_container_statuses.as_ref())
            .and_then(|s| s.iter().find(|c| c.name == "meshd-init"));
        say!(
            "e2e: injected pod's meshd-init: {:?}",
            init.and_then(|c| c.state.clone())
        );
    }
    let plain = pods
        .create(&PostParams::default(), &pod("opted-out", true)?)
        .await?;
    let names: Vec<String> = plain
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names, ["app"], "opted-out pod was changed");

    // A Deployment's pods are made by the ReplicaSet controller, not by us: they come back injected too.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "reviews"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "reviews"}},
            "template": {
                "metadata": {"labels": {"app": "reviews"}},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
            }
        }
    }))?;
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    let made = eventually("the Deployment's pod", || async {
        let list = pods
            .list(&kube::api::ListParams::default().labels("app=reviews"))
            .await?;
        Ok(list.items.into_iter().next())
    })
    .await?;
    let labels = made.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("meshd.io/mesh").map(String::as_str),
        Some("default"),
        "labels: {labels:?}"
    );
    let names = container_names(&made);
    assert!(
        names.contains(&"meshd-proxy".to_string()),
        "Deployment pod not injected: {names:?}"
    );
    if run.proxy_image.is_some() {
        // Ready means its agent got a certificate (TLS to the controller, a TokenReview of the projected
        // token) and its Envoy its config over the authenticated ADS stream.
        let pod_name = made.metadata.name.clone().context("a pod without a name")?;
        eventually("the Deployment's injected pod Ready", || async {
            let p = pods.get(&pod_name).await?;
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            Ok(ready.then_some(()))
        })
        .await?;
    }

    // status.injectedPods follows within seconds (the two injected pods; the opted-out one is not).
    let meshes: Api<Mesh> = Api::all(client.clone());
    eventually_within(
        Duration::from_secs(30),
        "status.injectedPods = 2",
        || async {
            let m = meshes.get("default").await?;
            Ok(m.status.filter(|s| s.injected_pods == 2).map(|_| ()))
        },
    )
    .await?;
    // Then mTLS for real: STRICT between two Deployments (needs an image that runs).
    // Then north–south: one HTTP route through the gateway to the (now STRICT) echo Deployment.
    match &run.proxy_image {
        Some(image) => {
            check_strict(client, run, image).await?;
            gateway::check_gateway(client, run, image).await?;
            traffic::check_split(client, run, image).await
        }
        None => Ok(()),
    }
}

/// Deleting the Mesh removes everything it made (owner references + the garbage collector).
async fn check_cleanup(client: &Client, run: &Run) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces
        .delete(&run.namespace, &DeleteParams::default())
        .await;
    let meshes: Api<Mesh> = Api::all(client.clone());
    let _ = meshes.delete("default", &DeleteParams::foreground()).await;
    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), SYSTEM);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), SYSTEM);
    eventually("owned objects garbage-collected", || async {
        let gone = webhooks.get_opt("meshd-injector-default").await?.is_none()
            && deployments.get_opt("ingress").await?.is_none()
            && configmaps.get_opt("meshd-mesh-default").await?.is_none();
        Ok(gone.then_some(()))
    })
    .await
}

/// On failure: the Mesh's status and this run's Events: created since the run started (less a minute for
/// clock skew between this machine and the API server), about the Mesh or anything in meshd-system or
/// the run's namespace.
async fn dump(client: &Client, run: &Run) {
    let meshes: Api<Mesh> = Api::all(client.clone());
    match meshes.get("default").await {
        Ok(m) => say!(
            "--- Mesh default status:\n{}",
            serde_yaml::to_string(&m.status).unwrap_or_default()
        ),
        Err(e) => say!("--- Mesh default: {e}"),
    }
    let since = run.started - SignedDuration::from_secs(60);
    let events: Api<Event> = Api::all(client.clone());
    let list = match events.list(&Default::default()).await {
        Ok(list) => list,
        Err(e) => return say!("--- Events: cannot list: {e}"),
    };
    let mut ours: Vec<Event> = list
        .items
        .into_iter()
        .filter(|e| {
            let created = e
                .event_time
                .as_ref()
                .map(|t| t.0)
                .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0));
            let regarding = e.regarding.as_ref();
            let about_run = regarding.is_some_and(|r| {
                r.kind.as_deref() == Some("Mesh")
                    || matches!(r.namespace.as_deref(), Some(ns) if ns == SYSTEM || ns == run.namespace)
            });
            created.is_some_and(|t| t >= since) && about_run
        })
        .collect();
    ours.sort_by_key(|e| e.metadata.creation_timestamp.as_ref().map(|t| t.0));
    say!("--- {} Events of this run:", ours.len());
    for e in ours {
        let r = e.regarding.unwrap_or_default();
        say!(
            "{} {} {}/{} {}: {}",
            e.type_.unwrap_or_default(),
            e.reason.unwrap_or_default(),
            r.kind.unwrap_or_default(),
            r.name.unwrap_or_default(),
            r.namespace.map(|n| format!("(ns {n})")).unwrap_or_default(),
            e.note.unwrap_or_default()
        );
    }
}

/// The app the STRICT check runs in its pods: the proxy image's own Envoy (no other image is known to be
/// pullable), as uid 1000 so its traffic is captured like an app's, answering `echo` on 8080 (behind
/// the sidecar) and 8090 (excluded from capture: a plaintext control that the network itself works).
const ECHO_ENVOY: &str = r#"{"static_resources": {"listeners": [
 {"name": "app", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 8080}}, "filter_chains": [{"filters": [HCM]}]},
 {"name": "control", "address": {"socket_address": {"address": "0.0.0.0", "port_value": 8090}}, "filter_chains": [{"filters": [HCM]}]}]}}"#;
const ECHO_HCM: &str = r#"{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
 "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
 "stat_prefix": "app",
 "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "echo"}}}]}]},
 "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}"#;

/// A bash HTTP GET (the proxy image has bash, no curl): exit 0 when `http://$1/` answers 200 `echo`
/// within `$2` attempts two seconds apart.
const GET_ECHO: &str = r#"get() { exec 3<>"/dev/tcp/${1%:*}/${1#*:}" || return 1; printf 'GET / HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n' >&3; r=$(timeout 5 cat <&3); exec 3<&-; echo "GET $1: ${r%%$'\r'*}"; case "$r" in "HTTP/1.1 200"*echo*) return 0;; esac; return 1; }
try() { for i in $(seq 1 "$2"); do get "$1" && return 0; sleep 2; done; return 1; }
"#;

/// STRICT between two Deployments (SPEC §9), by a PeerAuthentication for the run's namespace: a meshed
/// caller reaches the echo Service's VIP (through both sidecars, so over mTLS with the mesh CA's
/// certificates), and a pod outside the mesh is refused on the sidecar's port while it reaches the
/// excluded control port of the same pod.
async fn check_strict(client: &Client, run: &Run, image: &str) -> Result<()> {
    let ns = &run.namespace;
    let pp = PatchParams::apply("meshd-e2e").force();
    let peers: Api<meshd_api::security::PeerAuthentication> = Api::namespaced(client.clone(), ns);
    peers
        .patch(
            "strict",
            &pp,
            &Patch::Apply(json!({
                "apiVersion": "security.meshd.io/v1alpha1", "kind": "PeerAuthentication",
                "metadata": {"name": "strict", "namespace": ns},
                "spec": {"mtls": {"mode": "STRICT"}}
            })),
        )
        .await
        .context("PeerAuthentication strict")?;
    let echo_config = ECHO_ENVOY.replace("HCM", ECHO_HCM);
    let app = |command: serde_json::Value| {
        json!({"name": "app", "image": image, "command": command,
               "securityContext": {"runAsUser": 1000, "runAsGroup": 1000}})
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let echo: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "echo"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "echo"}},
            "template": {
                "metadata": {"labels": {"app": "echo"},
                             "annotations": {"traffic.meshd.io/excludeInboundPorts": "8090"}},
                "spec": {"containers": [app(json!(["envoy", "--disable-hot-restart", "-l", "warning", "--config-yaml", echo_config]))]}
            }
        }
    }))?;
    deployments.create(&PostParams::default(), &echo).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "echo"},
        "spec": {"selector": {"app": "echo"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }))?;
    let service = services.create(&PostParams::default(), &service).await?;
    let vip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .context("the echo Service has no clusterIP")?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let echo_ip = eventually("the echo pod Ready with an IP", || async {
        let list = pods
            .list(&kube::api::ListParams::default().labels("app=echo"))
            .await?;
        Ok(list.items.into_iter().find_map(|p| {
            let s = p.status?;
            let ready = s
                .conditions
                .as_ref()
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            ready.then_some(s.pod_ip).flatten()
        }))
    })
    .await?;
    say!("e2e: echo pod {echo_ip}, Service VIP {vip}, STRICT by PeerAuthentication");

    // Callers are one-shot pods: the answer is their exit code.
    let caller = |name: &str, meshed: bool, script: String| -> Result<Pod> {
        let labels = if meshed {
            json!({"app": name})
        } else {
            json!({"app": name, "meshd.io/inject": "false"})
        };
        Ok(serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"restartPolicy": "Never",
                     "containers": [app(json!(["bash", "-c", format!("{GET_ECHO}{script}")]))]}
        }))?)
    };
    let meshed = caller("meshed-caller", true, format!("try {vip}:80 60"))?;
    let outsider = caller(
        "plaintext-caller",
        false,
        format!(
            "try {echo_ip}:8090 60 || {{ echo 'the control port is unreachable: no verdict'; exit 2; }}\n\
             for i in 1 2 3; do get {echo_ip}:8080 && {{ echo 'plaintext accepted under STRICT'; exit 1; }}; sleep 1; done; echo refused"
        ),
    )?;
    pods.create(&PostParams::default(), &meshed).await?;
    pods.create(&PostParams::default(), &outsider).await?;
    for name in ["meshed-caller", "plaintext-caller"] {
        let phase = eventually_within(
            Duration::from_secs(240),
            &format!("{name} finished"),
            || async {
                let p = pods.get(name).await?;
                let phase = p.status.and_then(|s| s.phase).unwrap_or_default();
                Ok(matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase))
            },
        )
        .await?;
        let logs = pods
            .logs(
                name,
                &kube::api::LogParams {
                    container: Some("app".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| format!("(no logs: {e})"));
        say!("e2e: {name}: {phase}\n{logs}");
        if phase != "Succeeded" {
            bail!("{name} failed under STRICT: {logs}");
        }
    }
    Ok(())
}
