//! File-fed verdicts (SPEC §8): each change of a resource's verdict is one log line naming its file,
//! `KIND NS/NAME` and, when rejected, every field path and value at fault, in `meshd validate`'s
//! format (`FILE: KIND NS/NAME: FIELD: problem`).

use meshd_api::status::{Verdict, VerdictKey};
use meshd_translate::Verdicts;
use meshd_translate::facts::{FactKind, ObjectKey};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Origins;

/// The line for one verdict, as logged.
pub fn verdict_line(origins: &Origins, key: &VerdictKey, verdict: &Verdict) -> String {
    let path = FactKind::ALL
        .into_iter()
        .find(|k| k.name() == key.kind)
        .and_then(|kind| origins.path(kind, &ObjectKey::new(&key.namespace, &key.name)))
        .map_or_else(|| "(no file)".to_string(), |p| p.display().to_string());
    if verdict.accepted {
        format!("{path}: {key}: accepted")
    } else {
        format!("{path}: {key}: {} ({})", verdict.message, verdict.reason)
    }
}

/// Logs every verdict that changed (and each first verdict) until `cancel`.
pub async fn log_verdicts(
    mut verdicts: watch::Receiver<Verdicts>,
    origins: Origins,
    cancel: CancellationToken,
) {
    let mut logged = Verdicts::new();
    loop {
        let now = verdicts.borrow_and_update().clone();
        for (key, verdict) in &now {
            if logged.get(key).is_some_and(|v| v == verdict) {
                continue;
            }
            let line = verdict_line(&origins, key, verdict);
            if verdict.accepted {
                tracing::info!("{line}");
            } else {
                tracing::warn!("{line}");
            }
        }
        logged = now;
        tokio::select! {
            () = cancel.cancelled() => return,
            r = verdicts.changed() => if r.is_err() { return },
        }
    }
}
