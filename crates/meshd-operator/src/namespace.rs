//! Namespace meshd-system must exist before the Lease, the webhook Secret and the Mesh ConfigMaps can.
//! In-cluster it does (the controller runs in it); a controller on a workstation may be the first
//! thing in the cluster, so it creates the namespace when allowed, and otherwise says what to do.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use meshd_api::names;

const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// Whether meshd-system is known to exist, and the backoff while it is not.
#[derive(Debug, Default)]
pub struct SystemNamespace {
    ready: bool,
    failures: u32,
}

impl SystemNamespace {
    /// Ok once the namespace exists (then free: no more requests). Otherwise logs why and returns how
    /// long to wait before the next try (1 s doubling to 60 s).
    pub async fn ensure(&mut self, client: &kube::Client) -> Result<(), Duration> {
        if self.ready {
            return Ok(());
        }
        let api: Api<Namespace> = Api::all(client.clone());
        let ns = names::SYSTEM_NAMESPACE;
        let exists = match api.get_opt(ns).await {
            Ok(found) => found.is_some(),
            // May not read namespaces: creating tells (409 when it exists).
            Err(kube::Error::Api(s)) if s.code == 403 => false,
            Err(error) => {
                return Err(self.retry(|wait| {
                    tracing::warn!(namespace = ns, %error, "cannot check namespace {ns}; retrying in {}s", wait.as_secs())
                }));
            }
        };
        if exists {
            self.ready = true;
            return Ok(());
        }
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(ns.into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        match api.create(&PostParams::default(), &namespace).await {
            Ok(_) => {
                tracing::info!(namespace = ns, "created namespace {ns} (it did not exist)");
                self.ready = true;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                self.ready = true;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 403 => Err(self.retry(|wait| {
                tracing::error!(
                    namespace = ns,
                    reason = %s.message,
                    "namespace {ns} does not exist and this controller may not create it: run \
                     `kubectl create namespace {ns}` (or `kubectl apply -k manifests/`); retrying in {}s",
                    wait.as_secs()
                )
            })),
            Err(error) => Err(self.retry(|wait| {
                tracing::warn!(namespace = ns, %error, "cannot create namespace {ns}; retrying in {}s", wait.as_secs())
            })),
        }
    }

    fn retry(&mut self, log: impl FnOnce(Duration)) -> Duration {
        let wait = FIRST_RETRY
            .saturating_mul(1 << self.failures.min(6))
            .min(MAX_RETRY);
        self.failures += 1;
        log(wait);
        wait
    }
}
