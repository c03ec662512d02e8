//! Memgraph's error and notification texts, per emulated version (reference §1, §2.2, §4, §5).

use crate::cypher::SyncMode;
use crate::version::MgVersion;

/// Generic text of an unexpected failure.
pub const UNKNOWN: &str = "An unknown exception occurred, this is unexpected. Real message should be in database logs.";
/// Bad login.
pub const AUTH_FAILURE: &str = "Authentication failure";
/// `SET REPLICATION ROLE TO REPLICA` on a replica, or the port cannot be bound.
pub const SET_REPLICA_FAILED: &str = "Couldn't set role to replica!";
/// `SET REPLICATION ROLE TO MAIN` on a MAIN.
pub const SET_MAIN_FAILED: &str = "Couldn't set replication role to main!";
/// Missing, non-integer or out-of-range replication port.
pub const PORT_INVALID: &str = "Port number invalid!";
/// `REGISTER REPLICA` on a replica.
pub const REGISTER_ON_REPLICA: &str = "Replica can't register another replica!";
/// A MAIN demoted while a write transaction was in flight.
pub const NOT_MAIN_ANYMORE: &str = "Cannot commit because instance is not main anymore.";
/// Port 7687 warning.
pub const REPLICA_PORT_WARNING: &str = "Be careful the replication port must be different from the memgraph port!";
/// Manual role change on an HA data instance.
pub const HA_SET_ROLE: &str = "Can't set role manually on instance with coordinator server port.";
/// Manual registration on an HA data instance.
pub const HA_REGISTER: &str = "Can't register replica manually on instance with coordinator server port.";
/// Manual drop on an HA data instance.
pub const HA_DROP: &str = "Can't drop replica manually on instance with coordinator server port.";
/// CREATE SNAPSHOT on a replica (≤3.7).
pub const SNAPSHOT_ON_REPLICA: &str = "Failed to create a snapshot. Replica instances are not allowed to create them.";
/// CREATE SNAPSHOT with nothing new (3.3–3.4).
pub const SNAPSHOT_NOTHING_NEW: &str = "Nothing has been written since the last snapshot.";
/// A snapshot that was aborted while being written (a replica received its MAIN's snapshot, or
/// the instance stopped without `--storage-snapshot-on-exit`).
pub const SNAPSHOT_ABORTED: &str = "Failed to create snapshot. The current snapshot needs to be aborted.";
/// RECOVER SNAPSHOT on a replica.
pub const RECOVER_ON_REPLICA: &str = "Failed to recover a snapshot. Replica instances are not allowed to create them.";
/// RECOVER SNAPSHOT on non-empty storage without FORCE.
pub const RECOVER_NOT_CLEAN: &str = "Failed to recover a snapshot. Storage is not clean. Try using FORCE.";
/// RECOVER SNAPSHOT of a missing file.
pub const RECOVER_MISSING: &str = "Failed to find the defined snapshot file.";
/// Nested BEGIN.
pub const NESTED_TX: &str = "Nested transactions are not supported.";

/// CREATE SNAPSHOT while another snapshot is being written (3.3+; the period went away in 3.8).
pub fn snapshot_already_running(v: MgVersion) -> &'static str {
    if v.snapshot_errors_without_period() {
        "Another snapshot creation is already in progress"
    } else {
        "Another snapshot creation is already in progress."
    }
}

/// Registration failure codes (`RegisterReplicaError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterError {
    /// 1: name already registered.
    NameExists = 1,
    /// 2: endpoint already registered.
    EndpointExists = 2,
    /// 3: replica diverged.
    ConnectionFailed = 3,
    /// 5: unreachable or not a replica.
    ErrorAcceptingMain = 5,
}

/// Bad socket address in `REGISTER REPLICA`.
pub fn invalid_socket_address(v: MgVersion) -> &'static str {
    if v.long_replication_texts() {
        "Invalid socket address. The socket address must be a string defining the address and port, delimited by a single colon. The address must be valid and the port must be an integer."
    } else {
        "Invalid socket address!"
    }
}

/// Failed registration.
pub fn register_failed(v: MgVersion, name: &str, e: RegisterError) -> String {
    if v.numbered_register_errors() {
        format!("Couldn't register replica {name}. Error: {}", e as u8)
    } else {
        format!("Couldn't register replica {name}.")
    }
}

