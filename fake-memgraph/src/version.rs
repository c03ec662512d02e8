//! The emulated Memgraph release and the behaviour switches that depend on it.

use std::time::Duration;

use crate::bolt::message::BoltVersion;

/// A Memgraph release `major.minor` (patch levels do not change emulated behaviour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MgVersion {
    /// Major.
    pub major: u8,
    /// Minor.
    pub minor: u8,
}

/// Oldest release the fake emulates.
pub const OLDEST: MgVersion = MgVersion::new(2, 21);
/// Newest release the fake emulates (the default).
pub const NEWEST: MgVersion = MgVersion::new(3, 12);

impl MgVersion {
    /// Builds a version.
    pub const fn new(major: u8, minor: u8) -> Self {
        MgVersion { major, minor }
    }

    /// Parses `3.12` or `3.12.0`; only 2.21 … 3.12 are accepted.
    pub fn parse(s: &str) -> Option<MgVersion> {
        let mut parts = s.trim().trim_start_matches('v').split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        if let Some(patch) = parts.next() {
            patch.parse::<u32>().ok()?;
        }
        if parts.next().is_some() {
            return None;
        }
        let v = MgVersion::new(major, minor);
        (OLDEST..=NEWEST).contains(&v).then_some(v)
    }

    fn at_least(self, major: u8, minor: u8) -> bool {
        self >= MgVersion::new(major, minor)
    }

    /// Bolt versions offered in the handshake (4.4 only from 3.12).
    pub fn bolt_versions(self) -> Vec<BoltVersion> {
        let mut v = vec![
            BoltVersion::new(1, 0),
            BoltVersion::new(4, 0),
            BoltVersion::new(4, 1),
            BoltVersion::new(4, 3),
            BoltVersion::new(5, 2),
        ];
        if self.at_least(3, 12) {
            v.push(BoltVersion::new(4, 4));
        }
        v
    }

    /// `STRICT_SYNC` replication mode exists (3.5+).
    pub fn has_strict_sync(self) -> bool {
        self.at_least(3, 5)
    }

    /// 3.1+: `SHOW REPLICAS` is served from cached state and heartbeats mark replicas invalid.
    pub fn cached_replica_state(self) -> bool {
        self.at_least(3, 1)
    }

    /// 3.1+: long texts for several replication errors.
    pub fn long_replication_texts(self) -> bool {
        self.at_least(3, 1)
    }

    /// 3.5+: `Couldn't register replica <name>. Error: N`.
    pub fn numbered_register_errors(self) -> bool {
        self.at_least(3, 5)
    }

    /// 3.10+: per-replica replication failure texts.
    pub fn detailed_sync_errors(self) -> bool {
        self.at_least(3, 10)
    }

    /// 2.21–3.7: an auto-commit query failing SYNC replication is a TransientError.
    pub fn sync_failure_transient_in_autocommit(self) -> bool {
        !self.at_least(3, 8)
    }

    /// 3.5+: `CREATE SNAPSHOT` returns a `path` column.
    pub fn create_snapshot_returns_path(self) -> bool {
        self.at_least(3, 5)
    }

    /// 3.3–3.4: manual snapshot with nothing new fails.
    pub fn create_snapshot_requires_changes(self) -> bool {
        self.at_least(3, 3) && !self.at_least(3, 5)
    }

    /// 3.3+: a snapshot requested while another is being written fails ("already in progress")
    /// instead of waiting for it; periodic ones are skipped.
    pub fn snapshot_in_progress_fails(self) -> bool {
        self.at_least(3, 3)
    }

    /// 3.8+: snapshot error texts come from `CreateSnapshotErrorToString`, without a final period.
    pub fn snapshot_errors_without_period(self) -> bool {
        self.at_least(3, 8)
    }

    /// 3.8+: replicas may create snapshots (manual and periodic).
    pub fn replicas_write_snapshots(self) -> bool {
        self.at_least(3, 8)
    }

    /// 3.3+: periodic snapshots are skipped when nothing changed.
    pub fn skip_unchanged_periodic_snapshots(self) -> bool {
        self.at_least(3, 3)
    }

    /// 2.22+: `SHOW SNAPSHOTS` and `RECOVER SNAPSHOT` exist.
    pub fn has_snapshot_listing(self) -> bool {
        self.at_least(2, 22)
    }

