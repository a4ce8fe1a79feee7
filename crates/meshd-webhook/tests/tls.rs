//! The webhook over real TLS: an rcgen CA, a verifying rustls client, HTTP/1.1 and h2, TLS 1.2 and 1.3,
//! the fixtures byte for byte, the body limit, malformed bodies, certificate rotation while requests
//! flow (no failed request), metrics, Events and graceful shutdown.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const ALL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn uid_of(body: &[u8]) -> Value {
    serde_json::from_slice::<Value>(body).expect("json")["request"]["uid"].clone()
}

#[tokio::test]
async fn fixtures_over_http1_and_h2_with_tls12_and_tls13() {
    let hook = Webhook::start(1 << 20).await;
    let names = [
        "pod-web.json",
        "pod-hostnetwork.json",
        "pod-bad-annotations.json",
        "job-migrate-pod.json",
        "pod-generatename-dryrun.json",
    ];
    for versions in [
        &[&rustls::version::TLS12][..],
        &[&rustls::version::TLS13][..],
    ] {
        // HTTP/1.1, one keep-alive connection for all fixtures.
        let stream = connect(
            hook.addr,
            client_config(&hook.ca.ca_pem(), &[b"http/1.1"], versions),
        )
        .await
        .expect("connect");
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(
            stream.get_ref().1.protocol_version(),
            Some(versions[0].version)
        );
        let mut h1 = http1(stream).await;
        for name in names {
            let (status, body) = post_h1(&mut h1, fixture(name)).await.expect("request");
            assert_eq!(status, 200, "{name}");
            let answer: Value = serde_json::from_slice(&body).expect("answer json");
            assert_eq!(answer["response"]["uid"], uid_of(&fixture(name)), "{name}");
        }
        // h2 via ALPN.
        let stream = connect(
            hook.addr,
            client_config(&hook.ca.ca_pem(), &[b"h2"], versions),
        )
        .await
        .expect("connect");
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut h2 = http2(stream).await;
        let response = h2
            .send_request(request(fixture("pod-web.json")))
            .await
            .expect("h2 request");
        let (status, body) = collect(response).await;
        assert_eq!(status, 200);
        let answer: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(answer["response"]["allowed"], true);
        assert_eq!(answer["response"]["patchType"], "JSONPatch");
    }
    let metrics = hook.metrics_text();
    for line in [
        "meshd_injections_total{result=\"injected\",reason=\"\"} 8",
        "meshd_injections_total{result=\"skipped\",reason=\"host_network\"} 2",
        "meshd_injections_total{result=\"refused\",reason=\"bad_annotation\"} 2",
        "meshd_injections_total{result=\"skipped\",reason=\"opted_out\"} 0",
        "meshd_injection_duration_seconds_count 12",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    // Events: none for the dry run; the Job pod's event names its owner.
    let events = hook.events.0.lock().expect("lock").clone();
    assert!(
        events.iter().all(|e| !e.contains("worker-")),
        "dry run produced an event: {events:?}"
    );
    assert!(
        events.contains(&"injected shop/migrate-* owner=Some(\"Job\")".to_string()),
        "{events:?}"
    );
    assert!(
        events.contains(&"skipped shop/hostnet host_network".to_string()),
        "{events:?}"
    );
    hook.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), hook.served)
        .await
        .expect("drained")
        .expect("join");
}

#[tokio::test]
async fn bad_bodies_are_answered_and_the_server_keeps_serving() {
    let hook = Webhook::start(64 * 1024).await;
    let stream = connect(
        hook.addr,
        client_config(&hook.ca.ca_pem(), &[b"http/1.1"], ALL_VERSIONS),
    )
    .await
    .expect("connect");
    let mut h1 = http1(stream).await;
    let (status, body) = post_h1(&mut h1, b"{definitely not json".to_vec())
        .await
        .expect("request");
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("not an AdmissionReview"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _) = post_h1(
        &mut h1,
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
    )
    .await
    .expect("request");
    assert_eq!(status, 400);
    // Over the limit: 413 (the connection may be closed after it).
    let (status, _) = post_h1(&mut h1, vec![b' '; 100 * 1024])
        .await
        .expect("request");
    assert_eq!(status, 413);
    // A fresh connection still gets answers.
    let stream = connect(
        hook.addr,
        client_config(&hook.ca.ca_pem(), &[b"http/1.1"], ALL_VERSIONS),
    )
    .await
    .expect("connect");
    let mut h1 = http1(stream).await;
    let (status, body) = post_h1(&mut h1, fixture("pod-web.json"))
        .await
        .expect("request");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).expect("json")["response"]["allowed"],
        true
    );
    assert!(
        hook.metrics_text()
            .contains("meshd_injections_total{result=\"invalid\",reason=\"malformed\"} 1")
    );
}

