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
}

impl Stall {
    /// Whether the MAIN moved on while the replica stood still, for at least `grace`.
    pub fn stopped_following(&self, now: Timestamp, grace: std::time::Duration) -> bool {
        let stood = now.duration_since(self.since).as_secs();
        self.main_now != self.main_then
            && self.nodes != self.main_now
            && stood >= i64::try_from(grace.as_secs()).unwrap_or(i64::MAX)
    }
}

#[derive(Debug, Clone)]
struct Track {
    pod_uid: String,
    restarts: i64,
    nodes: i64,
    since: Timestamp,
    main_then: i64,
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
        let main = obs.pods.get(&Instance::Write).map(|p| &p.memgraph);
        let main_now = match main {
            Some(MemgraphState::Main { replicas: Some(Err(_)), nodes: Some(n) }) => *n,
            _ => {
                tracks.remove(&uid);
                obs.stalls.clear();
                return;
            }
        };
        let cluster = tracks.entry(uid).or_default();
        let mut seen = Vec::new();
        for (instance, pod) in &obs.pods {
            let (Instance::Read(index), MemgraphState::Replica { nodes: Some(nodes) }) = (instance, &pod.memgraph)
            else {
                continue;
            };
            seen.push(*index);
            let fresh = Track {
                pod_uid: pod.uid.clone(),
                restarts: pod.restarts,
                nodes: *nodes,
                since: now,
                main_then: main_now,
            };
            let track = cluster.entry(*index).or_insert_with(|| fresh.clone());
            // A new pod, a restarted container or a moved count starts the watch again.
            if track.pod_uid != pod.uid || track.restarts != pod.restarts || track.nodes != *nodes {
                *track = fresh;
            }
            obs.stalls
                .insert(*index, Stall { nodes: track.nodes, since: track.since, main_then: track.main_then, main_now });
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
        let stall = Stall { nodes: 10, since: at(0), main_then: 12, main_now: 20 };
        assert!(stall.stopped_following(at(10), Duration::from_secs(10)));
        assert!(!stall.stopped_following(at(9), Duration::from_secs(10)), "within the grace");
    }

    #[test]
    fn a_quiet_cluster_is_no_evidence() {
        // Nobody wrote: both stood still.
        let quiet = Stall { nodes: 10, since: at(0), main_then: 10, main_now: 10 };
        assert!(!quiet.stopped_following(at(100), Duration::from_secs(10)));
        // The replica holds what the MAIN holds now: it caught up, whatever it stood at.
        let caught_up = Stall { nodes: 20, since: at(0), main_then: 12, main_now: 20 };
        assert!(!caught_up.stopped_following(at(100), Duration::from_secs(10)));
    }
}
