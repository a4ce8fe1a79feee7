//! The containers and volumes injection adds, built to the injected-pod contract in docs/design.md.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, ExecAction, HTTPGetAction, Lifecycle, LifecycleHandler, ObjectFieldSelector,
    Probe, ProjectedVolumeSource, ResourceRequirements, SecurityContext,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use meshd_api::names;
use meshd_api::values::{IncludeCidrs, IncludePorts};

/// The proxy's postStart hold in classic mode: blocks until the agent reports Envoy ready, so the
/// kubelet starts the app containers only then (Istio's `pilot-agent wait`).
pub const POST_START_WAIT_COMMAND: [&str; 3] = ["meshd", "agent", "wait"];

pub const VOLUME_ENVOY_CONFIG: &str = "meshd-envoy";
pub const VOLUME_SDS: &str = "meshd-sds";
pub const VOLUME_TOKEN: &str = "meshd-token";
pub const VOLUME_CA_ROOT: &str = "meshd-ca-root";
const ENVOY_CONFIG_PATH: &str = "/etc/meshd/proxy";
const SDS_PATH: &str = "/var/run/meshd/sds";
const TOKEN_DIR: &str = "/var/run/secrets/tokens";
const TOKEN_FILE: &str = "meshd-token";
const CA_ROOT_PATH: &str = "/var/run/meshd/ca-root";
/// The key of ConfigMap `meshd-ca-root` holding the root bundle.
const CA_ROOT_KEY: &str = "root-cert.pem";
const TOKEN_EXPIRATION_SECONDS: i64 = 12 * 3600;
pub const ENV_APP_PROBES: &str = "MESHD_APP_PROBES";

/// Everything the sidecar needs, resolved from the mesh settings and the pod's overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct SidecarSettings {
    pub image: String,
    pub mesh: String,
    pub uid: i64,
    pub native: bool,
    pub hold_application: bool,
    pub resources: ResourceRequirements,
    pub log_level: &'static str,
    pub concurrency: u32,
    pub discovery_address: String,
    pub trust_domain: String,
    /// `None` when the Mesh's capture mode is `none`: no init container then.
    pub capture: Option<CaptureArgs>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CaptureArgs {
    pub mode: &'static str,
    pub include_inbound_ports: IncludePorts,
    /// Outbound ports captured whatever the destination (Istio's `includeOutboundPorts`).
    pub include_outbound_ports: Vec<u16>,
    pub exclude_inbound_ports: Vec<u16>,
    pub exclude_outbound_ports: Vec<u16>,
    pub exclude_outbound_cidrs: Vec<String>,
    pub include_outbound_cidrs: IncludeCidrs,
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `meshd-init`: `meshd init` with the capture settings as flags; the only container run as root, with
/// only NET_ADMIN and NET_RAW.
pub fn init_container(s: &SidecarSettings, capture: &CaptureArgs) -> Container {
    let mut args = vec![
        "--mode".to_string(),
        capture.mode.to_string(),
        "--proxy-uid".into(),
        s.uid.to_string(),
        "--proxy-gid".into(),
        s.uid.to_string(),
        "--outbound-port".into(),
        names::PORT_OUTBOUND_CAPTURE.to_string(),
        "--inbound-port".into(),
        names::PORT_INBOUND_CAPTURE.to_string(),
    ];
    // `*` is the default; an explicit list, even an empty one ("capture no inbound"), is written.
    if let IncludePorts::Only(ports) = &capture.include_inbound_ports {
        args.push("--include-inbound-ports".into());
        args.push(join(ports));
    }
    for (flag, value) in [
        (
            "--include-outbound-ports",
            join(&capture.include_outbound_ports),
        ),
        (
            "--exclude-inbound-ports",
            join(&capture.exclude_inbound_ports),
        ),
        (
            "--exclude-outbound-ports",
            join(&capture.exclude_outbound_ports),
        ),
        (
            "--exclude-outbound-cidrs",
            capture.exclude_outbound_cidrs.join(","),
        ),
    ] {
        // An empty list is the default for these; leaving the flag out keeps the command line readable.
        if !value.is_empty() {
            args.push(flag.to_string());
            args.push(value);
        }
    }
    // An empty include list is not the default (`*`): it says "capture no outbound traffic" (Istio's
    // `-i ""`), so it is always written, empty or not.
    args.push("--include-outbound-cidrs".into());
    args.push(match &capture.include_outbound_cidrs {
        IncludeCidrs::All => "*".to_string(),
        IncludeCidrs::Only(c) => join(c),
    });
    // --validate proves outbound capture with a real connection; with nothing captured outbound
    // there is nothing to prove, and `meshd init` would fail for want of a destination.
    if capture.include_outbound_cidrs != IncludeCidrs::Only(Vec::new()) {
        args.push("--validate".into());
    }
    Container {
        name: names::INIT_CONTAINER.to_string(),
        image: Some(s.image.clone()),
        command: Some(vec!["meshd".into(), "init".into()]),
        args: Some(args),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&[("cpu", "10m"), ("memory", "16Mi")])),
            limits: Some(quantities(&[("cpu", "100m"), ("memory", "64Mi")])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_group: Some(0),
            run_as_non_root: Some(false),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                api_version: None,
            }),
            ..Default::default()
        }),
        value: None,
    }
}

