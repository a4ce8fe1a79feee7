//! `meshd validate`'s checks between resources (SPEC §8, §10): the control plane's own verdicts
//! (`meshd_api::validate::verdicts::judge`) over the resources of one scope — a FILE alone, or every
//! file of a DIR together — against the scope's Services and ServiceEntries, and Gateways against each
//! other, the scope's gateway Pods and its `kubernetes.io/tls` Secrets where those pods run (SPEC §10):
//! a Gateway whose `credentialName` names no Secret is rejected, as the control plane rejects it. A
//! TLS Secret whose certificate or key does not parse is reported as the control plane would refuse
//! it. A resource already invalid on its own is reported by the object checks, not again here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use meshd_api::networking::{
    DestinationRuleSpec, GatewaySpec, ServiceEntrySpec, VirtualServiceSpec,
};
use meshd_api::status::reason;
use meshd_api::validate::Document;
use meshd_api::validate::FieldError;
use meshd_api::validate::gateway_credentials::{
    SecretFacts, credential_namespaces, credential_problems,
};
use meshd_api::validate::gateway_refs::{GatewayPod, GatewayRef, judge_gateways};
use meshd_api::validate::verdicts::{Candidate, Judged, judge, pick};
use meshd_index::Kind;
use meshd_translate::facts::{Fact, ObjectKey};

/// One resource of a scope with its file and object-level problems.
struct Entry<T> {
    file: PathBuf,
    namespace: String,
    name: String,
    spec: T,
    errors: Vec<FieldError>,
    /// `creationTimestamp` in seconds, where the older wins (Gateways' ports).
    created: Option<i64>,
}

/// The resources of one scope.
#[derive(Default)]
pub struct Scope {
    /// Service FQDN → (`namespace/name`, port numbers).
    services: BTreeMap<String, (String, Vec<u16>)>,
    service_entries: Vec<Entry<ServiceEntrySpec>>,
    destination_rules: Vec<Entry<DestinationRuleSpec>>,
    virtual_services: Vec<Entry<VirtualServiceSpec>>,
    gateways: Vec<Entry<GatewaySpec>>,
    /// Gateway pods (labelled `meshd.io/gateway`): their namespace and labels.
    gateway_pods: Vec<(String, BTreeMap<String, String>)>,
    /// `kubernetes.io/tls` Secrets that the control plane would use, by (namespace, name).
    secrets: BTreeMap<(String, String), SecretFacts>,
    /// Problems found outside the object checks (a TLS Secret whose PEM does not parse).
    reduced: Vec<String>,
}

