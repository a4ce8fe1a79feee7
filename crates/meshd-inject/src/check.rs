//! Would this pod be injected, by which webhook and Mesh, and why not (`meshd check-inject`, like
//! `istioctl x check-inject`)? The API server's half (every MutatingWebhookConfiguration's rules and
//! selectors, called in configuration-name order) is [`selection`](crate::selection); the handler's half
//! is [`decide`], the webhook's own decision, run on the pod as it would arrive.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use meshd_api::{MeshSpec, names};

use crate::decision::{SkipReason, describe_skip};
use crate::plan::{Verdict, decide};
use crate::selection::{NotCalled, webhook_called};
use crate::settings::{InjectionSettings, RequestFacts};

/// The label the API server puts on every namespace; meshd's namespaceSelectors exclude system
/// namespaces by it.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// One webhook of one configuration, and whether the API server would call it for the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookVerdict {
    pub configuration: String,
    pub webhook: String,
    /// The Mesh of a meshd webhook (its configuration's `meshd.io/owned-by-mesh`); `None` for others.
    pub mesh: Option<String>,
    pub called: Result<(), NotCalled>,
    /// `matchConditions` are CEL, not evaluated here: the verdict assumes they hold.
    pub unevaluated_conditions: usize,
}

/// What would happen to the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    Injected {
        configuration: String,
        webhook: String,
        mesh: String,
    },
    /// The pod carries `meshd.io/status` or meshd's containers already.
    AlreadyInjected { mesh: Option<String> },
    /// A meshd webhook is called, and its handler lets the pod through without a sidecar.
    Skipped {
        webhook: String,
        mesh: String,
        reason: SkipReason,
        why: String,
    },
    /// A meshd webhook is called, and its handler refuses the pod (`allowed: false`).
    Refused {
        webhook: String,
        mesh: String,
        why: String,
    },
    /// No meshd webhook is called for the pod.
    NotSelected { why: String },
}

