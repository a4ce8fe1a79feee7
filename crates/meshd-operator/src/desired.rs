//! What a Mesh should produce in the cluster, as pure functions: Mesh in, objects out (no I/O).
//! The reconcile loop applies these only where the API server says applying would change something
//! (`apply::ensure`).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    WebhookClientConfig,
};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ProjectedVolumeSource, SeccompProfile, SecurityContext, Service, ServiceAccountTokenProjection,
    ServicePort, ServiceSpec, TopologySpreadConstraint, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use kube::core::ApiResource;
use meshd_api::mesh::GatewaySpec;
use meshd_api::{Mesh, names};
use serde::Serialize;

use crate::Error;

/// Where the API server reaches the injection webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookEndpoint {
    /// Service `meshd`/`meshd-system`, port 443, path `/inject` (in-cluster).
    Service,
    /// `--webhook-url`: a controller outside the cluster.
    Url(String),
}

/// Inputs besides the Mesh that shape the desired objects.
#[derive(Clone, Debug)]
pub struct DesiredInputs {
    pub webhook: WebhookEndpoint,
    /// PEM bundle of the CA(s) that sign the webhook's serving certificate.
    pub ca_bundle: String,
    /// xDS/CA address written into gateway pods.
    pub discovery_address: String,
}

/// The kinds of object a Mesh owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    ConfigMap,
    Deployment,
    Service,
    MutatingWebhookConfiguration,
}

impl ObjectKind {
    pub fn api_resource(self) -> ApiResource {
        match self {
            Self::ConfigMap => ApiResource::erase::<ConfigMap>(&()),
            Self::Deployment => ApiResource::erase::<Deployment>(&()),
            Self::Service => ApiResource::erase::<Service>(&()),
            Self::MutatingWebhookConfiguration => {
                ApiResource::erase::<MutatingWebhookConfiguration>(&())
            }
        }
    }
}

/// One object as it should be; `body` is the full apply document (apiVersion, kind, metadata, spec).
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredObject {
    pub kind: ObjectKind,
    pub namespace: Option<String>,
    pub name: String,
    /// The gateway this object belongs to, for Deployments and Services.
    pub gateway: Option<String>,
    pub body: serde_json::Value,
}

/// Labels on everything a Mesh owns.
pub fn owned_labels(mesh: &str) -> BTreeMap<String, String> {
    [
        (names::LABEL_OWNED_BY_MESH.to_string(), mesh.to_string()),
        (names::LABEL_MANAGED_BY.to_string(), "meshd".to_string()),
    ]
    .into()
}

/// Label selector matching everything meshd manages (for the controller's watches).
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=meshd";

/// Every object `mesh` should own, in apply order: ConfigMap, gateways, then the webhook configuration
/// (last, so the webhook only points at settings that already exist).
pub fn desired_objects(mesh: &Mesh, inputs: &DesiredInputs) -> Result<Vec<DesiredObject>, Error> {
    let name = mesh_name(mesh)?;
    let owner = mesh
        .controller_owner_ref(&())
        .ok_or_else(|| Error::MissingUid(name.clone()))?;
    let meta = |namespace: Option<&str>, object: String, extra: &[(&str, &str)]| {
        let mut labels = owned_labels(&name);
        labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        ObjectMeta {
            name: Some(object),
            namespace: namespace.map(String::from),
            labels: Some(labels),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        }
    };
    let mut out = Vec::new();
    let settings = serde_yaml::to_string(&mesh.spec).map_err(Error::SerializeSettings)?;
    let cm = ConfigMap {
        metadata: meta(
            Some(names::SYSTEM_NAMESPACE),
            names::mesh_configmap_name(&name),
            &[],
        ),
        data: Some([(names::MESH_CONFIG_KEY.to_string(), settings)].into()),
        ..Default::default()
    };
    out.push(object(ObjectKind::ConfigMap, None, &cm)?);
    for gw in &mesh.spec.gateways {
        let extra = [
            (names::LABEL_GATEWAY, gw.name.as_str()),
            (names::LABEL_APP_NAME, gw.name.as_str()),
        ];
        let deployment = gateway_deployment(
            mesh,
            &name,
            gw,
            inputs,
            meta(Some(&gw.namespace), gw.name.clone(), &extra),
        );
        out.push(object(ObjectKind::Deployment, Some(&gw.name), &deployment)?);
        let service = gateway_service(
            &name,
            gw,
            meta(Some(&gw.namespace), gw.name.clone(), &extra),
        );
        out.push(object(ObjectKind::Service, Some(&gw.name), &service)?);
    }
    let mwc = webhook_configuration(
        mesh,
        &name,
        inputs,
        meta(None, names::webhook_configuration_name(&name), &[]),
    );
    out.push(object(
        ObjectKind::MutatingWebhookConfiguration,
        None,
        &mwc,
    )?);
    Ok(out)
}