/// `DROP REPLICA` on a replica.
pub fn drop_on_replica(v: MgVersion) -> &'static str {
    if v.long_replication_texts() {
        "Replica can't unregister a replica! Please rerun the query on main in order to unregister a replica from the cluster."
    } else {
        "Replica can't unregister a replica!"
    }
}

/// `DROP REPLICA` of an unknown name.
pub fn drop_unknown(v: MgVersion, name: &str) -> String {
    if v.long_replication_texts() {
        format!("Failed to unregister the replica {name}.")
    } else {
        format!("Couldn't unregister the replica {name}.")
    }
}

/// `SHOW REPLICAS` on a replica.
pub fn show_replicas_on_replica(v: MgVersion) -> &'static str {
    if v.long_replication_texts() {
        "Show replicas query should only be run on the main instance."
    } else {
        "Replica can't show registered replicas (it shouldn't have any)!"
    }
}

/// Write query on a replica.
pub fn write_on_replica(v: MgVersion) -> &'static str {
    if v.long_replication_texts() {
        "Write queries are forbidden on the replica instance. Replica instances accept only read queries, while the main instance accepts read and write queries. Please retry your query on the main instance."
    } else {
        "Write query forbidden on the replica!"
    }
}

/// Write query on a coordinator-managed MAIN that no coordinator enabled (HA mode).
pub fn write_on_unpromoted_main(v: MgVersion) -> &'static str {
    if v.long_replication_texts() {
        "Write queries currently forbidden on the main instance. The cluster is in the process of setting up a new main instance, please retry the query later on."
    } else {
        "Write query forbidden on the main! Coordinator needs to enable writing on main by sending RPC message."
    }
}

fn multicommand(what: &str) -> String {
    format!(
        "{what} is not allowed in multicommand transactions. A multicommand transaction, also known as an explicit transaction, groups multiple commands into a single atomic operation. Instead, please use an implicit transaction, also knwon as an auto committing transaction, in order to execute this particular query. For more details, visit https://memgraph.com/docs."
    )
}

/// A replication query inside an explicit transaction.
pub fn replication_in_tx(v: MgVersion) -> String {
    if v.long_replication_texts() {
        multicommand("Managing replication")
    } else {
        "Replication clause not allowed in multicommand transactions.".into()
    }
}

/// Which snapshot query ran inside an explicit transaction.
#[derive(Debug, Clone, Copy)]
pub enum SnapshotKind {
    /// CREATE SNAPSHOT.
    Create,
    /// SHOW SNAPSHOTS / SHOW NEXT SNAPSHOT.
    Show,
    /// RECOVER SNAPSHOT.
    Recover,
}

/// A snapshot query inside an explicit transaction.
pub fn snapshot_in_tx(v: MgVersion, kind: SnapshotKind) -> String {
    match (v.long_replication_texts(), kind) {
        (true, SnapshotKind::Create) => multicommand("Creating snapshots"),
        (true, SnapshotKind::Show) => multicommand("Snapshots listing"),
        (true, SnapshotKind::Recover) => multicommand("Recovering from snapshot"),
        (false, SnapshotKind::Create) => "Snapshot cannot be created in multicommand transactions.".into(),
        (false, SnapshotKind::Show) => "Snapshots cannot be listed in multicommand transactions.".into(),
        (false, SnapshotKind::Recover) => "Snapshot cannot be recovered in multicommand transactions.".into(),
    }
}

fn wrap_replication(msg: &str) -> String {
    format!("Replication Exception: {msg} Check the status of the replicas using 'SHOW REPLICAS' query.")
}

fn quoted_list(names: &[String]) -> String {
    let q: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    match q.len() {
        0 | 1 => q.concat(),
        n => format!("{} and {}", q[..n - 1].join(", "), q[n - 1]),
    }
}