#[tokio::test]
async fn an_untrusted_client_cannot_talk_to_it_and_a_wrong_ca_is_refused() {
    let hook = Webhook::start(1 << 20).await;
    let other = meshd_tools::pki::DevCa::new().expect("ca");
    let result = connect(
        hook.addr,
        client_config(&other.ca_pem(), &[b"http/1.1"], ALL_VERSIONS),
    )
    .await;
    assert!(
        result.is_err(),
        "a client trusting another CA completed the handshake"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_while_requests_flow_fails_no_request() {
    let hook = Webhook::start(1 << 20).await;
    let config = client_config(&hook.ca.ca_pem(), &[b"http/1.1"], ALL_VERSIONS);
    let first = peer_leaf(&connect(hook.addr, config.clone()).await.expect("connect"));
    // A keep-alive connection opened before the rotation keeps working after it.
    let mut kept = http1(connect(hook.addr, config.clone()).await.expect("connect")).await;

    let stop = tokio_util::sync::CancellationToken::new();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (config, stop, addr) = (config.clone(), stop.clone(), hook.addr);
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut leaves) =
                (0u32, Vec::new(), std::collections::BTreeSet::new());
            while !stop.is_cancelled() {
                // A new connection each time: every request is a handshake that may see a new certificate.
                match connect(addr, config.clone()).await {
                    Ok(stream) => {
                        leaves.insert(peer_leaf(&stream));
                        let mut h1 = http1(stream).await;
                        match post_h1(&mut h1, fixture("pod-web.json")).await {
                            Ok((200, _)) => ok += 1,
                            other => failed.push(format!("{other:?}")),
                        }
                    }
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed, leaves)
        }));
    }
    let mut issued = Vec::new();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        issued.push(hook.rotate());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    let (mut total, mut failures, mut seen) = (0, Vec::new(), std::collections::BTreeSet::new());
    for c in clients {
        let (ok, failed, leaves) = c.await.expect("client");
        total += ok;
        failures.extend(failed);
        seen.extend(leaves);
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(total > 20, "only {total} requests");
    use rustls::pki_types::pem::PemObject;
    let last = rustls::pki_types::CertificateDer::pem_slice_iter(
        issued.last().expect("rotated").cert_pem.as_bytes(),
    )
    .next()
    .expect("pem")
    .expect("der")
    .to_vec();
    let now = peer_leaf(&connect(hook.addr, config.clone()).await.expect("connect"));
    assert_ne!(now, first, "still serving the first certificate");
    assert_eq!(now, last, "not serving the newest certificate");
    assert!(seen.len() >= 2, "clients saw {} certificates", seen.len());
    let (status, _) = post_h1(&mut kept, fixture("pod-web.json"))
        .await
        .expect("kept connection");
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_broken_new_certificate_keeps_the_old_one_in_service() {
    let hook = Webhook::start(1 << 20).await;
    let config = client_config(&hook.ca.ca_pem(), &[b"http/1.1"], ALL_VERSIONS);
    let before = peer_leaf(&connect(hook.addr, config.clone()).await.expect("connect"));
    std::fs::write(hook.cert_path(), "-----BEGIN CERTIFICATE-----\ngarbage\n").expect("write");
    let stream = connect(hook.addr, config.clone())
        .await
        .expect("still serving");
    assert_eq!(peer_leaf(&stream), before);
    let mut h1 = http1(stream).await;
    assert_eq!(
        post_h1(&mut h1, fixture("pod-web.json"))
            .await
            .expect("request")
            .0,
        200
    );
    // A mismatched pair (a new key, the old certificate) is refused too.
    let other = hook.ca.issue(&["localhost"]).expect("leaf");
    std::fs::write(hook.key_path(), other.key_pem).expect("write");
    assert_eq!(
        peer_leaf(&connect(hook.addr, config.clone()).await.expect("connect")),
        before
    );
}

#[tokio::test]
async fn shutdown_drains_and_stops_accepting() {
    let hook = Webhook::start(1 << 20).await;
    let config = client_config(&hook.ca.ca_pem(), &[b"http/1.1"], ALL_VERSIONS);
    let mut h1 = http1(connect(hook.addr, config.clone()).await.expect("connect")).await;
    assert_eq!(
        post_h1(&mut h1, fixture("pod-web.json"))
            .await
            .expect("request")
            .0,
        200
    );
    hook.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), hook.served)
        .await
        .expect("serve returned")
        .expect("join");
    assert!(
        connect(hook.addr, config).await.is_err(),
        "still accepting after shutdown"
    );
}

/// TLS 1.0 and 1.1 are refused. rustls cannot speak them, so this uses the openssl CLI when present.
#[tokio::test]
async fn tls_below_1_2_is_refused() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "openssl is needed for this test in CI"
        );
        println!("SKIP: openssl not installed");
        return;
    }
    let hook = Webhook::start(1 << 20).await;
    let connect_with = |flag: &'static str| {
        let addr = hook.addr.to_string();
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("openssl")
                // SECLEVEL=0 lets openssl offer the old protocols, so a refusal is the server's.
                .args([
                    "s_client",
                    flag,
                    "-cipher",
                    "DEFAULT@SECLEVEL=0",
                    "-connect",
                    &addr,
                    "-servername",
                    "localhost",
                ])
                .stdin(std::process::Stdio::null())
                .output()
                .expect("openssl runs");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), text)
        })
    };
    for flag in ["-tls1", "-tls1_1"] {
        let (ok, text) = connect_with(flag).await.expect("join");
        assert!(!ok, "{flag} handshake succeeded:\n{text}");
        assert!(
            text.contains("alert") && text.contains("Cipher is (NONE)"),
            "{flag}: no alert from the server:\n{text}"
        );
    }
    let (ok, text) = connect_with("-tls1_2").await.expect("join");
    assert!(ok && text.contains("TLSv1.2"), "TLS 1.2 refused:\n{text}");
}
