//! Reading and checking a Mesh outside the API server: from a YAML file (`meshd webhook --mesh`,
//! `meshd inject --mesh`, the file-fed control plane) or before the operator acts on one. The CRD schema
//! refuses most bad specs at `kubectl apply`; this catches the rest (and specs written before a schema
//! change) with the same field names.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::mesh::{Mesh, MeshSpec};
use crate::values::{IpCidr, parse_include_cidrs};

/// One bad field: its path in the Mesh, the offending value and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason} (got {value:?})")]
pub struct FieldError {
    pub field: String,
    pub value: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read mesh file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("mesh file {path} is not a Mesh: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("mesh {name:?} is invalid: {}", .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        name: String,
        errors: Vec<FieldError>,
    },
}

/// Every problem with a spec, each naming its field; empty when the spec is good.
pub fn validate(spec: &MeshSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut bad = |field: String, value: &dyn ToString, reason: &str| {
        errors.push(FieldError {
            field,
            value: value.to_string(),
            reason: reason.to_string(),
        })
    };
    let capture = &spec.traffic_capture;
    for (field, ports) in [
        ("excludeInboundPorts", &capture.exclude_inbound_ports),
        ("excludeOutboundPorts", &capture.exclude_outbound_ports),
    ] {
        for (i, p) in ports.iter().enumerate() {
            if *p == 0 {
                bad(
                    format!("spec.trafficCapture.{field}[{i}]"),
                    p,
                    "ports are 1-65535",
                );
            }
        }
    }
    for (i, c) in capture.exclude_outbound_cidrs.iter().enumerate() {
        if c.parse::<IpCidr>().is_err() {
            bad(
                format!("spec.trafficCapture.excludeOutboundCIDRs[{i}]"),
                c,
                "not an IPv4 or IPv6 CIDR",
            );
        }
    }
    if parse_include_cidrs(&capture.include_outbound_cidrs.join(",")).is_err() {
        for (i, c) in capture.include_outbound_cidrs.iter().enumerate() {
            if c != "*" && c.parse::<IpCidr>().is_err() {
                bad(
                    format!("spec.trafficCapture.includeOutboundCIDRs[{i}]"),
                    c,
                    "not '*' or an IPv4 or IPv6 CIDR",
                );
            }
        }
    }
    if !(1..=i64::from(i32::MAX)).contains(&spec.proxy.uid) {
        bad(
            "spec.proxy.uid".into(),
            &spec.proxy.uid,
            "must be a non-root uid",
        );
    }
    if spec.proxy.concurrency > 64 {
        bad(
            "spec.proxy.concurrency".into(),
            &spec.proxy.concurrency,
            "must be 0-64",
        );
    }
    if spec.mtls.certificate_ttl().is_none() {
        bad(
            "spec.mtls.certificateTTL".into(),
            &spec.mtls.certificate_ttl,
            "not a duration like 60s, 90m, 24h or 30d between 60s and 90d",
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, g) in spec.gateways.iter().enumerate() {
        if !is_dns_label(&g.name) {
            bad(
                format!("spec.gateways[{i}].name"),
                &g.name,
                "must be a DNS label",
            );
        }
        if !is_dns_label(&g.namespace) {
            bad(
                format!("spec.gateways[{i}].namespace"),
                &g.namespace,
                "must be a DNS label",
            );
        }
        if !seen.insert((&g.namespace, &g.name)) {
            bad(
                format!("spec.gateways[{i}].name"),
                &g.name,
                "duplicate gateway name",
            );
        }
        if g.replicas < 0 {
            bad(
                format!("spec.gateways[{i}].replicas"),
                &g.replicas,
                "must be 0 or more",
            );
        }
        for (j, p) in g.service.ports.iter().enumerate() {
            if p.port == 0 {
                bad(
                    format!("spec.gateways[{i}].service.ports[{j}].port"),
                    &p.port,
                    "ports are 1-65535",
                );
            }
            if p.target_port <= 1024 {
                bad(
                    format!("spec.gateways[{i}].service.ports[{j}].targetPort"),
                    &p.target_port,
                    "the gateway runs as non-root, so targetPort must be above 1024",
                );
            }
        }
    }
    errors
}

/// RFC 1123 label: what Kubernetes accepts as a namespace or Deployment name.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Reads a Mesh from a YAML file and checks it. A file holding only a spec (no apiVersion/kind) is
/// accepted too, named `default`.
pub fn load_mesh_file(path: &Path) -> Result<Mesh, SettingsError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: shown.clone(),
        source,
    })?;
    let mesh = parse_mesh_yaml(&text).map_err(|source| SettingsError::Parse {
        path: shown,
        source,
    })?;
    let errors = validate(&mesh.spec);
    if !errors.is_empty() {
        return Err(SettingsError::Invalid {
            name: mesh_name(&mesh),
            errors,
        });
    }
    Ok(mesh)
}

