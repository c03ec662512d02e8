//! Writing a snapshot (manual, periodic, on exit) with Memgraph's one-at-a-time rule. With
//! `--fake-snapshot-micros-per-node` the write takes time in proportion to the data: the file
//! exists under its final name but is partial until the end, so a crash meanwhile leaves no
//! finished snapshot (reference §4, §10).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::Instance;
use crate::query::{QueryError, messages};
use crate::replication::Role;
use crate::storage::durability::SnapshotWriteError;
use crate::version::MgVersion;

/// What asked for a snapshot; decides the checks and what a running snapshot means for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// `CREATE SNAPSHOT`.
    Manual,
    /// The `--storage-snapshot-interval-sec` scheduler.
    Periodic,
    /// `--storage-snapshot-on-exit` during a graceful stop.
    Exit,
}

/// Why no snapshot was written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotFailure {
    /// A replica before 3.8.
    #[error("Snapshots are disabled for replicas")]
    DisabledForReplica,
    /// 3.3+: another snapshot is being written.
    #[error("Another snapshot creation is already in progress")]
    AlreadyRunning,
    /// Nothing changed since the last snapshot (manual 3.3–3.4, periodic and exit 3.3+).
    #[error("Nothing has been written since the last snapshot")]
    NothingNew,
    /// The durability files were replaced while the snapshot was written.
    #[error("The current snapshot needs to be aborted")]
    Aborted,
    /// The instance was killed or stopped.
    #[error("instance is shut down")]
    ShutDown,
    /// The data directory failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl SnapshotFailure {
    /// The TransientError `CREATE SNAPSHOT` reports (a plain `BasicException` in Memgraph).
    pub(crate) fn to_query_error(&self, v: MgVersion) -> QueryError {
        QueryError::transient(match self {
            SnapshotFailure::DisabledForReplica => messages::SNAPSHOT_ON_REPLICA.to_string(),
            SnapshotFailure::AlreadyRunning => messages::snapshot_already_running(v).to_string(),
            SnapshotFailure::NothingNew => messages::SNAPSHOT_NOTHING_NEW.to_string(),
            SnapshotFailure::Aborted => messages::SNAPSHOT_ABORTED.to_string(),
            SnapshotFailure::ShutDown | SnapshotFailure::Io(_) => format!("Failed to create snapshot: {self}"),
        })
    }
}

/// Clears the "snapshot running" flag when the snapshot ends, however it ends.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Instance {
    /// Writes a snapshot of the data as it is now; returns its path relative to the data directory.
    pub(crate) async fn write_snapshot(self: &Arc<Self>, trigger: Trigger) -> Result<String, SnapshotFailure> {
        let v = self.version;
        if self.core().role() == Role::Replica && !v.replicas_write_snapshots() {
            return Err(SnapshotFailure::DisabledForReplica);
        }
        // 3.3+ refuses a second snapshot (the scheduler skips its turn); earlier versions wait
        // for the lock. The exit snapshot always waits for the running one to end.
        let one_at_a_time = if trigger != Trigger::Exit && v.snapshot_in_progress_fails() {
            if self.snapshot_running.swap(true, Ordering::SeqCst) {
                return Err(SnapshotFailure::AlreadyRunning);
            }
            let running = Running(self.snapshot_running.clone());
            (running, self.snapshot_lock.clone().lock_owned().await)
        } else {
            let lock = self.snapshot_lock.clone().lock_owned().await;
            self.snapshot_running.store(true, Ordering::SeqCst);
            (Running(self.snapshot_running.clone()), lock)
        };
        let (pending, wait) = {
            let now = self.now();
            let mut guard = self.core();
            let core = &mut *guard;
            if core.dead {
                return Err(SnapshotFailure::ShutDown);
            }
            // The exit snapshot goes through the same non-forced handler as the periodic one.
            let must_be_new = match trigger {
                Trigger::Manual => v.create_snapshot_requires_changes(),
                Trigger::Periodic | Trigger::Exit => v.skip_unchanged_periodic_snapshots(),
            };
            if must_be_new && !core.durability.changed_since_snapshot(&core.storage) {
                return Err(SnapshotFailure::NothingNew);
            }
            let nodes = core.storage.graph.nodes.len() as u64;
            let wait = Duration::from_micros(self.cfg.snapshot_micros_per_node.saturating_mul(nodes));
            if wait.is_zero() {
                return Ok(core.durability.create_snapshot(&core.storage, now)?);
            }
            (core.durability.begin_snapshot(&core.storage, now)?, wait)
        };
        tracing::info!(file = pending.rel_path(), ?wait, ?trigger, "writing a snapshot");
        let inst = self.clone();
        let write = async move {
            let _one_at_a_time = one_at_a_time;
            tokio::time::sleep(wait).await;
            // A frozen process does not finish its snapshot either.
            inst.thawed().await;
            let mut core = inst.core();
            if core.dead {
                return Err(SnapshotFailure::ShutDown);
            }
            core.durability.finish_snapshot(pending).map_err(|e| match e {
                SnapshotWriteError::Aborted => SnapshotFailure::Aborted,
                SnapshotWriteError::Io(e) => SnapshotFailure::Io(e),
            })
        };
        if trigger == Trigger::Exit {
            // The graceful stop awaits it itself.
            return write.await;
        }
        // Otherwise it runs in its own task, as Memgraph's runs in its own thread: a graceful
        // stop that ends the Bolt sessions lets it finish, and only kill() cuts it short (leaving
        // the partial file).
        let (done, result) = tokio::sync::oneshot::channel();
        self.spawn(async move {
            let _ = done.send(write.await);
        });
        result.await.unwrap_or(Err(SnapshotFailure::ShutDown))
    }
}
