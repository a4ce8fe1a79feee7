//! `make demo`: a mesh on one machine. meshd's control plane fed from a config directory with its CA,
//! three pods on a bridge (each with `meshd init` capture, `meshd agent` running Envoy as uid 1337 with
//! its certificate over SDS, and an app as uid 1000), all under STRICT mTLS: traffic by Service VIP
//! proven from Envoy's own stats, the SPIFFE identities both sidecars verified, a plaintext client
//! outside the mesh refused, a DENY AuthorizationPolicy answered 403, a live endpoint change, the cost
//! of the two-sidecar path with mTLS against plaintext (side by side over the same pods), then a
//! canary (SPEC §8): 10% to a `v2` reviews pod and a retry policy hiding a failing pod, both checked;
//! and the edge (SPEC §10): an ingress gateway pod serving examples/gateway.yaml, reached over HTTPS
//! by a client outside the mesh that trusts only the demo's edge CA. Every claim is checked: a
//! mismatch fails the demo. Everything is torn down on exit, failure, Ctrl-C and SIGTERM.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use meshd_testbed::app::{HttpConn, XFCC_PATH, get_in};
use meshd_testbed::load::{answers, latencies, quantile};
use meshd_testbed::mesh::{
    APP, APP_PORT, DIRECT_PORT, EXAMPLE_HOST, GATEWAY_HTTP_PORT, GATEWAY_HTTPS_PORT, INBOUND, Mesh,
    PROXY, REVIEWS_OUTBOUND, REVIEWS_VIP, rss_kib, spiffe_id, wait_for,
};
use meshd_testbed::mtls_cost::{self, PLAIN_VIP};
use meshd_testbed::tls::{self, TlsClient};
use meshd_testbed::{prereq, signal};

#[derive(Parser, Debug)]
#[command(about = "The one-machine meshd demo (root; network namespaces on a bridge, real Envoy)")]
struct Args {
    /// The meshd binary.
    #[arg(long, env = "MESHD_MESHD", default_value = "target/release/meshd")]
    meshd: PathBuf,
    /// The real Envoy program (not the .venv/bin/envoy wrapper: uid 1337 must be able to run it).
    #[arg(long, env = "MESHD_ENVOY_PATH")]
    envoy_path: Option<PathBuf>,
    /// Requests per batch from the frontend to the reviews VIP.
    #[arg(long, env = "MESHD_REQUESTS", default_value_t = 200)]
    requests: usize,
    /// Requests per path for the latency figures (mTLS and plaintext alternating, in rounds with the
    /// direct call between them).
    #[arg(long, env = "MESHD_LATENCY_REQUESTS", default_value_t = 3000)]
    latency_requests: usize,
}

const READY: Duration = Duration::from_secs(30);
/// SPEC §9: a policy change governs requests 5 s after it.
const CHANGE: Duration = Duration::from_secs(10);
const OUTSIDER: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 50);
/// Latency rounds, each followed by the direct baseline.
const ROUNDS: usize = 3;

fn main() {
    let started = Instant::now();
    let code = match run(Args::parse()) {
        Ok(()) => {
            println!(
                "\nAll torn down (processes, namespaces, bridge, config dir). Demo took {:.1?}.",
                started.elapsed()
            );
            0
        }
        Err(_) if signal::interrupted() => {
            eprintln!("\nmeshd demo interrupted; everything it started has been torn down.");
            130
        }
        Err(e) => {
            eprintln!("\nmeshd demo FAILED: {e:#}\n(everything it started has been torn down)");
            1
        }
    };
    std::process::exit(code);
}

fn run(args: Args) -> anyhow::Result<()> {
    signal::install().context("installing the SIGINT/SIGTERM handler")?;
    prereq::check(&["iptables", "setpriv"]).map_err(anyhow::Error::msg)?;
    let meshd = std::fs::canonicalize(&args.meshd)
        .with_context(|| format!("--meshd {}", args.meshd.display()))?;
    let envoy = match args.envoy_path.clone() {
        Some(p) => p,
        None => meshd_testbed::mesh::venv_envoy(&std::env::current_dir()?)
            .map_err(anyhow::Error::msg)?,
    };
    let mut mesh = setup(&meshd, &envoy)?;
    let result = show(&mut mesh, &args);
    // Also reached on error: teardown is the Drop of `mesh`.
    println!("\nTearing down...");
    drop(mesh);
    result
}

