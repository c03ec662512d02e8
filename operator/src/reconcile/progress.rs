//! Progress of replicas the MAIN cannot report on. Memgraph 2.21–3.0 answer `SHOW REPLICAS`
//! only once every replica answered, so one unreachable replica hides the state of all of
//! them. The operator then counts nodes on the MAIN and the replicas (see `observe`), and this
//! remembers, across reconciles, since when each replica's count has stood still. A replica
//! whose count stood still while the MAIN's moved has stopped applying the MAIN's writes: that
//! is positive evidence against routing reads to it, found without the MAIN's word.
//!
//! Kept in memory only: after an operator restart the evidence is gathered again, which can
//! only delay a removal, never cause one.

use std::collections::BTreeMap;
use std::sync::Mutex;

use k8s_openapi::jiff::Timestamp;

use super::observed::{MemgraphState, Observed};
use crate::names::Instance;

/// A replica whose node count has not changed since `since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// Its node count, unchanged since `since`.
    pub nodes: i64,
    /// When that count was first seen.
    pub since: Timestamp,
    /// The MAIN's node count when `since` was recorded.
    pub main_then: i64,
    /// The MAIN's node count now.
    pub main_now: i64,
    /// The MAIN could not be counted: `main_then` and `main_now` are the most any other
    /// replica held (the MAIN holds at least what its replicas received).
    pub peers: bool,
    /// When its count was last seen to change on the same container: it received writes from
    /// a MAIN then (only a MAIN sends a replica data).
    pub moved_at: Option<Timestamp>,
}

impl Stall {
    /// Whether the MAIN moved on while the replica stood still, for at least `grace`.
    pub fn stopped_following(&self, now: Timestamp, grace: std::time::Duration) -> bool {
        let stood = now.duration_since(self.since).as_secs();
        let behind = if self.peers {
            // Another replica had writes this one lacked when the watch started and still has
            // more: a replica that follows would have received them within milliseconds.
            self.nodes < self.main_then && self.nodes < self.main_now
        } else {
            self.main_now != self.main_then && self.nodes != self.main_now
        };
        behind && stood >= i64::try_from(grace.as_secs()).unwrap_or(i64::MAX)
    }
}

#[derive(Debug, Clone)]
struct Track {
    pod_uid: String,
    restarts: i64,
    nodes: i64,
    since: Timestamp,
    main_then: i64,
    peers: bool,
    moved_at: Option<Timestamp>,
}

/// Per cluster (by uid) and read index, what each counted replica was last seen holding.
#[derive(Debug, Default)]
pub struct Progress {
    tracks: Mutex<BTreeMap<String, BTreeMap<u32, Track>>>,
}

