//! Service → [`facts::Service`]: VIPs, TCP ports with protocol and target port, selector.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use meshd_translate::Protocol;
use meshd_translate::facts::{self, Fact, FactKind, ObjectKey, ServicePort, TargetPort};

use crate::ReduceError;
use crate::kinds::Kind;

pub struct ServiceKind;

impl Kind for ServiceKind {
    type Object = Service;
    const FACT: FactKind = FactKind::Service;

    fn reduce(svc: &Service, key: &ObjectKey) -> Result<Option<Fact>, ReduceError> {
        let Some(spec) = &svc.spec else {
            return Ok(None);
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            return Ok(None);
        }
        let mut vips: Vec<String> = spec.cluster_ips.clone().unwrap_or_default();
        if let Some(ip) = &spec.cluster_ip
            && !vips.contains(ip)
        {
            vips.insert(0, ip.clone());
        }
        vips.retain(|ip| ip.parse::<std::net::IpAddr>().is_ok());
        let bad =
            |field: String, problem: String| ReduceError::field("Service", key, field, problem);
        let mut seen = BTreeSet::new();
        let mut ports = Vec::new();
        for (i, p) in spec.ports.iter().flatten().enumerate() {
            let Some(port) = super::port(p.port) else {
                return Err(bad(
                    format!("spec.ports[{i}].port"),
                    format!("{} is not 1-65535", p.port),
                ));
            };
            if p.protocol.as_deref().is_some_and(|proto| proto != "TCP") {
                continue; // UDP/SCTP are not proxied
            }
            let target_port = match &p.target_port {
                None => TargetPort::Number(port),
                Some(IntOrString::Int(n)) => match super::port(*n) {
                    Some(n) => TargetPort::Number(n),
                    None => {
                        return Err(bad(
                            format!("spec.ports[{i}].targetPort"),
                            format!("{n} is not 1-65535"),
                        ));
                    }
                },
                Some(IntOrString::String(s)) => match s.parse::<u16>() {
                    Ok(n) if n > 0 => TargetPort::Number(n),
                    _ => TargetPort::Named(s.clone()),
                },
            };
            if !seen.insert(port) {
                continue; // the first of a port number wins
            }
            ports.push(ServicePort {
                port,
                name: p.name.clone().unwrap_or_default(),
                protocol: Protocol::of_port(p.app_protocol.as_deref(), p.name.as_deref()),
                target_port,
            });
        }
        ports.sort_by_key(|p| p.port);
        Ok(Some(Fact::Service(Arc::new(facts::Service {
            vips,
            ports,
            selector: spec.selector.clone().unwrap_or_default(),
        }))))
    }
}
