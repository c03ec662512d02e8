use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Coarse state of a cluster.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Objects are being created, or the write instance has not been verified as MAIN yet.
    #[default]
    Pending,
    /// The MAIN is verified and every wanted replica is registered and in sync.
    Running,
    /// The MAIN is verified but some replica is missing, unhealthy or lagging.
    Degraded,
    /// The operator cannot make progress without help: an invalid spec, diverged data or a MAIN
    /// that came back empty. The conditions say what to do.
    Failed,
}

/// Observed state of a `MemgraphCluster`, written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemgraphClusterStatus {
    /// Pending, Running, Degraded or Failed.
    #[serde(default)]
    pub phase: Phase,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// True when the write instance is reachable and verified as replication MAIN.
    #[serde(default)]
    pub write_ready: bool,
    /// Name of the pod verified as MAIN and labelled `memgraph.io/role=main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_pod: Option<String>,
    /// Read replicas registered on the MAIN and `ready` (in sync).
    #[serde(default)]
    pub ready_replicas: i32,
    /// Read replicas registered on the MAIN, in any state.
    #[serde(default)]
    pub registered_replicas: i32,
    /// Label selector of the read pods, for the scale subresource (HorizontalPodAutoscaler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_selector: Option<String>,
    /// Time of the last snapshot the operator created on the MAIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_snapshot_time: Option<Time>,
    /// The schedule tick the operator last took (or tried to take). Written before `CREATE
    /// SNAPSHOT` runs, so each tick is taken at most once, whatever fails or restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_snapshot_tick: Option<Time>,
    /// The schedule `lastSnapshotTick` counts by. When `spec.snapshot.schedule` changes, ticks of
    /// the new schedule are counted from the change, not caught up from before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_schedule: Option<String>,
    /// When the last backup whose manifest is written finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_s3_backup_time: Option<Time>,
    /// Backups to the object store of `spec.snapshot.s3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<BackupsStatus>,
    /// The bootstrap of `spec.bootstrap`, once decided at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapStatus>,
    /// While the MAIN is found to have lost data: the read pods last counted holding more than
    /// it, with their node counts. The loss stands until each is counted again or the MAIN
    /// holds as much (a pod that cannot be counted now is no evidence that it holds less).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub lost_data_holders: std::collections::BTreeMap<String, i64>,
    /// Results of the live checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationStatus>,
    /// Which instance is the MAIN, failovers in progress and done, and the MAIN's last view
    /// of its replicas that a failover chooses by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverStatus>,
    /// Actions that keep failing: the operator retries each with backoff and says why here and
    /// in the `ActionsSucceeding` condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing_actions: Vec<ActionFailure>,
    /// Standard conditions: WriteReady, ReplicasReady, ReplicationHealthy, InvalidSpec,
    /// DataDivergence and the validation conditions (WriteConnectivity, ReadConnectivity,
    /// ReplicationLagAcceptable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The MAIN as the operator holds it, and what a failover decides by.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverStatus {
    /// The instance the operator holds as MAIN: `write` (the write pod) or `read-N` after a
    /// failover. Only this instance is ever labelled `main`; any other that says it is a MAIN
    /// is demoted.
    #[serde(default = "default_main")]
    pub main: String,
    /// Counts promotions: each failover or switchover takes the next number, written before its
    /// first step (Memgraph's own epochs and main UUIDs are not visible through queries).
    #[serde(default)]
    pub generation: i64,
    /// A failover under way: recorded (guarded by the cluster's resourceVersion) before any of
    /// its steps is taken, so an operator restarted at any step finishes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<FailoverIntent>,
    /// Since when the MAIN has not answered the operator or its pod has not been Ready (the
    /// start of the first look that found it so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_down_since: Option<Time>,
    /// When that look ended: the look that confirms it begins at least a second later, so that
    /// replicas still receiving the MAIN's writes can show it is alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_down_noticed_at: Option<Time>,
    /// The last failover that completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<CompletedFailover>,
    /// The MAIN's last report of each replica (`SHOW REPLICAS`), kept because a replica cannot
    /// say how up to date it is. Updated whenever a replica's mode or state changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen: Vec<SeenReplica>,
    /// The last value of the `memgraph.io/switchover` annotation acted on (started, or refused
    /// with a Warning event): a different value is a new request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_switchover_request: Option<String>,
    /// What a requested switchover waits for before it moves writes (the target catching up,
    /// being registered in a synchronous mode, the MAIN answering), while it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover_waiting: Option<String>,
    /// Since when the write pod, after a failover away from it, has been a ready REPLICA
    /// registered in a synchronous mode without restarting (`switchBackAfterSeconds` counts from
    /// here; a replication blip does not reset it, a restart does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_pod_stable_since: Option<Time>,
    /// The write pod's uid and restart count behind `writePodStableSince`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_pod_stable_as: Option<String>,
}