impl CheckOutcome {
    /// The pod has, or would get, meshd's sidecar.
    pub fn in_mesh(&self) -> bool {
        matches!(self, Self::Injected { .. } | Self::AlreadyInjected { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectionCheck {
    /// Every webhook of every configuration, in the order the API server calls them.
    pub webhooks: Vec<WebhookVerdict>,
    pub outcome: CheckOutcome,
    /// Other webhooks that also mutate the pod, and two meshd webhooks selecting one pod.
    pub warnings: Vec<String>,
}

/// The check for `pod` (as it would be created: its namespace set) in `namespace`.
pub fn check_injection(
    pod: &Pod,
    namespace: &Namespace,
    configurations: &[MutatingWebhookConfiguration],
) -> InjectionCheck {
    let ns_name = namespace.metadata.name.clone().unwrap_or_default();
    let mut ns_labels = namespace.metadata.labels.clone().unwrap_or_default();
    ns_labels
        .entry(NAMESPACE_NAME_LABEL.into())
        .or_insert_with(|| ns_name.clone());
    let pod_labels = pod.metadata.labels.clone().unwrap_or_default();
    let (ns_labels, pod_labels) = (&ns_labels, &pod_labels);
    let mut ordered: Vec<&MutatingWebhookConfiguration> = configurations.iter().collect();
    ordered.sort_by_key(|c| c.metadata.name.clone().unwrap_or_default());
    let webhooks: Vec<WebhookVerdict> = ordered
        .iter()
        .flat_map(|c| {
            let configuration = c.metadata.name.clone().unwrap_or_default();
            let mesh = meshd_mesh(c);
            c.webhooks.iter().flatten().map(move |w| WebhookVerdict {
                configuration: configuration.clone(),
                webhook: w.name.clone(),
                mesh: mesh.clone(),
                called: webhook_called(w, ns_labels, pod_labels),
                unevaluated_conditions: w.match_conditions.as_ref().map_or(0, Vec::len),
            })
        })
        .collect();
    let called: Vec<&WebhookVerdict> = webhooks.iter().filter(|w| w.called.is_ok()).collect();
    let meshd_called: Vec<&WebhookVerdict> = called
        .iter()
        .copied()
        .filter(|w| w.mesh.is_some())
        .collect();
    let first = meshd_called.first().copied();
    let mut warnings = Vec::new();
    if let [winner, rest @ ..] = meshd_called.as_slice()
        && !rest.is_empty()
    {
        warnings.push(format!(
            "{} meshd webhooks select this pod; the first called, {}, injects it and the others then find it injected",
            meshd_called.len(),
            describe(winner)
        ));
    }
    for other in called.iter().filter(|w| w.mesh.is_none()) {
        let order = match first {
            Some(m) if other.configuration < m.configuration => format!(
                "; it is called before meshd's {} (configurations are called in name order): if it adds another mesh's proxy, meshd's handler then leaves the pod alone",
                m.configuration
            ),
            Some(m) => format!(
                "; it is called after meshd's {} (configurations are called in name order): if it adds another mesh's proxy, the pod ends up with two",
                m.configuration
            ),
            None => String::new(),
        };
        warnings.push(format!(
            "{} is not meshd's and also mutates this pod{order}",
            describe(other)
        ));
    }
    let outcome = outcome(pod, &ns_name, first, configurations);
    InjectionCheck {
        webhooks,
        outcome,
        warnings,
    }
}

fn describe(w: &WebhookVerdict) -> String {
    format!(
        "webhook {} (MutatingWebhookConfiguration {})",
        w.webhook, w.configuration
    )
}

/// The Mesh a configuration belongs to, when meshd's operator wrote it.
fn meshd_mesh(c: &MutatingWebhookConfiguration) -> Option<String> {
    let labels = c.metadata.labels.as_ref()?;
    if labels.get(names::LABEL_MANAGED_BY).map(String::as_str) != Some("meshd") {
        return None;
    }
    labels.get(names::LABEL_OWNED_BY_MESH).cloned()
}

fn outcome(
    pod: &Pod,
    namespace: &str,
    first: Option<&WebhookVerdict>,
    configurations: &[MutatingWebhookConfiguration],
) -> CheckOutcome {
    let mesh = first
        .and_then(|w| w.mesh.clone())
        .unwrap_or_else(|| names::DEFAULT_MESH.into());
    let settings = InjectionSettings::new(mesh.clone(), MeshSpec::default());
    let facts = RequestFacts {
        namespace: namespace.into(),
        dry_run: true,
        server_version: None,
    };
    let verdict = decide(pod, &settings, &facts);
    if verdict == Verdict::Skip(SkipReason::AlreadyInjected) {
        return CheckOutcome::AlreadyInjected {
            mesh: injected_mesh(pod),
        };
    }
    let Some(first) = first else {
        return CheckOutcome::NotSelected {
            why: not_selected(namespace, configurations),
        };
    };
    let webhook = first.webhook.clone();
    match verdict {
        Verdict::Inject(_) => CheckOutcome::Injected {
            configuration: first.configuration.clone(),
            webhook,
            mesh,
        },
        Verdict::Skip(reason) => CheckOutcome::Skipped {
            webhook,
            mesh,
            reason,
            why: describe_skip(pod, reason),
        },
        Verdict::Refuse(refusal) => CheckOutcome::Refused {
            webhook,
            mesh,
            why: refusal.to_string(),
        },
        Verdict::Invalid(why) => CheckOutcome::Refused { webhook, mesh, why },
    }
}

fn not_selected(namespace: &str, configurations: &[MutatingWebhookConfiguration]) -> String {
    if names::NEVER_INJECT_NAMESPACES.contains(&namespace) {
        return format!("{namespace} is a system namespace: meshd never injects there");
    }
    if !configurations.iter().any(|c| meshd_mesh(c).is_some()) {
        return "no MutatingWebhookConfiguration of meshd exists (the operator writes one per Mesh: is a Mesh applied?)".into();
    }
    format!(
        "no meshd webhook selects the pod; to opt in, label namespace {namespace} {}=enabled (Mesh {}) or {}=<mesh>, \
         or in a namespace without those labels, the pod {}: \"true\"",
        names::LABEL_INJECT,
        names::DEFAULT_MESH,
        names::LABEL_MESH,
        names::LABEL_INJECT
    )
}

/// The Mesh of an injected pod: its `meshd.io/mesh` label, else the status annotation's `mesh`.
fn injected_mesh(pod: &Pod) -> Option<String> {
    let labels: BTreeMap<String, String> = pod.metadata.labels.clone().unwrap_or_default();
    labels.get(names::LABEL_MESH).cloned().or_else(|| {
        let status = pod
            .metadata
            .annotations
            .as_ref()?
            .get(names::ANNOTATION_STATUS)?;
        let v: serde_json::Value = serde_json::from_str(status).ok()?;
        v.get("mesh")?.as_str().map(String::from)
    })
}
