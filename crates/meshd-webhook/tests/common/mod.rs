//! A webhook on a real TLS socket, and a verifying client (HTTP/1.1 keep-alive or h2 via ALPN).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshd_inject::{InjectionSettings, SkipReason};
use meshd_tools::pki::{DevCa, IssuedCert};
use meshd_webhook::{
    CertificateFiles, InjectionEvents, Injector, PodRef, server_config, watch_files,
};
use prometheus_client::registry::Registry;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

pub const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/admission"
);

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture")
}

/// Events recorded for assertions.
#[derive(Default)]
pub struct RecordedEvents(pub Mutex<Vec<String>>);

impl InjectionEvents for RecordedEvents {
    fn injected(&self, pod: &PodRef) {
        self.0.lock().expect("lock").push(format!(
            "injected {} owner={:?}",
            pod.display_name(),
            pod.owner.as_ref().map(|o| &o.kind)
        ));
    }
    fn skipped(&self, pod: &PodRef, reason: SkipReason) {
        self.0.lock().expect("lock").push(format!(
            "skipped {} {}",
            pod.display_name(),
            reason.label()
        ));
    }
    fn refused(&self, pod: &PodRef, _message: &str) {
        self.0
            .lock()
            .expect("lock")
            .push(format!("refused {}", pod.display_name()));
    }
}

pub struct Webhook {
    pub addr: SocketAddr,
    pub ca: DevCa,
    pub dir: tempfile::TempDir,
    pub shutdown: CancellationToken,
    pub registry: Arc<Registry>,
    pub events: Arc<RecordedEvents>,
    pub served: tokio::task::JoinHandle<()>,
}

pub fn write_atomically(path: &PathBuf, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

impl Webhook {
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    pub async fn start(body_limit: usize) -> Self {
        let ca = DevCa::new().expect("ca");
        let dir = tempfile::tempdir().expect("tempdir");
        let leaf = ca.issue(&["localhost", "127.0.0.1"]).expect("leaf");
        let files = CertificateFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        write_atomically(&files.cert, &leaf.cert_pem);
        write_atomically(&files.key, &leaf.key_pem);
        let (_tx, rx) = tokio::sync::watch::channel(Arc::new(InjectionSettings::default()));
        // Keep the sender alive for the test's duration.
        std::mem::forget(_tx);
        let events = Arc::new(RecordedEvents::default());
        let mut registry = Registry::default();
        let injector = Injector::new(rx, None, events.clone(), &mut registry);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let router = Arc::new(injector).router(body_limit);
        let tls =
            server_config(watch_files(files).expect("certificate files")).expect("tls config");
        let served = tokio::spawn(meshd_webhook::serve(
            listener,
            tls,
            router,
            shutdown.clone(),
            Duration::from_secs(5),
        ));
        Self {
            addr,
            ca,
            dir,
            shutdown,
            registry: Arc::new(registry),
            events,
            served,
        }
    }

    pub fn rotate(&self) -> IssuedCert {
        let leaf = self.ca.issue(&["localhost", "127.0.0.1"]).expect("leaf");
        // Key first, then certificate: in between the pair does not match, and the old one must stay.
        write_atomically(&self.key_path(), &leaf.key_pem);
        write_atomically(&self.cert_path(), &leaf.cert_pem);
        leaf
    }

    pub fn metrics_text(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encode");
        text
    }
}

pub fn client_config(
    ca_pem: &str,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("ca pem"))
        .expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Full handshakes only: a resumed session shows the certificate of the session it resumes.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

pub async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

/// The leaf certificate the server presented.
pub fn peer_leaf(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().expect("peer certs")[0].to_vec()
}

pub type H1 = hyper::client::conn::http1::SendRequest<Full<Bytes>>;
pub type H2 = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

pub async fn http1(stream: TlsStream<TcpStream>) -> H1 {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    sender
}

pub async fn http2(stream: TlsStream<TcpStream>) -> H2 {
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

pub fn request(body: Vec<u8>) -> hyper::Request<Full<Bytes>> {
    hyper::Request::post("https://localhost/inject?timeout=10s")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request")
}

pub async fn collect(response: hyper::Response<hyper::body::Incoming>) -> (u16, Vec<u8>) {
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, body)
}

pub async fn post_h1(sender: &mut H1, body: Vec<u8>) -> Result<(u16, Vec<u8>), hyper::Error> {
    sender.ready().await?;
    let response = sender.send_request(request(body)).await?;
    Ok(collect(response).await)
}
