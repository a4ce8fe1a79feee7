//! App probes under the mesh: HTTP, TCP and gRPC probes become `httpGet :15020 /app-health/<c>/<kind>`
//! answered by the agent, which runs the original (handed over as JSON in `MESHD_APP_PROBES`). The kubelet
//! then never talks to the app port directly, so probes keep working under STRICT mTLS. Exec probes run
//! inside the container and are left alone.
//!
//! postStart/preStop hooks with `httpGet` or `tcpSocket` go the same way, as
//! `/app-health/<c>/<poststart|prestop>`; a hook has no timeout of its own, so the original carries the
//! pod's termination grace period as `timeoutSeconds`. Exec and sleep hooks are left alone.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use meshd_api::names;

/// Which of a container's probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    pub const ALL: [Self; 3] = [Self::Liveness, Self::Readiness, Self::Startup];

    /// The container field, as in the pod's JSON.
    pub fn field(self) -> &'static str {
        match self {
            Self::Liveness => "livenessProbe",
            Self::Readiness => "readinessProbe",
            Self::Startup => "startupProbe",
        }
    }

    /// The last path segment on the agent.
    pub fn path_segment(self) -> &'static str {
        match self {
            Self::Liveness => "livez",
            Self::Readiness => "readyz",
            Self::Startup => "startupz",
        }
    }

    fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            Self::Liveness => c.liveness_probe.as_ref(),
            Self::Readiness => c.readiness_probe.as_ref(),
            Self::Startup => c.startup_probe.as_ref(),
        }
    }
}

/// Which of a container's lifecycle hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HookKind {
    PostStart,
    PreStop,
}

impl HookKind {
    pub const ALL: [Self; 2] = [Self::PostStart, Self::PreStop];

    /// The field under the container's `lifecycle`.
    pub fn field(self) -> &'static str {
        match self {
            Self::PostStart => "postStart",
            Self::PreStop => "preStop",
        }
    }

    /// The last path segment on the agent, and the kind in `MESHD_APP_PROBES`' keys.
    pub fn path_segment(self) -> &'static str {
        match self {
            Self::PostStart => "poststart",
            Self::PreStop => "prestop",
        }
    }

    fn of(self, c: &Container) -> Option<&LifecycleHandler> {
        let lifecycle = c.lifecycle.as_ref()?;
        match self {
            Self::PostStart => lifecycle.post_start.as_ref(),
            Self::PreStop => lifecycle.pre_stop.as_ref(),
        }
    }
}

/// One hook to replace in the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct HookRewrite {
    pub container_index: usize,
    pub kind: HookKind,
    pub handler: LifecycleHandler,
}

/// One probe to replace in the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRewrite {
    pub container_index: usize,
    pub kind: ProbeKind,
    pub probe: Probe,
}

/// The rewrites, the agent's JSON (`"<container>/<kind>" → original probe`), and warnings for probes that
/// had to stay as they were.
#[derive(Debug, Default)]
pub struct ProbePlan {
    pub rewrites: Vec<ProbeRewrite>,
    pub hook_rewrites: Vec<HookRewrite>,
    pub originals: BTreeMap<String, Probe>,
    pub warnings: Vec<String>,
}

fn agent_get(container: &str, segment: &str) -> HTTPGetAction {
    HTTPGetAction {
        path: Some(format!("/app-health/{container}/{segment}")),
        port: IntOrString::Int(i32::from(names::PORT_AGENT)),
        scheme: Some("HTTP".into()),
        host: None,
        http_headers: None,
    }
}

/// The probes and hooks of the app containers; `grace_seconds` is the pod's
/// `terminationGracePeriodSeconds` (30 when unset), the hooks' timeout.
pub fn plan_probes(containers: &[Container], grace_seconds: i64) -> ProbePlan {
    let mut plan = ProbePlan::default();
    for (index, c) in containers.iter().enumerate() {
        for kind in ProbeKind::ALL {
            let Some(probe) = kind.of(c) else { continue };
            if probe.http_get.is_none() && probe.tcp_socket.is_none() && probe.grpc.is_none() {
                continue; // exec, or no handler at all
            }
            let original = match resolve_ports(probe, c) {
                Ok(p) => p,
                Err(port) => {
                    plan.warnings.push(format!(
                        "container {:?} {}: port {port:?} is not a named port of the container; the probe was left as it is",
                        c.name,
                        kind.field()
                    ));
                    continue;
                }
            };
            let rewritten = Probe {
                http_get: Some(agent_get(&c.name, kind.path_segment())),
                exec: None,
                tcp_socket: None,
                grpc: None,
                ..probe.clone()
            };
            plan.originals
                .insert(format!("{}/{}", c.name, kind.path_segment()), original);
            plan.rewrites.push(ProbeRewrite {
                container_index: index,
                kind,
                probe: rewritten,
            });
        }
    }
    plan_hooks(containers, grace_seconds, &mut plan);
    plan
}

fn plan_hooks(containers: &[Container], grace_seconds: i64, plan: &mut ProbePlan) {
    // Kubernetes' probe timeout is an int32 of at least 1.
    let timeout = i32::try_from(grace_seconds.max(1)).unwrap_or(i32::MAX);
    for (index, c) in containers.iter().enumerate() {
        for kind in HookKind::ALL {
            let Some(hook) = kind.of(c) else { continue };
            if hook.http_get.is_none() && hook.tcp_socket.is_none() {
                continue; // exec, sleep, or no handler at all
            }
            let as_probe = Probe {
                http_get: hook.http_get.clone(),
                tcp_socket: hook.tcp_socket.clone(),
                timeout_seconds: Some(timeout),
                ..Probe::default()
            };
            let original = match resolve_ports(&as_probe, c) {
                Ok(p) => p,
                Err(port) => {
                    plan.warnings.push(format!(
                        "container {:?} lifecycle.{}: port {port:?} is not a named port of the container; the hook was left as it is",
                        c.name,
                        kind.field()
                    ));
                    continue;
                }
            };
            plan.originals
                .insert(format!("{}/{}", c.name, kind.path_segment()), original);
            plan.hook_rewrites.push(HookRewrite {
                container_index: index,
                kind,
                handler: LifecycleHandler {
                    http_get: Some(agent_get(&c.name, kind.path_segment())),
                    exec: None,
                    sleep: None,
                    tcp_socket: None,
                },
            });
        }
    }
}

/// The probe with named ports turned into numbers; the unresolvable name as the error.
fn resolve_ports(probe: &Probe, c: &Container) -> Result<Probe, String> {
    let resolve = |port: &IntOrString| -> Result<IntOrString, String> {
        match port {
            IntOrString::Int(n) => Ok(IntOrString::Int(*n)),
            IntOrString::String(name) => c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| IntOrString::Int(p.container_port))
                .ok_or_else(|| name.clone()),
        }
    };
    let mut p = probe.clone();
    if let Some(h) = p.http_get.as_mut() {
        h.port = resolve(&h.port)?;
    }
    if let Some(t) = p.tcp_socket.as_mut() {
        t.port = resolve(&t.port)?;
    }
    Ok(p)
}
