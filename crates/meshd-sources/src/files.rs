//! The file-fed source: every `*.yaml`, `*.yml` and `*.json` under a directory, multi-document, each
//! object reduced to its fact and set in the index. Incremental both ways: a file event re-reads that
//! file alone, and the periodic rescan (in case an event was missed) compares each file's size, mtime,
//! ctime and inode with what it last read before reading anything. SPEC §6: a file that does not parse
//! (or holds an object meshd cannot use) is reported with its path and the error, and its last good
//! content stays in force; other files are unaffected.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use meshd_index::SharedIndex;
use meshd_translate::facts::{Fact, FactKind, ObjectKey};
use tokio_util::sync::CancellationToken;

use crate::SourceError;
use crate::documents::{ParsedFact, parse_documents};

type FactKey = (FactKind, ObjectKey);

/// What identifies a file's content without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    inode: (u64, u64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            inode: (meta.dev(), meta.ino()),
        }
    }
}

/// What one file last said.
#[derive(Debug, Default)]
struct LoadedFile {
    stamp: Option<Stamp>,
    /// Hash of the content last read, good or bad: a touched but unchanged file is not parsed again,
    /// and a bad one is reported once, not every rescan.
    hash: u64,
    /// The facts of the last content that parsed.
    good: BTreeMap<FactKey, Fact>,
}

/// Which file each object comes from (the first file by path that defines it), for messages about an
/// object that name its file (SPEC §8: a verdict's log line names the file). Shared with the source.
#[derive(Clone, Debug, Default)]
pub struct Origins(Arc<std::sync::Mutex<HashMap<FactKey, PathBuf>>>);

impl Origins {
    /// The file the object of this kind and key was read from, if any.
    pub fn path(&self, kind: FactKind, key: &ObjectKey) -> Option<PathBuf> {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&(kind, key.clone())).cloned()
    }

    fn set(&self, key: &FactKey, path: Option<PathBuf>) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match path {
            Some(p) => map.insert(key.clone(), p),
            None => map.remove(key),
        };
    }
}

/// A directory of Kubernetes-style YAML files as a source of the index.
#[derive(Debug)]
pub struct FileSource {
    dir: PathBuf,
    rescan: Duration,
    index: SharedIndex,
    files: HashMap<PathBuf, LoadedFile>,
    /// The files that define each fact, in path order: the first one's wins.
    owners: HashMap<FactKey, BTreeSet<PathBuf>>,
    /// Files read so far (their content, not their metadata).
    reads: Arc<AtomicU64>,
    origins: Origins,
}

impl FileSource {
    pub fn new(dir: impl Into<PathBuf>, index: SharedIndex) -> Self {
        Self {
            dir: dir.into(),
            rescan: Duration::from_secs(5),
            index,
            files: HashMap::new(),
            owners: HashMap::new(),
            reads: Arc::default(),
            origins: Origins::default(),
        }
    }

    /// Which file each object came from; follows the source while it runs.
    pub fn origins(&self) -> Origins {
        self.origins.clone()
    }