/// The control plane and the three pods, ready. On any error the partly built mesh is dropped: torn down.
fn setup(meshd: &std::path::Path, envoy: &std::path::Path) -> anyhow::Result<Mesh> {
    println!(
        "== meshd demo: a mesh on this machine (namespace `demo`), Mesh mtls.mode STRICT ==\n"
    );
    let t = Instant::now();
    let mut mesh = Mesh::start_with(meshd, envoy, "STRICT")?;
    println!(
        "control plane : meshd controlplane, xDS and CA on unix:{}/xds.sock, CA in {}/ca",
        mesh.work_dir().display(),
        mesh.work_dir().display()
    );
    println!("config dir    : {}/config", mesh.work_dir().display());
    let pods = [
        ("frontend-0", "frontend", Ipv4Addr::new(10, 44, 0, 10)),
        ("reviews-0", "reviews", Ipv4Addr::new(10, 44, 0, 11)),
        ("reviews-1", "reviews", Ipv4Addr::new(10, 44, 0, 12)),
    ];
    for (name, app, ip) in pods {
        mesh.declare_pod(name, app, ip)?;
    }
    for (name, app, ip) in pods {
        mesh.start_pod(name, app, ip)?;
        println!(
            "pod           : {name:<11} {ip:<11} app={app:<9} capture + agent/Envoy (uid 1337) + app (uid 1000)"
        );
    }
    mesh.wait_ready(READY)?;
    println!(
        "all sidecars ready (/healthz/ready 200, each with its certificate from the mesh CA) in {:.1?}\n",
        t.elapsed()
    );
    mesh.start_outsider(OUTSIDER)?;
    println!(
        "outsider      : a namespace at {OUTSIDER} on the same bridge, no capture, no sidecar\n"
    );
    Ok(mesh)
}

fn show(mesh: &mut Mesh, args: &Args) -> anyhow::Result<()> {
    let vip: SocketAddr = (REVIEWS_VIP, 80).into();
    println!(
        "-- 1. frontend-0 calls http://{REVIEWS_VIP}/ (the reviews VIP) {} times, as uid 1000 --",
        args.requests
    );
    batch(mesh, vip, args.requests)?;

    println!("\n-- 2. mTLS: who talks to whom, as the sidecars verified it --");
    identities(mesh)?;

    println!(
        "\n-- 3. a plaintext client outside the mesh calls reviews-0 at 10.44.0.11:{APP_PORT} --"
    );
    outsider_refused(mesh)?;

    println!("\n-- 4. AuthorizationPolicy: DENY the frontend's GET /admin/* on reviews --");
    deny_policy(mesh)?;

    println!("\n-- 5. live change: reviews-2 written into the config dir, then started --");
    let t = Instant::now();
    let ip = Ipv4Addr::new(10, 44, 0, 13);
    mesh.declare_pod("reviews-2", "reviews", ip)?;
    mesh.start_pod("reviews-2", "reviews", ip)?;
    mesh.wait_ready(READY)?;
    mesh.wait_endpoint("frontend-0", REVIEWS_OUTBOUND, (ip, APP_PORT).into(), READY)?;
    println!(
        "frontend-0's Envoy has {ip}:{APP_PORT} in {REVIEWS_OUTBOUND} after {:.1?}",
        t.elapsed()
    );
    batch(mesh, vip, args.requests)?;

    costs(mesh, args)?;
    let frontend = mesh.pod("frontend-0")?;
    let agent = frontend.agent_pid().context("frontend-0's agent")?;
    let envoy = frontend.envoy_pid().context("frontend-0's Envoy")?;
    println!(
        "RSS of frontend-0's sidecar: meshd agent {} MiB, Envoy {} MiB",
        rss_kib(agent) / 1024,
        rss_kib(envoy) / 1024
    );
    canary(mesh, vip, args.requests.max(400))?;
    edge(mesh)
}

