//! App probes and hooks against real servers on 127.0.0.1: an HTTPS app with a self-signed
//! certificate (rcgen, served by rustls) and a plain HTTP one. Each records the requests it got, so the
//! tests see what reached the app.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use meshd_agent::{AppProbes, ProbeOutcome};

type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

/// Answers `/ok` 200, `/moved` 302, `/fail` 500 and `/slow` 200 after 3 s; records path and headers.
async fn serve<S>(io: S, seen: Seen)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            let path = request.uri().path().to_string();
            seen.lock()
                .unwrap()
                .push((path.clone(), request.headers().clone()));
            let status = match path.as_str() {
                "/ok" => 200,
                "/moved" => 302,
                "/slow" => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    200
                }
                _ => 500,
            };
            Ok::<_, std::convert::Infallible>(
                hyper::Response::builder()
                    .status(status)
                    .body(Full::new(Bytes::from_static(b"answer")))
                    .unwrap(),
            )
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// An HTTPS app with a self-signed certificate for `app.example` (not for 127.0.0.1): its port.
async fn https_app(seen: Seen) -> u16 {
    let cert = rcgen::generate_simple_self_signed(vec!["app.example".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve(tls, seen).await;
                }
            });
        }
    });
    port
}

async fn http_app(seen: Seen) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve(tcp, seen.clone()));
        }
    });
    port
}

/// Runs `<container>/<kind>` of `json` once, as the agent does for a request from the kubelet.
async fn run(json: &str, container: &str, kind: &str) -> ProbeOutcome {
    let probes = AppProbes::parse(json).unwrap();
    let (probe, timeout) = probes.get(container, kind).unwrap();
    probe.run(None, timeout).await
}

fn https_probe(port: u16, path: &str, extra: &str) -> String {
    format!(
        r#"{{"app/livez":{{"httpGet":{{"path":"{path}","port":{port},"scheme":"HTTPS","httpHeaders":[{{"name":"Host","value":"app.example"}},{{"name":"X-Probe","value":"1"}}]}}{extra}}}}}"#
    )
}

#[tokio::test]
async fn https_probe_succeeds_without_verifying_and_keeps_the_headers() {
    let seen = Seen::default();
    let port = https_app(seen.clone()).await;
    let outcome = run(&https_probe(port, "/ok", ""), "app", "livez").await;
    assert_eq!(
        outcome,
        ProbeOutcome::Success(format!("GET https://127.0.0.1:{port}/ok: 200 OK"))
    );
    let moved = run(&https_probe(port, "/moved", ""), "app", "livez").await;
    assert!(matches!(moved, ProbeOutcome::Success(_)), "{moved:?}");

    let seen = seen.lock().unwrap();
    let (path, headers) = &seen[0];
    assert_eq!(path, "/ok");
    assert_eq!(headers["host"], "app.example", "the probe's Host header");
    assert_eq!(headers["x-probe"], "1");
    assert_eq!(headers["user-agent"], "kube-probe/meshd");
    assert_eq!(
        headers["connection"], "close",
        "no keep-alive, as the kubelet"
    );
}

#[tokio::test]
async fn https_probe_fails_on_500_and_on_timeout() {
    let port = https_app(Seen::default()).await;
    let outcome = run(&https_probe(port, "/fail", ""), "app", "livez").await;
    assert_eq!(
        outcome,
        ProbeOutcome::Failure(format!(
            "GET https://127.0.0.1:{port}/fail: 500 Internal Server Error"
        ))
    );
    let started = std::time::Instant::now();
    let outcome = run(
        &https_probe(port, "/slow", r#","timeoutSeconds":1"#),
        "app",
        "livez",
    )
    .await;
    assert_eq!(
        outcome,
        ProbeOutcome::Failure(format!(
            "GET https://127.0.0.1:{port}/slow: no answer within 1s"
        ))
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the probe's timeout was not kept"
    );
}

#[tokio::test]
async fn https_probe_to_a_plain_http_port_fails_with_the_tls_error() {
    let port = http_app(Seen::default()).await;
    let outcome = run(&https_probe(port, "/ok", ""), "app", "livez").await;
    let ProbeOutcome::Failure(reason) = outcome else {
        panic!("an HTTPS probe succeeded against plain HTTP: {outcome:?}");
    };
    assert!(reason.contains("TLS handshake"), "{reason}");
}

#[tokio::test]
async fn http_probe_defaults_the_host_and_lets_the_probe_set_user_agent() {
    let seen = Seen::default();
    let port = http_app(seen.clone()).await;
    let json = format!(
        r#"{{"app/readyz":{{"httpGet":{{"path":"ok","port":{port},"httpHeaders":[{{"name":"User-Agent","value":"mine"}}]}}}}}}"#
    );
    let outcome = run(&json, "app", "readyz").await;
    assert!(matches!(outcome, ProbeOutcome::Success(_)), "{outcome:?}");
    let seen = seen.lock().unwrap();
    let (path, headers) = &seen[0];
    assert_eq!(path, "/ok");
    assert_eq!(headers["host"], format!("127.0.0.1:{port}"));
    assert_eq!(
        headers.get_all("user-agent").iter().collect::<Vec<_>>(),
        ["mine"],
        "the probe's User-Agent replaces the default"
    );
}

#[tokio::test]
async fn hooks_run_their_handler_once_per_request() {
    let seen = Seen::default();
    let port = https_app(seen.clone()).await;
    let json = format!(
        r#"{{"app/prestop":{{"httpGet":{{"path":"/ok","port":{port},"scheme":"HTTPS"}},"timeoutSeconds":2}},"app/poststart":{{"tcpSocket":{{"port":{port}}}}},"gone/poststart":{{"tcpSocket":{{"port":1}}}}}}"#
    );
    let outcome = run(&json, "app", "prestop").await;
    assert!(matches!(outcome, ProbeOutcome::Success(_)), "{outcome:?}");
    assert_eq!(seen.lock().unwrap().len(), 1, "the hook ran exactly once");
    let outcome = run(&json, "app", "poststart").await;
    assert!(matches!(outcome, ProbeOutcome::Success(_)), "{outcome:?}");
    let outcome = run(&json, "gone", "poststart").await;
    assert!(matches!(outcome, ProbeOutcome::Failure(_)), "{outcome:?}");
}
