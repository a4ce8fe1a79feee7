//! The xDS proxy against a small ADS server on a Unix socket that answers every stream with the
//! `authorization` it received: the token file's content per stream (rotation), never what Envoy sent,
//! UNAVAILABLE while the control plane is away, and a new stream once it is back; the trust anchor
//! re-read per stream.

use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use futures::Stream;
use hyper_util::rt::TokioIo;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::AgentSettings;

struct Echo;

type Answers<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn seen(request: &Request<impl Sized>) -> String {
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_string()
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Echo {
    type StreamAggregatedResourcesStream = Answers<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Answers<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let answer = DiscoveryResponse {
            version_info: seen(&request),
            ..Default::default()
        };
        // Answer, then stay open as a control plane does.
        let answers = futures::stream::iter([Ok(answer)]).chain(futures::stream::pending());
        Ok(Response::new(Box::pin(answers)))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let answer = DeltaDiscoveryResponse {
            system_version_info: seen(&request),
            ..Default::default()
        };
        let answers = futures::stream::iter([Ok(answer)]).chain(futures::stream::pending());
        Ok(Response::new(Box::pin(answers)))
    }
}

use futures::StreamExt;

fn control_plane(path: &Path) -> tokio::task::JoinHandle<()> {
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(AggregatedDiscoveryServiceServer::new(Echo))
            .serve_with_incoming(UnixListenerStream::new(listener))
            .await;
    })
}

async fn envoy_side(path: &Path) -> Channel {
    let path = path.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .unwrap()
}

/// A SotW stream through the proxy, Envoy sending an authorization of its own: what the control plane
/// saw, or the status.
async fn sotw(client: &mut AggregatedDiscoveryServiceClient<Channel>) -> Result<String, Status> {
    let mut request = Request::new(futures::stream::iter([DiscoveryRequest::default()]));
    request
        .metadata_mut()
        .insert("authorization", "Bearer from-envoy".parse().unwrap());
    let mut stream = client
        .stream_aggregated_resources(request)
        .await?
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("an answer in time")?
        .expect("a response");
    Ok(first.version_info)
}

#[tokio::test]
async fn each_stream_carries_the_token_file_as_it_is_then() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let upstream = d.join("cp.sock");
    let token = d.join("token");
    let settings = AgentSettings::from_args([
        "--pod-name",
        "web-0",
        "--pod-namespace",
        "shop",
        "--discovery-address",
        &format!("unix:{}", upstream.display()),
        "--token-file",
        &token.display().to_string(),
        "--config-dir",
        &d.join("proxy").display().to_string(),
    ])
    .unwrap();
    let proxy = super::serve(&settings).await.unwrap();
    let channel = envoy_side(&settings.xds_socket()).await;
    let mut envoy = AggregatedDiscoveryServiceClient::new(channel.clone());

    // No control plane yet: UNAVAILABLE, which Envoy retries.
    let status = sotw(&mut envoy).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    let server = control_plane(&upstream);
    // No token file: nothing added, and Envoy's own header is not passed on.
    assert_eq!(sotw(&mut envoy).await.unwrap(), "none");
    std::fs::write(&token, "first-token\n").unwrap();
    assert_eq!(sotw(&mut envoy).await.unwrap(), "Bearer first-token");
    // The kubelet rewrites the projected token: the next stream carries the new one.
    std::fs::write(&token, "second-token").unwrap();
    assert_eq!(sotw(&mut envoy).await.unwrap(), "Bearer second-token");
    let mut delta = envoy
        .delta_aggregated_resources(futures::stream::iter([DeltaDiscoveryRequest::default()]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        delta.message().await.unwrap().unwrap().system_version_info,
        "Bearer second-token"
    );

    // The control plane restarts: a stream through the same Envoy connection works again.
    server.abort();
    let _ = server.await;
    let _restarted = control_plane(&upstream);
    let mut answer = sotw(&mut envoy).await;
    for _ in 0..50 {
        if answer.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = sotw(&mut envoy).await;
    }
    assert_eq!(answer.unwrap(), "Bearer second-token");

    // Only ADS is forwarded.
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let other: Result<Response<DiscoveryResponse>, Status> = grpc
        .unary(
            Request::new(DiscoveryRequest::default()),
            tonic::codegen::http::uri::PathAndQuery::from_static("/some.Other/Method"),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    assert_eq!(other.unwrap_err().code(), Code::Unimplemented);
    proxy.abort();
}

/// The trust anchor for the control plane's TLS is `--ca-file` as it is when a stream opens: the same
/// content keeps the channel, a changed one (a root rotation, a kubelet-updated `meshd-ca-root`) makes
/// a new channel, and an unreadable file is UNAVAILABLE naming it (Envoy retries).
#[tokio::test]
async fn a_changed_ca_file_makes_a_new_channel_and_a_missing_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("root-cert.pem");
    let pem = |name: &str| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem()
    };
    let upstream = super::Upstream {
        address: "127.0.0.1:1".parse().unwrap(),
        tls: Some(("meshd.meshd-system.svc".into(), ca_file.clone())),
        token_file: dir.path().join("token"),
        channel: std::sync::Mutex::new(None),
        warned_plaintext: Default::default(),
    };
    let anchor = |u: &super::Upstream| u.channel.lock().unwrap().as_ref().map(|(a, _)| a.clone());

    let missing = upstream.channel().unwrap_err();
    assert_eq!(missing.code(), Code::Unavailable);
    assert!(
        missing.message().contains(&ca_file.display().to_string()),
        "{}",
        missing.message()
    );

    let old = pem("old-root");
    std::fs::write(&ca_file, &old).unwrap();
    upstream.channel().unwrap();
    assert_eq!(anchor(&upstream).unwrap(), old.as_bytes());
    upstream.channel().unwrap();
    assert_eq!(
        anchor(&upstream).unwrap(),
        old.as_bytes(),
        "unchanged: kept"
    );

    let both = format!("{old}{}", pem("new-root"));
    std::fs::write(&ca_file, &both).unwrap();
    upstream.channel().unwrap();
    assert_eq!(
        anchor(&upstream).unwrap(),
        both.as_bytes(),
        "rotated: new channel"
    );
}