pub(crate) fn mesh_name(mesh: &Mesh) -> Result<String, Error> {
    mesh.metadata.name.clone().ok_or(Error::MissingName)
}

fn object<T: Serialize + Resource>(
    kind: ObjectKind,
    gateway: Option<&str>,
    typed: &T,
) -> Result<DesiredObject, Error> {
    let meta = typed.meta();
    Ok(DesiredObject {
        kind,
        namespace: meta.namespace.clone(),
        name: meta.name.clone().unwrap_or_default(),
        gateway: gateway.map(String::from),
        body: serde_json::to_value(typed).map_err(Error::SerializeObject)?,
    })
}

fn gateway_selector(mesh: &str, gw: &GatewaySpec) -> BTreeMap<String, String> {
    [
        (names::LABEL_GATEWAY.to_string(), gw.name.clone()),
        (names::LABEL_OWNED_BY_MESH.to_string(), mesh.to_string()),
    ]
    .into()
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The gateway's Envoy: the proxy image running `meshd agent`, as injected sidecars do (docs/design.md).
fn gateway_deployment(
    mesh: &Mesh,
    mesh_name: &str,
    gw: &GatewaySpec,
    inputs: &DesiredInputs,
    metadata: ObjectMeta,
) -> Deployment {
    let selector = gateway_selector(mesh_name, gw);
    let mut pod_labels = metadata.labels.clone().unwrap_or_default();
    pod_labels.insert(names::LABEL_MESH.into(), mesh_name.into());
    let proxy = &mesh.spec.proxy;
    let mut ports: Vec<ContainerPort> = gw
        .service
        .ports
        .iter()
        .map(|p| ContainerPort {
            name: Some(p.name.clone()),
            container_port: i32::from(p.target_port),
            protocol: Some("TCP".into()),
            ..Default::default()
        })
        .collect();
    ports.push(ContainerPort {
        name: Some("http-envoy-prom".into()),
        container_port: i32::from(names::PORT_ENVOY_STATS),
        protocol: Some("TCP".into()),
        ..Default::default()
    });
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        // Only `true`: the API server omits a false readOnly, which would read as drift forever.
        read_only: (name == "meshd-token" || name == "meshd-ca-root").then_some(true),
        ..Default::default()
    };
    let container = Container {
        name: names::PROXY_CONTAINER.into(),
        image: Some(proxy.image_or_default()),
        command: Some(vec!["meshd".into()]),
        args: Some(vec!["agent".into()]),
        env: Some(vec![
            env_field("MESHD_POD_NAME", "metadata.name"),
            env_field("MESHD_POD_NAMESPACE", "metadata.namespace"),
            env_field("MESHD_POD_IP", "status.podIP"),
            env_field("MESHD_SERVICE_ACCOUNT", "spec.serviceAccountName"),
            env_field("MESHD_NODE_NAME", "spec.nodeName"),
            env("MESHD_MESH", mesh_name),
            env("MESHD_DISCOVERY_ADDRESS", &inputs.discovery_address),
            env("MESHD_TRUST_DOMAIN", &mesh.spec.trust_domain),
            env("MESHD_ENVOY_LOG_LEVEL", proxy.log_level.as_str()),
            env("MESHD_CONCURRENCY", &proxy.concurrency.to_string()),
            env("MESHD_GATEWAY", &gw.name),
            // As for sidecars: TLS to the control plane, its trust anchor and the credential.
            env("MESHD_XDS_TLS", "true"),
            env("MESHD_CA_FILE", "/var/run/meshd/ca-root/root-cert.pem"),
            env("MESHD_TOKEN_FILE", "/var/run/secrets/tokens/meshd-token"),
            env("MESHD_CONFIG_DIR", "/etc/meshd/proxy"),
            env(
                "MESHD_LABELS",
                &pod_labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ]),
        ports: Some(ports),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz/ready".into()),
                port: IntOrString::Int(i32::from(names::PORT_HEALTH)),
                ..Default::default()
            }),
            initial_delay_seconds: Some(1),
            period_seconds: Some(5),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        resources: Some(gw.resources.clone()),
        security_context: Some(SecurityContext {
            run_as_user: Some(proxy.uid),
            run_as_group: Some(proxy.uid),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            mount("meshd-proxy-config", "/etc/meshd/proxy"),
            mount("meshd-sds", "/var/run/meshd/sds"),
            mount("meshd-token", "/var/run/secrets/tokens"),
            mount("meshd-ca-root", "/var/run/meshd/ca-root"),
        ]),
        ..Default::default()
    };
    let empty_dir = |name: &str| Volume {
        name: name.into(),
        empty_dir: Some(Default::default()),
        ..Default::default()
    };
    let volumes = vec![
        empty_dir("meshd-proxy-config"),
        empty_dir("meshd-sds"),
        Volume {
            name: "meshd-token".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some(names::TOKEN_AUDIENCE.into()),
                        expiration_seconds: Some(43200),
                        path: "meshd-token".into(),
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "meshd-ca-root".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::CA_ROOT_CONFIGMAP.into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(gw.replicas),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        fs_group: Some(proxy.uid),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    topology_spread_constraints: Some(vec![TopologySpreadConstraint {
                        max_skew: 1,
                        topology_key: "kubernetes.io/hostname".into(),
                        when_unsatisfiable: "ScheduleAnyway".into(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn gateway_service(mesh_name: &str, gw: &GatewaySpec, metadata: ObjectMeta) -> Service {
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(gw.service.service_type.as_str().into()),
            selector: Some(gateway_selector(mesh_name, gw)),
            ports: Some(
                gw.service
                    .ports
                    .iter()
                    .map(|p| ServicePort {
                        name: Some(p.name.clone()),
                        port: i32::from(p.port),
                        target_port: Some(IntOrString::Int(i32::from(p.target_port))),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.into(),
        operator: operator.into(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
    }
}

fn selector(requirements: Vec<LabelSelectorRequirement>) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(requirements),
        ..Default::default()
    }
}

/// SPEC §4 selectors; docs/design.md "Webhook selectors" explains the choice.
fn webhook_configuration(
    mesh: &Mesh,
    mesh_name: &str,
    inputs: &DesiredInputs,
    metadata: ObjectMeta,
) -> MutatingWebhookConfiguration {
    let client_config = WebhookClientConfig {
        ca_bundle: Some(ByteString(inputs.ca_bundle.as_bytes().to_vec())),
        service: match inputs.webhook {
            WebhookEndpoint::Service => Some(ServiceReference {
                name: names::CONTROL_PLANE_SERVICE.into(),
                namespace: names::SYSTEM_NAMESPACE.into(),
                path: Some(names::WEBHOOK_PATH.into()),
                port: Some(i32::from(names::PORT_WEBHOOK_SERVICE)),
            }),
            WebhookEndpoint::Url(_) => None,
        },
        url: match &inputs.webhook {
            WebhookEndpoint::Url(url) => Some(url.clone()),
            WebhookEndpoint::Service => None,
        },
    };
    let not_system = || {
        requirement(
            "kubernetes.io/metadata.name",
            "NotIn",
            &names::NEVER_INJECT_NAMESPACES,
        )
    };
    let pod_not_opted_out = selector(vec![requirement(names::LABEL_INJECT, "NotIn", &["false"])]);
    let webhook = |name: &str, namespace: Vec<LabelSelectorRequirement>, object: LabelSelector| {
        let mut ns = vec![not_system()];
        ns.extend(namespace);
        MutatingWebhook {
            name: name.into(),
            admission_review_versions: vec!["v1".into()],
            client_config: client_config.clone(),
            failure_policy: Some(mesh.spec.injection.failure_policy.as_str().into()),
            side_effects: "NoneOnDryRun".into(),
            timeout_seconds: Some(10),
            reinvocation_policy: Some("Never".into()),
            namespace_selector: Some(selector(ns)),
            object_selector: Some(object),
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec![String::new()]),
                api_versions: Some(vec!["v1".into()]),
                operations: Some(vec!["CREATE".into()]),
                resources: Some(vec!["pods".into()]),
                scope: Some("Namespaced".into()),
            }]),
            ..Default::default()
        }
    };
    let is_default = mesh_name == names::DEFAULT_MESH;
    let mut webhooks = vec![webhook(
        "namespace.meshd.io",
        vec![
            requirement(names::LABEL_MESH, "In", &[mesh_name]),
            requirement(names::LABEL_INJECT, "NotIn", &["disabled"]),
        ],
        pod_not_opted_out.clone(),
    )];
    if is_default {
        webhooks.push(webhook(
            "namespace-default.meshd.io",
            vec![
                requirement(names::LABEL_INJECT, "In", &["enabled"]),
                requirement(names::LABEL_MESH, "DoesNotExist", &[]),
            ],
            pod_not_opted_out,
        ));
    }
    let pod_mesh = if is_default {
        requirement(names::LABEL_MESH, "DoesNotExist", &[])
    } else {
        requirement(names::LABEL_MESH, "In", &[mesh_name])
    };
    webhooks.push(webhook(
        "object.meshd.io",
        vec![
            requirement(names::LABEL_INJECT, "DoesNotExist", &[]),
            requirement(names::LABEL_MESH, "DoesNotExist", &[]),
        ],
        selector(vec![
            requirement(names::LABEL_INJECT, "In", &["true"]),
            pod_mesh,
        ]),
    ));
    MutatingWebhookConfiguration {
        metadata,
        webhooks: Some(webhooks),
    }
}
