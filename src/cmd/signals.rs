//! Shutdown signals shared by the long-running subcommands.

/// Resolves on SIGTERM (what the kubelet sends) or SIGINT (Ctrl-C); SIGINT only if SIGTERM cannot be
/// registered.
pub async fn wait_for_shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
