//! Traffic management kinds, `networking.meshd.io/v1alpha1` (SPEC §8, §10): Istio's
//! `networking.istio.io/v1` shapes field for field, so an Istio user's YAML deserializes after changing
//! only the apiVersion. Fields Istio has and SPEC does not list are accepted (not refused as unknown) and
//! say "meshd does not act on it" in their doc; docs/design.md lists them.
//!
//! Conventions: every struct defaults field by field (`serde(default)`), so a missing required field
//! becomes a [`crate::validate::FieldError`] naming it instead of a parse error; the CRD schema still
//! requires it. Numbers are wider than their range (a `u32` port) for the same reason.

pub mod destination_rule;
pub mod gateway;
pub mod service_entry;
pub mod virtual_service;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use destination_rule::{DestinationRule, DestinationRuleSpec};
pub use gateway::{Gateway, GatewaySpec};
pub use service_entry::{ServiceEntry, ServiceEntrySpec};
pub use virtual_service::{VirtualService, VirtualServiceSpec};

/// How a request attribute is matched: exactly one of `exact`, `prefix` or `regex` (RE2 syntax).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [crate::schema::exactly_one(&["exact", "prefix", "regex"])]))]
pub struct StringMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub exact: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub prefix: Option<String>,
    /// RE2 syntax, matched against the whole value.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub regex: Option<String>,
}

/// The one kind of match a valid [`StringMatch`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchKind<'a> {
    Exact(&'a str),
    Prefix(&'a str),
    Regex(&'a str),
}

impl StringMatch {
    pub fn exact(s: impl Into<String>) -> Self {
        Self {
            exact: Some(s.into()),
            ..Self::default()
        }
    }

    pub fn prefix(s: impl Into<String>) -> Self {
        Self {
            prefix: Some(s.into()),
            ..Self::default()
        }
    }

    /// The match, when exactly one kind is set (validation guarantees it for accepted resources).
    pub fn kind(&self) -> Option<MatchKind<'_>> {
        match (&self.exact, &self.prefix, &self.regex) {
            (Some(e), None, None) => Some(MatchKind::Exact(e)),
            (None, Some(p), None) => Some(MatchKind::Prefix(p)),
            (None, None, Some(r)) => Some(MatchKind::Regex(r)),
            _ => None,
        }
    }
}

/// A service to send traffic to: `host` (short names resolve in the resource's namespace), an optional
/// DestinationRule `subset`, and a `port` (needed when the service has more than one).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("required" = ["host"]))]
pub struct Destination {
    #[schemars(length(max = 253), regex(pattern = crate::schema::HOST_PATTERN))]
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub subset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// A port of the destination service, by number.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct PortSelector {
    #[schemars(range(min = 1, max = 65535))]
    pub number: u32,
}

/// A percentage, 0–100 (fractions allowed).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Percent {
    #[schemars(range(min = 0, max = 100))]
    pub value: f64,
}

/// Header manipulation of a request and of its response.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Headers {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}

/// `set` overwrites, `add` appends, `remove` deletes, in that order.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct HeaderOperations {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub set: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub add: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 256)))]
    pub remove: Vec<String>,
}

/// Protocols of Gateway server ports and ServiceEntry ports: Istio's names, in any case as Istio reads
/// them (`http` is HTTP), written back upper case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http,
    Https,
    Http2,
    Grpc,
    /// Treated as HTTP2 (gRPC-Web is not translated specially).
    GrpcWeb,
    Tcp,
    Tls,
    /// Treated as TCP: meshd does not act on the protocol beyond that.
    Mongo,
    /// Treated as TCP: meshd does not act on the protocol beyond that.
    Mysql,
    /// Treated as TCP: meshd does not act on the protocol beyond that.
    Redis,
}

impl Protocol {
    pub const ALL: [Protocol; 10] = [
        Self::Http,
        Self::Https,
        Self::Http2,
        Self::Grpc,
        Self::GrpcWeb,
        Self::Tcp,
        Self::Tls,
        Self::Mongo,
        Self::Mysql,
        Self::Redis,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "HTTP",
            Self::Https => "HTTPS",
            Self::Http2 => "HTTP2",
            Self::Grpc => "GRPC",
            Self::GrpcWeb => "GRPC-WEB",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
            Self::Mongo => "MONGO",
            Self::Mysql => "MYSQL",
            Self::Redis => "REDIS",
        }
    }

    /// Istio's parse: case-insensitive.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
    }

    /// Proxied as HTTP (HTTP/1.1, HTTP/2 or gRPC) rather than as bytes.
    pub fn is_http(self) -> bool {
        matches!(self, Self::Http | Self::Http2 | Self::Grpc | Self::GrpcWeb)
    }
}

impl Serialize for Protocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{s:?} is not a protocol ({}; any case)",
                Self::ALL.map(Self::as_str).join(", ")
            ))
        })
    }
}

impl JsonSchema for Protocol {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Protocol".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names = Self::ALL.map(|p| format!("'{}'", p.as_str())).join(", ");
        schemars::json_schema!({
            "type": "string",
            "maxLength": 16,
            "x-kubernetes-validations": [{
                "rule": format!("self.upperAscii() in [{names}]"),
                "messageExpression": format!(
                    "'\"' + self + '\" is not a protocol ({}; any case)'",
                    Self::ALL.map(Self::as_str).join(", ")
                ),
            }],
        })
    }
}

/// TLS protocol versions (Gateway servers).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self != 'TLSV1_0' && self != 'TLSV1_1'",
    "messageExpression": "self + ' is older than TLS 1.2; meshd serves TLS 1.2 and newer only'"
}]))]
pub enum TlsProtocol {
    /// Envoy's default: TLS 1.2 minimum, 1.3 maximum.
    TlsAuto,
    /// Refused by validation: meshd serves TLS 1.2 and newer only.
    #[serde(rename = "TLSV1_0")]
    Tlsv1_0,
    /// Refused by validation: meshd serves TLS 1.2 and newer only.
    #[serde(rename = "TLSV1_1")]
    Tlsv1_1,
    #[serde(rename = "TLSV1_2")]
    Tlsv1_2,
    #[serde(rename = "TLSV1_3")]
    Tlsv1_3,
}

impl TlsProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TlsAuto => "TLS_AUTO",
            Self::Tlsv1_0 => "TLSV1_0",
            Self::Tlsv1_1 => "TLSV1_1",
            Self::Tlsv1_2 => "TLSV1_2",
            Self::Tlsv1_3 => "TLSV1_3",
        }
    }
}
