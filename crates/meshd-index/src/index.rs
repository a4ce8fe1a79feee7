//! The facts by kind and key, and which keys changed since translation last looked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use meshd_translate::facts::{Fact, FactChange, FactKind, ObjectKey};

type FactKey = (FactKind, ObjectKey);

/// What the mesh looks like now. Writers set facts; the one reader (translation) takes what changed.
/// A fact set to what it already is (same content) is not a change.
#[derive(Debug)]
pub struct Index {
    facts: BTreeMap<FactKey, Fact>,
    /// Keys whose fact changed since the last [`Index::take_changes`].
    changed: BTreeSet<FactKey>,
    /// Kinds that must be listed once before the index is complete, and those that were.
    required: BTreeSet<FactKind>,
    synced: BTreeSet<FactKind>,
    /// Whether completeness changed since the last take.
    sync_changed: bool,
}

impl Default for Index {
    /// An index that needs every kind of [`crate::visit_kinds`] listed once.
    fn default() -> Self {
        Self::new(crate::kinds::fact_kinds())
    }
}

impl Index {
    pub fn new(required: impl IntoIterator<Item = FactKind>) -> Self {
        Self {
            facts: BTreeMap::new(),
            changed: BTreeSet::new(),
            required: required.into_iter().collect(),
            synced: BTreeSet::new(),
            sync_changed: false,
        }
    }

    /// Sets (`Some`) or removes (`None`) one fact; whether that changed anything.
    pub fn set(&mut self, kind: FactKind, key: ObjectKey, fact: Option<Fact>) -> bool {
        let k = (kind, key);
        let changed = match fact {
            Some(fact) => match self.facts.get(&k) {
                Some(old) if old.same(&fact) => false,
                _ => {
                    self.facts.insert(k.clone(), fact);
                    true
                }
            },
            None => self.facts.remove(&k).is_some(),
        };
        if changed {
            self.changed.insert(k);
        }
        changed
    }

    /// The whole set of one kind, as a relist gives it: facts listed are set, every other fact of the
    /// kind is removed. A key listed as `None` keeps its current fact (its object did not reduce).
    pub fn replace_kind(&mut self, kind: FactKind, listed: Vec<(ObjectKey, Option<Fact>)>) {
        let keep: BTreeSet<&ObjectKey> = listed.iter().map(|(k, _)| k).collect();
        let gone: Vec<ObjectKey> = self
            .keys(kind)
            .filter(|k| !keep.contains(k))
            .cloned()
            .collect();
        for key in gone {
            self.set(kind, key, None);
        }
        for (key, fact) in listed {
            if let Some(fact) = fact {
                self.set(kind, key, Some(fact));
            }
        }
    }

    /// A kind has been listed once; the index is complete once every required kind has.
    pub fn mark_synced(&mut self, kind: FactKind) {
        let was = self.synced();
        self.synced.insert(kind);
        self.sync_changed |= was != self.synced();
    }

    pub fn synced(&self) -> bool {
        self.required.is_subset(&self.synced)
    }

    pub fn get(&self, kind: FactKind, key: &ObjectKey) -> Option<&Fact> {
        self.facts.get(&(kind, key.clone()))
    }

    /// Every fact of a kind, by key.
    pub fn facts(&self, kind: FactKind) -> impl Iterator<Item = (&ObjectKey, &Fact)> {
        self.facts
            .range((kind, ObjectKey::new("", ""))..)
            .take_while(move |((k, _), _)| *k == kind)
            .map(|((_, key), fact)| (key, fact))
    }

    fn keys(&self, kind: FactKind) -> impl Iterator<Item = &ObjectKey> {
        self.facts(kind).map(|(k, _)| k)
    }

    /// Whether there is something for translation to take.
    pub fn has_changes(&self) -> bool {
        !self.changed.is_empty() || self.sync_changed
    }

    /// Every fact, as changes from nothing (to translate again from scratch).
    pub fn everything(&self) -> Vec<FactChange> {
        self.facts
            .iter()
            .map(|((kind, key), fact)| FactChange {
                kind: *kind,
                key: key.clone(),
                fact: Some(fact.clone()),
            })
            .collect()
    }

    /// What changed since the last call (the first call: everything), as pointers to the facts.
    pub fn take_changes(&mut self) -> Vec<FactChange> {
        self.sync_changed = false;
        std::mem::take(&mut self.changed)
            .into_iter()
            .map(|(kind, key)| {
                let fact = self.facts.get(&(kind, key.clone())).cloned();
                FactChange { kind, key, fact }
            })
            .collect()
    }
}

type Waker = Arc<dyn Fn() + Send + Sync>;

/// The index shared by its writers (sources) and its reader (the xDS server's translation), which is
/// told after every change that leaves something to take.
#[derive(Clone)]
pub struct SharedIndex {
    index: Arc<Mutex<Index>>,
    wakers: Arc<Mutex<Vec<Waker>>>,
}

impl std::fmt::Debug for SharedIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedIndex").finish_non_exhaustive()
    }
}

impl Default for SharedIndex {
    fn default() -> Self {
        Self::new(Index::default())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SharedIndex {
    pub fn new(index: Index) -> Self {
        Self {
            index: Arc::new(Mutex::new(index)),
            wakers: Arc::default(),
        }
    }

    /// Changes the index; the reader is woken if that left changes to take.
    pub fn update<R>(&self, f: impl FnOnce(&mut Index) -> R) -> R {
        let (result, wake) = {
            let mut index = lock(&self.index);
            let result = f(&mut index);
            (result, index.has_changes())
        };
        if wake {
            for waker in lock(&self.wakers).iter() {
                waker();
            }
        }
        result
    }

    /// Reads the index.
    pub fn read<R>(&self, f: impl FnOnce(&Index) -> R) -> R {
        f(&lock(&self.index))
    }

    /// Calls `waker` after every change that leaves something to take (from the writer's thread:
    /// keep it short, e.g. a notify).
    pub fn on_change(&self, waker: impl Fn() + Send + Sync + 'static) {
        lock(&self.wakers).push(Arc::new(waker));
    }

    /// What changed since the last take, and whether the index is complete.
    pub fn take(&self) -> (Vec<FactChange>, bool) {
        let mut index = lock(&self.index);
        (index.take_changes(), index.synced())
    }
}