impl Progress {
    /// Record what `obs` counted at `now` and fill `obs.stalls`. Nothing is kept while the
    /// MAIN answers `SHOW REPLICAS` (its rows are the better evidence) or was not counted.
    pub fn note(&self, obs: &mut Observed, now: Timestamp) {
        let Ok(mut tracks) = self.tracks.lock() else { return };
        let uid = obs.cluster.uid.clone();
        let main = obs.pods.get(&super::plan::main_instance(obs)).map(|p| &p.memgraph);
        // The MAIN's registrations are the better evidence; without them, its count, and
        // without that, what the other replicas hold.
        let main_count = match main {
            Some(MemgraphState::Main { replicas: Some(Ok(_)), .. }) => None,
            Some(MemgraphState::Main { nodes: Some(n), .. }) => Some(Some(*n)),
            _ => Some(None),
        };
        let Some(main_count) = main_count else {
            tracks.remove(&uid);
            obs.stalls.clear();
            return;
        };
        // A replica status once found diverged holds writes the MAIN does not: no yardstick.
        let diverged: Vec<String> = obs
            .status
            .validation
            .iter()
            .flat_map(|v| v.replicas.iter())
            .filter(|r| r.state.as_deref() == Some("diverged"))
            .map(|r| r.name.clone())
            .collect();
        let counts: BTreeMap<u32, i64> = obs
            .pods
            .iter()
            .filter_map(|(instance, pod)| match (instance, &pod.memgraph) {
                (Instance::Read(index), MemgraphState::Replica { nodes: Some(n) }) => Some((*index, *n)),
                _ => None,
            })
            .collect();
        let cluster = tracks.entry(uid).or_default();
        let mut seen = Vec::new();
        for (instance, pod) in &obs.pods {
            let (Instance::Read(index), MemgraphState::Replica { nodes: Some(nodes) }) = (instance, &pod.memgraph)
            else {
                continue;
            };
            let peer_most = counts
                .iter()
                .filter(|(i, _)| *i != index && !diverged.contains(&Instance::Read(**i).status_name()))
                .map(|(_, n)| *n)
                .max();
            let (reference, peers) = match (main_count, peer_most) {
                (Some(n), _) => (n, false),
                (None, Some(n)) => (n, true),
                (None, None) => continue,
            };
            seen.push(*index);
            let fresh = Track {
                pod_uid: pod.uid.clone(),
                restarts: pod.restarts,
                nodes: *nodes,
                since: now,
                main_then: reference,
                peers,
                moved_at: None,
            };
            let track = cluster.entry(*index).or_insert_with(|| fresh.clone());
            let same_container = track.pod_uid == pod.uid && track.restarts == pod.restarts;
            let moved =
                (same_container && track.nodes != *nodes).then_some(now).or(track.moved_at.filter(|_| same_container));
            // A new pod, a restarted container, a moved count or another yardstick starts the
            // watch again.
            if track.pod_uid != pod.uid
                || track.restarts != pod.restarts
                || track.nodes != *nodes
                || track.peers != peers
            {
                *track = Track { moved_at: moved, ..fresh };
            }
            obs.stalls.insert(
                *index,
                Stall {
                    nodes: track.nodes,
                    since: track.since,
                    main_then: track.main_then,
                    main_now: reference,
                    peers,
                    moved_at: track.moved_at,
                },
            );
        }
        cluster.retain(|index, _| seen.contains(index));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn a_replica_standing_still_while_the_main_moves_has_stopped_following() {
        let stall = Stall { nodes: 10, since: at(0), main_then: 12, main_now: 20, peers: false, moved_at: None };
        assert!(stall.stopped_following(at(10), Duration::from_secs(10)));
        assert!(!stall.stopped_following(at(9), Duration::from_secs(10)), "within the grace");
    }

    #[test]
    fn a_quiet_cluster_is_no_evidence() {
        // Nobody wrote: both stood still.
        let quiet = Stall { nodes: 10, since: at(0), main_then: 10, main_now: 10, peers: false, moved_at: None };
        assert!(!quiet.stopped_following(at(100), Duration::from_secs(10)));
        // The replica holds what the MAIN holds now: it caught up, whatever it stood at.
        let caught_up = Stall { nodes: 20, since: at(0), main_then: 12, main_now: 20, peers: false, moved_at: None };
        assert!(!caught_up.stopped_following(at(100), Duration::from_secs(10)));
    }

    #[test]
    fn without_the_main_a_replica_short_of_a_peer_for_the_grace_has_stopped_following() {
        // The MAIN is gone: a peer holds writes this replica never received.
        let short = Stall { nodes: 65, since: at(0), main_then: 72, main_now: 72, peers: true, moved_at: None };
        assert!(short.stopped_following(at(10), Duration::from_secs(10)));
        assert!(!short.stopped_following(at(9), Duration::from_secs(10)), "within the grace");
        // The one holding the most, or as much as the others, is never behind them.
        let most = Stall { nodes: 72, since: at(0), main_then: 65, main_now: 65, peers: true, moved_at: None };
        assert!(!most.stopped_following(at(100), Duration::from_secs(10)));
        let equal = Stall { nodes: 72, since: at(0), main_then: 72, main_now: 72, peers: true, moved_at: None };
        assert!(!equal.stopped_following(at(100), Duration::from_secs(10)));
        // A peer that only just got ahead after a quiet spell is no evidence yet.
        let just = Stall { nodes: 72, since: at(0), main_then: 72, main_now: 73, peers: true, moved_at: None };
        assert!(!just.stopped_following(at(100), Duration::from_secs(10)));
    }
}