/// A Mesh document, or a bare spec (named `default`). An error names the field as the file has it
/// (`spec.proxy.uid`, or `proxy.uid` in a bare spec; `the Mesh document` or `the mesh spec` for the
/// whole) and, where serde_yaml knows it, the line.
pub fn parse_mesh_yaml(text: &str) -> Result<Mesh, serde_yaml::Error> {
    let guess = || {
        text.lines()
            .any(|l| l.starts_with("kind:") || l.starts_with("apiVersion:"))
    };
    let whole_mesh = match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(v) if v.is_null() => {
            return Ok(Mesh::new(crate::names::DEFAULT_MESH, MeshSpec::default()));
        }
        Ok(v) => v.get("kind").is_some() || v.get("apiVersion").is_some(),
        Err(e) if e.to_string().contains("more than one document") => {
            return Err(serde::de::Error::custom(
                "the mesh file holds more than one YAML document; it must hold one Mesh (or one spec)",
            ));
        }
        // A syntax error, or a value no YAML value can hold (an integer out of range): the typed
        // reading gives the same error with its field, or a better one (`expected i64`).
        Err(e) => {
            let typed = if guess() {
                read::<Mesh>(text, WHOLE_MESH).err()
            } else {
                read::<MeshSpec>(text, WHOLE_SPEC).err()
            };
            return Err(typed.unwrap_or(e));
        }
    };
    if whole_mesh {
        let mut mesh: Mesh = read(text, WHOLE_MESH)?;
        if mesh.metadata.name.is_none() {
            mesh.metadata.name = Some(crate::names::DEFAULT_MESH.to_string());
        }
        return Ok(mesh);
    }
    Ok(Mesh::new(
        crate::names::DEFAULT_MESH,
        read::<MeshSpec>(text, WHOLE_SPEC)?,
    ))
}

const WHOLE_MESH: &str = "the Mesh document";
const WHOLE_SPEC: &str = "the mesh spec";

/// `text` as a `T`, straight from serde_yaml's reader, whose errors say `proxy.uid: … at line L column
/// C`; serde_path_to_error supplies the path where serde_yaml leaves it out, and an error about the
/// document itself is named `whole`.
fn read<T: DeserializeOwned>(text: &str, whole: &str) -> Result<T, serde_yaml::Error> {
    serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            serde::de::Error::custom(format!("{whole}: {inner}"))
        } else if inner.to_string().starts_with(&path) {
            inner
        } else {
            // serde_yaml does not always say the path itself (a tagged enum value).
            serde::de::Error::custom(format!("{path}: {inner}"))
        }
    })
}

