//! What the golden tests share: objects from YAML reduced by the registered kinds, translation rendered
//! as Envoy's proto-JSON, and the golden files (`crates/meshd-translate/tests/golden`; regenerate with
//! `MESHD_BLESS=1`, then review the diff).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use meshd_index::{Kind, KindVisitor, visit_kinds};
use meshd_translate::facts::FactChange;
use meshd_translate::{ProxyConfig, ResourceType};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::{Map, Value};

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../meshd-translate/tests/golden")
}

type Reduce = fn(serde_yaml::Value) -> FactChange;

fn reduce<K: Kind>(value: serde_yaml::Value) -> FactChange {
    let object: K::Object = serde_yaml::from_value(value).unwrap();
    let (key, fact) = K::key_and_fact(&object).unwrap();
    FactChange {
        kind: K::FACT,
        key,
        fact,
    }
}

struct Reducers(Vec<(String, Reduce)>);

impl KindVisitor for Reducers {
    fn visit<K: Kind>(&mut self) {
        self.0.push((K::name(), reduce::<K>));
    }
}

/// Every document of a YAML text reduced by its kind's reducer, in order.
pub fn reduce_documents(text: &str) -> Vec<FactChange> {
    let mut reducers = Reducers(Vec::new());
    visit_kinds(&mut reducers);
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| -> serde_yaml::Value { serde::Deserialize::deserialize(doc).unwrap() })
        .filter(|value| !value.is_null())
        .map(|value| {
            let kind = value["kind"].as_str().unwrap().to_string();
            let (_, reduce) = reducers
                .0
                .iter()
                .find(|(k, _)| *k == kind)
                .unwrap_or_else(|| panic!("no kind {kind} in the registry"));
            reduce(value)
        })
        .collect()
}

/// A golden mesh file's text; a file may start with `# include: OTHER`: OTHER's objects come first.
pub fn read_with_include(file: &str) -> String {
    let own = std::fs::read_to_string(golden_dir().join(file)).unwrap();
    let mut text = String::new();
    if let Some(other) = own
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# include: "))
    {
        text = std::fs::read_to_string(golden_dir().join(other.trim())).unwrap();
        text.push_str("\n---\n");
    }
    text.push_str(&own);
    text
}

/// A golden mesh file, reduced.
pub fn load(file: &str) -> Vec<FactChange> {
    reduce_documents(&std::fs::read_to_string(golden_dir().join(file)).unwrap())
}

/// envoy-types ships Envoy's descriptor set beside its generated code; it turns our bytes into the
/// JSON Envoy itself would print in `/config_dump`.
pub fn descriptor_pool() -> DescriptorPool {
    if let Ok(path) = std::env::var("MESHD_ENVOY_DESCRIPTORS") {
        return DescriptorPool::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    }
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"));
    let mut found: Vec<PathBuf> = std::fs::read_dir(cargo_home.join("registry/src"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|index| {
            std::fs::read_dir(index.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("envoy-types-0.7."))
        })
        .map(|p| p.join("src/generated/types.bin"))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    let path = found.pop().expect(
        "envoy-types' types.bin under $CARGO_HOME/registry/src (or set MESHD_ENVOY_DESCRIPTORS)",
    );
    DescriptorPool::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
}

/// A proxy's resources of the given types as proto-JSON, by type (`cds`, `eds`, `lds`, `rds`).
pub fn render_types(pool: &DescriptorPool, config: &ProxyConfig, types: &[ResourceType]) -> Value {
    render_with(pool, types, |ty| config.resources(ty).collect())
}

/// Only the proxy's own resources of the given types (a gateway's listeners and route tables).
pub fn render_own(pool: &DescriptorPool, config: &ProxyConfig, types: &[ResourceType]) -> Value {
    render_with(pool, types, |ty| config.own(ty).iter().collect())
}

fn render_with<'a>(
    pool: &DescriptorPool,
    types: &[ResourceType],
    of: impl Fn(ResourceType) -> Vec<&'a std::sync::Arc<meshd_translate::Resource>>,
) -> Value {
    let options = SerializeOptions::new().skip_default_fields(true);
    let mut out = Map::new();
    for ty in types {
        let list: Vec<Value> = of(*ty)
            .into_iter()
            .map(|r| {
                let full_name = r.body.type_url.trim_start_matches("type.googleapis.com/");
                let desc = pool.get_message_by_name(full_name).unwrap();
                let msg = DynamicMessage::decode(desc, r.body.value.as_slice()).unwrap();
                msg.serialize_with_options(serde_json::value::Serializer, &options)
                    .unwrap()
            })
            .collect();
        out.insert(ty.short().to_string(), Value::Array(list));
    }
    Value::Object(out)
}

pub fn render(pool: &DescriptorPool, config: &ProxyConfig) -> Value {
    render_types(pool, config, &ResourceType::ALL)
}

pub fn check_golden(name: &str, actual: &Value) {
    let path = golden_dir().join(name);
    let text = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("MESHD_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with MESHD_BLESS=1 to create it",
            path.display()
        )
    });
    pretty_assertions::assert_eq!(
        want,
        text,
        "{} differs; MESHD_BLESS=1 regenerates it",
        path.display()
    );
}
