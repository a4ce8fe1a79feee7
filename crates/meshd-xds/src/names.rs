//! Lists of subscribed resource names, interned: thousands of proxies subscribe to the same EDS and
//! RDS names (every proxy of a namespace sees the same services), and each would otherwise keep its
//! own copy of a list as long as the mesh's services.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

type List = Arc<[Arc<str>]>;

/// Live lists by hash (several when hashes collide).
type Lists = HashMap<u64, Vec<Weak<[Arc<str>]>>>;

static LISTS: LazyLock<Mutex<Lists>> = LazyLock::new(Mutex::default);
static INTERNED: AtomicUsize = AtomicUsize::new(0);

/// The shared copy of `list` (sorted, no duplicates), made if none is alive.
pub(crate) fn intern(list: Vec<Arc<str>>) -> List {
    let hash = list.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, name| {
        (h.rotate_left(7) ^ meshd_translate::fnv1a(name.as_bytes())).wrapping_mul(0x0100_0000_01b3)
    });
    let mut lists = LISTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let bucket = lists.entry(hash).or_default();
    bucket.retain(|w| w.strong_count() > 0);
    if let Some(same) = bucket
        .iter()
        .filter_map(Weak::upgrade)
        .find(|l| **l == *list)
    {
        return same;
    }
    let shared: List = list.into();
    bucket.push(Arc::downgrade(&shared));
    // Now and then, forget lists nobody holds any more.
    if INTERNED.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
        lists.retain(|_, b| {
            b.retain(|w| w.strong_count() > 0);
            !b.is_empty()
        });
    }
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_lists_are_one_allocation_until_dropped() {
        let names = |n: &[&str]| n.iter().map(|s| Arc::<str>::from(*s)).collect::<Vec<_>>();
        let a = intern(names(&["a", "b"]));
        let b = intern(names(&["a", "b"]));
        let c = intern(names(&["a", "c"]));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        let weak = Arc::downgrade(&a);
        drop((a, b));
        assert_eq!(
            weak.strong_count(),
            0,
            "the interner holds no strong reference"
        );
    }
}
