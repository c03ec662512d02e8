//! Scheduled snapshots run beside the reconciles: `CREATE SNAPSHOT` of a large graph takes
//! minutes, and a reconcile waiting for it could not move a label or write the status meanwhile.
//! The reconcile claims the tick in the status, the caller runs the job, and the next reconcile
//! writes its result. At most one job runs per cluster; none starts while one is running.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use k8s_openapi::jiff::Timestamp;

use crate::clock::Clock;
use crate::memgraph::{self, Bolt, SnapshotOutcome};

/// A snapshot a reconcile claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotJob {
    /// The cluster's uid.
    pub cluster: String,
    /// The MAIN's Bolt address.
    pub address: String,
    /// The schedule tick it takes.
    pub tick: Timestamp,
}

/// What became of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotDone {
    /// The tick it took.
    pub tick: Timestamp,
    /// When it ended.
    pub finished: Timestamp,
    /// Memgraph's answer, or why there was none.
    pub result: Result<SnapshotOutcome, String>,
}

/// Jobs running and finished, by cluster uid (process memory: after a restart a finished
/// result is lost, and the next tick takes a snapshot as usual).
#[derive(Debug, Default)]
pub struct SnapshotJobs {
    running: Mutex<BTreeSet<String>>,
    finished: Mutex<BTreeMap<String, SnapshotDone>>,
}

impl SnapshotJobs {
    /// Whether a job of `cluster` is running.
    pub fn running(&self, cluster: &str) -> bool {
        self.running.lock().is_ok_and(|r| r.contains(cluster))
    }

    /// Mark a job of `cluster` as running; false when one already is.
    pub fn start(&self, cluster: &str) -> bool {
        self.running.lock().is_ok_and(|mut r| r.insert(cluster.to_owned()))
    }

    /// The result of a finished job of `cluster`, once.
    pub fn take_finished(&self, cluster: &str) -> Option<SnapshotDone> {
        self.finished.lock().ok().and_then(|mut f| f.remove(cluster))
    }

    /// Put back a result that could not be written yet.
    pub fn put_back(&self, cluster: &str, done: SnapshotDone) {
        if let Ok(mut f) = self.finished.lock() {
            f.entry(cluster.to_owned()).or_insert(done);
        }
    }

    fn finish(&self, cluster: &str, done: SnapshotDone) {
        if let Ok(mut f) = self.finished.lock() {
            f.insert(cluster.to_owned(), done);
        }
        if let Ok(mut r) = self.running.lock() {
            r.remove(cluster);
        }
    }
}

/// Run a claimed snapshot (within [`Timeouts::snapshot`](crate::memgraph::Timeouts)) and keep
/// its result for the next reconcile.
pub async fn run(bolt: &dyn Bolt, jobs: &SnapshotJobs, clock: &dyn Clock, job: SnapshotJob) {
    let result = memgraph::create_snapshot(bolt, &job.address).await.map_err(|e| {
        let timed_out = matches!(e, memgraph::BoltError::Timeout { .. });
        if timed_out { format!("{e}; Memgraph may still be writing it") } else { e.to_string() }
    });
    match &result {
        Ok(outcome) => tracing::info!(address = %job.address, tick = %job.tick, ?outcome, "snapshot done"),
        Err(error) => tracing::warn!(address = %job.address, tick = %job.tick, %error, "snapshot failed"),
    }
    jobs.finish(&job.cluster, SnapshotDone { tick: job.tick, finished: clock.now(), result });
}
