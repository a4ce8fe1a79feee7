//! Compiling many Services at once, on the machine's cores: a first translation of a large mesh (or a
//! change every Service follows, such as the Mesh's mTLS mode) compiles each of them, and each reads
//! only the facts. Small changes stay on the caller's thread: a thread costs more than they do.

use std::num::NonZeroUsize;

/// Below this many items a thread is not worth starting.
pub(super) const PER_THREAD: usize = 64;

/// At most this many threads, whatever the machine has: beyond a few, the caller's other work (the
/// xDS streams) needs the cores more.
const MAX_THREADS: usize = 4;

/// `items.iter().map(f).collect()`, in the same order, split over up to [`MAX_THREADS`] threads
/// (the caller's among them) in contiguous chunks.
pub(super) fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let threads = cores.min(MAX_THREADS).min(items.len() / PER_THREAD).max(1);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let mut chunks = items.chunks(chunk);
        let first = chunks.next().unwrap_or_default();
        let others: Vec<_> = chunks
            .map(|c| scope.spawn(move || c.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out: Vec<R> = first.iter().map(f).collect();
        for handle in others {
            match handle.join() {
                Ok(part) => out.extend(part),
                // A panic in `f` is a bug; surface it where it would have been without threads.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
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
    fn keeps_the_order_whatever_the_split() {
        for n in [0, 1, 63, 64, 129, 1000] {
            let items: Vec<usize> = (0..n).collect();
            assert_eq!(
                map(&items, |i| i * 2),
                items.iter().map(|i| i * 2).collect::<Vec<_>>()
            );
        }
    }
}
