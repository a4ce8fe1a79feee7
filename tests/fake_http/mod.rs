//! A small HTTP/1.1 server with fixed answers by path, for the commands a person runs against a control
//! plane or an API server (`proxy-status`, `check-inject`): it plays a control plane's metrics port or
//! the API server (a kubeconfig with `server: http://127.0.0.1:PORT`), and records each request line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One fixed answer: a request target (path, or path?query for an exact match), a status and a body.
#[derive(Clone)]
pub struct Route {
    pub target: String,
    pub status: u16,
    pub body: String,
}

pub fn route(target: &str, status: u16, body: impl Into<String>) -> Route {
    Route {
        target: target.into(),
        status,
        body: body.into(),
    }
}

pub struct FakeHttp {
    pub port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeHttp {
    /// Serves `routes` until the process ends; anything else is a 404 Status as the API server sends.
    pub fn start(routes: Vec<Route>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (routes, log) = (Arc::new(routes), requests.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (routes, log) = (routes.clone(), log.clone());
                std::thread::spawn(move || serve(conn, &routes, &log));
            }
        });
        Self { port, requests }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `GET /path?query`, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }

    /// A kubeconfig in `dir` whose cluster is this server.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"{}\"}}\n\
                 users:\n- name: u\n  user: {{token: test}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u, namespace: shop}}\n\
                 current-context: x\n",
                self.url()
            ),
        )
        .expect("write kubeconfig");
        path
    }
}

fn serve(conn: TcpStream, routes: &[Route], log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        log.lock().expect("lock").push(format!("{method} {target}"));
        let path = target.split_once('?').map_or(target.as_str(), |(p, _)| p);
        let found = routes
            .iter()
            .find(|r| r.target == target)
            .or_else(|| routes.iter().find(|r| r.target == path));
        let (status, text) = match found {
            Some(r) => (r.status, r.body.clone()),
            None => (
                404,
                r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}"#.to_string(),
            ),
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            text.len()
        );
        if conn.write_all(head.as_bytes()).is_err() || conn.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}
