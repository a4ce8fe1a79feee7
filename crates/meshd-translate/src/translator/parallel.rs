//! Compiling many Services at once, on the machine's cores: a first translation of a large mesh (or a
//! change every Service follows, such as the Mesh's mTLS mode) compiles each of them, and each reads
//! only the facts; the judgement and the indexing of Pods and slices, or the outbound listener and the
//! Services, run beside each other ([`join`]). Small changes stay on the caller's thread: a thread
//! costs more than they do.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Below this many items a thread is not worth starting.
pub(super) const PER_THREAD: usize = 64;

/// At most this many threads, whatever the machine has: beyond a few, the caller's other work (the
/// xDS streams) needs the cores more.
const MAX_THREADS: usize = 4;

/// Items a thread takes at a time: small enough that threads finish together when items differ in
/// cost or a core is busy with something else (the outbound listener, say), large enough that
/// taking them costs nothing.
const BATCH: usize = 8;

/// `for item in items { consume(f(item)) }`: `f` on up to [`MAX_THREADS`] threads (the caller's
/// among them), each taking the next [`BATCH`] items until none are left; `consume` on the caller's
/// thread, in item order, as results come in (the caller consumes between its own batches, so
/// consuming overlaps the others' work instead of following it).
pub(super) fn for_each_in_order<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> R + Sync,
    mut consume: impl FnMut(R),
) {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let threads = cores.min(MAX_THREADS).min(items.len() / PER_THREAD).max(1);
    if threads == 1 {
        items.iter().map(&f).for_each(consume);
        return;
    }
    let next = AtomicUsize::new(0);
    let take = || {
        let start = next.fetch_add(BATCH, Ordering::Relaxed);
        (start < items.len()).then(|| start..(start + BATCH).min(items.len()))
    };
    let compile =
        |batch: std::ops::Range<usize>| -> Vec<R> { batch.map(|i| f(&items[i])).collect() };
    // Batches done and not yet consumed, by first index; `done` is the next index to consume.
    let mut waiting: std::collections::BTreeMap<usize, Vec<R>> = std::collections::BTreeMap::new();
    let mut done = 0;
    let mut consume_ready = |waiting: &mut std::collections::BTreeMap<usize, Vec<R>>| {
        while let Some(batch) = waiting.remove(&done) {
            done += batch.len();
            batch.into_iter().for_each(&mut consume);
        }
        done
    };
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::channel::<(usize, Vec<R>)>();
        let others: Vec<_> = (1..threads)
            .map(|_| {
                let sender = sender.clone();
                scope.spawn(move || {
                    while let Some(batch) = take() {
                        let start = batch.start;
                        if sender.send((start, compile(batch))).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        drop(sender);
        let mut consumed = 0;
        while let Some(batch) = take() {
            waiting.insert(batch.start, compile(batch));
            waiting.extend(receiver.try_iter());
            consumed = consume_ready(&mut waiting);
        }
        while consumed < items.len() {
            // Only a panicked thread drops its sender early: its panic is raised below.
            let Ok((start, batch)) = receiver.recv() else {
                break;
            };
            waiting.insert(start, batch);
            consumed = consume_ready(&mut waiting);
        }
        for handle in others {
            if let Err(panic) = handle.join() {
                // A panic in `f` is a bug; surface it where it would have been without threads.
                std::panic::resume_unwind(panic);
            }
        }
    });
}

/// `(a(), b())`, `a` on another thread when the machine has more than one core.
pub(super) fn join<A: Send, B>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B) {
    if std::thread::available_parallelism().map_or(1, NonZeroUsize::get) == 1 {
        return (a(), b());
    }
    std::thread::scope(|scope| {
        let other = scope.spawn(a);
        let b = b();
        match other.join() {
            Ok(a) => (a, b),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_returns_both_results_in_place() {
        let items: Vec<usize> = (0..200).collect();
        let mut doubled = Vec::new();
        let (sum, ()) = join(
            || items.iter().sum::<usize>(),
            || for_each_in_order(&items, |i| i * 2, |r| doubled.push(r)),
        );
        assert_eq!(sum, 199 * 200 / 2);
        assert_eq!(doubled[199], 398);
    }

    #[test]
    fn consumes_every_result_once_in_order() {
        for n in [0, 1, 7, 63, 64, 129, 1000] {
            let items: Vec<usize> = (0..n).collect();
            let mut seen = Vec::new();
            for_each_in_order(&items, |i| i * 2, |r| seen.push(r));
            assert_eq!(seen, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        }
    }
}
