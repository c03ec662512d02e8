//! What a reconcile measured, handed to its caller for metrics. The reconcile itself keeps no
//! metric state: the controller records these into its registry, the simulation into one per
//! run, so nothing is shared between clusters or between simulated worlds.

use std::time::Duration;

/// The live checks of `spec.validation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TestKind {
    /// `RETURN 1` on every instance.
    Connectivity,
    /// Write a test node on the MAIN, read it on each replica.
    Replication,
    /// Time from a test write to the first read on a replica that sees it.
    Lag,
    /// The snapshot `CREATE SNAPSHOT` reported is listed and recent.
    Snapshot,
}

impl TestKind {
    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TestKind::Connectivity => "connectivity",
            TestKind::Replication => "replication",
            TestKind::Lag => "lag",
            TestKind::Snapshot => "snapshot",
        }
    }
}

/// One measurement of one cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Measurement {
    /// A live check ran. `instance` names the replica (`read-0`) or `write`, when the check is
    /// of one instance; `None` for a check of the cluster as a whole.
    Validation {
        /// Which check.
        test: TestKind,
        /// The instance checked.
        instance: Option<String>,
        /// Whether it passed.
        passed: bool,
        /// How long it took.
        duration: Duration,
    },
    /// Replication lag measured on a replica (the write-then-read probe).
    Lag {
        /// Replica (`read-0`).
        replica: String,
        /// Seconds from the test write to the first read that saw it.
        seconds: f64,
    },
    /// A replica failed replication: a failed test, or the MAIN reporting it diverged or
    /// invalid beyond its grace. `kind` is short: `test_failed`, `diverged`, `invalid`,
    /// `register_failed`.
    ReplicationError {
        /// Replica (`read-0`).
        replica: String,
        /// Short kind.
        kind: &'static str,
    },
    /// A scheduled snapshot finished.
    Snapshot {
        /// Whether it succeeded (and was verified).
        success: bool,
        /// How long `CREATE SNAPSHOT` took.
        duration: Duration,
    },
    /// A backup upload finished.
    Upload {
        /// Whether its manifest was written.
        success: bool,
        /// Bytes of the snapshot file uploaded (0 on failure).
        bytes: u64,
        /// Seconds from start to manifest (or to failure).
        duration: Duration,
        /// When it finished, as Unix seconds (for the last-success gauge).
        finished_unix: i64,
    },
}
