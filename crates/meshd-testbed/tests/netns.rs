//! The testbed's own guarantees: namespaces are unique and removed on Drop, veth links carry traffic,
//! and code runs inside a namespace as the identity asked for, without changing the test process.

use std::process::Command;
use std::time::Duration;

use meshd_testbed::tcp::{NamedListener, connect};
use meshd_testbed::{Identity, NetNs, link_veth, require};

fn namespaces() -> String {
    String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip runs")
            .stdout,
    )
    .into_owned()
}

#[test]
fn namespaces_are_unique_and_deleted_on_drop() -> anyhow::Result<()> {
    if !require("namespaces_are_unique_and_deleted_on_drop", &["setpriv"]) {
        return Ok(());
    }
    let (a, b) = (NetNs::new("tb")?, NetNs::new("tb")?);
    assert_ne!(a.name(), b.name());
    let name = a.name().to_string();
    assert!(namespaces().contains(&name));
    assert!(a.ip(&["link", "show", "lo"])?.contains("UP"), "lo is up");
    drop(a);
    assert!(!namespaces().contains(&name), "{name} left behind");
    Ok(())
}

#[test]
fn veth_link_carries_tcp_between_namespaces() -> anyhow::Result<()> {
    if !require("veth_link_carries_tcp_between_namespaces", &["setpriv"]) {
        return Ok(());
    }
    let (a, b) = (NetNs::new("tb-a")?, NetNs::new("tb-b")?);
    link_veth(&a, "eth0", &b, "eth0")?;
    a.add_address("eth0", "10.66.0.1/24")?;
    b.add_address("eth0", "10.66.0.2/24")?;
    a.add_address("eth0", "fd66::1/64")?;
    b.add_address("eth0", "fd66::2/64")?;
    let server = NamedListener::start(&b, "server-b", "0.0.0.0:8080".parse()?)?;
    let server6 = NamedListener::start(&b, "server-b6", "[::]:8080".parse()?)?;
    let wait = Duration::from_secs(3);
    assert_eq!(
        connect(&a, None, "10.66.0.2:8080".parse()?, wait)?,
        "server-b"
    );
    assert_eq!(
        connect(&a, None, "[fd66::2]:8080".parse()?, wait)?,
        "server-b6"
    );
    let seen = server.next(wait).expect("accepted");
    assert_eq!(seen.peer.ip().to_string(), "10.66.0.1");
    assert!(server6.next(wait).is_some());
    // Namespaces are isolated: nothing listens on 8080 in `a` itself.
    assert!(connect(&a, None, "127.0.0.1:8080".parse()?, wait).is_err());
    Ok(())
}

#[test]
#[allow(unsafe_code)] // getuid/getgid
fn code_and_commands_run_as_the_identity_asked_for() -> anyhow::Result<()> {
    if !require(
        "code_and_commands_run_as_the_identity_asked_for",
        &["setpriv"],
    ) {
        return Ok(());
    }
    let ns = NetNs::new("tb-id")?;
    // SAFETY: getuid/getgid have no preconditions.
    let ids = ns.run_in(Some(Identity::new(1000, 1001)), || {
        Ok(unsafe { (libc::getuid(), libc::getgid()) })
    })?;
    assert_eq!(ids, (1000, 1001));
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::getuid() },
        0,
        "the test process keeps its own identity"
    );
    let out = ns.command_as(Identity::new(1337, 1337), "id").output()?;
    let id = String::from_utf8_lossy(&out.stdout);
    assert!(id.starts_with("uid=1337 gid=1337"), "{id}");
    let links = ns.run("ip", &["-o", "link"])?;
    assert_eq!(
        links.lines().count(),
        1,
        "a fresh namespace has only lo: {links}"
    );
    Ok(())
}
