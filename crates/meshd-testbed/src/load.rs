//! Request batches from inside a pod, as a given uid, over one keep-alive connection: who answered, and
//! how long each request took.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::app::HttpConn;
use crate::netns::{Identity, NetNs};

/// `n` GETs of `/` to `target`: answers counted by body (the answering pod's name). Fails on the first
/// error or non-200, naming how many succeeded before it.
pub fn answers(
    ns: &NetNs,
    who: Identity,
    target: SocketAddr,
    n: usize,
) -> anyhow::Result<BTreeMap<String, u64>> {
    ns.run_in(Some(who), move || {
        let mut conn = HttpConn::connect(target)?;
        let mut by_pod = BTreeMap::new();
        for i in 0..n {
            if crate::signal::interrupted() {
                bail!("interrupted");
            }
            match conn.get("/")? {
                (200, body) => *by_pod.entry(body).or_insert(0) += 1,
                (status, body) => bail!("request {i} to {target}: {status} {body:?}"),
            }
        }
        Ok(by_pod)
    })
}

/// Latency of `n` sequential GETs to `target` after `warmup` untimed ones.
pub fn latencies(
    ns: &NetNs,
    who: Identity,
    target: SocketAddr,
    warmup: usize,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    ns.run_in(Some(who), move || {
        let mut conn = HttpConn::connect(target)?;
        let mut out = Vec::with_capacity(n);
        for i in 0..warmup + n {
            if crate::signal::interrupted() {
                bail!("interrupted");
            }
            let started = Instant::now();
            let (status, _) = conn.get("/")?;
            if status != 200 {
                bail!("request {i} to {target}: {status}");
            }
            if i >= warmup {
                out.push(started.elapsed());
            }
        }
        Ok(out)
    })
}

/// The `q` quantile (0..=1) of `samples`, nearest-rank; zero for none.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_is_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(quantile(&samples, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&samples, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&samples, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
