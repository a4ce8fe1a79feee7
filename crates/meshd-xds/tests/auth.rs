//! Authenticated ADS over real TLS and real gRPC (SPEC §9): every stream carries `authorization: Bearer
//! <token>`, checked by the CA's own `ConfigDir` authenticator (service-account-token Secrets in a
//! directory); a proxy gets config only for a node whose Pod runs as the token's service account. No
//! token, an unknown token, another account's token, another namespace's token: refused with a
//! reason, counted, the token never in a message. Also: a re-issued server certificate serves new
//! connections while an open stream keeps going.

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use meshd_index::{Index, SharedIndex};
use meshd_translate::facts::FactKind;
use meshd_translate::synthetic::{SyntheticMesh, synthetic_mesh};
use meshd_translate::{ResourceType, TranslateSettings, XdsAddress};
use meshd_xds::{XdsOptions, XdsServer, certified_key};
use prometheus_client::registry::Registry;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::{Code, Request};

const SERVER_NAME: &str = "meshd.meshd-system.svc";
/// svc-0-0.ns-0 runs as ns-0/web in this mesh; client-0.ns-0 as ns-0/default.
const WEB_NODE: &str = "svc-0-0.ns-0";
const WEB_TOKEN: &str = "token-of-web-7c1e";
const DEFAULT_TOKEN: &str = "token-of-default-93ab";
const ELSEWHERE_TOKEN: &str = "token-of-ns-1-web-5d20";

fn secret(namespace: &str, account: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {account}-token\n  namespace: {namespace}\n  annotations: {{kubernetes.io/service-account.name: {account}}}\ntype: kubernetes.io/service-account-token\nstringData:\n  token: {token}\n---\n"
    )
}

fn mesh() -> SyntheticMesh {
    let mut mesh = synthetic_mesh(3, 2);
    for (key, w) in &mut mesh.workloads {
        if key.name == "svc-0-0" {
            w.service_account = "web".into();
        }
    }
    mesh
}

fn publish(index: &SharedIndex, mesh: &SyntheticMesh) {
    let changes = mesh.changes();
    index.update(|i| {
        for kind in [
            FactKind::Service,
            FactKind::EndpointSlice,
            FactKind::Workload,
        ] {
            let listed = changes
                .iter()
                .filter(|c| c.kind == kind)
                .map(|c| (c.key.clone(), c.fact.clone()))
                .collect();
            i.replace_kind(kind, listed);
        }
    });
}