pub fn mesh_name(mesh: &Mesh) -> String {
    mesh.metadata
        .name
        .clone()
        .unwrap_or_else(|| crate::names::DEFAULT_MESH.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::*;

    #[test]
    fn empty_spec_gets_every_default() {
        let mesh = parse_mesh_yaml(
            "apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec: {}\n",
        )
        .unwrap();
        let s = &mesh.spec;
        assert_eq!(s.trust_domain, "cluster.local");
        assert_eq!(s.proxy.uid, 1337);
        assert_eq!(s.injection.native_sidecar, NativeSidecar::Auto);
        assert!(s.injection.hold_application_until_proxy_starts);
        assert_eq!(s.injection.failure_policy, FailurePolicy::Fail);
        assert_eq!(s.traffic_capture.mode, CaptureMode::Iptables);
        assert_eq!(s.traffic_capture.include_outbound_cidrs, vec!["*"]);
        assert_eq!(s.mtls.mode, MtlsMode::Permissive);
        assert_eq!(s.outbound_traffic_policy, OutboundTrafficPolicy::AllowAny);
        assert!(validate(s).is_empty());
    }

    #[test]
    fn bad_fields_are_named() {
        let mut spec = MeshSpec::default();
        spec.traffic_capture.exclude_outbound_cidrs =
            vec!["10.0.0.0/8".into(), "10.0.0.0/33".into()];
        spec.traffic_capture.include_outbound_cidrs = vec!["nope".into()];
        let g = GatewaySpec {
            name: "ingress".into(),
            namespace: "meshd-system".into(),
            replicas: 1,
            service: GatewayServiceSpec::default(),
            resources: default_proxy_resources(),
        };
        spec.gateways = vec![g.clone(), g];
        let errors = validate(&spec);
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.trafficCapture.excludeOutboundCIDRs[1]",
                "spec.trafficCapture.includeOutboundCIDRs[0]",
                "spec.gateways[1].name"
            ]
        );
        assert!(
            errors[0].to_string().contains("\"10.0.0.0/33\""),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn certificate_ttl_defaults_to_24h_and_is_range_checked() {
        let mesh = parse_mesh_yaml("mtls: {mode: STRICT}\n").unwrap();
        assert_eq!(
            mesh.spec.mtls.certificate_ttl(),
            Some(std::time::Duration::from_secs(86_400))
        );
        let table = [
            ("60s", Some(60)),
            ("90m", Some(5_400)),
            ("24h", Some(86_400)),
            ("90d", Some(7_776_000)),
            ("59s", None),
            ("91d", None),
            ("0d", None),
            ("1w", None),
            ("1h30m", None),
            ("", None),
            ("h", None),
            ("+60s", None),
        ];
        for (text, want) in table {
            let got = crate::mesh::parse_certificate_ttl(text).map(|d| d.as_secs());
            assert_eq!(got, want, "{text:?}");
        }
        let mut spec = MeshSpec::default();
        spec.mtls.certificate_ttl = "30s".into();
        let errors = validate(&spec);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "spec.mtls.certificateTTL");
        assert!(errors[0].to_string().contains("\"30s\""), "{}", errors[0]);
        let mesh = parse_mesh_yaml("mtls: {certificateTTL: 60s}\n").unwrap();
        assert_eq!(mesh.spec.mtls.certificate_ttl, "60s");
        // The default stays out of the resolved settings; another value is written.
        let rendered = serde_yaml::to_string(&MeshSpec::default()).unwrap();
        assert!(!rendered.contains("certificateTTL"), "{rendered}");
        let rendered = serde_yaml::to_string(&mesh.spec).unwrap();
        assert!(rendered.contains("certificateTTL: 60s"), "{rendered}");
    }

    #[test]
    fn bare_spec_file_is_the_default_mesh() {
        let mesh = parse_mesh_yaml("mtls: {mode: STRICT}\n").unwrap();
        assert_eq!(mesh_name(&mesh), "default");
        assert_eq!(mesh.spec.mtls.mode, MtlsMode::Strict);
        assert!(
            parse_mesh_yaml("mtls: {mode: SOMETIMES}\n")
                .unwrap_err()
                .to_string()
                .contains("SOMETIMES")
        );
    }

    #[test]
    fn parse_errors_name_the_field_and_the_line() {
        for (text, want) in [
            (
                "proxy: {uid: many}\n",
                "proxy.uid: invalid type: string \"many\", expected i64 at line 1 column 14",
            ),
            (
                "kind: Mesh\nmetadata: {name: m}\nspec:\n  gateways:\n  - {name: a, replicas: x}\n",
                "spec.gateways[0].replicas: invalid type: string \"x\", expected i32 at line 5 column 25",
            ),
            (
                "5\n",
                "the mesh spec: invalid type: integer `5`, expected struct MeshSpec",
            ),
            (
                "kind: Mesh\n",
                "the Mesh document: missing field `metadata`",
            ),
            ("a: 1\n---\nb: 2\n", "more than one YAML document"),
            // Found by the fuzzer (tests/mesh_yaml_fuzz.rs): no field in serde_yaml's own messages.
            (
                "outboundTrafficPolicy: !tag x\n",
                "outboundTrafficPolicy: unknown variant `tag`",
            ),
            (
                "-9223372036854775809\n",
                "the mesh spec: invalid type: integer `-9223372036854775809` as i128",
            ),
            (
                "proxy: {uid: -9223372036854775809}\n",
                "proxy.uid: invalid type: integer `-9223372036854775809` as i128, expected i64",
            ),
        ] {
            let got = parse_mesh_yaml(text).unwrap_err().to_string();
            assert!(
                got.starts_with(want) || got.contains(want),
                "{text:?}: {got}"
            );
        }
    }
}
