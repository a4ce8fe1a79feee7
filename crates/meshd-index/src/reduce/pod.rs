//! Pod → [`facts::Workload`]: IPs, labels, service account, mesh and named container ports.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use meshd_translate::facts::{self, EndpointPort, Fact, FactKind, ObjectKey};

use crate::ReduceError;
use crate::kinds::Kind;

pub struct PodKind;

impl Kind for PodKind {
    type Object = Pod;
    const FACT: FactKind = FactKind::Workload;

    fn reduce(pod: &Pod, key: &ObjectKey) -> Result<Option<Fact>, ReduceError> {
        let mut ips: Vec<String> = Vec::new();
        if let Some(status) = &pod.status {
            let all = status
                .pod_ip
                .iter()
                .chain(status.pod_ips.iter().flatten().map(|p| &p.ip));
            for ip in all {
                if !ips.contains(ip) {
                    ips.push(ip.clone());
                }
            }
        }
        let mut ports: Vec<EndpointPort> = Vec::new();
        let mut service_account = "default".to_string();
        if let Some(spec) = &pod.spec {
            if let Some(sa) = spec.service_account_name.as_ref().filter(|s| !s.is_empty()) {
                service_account = sa.clone();
            }
            for (i, c) in spec.containers.iter().enumerate() {
                for (j, p) in c.ports.iter().flatten().enumerate() {
                    let Some(name) = &p.name else { continue };
                    let Some(port) = super::port(p.container_port) else {
                        return Err(ReduceError::field(
                            "Pod",
                            key,
                            format!("spec.containers[{i}].ports[{j}].containerPort"),
                            format!("{} is not 1-65535", p.container_port),
                        ));
                    };
                    if !ports.iter().any(|q| &q.name == name) {
                        ports.push(EndpointPort {
                            name: name.clone(),
                            port,
                        });
                    }
                }
            }
        }
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        Ok(Some(Fact::Workload(Arc::new(facts::Workload {
            ips,
            mesh: labels.get(meshd_api::names::LABEL_MESH).cloned(),
            labels,
            service_account,
            ports,
        }))))
    }
}
