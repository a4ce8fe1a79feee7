//! A multi-document YAML text checked document by document, as `meshd validate` and the file-fed control
//! plane read it: Mesh, the six traffic and security kinds, and the Kubernetes Service, EndpointSlice,
//! Pod and Secret documents the file-fed mesh uses. YAML becomes JSON first the way the API server sees
//! it (map keys as strings), then the typed object; a field the type does not have is a problem too (the
//! API server would refuse or drop it).

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{FieldError, Validate, kubernetes};
use crate::mesh::Mesh;
use crate::networking::{DestinationRule, Gateway, ServiceEntry, VirtualService};
use crate::security::{AuthorizationPolicy, PeerAuthentication};

/// One parsed object of a kind meshd reads.
#[derive(Debug, Clone)]
pub enum Document {
    Mesh(Box<Mesh>),
    VirtualService(Box<VirtualService>),
    DestinationRule(Box<DestinationRule>),
    ServiceEntry(Box<ServiceEntry>),
    Gateway(Box<Gateway>),
    PeerAuthentication(Box<PeerAuthentication>),
    AuthorizationPolicy(Box<AuthorizationPolicy>),
    Service(Box<Service>),
    EndpointSlice(Box<EndpointSlice>),
    Pod(Box<Pod>),
    Secret(Box<Secret>),
}

/// The verdict on one document of a text.
#[derive(Debug, Clone)]
pub struct Checked {
    /// 1-based position in the text.
    pub number: usize,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    /// A document of a kind meshd reads; `errors` is empty when it is valid on its own.
    Object {
        kind: String,
        /// None for the cluster-scoped Mesh.
        namespace: Option<String>,
        name: String,
        object: Option<Document>,
        errors: Vec<FieldError>,
    },
    /// Not YAML, not an object, or without `kind`.
    Unreadable { problem: String },
    /// A kind meshd does not read (a Deployment, a ConfigMap…): not a problem, nothing checked.
    Skipped { kind: String },
}

impl Outcome {
    pub fn is_problem(&self) -> bool {
        match self {
            Self::Object { errors, .. } => !errors.is_empty(),
            Self::Unreadable { .. } => true,
            Self::Skipped { .. } => false,
        }
    }
}

/// Checks every document of a YAML (or JSON) text. Empty documents are left out.
pub fn check_documents(text: &str) -> Vec<Checked> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let number = i + 1;
        let outcome = match serde_yaml::Value::deserialize(doc) {
            Err(e) => Outcome::Unreadable {
                problem: format!("is not YAML: {e}"),
            },
            Ok(serde_yaml::Value::Null) => continue,
            Ok(value) => match to_json(value) {
                Err(problem) => Outcome::Unreadable { problem },
                Ok(json) => check_value(json),
            },
        };
        let stop = text_is_broken(&outcome);
        out.push(Checked { number, outcome });
        if stop {
            break; // the YAML stream itself is broken: later documents cannot be delimited reliably
        }
    }
    out
}

fn text_is_broken(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Unreadable { problem } if problem.starts_with("is not YAML"))
}

/// YAML to JSON as Kubernetes converts it: scalar map keys become strings (`8080:` is `"8080"`).
fn to_json(v: serde_yaml::Value) -> Result<Value, String> {
    use serde_yaml::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            serde_json::to_value(&n).map_err(|e| format!("has a number JSON cannot hold: {e}"))?
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => {
            Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Y::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => return Err(format!("has a map key that is not a string: {other:?}")),
                };
                out.insert(key, to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => {
            return Err(format!(
                "uses a YAML tag ({}), which Kubernetes does not read",
                t.tag
            ));
        }
    })
}

