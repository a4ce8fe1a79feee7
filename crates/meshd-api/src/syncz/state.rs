//! Whether what was last sent for a type reached the proxy: a pure function of the record and "now".

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Answer, Nack, Sent, TypeSync};

/// A type's state, as `proxy-status` shows it. In JSON an object tagged by `state`:
/// `{"state":"SYNCED"}`, `{"state":"STALE","ageMillis":12000}`, `{"state":"NACKED","detail":"…"}`,
/// `{"state":"NOT_SENT"}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncState {
    /// The last response sent was ACKed.
    Synced,
    /// The last response sent has no answer yet; sent this long ago.
    #[serde(rename_all = "camelCase")]
    Stale { age_millis: u64 },
    /// The proxy's answer to the last response sent was a NACK; Envoy's error.
    Nacked { detail: String },
    /// Nothing of this type was sent on the stream.
    NotSent,
}

impl SyncState {
    /// `SYNCED`, `STALE (12s)`, `NACKED`, `NOT SENT`: the table's words.
    pub fn label(&self) -> String {
        match self {
            Self::Synced => "SYNCED".into(),
            Self::Stale { age_millis } => {
                format!("STALE ({})", format_age(Duration::from_millis(*age_millis)))
            }
            Self::Nacked { .. } => "NACKED".into(),
            Self::NotSent => "NOT SENT".into(),
        }
    }

    /// NACKED, or STALE for longer than `stale_after`: what makes `proxy-status` exit 1.
    pub fn is_out_of_sync(&self, stale_after: Duration) -> bool {
        match self {
            Self::Nacked { .. } => true,
            Self::Stale { age_millis } => Duration::from_millis(*age_millis) > stale_after,
            Self::Synced | Self::NotSent => false,
        }
    }
}

impl TypeSync {
    /// The control plane sent a response.
    pub fn record_sent(&mut self, version: &str, nonce: &str, at: Timestamp) {
        self.last_sent = Some(Sent {
            version: version.into(),
            nonce: nonce.into(),
            at,
        });
    }

    /// The proxy accepted the response `nonce`, whose version was `version`.
    pub fn record_ack(&mut self, version: &str, nonce: &str, at: Timestamp) {
        self.last_ack = Some(Answer {
            version: version.into(),
            nonce: nonce.into(),
            at,
        });
    }

    /// The proxy rejected the response `nonce` (of version `version`) with Envoy's `detail`.
    pub fn record_nack(&mut self, version: &str, nonce: &str, detail: &str, at: Timestamp) {
        self.last_nack = Some(Nack {
            version: version.into(),
            nonce: nonce.into(),
            detail: detail.into(),
            at,
        });
        self.nack_count += 1;
    }

    /// The state at `now` (the answering replica's clock). Only answers naming the last nonce sent count:
    /// an ACK or NACK of an older response says nothing about the newest one. Should both name it, the
    /// later one wins.
    pub fn state(&self, now: Timestamp) -> SyncState {
        let Some(sent) = &self.last_sent else {
            return SyncState::NotSent;
        };
        let ack = self.last_ack.as_ref().filter(|a| a.nonce == sent.nonce);
        let nack = self.last_nack.as_ref().filter(|n| n.nonce == sent.nonce);
        match (ack, nack) {
            (Some(a), Some(n)) if n.at > a.at => SyncState::Nacked {
                detail: n.detail.clone(),
            },
            (Some(_), _) => SyncState::Synced,
            (None, Some(n)) => SyncState::Nacked {
                detail: n.detail.clone(),
            },
            (None, None) => SyncState::Stale {
                age_millis: u64::try_from(age(sent.at, now).as_millis()).unwrap_or(u64::MAX),
            },
        }
    }
}

/// `now - then`, zero when `then` is in the future (another clock, or a clock step).
pub fn age(then: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(then)).unwrap_or(Duration::ZERO)
}

/// An age as kubectl shows one, short: `12s`, `5m`, `3h`, `2d` (seconds below 2 minutes, minutes below 2
/// hours, hours below 2 days).
pub fn format_age(age: Duration) -> String {
    let s = age.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7_200 => format!("{}m", s / 60),
        7_200..172_800 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}
