//! What mTLS costs on the two-sidecar path, measured so that nothing but mTLS differs
//! (docs/perf-demo.md): the same frontend app, the same reviews pods and Envoys, the same moment.
//!
//! A second Service, `reviews-plain` ([`PLAIN_VIP`]), selects the same reviews pods, and its
//! DestinationRule `tls.mode: DISABLE` makes the frontend's sidecar send it plaintext; the reviews pods'
//! PeerAuthentication is PERMISSIVE, so their sidecars take both. Per request, the mTLS path is
//! STRICT's (the same client transport socket, the same server mTLS chain) and the plaintext path
//! DISABLE's (the same plaintext chain); what PERMISSIVE adds (the TLS inspector) runs once per
//! connection, and the timed requests open none. The frontend app then alternates requests over two
//! keep-alive connections, one per Service, so the machine's other load falls on both alike; every
//! answer says which path it came by ([`PEER_PATH`]), and an answer by the wrong one fails the run.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::app::{HttpConn, PEER_PATH};
use crate::mesh::{APP, APP_PORT, Mesh, NAMESPACE, REVIEWS_OUTBOUND, REVIEWS_VIP, wait_for};
use crate::netns::{Identity, NetNs};

/// `reviews-plain`'s cluster IP.
pub const PLAIN_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 12);
pub const PLAIN_OUTBOUND: &str = "outbound|80||reviews-plain.demo.svc.cluster.local";
const FILE: &str = "mtls-cost.yaml";

/// Latencies of the two paths, sampled in alternation.
#[derive(Debug, Default)]
pub struct Paired {
    pub mtls: Vec<Duration>,
    pub plain: Vec<Duration>,
}

impl Paired {
    pub fn extend(&mut self, other: Paired) {
        self.mtls.extend(other.mtls);
        self.plain.extend(other.plain);
    }
}

/// The plaintext Service over the reviews pods, with `tls` DISABLE (or, for the control run with
/// `plain: false`, the mesh's auto mTLS like `reviews`), and the reviews pods PERMISSIVE.
fn config(mesh: &Mesh, plain: bool) -> String {
    let endpoints: String = mesh
        .pods()
        .iter()
        .filter(|p| p.app_label == "reviews")
        .map(|p| {
            format!(
                "- addresses: [\"{}\"]\n  conditions: {{ready: true}}\n  targetRef: {{kind: Pod, name: {}, namespace: {NAMESPACE}}}\n",
                p.ip, p.name
            )
        })
        .collect();
    let mut out = format!(
        "apiVersion: security.meshd.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {{name: reviews-both, namespace: {NAMESPACE}}}\nspec:\n  selector: {{matchLabels: {{app: reviews}}}}\n  mtls: {{mode: PERMISSIVE}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: reviews-plain, namespace: {NAMESPACE}}}\nspec:\n  clusterIP: {PLAIN_VIP}\n  selector: {{app: reviews}}\n  ports: [{{name: http, port: 80, targetPort: {APP_PORT}}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: reviews-plain-1\n  namespace: {NAMESPACE}\n  labels: {{kubernetes.io/service-name: reviews-plain}}\naddressType: IPv4\nports: [{{name: http, port: {APP_PORT}}}]\nendpoints:\n{endpoints}"
    );
    if plain {
        out.push_str(&format!(
            "---\napiVersion: networking.meshd.io/v1alpha1\nkind: DestinationRule\nmetadata: {{name: reviews-plain, namespace: {NAMESPACE}}}\nspec:\n  host: reviews-plain.{NAMESPACE}.svc.cluster.local\n  trafficPolicy:\n    tls: {{mode: DISABLE}}\n"
        ));
    }
    out
}

/// Opens the second path (`plain`: plaintext; otherwise mTLS too, the control run) and waits until
/// both paths answer the way they should.
pub fn open(mesh: &Mesh, plain: bool, bound: Duration) -> anyhow::Result<()> {
    mesh.write_config_file(FILE, Some(&config(mesh, plain)))?;
    let frontend = mesh.pod("frontend-0")?;
    let (a, b) = vips();
    wait_for("the mTLS and plaintext paths", bound, || {
        Ok(alternate(&frontend.ns, APP, (a, b, plain), 0, 20).is_ok())
    })
}

