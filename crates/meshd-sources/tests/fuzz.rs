//! The config-file parser on arbitrary input (proptest): arbitrary text, arbitrary YAML shapes under the
//! kinds meshd reads, and real documents with a line dropped, a value replaced or the text cut short.
//! It never panics, and every error names the file, and the document or the field.

use meshd_sources::parse_documents;
use proptest::prelude::*;

const PATH: &str = "/etc/meshd/config/fuzz.yaml";

/// Real documents: the translation's golden mesh and the example Mesh.
fn real() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let golden =
        std::fs::read_to_string(root.join("crates/meshd-translate/tests/golden/mesh.yaml"))
            .expect("the golden mesh");
    let mesh = std::fs::read_to_string(root.join("examples/mesh.yaml")).expect("the example Mesh");
    format!("{golden}\n---\n{mesh}")
}

fn check(text: &str) -> Result<(), TestCaseError> {
    match parse_documents(PATH, text) {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = e.to_string();
            prop_assert!(e.starts_with(&format!("{PATH}: document ")), "{e}");
            // `document N: problem` or `document N has no kind`
            let rest = &e[PATH.len() + ": document ".len()..];
            let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
            prop_assert!(n.parse::<usize>().is_ok_and(|n| n >= 1), "{e}");
            prop_assert!(rest.len() > n.len() + 2, "the problem is said: {e}");
            Ok(())
        }
    }
}

/// A YAML value of any shape, a few levels deep.
fn value() -> impl Strategy<Value = serde_yaml::Value> {
    let leaf = prop_oneof![
        Just(serde_yaml::Value::Null),
        any::<bool>().prop_map(serde_yaml::Value::Bool),
        any::<i64>().prop_map(|n| serde_yaml::Value::Number(n.into())),
        any::<f64>().prop_map(|n| serde_yaml::Value::Number(n.into())),
        "[a-zA-Z0-9 ./:_-]{0,12}".prop_map(serde_yaml::Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_yaml::Value::Sequence),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("metadata".to_string()),
                        Just("spec".to_string()),
                        Just("ports".to_string()),
                        Just("port".to_string()),
                        Just("name".to_string()),
                        Just("namespace".to_string()),
                        Just("endpoints".to_string()),
                        Just("addresses".to_string()),
                        Just("status".to_string()),
                        Just("labels".to_string()),
                        "[a-z]{1,8}",
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(|kv| {
                serde_yaml::Value::Mapping(
                    kv.into_iter()
                        .map(|(k, v)| (serde_yaml::Value::String(k), v))
                        .collect(),
                )
            }),
        ]
    })
}

/// A document of a kind meshd reads, with arbitrary fields.
fn document() -> impl Strategy<Value = String> {
    let kinds = prop_oneof![
        Just(("v1", "Service")),
        Just(("v1", "Pod")),
        Just(("discovery.k8s.io/v1", "EndpointSlice")),
        Just(("meshd.io/v1alpha1", "Mesh")),
        Just(("v1", "ConfigMap")),
    ];
    (kinds, value(), value()).prop_map(|((api, kind), metadata, spec)| {
        let mut doc = serde_yaml::Mapping::new();
        doc.insert("apiVersion".into(), api.into());
        doc.insert("kind".into(), kind.into());
        doc.insert("metadata".into(), metadata);
        doc.insert("spec".into(), spec.clone());
        doc.insert("endpoints".into(), spec);
        serde_yaml::to_string(&serde_yaml::Value::Mapping(doc)).unwrap_or_default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text(text in "\\PC{0,200}") {
        check(&text)?;
    }

    #[test]
    fn arbitrary_shapes_of_the_kinds_meshd_reads(docs in proptest::collection::vec(document(), 1..4)) {
        check(&docs.join("---\n"))?;
    }

    #[test]
    fn real_documents_with_a_line_dropped(line in any::<prop::sample::Index>()) {
        let text = real();
        let lines: Vec<&str> = text.lines().collect();
        let drop = line.index(lines.len());
        let edited: Vec<&str> = lines.iter().enumerate().filter(|(i, _)| *i != drop).map(|(_, l)| *l).collect();
        check(&edited.join("\n"))?;
    }

    #[test]
    fn real_documents_with_a_value_replaced(line in any::<prop::sample::Index>(), value in "[^\n]{0,16}") {
        let text = real();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        let at = line.index(lines.len());
        if let Some((key, _)) = lines[at].split_once(": ") {
            lines[at] = format!("{key}: {value}");
        }
        check(&lines.join("\n"))?;
    }

    #[test]
    fn real_documents_cut_short(cut in any::<prop::sample::Index>()) {
        let text = real();
        let mut at = cut.index(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        check(&text[..at])?;
    }
}

#[test]
fn the_real_documents_parse() {
    let (facts, skipped) = parse_documents(PATH, &real()).unwrap();
    assert_eq!(facts.len(), 8, "{facts:?}");
    assert!(skipped.is_empty(), "{skipped:?}");
}
