//! A tiny HTTP/1.1 app for the demo's pods, answering every request with its pod name, and a keep-alive
//! HTTP/1.1 client to call it (and Envoy's admin) from inside a namespace. No curl: the calls run on
//! threads that entered the pod's namespace as the app's uid, so capture sees what a real app does.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::netns::{Identity, NetNs};

/// The path the app answers with the `x-forwarded-client-cert` header it got (the caller's and its own
/// sidecar's identities under mTLS; empty without).
pub const XFCC_PATH: &str = "/xfcc";
/// The path the app answers with `<pod name> mtls` when its sidecar set a caller identity in
/// `x-forwarded-client-cert` (the request came over mTLS), `<pod name> plain` otherwise: which pod and
/// which mode served a request, in answers of one length either way.
pub const PEER_PATH: &str = "/peer";

/// How many of the latest requests an app keeps for [`App::received`].
const KEPT: usize = 64;

/// A request as the app received it: its path and headers (names lower-cased), in order.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Received {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// An answer as a client got it: status, headers (names lower-cased) and body.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// An app serving on `addrs` inside a namespace until dropped; answers `<pod name>` to every request
/// (but [`XFCC_PATH`] and [`PEER_PATH`]) and keeps the latest requests it received.
#[derive(Debug)]
pub struct App {
    stop: Arc<AtomicBool>,
    /// The status every request gets: 200 (with the pod name), or a failure (503 for a broken pod).
    status: Arc<AtomicU16>,
    /// How long the app waits before answering, in milliseconds.
    delay_ms: Arc<AtomicU64>,
    /// The latest [`KEPT`] requests, oldest first.
    received: Arc<Mutex<VecDeque<Received>>>,
}

impl App {
    /// Binds each address inside `ns` as `who`, then serves from threads of this process.
    pub fn start(
        ns: &NetNs,
        who: Identity,
        pod: &str,
        addrs: &[SocketAddr],
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let status = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let received = Arc::new(Mutex::new(VecDeque::new()));
        for &addr in addrs {
            let listener = ns
                .run_in(Some(who), move || Ok(TcpListener::bind(addr)?))
                .with_context(|| format!("app {pod}: binding {addr}"))?;
            listener.set_nonblocking(true)?;
            let behaviour = Behaviour {
                stop: stop.clone(),
                status: status.clone(),
                delay_ms: delay_ms.clone(),
                received: received.clone(),
            };
            let pod = pod.to_string();
            std::thread::spawn(move || serve(listener, &pod, &behaviour));
        }
        Ok(Self {
            stop,
            status,
            delay_ms,
            received,
        })
    }

