//! `meshd check-inject [POD] [-n NS] [-l K=V]`: would the pod (or a new pod in the namespace) be
//! injected, by which webhook and Mesh, and why not — like `istioctl x check-inject`. It reads the live
//! MutatingWebhookConfigurations (every one, not only meshd's), the namespace and the pod, and runs
//! `meshd_inject::check` on them: the API server's selection, then the webhook handler's own decision.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use kube::api::{Api, ListParams};
use meshd_inject::check::{CheckOutcome, InjectionCheck, check_injection};

use crate::cmd::kube_client::{self, explain};
use crate::cmd::table::columns;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Without POD, the check is for a new pod with no labels (or the -l labels) in the namespace.\n\
RBAC: get namespaces, get pods in the namespace, list mutatingwebhookconfigurations (see README).\n\
\n\
Exit status: 0 when the pod would be injected (or already carries meshd's sidecar); 1 when it would\n\
not, or when the check could not be made; 64 on bad flags.")]
pub struct Args {
    /// The pod to check; without it, a new pod in --namespace.
    #[arg(value_name = "POD", required_unless_present = "namespace")]
    pod: Option<String>,
    /// The namespace; the kubeconfig context's namespace when unset.
    #[arg(short = 'n', long, env = "MESHD_NAMESPACE")]
    namespace: Option<String>,
    /// Labels of the pod to test, `K=V`; repeat or comma-separate. With POD, they replace its labels of
    /// the same keys.
    #[arg(short = 'l', long = "labels", env = "MESHD_LABELS", value_name = "K=V", value_delimiter = ',', value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Kubeconfig file; the default kubeconfig (or in-cluster config) when unset.
    #[arg(long, env = "MESHD_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not a label K=V")),
    }
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let (pod, namespace, configurations) = runtime.block_on(fetch(&args))?;
    let check = check_injection(&pod, &namespace, &configurations);
    print!("{}", render(&args, &pod, &namespace, &check));
    Ok(if check.outcome.in_mesh() { 0 } else { 1 })
}

async fn fetch(args: &Args) -> anyhow::Result<(Pod, Namespace, Vec<MutatingWebhookConfiguration>)> {
    let client = kube_client::client(args.kubeconfig.as_deref()).await?;
    let ns = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let namespace = Api::<Namespace>::all(client.clone())
        .get_opt(&ns)
        .await
        .map_err(|e| {
            anyhow::anyhow!(explain(
                &e,
                &format!("reading namespace {ns}"),
                "get namespaces"
            ))
        })?
        .ok_or_else(|| anyhow::anyhow!("namespace {ns} not found"))?;
    let mut pod = match &args.pod {
        Some(name) => Api::<Pod>::namespaced(client.clone(), &ns)
            .get_opt(name)
            .await
            .map_err(|e| {
                anyhow::anyhow!(explain(&e, &format!("reading pod {ns}/{name}"), "get pods"))
            })?
            .ok_or_else(|| anyhow::anyhow!("pod {ns}/{name} not found"))?,
        None => new_pod(),
    };
    pod.metadata.namespace = Some(ns.clone());
    if !args.labels.is_empty() {
        pod.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .extend(args.labels.iter().cloned());
    }
    let configurations = Api::<MutatingWebhookConfiguration>::all(client)
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            anyhow::anyhow!(explain(
                &e,
                "listing MutatingWebhookConfigurations",
                "list mutatingwebhookconfigurations.admissionregistration.k8s.io"
            ))
        })?
        .items;
    Ok((pod, namespace, configurations))
}

/// A pod as a Deployment would create it: one container, no labels, no annotations.
fn new_pod() -> Pod {
    Pod {
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("app".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn label_list(labels: Option<&BTreeMap<String, String>>) -> String {
    match labels {
        Some(l) if !l.is_empty() => l
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "(none)".into(),
    }
}

fn render(args: &Args, pod: &Pod, namespace: &Namespace, check: &InjectionCheck) -> String {
    let ns = namespace.metadata.name.as_deref().unwrap_or_default();
    let subject = match &args.pod {
        Some(name) => format!("Pod {ns}/{name}"),
        None => format!("A new pod in namespace {ns}"),
    };
    let mut out = format!(
        "{subject}, labels: {}\nNamespace {ns}, labels: {}\n\n",
        label_list(pod.metadata.labels.as_ref()),
        label_list(namespace.metadata.labels.as_ref())
    );
    if check.webhooks.is_empty() {
        out.push_str("No MutatingWebhookConfiguration exists.\n");
    } else {
        let mut rows = vec![
            ["CONFIGURATION", "WEBHOOK", "MESH", "CALLED", "WHY NOT"]
                .map(String::from)
                .to_vec(),
        ];
        for w in &check.webhooks {
            let (called, why) = match &w.called {
                Ok(()) if w.unevaluated_conditions > 0 => (
                    "yes".to_string(),
                    format!(
                        "(its {} matchConditions are not evaluated: assumed to hold)",
                        w.unevaluated_conditions
                    ),
                ),
                Ok(()) => ("yes".into(), String::new()),
                Err(e) => ("no".into(), e.to_string()),
            };
            rows.push(vec![
                w.configuration.clone(),
                w.webhook.clone(),
                w.mesh.clone().unwrap_or_else(|| "-".into()),
                called,
                why,
            ]);
        }
        out.push_str(&columns(&rows));
    }
    out.push('\n');
    for w in &check.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    let see = if check.warnings.is_empty() {
        ""
    } else {
        " (see the warning above)"
    };
    out.push_str(&match &check.outcome {
        CheckOutcome::Injected {
            configuration,
            webhook,
            mesh,
        } => format!(
            "Injected: yes, by webhook {webhook} (MutatingWebhookConfiguration {configuration}) of Mesh {mesh}{see}\n"
        ),
        CheckOutcome::AlreadyInjected { mesh } => format!(
            "Injected: yes, already (annotation meshd.io/status or meshd's containers){}\n",
            mesh.as_ref()
                .map(|m| format!(", Mesh {m}"))
                .unwrap_or_default()
        ),
        CheckOutcome::Skipped {
            webhook, mesh, why, ..
        } => format!(
            "Injected: no: webhook {webhook} of Mesh {mesh} is called, and it lets the pod through without a sidecar: {why}\n"
        ),
        CheckOutcome::Refused { webhook, mesh, why } => format!(
            "Injected: no: webhook {webhook} of Mesh {mesh} is called, and it refuses the pod: {why}\n"
        ),
        CheckOutcome::NotSelected { why } => format!("Injected: no: {why}\n"),
    });
    out
}
