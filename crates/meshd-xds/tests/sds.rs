//! Gateway credentials over ADS (SPEC §10): a gateway proxy asking for `kubernetes://<secret>` gets
//! that Secret on SotW and on delta, a changed Secret is pushed, and neither a sidecar nor a gateway of
//! another namespace ever gets it. In-process over real gRPC, as `ads.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{Node, data_source};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use meshd_api::syncz::{SyncState, Timestamp, XdsType};
use meshd_index::{Index, SharedIndex};
use meshd_translate::facts::{Fact, FactKind, ObjectKey, TlsCredential, Workload};
use meshd_translate::{ResourceType, TranslateSettings};
use meshd_xds::{XdsOptions, XdsServer};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

const SDS: ResourceType = ResourceType::Secret;
const WAIT: Duration = Duration::from_secs(5);
const NAME: &str = "kubernetes://web-cert";

fn pod(ns: &str, name: &str, gateway: bool) -> (ObjectKey, Option<Fact>) {
    let mut labels = BTreeMap::from([("app".to_string(), name.to_string())]);
    if gateway {
        labels.insert(meshd_api::names::LABEL_GATEWAY.into(), "edge".into());
    }
    (
        ObjectKey::new(ns, name),
        Some(Fact::Workload(Arc::new(Workload {
            ips: vec!["10.0.0.7".into()],
            labels,
            service_account: "default".into(),
            mesh: None,
            ports: Vec::new(),
        }))),
    )
}

fn credential(ns: &str, tag: &str) -> (ObjectKey, Option<Fact>) {
    (
        ObjectKey::new(ns, "web-cert"),
        Some(Fact::TlsCredential(Arc::new(TlsCredential {
            cert_chain: format!("cert-{tag}").into_bytes(),
            key: format!("key-{tag}").into_bytes(),
            ca: None,
        }))),
    )
}

