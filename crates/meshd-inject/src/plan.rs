//! The decision for one pod: skip it, refuse it, or an [`InjectionPlan`] of what to add.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use meshd_api::mesh::{CaptureMode, NativeSidecar};
use meshd_api::names;
use meshd_api::values::{IncludeCidrs, IncludePorts, parse_include_cidrs, parse_resource_quantity};
use serde::Serialize;

use crate::decision::{SkipReason, port_conflicts, skip_reason};
use crate::overrides::{BadAnnotation, PodOverrides, Refusal, parse_overrides};
use crate::probes::{HookRewrite, ProbePlan, ProbeRewrite, plan_probes};
use crate::settings::{ApiServerVersion, InjectionSettings, RequestFacts};
use crate::sidecar::{self, CaptureArgs, SidecarSettings};

/// Kubernetes' default `terminationGracePeriodSeconds`: the hooks' timeout when the pod sets none.
const DEFAULT_TERMINATION_GRACE_SECONDS: i64 = 30;

/// What injection decided for a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Inject(Box<InjectionPlan>),
    Skip(SkipReason),
    Refuse(Refusal),
    /// The object is not a pod that can be injected (no spec, no containers).
    Invalid(String),
}

/// Everything injection adds to one pod, and what the pod as sent already has (so that the patch creates
/// a parent map or array only when it is missing).
#[derive(Debug, Clone, PartialEq)]
pub struct InjectionPlan {
    pub native_sidecar: bool,
    /// `meshd-init`; absent when the Mesh's capture mode is `none`.
    pub init_container: Option<Container>,
    pub proxy_container: Container,
    pub volumes: Vec<Volume>,
    pub probe_rewrites: Vec<ProbeRewrite>,
    /// postStart/preStop hooks routed through the agent.
    pub hook_rewrites: Vec<HookRewrite>,
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Said to the API client as admission warnings (probes left unrewritten).
    pub warnings: Vec<String>,
    pub(crate) pod_has: PodHas,
}

/// Which parents exist (and are not null) in the pod as sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PodHas {
    /// `metadata` with at least one known field: absent, null and `{}` all read as empty, and the patch
    /// then adds the whole of `/metadata`, which applies to each of them.
    pub metadata: bool,
    pub annotations: bool,
    pub labels: bool,
    pub init_containers: bool,
    pub volumes: bool,
}

/// The `meshd.io/status` record: what was added, so that injection can be recognised and undone.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InjectionStatus<'a> {
    init_containers: Vec<&'a str>,
    containers: Vec<&'a str>,
    volumes: Vec<&'a str>,
    mesh: &'a str,
    proxy_image: &'a str,
}

