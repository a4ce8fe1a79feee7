//! What the CA signs (SPEC §9): ECDSA P-256 leaf certificates whose only identity is the SPIFFE URI of
//! the authenticated service account, whatever the CSR asked for; chains that a TLS peer verifies,
//! through an intermediate (plug-in CA) too; a root bundle handed out whole during a root rotation.

mod common;

use std::time::{Duration, SystemTime};

use meshd_ca::{CaPem, CertificateAuthority};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ECDSA_WITH_SHA256,
};
use x509_parser::prelude::*;

const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
const DAY: Duration = Duration::from_secs(86_400);

fn root() -> CaPem {
    CaPem::self_signed("cluster.local", SystemTime::now()).unwrap()
}

#[test]
fn the_leaf_carries_the_authenticated_identity_and_nothing_the_csr_asked_for() {
    let ca = CertificateAuthority::new(&root()).unwrap();
    let (key, csr) = common::csr(&[
        "spiffe://cluster.local/ns/kube-system/sa/admin",
        "evil.example.com",
    ]);
    let now = SystemTime::now();
    let issued = ca.issue_workload(&csr, WEB, DAY, now).unwrap();
    assert_eq!(
        issued.chain.len(),
        2,
        "leaf + root bundle for a self-signed CA"
    );
    let der = &common::ders(&issued.chain[0])[0];
    let (_, leaf) = X509Certificate::from_der(der).unwrap();

    // Identity: exactly one SAN, the URI, critical because the subject is empty.
    assert!(leaf.subject().iter().next().is_none(), "{}", leaf.subject());
    let san = leaf
        .extensions()
        .iter()
        .find(|e| {
            matches!(
                e.parsed_extension(),
                ParsedExtension::SubjectAlternativeName(_)
            )
        })
        .unwrap();
    assert!(san.critical);
    let ParsedExtension::SubjectAlternativeName(names) = san.parsed_extension() else {
        unreachable!()
    };
    assert_eq!(names.general_names, vec![GeneralName::URI(WEB)]);

    // Key: the CSR's own P-256 key; signature ECDSA-SHA256 by the CA.
    let spki = &leaf.tbs_certificate.subject_pki;
    assert_eq!(spki.algorithm.algorithm, OID_KEY_TYPE_EC_PUBLIC_KEY);
    assert_eq!(
        spki.algorithm
            .parameters
            .as_ref()
            .unwrap()
            .as_oid()
            .unwrap(),
        OID_EC_P256
    );
    assert_eq!(spki.subject_public_key.data.as_ref(), key.public_key_raw());
    assert_eq!(
        leaf.signature_algorithm.algorithm,
        OID_SIG_ECDSA_WITH_SHA256
    );

    // Use: an end entity for both ends of mTLS.
    let bc = leaf.basic_constraints().unwrap().unwrap();
    assert!(!bc.value.ca);
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());

    // Validity: the TTL from now, backdated at most a minute.
    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(not_after - now_s, DAY.as_secs() as i64);
    assert_eq!(now_s - not_before, 60);

    common::verify(&issued.chain[..1], &issued.chain[1]).unwrap();
    assert_eq!(issued.chain[1], ca.roots_pem());
}

#[test]
fn every_serial_is_new() {
    let ca = CertificateAuthority::new(&root()).unwrap();
    let (_, csr) = common::csr(&[]);
    let a = ca
        .issue_workload(&csr, WEB, DAY, SystemTime::now())
        .unwrap();
    let b = ca
        .issue_workload(&csr, WEB, DAY, SystemTime::now())
        .unwrap();
    assert_ne!(a.serial, b.serial);
    assert_eq!(a.serial.len(), 32);
}

#[test]
fn an_intermediate_ca_serves_its_chain() {
    let root = root();
    let plug_in = common::intermediate(&root, "shop intermediate");
    let ca = CertificateAuthority::new(&plug_in).unwrap();
    let (_, csr) = common::csr(&[]);
    let issued = ca
        .issue_workload(&csr, WEB, DAY, SystemTime::now())
        .unwrap();
    assert_eq!(issued.chain.len(), 3, "leaf, intermediate, root");
    assert_eq!(
        common::ders(&issued.chain[1]),
        common::ders(&plug_in.ca_cert)
    );
    assert_eq!(
        common::ders(&issued.chain[2]),
        common::ders(&root.root_cert)
    );
    common::verify(&issued.chain[..2], &issued.chain[2]).unwrap();
    // Without the intermediate the leaf does not verify: the chain is needed.
    assert!(common::verify(&issued.chain[..1], &issued.chain[2]).is_err());
}

