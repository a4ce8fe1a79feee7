//! Mesh status as a pure function of what the reconcile observed. Conditions keep their
//! lastTransitionTime while their status holds, so an unchanged Mesh yields an identical status (no write).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use meshd_api::mesh::{GatewayStatus, condition};
use meshd_api::security::MeshMtlsStatus;
use meshd_api::{Mesh, MeshStatus};

use crate::counts::Counts;

/// What one reconcile saw.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub gateways: Vec<GatewayStatus>,
    pub webhook_ready: bool,
    pub control_plane_ready: bool,
    pub connected_proxies: i64,
    pub injected_pods: i64,
    /// The mTLS mode in force and its overrides, as the control plane compiled them for the proxies
    /// (None: not known yet, or a Mesh this control plane does not serve).
    pub mtls: Option<MeshMtlsStatus>,
}

struct Cond {
    type_: &'static str,
    ok: bool,
    reason: &'static str,
    message: String,
}

fn merge(mesh: &Mesh, conds: Vec<Cond>) -> Vec<Condition> {
    let old = mesh
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    conds
        .into_iter()
        .map(|c| {
            let status = if c.ok { "True" } else { "False" }.to_string();
            let last_transition_time = old
                .iter()
                .find(|o| o.type_ == c.type_ && o.status == status)
                .map_or_else(
                    || Time(Timestamp::now()),
                    |o| o.last_transition_time.clone(),
                );
            Condition {
                type_: c.type_.into(),
                status,
                reason: c.reason.into(),
                message: c.message,
                last_transition_time,
                observed_generation: mesh.metadata.generation,
            }
        })
        .collect()
}

/// Status after a reconcile that applied the spec.
pub fn reconciled(mesh: &Mesh, seen: &Observed) -> MeshStatus {
    let (ready, desired) = seen.gateways.iter().fold((0, 0), |(r, d), g| {
        (r + g.ready_replicas, d + g.desired_replicas)
    });
    let lagging: Vec<String> = seen
        .gateways
        .iter()
        .filter(|g| g.ready_replicas < g.desired_replicas)
        .map(|g| {
            format!(
                "{}/{} {}/{} ready",
                g.namespace, g.name, g.ready_replicas, g.desired_replicas
            )
        })
        .collect();
    // A gateway replica is ready only once a Gateway selects it and its listeners serve (the agent's
    // readiness, SPEC §10), so ready replicas are the ones that serve.
    let gateways_ok = lagging.is_empty();
    let cp = Cond {
        type_: condition::CONTROL_PLANE_READY,
        ok: seen.control_plane_ready,
        reason: if seen.control_plane_ready {
            "Serving"
        } else {
            "NotServing"
        },
        message: if seen.control_plane_ready {
            "the xDS server is serving".into()
        } else {
            "the xDS server is not serving yet; check `kubectl -n meshd-system logs deploy/meshd`"
                .into()
        },
    };
    let wh = Cond {
        type_: condition::WEBHOOK_READY,
        ok: seen.webhook_ready,
        reason: if seen.webhook_ready {
            "Configured"
        } else {
            "NoCABundle"
        },
        message: if seen.webhook_ready {
            "MutatingWebhookConfiguration applied with its caBundle".into()
        } else {
            "the webhook configuration has no caBundle; check Secret meshd-system/meshd-webhook-tls"
                .into()
        },
    };
    let gw = Cond {
        type_: condition::GATEWAYS_READY,
        ok: gateways_ok,
        reason: if lagging.is_empty() {
            "AllReplicasReady"
        } else {
            "ReplicasNotReady"
        },
        message: if !lagging.is_empty() {
            format!(
                "waiting for gateway replicas: {}; a gateway replica is ready once a Gateway selects it \
                 and its listeners serve (see `kubectl get gateways -A` and `kubectl get pods -l meshd.io/gateway`)",
                lagging.join(", ")
            )
        } else {
            format!("{ready}/{desired} gateway replicas ready")
        },
    };
    let not_ready: Vec<&str> = [&cp, &wh, &gw]
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.type_)
        .collect();
    let all = Cond {
        type_: condition::READY,
        ok: not_ready.is_empty(),
        reason: if not_ready.is_empty() {
            "Reconciled"
        } else {
            "ComponentsNotReady"
        },
        message: if not_ready.is_empty() {
            "all owned objects applied and ready".into()
        } else {
            format!("not ready: {}", not_ready.join(", "))
        },
    };
    MeshStatus {
        observed_generation: mesh.metadata.generation,
        conditions: merge(mesh, vec![all, cp, wh, gw]),
        gateways: seen.gateways.clone(),
        gateway_replicas: Some(format!("{ready}/{desired}")),
        connected_proxies: seen.connected_proxies,
        injected_pods: seen.injected_pods,
        mtls: seen.mtls.clone(),
    }
}

/// Status of a Mesh whose spec was refused: every condition False with the field errors; the counts
/// still follow the cluster.
pub fn invalid(mesh: &Mesh, message: &str, counts: Counts) -> MeshStatus {
    let conds = [
        condition::READY,
        condition::CONTROL_PLANE_READY,
        condition::WEBHOOK_READY,
        condition::GATEWAYS_READY,
    ]
    .into_iter()
    .map(|t| Cond {
        type_: t,
        ok: false,
        reason: "InvalidSpec",
        message: format!("nothing applied: {message}"),
    })
    .collect();
    MeshStatus {
        observed_generation: mesh.metadata.generation,
        conditions: merge(mesh, conds),
        connected_proxies: counts.connected_proxies,
        injected_pods: counts.injected_pods,
        ..mesh.status.clone().unwrap_or_default()
    }
}

/// Status after a failed reconcile: Ready False with the error; the other conditions are kept.
pub fn failed(mesh: &Mesh, message: &str) -> MeshStatus {
    let mut status = mesh.status.clone().unwrap_or_default();
    let ready = merge(
        mesh,
        vec![Cond {
            type_: condition::READY,
            ok: false,
            reason: "ReconcileFailed",
            message: message.into(),
        }],
    );
    status.conditions.retain(|c| c.type_ != condition::READY);
    status.conditions.splice(0..0, ready);
    status
}
