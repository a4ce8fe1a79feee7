//! Certificates issued per second by one core (docs/perf-identity.md), beside what bounds it: a bare
//! rcgen ECDSA P-256 sign of the same leaf in the same run.
//!
//! `cargo run --release -p meshd-ca --example issue_rate [-- SECONDS]` prints, each measured for
//! SECONDS (default 3) on one thread:
//! 1. bare sign: rcgen signs fixed leaf parameters with the CA key (signature + DER);
//! 2. bare verify: the CSR's own ECDSA signature checked with x509-parser (ring), which issuance
//!    must also do;
//! 3. issue: `CertificateAuthority::issue_workload` (CSR parse + its signature verified + sign);
//! 4. gRPC: `CreateCertificate` over a Unix socket with a token Secret checked, server on a
//!    one-thread runtime, one sequential client on another thread (the client's own CPU not counted
//!    against the server: the rate is what one request after another costs end to end).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use meshd_ca::client;
use meshd_ca::proto::IstioCertificateRequest;
use meshd_ca::{CaMetrics, CaPem, CertificateAuthority, CertificateService, ConfigDir};
use rcgen::{CertificateParams, DistinguishedName, Issuer, KeyPair, SanType};

fn rate(seconds: f64, mut work: impl FnMut()) -> f64 {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut n = 0u64;
    while Instant::now() < deadline {
        work();
        n += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let seconds: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(3.0);
    let pem = CaPem::self_signed("cluster.local", SystemTime::now())?;
    let ca = Arc::new(CertificateAuthority::new(&pem)?);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let csr = CertificateParams::default()
        .serialize_request(&key)?
        .pem()?;
    let id = "spiffe://cluster.local/ns/shop/sa/web";
    let day = Duration::from_secs(86_400);

    // 1. The floor: one ECDSA signature over a leaf, nothing else.
    let issuer = Issuer::from_ca_cert_pem(&pem.ca_cert, KeyPair::from_pem(&pem.ca_key)?)?;
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name = DistinguishedName::new();
    leaf.subject_alt_names = vec![SanType::URI(id.try_into()?)];
    let bare = rate(seconds, || {
        let _ = leaf.signed_by(&key, &issuer).expect("sign");
    });

    // 1b. The other half of the floor: the CSR's proof of possession.
    let (_, block) = x509_parser::pem::parse_x509_pem(csr.as_bytes())?;
    let verify = rate(seconds, || {
        use x509_parser::prelude::FromDer;
        let (_, req) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
                .expect("csr");
        req.verify_signature().expect("verifies");
    });

    // 2. The CA's issuance, CSR checks included.
    let issue = rate(seconds, || {
        let _ = ca
            .issue_workload(&csr, id, day, SystemTime::now())
            .expect("issue");
    });

    // 3. The whole request over gRPC.
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("token.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: t\n  namespace: shop\n  annotations: {kubernetes.io/service-account.name: web}\ntype: kubernetes.io/service-account-token\nstringData: {token: bench}\n",
    )?;
    let socket = dir.path().join("ca.sock");
    let server = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let config = Arc::new(ConfigDir::new(dir.path(), "default"));
    let service = CertificateService::new(
        Arc::new(ca.clone()),
        config.clone(),
        config,
        CaMetrics::default(),
    );
    let listener = {
        let _guard = server.enter();
        tokio::net::UnixListener::bind(&socket)?
    };
    std::thread::spawn(move || {
        server.block_on(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
        )
    });
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let address = meshd_translate::XdsAddress::Unix(socket.display().to_string());
    let channel = client_rt.block_on(client::connect(&address, None))?;
    let grpc = rate(seconds, || {
        let request = IstioCertificateRequest {
            csr: csr.clone(),
            validity_duration: 0,
            metadata: None,
        };
        client_rt
            .block_on(client::create_certificate(
                channel.clone(),
                "bench",
                request,
            ))
            .expect("issued");
    });

    let floor = 1.0 / (1.0 / bare + 1.0 / verify);
    println!("bare rcgen P-256 sign:            {bare:>8.0}/s  (1.00x)");
    println!("bare CSR signature verify:        {verify:>8.0}/s");
    println!("sign + verify, back to back:      {floor:>8.0}/s  (the floor for issuance)");
    println!(
        "CertificateAuthority::issue:      {issue:>8.0}/s  ({:.2}x of bare sign, {:.2}x of sign + verify)",
        issue / bare,
        issue / floor
    );
    println!(
        "CreateCertificate over gRPC:      {grpc:>8.0}/s  ({:.2}x of bare sign, {:.2}x of sign + verify)",
        grpc / bare,
        grpc / floor
    );
    Ok(())
}
