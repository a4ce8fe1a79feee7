//! Giving freed heap back to the OS. The control plane's memory comes in bursts: thousands of proxies
//! connecting at once each grow HTTP/2 buffers and a first full push, then free most of it. glibc's
//! malloc keeps freed pages inside its arenas (at 2,000 proxies about 30 MiB above the live heap while
//! serving, and ~150 MiB after every proxy left, docs/perf-xds.md), so the control plane trims the heap
//! now and then. mimalloc was measured as the alternative and kept more (docs/perf-xds.md).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the heap is trimmed. A trim takes under 1 ms on an idle control plane and up to ~13 ms
/// while 2,000 proxies are served (measured), on a blocking thread.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Trims the heap every [`TRIM_EVERY`] until `cancel`.
pub(crate) fn spawn_trimmer(cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TRIM_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = every.tick() => {}
            }
            // Off the async workers: a trim of a large heap walks every arena.
            let _ = tokio::task::spawn_blocking(|| {
                let started = std::time::Instant::now();
                trim();
                tracing::debug!(
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "heap trimmed"
                );
            })
            .await;
        }
    });
}

/// Returns free memory at the top of every arena and the free pages inside them (glibc ≥ 2.8).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only reorganises the allocator's own free lists; it takes no pointer and
    // is thread-safe (it locks each arena).
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators (musl, macOS) return memory on their own terms.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