    /// 3.8+: `RECOVER SNAPSHOT ... WITH CONFIG {...}` (remote sources).
    pub fn recover_with_config(self) -> bool {
        self.at_least(3, 8)
    }

    /// 3.0+: a transaction finding an ASYNC replica still replicating marks it `invalid`
    /// (2.21/2.22: `recovery`).
    pub fn missed_txn_marks_invalid(self) -> bool {
        self.at_least(3, 0)
    }

    /// ≤3.4: `SHOW SNAPSHOTS` has an extra row for the next scheduled snapshot.
    pub fn show_snapshots_has_next_row(self) -> bool {
        !self.at_least(3, 5)
    }

    /// 3.5+: `SHOW NEXT SNAPSHOT` exists.
    pub fn has_show_next_snapshot(self) -> bool {
        self.at_least(3, 5)
    }

    /// Compiled default of `--storage-snapshot-interval-sec` (0 up to 3.5, 300 from 3.6).
    pub fn default_snapshot_interval_sec(self) -> u64 {
        if self.at_least(3, 6) { 300 } else { 0 }
    }

    /// Per-RPC timeouts exist from 3.0; 2.21/2.22 wait on TCP alone.
    pub fn rpc_timeouts(self) -> Option<RpcTimeouts> {
        self.at_least(3, 0).then(|| RpcTimeouts {
            heartbeat: Duration::from_secs(10),
            swap_uuid: Duration::from_secs(10),
            system_recovery: Duration::from_secs(30),
            commit: Duration::from_secs(30),
            finalize: Duration::from_secs(10),
            snapshot: Duration::from_secs(60),
        })
    }

    /// Connect timeout: explicit 5 s from 3.11, before that the OS default (~127 s on Linux).
    pub fn connect_timeout(self) -> Duration {
        if self.at_least(3, 11) { Duration::from_secs(5) } else { Duration::from_secs(127) }
    }
}

impl std::fmt::Display for MgVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Per-RPC timeouts of the replication client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcTimeouts {
    /// Heartbeat / timestamp check.
    pub heartbeat: Duration,
    /// SwapMainUUID at registration.
    pub swap_uuid: Duration,
    /// System recovery at registration.
    pub system_recovery: Duration,
    /// Shipping one commit (PrepareCommit / AppendDeltas).
    pub commit: Duration,
    /// FinalizeCommit of STRICT_SYNC.
    pub finalize: Duration,
    /// Snapshot transfer.
    pub snapshot: Duration,
}

impl RpcTimeouts {
    /// The same timeout for every RPC (the `--fake-rpc-timeout-ms` knob).
    pub fn uniform(d: Duration) -> Self {
        RpcTimeouts { heartbeat: d, swap_uuid: d, system_recovery: d, commit: d, finalize: d, snapshot: d }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_the_emulated_range_only() {
        assert_eq!(MgVersion::parse("3.12"), Some(NEWEST));
        assert_eq!(MgVersion::parse("2.21.0"), Some(OLDEST));
        assert_eq!(MgVersion::parse("2.20"), None);
        assert_eq!(MgVersion::parse("3.13"), None);
        assert_eq!(MgVersion::parse("3"), None);
        assert_eq!(MgVersion::parse("3.x"), None);
    }

    #[test]
    fn switches_follow_the_reference() {
        let v = |s| MgVersion::parse(s).unwrap();
        assert!(!v("3.4").has_strict_sync() && v("3.5").has_strict_sync());
        assert!(v("3.7").sync_failure_transient_in_autocommit());
        assert!(!v("3.8").sync_failure_transient_in_autocommit());
        assert!(v("3.3").create_snapshot_requires_changes());
        assert!(!v("3.2").snapshot_in_progress_fails() && v("3.3").snapshot_in_progress_fails());
        assert!(!v("3.5").create_snapshot_requires_changes());
        assert_eq!(v("3.5").default_snapshot_interval_sec(), 0);
        assert_eq!(v("3.6").default_snapshot_interval_sec(), 300);
        assert!(!v("3.11").bolt_versions().contains(&BoltVersion::new(4, 4)));
        assert!(v("3.12").bolt_versions().contains(&BoltVersion::new(4, 4)));
        assert!(v("2.22").rpc_timeouts().is_none() && v("3.0").rpc_timeouts().is_some());
    }
}
