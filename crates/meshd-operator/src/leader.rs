//! Lease leader election (coordination.k8s.io/v1 Lease `meshd-controller` in meshd-system): only the
//! holder runs the Controller; a replica that cannot renew within the lease duration stops it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;
use meshd_api::names;

use crate::Error;

pub const LEASE_NAME: &str = "meshd-controller";
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
pub const RENEW_PERIOD: Duration = Duration::from_secs(5);

pub struct Elector {
    api: Api<Lease>,
    identity: String,
}

impl Elector {
    pub fn new(client: kube::Client, identity: impl Into<String>) -> Self {
        Self {
            api: Api::namespaced(client, names::SYSTEM_NAMESPACE),
            identity: identity.into(),
        }
    }

    /// Takes or renews the lease; true while this replica holds it. A lost update race (409) is `false`.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, Error> {
        let now = MicroTime(Timestamp::now());
        let secs = i32::try_from(LEASE_DURATION.as_secs()).expect("15 fits in i32");
        let Some(mut lease) = self
            .api
            .get_opt(LEASE_NAME)
            .await
            .map_err(Error::kube("get", "lease"))?
        else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return conflict_is_false(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(renewed), Some(d)) => renewed.0 + SignedDuration::from_secs(i64::from(d)) < now.0,
            _ => true,
        };
        if !ours && !expired {
            return Ok(false);
        }
        if !ours {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(secs);
        spec.renew_time = Some(now);
        // replace carries resourceVersion: a concurrent writer makes this a 409, not a split brain.
        conflict_is_false(
            self.api
                .replace(LEASE_NAME, &PostParams::default(), &lease)
                .await,
        )
    }

    /// Gives the lease up on shutdown so another replica takes over without waiting for expiry.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(LEASE_NAME).await
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.identity.as_str())
        {
            spec.holder_identity = None;
            spec.renew_time = None;
            if let Err(error) = self
                .api
                .replace(LEASE_NAME, &PostParams::default(), &lease)
                .await
            {
                tracing::warn!(%error, "could not release the lease");
            }
        }
    }
}

fn conflict_is_false(result: Result<Lease, kube::Error>) -> Result<bool, Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(Error::kube("write", "lease")(e)),
    }
}
