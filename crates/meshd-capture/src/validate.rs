//! `--validate`: prove capture with a real connection, as istio-iptables' validation does. A listener
//! on the outbound port, a connection from this (root, so captured) process to a TEST-NET address, and
//! the connection must arrive on the listener with that address as its original destination.

use std::io;
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream,
};
use std::time::{Duration, Instant};

use meshd_api::values::IncludeCidrs;
use nix::sys::socket::{getsockopt, sockopt};
use tracing::info;

use crate::error::CaptureError;
use crate::rules::{Family, includes_loopback, network};
use crate::settings::CaptureSettings;

/// Documentation addresses (RFC 5737, RFC 3849): never a real peer.
const TEST_NET_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const TEST_NET_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

/// The original destination of a redirected connection (`SO_ORIGINAL_DST`, `IP6T_SO_ORIGINAL_DST`).
pub fn original_dst(stream: &TcpStream) -> io::Result<SocketAddr> {
    if stream.local_addr()?.is_ipv4() {
        let sin = getsockopt(stream, sockopt::OriginalDst)?;
        let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        Ok(SocketAddr::V4(SocketAddrV4::new(
            ip,
            u16::from_be(sin.sin_port),
        )))
    } else {
        let sin6 = getsockopt(stream, sockopt::Ip6tOriginalDst)?;
        let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
        Ok(SocketAddr::V6(SocketAddrV6::new(
            ip,
            u16::from_be(sin6.sin6_port),
            0,
            0,
        )))
    }
}

/// Would an outbound connection from an app to `dst` be captured under these settings?
/// The order is the rules': excluded ports, loopback (returned unless a loopback CIDR of the family is
/// included; localhost itself always), excluded CIDRs, included ports, included CIDRs.
pub fn captures(s: &CaptureSettings, dst: SocketAddr) -> bool {
    let ip = dst.ip();
    let family = if ip.is_ipv4() { Family::V4 } else { Family::V6 };
    if (ip.is_ipv6() && !s.ipv6) || s.exclude_outbound_ports.contains(&dst.port()) {
        return false;
    }
    let localhost = ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || ip == IpAddr::V6(Ipv6Addr::LOCALHOST);
    if localhost || (ip.is_loopback() && !includes_loopback(s, family)) {
        return false;
    }
    if s.exclude_outbound_cidrs.iter().any(|c| c.contains(ip)) {
        return false;
    }
    if s.include_outbound_ports.contains(&dst.port()) {
        return true;
    }
    match &s.include_outbound_cidrs {
        IncludeCidrs::All => true,
        IncludeCidrs::Only(cidrs) => cidrs.iter().any(|c| c.contains(ip)),
    }
}

/// Addresses to validate with, one per programmed family: TEST-NET when it is captured, else a host in
/// the first included network that is; on port 80 (or the next port not excluded), else on an included
/// port.
pub fn targets(s: &CaptureSettings) -> Vec<SocketAddr> {
    let mut ports: Vec<u16> = (80..=u16::MAX)
        .find(|p| !s.exclude_outbound_ports.contains(p))
        .into_iter()
        .collect();
    ports.extend(&s.include_outbound_ports);
    let mut candidates = vec![IpAddr::V4(TEST_NET_V4)];
    if s.ipv6 {
        candidates.push(IpAddr::V6(TEST_NET_V6));
    }
    if let IncludeCidrs::Only(cidrs) = &s.include_outbound_cidrs {
        candidates.extend(cidrs.iter().map(|c| first_host(&network(c))));
    }
    let mut chosen: Vec<SocketAddr> = Vec::new();
    for ip in candidates {
        for &port in &ports {
            let addr = SocketAddr::new(ip, port);
            if captures(s, addr) && !chosen.iter().any(|c| c.is_ipv4() == addr.is_ipv4()) {
                chosen.push(addr);
            }
        }
    }
    chosen
}

fn first_host(net: &meshd_api::values::IpCidr) -> IpAddr {
    match net.addr {
        IpAddr::V4(a) if net.prefix < 31 => IpAddr::V4(Ipv4Addr::from(u32::from(a) + 1)),
        IpAddr::V6(a) if net.prefix < 127 => IpAddr::V6(Ipv6Addr::from(u128::from(a) + 1)),
        other => other,
    }
}

