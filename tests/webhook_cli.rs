//! `meshd webhook` as a process: real TLS on loopback with a verifying client, the fixture answered,
//! metrics served, SIGTERM exits 0; a bad Mesh file exits 1 naming the field.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meshd_tools::pki::DevCa;
use serde_json::Value;

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/admission");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn serves_injection_over_tls_and_exits_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = DevCa::new().expect("ca");
    let leaf = ca.issue(&["localhost"]).expect("leaf");
    let (cert, key, mesh) = (
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
        dir.path().join("mesh.yaml"),
    );
    std::fs::write(&cert, &leaf.cert_pem).expect("write");
    std::fs::write(&key, &leaf.key_pem).expect("write");
    std::fs::write(
        &mesh,
        "apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec: {}\n",
    )
    .expect("write");
    let (port, metrics_port) = (free_port(), free_port());
    let child = Command::new(MESHD)
        .args([
            "webhook",
            "--mesh",
            mesh.to_str().expect("p"),
            "--tls-cert",
            cert.to_str().expect("p"),
        ])
        .args([
            "--tls-key",
            key.to_str().expect("p"),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("meshd webhook starts");
    let mut child = Killed(child);
    let body = std::fs::read(format!("{FIXTURES}/pod-web.json")).expect("fixture");
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, answer) = loop {
        match common::post_review(port, &ca.ca_pem(), &body) {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("webhook never answered: {e}"),
        }
    };
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&answer).expect("json answer");
    assert_eq!(
        answer["response"]["uid"],
        "7eb43e2e-1120-4bfa-bf55-d47c1e516327"
    );
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    // JSON with a non-string annotation value: refused naming the field, as kubectl would.
    let mut typed: Value = serde_json::from_slice(&body).expect("json");
    typed["request"]["object"]["metadata"]["annotations"] =
        serde_json::json!({"sidecar.meshd.io/nativeSidecar": true});
    let (status, refused) = common::post_review(
        port,
        &ca.ca_pem(),
        &serde_json::to_vec(&typed).expect("json"),
    )
    .expect("answer");
    assert_eq!(status, 200);
    let refused: Value = serde_json::from_slice(&refused).expect("json answer");
    assert_eq!(refused["response"]["allowed"], false);
    let message = refused["response"]["status"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(
        message.contains(r#"metadata.annotations["sidecar.meshd.io/nativeSidecar"]"#),
        "{message}"
    );
    let metrics = http_get(metrics_port, "/metrics");
    assert!(
        metrics.contains("meshd_injections_total{result=\"injected\",reason=\"\"} 1"),
        "{metrics}"
    );

    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status.code();
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
}

#[test]
fn a_bad_mesh_file_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mesh = dir.path().join("mesh.yaml");
    std::fs::write(
        &mesh,
        "trafficCapture: {excludeOutboundCIDRs: [\"10.0.0.0/33\"]}\n",
    )
    .expect("write");
    let out = Command::new(MESHD)
        .args([
            "webhook",
            "--mesh",
            mesh.to_str().expect("p"),
            "--tls-cert",
            "/x",
            "--tls-key",
            "/y",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("excludeOutboundCIDRs") && stderr.contains("10.0.0.0/33"),
        "{stderr}"
    );
    // Said once, not once as a log line and again as the exit message.
    assert_eq!(stderr.matches("10.0.0.0/33").count(), 1, "{stderr}");
}
