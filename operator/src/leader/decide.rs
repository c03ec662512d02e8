//! The lease rules, as a pure function: given what the Lease says, how long this process has
//! seen it unchanged and the time, what to write (or to wait).
//!
//! The rules are client-go's: a holder renews its own Lease; anyone may take a Lease whose
//! holder released it (no holder); a Lease held by another is taken only after this process has
//! seen it unchanged for the Lease's own duration, measured on this process's monotonic clock,
//! so the holders' wall clocks never have to agree.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::{LeaseRecord, Timings};

/// What the elector does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease: create it, held by this process.
    Create(LeaseRecord),
    /// Write this record over the one read (guarded by its resourceVersion): a renewal of this
    /// process's own Lease, or a takeover of a released or expired one.
    Write(LeaseRecord),
    /// Another process holds a live Lease; look again after the retry period.
    Follow {
        /// Who holds it.
        holder: String,
        /// How much longer it stays live unless renewed, as seen from here.
        expires_in: Duration,
    },
}

impl Decision {
    /// Whether writing this decision makes this process the leader when it succeeds.
    pub fn leads(&self) -> bool {
        !matches!(self, Decision::Follow { .. })
    }
}

/// Decide the next step for `me`. `stored` is the Lease as read (None: it does not exist);
/// `unchanged_for` is how long this process has seen that exact version.
pub fn decide(
    me: &str,
    stored: Option<&LeaseRecord>,
    unchanged_for: Duration,
    now: Timestamp,
    timings: &Timings,
) -> Decision {
    let fresh = |transitions: i32| LeaseRecord {
        holder: Some(me.to_owned()),
        duration: timings.lease_duration,
        acquired: Some(now),
        renewed: Some(now),
        transitions,
    };
    let Some(stored) = stored else { return Decision::Create(fresh(0)) };
    match stored.holder.as_deref().filter(|h| !h.is_empty()) {
        Some(holder) if holder == me => Decision::Write(LeaseRecord {
            holder: Some(me.to_owned()),
            duration: timings.lease_duration,
            acquired: stored.acquired.or(Some(now)),
            renewed: Some(now),
            transitions: stored.transitions,
        }),
        // Released: nobody leads, so nothing can overlap.
        None => Decision::Write(fresh(stored.transitions.saturating_add(1))),
        Some(holder) => {
            // The holder's own duration, not ours: a holder configured with a longer lease must
            // not be cut short by a shorter-configured candidate.
            let duration = stored.duration.max(Duration::from_secs(1));
            if unchanged_for >= duration {
                Decision::Write(fresh(stored.transitions.saturating_add(1)))
            } else {
                Decision::Follow { holder: holder.to_owned(), expires_in: duration - unchanged_for }
            }
        }
    }
}

/// Whether a leader whose last successful renewal attempt started `since_renewal` ago must stop.
/// The deadline is shorter than the lease duration, so a leader stops before any candidate can
/// see its Lease unchanged for that long (the candidate's count starts no earlier than the write
/// the leader's attempt made).
pub fn must_stop(since_renewal: Duration, timings: &Timings) -> bool {
    since_renewal >= timings.renew_deadline
}

/// The record that gives the Lease up on shutdown: no holder, so a standby takes it at its next
/// look instead of waiting out the duration.
pub fn released(stored: &LeaseRecord, now: Timestamp) -> LeaseRecord {
    LeaseRecord {
        holder: None,
        duration: Duration::from_secs(1),
        acquired: stored.acquired,
        renewed: Some(now),
        transitions: stored.transitions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_767_225_600 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn held(by: &str, transitions: i32) -> LeaseRecord {
        LeaseRecord {
            holder: Some(by.to_owned()),
            duration: Duration::from_secs(15),
            acquired: Some(at(0)),
            renewed: Some(at(5)),
            transitions,
        }
    }

    #[test]
    fn a_missing_lease_is_created_held_by_me() {
        let d = decide("a", None, Duration::ZERO, at(10), &Timings::default());
        let Decision::Create(r) = d else { panic!("expected create, got {d:?}") };
        assert_eq!(r.holder.as_deref(), Some("a"));
        assert_eq!((r.acquired, r.renewed, r.transitions), (Some(at(10)), Some(at(10)), 0));
        assert_eq!(r.duration, Duration::from_secs(15));
    }

    #[test]
    fn my_own_lease_is_renewed_keeping_its_acquire_time() {
        let d = decide("a", Some(&held("a", 3)), Duration::from_secs(60), at(20), &Timings::default());
        let Decision::Write(r) = d else { panic!("expected write, got {d:?}") };
        assert_eq!((r.acquired, r.renewed, r.transitions), (Some(at(0)), Some(at(20)), 3));
    }

    #[test]
    fn another_holder_is_followed_until_its_lease_was_seen_unchanged_for_its_duration() {
        let t = Timings::default();
        let d = decide("b", Some(&held("a", 1)), Duration::from_secs(14), at(100), &t);
        assert_eq!(d, Decision::Follow { holder: "a".into(), expires_in: Duration::from_secs(1) });
        assert!(!d.leads());
        // The wall-clock renewTime is far in the past here; only the local count matters.
        let d = decide("b", Some(&held("a", 1)), Duration::from_secs(15), at(100), &t);
        let Decision::Write(r) = d else { panic!("expected takeover, got {d:?}") };
        assert_eq!((r.holder.as_deref(), r.acquired, r.transitions), (Some("b"), Some(at(100)), 2));
    }

    #[test]
    fn the_holders_longer_duration_wins_over_mine() {
        let mut long = held("a", 0);
        long.duration = Duration::from_secs(60);
        let d = decide("b", Some(&long), Duration::from_secs(30), at(0), &Timings::default());
        assert!(matches!(d, Decision::Follow { .. }), "{d:?}");
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let gone = released(&held("a", 4), at(30));
        assert_eq!(gone.holder, None);
        let d = decide("b", Some(&gone), Duration::ZERO, at(31), &Timings::default());
        let Decision::Write(r) = d else { panic!("expected takeover, got {d:?}") };
        assert_eq!((r.holder.as_deref(), r.transitions), (Some("b"), 5));
        // An empty holder string (kubectl edits, other tools) is a release too.
        let mut empty = held("a", 0);
        empty.holder = Some(String::new());
        assert!(decide("b", Some(&empty), Duration::ZERO, at(0), &Timings::default()).leads());
    }

    #[test]
    fn a_leader_stops_at_the_renew_deadline_before_anyone_can_take_over() {
        let t = Timings::default();
        assert!(!must_stop(Duration::from_millis(9_999), &t));
        assert!(must_stop(Duration::from_secs(10), &t));
        assert!(t.renew_deadline < t.lease_duration);
    }
}
