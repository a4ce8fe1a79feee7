//! Snapshots in, compiled generations out: debounced so a burst of changes becomes one push.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use meshd_translate::{CompiledMesh, MeshSnapshot};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::XdsMetrics;

/// Push timing.
#[derive(Clone, Copy, Debug)]
pub struct XdsOptions {
    /// Quiet time after a change before it is pushed (default 100 ms).
    pub debounce: Duration,
    /// A change is pushed at most this long after it arrived, even if changes keep coming.
    pub max_delay: Duration,
}

impl Default for XdsOptions {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        }
    }
}

/// One compiled snapshot, the unit of a push.
#[derive(Debug)]
pub struct Generation {
    pub number: u64,
    pub mesh: Arc<CompiledMesh>,
    /// When the first change folded into this generation arrived; push latency counts from here.
    pub changed_at: Instant,
}

impl Generation {
    pub(crate) fn first(snapshot: &MeshSnapshot) -> Self {
        let mesh = CompiledMesh::compile(snapshot);
        for w in &mesh.warnings {
            tracing::warn!(warning = %w, "mesh snapshot");
        }
        Self {
            number: 1,
            mesh: Arc::new(mesh),
            changed_at: Instant::now(),
        }
    }
}

/// Runs until `cancel`: waits for a snapshot change, lets it settle, compiles, publishes.
pub(crate) async fn compile_loop(
    mut snapshots: watch::Receiver<Arc<MeshSnapshot>>,
    out: watch::Sender<Arc<Generation>>,
    options: XdsOptions,
    metrics: XdsMetrics,
    cancel: CancellationToken,
) {
    let mut number = out.borrow().number;
    let mut logged: BTreeSet<String> = out.borrow().mesh.warnings.iter().cloned().collect();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = snapshots.changed() => if changed.is_err() { return },
        }
        let first = Instant::now();
        let hard_deadline = first + options.max_delay;
        loop {
            let quiet_until = (Instant::now() + options.debounce).min(hard_deadline);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep_until(quiet_until) => break,
                changed = snapshots.changed() => {
                    if changed.is_err() || Instant::now() >= hard_deadline { break }
                }
            }
        }
        let snapshot = Arc::clone(&snapshots.borrow_and_update());
        let started = Instant::now();
        let mesh = match tokio::task::spawn_blocking(move || CompiledMesh::compile(&snapshot)).await
        {
            Ok(mesh) => mesh,
            Err(e) => {
                tracing::error!(error = %e, "translation task failed; keeping the previous config");
                continue;
            }
        };
        metrics
            .compile_seconds
            .observe(started.elapsed().as_secs_f64());
        let now: BTreeSet<String> = mesh.warnings.iter().cloned().collect();
        for w in now.difference(&logged) {
            tracing::warn!(warning = %w, "mesh snapshot");
        }
        logged = now;
        number += 1;
        tracing::debug!(generation = number, "mesh config compiled");
        out.send_replace(Arc::new(Generation {
            number,
            mesh: Arc::new(mesh),
            changed_at: first,
        }));
    }
}
