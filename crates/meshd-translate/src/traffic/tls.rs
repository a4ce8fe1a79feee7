//! A DestinationRule's `tls` on a cluster (SPEC §8), Istio's way: an explicit setting wins over auto
//! mTLS. `DISABLE` is plaintext to every endpoint; `SIMPLE` originates TLS (the server verified
//! against `caCertificates`, else the system bundle, unless `insecureSkipVerify`; `subjectAltNames`
//! checked; `sni` sent); `MUTUAL` adds the client certificate and key files; `MESH_MUTUAL` (and
//! `ISTIO_MUTUAL`) is the mesh's own mTLS to every endpoint, the SAN check against
//! `subjectAltNames` or else the destination's SPIFFE identities. The files are read by the
//! proxy (paths in its filesystem), as Istio's sidecars do; with `credentialName` the certificate and
//! CA come over SDS instead, from the Secret of that name in the proxy's own namespace (Istio's
//! `kubernetes://<name>` and `kubernetes://<name>-cacert`).

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, SubjectAltNameMatcher, TlsCertificate,
    TlsParameters, UpstreamTlsContext, common_tls_context, subject_alt_name_matcher,
    tls_parameters,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use meshd_api::networking::destination_rule::{ClientTlsMode, ClientTlsSettings, TrafficPolicy};

use crate::configs::Configs;
use crate::credentials::{
    credential_ca_sds_name, credential_sds_name, upstream_credential_sds_config,
};
use crate::envoy::pack;
use crate::facts::{Fact, FactKind};
use crate::mtls::{mesh_mtls_transport_socket, san, tls_socket};

/// The trust bundle a `SIMPLE`/`MUTUAL` origination verifies against when the rule names none
/// (Istio's default: the system roots of the proxy's image).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Applies an explicit `tls` setting to `cluster`, replacing auto mTLS; `false` when there is none
/// (or no mode), so auto mTLS applies. `sni` and `identities` are what auto mTLS would use.
pub(crate) fn apply(
    cluster: &mut Cluster,
    tls: Option<&ClientTlsSettings>,
    mesh_sni: &str,
    identities: &[String],
) -> bool {
    let Some((tls, mode)) = tls.and_then(|t| Some((t, t.mode?))) else {
        return false;
    };
    cluster.transport_socket_matches.clear();
    cluster.transport_socket = match mode {
        ClientTlsMode::Disable => None,
        ClientTlsMode::MeshMutual | ClientTlsMode::IstioMutual => {
            let sni = tls.sni.as_deref().unwrap_or(mesh_sni);
            let sans = if tls.subject_alt_names.is_empty() {
                identities.to_vec()
            } else {
                tls.subject_alt_names.clone()
            };
            Some(mesh_mtls_transport_socket(sni, &sans))
        }
        ClientTlsMode::Simple | ClientTlsMode::Mutual => {
            Some(tls_socket(pack(&originate(tls, mode))))
        }
    };
    true
}

fn file(path: &str) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    }
}

/// A SAN to expect: a URI (a SPIFFE id) when it has a scheme, else a DNS name.
fn expected_san(name: &str) -> SubjectAltNameMatcher {
    if name.contains("://") {
        return san(string_matcher::MatchPattern::Exact(name.to_string()));
    }
    SubjectAltNameMatcher {
        san_type: subject_alt_name_matcher::SanType::Dns as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(string_matcher::MatchPattern::Exact(name.to_string())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// TLS origination (`SIMPLE`, `MUTUAL`) from the rule's files, or its `credentialName` over SDS.
fn originate(tls: &ClientTlsSettings, mode: ClientTlsMode) -> UpstreamTlsContext {
    let mut common = CommonTlsContext {
        // TLS 1.2 or newer; Envoy's ciphers (the server is not the mesh's).
        tls_params: Some(TlsParameters {
            tls_minimum_protocol_version: tls_parameters::TlsProtocol::TlSv12 as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let verify = tls.insecure_skip_verify != Some(true);
    // The checks on the server's certificate beyond its CA.
    let checks = CertificateValidationContext {
        match_typed_subject_alt_names: tls
            .subject_alt_names
            .iter()
            .map(|n| expected_san(n))
            .collect(),
        crl: tls.ca_crl.as_deref().map(file),
        ..Default::default()
    };
    if let Some(secret) = &tls.credential_name {
        // As Istio: MUTUAL presents the Secret's certificate; the CA is its `-cacert` (the Secret's
        // `ca.crt`, or a Secret of that name), combined with the rule's own checks.
        if mode == ClientTlsMode::Mutual {
            common.tls_certificate_sds_secret_configs =
                vec![upstream_credential_sds_config(&credential_sds_name(secret))];
        }
        common.validation_context_type = verify.then(|| {
            common_tls_context::ValidationContextType::CombinedValidationContext(
                common_tls_context::CombinedCertificateValidationContext {
                    default_validation_context: Some(checks),
                    validation_context_sds_secret_config: Some(upstream_credential_sds_config(
                        &credential_ca_sds_name(secret),
                    )),
                    ..Default::default()
                },
            )
        });
    } else {
        common.validation_context_type = verify.then(|| {
            common_tls_context::ValidationContextType::ValidationContext(
                CertificateValidationContext {
                    trusted_ca: Some(file(
                        tls.ca_certificates.as_deref().unwrap_or(SYSTEM_CA_BUNDLE),
                    )),
                    ..checks
                },
            )
        });
        if let (ClientTlsMode::Mutual, Some(cert), Some(key)) =
            (mode, &tls.client_certificate, &tls.private_key)
        {
            common.tls_certificates = vec![TlsCertificate {
                certificate_chain: Some(file(cert)),
                private_key: Some(file(key)),
                ..Default::default()
            }];
        }
    }
    UpstreamTlsContext {
        common_tls_context: Some(common),
        sni: tls.sni.clone().unwrap_or_default(),
        ..Default::default()
    }
}

/// The Secrets that the DestinationRules in force name as `tls.credentialName` (the rule's, its
/// ports', its subsets'): the ones a sidecar gets over SDS, from its own namespace. Sidecars get no
/// other Secret (a gateway gets its namespace's, for its servers).
pub(crate) fn credential_names(configs: &Configs) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |policy: Option<&TrafficPolicy>| {
        let Some(policy) = policy else { return };
        let ports = policy.port_level_settings.iter().map(|p| p.tls.as_ref());
        for tls in std::iter::once(policy.tls.as_ref()).chain(ports).flatten() {
            if let Some(name) = &tls.credential_name {
                out.insert(name.clone());
            }
        }
    };
    for (_, fact) in configs.in_force(FactKind::DestinationRule) {
        let Fact::DestinationRule(rule) = fact else {
            continue;
        };
        add(rule.spec.traffic_policy.as_ref());
        for subset in &rule.spec.subsets {
            add(subset.traffic_policy.as_ref());
        }
    }
    out
}
