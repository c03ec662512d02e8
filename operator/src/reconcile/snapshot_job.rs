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
    /// The MAIN's Memgraph version (from its image): how the snapshot can be verified.
    pub version: Option<crate::version::MemgraphVersion>,
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
    /// How long `CREATE SNAPSHOT` took.
    pub took: Option<std::time::Duration>,
    /// The check of the snapshot written: what confirmed it, or why it is not confirmed.
    pub verified: Option<Result<String, String>>,
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
    let started = clock.now();
    let timer = tokio::time::Instant::now();
    let mut took = None;
    let result = match job.tick {
        Some(tick) => {
            let result = memgraph::create_snapshot(bolt, &job.address).await.map_err(|e| {
                let timed_out = matches!(e, memgraph::BoltError::Timeout { .. });
                if timed_out { format!("{e}; Memgraph may still be writing it") } else { e.to_string() }
            });
            took = Some(timer.elapsed());
            match &result {
                Ok(outcome) => tracing::info!(address = %job.address, %tick, ?outcome, "snapshot done"),
                Err(error) => tracing::warn!(address = %job.address, %tick, %error, "snapshot failed"),
            }
            Some(result)
        }
        None => None,
    };
    let verified = match &result {
        Some(Ok(SnapshotOutcome::Created(path))) => {
            Some(verify(bolt, &job.address, job.version, path.as_deref(), started).await)
        }
        _ => None,
    };
    if let Some(Err(error)) = &verified {
        tracing::warn!(address = %job.address, %error, "snapshot not verified");
    }
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
    jobs.finish(&job.cluster, SnapshotDone { tick: job.tick, finished: clock.now(), result, backup, took, verified });
}

/// How far before the job's start the newest listed snapshot may have been created and still
/// be the one it asked for (Memgraph stamps it when it starts writing).
const RECENT: std::time::Duration = std::time::Duration::from_secs(60);

/// Confirm that the snapshot `CREATE SNAPSHOT` reported exists and is recent, the way the
/// version allows (memgraph-behaviour §4, §12): 3.5+ names its path, which `SHOW SNAPSHOTS`
/// must list; 2.22–3.4 list files newest first, and the newest must be no older than the job;
/// 2.21 has no way to list them, and the query's success is all there is.
pub async fn verify(
    bolt: &dyn Bolt,
    address: &str,
    version: Option<crate::version::MemgraphVersion>,
    path: Option<&str>,
    started: Timestamp,
) -> Result<String, String> {
    use crate::memgraph::BoltValue;
    if version.is_some_and(|v| v < crate::version::MemgraphVersion::new(2, 22, 0)) {
        return Ok("Memgraph before 2.22 cannot list snapshots; CREATE SNAPSHOT succeeded".to_owned());
    }
    let listed = bolt
        .run_within(address, "SHOW SNAPSHOTS", BTreeMap::new(), bolt.timeouts().snapshot)
        .await
        .map_err(|e| format!("SHOW SNAPSHOTS failed after the snapshot: {e}"))?;
    // Up to 3.4 a row with timestamp 0 announces the next scheduled snapshot, not a file.
    let files: Vec<(String, Option<String>)> = (0..listed.rows.len())
        .filter(|i| listed.get(*i, "timestamp").and_then(BoltValue::as_int).is_some_and(|ts| ts > 0))
        .filter_map(|i| {
            let path = listed.get(i, "path").and_then(BoltValue::as_str)?.to_owned();
            Some((path, listed.get(i, "creation_time").and_then(BoltValue::as_str).map(str::to_owned)))
        })
        .collect();
    let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_owned();
    if let Some(path) = path {
        return if files.iter().any(|(f, _)| base(f) == base(path)) {
            Ok(format!("{} is listed by SHOW SNAPSHOTS", base(path)))
        } else {
            Err(format!("CREATE SNAPSHOT reported {path}, but SHOW SNAPSHOTS does not list it"))
        };
    }
    let Some((newest, created)) = files.first() else {
        return Err("CREATE SNAPSHOT succeeded, but SHOW SNAPSHOTS lists no snapshot file".to_owned());
    };
    let created_at = created.as_deref().and_then(|c| c.parse::<Timestamp>().ok());
    let earliest =
        started.checked_sub(k8s_openapi::jiff::SignedDuration::try_from(RECENT).unwrap_or_default()).unwrap_or(started);
    match created_at {
        Some(at) if at >= earliest => Ok(format!("{} (created {at}) is listed by SHOW SNAPSHOTS", base(newest))),
        Some(at) => Err(format!(
            "the newest snapshot SHOW SNAPSHOTS lists, {}, was created at {at}, before this snapshot started at {started}",
            base(newest)
        )),
        None => Err(format!("SHOW SNAPSHOTS gave no readable creation_time for {}", base(newest))),
    }
}

/// What a finished job measured, for metrics.
pub fn measurements(done: &SnapshotDone) -> Vec<super::measure::Measurement> {
    use super::measure::{Measurement, TestKind};
    let mut out = Vec::new();
    if let Some(result) = &done.result {
        let verified = done.verified.as_ref().is_none_or(Result::is_ok);
        out.push(Measurement::Snapshot {
            success: result.is_ok() && verified,
            duration: done.took.unwrap_or_default(),
        });
    }
    if let Some(v) = &done.verified {
        out.push(Measurement::Validation {
            test: TestKind::Snapshot,
            instance: Some("write".to_owned()),
            passed: v.is_ok(),
            duration: std::time::Duration::ZERO,
        });
    }
    if let Some(b) = &done.backup {
        let (success, bytes, duration) = match &b.outcome {
            Ok(m) => (true, m.snapshot.size_bytes, m.finished_at.duration_since(m.started_at).unsigned_abs()),
            Err(_) => (false, 0, std::time::Duration::ZERO),
        };
        out.push(Measurement::Upload { success, bytes, duration, finished_unix: done.finished.as_second() });
    }
    out
}