/// Removes what [`open`] wrote (the reviews pods follow the Mesh's mode again).
pub fn close(mesh: &Mesh) -> anyhow::Result<()> {
    mesh.write_config_file(FILE, None)
}

fn vips() -> (SocketAddr, SocketAddr) {
    ((REVIEWS_VIP, 80).into(), (PLAIN_VIP, 80).into())
}

/// `n` pairs of timed requests (after `warmup` pairs), alternating between `reviews` (mTLS) and
/// `reviews-plain` (`plain`: plaintext; else mTLS too), each Service on its own keep-alive connection.
pub fn alternate(
    ns: &NetNs,
    who: Identity,
    (mtls_vip, other_vip, plain): (SocketAddr, SocketAddr, bool),
    warmup: usize,
    n: usize,
) -> anyhow::Result<Paired> {
    ns.run_in(Some(who), move || {
        let mut conns = [HttpConn::connect(mtls_vip)?, HttpConn::connect(other_vip)?];
        let want = ["mtls", if plain { "plain" } else { "mtls" }];
        let mut out = Paired::default();
        for i in 0..warmup + n {
            for (k, conn) in conns.iter_mut().enumerate() {
                if crate::signal::interrupted() {
                    bail!("interrupted");
                }
                let started = Instant::now();
                let (status, body) = conn.get(PEER_PATH)?;
                let took = started.elapsed();
                if status != 200 || !body.trim_end().ends_with(want[k]) {
                    bail!(
                        "request {i} by path {k}: {status} {body:?}, expected over {}",
                        want[k]
                    );
                }
                if i >= warmup {
                    [&mut out.mtls, &mut out.plain][k].push(took);
                }
            }
        }
        Ok(out)
    })
}

/// The frontend's TLS handshakes and upstream connections towards both Services so far (the timed
/// requests must open none: the sidecars pool their connections).
pub fn connections(mesh: &Mesh) -> anyhow::Result<(u64, u64)> {
    let frontend = mesh.pod("frontend-0")?;
    let mut handshakes = 0;
    let mut opened = 0;
    for cluster in [REVIEWS_OUTBOUND, PLAIN_OUTBOUND] {
        handshakes += frontend.cluster_stat(cluster, "ssl.handshake")?;
        opened += frontend.cluster_stat(cluster, "upstream_cx_total")?;
    }
    Ok((handshakes, opened))
}

/// What the frontend's sidecar negotiated towards `reviews`: the TLS versions, ciphers, key
/// exchanges and signature algorithms its stats counted.
pub fn negotiated(mesh: &Mesh) -> anyhow::Result<Vec<String>> {
    let frontend = mesh.pod("frontend-0")?;
    let prefix = format!("cluster.{REVIEWS_OUTBOUND}.ssl.");
    let stats = frontend.stats(&prefix)?;
    let mut out = Vec::new();
    for kind in ["versions.", "ciphers.", "curves.", "sigalgs."] {
        for (name, count) in &stats {
            if let Some(value) = name
                .strip_prefix(&prefix)
                .and_then(|n| n.strip_prefix(kind))
                && *count > 0
            {
                out.push(value.to_string());
            }
        }
    }
    if out.is_empty() {
        bail!("frontend-0's {REVIEWS_OUTBOUND} counted no TLS handshake");
    }
    Ok(out)
}

/// [`alternate`] from the frontend app, `rounds` times `n / rounds` pairs, with `between` run after
/// each round (the direct baseline).
pub fn measure(
    mesh: &Mesh,
    plain: bool,
    n: usize,
    rounds: usize,
    mut between: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Paired> {
    let frontend = mesh.pod("frontend-0")?;
    let (a, b) = vips();
    let mut all = Paired::default();
    for _ in 0..rounds {
        let per_round = (n / rounds).max(1);
        all.extend(
            alternate(&frontend.ns, APP, (a, b, plain), 100, per_round)
                .context("the alternating requests")?,
        );
        between()?;
    }
    Ok(all)
}
