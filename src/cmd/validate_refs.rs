//! `meshd validate`'s checks between resources (SPEC §8, §10): the control plane's own verdicts
//! (`meshd_api::validate::verdicts::judge`) over the resources of one scope — a FILE alone, or every
//! file of a DIR together — against the scope's Services and ServiceEntries; and each Gateway's
//! `credentialName`s against the scope's `kubernetes.io/tls` Secrets where its gateway pods (the scope's
//! Pods) run. A TLS Secret whose certificate or key does not parse is reported as the control plane
//! would refuse it. A resource already invalid on its own is reported by the object checks, not again
//! here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use meshd_api::networking::{
    DestinationRuleSpec, GatewaySpec, ServiceEntrySpec, VirtualServiceSpec,
};
use meshd_api::validate::Document;
use meshd_api::validate::FieldError;
use meshd_api::validate::gateway_credentials::{
    SecretFacts, credential_namespaces, credential_problems,
};
use meshd_api::validate::verdicts::{Candidate, Judged, judge};
use meshd_index::Kind;
use meshd_translate::facts::{Fact, ObjectKey};

/// One resource of a scope with its file and object-level problems.
struct Entry<T> {
    file: PathBuf,
    namespace: String,
    name: String,
    spec: T,
    errors: Vec<FieldError>,
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
    /// `kubernetes.io/tls` Secrets that the control plane would use, by (namespace, name).
    secrets: BTreeMap<(String, String), SecretFacts>,
    /// Pods: namespace and labels (Gateways select gateway pods among them).
    pods: Vec<(String, BTreeMap<String, String>)>,
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
                self.gateways
                    .push(entry(file, &namespace, name, gw.spec.clone(), errors));
            }
            Document::Pod(pod) => {
                let labels = pod.metadata.labels.clone().unwrap_or_default();
                self.pods.push((namespace, labels));
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
        let j = judge(domain, &self.services, &ses, &drs, &vss);
        let mut out = Vec::new();
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
        out.extend(self.reduced.iter().cloned());
        let secret = |ns: &str, name: &str| {
            self.secrets
                .get(&(ns.to_string(), name.to_string()))
                .copied()
        };
        for gw in self.gateways.iter().filter(|g| g.errors.is_empty()) {
            let pods = self.pods.iter().map(|(ns, l)| (ns.as_str(), l));
            let namespaces = credential_namespaces(&gw.spec, &gw.namespace, pods);
            for error in credential_problems(&gw.spec, &namespaces, &secret) {
                out.push(format!(
                    "{}: Gateway {}/{}: {error}",
                    gw.file.display(),
                    gw.namespace,
                    gw.name
                ));
            }
        }
        out
    }
}

fn candidates<T>(list: &[Entry<T>]) -> Vec<Candidate<'_, T>> {
    list.iter()
        .map(|e| Candidate {
            namespace: &e.namespace,
            name: &e.name,
            created: None,
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
