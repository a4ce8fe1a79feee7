//! Traffic management on a real cluster (SPEC §8): two Deployments of one Service (`version: v1` and
//! `v2`), a DestinationRule with their subsets and a VirtualService sending 80/20 between them, applied
//! from YAML by server-side apply, as `kubectl apply --server-side` does; both get `Accepted=True`, and
//! an injected caller counts which version answers 300 requests to the Service's VIP (the cluster has
//! no kube-proxy: the caller's sidecar capture routes the VIP, so the split is the mesh's alone). Then
//! an update naming an undefined subset gets `Accepted=False` with the field path and value.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Client;
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams, PostParams};
use serde::Deserialize as _;
use serde_json::json;

use super::{ECHO_ENVOY, ECHO_HCM, Run, eventually, eventually_within};

const REQUESTS: u32 = 300;
/// v2's share of REQUESTS: 20% is 60; three standard deviations (about 7 each) either side.
const V2_RANGE: std::ops::RangeInclusive<u32> = 40..=80;

fn traffic(ns: &str) -> String {
    format!(
        "apiVersion: networking.meshd.io/v1alpha1
kind: DestinationRule
metadata: {{name: split, namespace: {ns}}}
spec:
  host: split
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {{name: split, namespace: {ns}}}
spec:
  hosts: [split]
  http:
  - match: [{{uri: {{prefix: /v2-only}}}}]
    route: [{{destination: {{host: split, subset: v2}}}}]
  - route:
    - {{destination: {{host: split, subset: v1}}, weight: 80}}
    - {{destination: {{host: split, subset: v2}}, weight: 20}}
"
    )
}

/// The same VirtualService naming a subset no DestinationRule defines.
fn bad_update(ns: &str) -> String {
    format!(
        "apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {{name: split, namespace: {ns}}}
spec:
  hosts: [split]
  http:
  - route: [{{destination: {{host: split, subset: v3}}}}]
"
    )
}

/// Server-side apply of each document of `yaml` (DestinationRules and VirtualServices) in `ns`, as
/// `kubectl apply --server-side` does: the suite's host needs no kubectl.
async fn apply(client: &Client, ns: &str, yaml: &str) -> Result<()> {
    let pp = PatchParams::apply("meshd-e2e").force();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_json::Value::deserialize(doc).context("a traffic document")?;
        let name = value["metadata"]["name"]
            .as_str()
            .context("a traffic document without metadata.name")?
            .to_string();
        match value["kind"].as_str() {
            Some("DestinationRule") => {
                let api: Api<meshd_api::networking::DestinationRule> =
                    Api::namespaced(client.clone(), ns);
                api.patch(&name, &pp, &Patch::Apply(&value)).await?;
            }
            Some("VirtualService") => {
                let api: Api<meshd_api::networking::VirtualService> =
                    Api::namespaced(client.clone(), ns);
                api.patch(&name, &pp, &Patch::Apply(&value)).await?;
            }
            other => bail!("not a traffic kind this check applies: {other:?}"),
        }
        say!("e2e: applied {} {ns}/{name}", value["kind"]);
    }
    Ok(())
}

/// The `Accepted` condition of the object's current generation: (status, reason, message).
async fn verdict<K>(api: &Api<K>, name: &str) -> Result<Option<(String, String, String)>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object = serde_json::to_value(api.get(name).await?)?;
    let generation = &object["metadata"]["generation"];
    let conditions = object["status"]["conditions"].as_array().cloned();
    // The condition's observedGeneration, else the status's.
    let current = |c: &serde_json::Value| match &c["observedGeneration"] {
        serde_json::Value::Null => &object["status"]["observedGeneration"] == generation,
        observed => observed == generation,
    };
    Ok(conditions
        .unwrap_or_default()
        .iter()
        .find(|c| c["type"] == "Accepted" && current(c))
        .map(|c| {
            let text = |f: &str| c[f].as_str().unwrap_or_default().to_string();
            (text("status"), text("reason"), text("message"))
        }))
}

/// Waits for the current generation's `Accepted=<want>`; the last verdict seen names why not.
async fn wait_verdict<K>(api: &Api<K>, name: &str, want: &str) -> Result<(String, String)>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    // A VirtualService judged before its DestinationRule arrived may be False for a moment.
    eventually(&format!("{name} Accepted={want}"), || async {
        match verdict(api, name).await? {
            Some((status, reason, message)) if status == want => Ok(Some((reason, message))),
            Some((status, _, message)) => bail!("Accepted={status}: {message}"),
            None => Ok(None),
        }
    })
    .await
}

/// A bash HTTP GET of `$2` from `$1:80` (Host `split`); the answer's body in `$body`.
const GET_SPLIT: &str = r#"get() { body=""; exec 3<>"/dev/tcp/$1/80" || return 1; printf 'GET %s HTTP/1.1\r\nHost: split\r\nConnection: close\r\n\r\n' "$2" >&3; r=$(timeout 5 cat <&3); exec 3<&-; case "$r" in "HTTP/1.1 200"*) body=${r##*$'\n'}; return 0;; esac; return 1; }
"#;

