//! Delta ADS responses written without tonic's response encoder.
//!
//! tonic encodes every response of a stream into one `BytesMut` that lives as long as the stream and
//! keeps the capacity of the largest response it has encoded (it grows by doubling: a proxy's first
//! config, or one large listener, leaves ~0.5 MiB behind on every connection for good). A heap profile
//! of 2,000 delta streams put ~95% of the control plane's memory there. Here each response is
//! encoded into its own exactly-sized buffer, handed to h2 and freed once written to the socket, so an
//! idle stream holds no encoding buffer at all. Requests are decoded the same way: tonic's
//! `Streaming` keeps the capacity of the largest request (an EDS subscription to 1,000 clusters,
//! ~0.1 MiB per stream); here the buffer is released whenever it holds no partial message. Every
//! other method (SotW) is served by the generated service unchanged.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use futures::StreamExt;
use http_body_util::BodyExt;
use http_body_util::StreamBody;
use hyper::body::Frame;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Bytes, Service, http};
use tonic::server::NamedService;

use crate::auth::{Caller, authenticate};
use crate::server::AdsService;
use crate::stream::Shared;

const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// The ADS service: every call authenticated first (when the listener authenticates), then delta
/// streams here, everything else to the generated service.
#[derive(Clone)]
pub struct AdsRoutes {
    pub(crate) shared: Arc<Shared>,
    pub(crate) generated: AggregatedDiscoveryServiceServer<AdsService>,
    pub(crate) auth: Option<Arc<dyn meshd_ca::Authenticator>>,
}

impl std::fmt::Debug for AdsRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdsRoutes")
            .field("authenticated", &self.auth.is_some())
            .finish_non_exhaustive()
    }
}

impl NamedService for AdsRoutes {
    const NAME: &'static str = <AggregatedDiscoveryServiceServer<AdsService> as NamedService>::NAME;
}

impl Service<http::Request<Body>> for AdsRoutes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let auth = self.auth.clone();
        let mut generated = self.generated.clone();
        Box::pin(async move {
            let caller = match &auth {
                None => Caller::Anyone,
                Some(auth) => {
                    let header = request
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok());
                    let peer = peer(&request);
                    match authenticate(auth, header, &peer, &shared.metrics).await {
                        Ok(caller) => caller,
                        Err(status) => return Ok(status.into_http()),
                    }
                }
            };
            if request.uri().path() != DELTA_PATH {
                request.extensions_mut().insert(caller);
                return generated.call(request).await;
            }
            Ok(delta(shared, caller, request))
        })
    }
}

/// The remote address of a call, for the log.
fn peer(request: &http::Request<Body>) -> String {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let ext = request.extensions();
    ext.get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.get_ref().remote_addr())
        })
        .map_or_else(|| "local".to_string(), |a| a.to_string())
}

fn delta(
    shared: Arc<Shared>,
    caller: Caller,
    request: http::Request<Body>,
) -> http::Response<Body> {
    if request
        .headers()
        .get("grpc-encoding")
        .is_some_and(|e| e != "identity")
    {
        return Status::unimplemented("meshd does not accept compressed ADS requests").into_http();
    }
    let requests = Box::pin(decode_requests(request.into_body()));
    let (tx, rx) = mpsc::channel(crate::server::STREAM_QUEUE);
    tokio::spawn(crate::delta::serve(shared, caller, requests, tx));
    let frames = ReceiverStream::new(rx)
        .map(Some)
        .chain(futures::stream::iter([None]))
        .scan(false, |ended, item| {
            if *ended {
                return futures::future::ready(None);
            }
            let frame = match item {
                Some(Ok(response)) => Frame::data(encode(&response)),
                Some(Err(status)) => {
                    *ended = true;
                    Frame::trailers(trailers(&status))
                }
                None => {
                    *ended = true;
                    Frame::trailers(trailers(&Status::ok("")))
                }
            };
            futures::future::ready(Some(Ok::<_, Infallible>(frame)))
        });
    let mut response = http::Response::new(Body::new(StreamBody::new(frames)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// One gRPC message: uncompressed flag, big-endian length, the protobuf; exactly sized.
fn encode(response: &DeltaDiscoveryResponse) -> Bytes {
    let len = response.encoded_len();
    let mut buf = Vec::with_capacity(len + 5);
    buf.push(0);
    buf.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    // Encoding into a Vec with enough capacity cannot fail.
    let _ = response.encode(&mut buf);
    Bytes::from(buf)
}

fn trailers(status: &Status) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    if status.add_header(&mut map).is_err() {
        map.insert("grpc-status", http::HeaderValue::from_static("13"));
    }
    map
}

/// Largest request accepted (tonic's default limit).
const MAX_REQUEST: usize = 4 * 1024 * 1024;

/// gRPC messages from a request body; the buffer is freed each time it is drained.
fn decode_requests(
    body: Body,
) -> impl futures::Stream<Item = Result<DeltaDiscoveryRequest, Status>> + Send {
    futures::stream::unfold(Some((body, Vec::<u8>::new())), |state| async move {
        let (mut body, mut buf) = state?;
        loop {
            if buf.len() >= 5 {
                let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
                if buf[0] != 0 {
                    let e = Status::unimplemented("compressed ADS requests are not accepted");
                    return Some((Err(e), None));
                }
                if len > MAX_REQUEST {
                    let e = Status::resource_exhausted(format!(
                        "request of {len} bytes exceeds the limit of {MAX_REQUEST}"
                    ));
                    return Some((Err(e), None));
                }
                if buf.len() >= 5 + len {
                    let decoded = DeltaDiscoveryRequest::decode(&buf[5..5 + len])
                        .map_err(|e| Status::internal(format!("bad request: {e}")));
                    if buf.len() == 5 + len {
                        buf = Vec::new(); // release the capacity
                    } else {
                        buf.drain(..5 + len);
                    }
                    return Some((decoded, Some((body, buf))));
                }
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Some((Err(Status::from_error(e.into())), None)),
                None => return None,
            }
        }
    })
}
