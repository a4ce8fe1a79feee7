//! `meshd agent` with real Envoy (TESTING.md "Real Envoy"): the agent runs in its own network
//! namespace (so Envoy's fixed listener ports 15001/15006/15090 cannot collide with other tests), fed
//! by `meshd controlplane` on a Unix socket, with an iptables REDIRECT of the service CIDR to 15001 as
//! the init container would program, so a request to a service VIP really goes through Envoy.
//!
//! Needs root, `ip netns`, iptables and the Envoy venv; prints SKIP otherwise, fails under CI=true.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use meshd_testbed::NetNs;
use meshd_testbed::pod::{children, rss_kib};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const BOUND: Duration = Duration::from_secs(20);
const POD_IP: &str = "10.1.0.5";

/// One Envoy at a time: the machine is small and the prerequisite probe uses one name per process.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn prerequisites(test: &str) -> Option<PathBuf> {
    meshd_testbed::prereq::require_envoy(
        test,
        &["iptables", "openssl"],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    )
}

/// A child killed on Drop (unless it already exited).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// HTTP/1.1 server answering `done`; `/slow` answers after 1.5 s.
fn http_app(ns: &NetNs, addr: SocketAddr) -> anyhow::Result<()> {
    let listener = ns.run_in(None, move || Ok(TcpListener::bind(addr)?))?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(match stream.try_clone() {
                    Ok(s) => s,
                    Err(_) => return,
                });
                let mut writer = stream;
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => head.push_str(&line),
                        }
                    }
                    if head.starts_with("GET /slow") {
                        std::thread::sleep(Duration::from_millis(1500));
                    }
                    let ok = writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone");
                    if ok.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(())
}