struct Harness {
    index: SharedIndex,
    server: XdsServer,
    addr: SocketAddr,
    cancel: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn start() -> Harness {
    let index = SharedIndex::new(Index::new([]));
    index.update(|i| {
        for (key, fact) in [
            pod("edge", "gw-0", true),
            pod("edge", "web-0", false),
            pod("other", "gw-1", true),
        ] {
            i.set(FactKind::Workload, key, fact);
        }
        let (key, fact) = credential("edge", "1");
        i.set(FactKind::TlsCredential, key, fact);
    });
    let cancel = CancellationToken::new();
    let server = XdsServer::start(
        index.clone(),
        TranslateSettings::default(),
        XdsOptions {
            debounce: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        },
        &mut prometheus_client::registry::Registry::default(),
        cancel.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = server.clone();
    tokio::spawn(async move { s.serve_tcp(listener).await.unwrap() });
    Harness {
        index,
        server,
        addr,
        cancel,
    }
}

impl Harness {
    async fn client(&self) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
        AggregatedDiscoveryServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    fn rotate(&self, tag: &str) {
        let (key, fact) = credential("edge", tag);
        self.index
            .update(|i| i.set(FactKind::TlsCredential, key, fact));
    }
}

fn node(id: &str) -> Option<Node> {
    Some(Node {
        id: id.into(),
        ..Default::default()
    })
}

async fn next<T>(stream: &mut Streaming<T>) -> T {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("a response in time")
        .unwrap()
        .expect("stream open")
}

/// The certificate chain of an SDS `Secret`, by name.
fn cert_of(any: &Any) -> (String, Vec<u8>) {
    assert_eq!(any.type_url, SDS.type_url());
    let s = Secret::decode(any.value.as_slice()).unwrap();
    let Some(secret::Type::TlsCertificate(tls)) = s.r#type else {
        panic!("not a certificate: {s:?}");
    };
    let Some(data_source::Specifier::InlineBytes(chain)) =
        tls.certificate_chain.and_then(|d| d.specifier)
    else {
        panic!("not inline bytes");
    };
    (s.name, chain)
}

async fn sotw(
    h: &Harness,
    id: &str,
) -> (mpsc::Sender<DiscoveryRequest>, Streaming<DiscoveryResponse>) {
    let (tx, req) = mpsc::channel(16);
    tx.send(DiscoveryRequest {
        node: node(id),
        type_url: SDS.type_url(),
        resource_names: vec![NAME.into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let rx = h
        .client()
        .await
        .stream_aggregated_resources(ReceiverStream::new(req))
        .await
        .unwrap()
        .into_inner();
    (tx, rx)
}

#[tokio::test]
async fn sotw_serves_a_credential_by_name_and_pushes_its_rotation() {
    let h = start().await;
    let (tx, mut rx) = sotw(&h, "gw-0.edge").await;
    let r = next(&mut rx).await;
    assert_eq!(r.type_url, SDS.type_url());
    assert_eq!(r.resources.len(), 1);
    assert_eq!(cert_of(&r.resources[0]), (NAME.into(), b"cert-1".to_vec()));
    tx.send(DiscoveryRequest {
        type_url: SDS.type_url(),
        version_info: r.version_info.clone(),
        response_nonce: r.nonce.clone(),
        resource_names: vec![NAME.into()],
        ..Default::default()
    })
    .await
    .unwrap();
    // /debug/syncz shows the type as SDS, acknowledged.
    let acked = async {
        loop {
            let list = h.server.proxies().list();
            let sds = list
                .iter()
                .find(|p| p.node_id == "gw-0.edge")
                .and_then(|p| p.types.get(&XdsType::Sds).cloned());
            if let Some(t) = sds.filter(|t| t.state(Timestamp::now()) == SyncState::Synced) {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, acked)
        .await
        .expect("SDS SYNCED in syncz");
    h.rotate("2");
    let pushed = next(&mut rx).await;
    assert_ne!(pushed.version_info, r.version_info);
    assert_eq!(cert_of(&pushed.resources[0]).1, b"cert-2");

    // A sidecar of the same namespace and a gateway of another one get nothing by that name.
    for id in ["web-0.edge", "gw-1.other"] {
        let (_tx, mut rx) = sotw(&h, id).await;
        let r = next(&mut rx).await;
        assert!(r.resources.is_empty(), "{id} got {:?}", r.resources);
    }
}

#[tokio::test]
async fn delta_serves_a_subscribed_credential_and_its_rotation() {
    let h = start().await;
    let subscribe = |id: &str| DeltaDiscoveryRequest {
        node: node(id),
        type_url: SDS.type_url(),
        resource_names_subscribe: vec![NAME.into()],
        ..Default::default()
    };
    let open = |first: DeltaDiscoveryRequest| async {
        let (tx, req) = mpsc::channel::<DeltaDiscoveryRequest>(16);
        tx.send(first).await.unwrap();
        let rx: Streaming<DeltaDiscoveryResponse> = h
            .client()
            .await
            .delta_aggregated_resources(ReceiverStream::new(req))
            .await
            .unwrap()
            .into_inner();
        (tx, rx)
    };
    let (tx, mut rx) = open(subscribe("gw-0.edge")).await;
    let r = next(&mut rx).await;
    let got: Vec<&str> = r.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(got, [NAME]);
    let any = r.resources[0].resource.as_ref().expect("a body");
    assert_eq!(cert_of(any).1, b"cert-1");
    tx.send(DeltaDiscoveryRequest {
        type_url: SDS.type_url(),
        response_nonce: r.nonce.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    h.rotate("2");
    let pushed = next(&mut rx).await;
    assert_eq!(pushed.resources.len(), 1);
    let any = pushed.resources[0].resource.as_ref().expect("a body");
    assert_eq!(cert_of(any).1, b"cert-2");
    assert_ne!(pushed.resources[0].version, r.resources[0].version);

    let (_tx, mut rx) = open(subscribe("web-0.edge")).await;
    let r = next(&mut rx).await;
    assert!(r.resources.is_empty(), "a sidecar got {:?}", r.resources);
}
