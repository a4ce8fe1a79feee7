//! One config file's documents → facts, with the kinds of [`meshd_index::visit_kinds`].

use std::sync::OnceLock;

use meshd_index::{Kind, KindVisitor, visit_kinds};
use meshd_translate::facts::{Fact, FactKind, ObjectKey};
use serde::Deserialize;

use crate::SourceError;

/// One object of a file: its kind, key and fact (`None`: it contributes nothing).
pub type ParsedFact = (FactKind, ObjectKey, Option<Fact>);

type Decode = fn(serde_yaml::Value, &str) -> Result<Decoded, String>;

enum Decoded {
    Fact(ObjectKey, Option<Fact>),
    Invalid(meshd_index::ReduceError),
}

struct Decoder {
    kind: String,
    group: String,
    fact: FactKind,
    decode: Decode,
}

/// A document of the file `path` as the kind's object (a type error names the field), then reduced. A
/// kind with verdicts turns a document that does not decode into a rejected fact of its own (see
/// [`Kind::undecodable`]).
fn decode<K: Kind>(value: serde_yaml::Value, path: &str) -> Result<Decoded, String> {
    let key = key_of::<K>(&value);
    let object: K::Object = match serde_path_to_error::deserialize(value) {
        Ok(object) => object,
        Err(e) => {
            let path = e.path().to_string();
            let error = if path == "." {
                e.into_inner().to_string()
            } else {
                format!("{path}: {}", e.into_inner())
            };
            return match (key, K::undecodable(&error)) {
                (Some(key), Some(fact)) => Ok(Decoded::Fact(key, Some(fact))),
                _ => Err(error),
            };
        }
    };
    let reduced = K::key(&object).and_then(|key| {
        let fact = K::reduce_file(&object, &key, path)?;
        Ok((key, fact))
    });
    Ok(match reduced {
        Ok((key, fact)) => Decoded::Fact(key, fact),
        Err(e) => Decoded::Invalid(e),
    })
}

/// `metadata.namespace`/`metadata.name` of a document that may not decode as a whole.
fn key_of<K: Kind>(value: &serde_yaml::Value) -> Option<ObjectKey> {
    let meta = value.get("metadata")?;
    let text = |k: &str| meta.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let name = text("name").filter(|n| !n.is_empty())?;
    let namespace = text("namespace").unwrap_or_default();
    (namespace.is_empty() != K::NAMESPACED).then(|| ObjectKey::new(namespace, name))
}

struct Decoders(Vec<Decoder>);

impl KindVisitor for Decoders {
    fn visit<K: Kind>(&mut self) {
        self.0.push(Decoder {
            kind: K::name(),
            group: K::group(),
            fact: K::FACT,
            decode: decode::<K>,
        });
    }
}

fn decoders() -> &'static [Decoder] {
    static DECODERS: OnceLock<Decoders> = OnceLock::new();
    &DECODERS
        .get_or_init(|| {
            let mut d = Decoders(Vec::new());
            visit_kinds(&mut d);
            d
        })
        .0
}

/// Reads every document of a file. Kinds meshd does not read are returned by name for the caller to
/// report; a document that does not parse, or holds an object meshd cannot use, fails the whole file
/// (so its last good content stays).
pub fn parse_documents(
    path: &str,
    text: &str,
) -> Result<(Vec<ParsedFact>, Vec<String>), SourceError> {
    let mut facts = Vec::new();
    let mut skipped = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let problem = |problem: String| SourceError::Document {
            path: path.to_string(),
            document,
            problem,
        };
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| problem(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let Some(kind) = value
            .get("kind")
            .and_then(|k| k.as_str())
            .map(str::to_string)
        else {
            return Err(SourceError::NoKind {
                path: path.to_string(),
                document,
            });
        };
        // `apiVersion: <group>/<version>`, or just `<version>` for the core group.
        let group = value
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .map(|v| v.rsplit_once('/').map_or("", |(g, _)| g).to_string());
        let decoder = decoders()
            .iter()
            .find(|d| d.kind == kind && group.as_ref().is_none_or(|g| *g == d.group));
        let Some(decoder) = decoder else {
            skipped.push(kind);
            continue;
        };
        match (decoder.decode)(value, path).map_err(problem)? {
            Decoded::Fact(key, fact) => facts.push((decoder.fact, key, fact)),
            Decoded::Invalid(error) => return Err(problem(error.to_string())),
        }
    }
    Ok((facts, skipped))
}
