//! App probes under the mesh: HTTP, TCP and gRPC probes become `httpGet :15020 /app-health/<c>/<kind>`
//! answered by the agent, which runs the original (handed over as JSON in `MESHD_APP_PROBES`). The kubelet
//! then never talks to the app port directly, so probes keep working under STRICT mTLS. Exec probes run
//! inside the container and are left alone.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
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
    pub originals: BTreeMap<String, Probe>,
    pub warnings: Vec<String>,
}

pub fn plan_probes(containers: &[Container]) -> ProbePlan {
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
                http_get: Some(HTTPGetAction {
                    path: Some(format!("/app-health/{}/{}", c.name, kind.path_segment())),
                    port: IntOrString::Int(i32::from(names::PORT_AGENT)),
                    scheme: Some("HTTP".into()),
                    host: None,
                    http_headers: None,
                }),
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
    plan
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
