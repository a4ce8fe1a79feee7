//! The mesh's mutual TLS as Envoy config (SPEC §9), Istio's way: the workload certificate is SDS
//! `default`, the trust bundle SDS `ROOTCA`, both from the agent ([`crate::sds_secret_config`]).
//!
//! - Server side ([`server_tls`]): a client certificate is required and must carry a SPIFFE identity of
//!   the mesh's trust domain; TLS 1.2 or 1.3.
//! - Client side ([`mesh_mtls_transport_socket`]): ALPN `istio` (which the server's filter chains look
//!   for, so a mesh client is told apart from an app's own TLS), SNI `outbound_.<port>_.<subset>_.<host>`
//!   as Istio sets it, and the server's SPIFFE identity checked against the destination's.
//! - Per endpoint ([`auto_mtls`], [`meshed_endpoint_metadata`]): one cluster mixes meshed endpoints
//!   (mTLS) and others (plaintext) by endpoint metadata and `transport_socket_matches`.

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{Metadata, TransportSocket, transport_socket};
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SubjectAltNameMatcher,
    TlsParameters, UpstreamTlsContext, common_tls_context, subject_alt_name_matcher,
    tls_parameters,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::{BoolValue, Struct, Value, value};

use meshd_api::text::{Digits, concat};

use crate::envoy::pack;
use crate::{SDS_DEFAULT, SDS_ROOTCA, sds_secret_config};

/// The ALPN a mesh client offers. Istio's value, so an Istio sidecar's inbound side recognises a
/// meshd client and the other way round.
pub const MESH_ALPN: &str = "istio";
/// The ALPNs a server's mTLS filter chain accepts from mesh clients (Istio's, which include those of
/// Istio's own HTTP clients).
pub(crate) const MESH_CLIENT_ALPNS: [&str; 5] = [
    "istio",
    "istio-peer-exchange",
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
];
/// Endpoint metadata that selects the mTLS transport socket: `envoy.transport_socket_match` `tlsMode`.
pub const TLS_MODE_KEY: &str = "tlsMode";
pub const TLS_MODE_MESH: &str = "meshd";
/// The transport socket matches' names, as `/clusters` and stats show them.
pub const MATCH_MESH: &str = "tlsMode-meshd";
pub const MATCH_PLAINTEXT: &str = "tlsMode-disabled";

/// Istio's cipher list for TLS 1.2 (TLS 1.3 suites are not configurable in Envoy).
pub(crate) const CIPHERS: [&str; 6] = [
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
];

/// `spiffe://<trustDomain>/ns/<ns>/sa/<sa>`.
pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    concat(&[
        "spiffe://",
        trust_domain,
        "/ns/",
        namespace,
        "/sa/",
        service_account,
    ])
}

/// Istio's SNI towards a service port: `outbound_.<port>_.<subset>_.<host>`.
pub fn mesh_sni(port: u16, subset: &str, host: &str) -> String {
    concat(&[
        "outbound_.",
        Digits::new(port).as_str(),
        "_.",
        subset,
        "_.",
        host,
    ])
}

fn tls_params() -> TlsParameters {
    TlsParameters {
        tls_minimum_protocol_version: tls_parameters::TlsProtocol::TlSv12 as i32,
        tls_maximum_protocol_version: tls_parameters::TlsProtocol::TlSv13 as i32,
        cipher_suites: CIPHERS.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    }
}

pub(crate) fn san(matcher: string_matcher::MatchPattern) -> SubjectAltNameMatcher {
    SubjectAltNameMatcher {
        san_type: subject_alt_name_matcher::SanType::Uri as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(matcher),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The workload certificate (`default`) and the mesh roots (`ROOTCA`), peer SANs as given.
fn common(sans: Vec<SubjectAltNameMatcher>, alpn: &[&str]) -> CommonTlsContext {
    CommonTlsContext {
        tls_params: Some(tls_params()),
        tls_certificate_sds_secret_configs: vec![sds_secret_config(SDS_DEFAULT)],
        validation_context_type: Some(
            common_tls_context::ValidationContextType::CombinedValidationContext(
                common_tls_context::CombinedCertificateValidationContext {
                    default_validation_context: Some(CertificateValidationContext {
                        match_typed_subject_alt_names: sans,
                        ..Default::default()
                    }),
                    validation_context_sds_secret_config: Some(sds_secret_config(SDS_ROOTCA)),
                    ..Default::default()
                },
            ),
        ),
        alpn_protocols: alpn.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

/// The server side of the mesh's mTLS: a client certificate from the mesh (a SPIFFE identity of
/// `trust_domain`) is required. ALPN as Istio's inbound side offers it.
pub(crate) fn server_tls(trust_domain: &str, http: bool) -> TransportSocket {
    let alpn: &[&str] = if http {
        &["h2", "http/1.1"]
    } else {
        &["istio-peer-exchange", "h2", "http/1.1"]
    };
    let prefix = string_matcher::MatchPattern::Prefix(format!("spiffe://{trust_domain}/"));
    let context = DownstreamTlsContext {
        common_tls_context: Some(common(vec![san(prefix)], alpn)),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    };
    tls_socket(pack(&context))
}

/// The client side of the mesh's mTLS towards one destination: the workload certificate, ALPN
/// [`MESH_ALPN`], `sni`, and the server's certificate must carry one of `identities` (SPIFFE URIs;
/// none: any identity the mesh roots vouch for). Also what `DestinationRule` `tls.mode: MESH_MUTUAL`
/// gives a cluster.
pub fn mesh_mtls_transport_socket(sni: &str, identities: &[String]) -> TransportSocket {
    let sans = identities
        .iter()
        .map(|id| san(string_matcher::MatchPattern::Exact(id.clone())))
        .collect();
    let context = UpstreamTlsContext {
        common_tls_context: Some(common(sans, &[MESH_ALPN])),
        sni: sni.to_string(),
        ..Default::default()
    };
    tls_socket(pack(&context))
}

pub(crate) fn tls_socket(config: envoy_types::pb::google::protobuf::Any) -> TransportSocket {
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(config)),
    }
}

fn plaintext_socket() -> TransportSocket {
    TransportSocket {
        name: "envoy.transport_sockets.raw_buffer".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack(
            &RawBuffer::default(),
        ))),
    }
}

fn tls_mode_struct() -> Struct {
    Struct {
        fields: [(
            TLS_MODE_KEY.to_string(),
            Value {
                kind: Some(value::Kind::StringValue(TLS_MODE_MESH.to_string())),
            },
        )]
        .into(),
    }
}

/// Auto mTLS (Istio's): endpoints marked with [`meshed_endpoint_metadata`] get
/// [`mesh_mtls_transport_socket`], every other endpoint plaintext.
pub(crate) fn auto_mtls(cluster: &mut Cluster, sni: &str, identities: &[String]) {
    cluster.transport_socket_matches = vec![
        cluster::TransportSocketMatch {
            name: MATCH_MESH.into(),
            r#match: Some(tls_mode_struct()),
            transport_socket: Some(mesh_mtls_transport_socket(sni, identities)),
        },
        cluster::TransportSocketMatch {
            name: MATCH_PLAINTEXT.into(),
            r#match: Some(Struct::default()),
            transport_socket: Some(plaintext_socket()),
        },
    ];
}

/// The metadata of an endpoint whose pod carries a sidecar of this mesh and accepts mTLS.
pub(crate) fn meshed_endpoint_metadata() -> Metadata {
    Metadata {
        filter_metadata: [(
            "envoy.transport_socket_match".to_string(),
            tls_mode_struct(),
        )]
        .into(),
        ..Default::default()
    }
}
