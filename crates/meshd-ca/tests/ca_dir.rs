//! `--ca-dir` (SPEC §9): an absent or empty directory gets a new self-signed CA with the SPEC's file
//! names and modes; files a user put there are used as they are; a change to them is picked up.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use meshd_ca::ca_dir::{CaDir, Origin};
use meshd_ca::{CaPem, CaSource};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn an_absent_directory_gets_a_ca_with_the_spec_names_and_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let (ca, origin) = CaDir::open(&dir, "example.org").unwrap();
    assert_eq!(origin, Origin::Created);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("root-cert.pem")), 0o644);
    assert_eq!(mode(&dir.join("ca-cert.pem")), 0o644);
    assert_eq!(mode(&dir.join("cert-chain.pem")), 0o644);
    assert_eq!(mode(&dir.join("ca-key.pem")), 0o600);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ca-cert.pem",
            "ca-key.pem",
            "cert-chain.pem",
            "root-cert.pem"
        ]
    );
    let root = std::fs::read_to_string(dir.join("root-cert.pem")).unwrap();
    assert_eq!(
        root,
        std::fs::read_to_string(dir.join("ca-cert.pem")).unwrap()
    );
    assert_eq!(
        root,
        std::fs::read_to_string(dir.join("cert-chain.pem")).unwrap()
    );
    assert_eq!(common::ders(&root), common::ders(ca.current().roots_pem()));
    assert!(
        ca.current().subject().contains("O=example.org"),
        "{}",
        ca.current().subject()
    );

    // The next start uses what is there: same root.
    let (again, origin) = CaDir::open(&dir, "example.org").unwrap();
    assert_eq!(origin, Origin::Loaded);
    assert_eq!(again.current().roots_pem(), ca.current().roots_pem());
}

#[test]
fn an_empty_directory_is_filled_and_a_partial_one_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, origin) = CaDir::open(tmp.path(), "cluster.local").unwrap();
    assert_eq!(origin, Origin::Created);
    std::fs::remove_file(tmp.path().join("ca-key.pem")).unwrap();
    std::fs::remove_file(tmp.path().join("cert-chain.pem")).unwrap();
    let err = CaDir::open(tmp.path(), "cluster.local")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("has ca-cert.pem, root-cert.pem but not ca-key.pem, cert-chain.pem"),
        "{err}"
    );
}

#[test]
fn files_a_user_put_there_are_used_as_they_are() {
    let tmp = tempfile::tempdir().unwrap();
    let root = CaPem::self_signed("cluster.local", SystemTime::now()).unwrap();
    let plug_in = common::intermediate(&root, "site intermediate");
    meshd_ca::ca_dir::write(tmp.path(), &plug_in).unwrap();
    let before: Vec<Vec<u8>> = [
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
    ]
    .iter()
    .map(|f| std::fs::read(tmp.path().join(f)).unwrap())
    .collect();
    let (ca, origin) = CaDir::open(tmp.path(), "cluster.local").unwrap();
    assert_eq!(origin, Origin::Loaded);
    assert!(ca.current().subject().contains("site intermediate"));
    let after: Vec<Vec<u8>> = [
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
    ]
    .iter()
    .map(|f| std::fs::read(tmp.path().join(f)).unwrap())
    .collect();
    assert_eq!(before, after, "nothing rewritten");
    // A broken file a user put there is an error naming it, not a silent new CA.
    std::fs::write(tmp.path().join("ca-key.pem"), "not a key").unwrap();
    let err = CaDir::open(tmp.path(), "cluster.local")
        .unwrap_err()
        .to_string();
    assert!(err.contains("ca-key.pem"), "{err}");
}

#[test]
fn a_changed_root_bundle_is_picked_up_and_a_broken_change_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, _) = CaDir::open(tmp.path(), "cluster.local").unwrap();
    assert_eq!(ca.authority().unwrap().root_count(), 1);
    let next = CaPem::self_signed("cluster.local", SystemTime::now()).unwrap();
    let old_root = std::fs::read_to_string(tmp.path().join("root-cert.pem")).unwrap();
    std::fs::write(
        tmp.path().join("root-cert.pem"),
        format!("{old_root}{}", next.root_cert),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(ca.authority().unwrap().root_count(), 2);
    std::fs::write(tmp.path().join("cert-chain.pem"), next.cert_chain).unwrap();
    std::thread::sleep(Duration::from_millis(1_100));
    let still = ca.authority().unwrap();
    assert_eq!(still.root_count(), 2, "the CA in force stays");
}
