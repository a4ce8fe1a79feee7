//! A DestinationRule's `tls` on a cluster (SPEC §8), Istio's way: an explicit setting wins over auto
//! mTLS. `DISABLE` is plaintext to every endpoint; `SIMPLE` originates TLS (the server verified
//! against `caCertificates`, else the system bundle, unless `insecureSkipVerify`; `subjectAltNames`
//! checked; `sni` sent); `MUTUAL` adds the client certificate and key files; `MESH_MUTUAL` (and
//! `ISTIO_MUTUAL`) is the mesh's own mTLS to every endpoint, the SAN check against
//! `subjectAltNames` or else the destination's SPIFFE identities. The files are read by the
//! proxy (paths in its filesystem), as Istio's sidecars do.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, SubjectAltNameMatcher, TlsCertificate,
    TlsParameters, UpstreamTlsContext, common_tls_context, subject_alt_name_matcher,
    tls_parameters,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use meshd_api::networking::destination_rule::{ClientTlsMode, ClientTlsSettings};

use crate::envoy::pack;
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

/// TLS origination (`SIMPLE`, `MUTUAL`) from the rule's files.
fn originate(tls: &ClientTlsSettings, mode: ClientTlsMode) -> UpstreamTlsContext {
    let validation = (tls.insecure_skip_verify != Some(true)).then(|| {
        common_tls_context::ValidationContextType::ValidationContext(CertificateValidationContext {
            trusted_ca: Some(file(
                tls.ca_certificates.as_deref().unwrap_or(SYSTEM_CA_BUNDLE),
            )),
            match_typed_subject_alt_names: tls
                .subject_alt_names
                .iter()
                .map(|n| expected_san(n))
                .collect(),
            crl: tls.ca_crl.as_deref().map(file),
            ..Default::default()
        })
    });
    let certificates = match (mode, &tls.client_certificate, &tls.private_key) {
        (ClientTlsMode::Mutual, Some(cert), Some(key)) => vec![TlsCertificate {
            certificate_chain: Some(file(cert)),
            private_key: Some(file(key)),
            ..Default::default()
        }],
        _ => Vec::new(),
    };
    UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            // TLS 1.2 or newer; Envoy's ciphers (the server is not the mesh's).
            tls_params: Some(TlsParameters {
                tls_minimum_protocol_version: tls_parameters::TlsProtocol::TlSv12 as i32,
                ..Default::default()
            }),
            tls_certificates: certificates,
            validation_context_type: validation,
            ..Default::default()
        }),
        sni: tls.sni.clone().unwrap_or_default(),
        ..Default::default()
    }
}
