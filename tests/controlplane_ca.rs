//! `meshd controlplane --ca-dir` from outside (SPEC §9): the CA files exist, with their modes, by the time
//! the control plane accepts connections; a directory with some of the files is refused by name; over
//! TCP the CA and xDS are served over TLS with a certificate the mesh root verifies; `meshd agent` flags
//! that do not parse exit 64 naming the flag; the planned root rotation of docs/design.md applies step by
//! step to the files of a running control plane. No root needed.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use meshd_ca::client::{self, ClientTls};
use meshd_ca::proto::IstioCertificateRequest;

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");

struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn control_plane(dir: &std::path::Path, listen: &str) -> Guard {
    std::fs::create_dir_all(dir.join("config")).unwrap();
    Guard(
        Command::new(MESHD)
            .args(["controlplane", "--metrics-listen"])
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--config-dir")
            .arg(dir.join("config"))
            .args(["--xds-listen", listen])
            .arg("--ca-dir")
            .arg(dir.join("ca"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_ca_files_are_there_before_the_control_plane_listens() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("cp.sock");
    let _cp = control_plane(tmp.path(), &format!("unix:{}", socket.display()));
    let started = Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never listened"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let ca = tmp.path().join("ca");
    assert_eq!(mode(&ca), 0o700);
    for (file, want) in [
        ("root-cert.pem", 0o644),
        ("ca-cert.pem", 0o644),
        ("cert-chain.pem", 0o644),
        ("ca-key.pem", 0o600),
    ] {
        assert_eq!(mode(&ca.join(file)), want, "{file}");
    }
}

#[test]
fn a_ca_dir_with_some_of_the_files_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("ca")).unwrap();
    std::fs::create_dir_all(tmp.path().join("config")).unwrap();
    let pem = meshd_ca::CaPem::self_signed("cluster.local", SystemTime::now()).unwrap();
    std::fs::write(tmp.path().join("ca/root-cert.pem"), &pem.root_cert).unwrap();
    let out = Command::new(MESHD)
        .args(["controlplane", "--metrics-listen", "127.0.0.1:0"])
        .arg("--config-dir")
        .arg(tmp.path().join("config"))
        .arg("--xds-listen")
        .arg(format!("unix:{}", tmp.path().join("cp.sock").display()))
        .arg("--ca-dir")
        .arg(tmp.path().join("ca"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("has root-cert.pem but not ca-cert.pem, ca-key.pem, cert-chain.pem"),
        "{stderr}"
    );
    assert!(!tmp.path().join("cp.sock").exists());
}

#[tokio::test]
async fn over_tcp_the_ca_answers_over_tls_verified_by_the_mesh_root() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("config")).unwrap();
    std::fs::write(
        tmp.path().join("config/token.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: vm-token\n  namespace: vms\n  annotations: {kubernetes.io/service-account.name: billing}\ntype: kubernetes.io/service-account-token\nstringData: {token: vm-secret}\n",
    )
    .unwrap();
    let port = free_port();
    let _cp = control_plane(tmp.path(), &format!("127.0.0.1:{port}"));
    let root = tmp.path().join("ca/root-cert.pem");
    let address = meshd_translate::XdsAddress::Tcp {
        host: "127.0.0.1".into(),
        port,
    };
    let started = Instant::now();
    let channel = loop {
        if let Ok(ca_pem) = std::fs::read(&root) {
            let tls = ClientTls {
                ca_pem,
                server_name: meshd_api::names::CONTROL_PLANE_SERVER_NAME.into(),
            };
            if let Ok(c) = client::connect(&address, Some(&tls)).await {
                break c;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never served TLS"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let request = |csr: &str| IstioCertificateRequest {
        csr: csr.to_string(),
        validity_duration: 0,
        metadata: None,
    };
    let chain = client::create_certificate(channel.clone(), "vm-secret", request(&csr))
        .await
        .unwrap()
        .cert_chain;
    assert_eq!(chain.len(), 2);
    assert!(chain[1].contains("BEGIN CERTIFICATE"));
    let status = client::create_certificate(channel, "nope", request(&csr))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    // Plaintext to the TLS listener does not work: there is no plaintext door next to it.
    let plain = client::connect(&address, None).await;
    if let Ok(c) = plain {
        assert!(
            client::create_certificate(c, "vm-secret", request(&csr))
                .await
                .is_err()
        );
    }
}

#[test]
fn bad_agent_flags_exit_64_naming_the_flag() {
    for (args, flag) in [
        (&["--pod-ip", "10.0.0"][..], "--pod-ip"),
        (&["--xds-tls", "maybe"], "--xds-tls"),
        (&["--discovery-address", "nohost"], "--discovery-address"),
        (&["--label", "novalue"], "--label"),
        (&["--admin-port", "0"], "--admin-port"),
    ] {
        let out = Command::new(MESHD)
            .args(["agent", "--pod-name", "a", "--pod-namespace", "b"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

/// DERs of the PEM certificates in `pem`, in order.
fn ders(pem: &str) -> Vec<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.expect("PEM certificate").to_vec())
        .collect()
}

/// Whether the leaf (first certificate of `leaf_pem`) is signed by the certificate `issuer_pem`.
fn signed_by(leaf_pem: &str, issuer_pem: &str) -> bool {
    let (leaf, issuer) = (ders(leaf_pem), ders(issuer_pem));
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf[0]).expect("leaf");
    let (_, issuer) = x509_parser::parse_x509_certificate(&issuer[0]).expect("issuer");
    leaf.verify_signature(Some(issuer.public_key())).is_ok()
}

/// Writes `path` whole (a rename), as an operator's tooling would.
fn replace(path: &std::path::Path, text: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

/// docs/design.md's planned root rotation, file-fed, against the running control plane: the new root is
/// trusted beside the old one (every answer's root bundle carries both) before the signer changes; after
/// the switch new leaves chain to the new root while the old leaves still verify against the bundle; the
/// old root goes last. No restart at any step.
#[tokio::test]
async fn a_planned_root_rotation_in_the_ca_dir_applies_step_by_step_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("config")).unwrap();
    std::fs::write(
        tmp.path().join("config/token.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-token\n  namespace: shop\n  annotations: {kubernetes.io/service-account.name: web}\ntype: kubernetes.io/service-account-token\nstringData: {token: web-secret}\n",
    )
    .unwrap();
    let socket = tmp.path().join("cp.sock");
    let _cp = control_plane(tmp.path(), &format!("unix:{}", socket.display()));
    let address = meshd_translate::XdsAddress::Unix(socket.display().to_string());
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    // One issuance: (leaf PEM, root bundle PEM).
    let issue = || {
        let (address, csr) = (address.clone(), csr.clone());
        async move {
            let channel = client::connect(&address, None).await.ok()?;
            let request = IstioCertificateRequest {
                csr,
                validity_duration: 0,
                metadata: None,
            };
            let chain = client::create_certificate(channel, "web-secret", request)
                .await
                .ok()?
                .cert_chain;
            Some((chain.first()?.clone(), chain.last()?.clone()))
        }
    };
    // Polls issuance until `done` holds for an answer; that answer.
    async fn until<F: Future<Output = Option<(String, String)>>>(
        what: &str,
        mut issue: impl FnMut() -> F,
        done: impl Fn(&(String, String)) -> bool,
    ) -> (String, String) {
        let started = Instant::now();
        loop {
            if let Some(answer) = issue().await
                && done(&answer)
            {
                return answer;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "{what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let ca = tmp.path().join("ca");
    let (leaf_before, bundle) = until("a first certificate", issue, |_| true).await;
    let old_root = std::fs::read_to_string(ca.join("root-cert.pem")).unwrap();
    assert_eq!(ders(&bundle), ders(&old_root));
    assert!(signed_by(&leaf_before, &old_root));

    // 1. The new root joins the bundle; the old CA keeps signing.
    let new = meshd_ca::CaPem::self_signed("cluster.local", SystemTime::now()).unwrap();
    let both = format!("{old_root}{}", new.root_cert);
    replace(&ca.join("root-cert.pem"), &both);
    let (leaf_step1, _) = until("both roots in the answer's bundle", issue, |(_, b)| {
        ders(b) == ders(&both)
    })
    .await;
    assert!(signed_by(&leaf_step1, &old_root), "still the old signer");

    // 3. The signer switches to the new CA (the bundle keeps both roots). While the files are half
    // written the CA does not load and the one in force stays.
    replace(&ca.join("ca-key.pem"), &new.ca_key);
    replace(&ca.join("cert-chain.pem"), &new.cert_chain);
    replace(&ca.join("ca-cert.pem"), &new.ca_cert);
    let (leaf_step3, bundle) = until("leaves from the new signer", issue, |(leaf, _)| {
        signed_by(leaf, &new.root_cert)
    })
    .await;
    assert_eq!(ders(&bundle), ders(&both), "both roots still trusted");
    assert!(!signed_by(&leaf_step3, &old_root));
    // A workload not yet renewed still verifies: its root is in everyone's bundle.
    assert!(ders(&bundle).contains(&ders(&old_root)[0]));

    // 5. Every workload renewed: the old root goes.
    replace(&ca.join("root-cert.pem"), &new.root_cert);
    let (leaf_step5, _) = until("only the new root in the bundle", issue, |(_, b)| {
        ders(b) == ders(&new.root_cert)
    })
    .await;
    assert!(signed_by(&leaf_step5, &new.root_cert));
}
