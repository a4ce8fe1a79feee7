//! Who may open an ADS stream (SPEC §9): the same bearer token as the CA's, checked by the same
//! [`Authenticator`], before the stream starts ([`authenticate`], called by [`crate::AdsRoutes`]); and
//! once the first request names the node, whether the token's service account may speak for it
//! ([`authorize`]): the node's Pod must run as that account. A node whose Pod does not exist (yet)
//! gets the empty config every unknown node gets, and is checked again when its Pod appears.
//! Refusals are logged with the reason and the peer (never the token) and counted.

use std::sync::Arc;

use meshd_ca::auth::bearer_token;
use meshd_ca::{AuthError, Authenticator, ServiceAccount};
use meshd_translate::{CompiledMesh, NodeId};
use tonic::Status;

use crate::metrics::XdsMetrics;

/// Who opened a stream, as the transport established it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    /// The listener authenticates no one (a file-fed Unix socket without a CA).
    Anyone,
    /// The service account the stream's bearer token proved.
    Account(ServiceAccount),
}

/// Checks a call's `authorization` header; the caller, or the refusal to answer the call with.
pub(crate) async fn authenticate(
    authenticator: &Arc<dyn Authenticator>,
    header: Option<&str>,
    peer: &str,
    metrics: &XdsMetrics,
) -> Result<Caller, Status> {
    let checked = match bearer_token(header) {
        Ok(token) => authenticator.authenticate(token).await,
        Err(e) => Err(e),
    };
    match checked {
        Ok(account) => Ok(Caller::Account(account)),
        Err(e) => {
            let (status, reason) = match &e {
                AuthError::Unavailable(_) => (
                    Status::unavailable(format!("xDS: {e}; retry later")),
                    "unavailable",
                ),
                AuthError::Missing | AuthError::Invalid(_) => (
                    Status::unauthenticated(format!("xDS: {e}")),
                    "unauthenticated",
                ),
            };
            tracing::warn!(peer, reason = %e, "ADS stream refused: not authenticated");
            metrics.refused(reason);
            Err(status)
        }
    }
}

/// Whether `caller` may get the config of `node` in `mesh`: `PERMISSION_DENIED` naming both accounts
/// when the node's Pod runs as another one (or lives in another namespace than the account).
pub(crate) fn authorize(caller: &Caller, node: &NodeId, mesh: &CompiledMesh) -> Result<(), Status> {
    let Caller::Account(account) = caller else {
        return Ok(());
    };
    if account.namespace != node.namespace {
        return Err(Status::permission_denied(format!(
            "xDS: the token is for service account {account}, which cannot run Pod {} in namespace {}",
            node.pod, node.namespace
        )));
    }
    match mesh.workload(node) {
        Some(workload) if workload.service_account != account.name => {
            Err(Status::permission_denied(format!(
                "xDS: node {node} is Pod {}/{}, which runs as service account {}/{}, but the token is for {account}",
                node.namespace, node.pod, node.namespace, workload.service_account
            )))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(namespace: &str, name: &str) -> Caller {
        Caller::Account(ServiceAccount {
            namespace: namespace.into(),
            name: name.into(),
        })
    }

    #[test]
    fn another_namespace_is_refused_before_any_pod_is_known() {
        let node = NodeId::parse("web-0.shop").unwrap();
        let (mesh, _) = meshd_translate::Translator::new(Default::default()).apply(Vec::new());
        assert!(authorize(&Caller::Anyone, &node, &mesh).is_ok());
        assert!(
            authorize(&account("shop", "web"), &node, &mesh).is_ok(),
            "no Pod yet: allowed"
        );
        let refused = authorize(&account("demo", "web"), &node, &mesh).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(refused.message().contains("demo/web"), "{refused:?}");
    }
}