#[test]
fn a_leaf_never_outlives_its_ca() {
    let root = root();
    let ca = CertificateAuthority::new(&common::intermediate(&root, "short")).unwrap();
    let (_, csr) = common::csr(&[]);
    let issued = ca
        .issue_workload(&csr, WEB, 400 * DAY, SystemTime::now())
        .unwrap();
    assert_eq!(issued.validity.not_after, ca.not_after());
}

#[test]
fn bad_ca_material_names_the_file() {
    let a = root();
    let b = root();
    let cases: [(&str, CaPem, &str); 5] = [
        (
            "key of another CA",
            CaPem {
                ca_key: b.ca_key.clone(),
                ..a.clone()
            },
            "ca-key.pem: is not the key of ca-cert.pem",
        ),
        (
            "chain of another CA",
            CaPem {
                cert_chain: b.cert_chain.clone(),
                ..a.clone()
            },
            "cert-chain.pem: must start with",
        ),
        (
            "roots that do not anchor the chain",
            CaPem {
                root_cert: b.root_cert.clone(),
                ..a.clone()
            },
            "cert-chain.pem: does not lead to a certificate in root-cert.pem",
        ),
        (
            "no certificate at all",
            CaPem {
                root_cert: "nothing here".into(),
                ..a.clone()
            },
            "root-cert.pem: holds no PEM CERTIFICATE",
        ),
        (
            "a leaf as CA",
            {
                let leaf = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
                CaPem {
                    ca_cert: leaf.cert.pem(),
                    ca_key: leaf.signing_key.serialize_pem(),
                    cert_chain: leaf.cert.pem(),
                    root_cert: leaf.cert.pem(),
                }
            },
            "ca-cert.pem: is not a CA certificate",
        ),
    ];
    for (case, pem, want) in cases {
        let err = CertificateAuthority::new(&pem).unwrap_err().to_string();
        assert!(err.contains(want), "{case}: {err}");
        assert!(!err.contains("PRIVATE KEY"), "{case}: {err}");
    }
    assert!(!format!("{:?}", a).contains("PRIVATE KEY"));
}

/// The planned root rotation of docs/design.md, in the order an operator performs it.
#[test]
fn a_root_rotation_keeps_every_certificate_trusted() {
    let old = root();
    let new = root();
    let both = format!("{}{}", old.root_cert, new.root_cert);
    let (_, csr) = common::csr(&[]);
    let now = SystemTime::now();

    // 0. Before: the old root signs; workloads trust it alone.
    let before = CertificateAuthority::new(&old).unwrap();
    let leaf_old = before.issue_workload(&csr, WEB, DAY, now).unwrap();

    // 1. Add the new root to root-cert.pem; the old one still signs. Renewed workloads get both roots.
    let step1 = CertificateAuthority::new(&CaPem {
        root_cert: both.clone(),
        ..old.clone()
    })
    .unwrap();
    let leaf1 = step1.issue_workload(&csr, WEB, DAY, now).unwrap();
    assert_eq!(step1.root_count(), 2);
    assert_eq!(common::ders(leaf1.chain.last().unwrap()).len(), 2);
    assert_eq!(
        common::ders(leaf1.chain.last().unwrap()),
        common::ders(&both)
    );

    // 2. Sign with the new root, keeping both in the bundle: new and old leaves verify against it.
    let step2 = CertificateAuthority::new(&CaPem {
        root_cert: both.clone(),
        ..new.clone()
    })
    .unwrap();
    let leaf2 = step2.issue_workload(&csr, WEB, DAY, now).unwrap();
    let bundle = leaf2.chain.last().unwrap();
    common::verify(&leaf2.chain[..1], bundle).unwrap();
    common::verify(&leaf_old.chain[..1], bundle).unwrap();
    common::verify(&leaf1.chain[..1], bundle).unwrap();
    // A peer still holding only the old root does not trust the new leaf: that is why step 1 comes
    // first and lasts until every workload has renewed.
    assert!(common::verify(&leaf2.chain[..1], &old.root_cert).is_err());

    // 3. Once every certificate was re-issued, drop the old root.
    let after = CertificateAuthority::new(&new).unwrap();
    assert_eq!(after.root_count(), 1);
    assert!(common::verify(&leaf_old.chain[..1], after.roots_pem()).is_err());
    common::verify(&leaf2.chain[..1], after.roots_pem()).unwrap();
}
