//! File-fed `Mesh.status.mtls` (SPEC §9): without an API server to hold the Mesh's status, each change
//! of the mode in force mesh-wide or of its overrides is one log line, the same facts `kubectl get
//! mesh` shows in-cluster.

use meshd_api::security::MeshMtlsStatus;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// `mesh mTLS: STRICT (1 override), from PeerAuthentication meshd-system/default; overridden for 2
/// pods by shop/web (Workload: DISABLE, port 8080 STRICT)`.
pub fn mtls_line(status: &MeshMtlsStatus) -> String {
    let mut line = format!("mesh mTLS: {}, from {}", status.summary, status.source);
    if status.overrides > 0 {
        let by: Vec<String> = status
            .overridden_by
            .iter()
            .map(|o| {
                let mut text = format!(
                    "{}/{} ({}: {}",
                    o.namespace,
                    o.name,
                    o.scope,
                    o.mode.as_str()
                );
                for (port, mode) in &o.ports {
                    text.push_str(&format!(", port {port} {}", mode.as_str()));
                }
                text.push(')');
                text
            })
            .collect();
        let more = usize::try_from(status.overrides)
            .unwrap_or(usize::MAX)
            .saturating_sub(by.len());
        let pods = status.overridden_pods;
        let noun = if pods == 1 { "pod" } else { "pods" };
        line.push_str(&format!(
            "; overridden for {pods} {noun} by {}",
            by.join(", ")
        ));
        if more > 0 {
            line.push_str(&format!(" and {more} more"));
        }
    }
    line
}

/// Logs the first summary and every change of it until `cancel`.
pub async fn log_mesh_mtls(
    mut status: watch::Receiver<Option<MeshMtlsStatus>>,
    cancel: CancellationToken,
) {
    loop {
        if let Some(now) = status.borrow_and_update().as_ref() {
            tracing::info!(
                mode = now.mode.as_str(),
                overrides = now.overrides,
                "{}",
                mtls_line(now)
            );
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            r = status.changed() => if r.is_err() { return },
        }
    }
}
