//! A terminating server's `DownstreamTlsContext`: the certificate of its `credentialName` Secret over
//! SDS from the control plane (ADS), for MUTUAL also the client CA (`ca.crt`) and a required client
//! certificate; MESH_MUTUAL uses the agent's workload certificate and mesh roots as sidecars do. TLS
//! versions from `minProtocolVersion` (default 1.2) and `maxProtocolVersion` (default 1.3).

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::core::v3::TransportSocket;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext, TlsParameters, common_tls_context, tls_parameters,
};
use envoy_types::pb::google::protobuf::BoolValue;
use meshd_api::networking::TlsProtocol;
use meshd_api::networking::gateway::{ServerTlsMode, ServerTlsSettings};

use crate::credentials::{credential_ca_sds_name, credential_sds_config, credential_sds_name};
use crate::envoy::pack;
use crate::mtls::{CIPHERS, tls_socket};
use crate::{SDS_DEFAULT, SDS_ROOTCA, sds_secret_config};

/// The SDS names a server's TLS settings reference: the certificate, and for MUTUAL its CA.
pub fn credential_sds_names(tls: &ServerTlsSettings) -> Vec<String> {
    let Some(secret) = &tls.credential_name else {
        return Vec::new();
    };
    let cert = credential_sds_name(secret);
    match tls.mode {
        Some(ServerTlsMode::Simple) => vec![cert],
        Some(ServerTlsMode::Mutual) => vec![credential_ca_sds_name(secret), cert],
        _ => Vec::new(),
    }
}

/// Delivered over ADS by the control plane (not by the agent's SDS).
fn version(v: TlsProtocol) -> tls_parameters::TlsProtocol {
    use tls_parameters::TlsProtocol as P;
    match v {
        TlsProtocol::Tlsv1_3 => P::TlSv13,
        // Validation refuses 1.0 and 1.1: never below 1.2.
        TlsProtocol::TlsAuto
        | TlsProtocol::Tlsv1_0
        | TlsProtocol::Tlsv1_1
        | TlsProtocol::Tlsv1_2 => P::TlSv12,
    }
}

fn params(tls: &ServerTlsSettings) -> TlsParameters {
    let max = match tls.max_protocol_version {
        None | Some(TlsProtocol::TlsAuto | TlsProtocol::Tlsv1_3) => {
            tls_parameters::TlsProtocol::TlSv13
        }
        Some(v) => version(v),
    };
    TlsParameters {
        tls_minimum_protocol_version: tls
            .min_protocol_version
            .map_or(tls_parameters::TlsProtocol::TlSv12, version)
            as i32,
        tls_maximum_protocol_version: max as i32,
        cipher_suites: CIPHERS.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    }
}

/// The transport socket of a terminating server (SIMPLE, MUTUAL, MESH_MUTUAL/ISTIO_MUTUAL); `None`
/// for other modes or SIMPLE/MUTUAL without `credentialName` (which validation refuses). The SDS names
/// it references are added to `credentials`. `http`: ALPN `h2`, `http/1.1`.
pub(super) fn downstream(
    tls: &ServerTlsSettings,
    http: bool,
    credentials: &mut BTreeSet<String>,
) -> Option<TransportSocket> {
    let mut common = CommonTlsContext {
        tls_params: Some(params(tls)),
        alpn_protocols: if http {
            vec!["h2".into(), "http/1.1".into()]
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    let require_client = match tls.mode? {
        ServerTlsMode::Simple | ServerTlsMode::Mutual => {
            let names = credential_sds_names(tls);
            let (cert, ca) = match names.as_slice() {
                [cert] => (cert, None),
                [ca, cert] => (cert, Some(ca)),
                _ => return None,
            };
            common.tls_certificate_sds_secret_configs = vec![credential_sds_config(cert)];
            if let Some(ca) = ca {
                common.validation_context_type = Some(
                    common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(
                        credential_sds_config(ca),
                    ),
                );
            }
            credentials.extend(names.iter().cloned());
            ca.is_some()
        }
        ServerTlsMode::MeshMutual | ServerTlsMode::IstioMutual => {
            common.tls_certificate_sds_secret_configs = vec![sds_secret_config(SDS_DEFAULT)];
            common.validation_context_type = Some(
                common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(
                    sds_secret_config(SDS_ROOTCA),
                ),
            );
            true
        }
        ServerTlsMode::Passthrough
        | ServerTlsMode::AutoPassthrough
        | ServerTlsMode::OptionalMutual => return None,
    };
    let context = DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: require_client.then_some(BoolValue { value: true }),
        ..Default::default()
    };
    Some(tls_socket(pack(&context)))
}
