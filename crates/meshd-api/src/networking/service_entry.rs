//! `ServiceEntry` (`networking.meshd.io/v1alpha1`, short name `se`): a host the mesh does not discover
//! itself (an external API, a VM) added to its registry. Istio's `networking.istio.io/v1` ServiceEntry,
//! SPEC §8.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Protocol;
use crate::status::ConfigStatus;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "networking.meshd.io",
    version = "v1alpha1",
    kind = "ServiceEntry",
    namespaced,
    shortname = "se",
    category = "meshd",
    status = "ConfigStatus",
    printcolumn = r#"{"name":"HOSTS","type":"string","jsonPath":".spec.hosts"}"#,
    printcolumn = r#"{"name":"LOCATION","type":"string","jsonPath":".spec.location"}"#,
    printcolumn = r#"{"name":"RESOLUTION","type":"string","jsonPath":".spec.resolution"}"#,
    printcolumn = r#"{"name":"ACCEPTED","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend(
    "required" = ["hosts"],
    "x-kubernetes-validations" = [
        crate::schema::at_most_one(&["workloadSelector", "endpoints"]),
        {
            "rule": "!has(self.resolution) || self.resolution != 'NONE' || !has(self.endpoints) || size(self.endpoints) == 0",
            "message": "endpoints: resolution NONE takes no endpoints (use STATIC or DNS)",
            "fieldPath": ".endpoints",
        }
    ]
))]
pub struct ServiceEntrySpec {
    /// Host names, `*.domain` wildcards allowed (not `*` alone).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 64), inner(length(max = 253), regex(pattern = crate::schema::HOST_PATTERN)))]
    pub hosts: Vec<String>,
    /// Virtual IPs or CIDRs the hosts are reached by (VIP:port dispatch).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 43)))]
    #[schemars(extend("x-kubernetes-validations" = [crate::schema::ips_or_cidrs("addresses")]))]
    pub addresses: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-validations" = [
        {
            "rule": "self.all(p, self.exists_one(q, q.number == p.number))",
            "message": "ports: each port number may appear once",
            "reason": "FieldValueDuplicate",
        },
        {
            "rule": "self.all(p, self.exists_one(q, q.name == p.name))",
            "message": "ports: each port name may appear once",
            "reason": "FieldValueDuplicate",
        }
    ]))]
    pub ports: Vec<ServicePort>,
    /// MESH_EXTERNAL when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// NONE when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub endpoints: Vec<WorkloadEntry>,
    /// Pods (and WorkloadEntries) as endpoints, instead of `endpoints`. Accepted for Istio compatibility;
    /// meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<EntrySelector>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 63), regex(pattern = crate::schema::EXPORT_TO_PATTERN)))]
    pub export_to: Vec<String>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    pub subject_alt_names: Vec<String>,
}

/// Istio's `networking.v1alpha3.WorkloadSelector`: `labels`, not `matchLabels`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct EntrySelector {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::schema::label_map")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("required" = ["number", "name"]))]
pub struct ServicePort {
    #[schemars(range(min = 1, max = 65535))]
    pub number: u32,
    /// TCP when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?$")
    )]
    pub name: String,
    /// The endpoints' port, when it differs from `number`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub target_port: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Location {
    /// Outside the mesh: no mTLS towards it.
    #[default]
    MeshExternal,
    /// Part of the mesh (VMs with sidecars).
    MeshInternal,
}

impl Location {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MeshExternal => "MESH_EXTERNAL",
            Self::MeshInternal => "MESH_INTERNAL",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    /// Forward to the address the caller connected to.
    #[default]
    None,
    /// The `endpoints` addresses (IPs).
    Static,
    /// Resolve the hosts (or the endpoints' names) by DNS, every address used.
    Dns,
    /// Resolve by DNS, one address at a time.
    DnsRoundRobin,
    /// Accepted for Istio compatibility; meshd does not act on it.
    DynamicDns,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Static => "STATIC",
            Self::Dns => "DNS",
            Self::DnsRoundRobin => "DNS_ROUND_ROBIN",
            Self::DynamicDns => "DYNAMIC_DNS",
        }
    }
}

/// One endpoint of a ServiceEntry (Istio's WorkloadEntry shape).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkloadEntry {
    /// An IP (STATIC) or a DNS name (DNS resolution).
    #[schemars(length(max = 253))]
    pub address: String,
    /// Port name (of `ports`) → this endpoint's port number.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 64,
        "additionalProperties" = {"type": "integer", "minimum": 1, "maximum": 65535}
    ))]
    pub ports: BTreeMap<String, u32>,
    /// Labels, matched by DestinationRule subsets.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::schema::label_map")]
    pub labels: BTreeMap<String, String>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub network: Option<String>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub locality: Option<String>,
    /// Load-balancing weight; 0 means unset (1).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub weight: Option<u32>,
    /// Accepted for Istio compatibility; meshd does not act on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub service_account: Option<String>,
}