impl Scope {
    /// Adds one parsed document of `file` (`errors`: its object-level problems).
    pub fn add(
        &mut self,
        file: &std::path::Path,
        namespace: Option<&str>,
        name: &str,
        document: &Document,
        errors: &[FieldError],
        domain: &str,
    ) {
        let namespace = namespace.unwrap_or("default").to_string();
        fn entry<T>(
            file: &std::path::Path,
            namespace: &str,
            name: &str,
            spec: T,
            errors: &[FieldError],
        ) -> Entry<T> {
            Entry {
                file: file.to_path_buf(),
                namespace: namespace.to_string(),
                name: name.to_string(),
                spec,
                errors: errors.to_vec(),
                created: None,
            }
        }
        match document {
            Document::Service(s) => {
                let ports = s
                    .spec
                    .iter()
                    .flat_map(|spec| spec.ports.iter().flatten())
                    .filter_map(|p| u16::try_from(p.port).ok())
                    .collect();
                self.services.insert(
                    format!("{name}.{namespace}.svc.{domain}"),
                    (format!("{namespace}/{name}"), ports),
                );
            }
            Document::ServiceEntry(se) => {
                self.service_entries
                    .push(entry(file, &namespace, name, se.spec.clone(), errors));
            }
            Document::DestinationRule(dr) => {
                self.destination_rules
                    .push(entry(file, &namespace, name, dr.spec.clone(), errors));
            }
            Document::VirtualService(vs) => {
                self.virtual_services
                    .push(entry(file, &namespace, name, vs.spec.clone(), errors));
            }
            Document::Gateway(gw) => {
                let mut e = entry(file, &namespace, name, gw.spec.clone(), errors);
                e.created = gw
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second());
                self.gateways.push(e);
            }
            Document::Pod(pod) => {
                let labels = pod.metadata.labels.clone().unwrap_or_default();
                if labels.contains_key(meshd_api::names::LABEL_GATEWAY) {
                    self.gateway_pods.push((namespace, labels));
                }
            }
            Document::Secret(secret) if errors.is_empty() => {
                let key = ObjectKey::new(namespace.clone(), name);
                match meshd_index::TlsSecretKind::reduce(secret, &key) {
                    Ok(Some(Fact::TlsCredential(c))) => {
                        let facts = SecretFacts {
                            has_ca: c.ca.is_some(),
                        };
                        self.secrets.insert((namespace, name.to_string()), facts);
                    }
                    Ok(_) => {}
                    Err(e) => self.reduced.push(format!("{}: {e}", file.display())),
                }
            }
            _ => {}
        }
    }

    /// Every problem between the scope's resources, one line each (`FILE: KIND NS/NAME: problem`).
    pub fn problems(&self, domain: &str) -> Vec<String> {
        let ses = candidates(&self.service_entries);
        let drs = candidates(&self.destination_rules);
        let vss = candidates(&self.virtual_services);
        let gws = candidates(&self.gateways);
        let pods: Vec<GatewayPod<'_>> = self
            .gateway_pods
            .iter()
            .map(|(namespace, labels)| GatewayPod { namespace, labels })
            .collect();
        let secret = |ns: &str, name: &str| {
            self.secrets
                .get(&(ns.to_string(), name.to_string()))
                .copied()
        };
        // As the control plane: a Gateway whose credentials are missing is rejected whole.
        let gj = judge_gateways(&gws, &pods, |i, spec| {
            let pods = self.gateway_pods.iter().map(|(ns, l)| (ns.as_str(), l));
            let namespaces = credential_namespaces(spec, &self.gateways[i].namespace, pods);
            let problems = credential_problems(spec, &namespaces, &secret);
            if problems.is_empty() {
                Ok(())
            } else {
                Err((reason::DANGLING_REFERENCE, problems))
            }
        });
        let in_force: Vec<GatewayRef<'_>> = gws
            .iter()
            .zip(&gj)
            .filter_map(|(c, j)| {
                Some(GatewayRef {
                    namespace: c.namespace,
                    name: c.name,
                    spec: pick(c, j)?,
                })
            })
            .collect();
        let j = judge(domain, &self.services, &ses, &drs, &vss, &in_force);
        // The Secrets the control plane would refuse first: a Gateway naming one is reported next.
        let mut out = self.reduced.clone();
        lines(&mut out, "Gateway", &self.gateways, &gj);
        lines(
            &mut out,
            "ServiceEntry",
            &self.service_entries,
            &j.service_entries,
        );
        lines(
            &mut out,
            "DestinationRule",
            &self.destination_rules,
            &j.destination_rules,
        );
        lines(
            &mut out,
            "VirtualService",
            &self.virtual_services,
            &j.virtual_services,
        );
        out
    }
}

fn candidates<T>(list: &[Entry<T>]) -> Vec<Candidate<'_, T>> {
    list.iter()
        .map(|e| Candidate {
            namespace: &e.namespace,
            name: &e.name,
            created: e.created,
            latest: &e.spec,
            latest_errors: &e.errors,
            previous: None,
        })
        .collect()
}

fn lines<T>(out: &mut Vec<String>, kind: &str, list: &[Entry<T>], judged: &[Judged]) {
    for (e, j) in list.iter().zip(judged) {
        let Some((_, errors)) = &j.rejected else {
            continue;
        };
        if !e.errors.is_empty() {
            continue; // printed by the object checks
        }
        for error in errors {
            out.push(format!(
                "{}: {kind} {}/{}: {error}",
                e.file.display(),
                e.namespace,
                e.name
            ));
        }
    }
}
