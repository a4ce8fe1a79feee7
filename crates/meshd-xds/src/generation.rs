//! Index changes in, compiled generations out: the one debounce of the pipeline, so a burst of changes
//! becomes one translation and one push.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use meshd_index::SharedIndex;
use meshd_translate::{ChangeSet, CompiledMesh, TranslateSettings, Translator, Verdicts};
use tokio::sync::{Notify, watch};
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

/// How many generations' change sets a generation carries: a stream that fell further behind
/// compares its whole config instead.
pub(crate) const HISTORY: usize = 16;

/// One compiled generation, the unit of a push.
#[derive(Debug)]
pub struct Generation {
    pub number: u64,
    pub mesh: Arc<CompiledMesh>,
    /// Whether every kind had been listed once when it was compiled: until then it is not served.
    pub complete: bool,
    /// When the first change folded into this generation arrived; push latency counts from here.
    pub changed_at: Instant,
    /// What changed in this generation and the ones before it: `recent[0]` is this one's, `recent[i]`
    /// that of generation `number - i`.
    pub(crate) recent: Vec<Arc<ChangeSet>>,
}

impl Generation {
    /// The change sets from generation `since` (exclusive) to this one, if still known.
    pub(crate) fn changes_since(&self, since: u64) -> Option<&[Arc<ChangeSet>]> {
        let behind = usize::try_from(self.number.checked_sub(since)?).ok()?;
        self.recent.get(..behind)
    }
}

/// Translates what the index holds now (the first generation).
pub(crate) fn first(
    index: &SharedIndex,
    translator: &mut Translator,
    metrics: &XdsMetrics,
) -> Generation {
    let started = Instant::now();
    let (changes, complete) = index.take();
    let (mesh, _) = translator.apply(changes);
    metrics
        .compile_seconds
        .observe(started.elapsed().as_secs_f64());
    for w in &mesh.warnings {
        tracing::warn!(warning = %w, "mesh config");
    }
    Generation {
        number: 1,
        mesh: Arc::new(mesh),
        complete,
        changed_at: Instant::now(),
        recent: Vec::new(),
    }
}

/// Starts the translation: the first generation now, then one per debounced burst of index changes
/// until `cancel`. Returns the generations and the verdicts (sent only when they change).
pub(crate) fn start(
    index: SharedIndex,
    settings: TranslateSettings,
    options: XdsOptions,
    metrics: XdsMetrics,
    cancel: CancellationToken,
) -> (watch::Receiver<Arc<Generation>>, watch::Receiver<Verdicts>) {
    let wake = Arc::new(Notify::new());
    let woken = Arc::clone(&wake);
    index.on_change(move || woken.notify_one());
    let mut translator = Translator::new(settings.clone());
    let first = first(&index, &mut translator, &metrics);
    log_mesh(&first.mesh, None);
    let (verdicts_tx, verdicts_rx) = watch::channel(first.mesh.verdicts.clone());
    let (tx, rx) = watch::channel(Arc::new(first));
    let compile = Compile {
        index,
        settings,
        wake,
        out: tx,
        verdicts: verdicts_tx,
        options,
        metrics,
    };
    tokio::spawn(compile.run(translator, cancel));
    (rx, verdicts_rx)
}

fn log_mesh(mesh: &CompiledMesh, before: Option<&CompiledMesh>) {
    if before.is_none_or(|b| b.mesh_found != mesh.mesh_found) && !mesh.mesh_found {
        tracing::info!("no Mesh of the configured name; using the defaults");
    }
}

struct Compile {
    index: SharedIndex,
    settings: TranslateSettings,
    wake: Arc<Notify>,
    out: watch::Sender<Arc<Generation>>,
    verdicts: watch::Sender<Verdicts>,
    options: XdsOptions,
    metrics: XdsMetrics,
}

impl Compile {
    /// Waits for index changes, lets them settle, translates them, publishes; until `cancel`.
    async fn run(self, translator: Translator, cancel: CancellationToken) {
        let mut logged: BTreeSet<String> =
            self.out.borrow().mesh.warnings.iter().cloned().collect();
        // `None` after a failed translation: the next one starts from nothing.
        let mut translator = Some(translator);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.wake.notified() => {}
            }
            let first = Instant::now();
            let hard_deadline = first + self.options.max_delay;
            loop {
                let quiet_until = (Instant::now() + self.options.debounce).min(hard_deadline);
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep_until(quiet_until) => break,
                    () = self.wake.notified() => if Instant::now() >= hard_deadline { break },
                }
            }
            let previous = Arc::clone(&self.out.borrow());
            let (mut changes, complete) = self.index.take();
            if changes.is_empty() && complete == previous.complete && translator.is_some() {
                continue;
            }
            let rebuilt = translator.is_none();
            let mut t = match translator.take() {
                Some(t) => t,
                None => {
                    changes = self.index.read(|i| i.everything());
                    Translator::new(self.settings.clone())
                }
            };
            let started = Instant::now();
            let translated = tokio::task::spawn_blocking(move || {
                let result = t.apply(changes);
                (t, result)
            })
            .await;
            let (mesh, changed) = match translated {
                Ok((t, result)) => {
                    translator = Some(t);
                    result
                }
                Err(e) => {
                    // The translator's state went with the task: the next change translates the
                    // whole index again; until then proxies keep the last good config.
                    tracing::error!(error = %e, "translation failed; keeping the previous config");
                    continue;
                }
            };
            self.metrics
                .compile_seconds
                .observe(started.elapsed().as_secs_f64());
            let now: BTreeSet<String> = mesh.warnings.iter().cloned().collect();
            for w in now.difference(&logged) {
                tracing::warn!(warning = %w, "mesh config");
            }
            logged = now;
            log_mesh(&mesh, Some(&previous.mesh));
            let number = previous.number + 1;
            // After a rebuild the changes are not relative to the previous generation: no history, so
            // every stream compares its whole config.
            let mut recent = Vec::with_capacity(HISTORY);
            if !rebuilt {
                recent.push(Arc::new(changed));
                recent.extend(previous.recent.iter().take(HISTORY - 1).cloned());
            }
            tracing::debug!(generation = number, "mesh config compiled");
            self.verdicts.send_if_modified(|v| {
                if v.ptr_eq(&mesh.verdicts) {
                    return false;
                }
                *v = mesh.verdicts.clone();
                true
            });
            self.out.send_replace(Arc::new(Generation {
                number,
                mesh: Arc::new(mesh),
                complete,
                changed_at: first,
                recent,
            }));
        }
    }
}
