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

/// `items.iter().map(f).collect()`, in the same order, on up to [`MAX_THREADS`] threads (the
/// caller's among them), each taking the next [`BATCH`] items until none are left.
pub(super) fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let threads = cores.min(MAX_THREADS).min(items.len() / PER_THREAD).max(1);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done: Vec<(usize, R)> = Vec::new();
        loop {
            let start = next.fetch_add(BATCH, Ordering::Relaxed);
            if start >= items.len() {
                return done;
            }
            let end = (start + BATCH).min(items.len());
            done.extend((start..end).map(|i| (i, f(&items[i]))));
        }
    };
    let mut slots: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mine = work();
        let theirs = others.into_iter().map(|handle| match handle.join() {
            Ok(done) => done,
            // A panic in `f` is a bug; surface it where it would have been without threads.
            Err(panic) => std::panic::resume_unwind(panic),
        });
        for (i, r) in std::iter::once(mine).chain(theirs).flatten() {
            slots[i] = Some(r);
        }
    });
    slots
        .into_iter()
        .map(|r| r.expect("every item is taken by exactly one thread"))
        .collect()
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
        let (sum, doubled) = join(|| items.iter().sum::<usize>(), || map(&items, |i| i * 2));
        assert_eq!(sum, 199 * 200 / 2);
        assert_eq!(doubled[199], 398);
    }

    #[test]
    fn keeps_the_order_whatever_the_split() {
        for n in [0, 1, 7, 63, 64, 129, 1000] {
            let items: Vec<usize> = (0..n).collect();
            assert_eq!(
                map(&items, |i| i * 2),
                items.iter().map(|i| i * 2).collect::<Vec<_>>()
            );
        }
    }
}
