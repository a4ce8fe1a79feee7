//! The file-fed source: every `*.yaml`, `*.yml` and `*.json` under a directory, multi-document, re-read
//! on change (inotify through `notify`, plus a periodic rescan in case events are missed). A file that
//! does not parse is reported with its path and the error, and its last good content stays in force;
//! other files are unaffected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use meshd_translate::MeshSnapshot;
use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::SourceError;
use crate::objects::{MeshObjects, ParsedObject};

/// What one file last said.
#[derive(Debug, Default)]
struct LoadedFile {
    /// Hash of the content last read, good or bad, so a bad file is reported once, not every rescan.
    seen: u64,
    /// Objects of the last content that parsed.
    good: Option<Vec<ParsedObject>>,
}

/// A directory of Kubernetes-style YAML files as a snapshot source.
#[derive(Debug)]
pub struct FileSource {
    dir: PathBuf,
    mesh_name: String,
    cluster_domain: String,
    rescan: Duration,
    files: BTreeMap<PathBuf, LoadedFile>,
    mesh_found: Option<bool>,
}

impl FileSource {
    pub fn new(dir: impl Into<PathBuf>, mesh_name: &str, cluster_domain: &str) -> Self {
        Self {
            dir: dir.into(),
            mesh_name: mesh_name.to_string(),
            cluster_domain: cluster_domain.to_string(),
            rescan: Duration::from_secs(5),
            files: BTreeMap::new(),
            mesh_found: None,
        }
    }

    /// How often the directory is rescanned even without file events (default 5 s).
    pub fn with_rescan(mut self, every: Duration) -> Self {
        self.rescan = every;
        self
    }

    /// Reads what changed since the last scan and returns the whole snapshot.
    pub fn scan(&mut self) -> Result<MeshSnapshot, SourceError> {
        let mut found = Vec::new();
        list_files(&self.dir, &mut found)?;
        found.sort();
        self.files.retain(|path, _| {
            let keep = found.contains(path);
            if !keep {
                tracing::info!(path = %path.display(), "config file removed; its objects are gone");
            }
            keep
        });
        for path in found {
            let shown = path.display().to_string();
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(source) => {
                    let e = SourceError::ReadFile {
                        path: shown,
                        source,
                    };
                    tracing::warn!(error = %e, "keeping the file's last good content");
                    continue;
                }
            };
            let hash = fnv1a(text.as_bytes());
            let entry = self.files.entry(path).or_default();
            if entry.seen == hash && hash != 0 {
                continue;
            }
            entry.seen = hash;
            match parse_documents(&shown, &text) {
                Ok((objects, skipped)) => {
                    for kind in skipped {
                        tracing::warn!(path = %shown, kind, "skipping a document of a kind meshd does not read");
                    }
                    tracing::info!(path = %shown, objects = objects.len(), "config file loaded");
                    entry.good = Some(objects);
                }
                Err(e) if entry.good.is_some() => {
                    tracing::warn!(path = %shown, error = %e, "config file does not parse; keeping its last good content");
                }
                Err(e) => {
                    tracing::warn!(path = %shown, error = %e, "config file does not parse; ignoring it")
                }
            }
        }
        let mut objects = MeshObjects::default();
        for file in self.files.values() {
            for o in file.good.iter().flatten() {
                objects.push(o.clone());
            }
        }
        let (snapshot, mesh_found) = objects.snapshot(&self.mesh_name, &self.cluster_domain);
        if self.mesh_found != Some(mesh_found) && !mesh_found {
            tracing::info!(mesh = %self.mesh_name, dir = %self.dir.display(), "no Mesh of that name in the config directory; using the defaults");
        }
        self.mesh_found = Some(mesh_found);
        Ok(snapshot)
    }

    /// Publishes a new snapshot whenever the files' content changes, until `cancel`.
    pub async fn run(mut self, tx: watch::Sender<Arc<MeshSnapshot>>, cancel: CancellationToken) {
        let (events_tx, mut events) = tokio::sync::mpsc::channel::<()>(1);
        let watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
            let _ = events_tx.try_send(()); // a pending rescan covers this event too
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
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = events.recv() => {
                    // Editors write in several steps; let them finish.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    while events.try_recv().is_ok() {}
                }
                _ = tick.tick() => {}
            }
            match self.scan() {
                Ok(snapshot) => {
                    tx.send_if_modified(|current| {
                        let changed = **current != snapshot;
                        if changed {
                            *current = Arc::new(snapshot);
                        }
                        changed
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "config directory unreadable; keeping the last snapshot")
                }
            }
        }
    }
}

fn list_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SourceError> {
    let entries = std::fs::read_dir(dir).map_err(|source| SourceError::ReadDir {
        path: dir.display().to_string(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue; // editor swap files, `..data` of mounted ConfigMaps
        }
        if path.is_dir() {
            list_files(&path, out)?;
        } else if [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads every document of a file. Kinds meshd does not read are returned by name for the caller to
/// report; any document that does not parse fails the whole file (so its last good content stays).
pub fn parse_documents(
    path: &str,
    text: &str,
) -> Result<(Vec<ParsedObject>, Vec<String>), SourceError> {
    let mut objects = Vec::new();
    let mut skipped = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let parse = |source| SourceError::Parse {
            path: path.to_string(),
            document,
            source,
        };
        let value = serde_yaml::Value::deserialize(doc).map_err(parse)?;
        if value.is_null() {
            continue;
        }
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .map(str::to_string);
        let Some(kind) = kind else {
            return Err(SourceError::NoKind {
                path: path.to_string(),
                document,
            });
        };
        let object = match kind.as_str() {
            "Service" => ParsedObject::Service(serde_yaml::from_value(value).map_err(parse)?),
            "EndpointSlice" => {
                ParsedObject::EndpointSlice(serde_yaml::from_value(value).map_err(parse)?)
            }
            "Pod" => ParsedObject::Pod(serde_yaml::from_value(value).map_err(parse)?),
            "Mesh" => {
                let mesh: meshd_api::Mesh = serde_yaml::from_value(value).map_err(parse)?;
                let errors = meshd_api::settings::validate(&mesh.spec);
                if !errors.is_empty() {
                    let errors = errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ");
                    return Err(SourceError::InvalidMesh {
                        path: path.to_string(),
                        document,
                        errors,
                    });
                }
                ParsedObject::Mesh(Box::new(mesh))
            }
            _ => {
                skipped.push(kind);
                continue;
            }
        };
        objects.push(object);
    }
    Ok((objects, skipped))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