    /// How many times a file's content has been read.
    pub fn files_read(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The same count, to watch while [`FileSource::run`] owns the source.
    pub fn read_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.reads)
    }

    /// How often the directory is rescanned even without file events (default 5 s).
    pub fn with_rescan(mut self, every: Duration) -> Self {
        self.rescan = every;
        self
    }

    /// Walks the directory: reads files that are new or whose metadata changed, forgets removed ones.
    /// After the first scan the index is complete (every kind listed).
    pub fn scan(&mut self) -> Result<(), SourceError> {
        let mut found = Vec::new();
        list_files(&self.dir, &mut found)?;
        let listed: HashSet<&PathBuf> = found.iter().map(|(p, _)| p).collect();
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !listed.contains(p))
            .cloned()
            .collect();
        for path in gone {
            self.forget(&path);
        }
        for (path, stamp) in found {
            if self.files.get(&path).and_then(|f| f.stamp) != Some(stamp) {
                self.load(&path, stamp);
            }
        }
        self.index.update(|i| {
            for kind in meshd_index::kinds::fact_kinds() {
                i.mark_synced(kind);
            }
        });
        Ok(())
    }

    /// One path an event named: re-read if it changed, forgotten if it is gone.
    fn check(&mut self, path: &Path) {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => {
                let stamp = Stamp::of(&meta);
                if self.files.get(path).and_then(|f| f.stamp) != Some(stamp) {
                    self.load(path, stamp);
                }
            }
            Ok(_) => {}
            Err(_) => {
                if self.files.contains_key(path) {
                    self.forget(path);
                }
            }
        }
    }

    fn load(&mut self, path: &Path, stamp: Stamp) {
        let shown = path.display().to_string();
        self.reads.fetch_add(1, Ordering::Relaxed);
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(source) => {
                let e = SourceError::ReadFile {
                    path: shown,
                    source,
                };
                tracing::warn!(error = %e, "keeping the file's last good content");
                return;
            }
        };
        let hash = fnv1a(text.as_bytes());
        let entry = self.files.entry(path.to_path_buf()).or_default();
        entry.stamp = Some(stamp);
        if entry.hash == hash && hash != 0 {
            return;
        }
        entry.hash = hash;
        let had_good = !entry.good.is_empty();
        match parse_documents(&shown, &text) {
            Ok((facts, skipped)) => {
                for kind in skipped {
                    tracing::warn!(path = %shown, kind, "skipping a document of a kind meshd does not read");
                }
                tracing::info!(path = %shown, objects = facts.len(), "config file loaded");
                self.replace(path, facts);
            }
            Err(e) if had_good => {
                tracing::warn!(path = %shown, error = %e, "config file does not parse; keeping its last good content");
            }
            Err(e) => {
                tracing::warn!(path = %shown, error = %e, "config file does not parse; ignoring it")
            }
        }
    }

    fn forget(&mut self, path: &Path) {
        tracing::info!(path = %path.display(), "config file removed; its objects are gone");
        self.replace(path, Vec::new());
        self.files.remove(path);
    }

    /// A file's facts are now `facts`: the index gets, for every key the file had or has, the fact of
    /// the first file (by path) that defines it.
    fn replace(&mut self, path: &Path, facts: Vec<ParsedFact>) {
        let new: BTreeMap<FactKey, Fact> = facts
            .into_iter()
            .filter_map(|(kind, key, fact)| fact.map(|f| ((kind, key), f)))
            .collect();
        let entry = self.files.entry(path.to_path_buf()).or_default();
        let old = std::mem::replace(&mut entry.good, new);
        let mut keys: BTreeSet<FactKey> = old.into_keys().collect();
        for key in self.files[path].good.keys() {
            keys.insert(key.clone());
        }
        let mut updates = Vec::with_capacity(keys.len());
        for key in keys {
            let owners = self.owners.entry(key.clone()).or_default();
            if self.files[path].good.contains_key(&key) {
                owners.insert(path.to_path_buf());
            } else {
                owners.remove(path);
            }
            let winner = owners.first().cloned();
            if owners.len() > 1 && winner.as_deref() == Some(path) {
                tracing::warn!(kind = key.0.name(), object = %key.1, files = ?owners, "defined in more than one file; the first file's wins");
            }
            self.origins.set(&key, winner.clone());
            if owners.is_empty() {
                self.owners.remove(&key);
            }
            let fact = winner.and_then(|w| self.files.get(&w)?.good.get(&key).cloned());
            updates.push((key, fact));
        }
        self.index.update(|i| {
            for ((kind, key), fact) in updates {
                i.set(kind, key, fact);
            }
        });
    }

    /// Follows the directory until `cancel`: file events re-read the files they name; the periodic
    /// rescan compares metadata only.
    pub async fn run(mut self, cancel: CancellationToken) {
        let (events_tx, mut events) = tokio::sync::mpsc::channel::<Vec<PathBuf>>(256);
        let overflow = Arc::new(AtomicBool::new(false));
        let overflowed = Arc::clone(&overflow);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let paths = match event {
                Ok(e) if is_write_in_progress(&e.kind) => return,
                Ok(e) if !e.need_rescan() => e.paths,
                _ => Vec::new(), // an empty list asks for a rescan
            };
            if events_tx.try_send(paths).is_err() {
                overflowed.store(true, Ordering::Relaxed);
            }
        })
        .and_then(|mut w| {
            notify::Watcher::watch(&mut w, &self.dir, notify::RecursiveMode::Recursive)?;
            Ok(w)
        });
        let _watcher = match watcher {
            Ok(w) => Some(w),
            Err(source) => {
                let e = SourceError::Watch {
                    path: self.dir.display().to_string(),
                    source,
                };
                tracing::warn!(error = %e, every = ?self.rescan, "falling back to periodic rescans");
                None
            }
        };
        let mut tick = tokio::time::interval(self.rescan);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset();
        loop {
            let rescan = tokio::select! {
                () = cancel.cancelled() => return,
                paths = events.recv() => match paths {
                    Some(paths) => self.follow(paths),
                    None => true,
                },
                _ = tick.tick() => true,
            };
            if (rescan || overflow.swap(false, Ordering::Relaxed))
                && let Err(e) = self.scan()
            {
                tracing::warn!(error = %e, "config directory unreadable; keeping what was read");
            }
        }
    }

    /// Handles the paths of one event; whether a rescan is needed instead (a directory changed, a
    /// mounted ConfigMap swapped its `..data`, or the event named nothing).
    fn follow(&mut self, paths: Vec<PathBuf>) -> bool {
        if paths.is_empty() {
            return true;
        }
        for path in paths {
            let hidden = path.strip_prefix(&self.dir).ok().is_some_and(|rel| {
                rel.components()
                    .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
            });
            // A directory came, went or was renamed, or a mounted ConfigMap swapped `..data`.
            let gone_dir = || !path.exists() && self.files.keys().any(|f| f.starts_with(&path));
            if hidden || path.is_dir() || (!is_config(&path) && gone_dir()) {
                return true;
            }
            if is_config(&path) {
                self.check(&path);
            }
        }
        false
    }
}

/// A file being written: wait for its close (or the rescan) rather than read half of it.
fn is_write_in_progress(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, EventKind, ModifyKind};
    matches!(
        kind,
        EventKind::Modify(ModifyKind::Data(_))
            | EventKind::Access(AccessKind::Open(_) | AccessKind::Read)
    )
}

fn is_config(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    !name.starts_with('.')
        && [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

fn list_files(dir: &Path, out: &mut Vec<(PathBuf, Stamp)>) -> Result<(), SourceError> {
    let entries = std::fs::read_dir(dir).map_err(|source| SourceError::ReadDir {
        path: dir.display().to_string(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue; // editor swap files, `..data` of mounted ConfigMaps
        }
        // Follows symlinks: a mounted ConfigMap's files are links into `..data`.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            list_files(&path, out)?;
        } else if is_config(&path) {
            out.push((path, Stamp::of(&meta)));
        }
    }
    Ok(())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