/// Decides for one pod. Pure: the same inputs always give the same verdict.
pub fn decide(pod: &Pod, settings: &InjectionSettings, facts: &RequestFacts) -> Verdict {
    let namespace = pod
        .metadata
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(&facts.namespace);
    if let Some(reason) = skip_reason(pod, namespace) {
        return Verdict::Skip(reason);
    }
    let Some(spec) = pod.spec.as_ref() else {
        return Verdict::Invalid("spec: the pod has no spec".into());
    };
    if spec.containers.is_empty() {
        return Verdict::Invalid("spec.containers: the pod has no containers".into());
    }
    // Every problem in one answer: the annotations, then the ports the proxy needs.
    let conflicts = port_conflicts(pod);
    let refuse = |mut refusal: Refusal| {
        refusal.conflicts = conflicts.clone();
        Verdict::Refuse(refusal)
    };
    let overrides = match parse_overrides(pod.metadata.annotations.as_ref()) {
        Ok(o) => o,
        Err(refusal) => return refuse(refusal),
    };
    let sidecar = match sidecar_settings(settings, facts.server_version, &overrides) {
        Ok(s) => s,
        Err(refusal) => return refuse(refusal),
    };
    if !conflicts.is_empty() {
        return refuse(Refusal::default());
    }
    let containers = &spec.containers;
    let probes = if overrides.rewrite_app_probes.unwrap_or(true) {
        plan_probes(
            containers,
            spec.termination_grace_period_seconds
                .unwrap_or(DEFAULT_TERMINATION_GRACE_SECONDS),
        )
    } else {
        ProbePlan::default()
    };
    let app_probes = (!probes.originals.is_empty()).then(|| {
        serde_json::to_string(&probes.originals).expect("probes are plain data and serialize")
    });
    let init_container = sidecar
        .capture
        .as_ref()
        .map(|c| sidecar::init_container(&sidecar, c));
    let proxy_container = sidecar::proxy_container(
        &sidecar,
        app_probes,
        pod.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
    );
    let volumes = sidecar::volumes();

    let mut init_names: Vec<&str> = init_container.iter().map(|c| c.name.as_str()).collect();
    let mut container_names = Vec::new();
    if sidecar.native {
        init_names.push(names::PROXY_CONTAINER);
    } else {
        container_names.push(names::PROXY_CONTAINER);
    }
    let status = InjectionStatus {
        init_containers: init_names,
        containers: container_names,
        volumes: volumes.iter().map(|v| v.name.as_str()).collect(),
        mesh: &settings.mesh,
        proxy_image: &sidecar.image,
    };
    let mut annotations = BTreeMap::new();
    annotations.insert(
        names::ANNOTATION_STATUS.to_string(),
        serde_json::to_string(&status).expect("the status record is plain data and serializes"),
    );
    let pod_annotations = pod.metadata.annotations.as_ref();
    if !pod_annotations.is_some_and(|a| a.contains_key(names::ANNOTATION_DEFAULT_CONTAINER))
        && let Some(first) = containers.first()
    {
        annotations.insert(
            names::ANNOTATION_DEFAULT_CONTAINER.to_string(),
            first.name.clone(),
        );
    }
    let labels = BTreeMap::from([(names::LABEL_MESH.to_string(), settings.mesh.clone())]);
    let pod_has = PodHas {
        metadata: pod.metadata != ObjectMeta::default(),
        annotations: pod_annotations.is_some(),
        labels: pod.metadata.labels.is_some(),
        init_containers: spec.init_containers.is_some(),
        volumes: spec.volumes.is_some(),
    };
    Verdict::Inject(Box::new(InjectionPlan {
        native_sidecar: sidecar.native,
        init_container,
        proxy_container,
        volumes,
        probe_rewrites: probes.rewrites,
        hook_rewrites: probes.hook_rewrites,
        annotations,
        labels,
        warnings: probes.warnings,
        pod_has,
    }))
}

/// Mesh settings with the pod's overrides applied.
fn sidecar_settings(
    settings: &InjectionSettings,
    version: Option<ApiServerVersion>,
    o: &PodOverrides,
) -> Result<SidecarSettings, Refusal> {
    let spec = &settings.spec;
    let native = o
        .native_sidecar
        .unwrap_or(match spec.injection.native_sidecar {
            NativeSidecar::True => true,
            NativeSidecar::False => false,
            NativeSidecar::Auto => version.is_none_or(|v| v >= ApiServerVersion::NATIVE_SIDECARS),
        });
    let capture_spec = &spec.traffic_capture;
    let capture = match o.capture_mode.unwrap_or(capture_spec.mode) {
        CaptureMode::None => None,
        mode => Some(CaptureArgs {
            mode: mode.as_str(),
            // The Mesh has no include lists of ports: all inbound, and outbound by CIDR only.
            include_inbound_ports: o.include_inbound_ports.clone().unwrap_or(IncludePorts::All),
            include_outbound_ports: o.include_outbound_ports.clone().unwrap_or_default(),
            exclude_inbound_ports: o
                .exclude_inbound_ports
                .clone()
                .unwrap_or_else(|| capture_spec.exclude_inbound_ports.clone()),
            exclude_outbound_ports: o
                .exclude_outbound_ports
                .clone()
                .unwrap_or_else(|| capture_spec.exclude_outbound_ports.clone()),
            exclude_outbound_cidrs: match &o.exclude_outbound_cidrs {
                Some(c) => c.iter().map(ToString::to_string).collect(),
                None => capture_spec.exclude_outbound_cidrs.clone(),
            },
            include_outbound_cidrs: match &o.include_outbound_cidrs {
                Some(c) => c.clone(),
                // The Mesh was validated when it was loaded; a list that still fails means "all", as the default.
                None => parse_include_cidrs(&capture_spec.include_outbound_cidrs.join(","))
                    .unwrap_or(IncludeCidrs::All),
            },
        }),
    };
    let resources = resources(&spec.proxy.resources, o)?;
    Ok(SidecarSettings {
        image: spec.proxy.image_or_default(),
        mesh: settings.mesh.clone(),
        uid: spec.proxy.uid,
        native,
        hold_application: o
            .hold_application
            .unwrap_or(spec.injection.hold_application_until_proxy_starts),
        resources,
        log_level: o.log_level.unwrap_or(spec.proxy.log_level).as_str(),
        concurrency: spec.proxy.concurrency,
        discovery_address: settings.discovery_address.clone(),
        trust_domain: spec.trust_domain.clone(),
        capture,
    })
}

