//! Fuzzing `parse_mesh_yaml` (the `--mesh` files and the Mesh ConfigMap) with arbitrary YAML shapes built
//! from the Mesh's own field names and YAML's odd scalars, and with the example Mesh cut and spliced as
//! text. No panic; every error names a field (`spec.proxy.uid`, `the mesh spec`) or a line; every Mesh
//! that parses validates without a panic, each problem naming a `spec.` field.
//!
//! `MESHD_FUZZ_CASES` sets the number of cases (default 1000).

use meshd_api::settings::{parse_mesh_yaml, validate};
use proptest::prelude::*;
use proptest::sample::Index;

const FIELDS: [&str; 40] = [
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "spec",
    "trustDomain",
    "proxy",
    "image",
    "logLevel",
    "resources",
    "limits",
    "requests",
    "cpu",
    "memory",
    "concurrency",
    "uid",
    "injection",
    "nativeSidecar",
    "holdApplicationUntilProxyStarts",
    "failurePolicy",
    "trafficCapture",
    "mode",
    "excludeInboundPorts",
    "excludeOutboundPorts",
    "excludeOutboundCIDRs",
    "includeOutboundCIDRs",
    "mtls",
    "outboundTrafficPolicy",
    "gateways",
    "namespace",
    "replicas",
    "service",
    "type",
    "ports",
    "port",
    "targetPort",
    "labels",
    "status",
    "conditions",
    "<<",
];

const SCALARS: [&str; 38] = [
    "true",
    "false",
    "yes",
    "no",
    "on",
    "off",
    "~",
    "null",
    "0",
    "-1",
    "65536",
    "99999",
    "1e3",
    "0x10",
    "0o17",
    "1.5",
    ".inf",
    ".nan",
    "'quoted'",
    "\"\"",
    "\"*\"",
    "10.0.0.0/8",
    "10.0.0.0/33",
    "STRICT",
    "PERMISSIVE",
    "iptables",
    "none",
    "auto",
    "Fail",
    "LoadBalancer",
    "meshd.io/v1alpha1",
    "Mesh",
    "!!binary aGk=",
    "!tag x",
    "2147483648",
    "-9223372036854775809",
    "日本語",
    "'a: b'",
];

#[derive(Debug, Clone)]
enum Node {
    Scalar(String),
    Map(Vec<(String, Node)>),
    List(Vec<Node>),
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::sample::select(&FIELDS[..]).prop_map(String::from),
        1 => "[a-zA-Z][a-zA-Z0-9]{0,7}",
    ]
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(&SCALARS[..]).prop_map(String::from),
        1 => "[a-z0-9./*-]{0,12}",
    ]
}

fn node() -> impl Strategy<Value = Node> {
    scalar()
        .prop_map(Node::Scalar)
        .prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec((key(), inner.clone()), 0..6).prop_map(Node::Map),
                proptest::collection::vec(inner, 0..4).prop_map(Node::List),
            ]
        })
}

/// Flow style, one line, or block style, nested by indentation.
fn render(n: &Node, block: bool, indent: usize, out: &mut String) {
    match (n, block) {
        (Node::Scalar(s), _) => out.push_str(s),
        (Node::Map(m), false) => {
            out.push('{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push_str(": ");
                render(v, false, 0, out);
            }
            out.push('}');
        }
        (Node::List(l), false) => {
            out.push('[');
            for (i, v) in l.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render(v, false, 0, out);
            }
            out.push(']');
        }
        (Node::Map(m), true) if !m.is_empty() => {
            for (k, v) in m {
                out.push('\n');
                out.push_str(&" ".repeat(indent));
                out.push_str(k);
                out.push(':');
                if !matches!(v, Node::Map(_) | Node::List(_)) {
                    out.push(' ');
                }
                render(v, true, indent + 2, out);
            }
        }
        (Node::List(l), true) if !l.is_empty() => {
            for v in l {
                out.push('\n');
                out.push_str(&" ".repeat(indent));
                out.push_str("- ");
                render(v, false, 0, out);
            }
        }
        (empty, true) => render(empty, false, 0, out),
    }
}

/// The top-level fields an error can start with, besides the two names of the document itself.
const ROOTS: [&str; 12] = [
    "apiVersion",
    "kind",
    "metadata",
    "spec",
    "status",
    "trustDomain",
    "proxy",
    "injection",
    "trafficCapture",
    "mtls",
    "outboundTrafficPolicy",
    "gateways",
];

fn names_a_field_or_a_line(message: &str) -> bool {
    let head = message.split(": ").next().unwrap_or("");
    let root = head.split(['.', '[']).next().unwrap_or("");
    message.contains(" at line ")
        || message.starts_with("the Mesh document: ")
        || message.starts_with("the mesh spec: ")
        || message.contains("more than one YAML document")
        // serde_yaml names the key, without a line.
        || message.starts_with("duplicate entry with key ")
        || ROOTS.contains(&root)
}

fn check(text: &str) -> Result<(), TestCaseError> {
    match parse_mesh_yaml(text) {
        Err(e) => {
            let message = e.to_string();
            prop_assert!(names_a_field_or_a_line(&message), "{:?}: {}", text, message);
        }
        Ok(mesh) => {
            for problem in validate(&mesh.spec) {
                prop_assert!(problem.field.starts_with("spec."), "{}", problem);
            }
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("MESHD_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

const EXAMPLE: &str = include_str!("../../../examples/mesh.yaml");

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_yaml_shapes(n in node(), block in any::<bool>(), wrap in any::<bool>()) {
        let mut text = String::new();
        if wrap {
            // As a whole Mesh document around the shape.
            text.push_str("apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: fuzz}\nspec:");
            render(&n, true, 2, &mut text);
        } else {
            render(&n, block, 0, &mut text);
        }
        text.push('\n');
        check(&text)?;
    }

    #[test]
    fn the_example_cut_and_spliced(
        cuts in proptest::collection::vec((any::<Index>(), any::<Index>(), 0u8..4), 1..4),
        splice in scalar(),
    ) {
        let mut lines: Vec<String> = EXAMPLE.lines().map(String::from).collect();
        for (at, col, what) in &cuts {
            if lines.is_empty() {
                break;
            }
            let i = at.index(lines.len());
            match what {
                0 => { lines.remove(i); }
                1 => { let l = lines[i].clone(); lines.insert(i, l); }
                2 => {
                    // Replace a value: everything after the first ": " on the line.
                    if let Some(p) = lines[i].find(": ") {
                        lines[i].truncate(p + 2);
                        lines[i].push_str(&splice);
                    }
                }
                _ => {
                    let chars: Vec<char> = lines[i].chars().collect();
                    let keep = col.index(chars.len() + 1);
                    lines[i] = chars[..keep].iter().collect();
                }
            }
        }
        check(&lines.join("\n"))?;
    }
}

#[test]
fn the_checker_refuses_a_bare_reason() {
    assert!(!names_a_field_or_a_line(
        "invalid type: integer `5`, expected struct MeshSpec"
    ));
    assert!(names_a_field_or_a_line(
        "proxy.uid: invalid type: string \"x\", expected i64"
    ));
    assert!(names_a_field_or_a_line("spec.gateways[0].name: bad"));
}
