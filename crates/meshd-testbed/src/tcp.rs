//! Real TCP endpoints inside a namespace, for proving capture with traffic rather than rule listings.
//!
//! A [`NamedListener`] writes its name to every client and reports each accepted connection with its
//! original destination (`SO_ORIGINAL_DST`): a client learns *who* answered (the proxy's capture port,
//! or the real peer), and the test learns *where* the client meant to go.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{
    Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream,
};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use nix::sys::socket::{
    self, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, sockopt,
};

use crate::netns::{Identity, NetNs};

/// One connection a [`NamedListener`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Where the client meant to connect before a REDIRECT; `None` when the kernel has no NAT record.
    pub original_dst: Option<SocketAddr>,
}

/// A listener inside a namespace that answers every connection with its name; stops on Drop.
pub struct NamedListener {
    name: String,
    rx: Receiver<Accepted>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NamedListener {
    /// Listens on `addr` inside `ns` (IPv6 sockets are IPv6-only, so a port can have both).
    pub fn start(ns: &NetNs, name: &str, addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = ns.run_in(None, move || {
            bind(addr).with_context(|| format!("listening on {addr}"))
        })?;
        listener.set_nonblocking(true)?;
        let (tx, rx) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let (reply, stopped) = (format!("{name}\n"), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, peer)) => {
                        let accepted = Accepted {
                            peer,
                            local: stream.local_addr().unwrap_or(peer),
                            original_dst: original_dst(&stream).ok(),
                        };
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.write_all(reply.as_bytes());
                        if tx.send(accepted).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Ok(NamedListener {
            name: name.to_string(),
            rx,
            stop,
            thread: Some(thread),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next accepted connection, waiting up to `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Accepted> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Connections accepted so far and not yet taken.
    pub fn drain(&self) -> Vec<Accepted> {
        self.rx.try_iter().collect()
    }
}

impl Drop for NamedListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects from inside `ns` (as `who`, so that uid/gid owner matches see that identity) and returns
/// the name the answering [`NamedListener`] sent.
pub fn connect(
    ns: &NetNs,
    who: Option<Identity>,
    target: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<String> {
    ns.run_in(who, move || {
        let stream = TcpStream::connect_timeout(&target, timeout)
            .with_context(|| format!("connecting to {target} as {who:?}"))?;
        stream.set_read_timeout(Some(timeout))?;
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .with_context(|| format!("reading the answer of {target}"))?;
        Ok(line.trim_end().to_string())
    })
}

/// The original destination of a redirected connection (`SO_ORIGINAL_DST` / `IP6T_SO_ORIGINAL_DST`).
pub fn original_dst(stream: &TcpStream) -> io::Result<SocketAddr> {
    if stream.local_addr()?.is_ipv4() {
        let sin = socket::getsockopt(stream, sockopt::OriginalDst)?;
        Ok(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
            u16::from_be(sin.sin_port),
        )))
    } else {
        let sin6 = socket::getsockopt(stream, sockopt::Ip6tOriginalDst)?;
        Ok(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(sin6.sin6_addr.s6_addr),
            u16::from_be(sin6.sin6_port),
            0,
            0,
        )))
    }
}

fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd: OwnedFd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    match addr {
        SocketAddr::V4(a) => {
            socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(a))?
        }
        SocketAddr::V6(a) => {
            socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
            socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn6::from(a))?
        }
    }
    socket::listen(&fd, Backlog::new(128)?)?;
    Ok(TcpListener::from(fd))
}
