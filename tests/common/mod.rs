//! Helpers shared by the root integration tests (`mod common;`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("pem"))
        .expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// The DER of the leaf certificate the TLS server on 127.0.0.1:`port` presents (verified against `ca_pem`).
#[allow(dead_code)]
pub fn served_leaf(port: u16, ca_pem: &str) -> std::io::Result<Vec<u8>> {
    let conn = rustls::ClientConnection::new(
        client_config(ca_pem),
        ServerName::try_from("localhost").expect("name"),
    )
    .map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(("127.0.0.1", port))?);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    tls.conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or_else(|| std::io::Error::other("no peer certificate"))
}

/// DER of the first certificate in `pem`.
#[allow(dead_code)]
pub fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("pem")
        .to_vec()
}

/// POSTs an AdmissionReview body to `/inject` on 127.0.0.1:`port` over TLS, verifying the server against
/// `ca_pem` as `localhost`; returns the HTTP status and the response body.
pub fn post_review(port: u16, ca_pem: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let conn = rustls::ClientConnection::new(
        client_config(ca_pem),
        ServerName::try_from("localhost").expect("name"),
    )
    .map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(("127.0.0.1", port))?);
    write!(
        tls,
        "POST /inject?timeout=10s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    tls.write_all(body)?;
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response); // the server closes; a missing close_notify is not our concern
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.as_bytes().to_vec())
        .unwrap_or_default();
    Ok((status, body))
}