fn value_env(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value),
        value_from: None,
    }
}

fn health_probe() -> HTTPGetAction {
    HTTPGetAction {
        path: Some("/healthz/ready".into()),
        port: IntOrString::Int(i32::from(names::PORT_HEALTH)),
        scheme: Some("HTTP".into()),
        ..Default::default()
    }
}

/// `meshd-proxy`: `meshd agent` (which runs Envoy) as uid/gid 1337, non-root, read-only, no capabilities.
/// `app_probes` is the JSON of the app's original probes for the agent, when any were rewritten;
/// `labels` are the pod's, for the node metadata (the downward API has no env var for all of them).
pub fn proxy_container(
    s: &SidecarSettings,
    app_probes: Option<String>,
    labels: &BTreeMap<String, String>,
) -> Container {
    let mut env = vec![
        field_env("MESHD_POD_NAME", "metadata.name"),
        field_env("MESHD_POD_NAMESPACE", "metadata.namespace"),
        field_env("MESHD_POD_IP", "status.podIP"),
        field_env("MESHD_SERVICE_ACCOUNT", "spec.serviceAccountName"),
        field_env("MESHD_NODE_NAME", "spec.nodeName"),
        value_env("MESHD_MESH", s.mesh.clone()),
        value_env("MESHD_DISCOVERY_ADDRESS", s.discovery_address.clone()),
        value_env("MESHD_TRUST_DOMAIN", s.trust_domain.clone()),
        value_env("MESHD_ENVOY_LOG_LEVEL", s.log_level.to_string()),
        value_env("MESHD_CONCURRENCY", s.concurrency.to_string()),
        // The control plane's TLS (always, on HOST:PORT), its trust anchor and the credential: the
        // agent's defaults are these paths too; written out so the pod spec says what it relies on.
        value_env("MESHD_XDS_TLS", "true".into()),
        value_env("MESHD_CA_FILE", format!("{CA_ROOT_PATH}/{CA_ROOT_KEY}")),
        value_env("MESHD_TOKEN_FILE", format!("{TOKEN_DIR}/{TOKEN_FILE}")),
        value_env("MESHD_CONFIG_DIR", ENVOY_CONFIG_PATH.into()),
    ];
    if !labels.is_empty() {
        let text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.push(value_env("MESHD_LABELS", text.join(",")));
    }
    if let Some(json) = app_probes {
        env.push(value_env(ENV_APP_PROBES, json));
    }
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: read_only.then_some(true),
        ..Default::default()
    };
    let ready = Probe {
        http_get: Some(health_probe()),
        period_seconds: Some(2),
        timeout_seconds: Some(3),
        failure_threshold: Some(30),
        ..Default::default()
    };
    // Native: the kubelet starts the app containers only once this succeeds (1 s × 600 = 10 min).
    let startup = s.native.then(|| Probe {
        http_get: Some(health_probe()),
        period_seconds: Some(1),
        timeout_seconds: Some(3),
        failure_threshold: Some(600),
        ..Default::default()
    });
    let lifecycle = (!s.native && s.hold_application).then(|| Lifecycle {
        post_start: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(POST_START_WAIT_COMMAND.map(String::from).to_vec()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    Container {
        name: names::PROXY_CONTAINER.to_string(),
        image: Some(s.image.clone()),
        command: Some(vec!["meshd".into()]),
        args: Some(vec!["agent".into()]),
        ports: Some(vec![ContainerPort {
            name: Some("http-envoy-prom".into()),
            container_port: i32::from(names::PORT_ENVOY_STATS),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        env: Some(env),
        resources: Some(s.resources.clone()),
        readiness_probe: Some(ready),
        startup_probe: startup,
        lifecycle,
        restart_policy: s.native.then(|| "Always".to_string()),
        security_context: Some(SecurityContext {
            run_as_user: Some(s.uid),
            run_as_group: Some(s.uid),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                add: None,
                drop: Some(vec!["ALL".into()]),
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            mount(VOLUME_ENVOY_CONFIG, ENVOY_CONFIG_PATH, false),
            mount(VOLUME_SDS, SDS_PATH, false),
            mount(VOLUME_TOKEN, TOKEN_DIR, true),
            mount(VOLUME_CA_ROOT, CA_ROOT_PATH, true),
        ]),
        ..Default::default()
    }
}

/// The volumes the proxy mounts.
pub fn volumes() -> Vec<Volume> {
    let memory = || EmptyDirVolumeSource {
        medium: Some("Memory".into()),
        size_limit: None,
    };
    vec![
        Volume {
            name: VOLUME_ENVOY_CONFIG.into(),
            empty_dir: Some(memory()),
            ..Default::default()
        },
        Volume {
            name: VOLUME_SDS.into(),
            empty_dir: Some(memory()),
            ..Default::default()
        },
        Volume {
            name: VOLUME_TOKEN.into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some(names::TOKEN_AUDIENCE.into()),
                        expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
                        path: TOKEN_FILE.into(),
                    }),
                    ..Default::default()
                }]),
                default_mode: None,
            }),
            ..Default::default()
        },
        Volume {
            name: VOLUME_CA_ROOT.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::CA_ROOT_CONFIGMAP.into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    ]
}