pub(super) async fn check_split(client: &Client, run: &Run, image: &str) -> Result<()> {
    let ns = &run.namespace;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    for version in ["v1", "v2"] {
        let hcm = ECHO_HCM.replace(
            "\"inline_string\": \"echo\"",
            &format!("\"inline_string\": \"{version}\""),
        );
        anyhow::ensure!(
            hcm.contains(version),
            "the echo app's body is not {version}"
        );
        let config = ECHO_ENVOY.replace("HCM", &hcm);
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": format!("split-{version}")},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "split", "version": version}},
                "template": {
                    "metadata": {"labels": {"app": "split", "version": version}},
                    "spec": {"containers": [{
                        "name": "app", "image": image,
                        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
                        "command": ["envoy", "--disable-hot-restart", "-l", "warning", "--config-yaml", config]
                    }]}
                }
            }
        }))?;
        deployments
            .create(&PostParams::default(), &deployment)
            .await?;
    }
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "split"},
        "spec": {"selector": {"app": "split"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }))?;
    let vip = services
        .create(&PostParams::default(), &service)
        .await?
        .spec
        .and_then(|s| s.cluster_ip)
        .context("the split Service has no clusterIP")?;

    apply(client, ns, &traffic(ns)).await?;
    let rules: Api<meshd_api::networking::DestinationRule> = Api::namespaced(client.clone(), ns);
    let routes: Api<meshd_api::networking::VirtualService> = Api::namespaced(client.clone(), ns);
    wait_verdict(&rules, "split", "True").await?;
    wait_verdict(&routes, "split", "True").await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually("both split pods Ready", || async {
        let list = pods
            .list(&ListParams::default().labels("app=split"))
            .await?;
        let ready = list
            .items
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        Ok((ready == 2).then_some(()))
    })
    .await?;
    say!(
        "e2e: split-v1 and split-v2 ready behind Service VIP {vip}; VirtualService split 80/20 accepted"
    );

    // The caller waits until the VirtualService is in force (/v2-only answers v2) and v1 answers,
    // then counts.
    let script = format!(
        "{GET_SPLIT}v1=0; v2=0; other=0; ready=0
for i in $(seq 1 90); do get {vip} /v2-only && [ \"$body\" = v2 ] && get {vip} / && [ \"$body\" = v1 ] && {{ ready=1; break; }}; sleep 2; done
[ $ready = 1 ] || {{ echo 'the VirtualService never in force'; exit 2; }}
for i in $(seq 1 {REQUESTS}); do if get {vip} /; then case \"$body\" in v1) v1=$((v1+1));; v2) v2=$((v2+1));; *) other=$((other+1));; esac; else other=$((other+1)); fi; done
echo \"split: v1=$v1 v2=$v2 other=$other\""
    );
    let caller: Pod = serde_json::from_value(json!({
        "metadata": {"name": "split-caller", "labels": {"app": "split-caller"}},
        "spec": {"restartPolicy": "Never",
                 "containers": [{"name": "app", "image": image,
                                 "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
                                 "command": ["bash", "-c", script]}]}
    }))?;
    pods.create(&PostParams::default(), &caller).await?;
    let phase = eventually_within(
        Duration::from_secs(300),
        "split-caller finished",
        || async {
            let p = pods.get("split-caller").await?;
            let phase = p.status.and_then(|s| s.phase).unwrap_or_default();
            Ok(matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase))
        },
    )
    .await?;
    let logs = pods
        .logs(
            "split-caller",
            &LogParams {
                container: Some("app".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| format!("(no logs: {e})"));
    say!("e2e: split-caller: {phase}\n{logs}");
    let (v1, v2, other) = counts(&logs).with_context(|| format!("split-caller: {logs}"))?;
    if phase != "Succeeded" || other != 0 || v1 + v2 != REQUESTS || !V2_RANGE.contains(&v2) {
        bail!(
            "the 80/20 split: v1={v1} v2={v2} other={other} of {REQUESTS} (v2 expected in {V2_RANGE:?})"
        );
    }

    // A bad update: refused, naming the field and value (the accepted version stays in force).
    apply(client, ns, &bad_update(ns)).await?;
    let (reason, message) = wait_verdict(&routes, "split", "False").await?;
    say!("e2e: VirtualService split update: Accepted=False {reason}: {message}");
    if !message.contains("spec.http[0].route[0].destination.subset") || !message.contains("\"v3\"")
    {
        bail!("the verdict does not name the field path and value: {reason}: {message}");
    }
    Ok(())
}

/// `split: v1=N v2=N other=N` of the caller's log.
fn counts(logs: &str) -> Option<(u32, u32, u32)> {
    let line = logs.lines().rev().find(|l| l.starts_with("split: "))?;
    let value = |key: &str| -> Option<u32> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))?
            .parse()
            .ok()
    };
    Some((value("v1=")?, value("v2=")?, value("other=")?))
}
