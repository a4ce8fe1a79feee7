//! `meshd init` flag handling: bad values exit 64 naming the flag and the value; nothing is applied.
//! Needs no root: the flags are refused before any rule is read or written.

use std::process::Command;

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");

fn init(args: &[&str]) -> (i32, String) {
    let out = Command::new(MESHD)
        .arg("init")
        .args(args)
        .output()
        .expect("meshd runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_values_exit_64_naming_flag_and_value() {
    let cases: [(&[&str], &str, &str); 6] = [
        (
            &["--exclude-outbound-ports", "80,abc"],
            "--exclude-outbound-ports",
            "80,abc",
        ),
        (
            &["--exclude-inbound-ports", "0"],
            "--exclude-inbound-ports",
            "\"0\"",
        ),
        (
            &["--exclude-outbound-cidrs", "10.0.0.0/33"],
            "--exclude-outbound-cidrs",
            "10.0.0.0/33",
        ),
        (
            &["--include-outbound-cidrs", "nope"],
            "--include-outbound-cidrs",
            "nope",
        ),
        (&["--outbound-port", "0"], "--outbound-port", "'0'"),
        (&["--mode", "ebpf"], "--mode", "ebpf"),
    ];
    for (args, flag, value) in cases {
        let (code, stderr) = init(args);
        assert_eq!(code, 64, "{args:?}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(value),
            "{args:?}: stderr does not name {flag} and {value}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn bad_values_from_the_environment_are_refused_too() {
    let out = Command::new(MESHD)
        .args(["init", "--dry-run"])
        .env("MESHD_EXCLUDE_OUTBOUND_PORTS", "5432,70000")
        .output()
        .expect("meshd runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("--exclude-outbound-ports") && stderr.contains("70000"),
        "{stderr}"
    );
}