/// Proves capture for every family that has a route; fails when a family's connection is not
/// redirected, or when no family could be tested at all. Returns the destinations proven.
pub fn validate(s: &CaptureSettings, timeout: Duration) -> Result<Vec<SocketAddr>, CaptureError> {
    let targets = targets(s);
    if targets.is_empty() {
        return Err(CaptureError::ValidationNoTarget);
    }
    let mut proven = Vec::new();
    let mut unroutable = None;
    for target in targets {
        match validate_one(target, s.outbound_port, timeout) {
            Ok(()) => {
                info!(%target, port = s.outbound_port, "capture validated");
                proven.push(target);
            }
            Err(e @ CaptureError::ValidationUnroutable { .. }) => unroutable = Some(e),
            Err(e) => return Err(e),
        }
    }
    match unroutable {
        Some(e) if proven.is_empty() => Err(e),
        _ => Ok(proven),
    }
}

fn validate_one(target: SocketAddr, port: u16, timeout: Duration) -> Result<(), CaptureError> {
    let bind: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, port).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, port).into()
    };
    let listener = TcpListener::bind(bind)
        .map_err(|source| CaptureError::ValidationListen { port, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| CaptureError::ValidationListen { port, source })?;
    let started = Instant::now();
    let not_redirected = |detail: String| CaptureError::ValidationNotRedirected {
        target,
        port,
        waited_ms: started.elapsed().as_millis(),
        detail,
    };

    // Routing happens at connect(), before the nat OUTPUT hook: no route fails here, not in capture.
    let _client = match TcpStream::connect_timeout(&target, timeout) {
        Ok(stream) => stream,
        Err(e) if is_unroutable(&e) => {
            return Err(CaptureError::ValidationUnroutable { target, source: e });
        }
        Err(e) => return Err(not_redirected(format!("connect: {e}"))),
    };
    loop {
        match listener.accept() {
            Ok((stream, _peer)) => {
                let got = original_dst(&stream)
                    .map_err(|e| not_redirected(format!("SO_ORIGINAL_DST: {e}")))?;
                if got == target {
                    return Ok(());
                }
                // Someone else's connection to the port; keep waiting for ours.
                tracing::debug!(%got, "unrelated connection on the outbound port");
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(not_redirected(format!("accept: {e}"))),
        }
        if started.elapsed() > timeout {
            return Err(not_redirected(
                "connected, but not through the outbound port".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn is_unroutable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::ENETUNREACH)
            | Some(nix::libc::EHOSTUNREACH)
            | Some(nix::libc::EADDRNOTAVAIL)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_test_net_unless_excluded_or_not_included() {
        let s = CaptureSettings::default();
        assert_eq!(
            targets(&s),
            vec![
                "192.0.2.1:80".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:80".parse().unwrap()
            ]
        );

        let s = CaptureSettings {
            exclude_outbound_ports: vec![80, 81],
            include_outbound_cidrs: IncludeCidrs::Only(vec!["10.0.0.0/8".parse().unwrap()]),
            ipv6: false,
            ..CaptureSettings::default()
        };
        assert_eq!(
            targets(&s),
            vec!["10.0.0.1:82".parse::<SocketAddr>().unwrap()]
        );

        // Nothing included but a port: TEST-NET on that port.
        let s = CaptureSettings {
            include_outbound_cidrs: IncludeCidrs::Only(vec![]),
            include_outbound_ports: vec![443],
            ipv6: false,
            ..CaptureSettings::default()
        };
        assert_eq!(
            targets(&s),
            vec!["192.0.2.1:443".parse::<SocketAddr>().unwrap()]
        );

        // A loopback CIDR included: a host in it (127.0.0.1 itself is never captured).
        let s = CaptureSettings {
            include_outbound_cidrs: IncludeCidrs::Only(vec!["127.10.0.0/16".parse().unwrap()]),
            ipv6: false,
            ..CaptureSettings::default()
        };
        assert_eq!(
            targets(&s),
            vec!["127.10.0.1:80".parse::<SocketAddr>().unwrap()]
        );
        assert!(!captures(&s, "127.0.0.1:80".parse().unwrap()));
        assert!(!captures(&s, "127.0.0.2:80".parse().unwrap()));

        let s = CaptureSettings {
            exclude_outbound_cidrs: vec!["0.0.0.0/0".parse().unwrap()],
            ipv6: false,
            ..CaptureSettings::default()
        };
        assert!(targets(&s).is_empty());
        assert!(matches!(
            validate(&s, Duration::from_millis(10)),
            Err(CaptureError::ValidationNoTarget)
        ));
    }
}