/// The gateway pod, and the client outside the mesh that calls it (its own namespace).
const INGRESS: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 30);
const EDGE_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 51);
const SHOP: &str = EXAMPLE_HOST;

/// SPEC §10 with the repository's example: Gateway `demo/frontend` (HTTPS SIMPLE with Secret
/// `frontend-cert`, HTTP redirected) and the VirtualService binding `shop.example.com` to frontend.
fn edge(mesh: &mut Mesh) -> anyhow::Result<()> {
    println!(
        "\n-- 8. the edge: HTTPS from outside the mesh through an ingress gateway to frontend --"
    );
    let t = Instant::now();
    let (ca, _) = mesh.start_example_edge(INGRESS, READY)?;
    println!(
        "gateway     : ingress-0 {INGRESS}, meshd agent --gateway ingress (no capture), ready in {:.1?} \
         (a Gateway selects it, its listeners serve with their certificate)",
        t.elapsed()
    );
    println!(
        "config      : examples/gateway.yaml + Secret frontend-cert (kubernetes.io/tls, {SHOP}, signed by an edge CA)"
    );
    let client = mesh.start_outsider(EDGE_CLIENT)?;
    let roots = ca.ca_pem();
    let (names, version, answer) = client.run_in(None, move || {
        let tls = TlsClient::new(SHOP, roots.as_bytes());
        let mut session = tls::connect((INGRESS, GATEWAY_HTTPS_PORT).into(), &tls)?;
        let answer = session.http.get_with("/", &[("host", SHOP)])?;
        Ok((session.peer_dns_names()?, session.version, answer))
    })?;
    println!(
        "client      : {EDGE_CLIENT} (no sidecar) -> https://{SHOP}/ at {INGRESS}:{GATEWAY_HTTPS_PORT}, trusting only the edge CA"
    );
    println!(
        "  certificate for {names:?}, {version:?}; answer {} {:?}",
        answer.0, answer.1
    );
    if !names.iter().any(|n| n == SHOP) {
        bail!("the gateway presented a certificate for {names:?}, not {SHOP}");
    }
    if answer != (200, "frontend-0".to_string()) {
        bail!("https://{SHOP}/ answered {answer:?}, not frontend-0's 200");
    }
    let redirect = client.run_in(None, || {
        HttpConn::connect((INGRESS, GATEWAY_HTTP_PORT).into())?.get_with("/", &[("host", SHOP)])
    })?;
    println!(
        "  http://{SHOP}/ at {INGRESS}:{GATEWAY_HTTP_PORT}: {} (httpsRedirect)",
        redirect.0
    );
    if redirect.0 != 301 {
        bail!("http://{SHOP}/ answered {redirect:?}, not the 301 of httpsRedirect");
    }
    println!(
        "=> TLS terminated at the gateway with the Secret's certificate; frontend-0 answered through its \
         STRICT sidecar (the gateway's upstream is the mesh's mTLS)"
    );
    Ok(())
}