/// The error after a SYNC replica failed to confirm a commit (data stays committed).
/// `failures` are `(replica name, reason)`.
pub fn sync_failure(v: MgVersion, failures: &[(String, String)]) -> String {
    if !v.detailed_sync_errors() {
        return wrap_replication("At least one SYNC replica has not confirmed committing last transaction.");
    }
    let names: Vec<String> = failures.iter().map(|(n, _)| n.clone()).collect();
    let reason = failures.first().map(|(_, r)| r.as_str()).unwrap_or_default();
    let msg = if names.len() > 1 {
        format!(
            "Failed to replicate to SYNC replicas {}: {reason}. Replicas will be recovered automatically. Transaction is still committed on the main instance and other alive replicas.",
            quoted_list(&names)
        )
    } else {
        format!(
            "Failed to replicate to SYNC replica {}: {reason}. Replica will be recovered automatically. Transaction is still committed on the main instance and other alive replicas.",
            quoted_list(&names)
        )
    };
    wrap_replication(&msg)
}

/// The error after a STRICT_SYNC replica failed phase 1 (transaction aborted everywhere).
pub fn strict_sync_failure(v: MgVersion, failures: &[(String, String)]) -> String {
    if !v.detailed_sync_errors() {
        return wrap_replication(
            "At least one STRICT_SYNC replica has not confirmed committing last transaction. Transaction will be aborted on all instances.",
        );
    }
    let names: Vec<String> = failures.iter().map(|(n, _)| n.clone()).collect();
    let reason = failures.first().map(|(_, r)| r.as_str()).unwrap_or_default();
    let (noun, verb) = if names.len() > 1 { ("replicas", "Replicas will") } else { ("replica", "Replica will") };
    wrap_replication(&format!(
        "Failed to replicate to STRICT_SYNC {noun} {}: {reason}. {verb} be recovered automatically. Transaction was aborted on all instances.",
        quoted_list(&names)
    ))
}

/// Reasons used in 3.10+ replication errors.
pub mod reason {
    /// Replica down or behind.
    pub const NOT_READY: &str = "replica is not reachable or not in sync with the main";
    /// Transport failure.
    pub const RPC_ERROR: &str = "RPC communication error";
    /// Diverged replica.
    pub const DIVERGED: &str = "replica has diverged from main";
    /// Timeout.
    pub const TIMEOUT: &str = "RPC timeout while replicating. Consider increasing deltas_batch_progress_size";
}

/// Lower-case mode name for logs.
pub fn mode_name(m: SyncMode) -> &'static str {
    m.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> MgVersion {
        MgVersion::parse(s).unwrap()
    }

    #[test]
    fn register_errors_gain_numbers_in_3_5() {
        assert_eq!(register_failed(v("3.4"), "r", RegisterError::NameExists), "Couldn't register replica r.");
        assert_eq!(
            register_failed(v("3.5"), "r", RegisterError::ErrorAcceptingMain),
            "Couldn't register replica r. Error: 5"
        );
    }

    #[test]
    fn sync_errors_per_version() {
        let f = vec![("r1".to_string(), reason::NOT_READY.to_string())];
        assert_eq!(
            sync_failure(v("3.9"), &f),
            "Replication Exception: At least one SYNC replica has not confirmed committing last transaction. Check the status of the replicas using 'SHOW REPLICAS' query."
        );
        assert_eq!(
            sync_failure(v("3.10"), &f),
            "Replication Exception: Failed to replicate to SYNC replica 'r1': replica is not reachable or not in sync with the main. Replica will be recovered automatically. Transaction is still committed on the main instance and other alive replicas. Check the status of the replicas using 'SHOW REPLICAS' query."
        );
        let two = vec![f[0].clone(), ("r2".to_string(), reason::NOT_READY.to_string())];
        assert!(sync_failure(v("3.12"), &two).contains("replicas 'r1' and 'r2'"));
        assert!(strict_sync_failure(v("3.12"), &f).contains("Transaction was aborted on all instances."));
    }

    #[test]
    fn snapshot_in_progress_texts() {
        assert_eq!(snapshot_already_running(v("3.3")), "Another snapshot creation is already in progress.");
        assert_eq!(snapshot_already_running(v("3.7")), "Another snapshot creation is already in progress.");
        assert_eq!(snapshot_already_running(v("3.8")), "Another snapshot creation is already in progress");
    }

    #[test]
    fn multicommand_texts() {
        assert_eq!(replication_in_tx(v("3.0")), "Replication clause not allowed in multicommand transactions.");
        assert!(replication_in_tx(v("3.1")).starts_with("Managing replication is not allowed"));
        assert!(snapshot_in_tx(v("3.12"), SnapshotKind::Create).starts_with("Creating snapshots"));
    }
}
