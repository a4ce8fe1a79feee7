//! North–south on a real cluster (SPEC §10): the example Mesh's `ingress` gateway serves nothing until a
//! Gateway selects its pods; then one HTTP route through it reaches the echo Deployment (which is STRICT
//! by then, so the gateway's upstream connection is the mesh's mTLS) and an unknown host gets 404.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams, PostParams};
use meshd_api::Mesh;
use serde_json::json;

use super::{Run, SYSTEM, condition, eventually, eventually_within};

/// The gateway Service's `http2` port (80) targets 8080 on the pods (examples/mesh.yaml): the
/// Gateway's server port 80 is the Service port, its listener the pod's target port.
const GATEWAY_POD_PORT: u16 = 8080;
const HOST: &str = "echo.e2e.example";

/// A bash HTTP GET with a Host header: prints the status line and the body's first line.
const GET_STATUS: &str = r#"status() { exec 3<>"/dev/tcp/$1/$2" || return 1; printf 'GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$3" >&3; r=$(timeout 5 cat <&3); exec 3<&-; line=${r%%$'\r'*}; echo "GET $3 via $1:$2: $line / ${r##*$'\n'}"; case "$line" in "HTTP/1.1 $4"*) case "$r" in *"$5"*) return 0;; esac;; esac; return 1; }
try() { for i in $(seq 1 60); do status "$@" && return 0; sleep 2; done; return 1; }
"#;

pub(super) async fn check_gateway(client: &Client, run: &Run, image: &str) -> Result<()> {
    let ns = &run.namespace;
    let pp = PatchParams::apply("meshd-e2e").force();
    let gateways: Api<meshd_api::networking::Gateway> = Api::namespaced(client.clone(), ns);
    gateways
        .patch(
            "edge",
            &pp,
            &Patch::Apply(json!({
                "apiVersion": "networking.meshd.io/v1alpha1", "kind": "Gateway",
                "metadata": {"name": "edge", "namespace": ns},
                "spec": {
                    "selector": {"meshd.io/gateway": "ingress"},
                    "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                                 "hosts": [format!("{ns}/{HOST}")]}]
                }
            })),
        )
        .await
        .context("Gateway edge")?;
    let services: Api<meshd_api::networking::VirtualService> = Api::namespaced(client.clone(), ns);
    services
        .patch(
            "echo-edge",
            &pp,
            &Patch::Apply(json!({
                "apiVersion": "networking.meshd.io/v1alpha1", "kind": "VirtualService",
                "metadata": {"name": "echo-edge", "namespace": ns},
                "spec": {
                    "hosts": [HOST],
                    "gateways": ["edge"],
                    "http": [{"route": [{"destination": {"host": "echo", "port": {"number": 80}}}]}]
                }
            })),
        )
        .await
        .context("VirtualService echo-edge")?;
    for (kind, accepted) in [
        ("Gateway edge", accepted(&gateways, "edge").await),
        (
            "VirtualService echo-edge",
            accepted(&services, "echo-edge").await,
        ),
    ] {
        accepted.with_context(|| format!("{kind} Accepted"))?;
    }

    // Selected, with a listener: the replica becomes ready, and the Mesh says so.
    let meshes: Api<Mesh> = Api::all(client.clone());
    eventually_within(Duration::from_secs(90), "GatewaysReady True", || async {
        let m = meshes.get("default").await?;
        let ok = condition(&m, "GatewaysReady").is_some_and(|(s, _, _)| s == "True")
            && m.status
                .as_ref()
                .is_some_and(|s| s.gateway_replicas.as_deref() == Some("1/1"));
        Ok(ok.then_some(()))
    })
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), SYSTEM);
    let gateway_ip = eventually("the gateway pod's IP", || async {
        let list = pods
            .list(&ListParams::default().labels("meshd.io/gateway=ingress"))
            .await?;
        Ok(list
            .items
            .into_iter()
            .find_map(|p| p.status.and_then(|s| s.pod_ip)))
    })
    .await?;
    say!("e2e: gateway pod {gateway_ip} ready with Gateway {ns}/edge");

    // From outside the mesh (an opted-out pod, plaintext): the route answers, an unknown host is 404.
    let caller: Pod = serde_json::from_value(json!({
        "metadata": {"name": "edge-caller", "labels": {"meshd.io/inject": "false"}},
        "spec": {"restartPolicy": "Never",
                 "containers": [{"name": "app", "image": image,
                                 "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
                                 "command": ["bash", "-c", format!(
                                     "{GET_STATUS}try {gateway_ip} {GATEWAY_POD_PORT} {HOST} 200 echo && \
                                      status {gateway_ip} {GATEWAY_POD_PORT} unknown.e2e.example 404 ''")]}]}
    }))?;
    let in_run: Api<Pod> = Api::namespaced(client.clone(), ns);
    in_run.create(&PostParams::default(), &caller).await?;
    let phase = eventually_within(Duration::from_secs(180), "edge-caller finished", || async {
        let p = in_run.get("edge-caller").await?;
        let phase = p.status.and_then(|s| s.phase).unwrap_or_default();
        Ok(matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase))
    })
    .await?;
    let logs = in_run
        .logs(
            "edge-caller",
            &LogParams {
                container: Some("app".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| format!("(no logs: {e})"));
    say!("e2e: edge-caller: {phase}\n{logs}");
    if phase != "Succeeded" {
        bail!("the HTTP route through the gateway failed: {logs}");
    }
    Ok(())
}

/// Waits for a traffic resource's `Accepted=True` (its message on `False`, at once).
async fn accepted<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    eventually(&format!("{name} Accepted"), || async {
        let object = serde_json::to_value(api.get(name).await?)?;
        let conditions = object["status"]["conditions"].as_array().cloned();
        match conditions
            .unwrap_or_default()
            .iter()
            .find(|c| c["type"] == "Accepted")
        {
            Some(c) if c["status"] == "True" => Ok(Some(())),
            Some(c) if c["status"] == "False" => bail!("not accepted: {}", c["message"]),
            _ => Ok(None),
        }
    })
    .await
}