/// Why the MAIN changes: `Failover` (the MAIN was lost), `Switchover` (requested with the
/// `memgraph.io/switchover` annotation) or `SwitchBack` (back to the write pod after a failover,
/// `spec.failover.switchBack`).
pub const FAILOVER_KIND: &str = "Failover";
/// See [`FAILOVER_KIND`].
pub const SWITCHOVER_KIND: &str = "Switchover";
/// See [`FAILOVER_KIND`].
pub const SWITCH_BACK_KIND: &str = "SwitchBack";

fn default_kind() -> String {
    FAILOVER_KIND.to_owned()
}

fn default_main() -> String {
    "write".to_owned()
}

/// A failover or switchover under way.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverIntent {
    /// The generation this promotion takes.
    pub generation: i64,
    /// The MAIN being replaced (`write` or `read-N`).
    pub from: String,
    /// The replica being promoted.
    pub to: String,
    /// When the intent was recorded.
    pub started_at: Time,
    /// Why: what the operator saw of the old MAIN, and why this replica.
    pub reason: String,
    /// Whether the promoted replica may lack acknowledged writes (`allowDataLoss`).
    #[serde(default)]
    pub may_lose_writes: bool,
    /// `Failover`, `Switchover` or `SwitchBack`.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// The uid of the old MAIN's pod this failover deleted to fence it: it was Ready, so its
    /// process may still have served clients, but it did not answer the operator, so it could
    /// not be demoted. Recorded before the deletion; a failover stops at most one pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

/// A completed failover.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompletedFailover {
    /// Its generation.
    pub generation: i64,
    /// The old MAIN.
    pub from: String,
    /// The new MAIN.
    pub to: String,
    /// When it was recorded.
    pub started_at: Time,
    /// When the new MAIN was verified and labelled.
    pub finished_at: Time,
    /// The old MAIN's last reported commit timestamp of the promoted replica minus its own (0
    /// when the replica was caught up; negative: transactions that may be lost).
    #[serde(default)]
    pub behind: i64,
    /// `Failover`, `Switchover` or `SwitchBack`.
    #[serde(default = "default_kind")]
    pub kind: String,
}

/// The MAIN's report of one replica, as last seen.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeenReplica {
    /// Instance (`read-N`, or `write` after a failover).
    pub name: String,
    /// Registration mode: `sync`, `async` or `strict_sync`.
    pub mode: String,
    /// Replication state: ready, replicating, recovery, invalid or diverged.
    pub state: String,
    /// Its last commit timestamp as the MAIN knew it.
    pub ts: i64,
    /// That minus the MAIN's (0 when caught up).
    pub behind: i64,
    /// When the MAIN reported this.
    pub seen_at: Time,
}

/// Results of the live checks of `spec.validation`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationStatus {
    /// When every instance was last asked `RETURN 1` (recorded when the check starts; its
    /// results are in the `WriteConnectivity` and `ReadConnectivity` conditions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_connectivity_test: Option<Time>,
    /// When the last write-then-read replication test started. Recorded before it writes its
    /// test node, so a test is never run twice for one schedule slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_replication_test: Option<Time>,
    /// When replication lag was last measured (recorded before the measurement writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_lag_measurement: Option<Time>,
    /// Highest replication lag of the last measurement, in milliseconds: the operator's own
    /// clock from the MAIN acknowledging its test write to the first read on a replica that saw
    /// it, so how stale a read can be right after a write returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_lag_ms: Option<i64>,
    /// Instances (`write`, `read-0`, ...) that did not answer `RETURN 1` at the last
    /// connectivity check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
    /// True when every replica passed its last checks.
    #[serde(default)]
    pub all_replicas_healthy: bool,
    /// Per-replica results, by Kubernetes name (`read-0`, `read-1`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaValidation>,
}