/// (apiVersion, kind) of every kind meshd reads.
const KINDS: [(&str, &str); 11] = [
    ("meshd.io/v1alpha1", "Mesh"),
    ("networking.meshd.io/v1alpha1", "VirtualService"),
    ("networking.meshd.io/v1alpha1", "DestinationRule"),
    ("networking.meshd.io/v1alpha1", "ServiceEntry"),
    ("networking.meshd.io/v1alpha1", "Gateway"),
    ("security.meshd.io/v1alpha1", "PeerAuthentication"),
    ("security.meshd.io/v1alpha1", "AuthorizationPolicy"),
    ("v1", "Service"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("v1", "Pod"),
    ("v1", "Secret"),
];

fn check_value(json: Value) -> Outcome {
    let Some(obj) = json.as_object() else {
        return Outcome::Unreadable {
            problem: "is not an object with apiVersion and kind".into(),
        };
    };
    let Some(kind) = obj.get("kind").and_then(Value::as_str).map(str::to_string) else {
        return Outcome::Unreadable {
            problem: "has no kind".into(),
        };
    };
    let Some((want_version, _)) = KINDS.iter().find(|(_, k)| *k == kind) else {
        return Outcome::Skipped { kind };
    };
    let meta = obj.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let namespace = (kind != "Mesh").then(|| {
        meta.and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string()
    });
    let mut errors = Vec::new();
    let version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if version != *want_version {
        let hint = if version.ends_with(".istio.io/v1") || version.contains(".istio.io/") {
            " (an Istio resource: change only the apiVersion)"
        } else {
            ""
        };
        errors.push(
            FieldError::new("apiVersion", format!("is not {want_version}{hint}")).with_str(version),
        );
    }
    let (object, mut found) = match kind.as_str() {
        "Mesh" => finish(&json, kubernetes::mesh, Document::Mesh),
        "VirtualService" => finish(&json, VirtualService::validate, Document::VirtualService),
        "DestinationRule" => finish(&json, DestinationRule::validate, Document::DestinationRule),
        "ServiceEntry" => finish(&json, ServiceEntry::validate, Document::ServiceEntry),
        "Gateway" => finish(&json, Gateway::validate, Document::Gateway),
        "PeerAuthentication" => finish(
            &json,
            PeerAuthentication::validate,
            Document::PeerAuthentication,
        ),
        "AuthorizationPolicy" => finish(
            &json,
            AuthorizationPolicy::validate,
            Document::AuthorizationPolicy,
        ),
        "Service" => finish(&json, kubernetes::service, Document::Service),
        "EndpointSlice" => finish(&json, kubernetes::endpoint_slice, Document::EndpointSlice),
        "Pod" => finish(&json, kubernetes::pod, Document::Pod),
        _ => finish(&json, kubernetes::secret, Document::Secret),
    };
    errors.append(&mut found);
    Outcome::Object {
        kind,
        namespace,
        name,
        object,
        errors,
    }
}

/// Parses into `T` (one problem naming the field when it does not), then reports the fields `T` does
/// not have and the object's own problems (`check`).
fn finish<T: DeserializeOwned + Serialize>(
    json: &Value,
    check: fn(&T) -> Vec<FieldError>,
    wrap: fn(Box<T>) -> Document,
) -> (Option<Document>, Vec<FieldError>) {
    let object: T = match serde_path_to_error::deserialize(json) {
        Ok(o) => o,
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." {
                "(document)".to_string()
            } else {
                path
            };
            return (
                None,
                vec![FieldError::new(
                    path,
                    format!("does not parse: {}", e.inner()),
                )],
            );
        }
    };
    let mut errors = unknown_fields::<T>(json);
    errors.extend(check(&object));
    (Some(wrap(Box::new(object))), errors)
}

/// Fields of `json` that `T` does not have, found while deserializing (serde skips them): a round trip
/// through `T` would also report fields a type leaves out when they hold their default. Nulls and empty
/// values are not reported (they carry nothing).
fn unknown_fields<T: DeserializeOwned>(json: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    let _: Result<T, _> = serde_ignored::deserialize(json, |path| {
        let (text, value) = field_path(&path, json);
        // kube's derived custom resources take the type fields apart from serde; they were checked.
        let type_field = matches!(text.as_str(), "apiVersion" | "kind");
        if !type_field && !value.is_some_and(is_empty) {
            out.push(FieldError::new(
                text,
                "is not a field of this kind (misspelt, or not supported)",
            ));
        }
    });
    out
}

/// `spec.http[0].name` for serde_ignored's path, and the value found there in `json`.
fn field_path<'a>(path: &serde_ignored::Path<'_>, json: &'a Value) -> (String, Option<&'a Value>) {
    use serde_ignored::Path;
    match path {
        Path::Root => (String::new(), Some(json)),
        Path::Seq { parent, index } => {
            let (p, v) = field_path(parent, json);
            (format!("{p}[{index}]"), v.and_then(|v| v.get(index)))
        }
        Path::Map { parent, key } => {
            let (p, v) = field_path(parent, json);
            let text = if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            };
            (text, v.and_then(|v| v.get(key.as_str())))
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent, json),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}
