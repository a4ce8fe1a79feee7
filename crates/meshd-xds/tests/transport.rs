//! The server's transports: xDS over real TLS (a verifying client, the control plane's fixed server
//! name), and the Unix socket (a stale one replaced, mode 0666, a regular file refused).

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use meshd_index::{Index, SharedIndex};
use meshd_translate::synthetic::synthetic_mesh;
use meshd_translate::{ResourceType, TranslateSettings, XdsAddress};
use meshd_xds::{TlsFiles, XdsError, XdsOptions, XdsServer};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const SERVER_NAME: &str = "meshd.meshd-system.svc";

/// A small mesh in a complete index.
fn index() -> SharedIndex {
    let index = SharedIndex::new(Index::new([]));
    index.update(|i| {
        for c in synthetic_mesh(3, 2).changes() {
            i.set(c.kind, c.key, c.fact);
        }
    });
    index
}

fn server(cancel: &CancellationToken) -> XdsServer {
    let mut registry = prometheus_client::registry::Registry::default();
    XdsServer::start(
        index(),
        TranslateSettings::default(),
        XdsOptions::default(),
        &mut registry,
        cancel.clone(),
    )
}

fn new_ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

async fn tls_channel(port: u16, ca_pem: &str) -> Result<Channel, tonic::transport::Error> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(SERVER_NAME);
    Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

#[tokio::test]
async fn ads_over_tls_to_a_client_verifying_the_control_plane_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![SERVER_NAME.to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let files = TlsFiles {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let cancel = CancellationToken::new();
    let xds = server(&cancel);
    let listen = XdsAddress::Tcp {
        host: "127.0.0.1".into(),
        port,
    };
    let serving = tokio::spawn(async move { xds.serve(&listen, Some(&files)).await });

    let mut channel = None;
    for _ in 0..100 {
        if let Ok(c) = tls_channel(port, &ca.pem()).await {
            channel = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut client = AggregatedDiscoveryServiceClient::new(channel.expect("a TLS connection"));
    let request = DiscoveryRequest {
        node: Some(Node {
            id: "svc-0-0.ns-0".into(),
            ..Default::default()
        }),
        type_url: ResourceType::Cluster.type_url(),
        ..Default::default()
    };
    let mut stream = client
        .stream_aggregated_resources(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!response.resources.is_empty());

    // A client that trusts another CA does not get a connection.
    assert!(tls_channel(port, &new_ca().pem()).await.is_err());

    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(6), serving)
        .await
        .expect("shutdown within 5 s");
    result.unwrap().unwrap();
}

#[tokio::test]
async fn unix_socket_replaces_a_stale_one_and_is_connectable_by_anyone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xds.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // left behind, like after a crash
    assert!(
        std::os::unix::net::UnixStream::connect(&path).is_err(),
        "stale: nobody listens"
    );

    let cancel = CancellationToken::new();
    let xds = server(&cancel);
    let listen = XdsAddress::Unix(path.display().to_string());
    let serving = tokio::spawn(async move { xds.serve(&listen, None).await });
    let mut connected = false;
    for _ in 0..100 {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            connected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(connected);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o666,
        "Envoy runs as uid 1337 and must be able to connect"
    );
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(6), serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!path.exists(), "a clean shutdown removes the socket");

    // Something that is not a socket is never deleted.
    std::fs::write(&path, "precious").unwrap();
    let cancel = CancellationToken::new();
    let err = server(&cancel)
        .serve(&XdsAddress::Unix(path.display().to_string()), None)
        .await
        .unwrap_err();
    assert!(matches!(err, XdsError::NotASocket { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

/// A GET over plain HTTP/1.1; (status line, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[tokio::test]
async fn metrics_ready_and_live_are_served() {
    let cancel = CancellationToken::new();
    let mut registry = prometheus_client::registry::Registry::default();
    let xds = XdsServer::start(
        index(),
        TranslateSettings::default(),
        XdsOptions::default(),
        &mut registry,
        cancel.clone(),
    );
    let syncz = meshd_xds::Syncz {
        proxies: xds.proxies(),
        control_plane: meshd_api::syncz::ControlPlane {
            name: "cp-0".into(),
            version: "test".into(),
        },
    };
    let addr: std::net::SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let health = tokio::spawn(meshd_xds::serve_health(
        addr,
        Arc::new(registry),
        ready_rx,
        syncz,
        cancel.clone(),
    ));
    let mut up = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(up);
    assert!(get(addr, "/ready").await.0.contains(" 503 "));
    ready_tx.send(true).unwrap();
    assert!(get(addr, "/ready").await.0.contains(" 200 "));
    assert!(get(addr, "/live").await.0.contains(" 200 "));
    let (status, metrics) = get(addr, "/metrics").await;
    assert!(status.contains(" 200 "), "{status}");
    // Counter families show up with their first sample (see the ADS tests); these are always there.
    for name in [
        "meshd_proxies_connected",
        "meshd_xds_push_seconds",
        "meshd_xds_translation_seconds",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {name}")),
            "{name} missing:\n{metrics}"
        );
    }
    let (status, body) = get(addr, "/debug/syncz").await;
    assert!(status.contains(" 200 "), "{status}");
    let report: meshd_api::syncz::SyncReport = serde_json::from_str(&body).expect("a SyncReport");
    assert_eq!(report.control_plane.name, "cp-0");
    assert!(report.proxies.is_empty(), "{report:?}");
    assert!(get(addr, "/nope").await.0.contains(" 404 "));
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(2), health)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