/// The proxy's resources: the Mesh's, with the annotations on top. A request annotated above the Mesh's
/// limit raises that limit to the request, and a limit annotated below the Mesh's request lowers that
/// request to the limit (Istio and Linkerd users set one value and expect it to hold). Only what the
/// user wrote both of is refused: an annotated request above an annotated limit, which the API server
/// would refuse with a message that does not name the annotations.
fn resources(
    base: &ResourceRequirements,
    o: &PodOverrides,
) -> Result<ResourceRequirements, Refusal> {
    let mut r = base.clone();
    let mut bad = Vec::new();
    for (key, (request_name, request), (limit_name, limit)) in [
        (
            "cpu",
            (names::ANNOTATION_PROXY_CPU, &o.proxy_cpu),
            (names::ANNOTATION_PROXY_CPU_LIMIT, &o.proxy_cpu_limit),
        ),
        (
            "memory",
            (names::ANNOTATION_PROXY_MEMORY, &o.proxy_memory),
            (names::ANNOTATION_PROXY_MEMORY_LIMIT, &o.proxy_memory_limit),
        ),
    ] {
        let mesh = |m: &Option<BTreeMap<String, Quantity>>| {
            m.as_ref().and_then(|m| m.get(key)).map(|q| q.0.clone())
        };
        let want_request = request.clone().or_else(|| mesh(&base.requests));
        let want_limit = limit.clone().or_else(|| mesh(&base.limits));
        let (want_request, want_limit) = match (want_request, want_limit) {
            (Some(rq), Some(lm)) if above(&rq, &lm) => match (request.is_some(), limit.is_some()) {
                (true, true) => {
                    bad.push(BadAnnotation {
                        name: request_name.to_string(),
                        value: rq.clone(),
                        reason: format!("the request is above {limit_name}={lm:?}"),
                    });
                    continue;
                }
                (true, false) => (Some(rq.clone()), Some(rq)),
                (false, true) => (Some(lm.clone()), Some(lm)),
                // The Mesh's own values: not the pod's to fix.
                (false, false) => (Some(rq), Some(lm)),
            },
            other => other,
        };
        for (map, value) in [(&mut r.requests, want_request), (&mut r.limits, want_limit)] {
            if let Some(v) = value {
                map.get_or_insert_with(BTreeMap::new)
                    .insert(key.to_string(), Quantity(v));
            }
        }
    }
    if bad.is_empty() {
        Ok(r)
    } else {
        Err(Refusal {
            bad,
            ..Refusal::default()
        })
    }
}

/// Is `request` above `limit`? Quantities that do not parse (a Mesh written before validation) are
/// left for the API server to judge.
fn above(request: &str, limit: &str) -> bool {
    matches!(
        (parse_resource_quantity(request), parse_resource_quantity(limit)),
        (Ok(rq), Ok(lm)) if rq > lm
    )
}