/// Step 6: the direct call, the plaintext path and the mTLS path, the last two over the same pods in
/// alternation ([`mtls_cost`]), and the same measurement with both paths over mTLS as a control.
fn costs(mesh: &Mesh, args: &Args) -> anyhow::Result<()> {
    let n = args.latency_requests;
    println!(
        "\n-- 6. cost of the two sidecars, and of mTLS ({n} requests per path; mTLS and plaintext alternating, one keep-alive connection each) --"
    );
    mtls_cost::open(mesh, true, CHANGE)?;
    println!(
        "paths       : reviews {REVIEWS_VIP} (mTLS, as under STRICT) and reviews-plain {PLAIN_VIP} (the same pods; DestinationRule tls DISABLE: plaintext, as under DISABLE); the reviews pods PERMISSIVE meanwhile"
    );
    println!("negotiated  : {}", mtls_cost::negotiated(mesh)?.join(" "));
    let before = mtls_cost::connections(mesh)?;
    let (frontend, reviews) = (mesh.pod("frontend-0")?, mesh.pod("reviews-0")?);
    let direct_to: SocketAddr = (reviews.ip, DIRECT_PORT).into();
    let mut direct = Vec::new();
    let paired = mtls_cost::measure(mesh, true, n, ROUNDS, || {
        direct.extend(latencies(&frontend.ns, PROXY, direct_to, 100, n / ROUNDS)?);
        Ok(())
    })?;
    let after = mtls_cost::connections(mesh)?;
    if after != before {
        bail!(
            "the timed requests opened connections: TLS handshakes {} -> {}, upstream connections {} -> {}",
            before.0,
            after.0,
            before.1,
            after.1
        );
    }
    mtls_cost::open(mesh, false, CHANGE)?;
    let control = mtls_cost::measure(mesh, false, n, 1, || Ok(()))?;
    mtls_cost::close(mesh)?;
    let q = |s: &[Duration]| (quantile(s, 0.5), quantile(s, 0.99));
    let ((d50, d99), (p50, p99), (s50, s99)) = (q(&direct), q(&paired.plain), q(&paired.mtls));
    println!(
        "direct      : uid 1337 -> {direct_to}, no capture either side: p50 {d50:?}  p99 {d99:?}"
    );
    println!(
        "plaintext   : uid 1000 -> VIP, frontend Envoy -> reviews Envoy -> app: p50 {p50:?}  p99 {p99:?}"
    );
    println!("mTLS        : the same, mTLS between the sidecars: p50 {s50:?}  p99 {s99:?}");
    println!(
        "=> mTLS adds p50 {:+.1}% ({:+.0} µs)   p99 {:+.1}%   (target: <= +10% at p50)",
        percent(s50, p50),
        s50.as_secs_f64() * 1e6 - p50.as_secs_f64() * 1e6,
        percent(s99, p99)
    );
    let (c1, c2) = (quantile(&control.mtls, 0.5), quantile(&control.plain, 0.5));
    println!(
        "control     : both paths over mTLS, the second against the first: p50 {:+.1}% (the method's own error)",
        percent(c2, c1)
    );
    println!(
        "=> the timed requests opened no connection (TLS handshakes stay {}, upstream connections {}): the sidecars pool them",
        after.0, after.1
    );
    println!(
        "the sidecars add (plaintext vs direct) p50 +{:?} ({:.1}x)   p99 +{:?} ({:.1}x)",
        p50.saturating_sub(d50),
        ratio(p50, d50),
        p99.saturating_sub(d99),
        ratio(p99, d99)
    );
    Ok(())
}

/// SPEC §8: reviews-0/1 are v1, reviews-2 is v2; 10% goes to v2, retries on 5xx hide reviews-1, which
/// now fails every request.
const CANARY: &str = "apiVersion: networking.meshd.io/v1alpha1
kind: DestinationRule
metadata: {name: reviews, namespace: demo}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.meshd.io/v1alpha1
kind: VirtualService
metadata: {name: reviews, namespace: demo}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v2}, weight: 10}
    retries: {attempts: 3, retryOn: 5xx}
";

