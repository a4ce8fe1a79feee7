//! Certificate lifetimes and when to renew them: pure functions of times and durations, shared by the
//! CA (what it signs) and the agent (when it asks again).

use std::time::{Duration, SystemTime};

/// At most this much of a certificate's validity lies before the moment it is issued, so that a peer
/// whose clock runs a little behind the CA's accepts it at once.
pub const MAX_BACKDATE: Duration = Duration::from_secs(60);

/// The validity window of a certificate issued at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// How long a new certificate lives: the TTL, or the requested `validity_duration` (seconds) when it
/// is positive and shorter. A request never gets more than the mesh's TTL.
pub fn lifetime(requested_seconds: i64, ttl: Duration) -> Duration {
    match u64::try_from(requested_seconds) {
        Ok(secs) if secs > 0 => ttl.min(Duration::from_secs(secs)),
        _ => ttl,
    }
}

/// The window for a certificate issued at `now` living `lifetime`, cut at `ca_not_after` (a leaf never
/// outlives its issuer). Backdated by a tenth of the lifetime, at most [`MAX_BACKDATE`].
pub fn validity(now: SystemTime, lifetime: Duration, ca_not_after: SystemTime) -> Validity {
    let backdate = (lifetime / 10).min(MAX_BACKDATE);
    Validity {
        not_before: now - backdate,
        not_after: (now + lifetime).min(ca_not_after),
    }
}

/// When a certificate should be renewed: half-way through its validity (SPEC §9).
pub fn renew_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let span = not_after.duration_since(not_before).unwrap_or_default();
    not_before + span / 2
}

/// How long to wait from `now` until `renew_at`; zero when it has passed.
pub fn until_renewal(now: SystemTime, not_before: SystemTime, not_after: SystemTime) -> Duration {
    renew_at(not_before, not_after)
        .duration_since(now)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3_600);

    #[test]
    fn requested_lifetime_is_honoured_only_up_to_the_ttl() {
        let ttl = 24 * HOUR;
        assert_eq!(lifetime(0, ttl), ttl);
        assert_eq!(lifetime(-5, ttl), ttl);
        assert_eq!(lifetime(3_600, ttl), HOUR);
        assert_eq!(lifetime(10 * 86_400, ttl), ttl);
        assert_eq!(lifetime(i64::MAX, ttl), ttl);
    }

    #[test]
    fn validity_is_backdated_a_little_and_never_outlives_the_ca() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let far = now + 365 * 24 * HOUR;
        let v = validity(now, 24 * HOUR, far);
        assert_eq!(v.not_before, now - MAX_BACKDATE);
        assert_eq!(v.not_after, now + 24 * HOUR);
        let short = validity(now, Duration::from_secs(60), far);
        assert_eq!(short.not_before, now - Duration::from_secs(6));
        let capped = validity(now, 24 * HOUR, now + HOUR);
        assert_eq!(capped.not_after, now + HOUR);
    }

    #[test]
    fn renewal_is_at_half_life() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(renew_at(t0, t0 + 24 * HOUR), t0 + 12 * HOUR);
        assert_eq!(until_renewal(t0 + HOUR, t0, t0 + 24 * HOUR), 11 * HOUR);
        // A 60 s certificate backdated 6 s, renewed 27 s after it was issued.
        let issued = t0 + Duration::from_secs(6);
        assert_eq!(
            until_renewal(issued, t0, t0 + Duration::from_secs(66)),
            Duration::from_secs(27)
        );
        // Past half-life (an agent that slept): renew now.
        assert_eq!(
            until_renewal(t0 + 20 * HOUR, t0, t0 + 24 * HOUR),
            Duration::ZERO
        );
        // A window the wrong way round renews at once rather than panicking.
        assert_eq!(renew_at(t0 + HOUR, t0), t0 + HOUR);
    }
}
