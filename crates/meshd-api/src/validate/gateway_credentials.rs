//! A Gateway's credentials against the Secrets that exist (SPEC §10): every SIMPLE or MUTUAL server's
//! `credentialName` must name a `kubernetes.io/tls` Secret in the namespace of each gateway pod the
//! Gateway selects (the Gateway's own namespace when it selects none yet), and for MUTUAL that Secret
//! must carry `ca.crt`. One function for the control plane's verdicts and for `meshd validate`.

use std::collections::{BTreeMap, BTreeSet};

use super::FieldError;
use super::gateway_refs::selects_pod;
use crate::names::LABEL_GATEWAY;
use crate::networking::GatewaySpec;
use crate::networking::gateway::ServerTlsMode;

/// What is known of one `kubernetes.io/tls` Secret: whether it has `ca.crt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretFacts {
    pub has_ca: bool,
}

/// The namespaces a Gateway's credentials are looked up in: those of the gateway pods it selects
/// (`pods`: namespace and labels of pods; only gateway pods count), else the Gateway's own.
pub fn credential_namespaces<'a>(
    spec: &GatewaySpec,
    gateway_namespace: &str,
    pods: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, String>)>,
) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = pods
        .into_iter()
        .filter(|(_, labels)| labels.contains_key(LABEL_GATEWAY) && selects_pod(spec, labels))
        .map(|(ns, _)| ns.to_string())
        .collect();
    if out.is_empty() {
        out.insert(gateway_namespace.to_string());
    }
    out
}

/// The problems of a Gateway's `credentialName`s: one per server whose Secret is missing (or, for
/// MUTUAL, has no `ca.crt`) in one of `namespaces`. `secret(namespace, name)` answers what exists.
pub fn credential_problems(
    spec: &GatewaySpec,
    namespaces: &BTreeSet<String>,
    secret: &dyn Fn(&str, &str) -> Option<SecretFacts>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, server) in spec.servers.iter().enumerate() {
        let Some(tls) = &server.tls else { continue };
        let mutual = match tls.mode {
            Some(ServerTlsMode::Simple) => false,
            Some(ServerTlsMode::Mutual) => true,
            // PASSTHROUGH does not terminate; MESH_MUTUAL uses the mesh's certificate.
            _ => continue,
        };
        let Some(name) = tls.credential_name.as_deref() else {
            continue; // required: the object check reports it
        };
        let path = format!("spec.servers[{i}].tls.credentialName");
        let missing: Vec<&str> = namespaces
            .iter()
            .filter(|ns| secret(ns, name).is_none())
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            errors.push(
                FieldError::new(
                    &path,
                    format!(
                        "names no kubernetes.io/tls Secret in namespace {}",
                        missing.join(", ")
                    ),
                )
                .with_str(name),
            );
            continue;
        }
        if mutual {
            let no_ca: Vec<&str> = namespaces
                .iter()
                .filter(|ns| secret(ns, name).is_some_and(|s| !s.has_ca))
                .map(String::as_str)
                .collect();
            if !no_ca.is_empty() {
                errors.push(
                    FieldError::new(
                        &path,
                        format!(
                            "names a Secret without ca.crt in namespace {} (MUTUAL needs the client CA)",
                            no_ca.join(", ")
                        ),
                    )
                    .with_str(name),
                );
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::networking::Protocol;
    use crate::networking::gateway::{Server, ServerPort, ServerTlsSettings};

    fn server(mode: ServerTlsMode, credential: &str) -> Server {
        Server {
            port: ServerPort {
                number: 443,
                protocol: Some(Protocol::Https),
                name: "https".into(),
                ..Default::default()
            },
            hosts: vec!["*".into()],
            tls: Some(ServerTlsSettings {
                mode: Some(mode),
                credential_name: Some(credential.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_missing_secret_is_named_by_its_field_and_namespace() {
        let spec = GatewaySpec {
            servers: vec![
                server(ServerTlsMode::Simple, "web-cert"),
                server(ServerTlsMode::Simple, "gone"),
                server(ServerTlsMode::Passthrough, "ignored"),
            ],
            ..Default::default()
        };
        let ns: BTreeSet<String> = ["edge".to_string()].into();
        let exists = |ns: &str, name: &str| {
            (ns == "edge" && name == "web-cert").then_some(SecretFacts { has_ca: false })
        };
        let errors = credential_problems(&spec, &ns, &exists);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].to_string(),
            "spec.servers[1].tls.credentialName: \"gone\" names no kubernetes.io/tls Secret in namespace edge"
        );
    }

    #[test]
    fn mutual_needs_the_client_ca() {
        let spec = GatewaySpec {
            servers: vec![server(ServerTlsMode::Mutual, "web-cert")],
            ..Default::default()
        };
        let ns: BTreeSet<String> = ["edge".to_string()].into();
        let without = |_: &str, _: &str| Some(SecretFacts { has_ca: false });
        let errors = credential_problems(&spec, &ns, &without);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].problem.contains("without ca.crt"), "{errors:?}");
        let with = |_: &str, _: &str| Some(SecretFacts { has_ca: true });
        assert!(credential_problems(&spec, &ns, &with).is_empty());
    }

    #[test]
    fn credentials_are_looked_up_where_the_selected_gateway_pods_run() {
        let spec = GatewaySpec {
            selector: labels(&[("istio", "ingressgateway")]),
            ..Default::default()
        };
        let gw = labels(&[("istio", "ingressgateway"), (LABEL_GATEWAY, "edge")]);
        let not_gateway = labels(&[("istio", "ingressgateway")]);
        let other = labels(&[("istio", "egress"), (LABEL_GATEWAY, "out")]);
        let pods = [("edge", &gw), ("apps", &not_gateway), ("out", &other)];
        assert_eq!(
            credential_namespaces(&spec, "config", pods),
            BTreeSet::from(["edge".to_string()])
        );
        assert_eq!(
            credential_namespaces(&spec, "config", [("apps", &not_gateway)]),
            BTreeSet::from(["config".to_string()]),
            "selecting no gateway pod: the Gateway's own namespace"
        );
    }
}
