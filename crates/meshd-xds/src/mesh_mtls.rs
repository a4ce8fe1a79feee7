//! `Mesh.status.mtls` (SPEC §9) from the compiled generations: the operator writes it into the Mesh's
//! status in-cluster, `meshd controlplane` logs it file-fed. Recounted only when a generation changed
//! what it reads (the Mesh, the PeerAuthentications in force, the pods).

use std::sync::Arc;

use meshd_api::security::MeshMtlsStatus;
use meshd_translate::CompiledMesh;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::generation::Generation;

/// Follows `generations` until `cancel`; `None` until one was compiled from a complete index.
pub(crate) fn follow(
    mut generations: watch::Receiver<Arc<Generation>>,
    mesh_name: String,
    cancel: CancellationToken,
) -> watch::Receiver<Option<MeshMtlsStatus>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut counted: Option<Arc<CompiledMesh>> = None;
        loop {
            let generation = Arc::clone(&generations.borrow_and_update());
            let mesh = &generation.mesh;
            if generation.complete && counted.as_ref().is_none_or(|c| !c.same_mtls_inputs(mesh)) {
                let status = mesh.mtls_status(&mesh_name);
                tx.send_if_modified(|s| {
                    let changed = s.as_ref() != Some(&status);
                    if changed {
                        *s = Some(status);
                    }
                    changed
                });
                counted = Some(Arc::clone(mesh));
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                r = generations.changed() => if r.is_err() { return },
            }
        }
    });
    rx
}
