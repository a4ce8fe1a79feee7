//! The control plane's allocator, and giving freed heap back to the OS.
//!
//! mimalloc instead of glibc's malloc: a translation makes hundreds of thousands of small
//! allocations on two threads and frees many on the other, and glibc's arenas made that about a
//! third of the time (1,000 Services with a VirtualService and a DestinationRule each: 20.7 ms with
//! glibc, 14 ms with mimalloc, docs/perf-traffic.md). Binaries that serve xDS set [`Allocator`] as
//! their `#[global_allocator]`.
//!
//! The control plane's memory comes in bursts: thousands of proxies connecting at once each grow
//! HTTP/2 buffers and a first full push, then free most of it. mimalloc asks for transparent huge
//! pages for its arenas by default, and then kept ~200 MiB at 2,000 proxies where glibc kept
//! ~165 MiB; built without (libmimalloc-sys's `no_thp`), it kept ~160 MiB (docs/perf-xds.md). The
//! heap is also collected now and then, so what a burst freed goes back.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The global allocator of the binaries that serve xDS.
pub use mimalloc::MiMalloc as Allocator;

/// How often the heap is collected, on a blocking thread (its time is logged at debug).
const COLLECT_EVERY: Duration = Duration::from_secs(10);

/// Collects the heap every [`COLLECT_EVERY`] until `cancel`.
pub(crate) fn spawn_trimmer(cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(COLLECT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = every.tick() => {}
            }
            let _ = tokio::task::spawn_blocking(|| {
                let started = std::time::Instant::now();
                collect();
                tracing::debug!(
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "heap collected"
                );
            })
            .await;
        }
    });
}

/// mimalloc's `mi_collect(true)`: collects the calling thread's heap and the pages abandoned by
/// other threads, and gives what is free back to the OS.
fn collect() {
    // SAFETY: mi_collect takes no pointer; it frees what the allocator itself holds unused.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}
