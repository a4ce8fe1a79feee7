//! The gRPC probe: `grpc.health.v1.Health/Check` over plaintext HTTP/2, as the kubelet runs it. The
//! request and answer are tiny protobufs, encoded by hand to avoid a protobuf toolchain here.

use std::net::IpAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::probes::ProbeOutcome;

/// `HealthCheckResponse.status` SERVING.
const SERVING: u64 = 1;

/// The gRPC frame of `HealthCheckRequest { service }`.
pub(crate) fn request_frame(service: &str) -> Vec<u8> {
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = vec![0u8]; // not compressed
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    frame
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `HealthCheckResponse.status` from the answer's first gRPC frame (0 = UNKNOWN when absent).
pub(crate) fn response_status(body: &[u8]) -> Result<u64, String> {
    let message = body.get(5..).ok_or("the answer has no gRPC frame")?;
    let mut i = 0;
    while i < message.len() {
        let tag = message[i];
        i += 1;
        let (value, used) = varint(&message[i..]).ok_or("a truncated protobuf answer")?;
        i += used;
        match tag {
            0x08 => return Ok(value),
            t if t & 0x07 == 2 => i += value as usize, // skip unknown length-delimited fields
            t if t & 0x07 == 0 => {}
            t => return Err(format!("unexpected protobuf field tag {t:#x}")),
        }
    }
    Ok(0)
}

fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

pub(crate) async fn probe(
    host: &str,
    port: u16,
    pod_ip: Option<IpAddr>,
    service: &str,
    timeout: Duration,
) -> ProbeOutcome {
    let target = format!("{}:{port}", crate::probes::bracket(host));
    let connected = async {
        crate::probes::connect_app(host, port, pod_ip)
            .await
            .map_err(|e| e.to_string())
    };
    let checked = async { check(connected.await?, &target, service).await };
    match tokio::time::timeout(timeout, checked).await {
        Ok(Ok(())) => ProbeOutcome::Success(format!("grpc {target}: SERVING")),
        Ok(Err(reason)) => ProbeOutcome::Failure(format!("grpc {target}: {reason}")),
        Err(_) => ProbeOutcome::Failure(format!("grpc {target}: no answer within {timeout:?}")),
    }
}

async fn check(stream: tokio::net::TcpStream, target: &str, service: &str) -> Result<(), String> {
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP/2: {e}"))?;
    tokio::spawn(conn);
    let request = hyper::Request::post(format!("http://{target}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(request_frame(service))))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let headers = response.headers().clone();
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let grpc = |name: &str| {
        trailers
            .get(name)
            .or_else(|| headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match grpc("grpc-status").as_deref() {
        Some("0") => {}
        Some(code) => {
            return Err(format!(
                "grpc-status {code} {}",
                grpc("grpc-message").unwrap_or_default()
            ));
        }
        None => return Err("no grpc-status in the answer".into()),
    }
    match response_status(&collected.to_bytes())? {
        SERVING => Ok(()),
        status => Err(format!("health status {status} (1 is SERVING)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_encode_and_decode() {
        assert_eq!(request_frame(""), vec![0, 0, 0, 0, 0]);
        assert_eq!(
            request_frame("db"),
            vec![0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']
        );
        assert_eq!(response_status(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(1));
        assert_eq!(response_status(&[0, 0, 0, 0, 2, 0x08, 2]), Ok(2));
        assert_eq!(response_status(&[0, 0, 0, 0, 0]), Ok(0));
        assert!(response_status(&[0, 0]).is_err());
    }

    /// A plaintext HTTP/2 health server: service `db` is SERVING, `down` NOT_SERVING, others
    /// answer grpc-status 5 (NOT_FOUND), as grpc-go's health server does.
    async fn health_server() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        let (data, code) = if body.as_ref() == request_frame("db").as_slice() {
                            (vec![0, 0, 0, 0, 2, 0x08, 1], "0")
                        } else if body.as_ref() == request_frame("down").as_slice() {
                            (vec![0, 0, 0, 0, 2, 0x08, 2], "0")
                        } else {
                            (vec![], "5")
                        };
                        let mut trailers = hyper::HeaderMap::new();
                        trailers.insert("grpc-status", code.parse().unwrap());
                        let body = Full::new(Bytes::from(data))
                            .map_err(|never| match never {})
                            .with_trailers(async move { Some(Ok::<_, hyper::Error>(trailers)) });
                        Ok::<_, hyper::Error>(
                            hyper::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(body)
                                .unwrap(),
                        )
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        addr
    }

    #[tokio::test]
    async fn probes_a_real_http2_health_service() {
        let addr = health_server().await;
        let t = Duration::from_secs(2);
        let run = |service: &'static str| probe("127.0.0.1", addr.port(), None, service, t);
        assert!(matches!(run("db").await, ProbeOutcome::Success(_)));
        match run("down").await {
            ProbeOutcome::Failure(reason) => assert!(reason.contains("status 2"), "{reason}"),
            other => panic!("{other:?}"),
        }
        match run("nobody").await {
            ProbeOutcome::Failure(reason) => assert!(reason.contains("grpc-status 5"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(matches!(
            probe("127.0.0.1", port, None, "", t).await,
            ProbeOutcome::Failure(_)
        ));
    }
}