struct Harness {
    index: SharedIndex,
    port: u16,
    ca: CertifiedIssuer<'static, KeyPair>,
    certificate: watch::Sender<Arc<rustls::sign::CertifiedKey>>,
    registry: Registry,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn serving_key(ca: &CertifiedIssuer<'static, KeyPair>) -> rustls::sign::CertifiedKey {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![SERVER_NAME.to_string()])
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap()
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tokens.yaml"),
        secret("ns-0", "web", WEB_TOKEN)
            + &secret("ns-0", "default", DEFAULT_TOKEN)
            + &secret("ns-1", "web", ELSEWHERE_TOKEN),
    )
    .unwrap();
    let auth: Arc<dyn meshd_ca::Authenticator> =
        Arc::new(meshd_ca::ConfigDir::new(dir.path(), "default"));
    let index = SharedIndex::new(Index::new([]));
    publish(&index, &mesh());
    let cancel = CancellationToken::new();
    let mut registry = Registry::default();
    let options = XdsOptions {
        debounce: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
    };
    let server = XdsServer::start(
        index.clone(),
        TranslateSettings::default(),
        options,
        &mut registry,
        cancel.clone(),
    );
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let (certificate, certificates) = watch::channel(Arc::new(serving_key(&ca)));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = XdsAddress::Tcp {
        host: "127.0.0.1".into(),
        port,
    };
    tokio::spawn(async move {
        server
            .serve_with(
                &listen,
                Some(certificates),
                tonic::service::Routes::default(),
                Some(auth),
            )
            .await
            .unwrap()
    });
    let h = Harness {
        index,
        port,
        ca,
        certificate,
        registry,
        cancel,
        _dir: dir,
    };
    for _ in 0..200 {
        if h.channel().await.is_ok() {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the TLS listener never accepted a connection");
}

impl Harness {
    async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.ca.pem()))
            .domain_name(SERVER_NAME);
        Channel::from_shared(format!("https://127.0.0.1:{}", self.port))
            .unwrap()
            .tls_config(tls)?
            .connect()
            .await
    }

    fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text
    }

    /// A SotW CDS stream for `node` with `token`: the first response, or the status that ended it.
    async fn sotw(&self, node: &str, token: Option<&str>) -> Result<usize, tonic::Status> {
        let (tx, rx) = mpsc::channel(4);
        tx.send(DiscoveryRequest {
            node: Some(Node {
                id: node.into(),
                ..Default::default()
            }),
            type_url: ResourceType::Cluster.type_url(),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut client = AggregatedDiscoveryServiceClient::new(self.channel().await.unwrap());
        let mut stream = client
            .stream_aggregated_resources(with_token(ReceiverStream::new(rx), token))
            .await?
            .into_inner();
        let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("an answer in time")?
            .expect("a response");
        drop(tx);
        Ok(first.resources.len())
    }

    /// The same with a delta stream.
    async fn delta(&self, node: &str, token: Option<&str>) -> Result<usize, tonic::Status> {
        let (tx, rx) = mpsc::channel(4);
        tx.send(DeltaDiscoveryRequest {
            node: Some(Node {
                id: node.into(),
                ..Default::default()
            }),
            type_url: ResourceType::Cluster.type_url(),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut client = AggregatedDiscoveryServiceClient::new(self.channel().await.unwrap());
        let mut stream = client
            .delta_aggregated_resources(with_token(ReceiverStream::new(rx), token))
            .await?
            .into_inner();
        let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("an answer in time")?
            .expect("a response");
        drop(tx);
        Ok(first.resources.len())
    }
}

fn with_token<T>(body: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(body);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn refused(result: Result<usize, tonic::Status>, code: Code, says: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(says), "{status:?}");
    for token in [WEB_TOKEN, DEFAULT_TOKEN, ELSEWHERE_TOKEN] {
        assert!(!status.message().contains(token), "token in {status:?}");
    }
}

#[tokio::test]
async fn only_the_pods_own_service_account_gets_its_config() {
    let h = start().await;
    for delta in [false, true] {
        let open = |node: &'static str, token: Option<&'static str>| {
            let h = &h;
            async move {
                if delta {
                    h.delta(node, token).await
                } else {
                    h.sotw(node, token).await
                }
            }
        };
        // The right token: the node's config, over TLS.
        let clusters = open(WEB_NODE, Some(WEB_TOKEN)).await.unwrap();
        assert!(clusters > 1, "delta={delta}: {clusters} clusters");
        // No token, an unknown one: UNAUTHENTICATED.
        refused(open(WEB_NODE, None).await, Code::Unauthenticated, "Bearer");
        refused(
            open(WEB_NODE, Some("no-such-token")).await,
            Code::Unauthenticated,
            "not valid",
        );
        // A real token of another account (the pod next door) for this node: PERMISSION_DENIED.
        refused(
            open(WEB_NODE, Some(DEFAULT_TOKEN)).await,
            Code::PermissionDenied,
            "runs as service account ns-0/web, but the token is for ns-0/default",
        );
        // An account of another namespace, even one of the same name.
        refused(
            open(WEB_NODE, Some(ELSEWHERE_TOKEN)).await,
            Code::PermissionDenied,
            "ns-1/web",
        );
        // The other account does get its own pod's config.
        assert!(open("client-0.ns-0", Some(DEFAULT_TOKEN)).await.unwrap() > 1);
    }
    let metrics = h.metrics();
    for counted in [
        r#"meshd_xds_streams_refused_total{reason="unauthenticated"} 4"#,
        r#"meshd_xds_streams_refused_total{reason="permission_denied"} 4"#,
    ] {
        assert!(metrics.contains(counted), "{counted}: {metrics}");
    }
}

#[tokio::test]
async fn a_pod_that_appears_under_another_account_ends_the_stream() {
    let h = start().await;
    // No Pod late-0 yet: the stream is open, with the empty config of an unknown node.
    let (tx, rx) = mpsc::channel(4);
    tx.send(DiscoveryRequest {
        node: Some(Node {
            id: "late-0.ns-0".into(),
            ..Default::default()
        }),
        type_url: ResourceType::Cluster.type_url(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut client = AggregatedDiscoveryServiceClient::new(h.channel().await.unwrap());
    let mut stream = client
        .stream_aggregated_resources(with_token(ReceiverStream::new(rx), Some(DEFAULT_TOKEN)))
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.resources.is_empty());
    // Its Pod is created, running as ns-0/web: the stream ends, nothing of the Pod's config sent.
    let mut m = mesh();
    let mut late = m.workloads[0].clone();
    late.0.name = "late-0".into();
    late.1.service_account = "web".into();
    m.workloads.push(late);
    publish(&h.index, &m);
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stream ends in time")
        .expect_err("refused");
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
    assert!(ended.message().contains("late-0"), "{ended:?}");
}

/// The leaf certificate a fresh TLS connection gets.
async fn served_leaf(h: &Harness) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(h.ca.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", h.port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn a_reissued_certificate_serves_new_connections_and_open_streams_go_on() {
    let h = start().await;
    let (tx, rx) = mpsc::channel(4);
    tx.send(DiscoveryRequest {
        node: Some(Node {
            id: WEB_NODE.into(),
            ..Default::default()
        }),
        type_url: ResourceType::Cluster.type_url(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut client = AggregatedDiscoveryServiceClient::new(h.channel().await.unwrap());
    let mut stream = client
        .stream_aggregated_resources(with_token(ReceiverStream::new(rx), Some(WEB_TOKEN)))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let before = served_leaf(&h).await;

    let next = serving_key(&h.ca);
    let next_leaf = next.cert[0].to_vec();
    h.certificate.send_replace(Arc::new(next));
    let after = served_leaf(&h).await;
    assert_ne!(before, after, "a new connection gets the new certificate");
    assert_eq!(after, next_leaf);

    // The stream opened before keeps receiving pushes.
    tx.send(DiscoveryRequest {
        type_url: ResourceType::Cluster.type_url(),
        version_info: first.version_info.clone(),
        response_nonce: first.nonce.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut m = mesh();
    m.services.remove(2);
    publish(&h.index, &m);
    let pushed = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a push in time")
        .unwrap()
        .unwrap();
    assert!(pushed.resources.len() < first.resources.len());
}
