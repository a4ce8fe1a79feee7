//! Istio's CA API, `istio.v1.auth` (istio/api `security/v1alpha1/ca.proto`), written out by hand with
//! prost so that no protoc is needed. Field numbers as in that file: `csr = 1`, `validity_duration = 3`,
//! `metadata = 4` (2 was the retired `subject_id`); the response's `cert_chain = 1` lists the leaf first
//! and the trust bundle last.

/// Certificate request: a PEM CSR and an optional lifetime in seconds.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct IstioCertificateRequest {
    #[prost(string, tag = "1")]
    pub csr: String,
    #[prost(int64, tag = "3")]
    pub validity_duration: i64,
    /// Opaque metadata from the node (Istio sends WorkloadName, WorkloadIP, ClusterID); not used for
    /// the identity.
    #[prost(message, optional, tag = "4")]
    pub metadata: Option<::prost_types::Struct>,
}

/// Certificate response: PEM certificates, the leaf first, the root (bundle) last.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct IstioCertificateResponse {
    #[prost(string, repeated, tag = "1")]
    pub cert_chain: Vec<String>,
}

/// The gRPC service name and its one method's path.
pub const SERVICE_NAME: &str = "istio.v1.auth.IstioCertificateService";
pub const CREATE_CERTIFICATE: &str = "/istio.v1.auth.IstioCertificateService/CreateCertificate";

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn field_numbers_are_istios() {
        let request = IstioCertificateRequest {
            csr: "c".into(),
            validity_duration: 7,
            metadata: Some(prost_types::Struct::default()),
        };
        // tag 1 (LEN) "c", tag 3 (VARINT) 7, tag 4 (LEN) empty.
        assert_eq!(request.encode_to_vec(), [0x0a, 1, b'c', 0x18, 7, 0x22, 0]);
        let response = IstioCertificateResponse {
            cert_chain: vec!["a".into(), "b".into()],
        };
        assert_eq!(response.encode_to_vec(), [0x0a, 1, b'a', 0x0a, 1, b'b']);
    }
}