/// Check results of one read replica.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaValidation {
    /// Replica name as in Kubernetes (`read-0`); registered in Memgraph as `read_0`.
    pub name: String,
    /// True when the replica is registered, in sync and passed its last checks.
    #[serde(default)]
    pub healthy: bool,
    /// Replica state as the MAIN reports it: ready (in sync; a transaction may be in flight),
    /// recovery, invalid or diverged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Last measured replication lag in milliseconds (at least this much when the replica had
    /// not seen the test write when the measurement gave up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<i64>,
    /// When this replica's last replication test or lag measurement ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_test_time: Option<Time>,
    /// Result of its last replication test: `Passed` (it served the test write within the
    /// mode's limit) or `Failed`. Cleared when the replica is registered again, which makes a
    /// new test due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_test: Option<String>,
    /// What the last replication test found, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_message: Option<String>,
    /// Since when the MAIN has reported the replica out of sync while its pod was ready; drives
    /// the grace before its label is removed and before it is registered again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_since: Option<Time>,
    /// Since when the MAIN has reported its registration out of sync, whether its pod runs or
    /// not; drives `dataDurability: Preferred`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_sync_since: Option<Time>,
    /// Why the replica is unhealthy, in words a person can act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An action that failed, remembered so that it is retried with backoff and reported.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionFailure {
    /// What is failing, such as `RegisterReplica read_1`.
    pub action: String,
    /// What the backoff is kept for, such as `replica read_1`: actions on one subject wait
    /// together (a registration that failed is not dropped and made again in a loop).
    pub subject: String,
    /// Consecutive failures.
    pub failures: i32,
    /// First failure of this run of failures.
    pub since: Time,
    /// Not retried before this time.
    pub retry_after: Time,
    /// The last error, and what to do about it.
    pub message: String,
}

/// Backups of the cluster (see `spec.snapshot.s3`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupsStatus {
    /// The backup in progress. Recorded before it starts, so it is never started twice, and
    /// marked failed when it passes its deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<RunningBackup>,
    /// The last backup that completed (its manifest is written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful: Option<CompletedBackup>,
    /// The last backup that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed: Option<FailedBackup>,
    /// Complete backups in the store after the last retention pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<i32>,
    /// The value of the `memgraph.io/backup-request` annotation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request: Option<String>,
    /// When backups were first planned for this cluster (a backup is overdue two schedule
    /// periods after this when none has succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_since: Option<Time>,
}

/// A backup in progress.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunningBackup {
    /// Backup id: its prefix under `spec.snapshot.s3.prefix`.
    pub id: String,
    /// When it started.
    pub started_at: Time,
    /// When it is given up if not finished.
    pub deadline: Time,
    /// `schedule` or `request` (the annotation).
    pub trigger: String,
}

/// A backup that completed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompletedBackup {
    /// Backup id.
    pub id: String,
    /// When it finished.
    pub time: Time,
    /// Size of the snapshot file in bytes.
    pub size_bytes: i64,
    /// Seconds from start to manifest.
    pub duration_seconds: i64,
    /// The snapshot file it holds.
    pub snapshot: String,
    /// Memgraph version that wrote it.
    pub memgraph_version: String,
}

/// A backup that failed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedBackup {
    /// Backup id.
    pub id: String,
    /// When it failed.
    pub time: Time,
    /// Why, and what to do.
    pub error: String,
}

/// What became of `spec.bootstrap`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapStatus {
    /// `Restoring` (the write pod's init container restores the backup), `Completed` (the
    /// restored MAIN was verified; it never runs again) or `Ignored` (the spec asked for it
    /// after the cluster was created).
    pub state: String,
    /// The backup asked for (`latest` or an id) and where.
    pub source: String,
    /// When it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
}
