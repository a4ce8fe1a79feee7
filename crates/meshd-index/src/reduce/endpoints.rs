//! EndpointSlice → [`facts::EndpointSlice`]: its Service, named ports, and each endpoint's addresses,
//! conditions and Pod.

use std::sync::Arc;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use meshd_translate::facts::{self, Endpoint, EndpointPort, Fact, FactKind, ObjectKey};

use crate::ReduceError;
use crate::kinds::Kind;

/// The label that attaches a slice to its Service.
const SERVICE_NAME: &str = "kubernetes.io/service-name";

pub struct EndpointSliceKind;

impl Kind for EndpointSliceKind {
    type Object = EndpointSlice;
    const FACT: FactKind = FactKind::EndpointSlice;

    fn reduce(slice: &EndpointSlice, key: &ObjectKey) -> Result<Option<Fact>, ReduceError> {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            return Ok(None); // FQDN slices name no address Envoy can connect to
        }
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME));
        let Some(service) = service else {
            return Ok(None); // not a Service's slice
        };
        let mut ports = Vec::new();
        for (i, p) in slice.ports.iter().flatten().enumerate() {
            let Some(port) = p.port else { continue };
            let Ok(port) = u16::try_from(port) else {
                return Err(ReduceError::field(
                    "EndpointSlice",
                    key,
                    format!("ports[{i}].port"),
                    format!("{port} is not 0-65535"),
                ));
            };
            ports.push(EndpointPort {
                name: p.name.clone().unwrap_or_default(),
                port,
            });
        }
        let endpoints = slice
            .endpoints
            .iter()
            .map(|ep| {
                let c = ep.conditions.as_ref();
                let ready = c.and_then(|c| c.ready).unwrap_or(true);
                Endpoint {
                    addresses: ep.addresses.clone(),
                    ready,
                    serving: c.and_then(|c| c.serving).unwrap_or(ready),
                    terminating: c.and_then(|c| c.terminating).unwrap_or(false),
                    pod: ep
                        .target_ref
                        .as_ref()
                        .filter(|r| r.kind.as_deref() == Some("Pod"))
                        .and_then(|r| r.name.clone()),
                }
            })
            .collect();
        Ok(Some(Fact::EndpointSlice(Arc::new(facts::EndpointSlice {
            service: service.clone(),
            ports,
            endpoints,
        }))))
    }
}