/// An HTTPS app on `addr` with a self-signed certificate for `app.example` (not for the pod IP), as
/// `openssl s_server -www`: it answers every GET with 200 and a status page.
fn https_app(ns: &NetNs, dir: &Path, addr: SocketAddr) -> anyhow::Result<Guard> {
    let (cert, key) = (dir.join("app.crt"), dir.join("app.key"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=app.example",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(made.success(), "openssl req failed");
    let server = ns
        .command("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &addr.to_string(),
            "-cert",
        ])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let server = Guard(server);
    let started = Instant::now();
    while ns
        .run_in(None, move || {
            Ok(TcpStream::connect_timeout(
                &addr,
                Duration::from_millis(200),
            )?)
        })
        .is_err()
    {
        anyhow::ensure!(
            started.elapsed() < BOUND,
            "openssl s_server not listening on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

/// An HTTP/1.1 request from inside the namespace: (status, body).
fn http(ns: &NetNs, method: &str, target: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let (method, target, path) = (method.to_string(), target.to_string(), path.to_string());
    ns.run_in(None, move || request(&method, &target, &path))
}

/// One request from the calling thread's namespace.
fn request(method: &str, target: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let target: SocketAddr = target.parse()?;
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(3))
        .with_context(|| format!("connect {target}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {target}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .with_context(|| format!("reading from {target}"))?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_string()))
}

fn get(ns: &NetNs, target: &str, path: &str) -> (u16, String) {
    http(ns, "GET", target, path).unwrap_or((0, String::new()))
}

fn within(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while started.elapsed() < BOUND {
        if check() {
            eprintln!("{what}: {:?}", started.elapsed());
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {BOUND:?}");
}

const MESH: &str = "apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec:\n  mtls: {mode: DISABLE}\n";
const CONFIG: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: client-0, namespace: demo, labels: {app: client}}\nspec:\n  serviceAccountName: client\n  containers: [{name: app, image: app, ports: [{name: http, containerPort: 8080}]}]\nstatus: {podIP: 10.1.0.5}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: alpha, namespace: demo}\nspec:\n  clusterIP: 10.96.0.10\n  selector: {app: alpha}\n  ports: [{name: http, port: 80, targetPort: 18080}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: alpha-1\n  namespace: demo\n  labels: {kubernetes.io/service-name: alpha}\naddressType: IPv4\nports: [{name: http, port: 18080}]\nendpoints:\n- addresses: [\"127.0.0.1\"]\n  conditions: {ready: true}\n";

/// The original probes and hooks as the webhook writes them (named ports already resolved).
const PROBES: &str = r#"{"app/livez":{"httpGet":{"path":"/healthz","port":8080,"scheme":"HTTP","httpHeaders":[{"name":"X-Probe","value":"1"}]},"periodSeconds":5},"app/readyz":{"tcpSocket":{"port":8080}},"app/prestop":{"httpGet":{"path":"/shutdown","port":8080},"timeoutSeconds":3},"app/poststart":{"tcpSocket":{"port":8080}},"dead/livez":{"httpGet":{"path":"/","port":8081,"scheme":"HTTP"}},"dead/readyz":{"tcpSocket":{"port":8081}},"rpc/livez":{"grpc":{"port":9090}},"secure/livez":{"httpGet":{"path":"/healthz","port":8443,"scheme":"HTTPS","httpHeaders":[{"name":"Host","value":"app.example"}]},"timeoutSeconds":2}}"#;

struct Scenario {
    ns: NetNs,
    dir: tempfile::TempDir,
    agent: Guard,
    control_plane: Option<Guard>,
    _https_app: Guard,
}

impl Scenario {
    /// Namespace, apps, config files and the agent; the control plane only when `with_control_plane`.
    fn start(envoy: &Path, drain: &str, with_control_plane: bool) -> anyhow::Result<Self> {
        let ns = NetNs::new("agent")?;
        ns.ip(&["route", "add", "local", "10.96.0.0/16", "dev", "lo"])?;
        ns.ip(&["addr", "add", &format!("{POD_IP}/32"), "dev", "lo"])?;
        ns.run(
            "iptables",
            &[
                "-w",
                "-t",
                "nat",
                "-A",
                "OUTPUT",
                "-p",
                "tcp",
                "-d",
                "10.96.0.0/16",
                "-j",
                "REDIRECT",
                "--to-ports",
                "15001",
            ],
        )?;
        http_app(&ns, "127.0.0.1:18080".parse()?)?;
        http_app(&ns, format!("{POD_IP}:8080").parse()?)?;
        let dir = tempfile::tempdir()?;
        let https_app = https_app(&ns, dir.path(), format!("{POD_IP}:8443").parse()?)?;
        std::fs::write(dir.path().join("mesh.yaml"), MESH)?;
        std::fs::write(dir.path().join("demo.yaml"), CONFIG)?;
        let socket = dir.path().join("xds.sock");
        let log = std::fs::File::create(dir.path().join("agent.log"))?;
        let agent = ns
            .command(MESHD)
            .args([
                "agent",
                "--pod-name",
                "client-0",
                "--pod-namespace",
                "demo",
                "--pod-ip",
                POD_IP,
            ])
            .args([
                "--service-account",
                "client",
                "--label",
                "app=client",
                "--concurrency",
                "1",
            ])
            .args(["--drain-duration", drain, "--app-probes", PROBES])
            .arg("--discovery-address")
            .arg(format!("unix:{}", socket.display()))
            .arg("--envoy-path")
            .arg(envoy)
            .arg("--config-dir")
            .arg(dir.path().join("proxy"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut s = Self {
            ns,
            dir,
            agent: Guard(agent),
            control_plane: None,
            _https_app: https_app,
        };
        if with_control_plane {
            s.start_control_plane()?;
        }
        Ok(s)
    }

    fn start_control_plane(&mut self) -> anyhow::Result<()> {
        let d = self.dir.path();
        let log = std::fs::File::create(d.join("controlplane.log"))?;
        let child = Command::new(MESHD)
            .args([
                "controlplane",
                "--debounce",
                "50ms",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .arg("--config-dir")
            .arg(d)
            .arg("--xds-listen")
            .arg(format!("unix:{}", d.join("xds.sock").display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.control_plane = Some(Guard(child));
        Ok(())
    }

    fn ready(&self) -> (u16, String) {
        get(&self.ns, "127.0.0.1:15021", "/healthz/ready")
    }

    fn envoy_pid(&self) -> Option<u32> {
        children(self.agent.0.id()).into_iter().next()
    }

    fn wait_exit(&mut self) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < BOUND {
            if let Ok(Some(status)) = self.agent.0.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the agent did not exit within {BOUND:?}:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    fn wait_command(&self, timeout: &str) -> i32 {
        self.ns
            .command(MESHD)
            .args(["agent", "wait", "--timeout", timeout])
            .status()
            .ok()
            .and_then(|s| s.code())
            .unwrap_or(-1)
    }
}

#[test]
fn agent_ready_after_config_probes_metrics_restart_wait_and_quit() {
    let Some(envoy) =
        prerequisites("agent_ready_after_config_probes_metrics_restart_wait_and_quit")
    else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = Scenario::start(&envoy, "1s", false).unwrap();

    // No control plane yet: Envoy runs, but without listeners and clusters it is not ready.
    within("Envoy started", || s.envoy_pid().is_some());
    within("health port answers", || s.ready().0 == 503);
    // Envoy is up but has no listeners and clusters: still 503, with that reason.
    within("Envoy's admin answers", || {
        !s.ready().1.contains("client error")
    });
    let (_, reason) = s.ready();
    assert!(
        reason.contains("no config")
            || reason.contains("PRE_INITIALIZING")
            || reason.contains("INITIALIZING"),
        "{reason}"
    );
    assert_eq!(
        s.wait_command("1s"),
        1,
        "meshd agent wait must time out while not ready"
    );

    s.start_control_plane().unwrap();
    within("ready once config arrived", || s.ready().0 == 200);
    assert_eq!(s.wait_command("10s"), 0);

    // App probes against the pod IP.
    let probe = |path: &str| get(&s.ns, "127.0.0.1:15020", path);
    let (status, body) = probe("/app-health/app/livez");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("10.1.0.5:8080/healthz"), "{body}");
    assert_eq!(probe("/app-health/app/readyz").0, 200);
    let (status, body) = probe("/app-health/dead/livez");
    assert_eq!(status, 503, "{body}");
    let (status, body) = probe("/app-health/dead/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("8081"), "{body}");
    let (status, body) = probe("/app-health/rpc/livez");
    assert_eq!(status, 503);
    // Nothing serves gRPC on 9090: the health check fails with the reason.
    assert!(body.contains("grpc 10.1.0.5:9090"), "{body}");
    // HTTPS, as the kubelet: TLS to the pod IP, the self-signed certificate not verified.
    let (status, body) = probe("/app-health/secure/livez");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("https://10.1.0.5:8443/healthz"), "{body}");
    // Lifecycle hooks rewritten to the agent run their original handler.
    let (status, body) = probe("/app-health/app/prestop");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("10.1.0.5:8080/shutdown"), "{body}");
    assert_eq!(probe("/app-health/app/poststart").0, 200);
    assert_eq!(probe("/app-health/app/startupz").0, 404);
    assert_eq!(probe("/app-health/nobody/livez").0, 404);

    // Merged metrics: Envoy's series, then the agent's.
    let (status, metrics) = probe("/stats/prometheus");
    assert_eq!(status, 200);
    assert!(metrics.contains("envoy_server_live"), "no Envoy metric");
    assert!(
        metrics.contains("meshd_agent_envoy_starts_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meshd_agent_app_probes_total{probe=\"dead/livez\",result=\"failure\"} 1"),
        "{metrics}"
    );

    let agent_pid = s.agent.0.id();
    let envoy_pid = s.envoy_pid().unwrap();
    eprintln!(
        "RSS: agent {} KiB, Envoy {} KiB",
        rss_kib(agent_pid),
        rss_kib(envoy_pid)
    );

    // Envoy killed: the agent starts a new one, which gets its config again.
    Command::new("kill")
        .args(["-9", &envoy_pid.to_string()])
        .status()
        .unwrap();
    within("a new Envoy", || {
        s.envoy_pid().is_some_and(|p| p != envoy_pid)
    });
    within("ready again", || s.ready().0 == 200);
    let (_, metrics) = probe("/stats/prometheus");
    assert!(
        metrics.contains("meshd_agent_envoy_starts_total 2"),
        "{metrics}"
    );

    // /quitquitquit from the pod network is refused; from localhost it stops Envoy and the agent, exit 0.
    let refused = http(&s.ns, "POST", "10.1.0.5:15020", "/quitquitquit").unwrap();
    assert_eq!(refused.0, 403, "{refused:?}");
    assert!(
        s.agent.0.try_wait().unwrap().is_none(),
        "the agent stopped for a remote caller"
    );
    let new_envoy = s.envoy_pid().unwrap();
    assert_eq!(
        http(&s.ns, "POST", "127.0.0.1:15020", "/quitquitquit")
            .unwrap()
            .0,
        200
    );
    assert_eq!(s.wait_exit(), Some(0), "{}", s.log());
    within("Envoy stopped with the agent", || {
        !Path::new(&format!("/proc/{new_envoy}")).exists()
    });
    // Envoy's own log reaches the agent's stderr.
    assert!(
        s.log().contains("starting main dispatch loop"),
        "{}",
        s.log()
    );
    let bootstrap =
        std::fs::read_to_string(s.dir.path().join("proxy/envoy-bootstrap.json")).unwrap();
    assert!(bootstrap.contains("\"client-0.demo\""), "{bootstrap}");
}

#[test]
fn agent_sigterm_drains_and_in_flight_requests_complete() {
    let Some(envoy) = prerequisites("agent_sigterm_drains_and_in_flight_requests_complete") else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = Scenario::start(&envoy, "3s", true).unwrap();
    within("ready", || s.ready().0 == 200);
    // The VIP goes through Envoy's 15001 listener to the upstream.
    within("the VIP answers through Envoy", || {
        get(&s.ns, "10.96.0.10:80", "/").0 == 200
    });

    let slow =
        s.ns.spawn(None, || request("GET", "10.96.0.10:80", "/slow"))
            .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let sent = Command::new("kill")
        .args(["-TERM", &s.agent.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    within("not ready while draining", || s.ready().0 == 503);
    let (status, body) = slow.join().unwrap().expect("the in-flight request failed");
    assert_eq!(
        (status, body.as_str()),
        (200, "done"),
        "the in-flight request failed"
    );
    assert_eq!(s.wait_exit(), Some(0), "{}", s.log());
}

#[test]
fn agent_sigterm_with_nothing_in_flight_stops_at_once() {
    let Some(envoy) = prerequisites("agent_sigterm_with_nothing_in_flight_stops_at_once") else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // A long bound: the agent must not wait for it when nothing is in flight (a Job's app has exited).
    let drain = Duration::from_secs(10);
    let mut s = Scenario::start(&envoy, "10s", true).unwrap();
    within("ready", || s.ready().0 == 200);
    within("the VIP answers through Envoy", || {
        get(&s.ns, "10.96.0.10:80", "/").0 == 200
    });
    // An idle keep-alive connection through Envoy is not in flight: it must not hold the agent.
    let idle =
        s.ns.run_in(None, || {
            let mut c =
                TcpStream::connect_timeout(&"10.96.0.10:80".parse()?, Duration::from_secs(3))?;
            c.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(
                c,
                "GET / HTTP/1.1\r\nhost: alpha.demo.svc.cluster.local\r\n\r\n"
            )?;
            let mut answer = [0u8; 512];
            let n = c.read(&mut answer)?;
            anyhow::ensure!(
                answer[..n].starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&answer[..n])
            );
            Ok(c)
        })
        .unwrap();
    let envoy_pid = s.envoy_pid().unwrap();
    let sent = Instant::now();
    let term = Command::new("kill")
        .args(["-TERM", &s.agent.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert_eq!(s.wait_exit(), Some(0), "{}", s.log());
    let took = sent.elapsed();
    eprintln!(
        "agent exit after SIGTERM with nothing in flight: {took:?} \
         (before: the whole --drain-duration, {drain:?} here, 5 s by default: ~6 s for a Job pod)"
    );
    assert!(
        took < drain,
        "the agent waited out the drain duration with nothing in flight:\n{}",
        s.log()
    );
    assert!(s.log().contains("nothing in flight"), "{}", s.log());
    within("Envoy stopped with the agent", || gone(envoy_pid));
    drop(idle);
}

/// The process is gone, or a zombie nobody reaped yet.
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[test]
fn envoy_dies_with_a_killed_agent() {
    let Some(envoy) = prerequisites("envoy_dies_with_a_killed_agent") else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = Scenario::start(&envoy, "1s", false).unwrap();
    within("Envoy started", || s.envoy_pid().is_some());
    let envoy_pid = s.envoy_pid().unwrap();
    // SIGKILL: the agent cannot stop Envoy itself.
    s.agent.0.kill().unwrap();
    s.agent.0.wait().unwrap();
    let started = Instant::now();
    while !gone(envoy_pid) && started.elapsed() < BOUND {
        std::thread::sleep(Duration::from_millis(50));
    }
    let survived = !gone(envoy_pid);
    if survived {
        // Do not leak it into the other tests.
        let _ = Command::new("kill")
            .args(["-9", &envoy_pid.to_string()])
            .status();
    }
    assert!(
        !survived,
        "Envoy (pid {envoy_pid}) outlived its SIGKILLed agent"
    );
    eprintln!(
        "Envoy gone {:?} after its agent was killed",
        started.elapsed()
    );
}

#[test]
fn agent_gives_up_when_envoy_keeps_dying() {
    // No Envoy needed: `false` dies at once, every time.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(MESHD)
        .args([
            "agent",
            "--pod-name",
            "p",
            "--pod-namespace",
            "n",
            "--envoy-path",
            "false",
        ])
        .args([
            "--health-listen",
            "127.0.0.1:0",
            "--agent-listen",
            "127.0.0.1:0",
            "--discovery-address",
            "unix:/nonexistent",
        ])
        .arg("--config-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Envoy keeps dying"), "{stderr}");
    assert!(dir.path().join("envoy-bootstrap.json").is_file());
}

#[test]
fn agent_bad_flags_exit_64_naming_flag_and_value() {
    for (flag, value) in [
        ("--drain-duration", "soon"),
        ("--health-listen", "localhost"),
        ("--concurrency", "-1"),
        ("--admin-port", "70000"),
        (
            "--app-probes",
            "{\"app/livez\": {\"httpGet\": {\"port\": \"http\"}}}",
        ),
        ("--discovery-address", "meshd:notaport"),
    ] {
        let out = Command::new(MESHD)
            .args(["agent", "--pod-name", "p", "--pod-namespace", "n"])
            .arg(format!("{flag}={value}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{flag}: {stderr}");
        assert!(stderr.contains(flag), "{stderr}");
    }
    let out = Command::new(MESHD)
        .arg("agent")
        .env_remove("MESHD_POD_NAME")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pod-name"));
}
