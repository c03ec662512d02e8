//! Scheduled snapshots and backups run beside the reconciles: `CREATE SNAPSHOT` of a large
//! graph takes minutes, and an upload longer, and a reconcile waiting for them could not move a
//! label or write the status meanwhile. The reconcile claims the tick (and records the backup)
//! in the status, the caller runs the job, and the next reconcile writes its result. At most
//! one job runs per cluster; none starts while one is running.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use k8s_openapi::jiff::Timestamp;

use super::backup_job::{self, BackupContext, BackupJob};
use super::plan::backup::BackupResult;
use crate::clock::Clock;
use crate::memgraph::{self, Bolt, SnapshotOutcome};

/// A snapshot (and backup) a reconcile claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotJob {
    /// The cluster's uid.
    pub cluster: String,
    /// The MAIN's Bolt address.
    pub address: String,
    /// The schedule tick it takes; `None` for a backup resumed after an operator restart,
    /// whose snapshot was taken (or not) by the process that died.
    pub tick: Option<Timestamp>,
    /// The backup to make of it, when `spec.snapshot.s3` is on.
    pub backup: Option<BackupJob>,
}

/// What became of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotDone {
    /// The tick it took.
    pub tick: Option<Timestamp>,
    /// When it ended.
    pub finished: Timestamp,
    /// Memgraph's answer, or why there was none (when the job took a snapshot).
    pub result: Option<Result<SnapshotOutcome, String>>,
    /// The backup's result.
    pub backup: Option<BackupResult>,
}

/// Jobs running and finished, by cluster uid (process memory: after a restart a finished
/// result is lost; a backup recorded as running is then resumed from the status).
#[derive(Debug, Default)]
pub struct SnapshotJobs {
    running: Mutex<BTreeSet<String>>,
    finished: Mutex<BTreeMap<String, SnapshotDone>>,
}

impl SnapshotJobs {
    /// Whether a job of `cluster` is running, or finished and not yet written.
    pub fn running(&self, cluster: &str) -> bool {
        self.running.lock().is_ok_and(|r| r.contains(cluster))
            || self.finished.lock().is_ok_and(|f| f.contains_key(cluster))
    }

    /// Mark a job of `cluster` as running; false when one already is.
    pub fn start(&self, cluster: &str) -> bool {
        !self.finished.lock().is_ok_and(|f| f.contains_key(cluster))
            && self.running.lock().is_ok_and(|mut r| r.insert(cluster.to_owned()))
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

/// Run a claimed snapshot (within [`Timeouts::snapshot`](crate::memgraph::Timeouts)), then its
/// backup, and keep the result for the next reconcile.
pub async fn run(bolt: &dyn Bolt, jobs: &SnapshotJobs, clock: &dyn Clock, backups: &BackupContext, job: SnapshotJob) {
    let result = match job.tick {
        Some(tick) => {
            let result = memgraph::create_snapshot(bolt, &job.address).await.map_err(|e| {
                let timed_out = matches!(e, memgraph::BoltError::Timeout { .. });
                if timed_out { format!("{e}; Memgraph may still be writing it") } else { e.to_string() }
            });
            match &result {
                Ok(outcome) => tracing::info!(address = %job.address, %tick, ?outcome, "snapshot done"),
                Err(error) => tracing::warn!(address = %job.address, %tick, %error, "snapshot failed"),
            }
            Some(result)
        }
        None => None,
    };
    let backup = match job.backup {
        Some(b) => Some(backup_job::run(backups, bolt, clock, b, &job.address, result.as_ref()).await),
        None => None,
    };
    if let Some(b) = &backup {
        match &b.outcome {
            Ok(m) => {
                tracing::info!(backup = %b.id, snapshot = %m.snapshot.name, bytes = m.snapshot.size_bytes, "backup completed")
            }
            Err(error) => tracing::warn!(backup = %b.id, %error, "backup failed"),
        }
    }
    jobs.finish(&job.cluster, SnapshotDone { tick: job.tick, finished: clock.now(), result, backup });
}