    /// The latest requests the app received (up to 64), oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// From now on every answer waits `delay` first (a slow backend).
    pub fn answer_after(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// From now on every request gets `status` (200 again to heal).
    pub fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What the app's threads share: when to stop, and how to answer.
#[derive(Clone)]
struct Behaviour {
    stop: Arc<AtomicBool>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    received: Arc<Mutex<VecDeque<Received>>>,
}

fn serve(listener: TcpListener, pod: &str, behaviour: &Behaviour) {
    while !behaviour.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (pod, behaviour) = (pod.to_string(), behaviour.clone());
                std::thread::spawn(move || answer(stream, &pod, &behaviour));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Answers requests on one connection until the client closes it or the app stops.
fn answer(stream: TcpStream, pod: &str, behaviour: &Behaviour) {
    let (stop, status) = (&*behaviour.stop, &*behaviour.status);
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let Ok(read) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read);
    let mut writer = stream;
    loop {
        let mut close = false;
        let mut first = true;
        let mut path = String::new();
        let mut xfcc = String::new();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) if first => {
                    first = false;
                    path = line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_string();
                }
                Ok(_) => {
                    let lower = line.to_ascii_lowercase();
                    close |= lower.starts_with("connection: close");
                    const XFCC: &str = "x-forwarded-client-cert:";
                    if lower.starts_with(XFCC) {
                        xfcc = line[XFCC.len()..].trim().to_string();
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
        if let Ok(mut received) = behaviour.received.lock() {
            if received.len() == KEPT {
                received.pop_front();
            }
            received.push_back(Received {
                path: path.clone(),
                headers: std::mem::take(&mut headers),
            });
        }
        let delay = behaviour.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let peer;
        let body = match path.as_str() {
            XFCC_PATH => xfcc.as_str(),
            PEER_PATH => {
                let mode = if xfcc.contains("URI=") {
                    "mtls "
                } else {
                    "plain"
                };
                peer = format!("{pod} {mode}");
                peer.as_str()
            }
            _ => pod,
        };
        let reply = match status.load(Ordering::Relaxed) {
            200 => format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            ),
            code => format!(
                "HTTP/1.1 {code} Failing\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{pod}",
                pod.len()
            ),
        };
        if writer.write_all(reply.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// What an [`HttpConn`] runs over: a TCP stream, or TLS over one ([`crate::tls`]).
pub trait Transport: Read + Write + Send {}
impl<T: Read + Write + Send> Transport for T {}

/// One keep-alive HTTP/1.1 connection, used from the thread (namespace, uid) that opened it.
pub struct HttpConn {
    target: SocketAddr,
    /// Requests are written through `get_mut()`: one at a time, so nothing is buffered then.
    stream: BufReader<Box<dyn Transport>>,
}

impl std::fmt::Debug for HttpConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConn")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// A TCP connection to `target` with the testbed's timeouts.
pub(crate) fn tcp_connect(target: SocketAddr) -> anyhow::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&target, Duration::from_secs(3))
        .with_context(|| format!("connect {target}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_nodelay(true)?;
    Ok(s)
}

impl HttpConn {
    pub fn connect(target: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self::over(target, Box::new(tcp_connect(target)?)))
    }

    /// HTTP over an established transport (a TLS session, say).
    pub fn over(target: SocketAddr, transport: Box<dyn Transport>) -> Self {
        Self {
            target,
            stream: BufReader::new(transport),
        }
    }

    /// `GET path`: (status, body). The body is read by its content-length, so the connection stays open.
    pub fn get(&mut self, path: &str) -> anyhow::Result<(u16, String)> {
        self.request_with("GET", path, &[])
    }

    /// `GET path` with more request headers.
    pub fn get_with(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, String)> {
        self.request_with("GET", path, headers)
    }

    /// `method path` without a body: (status, body).
    pub fn request(&mut self, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
        self.request_with(method, path, &[])
    }

    /// `method path` with more request headers and without a body: (status, body).
    pub fn request_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, String)> {
        let r = self.exchange(method, path, headers)?;
        Ok((r.status, r.body))
    }

    /// `method path` with more request headers and without a body: the whole answer.
    pub fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Response> {
        let mut extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        if method != "GET" {
            extra.push_str("content-length: 0\r\n");
        }
        // A `host` among `headers` replaces the default one (the target address).
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            extra.insert_str(0, &format!("host: {}\r\n", self.target));
        }
        // One write, as an HTTP client sends a request: `write!` on the socket would send each piece
        // of the format as its own segment (no Nagle here), waking Envoy once per piece.
        let head = format!("{method} {path} HTTP/1.1\r\n{extra}\r\n");
        let writer = self.stream.get_mut();
        writer
            .write_all(head.as_bytes())
            .and_then(|()| writer.flush())
            .with_context(|| format!("writing to {}", self.target))?;
        let mut status = None;
        let mut length = None;
        let mut chunked = false;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if self
                .stream
                .read_line(&mut line)
                .with_context(|| format!("reading from {}", self.target))?
                == 0
            {
                bail!("{} closed the connection", self.target);
            }
            if line == "\r\n" {
                break;
            }
            if status.is_none() {
                status = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse::<u16>().ok());
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
                if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.trim().eq_ignore_ascii_case("chunked");
                }
                headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let status = status.with_context(|| format!("no status line from {}", self.target))?;
        let body = if chunked {
            self.read_chunked()?
        } else {
            let length =
                length.with_context(|| format!("no content-length from {}", self.target))?;
            let mut body = vec![0; length];
            self.stream.read_exact(&mut body)?;
            String::from_utf8_lossy(&body).into_owned()
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// A `transfer-encoding: chunked` body (Envoy's admin answers so).
    fn read_chunked(&mut self) -> anyhow::Result<String> {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            self.stream.read_line(&mut size)?;
            let size = size.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size, 16)
                .with_context(|| format!("bad chunk size {size:?} from {}", self.target))?;
            let mut chunk = vec![0; size + 2]; // data and its CRLF
            self.stream.read_exact(&mut chunk)?;
            if size == 0 {
                return Ok(String::from_utf8_lossy(&body).into_owned());
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
}

/// One `GET` on a fresh connection from inside `ns` as `who` (root when `None`).
pub fn get_in(
    ns: &NetNs,
    who: Option<Identity>,
    target: SocketAddr,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    let path = path.to_string();
    ns.run_in(who, move || HttpConn::connect(target)?.get(&path))
}
