//! End-to-end against a real cluster: runs only when `MESHD_E2E_KUBECONFIG` names a kubeconfig, and prints
//! why it was skipped otherwise. `make e2e`.
//!
//! It installs the CRDs, runs `meshd controller` from this build on the test machine (out of cluster, with
//! `--kubeconfig`), applies `examples/mesh.yaml`, and checks what the operator owns, the `kubectl get mesh`
//! columns (the server-side Table), the conditions, drift repair, and cleanup when the Mesh is deleted.
//!
//! Optional settings:
//! - `MESHD_E2E_WEBHOOK_URL`: an `https://HOST:PORT/inject` at which the cluster's API server reaches this
//!   machine's port 9443 (for kind: the docker bridge address). Without it the injection checks are skipped
//!   (with a message) and the webhook is registered at an address only this machine reaches.
//! - `MESHD_E2E_PROXY_IMAGE`: a pullable meshd-proxy image; with it the gateway must become ready.
//!
//! The cluster must not already run meshd (the test owns the `default` Mesh for its duration).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use meshd_api::Mesh;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Straight to the stderr handle: the test harness captures `eprintln!` of passing tests, and a skip or a
/// relaxed check must be seen.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn kubeconfig_path() -> Option<String> {
    std::env::var("MESHD_E2E_KUBECONFIG")
        .ok()
        .filter(|p| !p.is_empty())
}

async fn client(path: &str) -> Result<Client> {
    let kc = Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {path}"))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Polls `check` until it returns Some, or fails after TIMEOUT naming what it waited for.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last_err = String::new();
    while start.elapsed() < TIMEOUT {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("timed out after {TIMEOUT:?} waiting for {what} {last_err}")
}

/// The controller process; killed when the test ends, whatever happens.
struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_controller(kubeconfig: &str, cert_dir: &std::path::Path) -> Result<Controller> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshd"));
    cmd.args([
        "controller",
        "--kubeconfig",
        kubeconfig,
        "--pod-name",
        "meshd-e2e",
    ])
    .args([
        "--webhook-listen",
        "0.0.0.0:9443",
        "--xds-listen",
        "127.0.0.1:15012",
    ])
    .args(["--metrics-listen", "127.0.0.1:15014"])
    .arg("--webhook-cert-dir")
    .arg(cert_dir)
    .stdout(Stdio::inherit())
    .stderr(Stdio::inherit());
    let url = std::env::var("MESHD_E2E_WEBHOOK_URL")
        .unwrap_or_else(|_| "https://127.0.0.1:9443/inject".into());
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
    let Some(path) = kubeconfig_path() else {
        say!(
            "SKIP: e2e: MESHD_E2E_KUBECONFIG is not set, so there is no cluster to test against; set it to a kubeconfig path to run the end-to-end suite"
        );
        return Ok(());
    };
    let client = client(&path).await?;
    let pp = PatchParams::apply("meshd-e2e").force();
    apply_crds(&client).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch("meshd-system", &pp, &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "meshd-system"}})))
        .await?;

    let cert_dir = tempfile::tempdir()?;
    let _controller = start_controller(&path, cert_dir.path())?;

    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mesh.yaml"))?;
    let mut mesh = meshd_api::settings::parse_mesh_yaml(&text)?;
    if let Ok(image) = std::env::var("MESHD_E2E_PROXY_IMAGE") {
        mesh.spec.proxy.image = Some(image);
    }
    let meshes: Api<Mesh> = Api::all(client.clone());
    meshes
        .patch("default", &pp, &Patch::Apply(&mesh))
        .await
        .context("applying examples/mesh.yaml")?;

    let result = check_reconciled(&client).await;
    // Cleanup runs whatever the checks said, and is itself checked.
    let cleanup = check_cleanup(&client).await;
    if result.is_err() {
        dump(&client).await;
    }
    result?;
    cleanup
}

async fn check_reconciled(client: &Client) -> Result<()> {
    let system = "meshd-system";
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), system);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), system);
    let services: Api<Service> = Api::namespaced(client.clone(), system);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), system);
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
    if std::env::var("MESHD_E2E_PROXY_IMAGE").is_ok() {
        eventually("Mesh Ready=True", || async {
            let m = meshes.get("default").await?;
            Ok(condition(&m, "Ready").filter(|c| c.0 == "True").map(|_| ()))
        })
        .await?;
    } else {
        say!(
            "e2e: MESHD_E2E_PROXY_IMAGE unset: the gateway image may not be pullable, so Ready is not required"
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

    if std::env::var("MESHD_E2E_WEBHOOK_URL").is_ok() {
        check_injection(client).await?;
    } else {
        say!(
            "SKIP: e2e injection: MESHD_E2E_WEBHOOK_URL is not set, so the API server cannot reach this machine's webhook"
        );
    }
    Ok(())
}

/// A labelled namespace gets injected pods; an opted-out pod is left alone.
async fn check_injection(client: &Client) -> Result<()> {
    let ns = format!("meshd-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": ns, "labels": {"meshd.io/inject": "enabled"}}
            }))?,
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
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
    let result = async {
        let injected = pods
            .create(&PostParams::default(), &pod("injected", false)?)
            .await?;
        let names: Vec<String> = injected
            .spec
            .iter()
            .flat_map(|s| {
                s.init_containers
                    .iter()
                    .flatten()
                    .chain(s.containers.iter())
            })
            .map(|c| c.name.clone())
            .collect();
        assert!(
            names.contains(&"meshd-proxy".to_string()),
            "pod not injected: {names:?}"
        );
        let annotations = injected.metadata.annotations.unwrap_or_default();
        assert!(
            annotations.contains_key("meshd.io/status"),
            "no meshd.io/status annotation"
        );
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
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
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
        let names: Vec<String> = made
            .spec
            .iter()
            .flat_map(|s| {
                s.init_containers
                    .iter()
                    .flatten()
                    .chain(s.containers.iter())
            })
            .map(|c| c.name.clone())
            .collect();
        assert!(
            names.contains(&"meshd-proxy".to_string()),
            "Deployment pod not injected: {names:?}"
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    result
}

/// Deleting the Mesh removes everything it made (owner references + the garbage collector).
async fn check_cleanup(client: &Client) -> Result<()> {
    let meshes: Api<Mesh> = Api::all(client.clone());
    let _ = meshes.delete("default", &DeleteParams::foreground()).await;
    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "meshd-system");
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "meshd-system");
    eventually("owned objects garbage-collected", || async {
        let gone = webhooks.get_opt("meshd-injector-default").await?.is_none()
            && deployments.get_opt("ingress").await?.is_none()
            && configmaps.get_opt("meshd-mesh-default").await?.is_none();
        Ok(gone.then_some(()))
    })
    .await
}

/// On failure: what a person needs to see.
async fn dump(client: &Client) {
    let meshes: Api<Mesh> = Api::all(client.clone());
    if let Ok(m) = meshes.get("default").await {
        say!(
            "--- Mesh default status:\n{}",
            serde_yaml::to_string(&m.status).unwrap_or_default()
        );
    }
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "meshd-system");
    if let Ok(list) = events.list(&Default::default()).await {
        for e in list.items {
            say!(
                "--- event {:?} {:?}: {:?}",
                e.reason,
                e.regarding.and_then(|r| r.name),
                e.note
            );
        }
    }
}