fn canary(mesh: &mut Mesh, vip: SocketAddr, n: usize) -> anyhow::Result<()> {
    println!(
        "\n-- 7. canary: a VirtualService sends 10% to v2 (reviews-2), retries hide a failing pod --"
    );
    for (pod, version) in [
        ("reviews-0", "v1"),
        ("reviews-1", "v1"),
        ("reviews-2", "v2"),
    ] {
        mesh.label_pod(pod, "version", version)?;
    }
    mesh.write_config_file("canary.yaml", Some(CANARY))?;
    let v2 = "outbound|80|v2|reviews.demo.svc.cluster.local";
    let ip = mesh.pod("reviews-2")?.ip;
    mesh.wait_endpoint("frontend-0", v2, (ip, APP_PORT).into(), READY)?;
    let frontend = mesh.pod("frontend-0")?;
    meshd_testbed::mesh::wait_for("the canary's routes", READY, || {
        Ok(frontend
            .admin("/config_dump?resource=dynamic_route_configs")
            .is_ok_and(|d| d.contains(v2)))
    })?;
    println!(
        "config      : {}/config/canary.yaml (DestinationRule + VirtualService)",
        mesh.work_dir().display()
    );
    mesh.pod("reviews-1")?.answer_with(503);
    println!("reviews-1   : now answers every request with 503");
    let by_pod = answers(&mesh.pod("frontend-0")?.ns, APP, vip, n)
        .context("a request failed although the retry policy should have hidden reviews-1")?;
    for pod in ["reviews-0", "reviews-1", "reviews-2"] {
        let answered = by_pod.get(pod).copied().unwrap_or(0);
        println!("  {pod:<10} answered {answered:>4}  {}", bar(answered, n));
    }
    let to_v2 = by_pod.get("reviews-2").copied().unwrap_or(0);
    let share = to_v2 as f64 * 100.0 / n as f64;
    if !(5.0..=15.0).contains(&share) {
        bail!("v2 got {share:.1}% of {n} requests, not about 10%");
    }
    if by_pod.get("reviews-1").copied().unwrap_or(0) > 0 {
        bail!("reviews-1 answered although it fails every request");
    }
    println!(
        "=> {n} x 200: v2 got {share:.1}% (10% asked), the failing reviews-1 was retried away"
    );
    Ok(())
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn percent(a: Duration, b: Duration) -> f64 {
    (ratio(a, b) - 1.0) * 100.0
}

/// `method path` from the frontend app through both sidecars to the reviews VIP.
fn call(mesh: &Mesh, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let (method, path) = (method.to_string(), path.to_string());
    mesh.pod("frontend-0")?.ns.run_in(Some(APP), move || {
        HttpConn::connect((REVIEWS_VIP, 80).into())?.request(&method, &path)
    })
}

/// The identities in the `x-forwarded-client-cert` the reviews sidecar hands its app: its own (`By=`)
/// and the caller's, verified in the TLS handshake (`URI=`).
fn identities(mesh: &Mesh) -> anyhow::Result<()> {
    let (status, xfcc) = call(mesh, "GET", XFCC_PATH)?;
    println!("x-forwarded-client-cert at the reviews app: {xfcc}");
    let (server, client) = (spiffe_id("reviews"), spiffe_id("frontend"));
    if status != 200
        || !xfcc.contains(&format!("By={server}"))
        || !xfcc.contains(&format!("URI={client}"))
    {
        bail!("expected By={server} and URI={client} (status {status})");
    }
    let frontend = mesh.pod("frontend-0")?;
    let handshakes = frontend.cluster_stat(REVIEWS_OUTBOUND, "ssl.handshake")?;
    let bad_san = frontend.cluster_stat(REVIEWS_OUTBOUND, "ssl.fail_verify_san")?;
    if handshakes == 0 || bad_san != 0 {
        bail!(
            "frontend-0's {REVIEWS_OUTBOUND}: {handshakes} TLS handshakes, {bad_san} SAN failures"
        );
    }
    println!("=> the server is {server}, the client {client}");
    println!(
        "=> frontend-0's Envoy: {handshakes} TLS handshakes in {REVIEWS_OUTBOUND}, the server's SAN checked (0 failures)"
    );
    Ok(())
}

fn outsider_refused(mesh: &Mesh) -> anyhow::Result<()> {
    let outsider = mesh.outsider(0)?;
    match get_in(
        outsider,
        None,
        (mesh.pod("reviews-0")?.ip, APP_PORT).into(),
        "/",
    ) {
        Ok(answer) => bail!("a plaintext client outside the mesh got an answer: {answer:?}"),
        Err(e) => println!("=> refused: {e:#} (STRICT closes plaintext without an answer)"),
    }
    Ok(())
}

fn deny_policy(mesh: &Mesh) -> anyhow::Result<()> {
    let policy = "apiVersion: security.meshd.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: no-admin, namespace: demo}\nspec:\n  selector: {matchLabels: {app: reviews}}\n  action: DENY\n  rules:\n  - from: [{source: {principals: [cluster.local/ns/demo/sa/frontend]}}]\n    to: [{operation: {methods: [GET], paths: [/admin/*]}}]\n";
    mesh.write_config_file("no-admin.yaml", Some(policy))?;
    let t = Instant::now();
    wait_for("the DENY policy in force", CHANGE, || {
        Ok(every_reviews_pod(|| {
            call(mesh, "GET", "/admin/users").is_ok_and(|(s, _)| s == 403)
        }))
    })?;
    let denied = call(mesh, "GET", "/admin/users")?;
    let allowed = call(mesh, "GET", "/")?;
    println!(
        "no-admin.yaml written; after {:.1?}: GET /admin/users -> {} {:?}, GET / -> {}",
        t.elapsed(),
        denied.0,
        denied.1,
        allowed.0
    );
    if denied != (403, "RBAC: access denied".to_string()) || allowed.0 != 200 {
        bail!("expected 403 \"RBAC: access denied\" and 200, got {denied:?} and {allowed:?}");
    }
    mesh.write_config_file("no-admin.yaml", None)?;
    wait_for("the DENY policy removed", CHANGE, || {
        Ok(every_reviews_pod(|| {
            call(mesh, "GET", "/admin/users").is_ok_and(|(s, _)| s == 200)
        }))
    })?;
    println!("=> denied by the reviews sidecar; policy removed again, GET /admin/users -> 200");
    Ok(())
}

/// Whether `check` holds for several calls in a row: the frontend balances them round robin over the
/// reviews pods, and each pod's sidecar gets a change at its own moment.
fn every_reviews_pod(check: impl Fn() -> bool) -> bool {
    (0..6).all(|_| check())
}

/// One batch through the VIP, and the proof from the Envoys' stats that every request crossed both sidecars.
fn batch(mesh: &Mesh, vip: SocketAddr, n: usize) -> anyhow::Result<()> {
    let frontend = mesh.pod("frontend-0")?;
    let reviews: Vec<_> = mesh
        .pods()
        .iter()
        .filter(|p| p.app_label == "reviews")
        .collect();
    let out_before = frontend.cluster_stat(REVIEWS_OUTBOUND, "upstream_rq_total")?;
    let in_before: Vec<u64> = reviews
        .iter()
        .map(|p| p.cluster_stat(INBOUND, "upstream_rq_total"))
        .collect::<Result<_, _>>()?;
    let by_pod = answers(&frontend.ns, APP, vip, n)?;
    let out = frontend.cluster_stat(REVIEWS_OUTBOUND, "upstream_rq_total")? - out_before;
    let mut inbound: BTreeMap<&str, u64> = BTreeMap::new();
    for (pod, before) in reviews.iter().zip(in_before) {
        inbound.insert(
            &pod.name,
            pod.cluster_stat(INBOUND, "upstream_rq_total")? - before,
        );
    }
    let in_total: u64 = inbound.values().sum();
    println!("answers     : {n} x 200");
    println!("outbound    : frontend-0 Envoy, cluster {REVIEWS_OUTBOUND}: +{out} requests");
    println!("inbound     : reviews Envoys, cluster {INBOUND}: +{in_total} requests");
    for pod in &reviews {
        let answered = by_pod.get(&pod.name).copied().unwrap_or(0);
        let through = inbound.get(pod.name.as_str()).copied().unwrap_or(0);
        println!(
            "  {:<10} answered {answered:>4}   its sidecar's inbound +{through:>4}  {}",
            pod.name,
            bar(answered, n)
        );
    }
    for pod in &reviews {
        let answered = by_pod.get(&pod.name).copied().unwrap_or(0);
        let through = inbound.get(pod.name.as_str()).copied().unwrap_or(0);
        if answered != through {
            bail!(
                "{}: answered {answered} requests but its sidecar's inbound counted {through}",
                pod.name
            );
        }
    }
    if out != n as u64 || in_total != n as u64 {
        bail!(
            "expected {n} requests through both sidecars, saw outbound +{out}, inbound +{in_total}"
        );
    }
    println!(
        "=> all {n} requests went out through frontend-0's sidecar and in through a reviews sidecar"
    );
    Ok(())
}

fn bar(part: u64, whole: usize) -> String {
    "#".repeat((part as usize * 40).checked_div(whole).unwrap_or(0))
}
