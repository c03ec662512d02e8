use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::MemgraphClusterStatus;

/// Image used when `spec.write.image` is not set.
pub const DEFAULT_IMAGE: &str = "memgraph/memgraph:3.12.0";
/// Volume size used when a `storage.size` is not set.
pub const DEFAULT_STORAGE_SIZE: &str = "10Gi";
/// Snapshot schedule used when `spec.snapshot.schedule` is not set: every 15 minutes.
pub const DEFAULT_SNAPSHOT_SCHEDULE: &str = "*/15 * * * *";
/// Upper bound on `spec.read.replicas`.
pub const MAX_READ_REPLICAS: i32 = 32;
/// Longest cluster name: derived names such as `NAME-read-31` must stay valid Kubernetes names,
/// including the `controller-revision-hash` label the StatefulSet controller derives from them.
pub const MAX_NAME_LENGTH: usize = 40;

/// A Memgraph deployment of one write instance (replication MAIN) and `read.replicas` read
/// replicas, kept in sync with Memgraph's native replication.
///
/// Applications write through the Service `NAME-write` and read through `NAME-read`
/// (Bolt, port 7687). Both route only to instances whose role the operator has verified in
/// Memgraph itself.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "memgraph.io",
    version = "v1alpha1",
    kind = "MemgraphCluster",
    namespaced,
    status = "MemgraphClusterStatus",
    shortname = "mgc",
    category = "memgraph",
    derive = "PartialEq",
    derive = "Default",
    doc = "A Memgraph cluster: one write instance (replication MAIN) and N read replicas.",
    scale(
        spec_replicas_path = ".spec.read.replicas",
        status_replicas_path = ".status.readyReplicas",
        label_selector_path = ".status.readSelector"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Pending, Running, Degraded or Failed"),
    printcolumn(name = "Main", type_ = "string", json_path = ".status.mainPod", description = "Pod verified as replication MAIN"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas", description = "Read replicas registered and in sync"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.read.replicas", description = "Read replicas wanted"),
    printcolumn(name = "Lag(ms)", type_ = "integer", json_path = ".status.validation.replicationLagMs", description = "Highest measured replication lag"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 40").message("metadata.name: must be at most 40 characters, so that derived names such as NAME-read-31 stay valid; choose a shorter name"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name: must start with a letter and contain only lower-case letters, digits and '-', because it becomes the name of Services; choose a name like 'graph-prod'"),
)]
#[serde(rename_all = "camelCase")]
pub struct MemgraphClusterSpec {
    /// The write instance: a StatefulSet `NAME-write` with one pod that runs as replication MAIN.
    #[serde(default)]
    pub write: WriteSpec,
    /// The read replicas: one StatefulSet `NAME-read-N` per replica, each registered on the MAIN.
    #[serde(default)]
    pub read: ReadSpec,
    /// How the MAIN replicates to the read replicas.
    #[serde(default)]
    pub replication: ReplicationSpec,
    /// Scheduled snapshots of the MAIN and optional upload to S3.
    #[serde(default)]
    pub snapshot: SnapshotSpec,
    /// Automatic failover: promote a read replica when the MAIN is lost. Off by default.
    #[serde(default)]
    pub failover: FailoverSpec,
    /// Live checks the operator runs against the cluster and reports in `status.validation`.
    #[serde(default)]
    pub validation: ValidationSpec,
    /// Credentials for Memgraph. When set, every pod gets `MEMGRAPH_USER` and `MEMGRAPH_PASSWORD`
    /// from the Secret (Memgraph creates that user at start-up) and the operator logs in with them.
    /// When unset, Memgraph runs without users and accepts any login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// When set, a privileged init container raises the node's `vm.max_map_count` to this value
    /// before Memgraph starts (Memgraph warns or fails below 262144 on large graphs). Leave unset
    /// where privileged containers are not allowed and set the sysctl on the nodes instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 65530, max = 2147483647))]
    pub vm_max_map_count: Option<i64>,
    /// How a new cluster gets its first data. Honoured only when the cluster is created (and
    /// recorded in `status.bootstrap`); adding it to an existing cluster does nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapSpec>,
}

/// The first data of a new cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapSpec {
    /// Restore the write instance from a backup before Memgraph first starts. The read replicas
    /// start empty and receive the data from the MAIN by replication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_backup: Option<BackupSource>,
}

/// A backup to restore, in an object store.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.bucket) > 0 && size(self.prefix) > 0").message("spec.bootstrap.fromBackup: bucket and prefix are required; set them to where the source cluster's backups are"))]
pub struct BackupSource {
    /// Bucket of the source cluster's backups.
    pub bucket: String,
    /// Key prefix of the source cluster's backups (its `spec.snapshot.s3.prefix`). This cluster's
    /// own backups must go to another prefix.
    pub prefix: String,
    /// Region of the bucket.
    #[serde(default = "default_region")]
    pub region: String,
    /// Endpoint URL of an S3-compatible store. Unset uses AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Secret with the keys `access-key-id` and `secret-access-key`. Unset uses the default AWS
    /// credential chain of the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// `latest` (the newest complete backup) or a backup id from `memgraph-operator backups
    /// list`.
    #[serde(default = "default_backup_id")]
    pub backup_id: String,
}

fn default_backup_id() -> String {
    "latest".to_owned()
}

/// Storage for one instance's data directory (`/var/lib/memgraph`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of the PersistentVolumeClaim, as a Kubernetes quantity (for example `10Gi`). Size it
    /// for the snapshots and WAL files Memgraph keeps, several times the in-memory graph.
    #[serde(default = "default_storage_size")]
    pub size: Quantity,
    /// StorageClass of the PersistentVolumeClaim. Empty or unset uses the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self { size: default_storage_size(), storage_class_name: None }
    }
}

fn default_storage_size() -> Quantity {
    Quantity(DEFAULT_STORAGE_SIZE.to_owned())
}

/// Memgraph's log verbosity (`--log-level`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// Everything, including per-query traces.
    Trace,
    /// Debugging detail.
    Debug,
    /// Informational messages.
    Info,
    /// Warnings and errors (Memgraph's default).
    #[default]
    Warning,
    /// Errors only.
    Error,
    /// Critical errors only.
    Critical,
}

impl LogLevel {
    /// The value Memgraph's `--log-level` flag takes.
    pub fn as_flag(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
            LogLevel::Critical => "CRITICAL",
        }
    }
}

/// Memgraph settings of the write instance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WriteConfig {
    /// Log level (`--log-level`): TRACE, DEBUG, INFO, WARNING, ERROR or CRITICAL.
    #[serde(default)]
    pub log_level: LogLevel,
    /// Memory limit in MiB (`--memory-limit`). Unset or 0 lets Memgraph use up to 90% of the
    /// memory it sees; set it below the container's memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub memory_limit: Option<i64>,
    /// fsync the write-ahead log every N transactions (`--storage-wal-file-flush-every-n-tx`).
    /// Transactions not yet flushed are lost if the pod is killed (not on a graceful stop).
    /// Read replicas use the same value, as Memgraph recommends for SYNC replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub wal_flush_every_n_tx: Option<i64>,
}

/// Memgraph settings of a read replica.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadConfig {
    /// Log level (`--log-level`): TRACE, DEBUG, INFO, WARNING, ERROR or CRITICAL.
    #[serde(default)]
    pub log_level: LogLevel,
    /// Memory limit in MiB (`--memory-limit`). Unset or 0 lets Memgraph use up to 90% of the
    /// memory it sees; set it below the container's memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub memory_limit: Option<i64>,
}

/// The write instance (replication MAIN).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WriteSpec {
    /// Memgraph image, for example `memgraph/memgraph:3.12.0`. The tag's version decides which
    /// replication features are available (STRICT_SYNC needs 3.5 or later).
    #[serde(default = "default_image")]
    #[x_kube(validation = Rule::new("size(self.trim()) > 0").message("spec.write.image: must not be empty; set an image such as memgraph/memgraph:3.12.0 or remove the field to use the default"))]
    pub image: String,
    /// CPU and memory requests and limits of the Memgraph container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Persistent storage of the data directory.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Memgraph settings.
    #[serde(default)]
    pub config: WriteConfig,
    /// Extra Memgraph flags, for example `--query-execution-timeout-sec=600`. Each must look like
    /// `--name=value`. Flags the operator manages (data directory, ports, replication, durability)
    /// and `--management-port` (which turns manual replication off) are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// Node labels the write pod must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the write pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity rules of the write pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

impl Default for WriteSpec {
    fn default() -> Self {
        Self {
            image: default_image(),
            resources: None,
            storage: StorageSpec::default(),
            config: WriteConfig::default(),
            extra_args: Vec::new(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            affinity: None,
        }
    }
}

fn default_image() -> String {
    DEFAULT_IMAGE.to_owned()
}

/// What happens to a read replica's PersistentVolumeClaim when the replica is removed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PvcRetention {
    /// Keep the claim and its data; scaling back up reuses it (the replica catches up from the
    /// MAIN). Delete it by hand when it is no longer wanted.
    #[default]
    Retain,
    /// Delete the claim together with the replica's StatefulSet. The data is gone.
    Delete,
}

/// The read replicas.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReadSpec {
    /// Number of read replicas, 0 to 32. `kubectl scale memgraphcluster NAME --replicas N` sets it.
    #[serde(default = "default_read_replicas")]
    #[schemars(range(min = 0, max = 32))]
    pub replicas: i32,
    /// Memgraph image of the read replicas. Unset uses `spec.write.image`; replicas should run the
    /// same version as the MAIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self.trim()) > 0").message("spec.read.image: must not be empty; remove the field to use spec.write.image"))]
    pub image: Option<String>,
    /// CPU and memory requests and limits of each replica's Memgraph container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Persistent storage of each replica's data directory.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Memgraph settings of each replica.
    #[serde(default)]
    pub config: ReadConfig,
    /// Extra Memgraph flags for the replicas; the same rules as `spec.write.extraArgs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// What happens to a replica's PersistentVolumeClaim when it is removed by scaling down or by
    /// deleting the cluster: `Retain` (default) or `Delete`. The write instance's claim is always
    /// retained.
    #[serde(default)]
    pub pvc_retention: PvcRetention,
    /// Node labels the read pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the read pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity rules of the read pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

impl Default for ReadSpec {
    fn default() -> Self {
        Self {
            replicas: default_read_replicas(),
            image: None,
            resources: None,
            storage: StorageSpec::default(),
            config: ReadConfig::default(),
            extra_args: Vec::new(),
            pvc_retention: PvcRetention::default(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            affinity: None,
        }
    }
}

fn default_read_replicas() -> i32 {
    3
}

/// Replication mode of the read replicas, as in Memgraph's `REGISTER REPLICA ... MODE`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReplicationMode {
    /// The MAIN commits without waiting for replicas. Fastest; a replica may lag and writes
    /// acknowledged just before the MAIN's volume is lost may be missing on replicas.
    #[default]
    Async,
    /// The MAIN waits for every replica to confirm. If a replica is down the write is still
    /// committed on the MAIN but the client gets an error.
    Sync,
    /// Two-phase commit: a write is committed everywhere or nowhere. Needs Memgraph 3.5 or later.
    StrictSync,
}

impl ReplicationMode {
    /// The keyword used in `REGISTER REPLICA`.
    pub fn as_cypher(self) -> &'static str {
        match self {
            ReplicationMode::Async => "ASYNC",
            ReplicationMode::Sync => "SYNC",
            ReplicationMode::StrictSync => "STRICT_SYNC",
        }
    }

    /// The value Memgraph reports in the `sync_mode` column of `SHOW REPLICAS`.
    pub fn as_show_replicas(self) -> &'static str {
        match self {
            ReplicationMode::Async => "async",
            ReplicationMode::Sync => "sync",
            ReplicationMode::StrictSync => "strict_sync",
        }
    }
}

/// What a SYNC or STRICT_SYNC cluster puts first when a replica cannot confirm writes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
pub enum DataDurability {
    /// Durability first: a SYNC or STRICT_SYNC replica stays registered in that mode while it is
    /// down or catching up, so Memgraph refuses (SYNC: reports an error for; STRICT_SYNC: aborts)
    /// every write until it is back in sync. A write that succeeded is on every replica.
    #[default]
    Required,
    /// Availability first: a SYNC or STRICT_SYNC replica that has not been in sync for
    /// `degradeAfterSeconds` is registered ASYNC until it has caught up, then back in the spec's
    /// mode. Writes keep succeeding; a write acknowledged meanwhile may be only on the MAIN.
    Preferred,
}

/// Replication settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSpec {
    /// ASYNC (default), SYNC or STRICT_SYNC. Changing it re-registers the replicas one at a time.
    /// New and re-registered replicas catch up as ASYNC first (while another replica keeps the
    /// writes durable) and are switched to this mode once in sync.
    #[serde(default)]
    pub mode: ReplicationMode,
    /// SYNC and STRICT_SYNC only: `Required` (default) keeps failing writes while a replica is
    /// out of sync; `Preferred` re-registers such a replica ASYNC after `degradeAfterSeconds`.
    #[serde(default)]
    pub data_durability: DataDurability,
    /// With `dataDurability: Preferred`, how long a SYNC or STRICT_SYNC replica may be out of
    /// sync before it is registered ASYNC. Default 30.
    #[serde(default = "default_degrade_after")]
    #[schemars(range(min = 1, max = 3600))]
    pub degrade_after_seconds: i32,
}

impl Default for ReplicationSpec {
    fn default() -> Self {
        Self {
            mode: ReplicationMode::default(),
            data_durability: DataDurability::default(),
            degrade_after_seconds: default_degrade_after(),
        }
    }
}

fn default_degrade_after() -> i32 {
    30
}

/// Automatic failover of the MAIN to a read replica.
///
/// Memgraph Community has no high availability of its own: without failover, a write pod on a
/// lost node leaves the cluster without writes until the node returns or a person acts. With
/// it, the operator promotes a read replica that the MAIN last reported in sync, re-points the
/// other replicas to it and moves the write Service to it. The old write pod, when it returns,
/// is demoted and follows the new MAIN as replica `write`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverSpec {
    /// Promote a read replica when the MAIN has not answered, or its pod has not been Ready, for
    /// `detectionDelaySeconds`. The old MAIN is demoted if it answers; if its pod is Ready but
    /// it does not answer, the pod is deleted once to cut off clients still connected to it
    /// (it is demoted when it comes back). Default false.
    #[serde(default)]
    pub enabled: bool,
    /// How long the MAIN must stay down before a failover; a fresh probe must confirm it at the
    /// end. A blip shorter than this never triggers one. Default 5 (Memgraph's own coordinators
    /// declare an instance down after 5 s).
    #[serde(default = "default_detection_delay")]
    #[schemars(range(min = 2, max = 300))]
    pub detection_delay_seconds: i32,
    /// Allow promoting a replica that may lack acknowledged writes: an ASYNC replica, or any
    /// replica when none was last seen in sync in SYNC or STRICT_SYNC mode. Default false: with
    /// no safe candidate nothing is promoted, and the `FailoverBlocked` condition says why.
    #[serde(default)]
    pub allow_data_loss: bool,
    /// After a failover, move the MAIN back to the write pod once it has rejoined and been in
    /// sync, in SYNC or STRICT_SYNC mode, for `switchBackAfterSeconds` (a planned switchover:
    /// the current MAIN is demoted first, so no acknowledged write can be lost). Backups run
    /// beside the write pod, so they resume then. Default true.
    #[serde(default = "default_true")]
    pub switch_back: bool,
    /// How long the write pod must have been in sync before the switch back. Default 30.
    #[serde(default = "default_switch_back_after")]
    #[schemars(range(min = 0, max = 86400))]
    pub switch_back_after_seconds: i32,
}

impl Default for FailoverSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            detection_delay_seconds: default_detection_delay(),
            allow_data_loss: false,
            switch_back: true,
            switch_back_after_seconds: default_switch_back_after(),
        }
    }
}

fn default_switch_back_after() -> i32 {
    30
}

fn default_detection_delay() -> i32 {
    5
}

/// Scheduled snapshots of the MAIN.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.s3) || !self.s3.enabled || self.enabled").message("spec.snapshot.s3.enabled needs spec.snapshot.enabled: backups upload the scheduled snapshots; enable snapshots or disable s3"))]
pub struct SnapshotSpec {
    /// Run `CREATE SNAPSHOT` on the MAIN on `schedule`. Memgraph's own durability (WAL and
    /// periodic snapshots every 300 s) stays on either way, and the write pod always snapshots
    /// before it stops.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Cron schedule in the usual five fields (minute hour day-of-month month day-of-week), UTC,
    /// for example `*/15 * * * *`.
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// Snapshots kept on each instance's volume (`--storage-snapshot-retention-count`).
    #[serde(default = "default_retention_count")]
    #[schemars(range(min = 1, max = 1000000))]
    pub retention_count: i32,
    /// Upload snapshots to S3 or an S3-compatible store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
}

impl Default for SnapshotSpec {
    fn default() -> Self {
        Self { enabled: true, schedule: default_schedule(), retention_count: default_retention_count(), s3: None }
    }
}

fn default_true() -> bool {
    true
}

fn default_schedule() -> String {
    DEFAULT_SNAPSHOT_SCHEDULE.to_owned()
}

fn default_retention_count() -> i32 {
    5
}

/// A reference to a Secret in the cluster's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    pub name: String,
}

/// Upload of snapshots to S3.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.enabled || size(self.bucket) > 0").message("spec.snapshot.s3.bucket: required when spec.snapshot.s3.enabled is true; set the bucket name"))]
pub struct S3Spec {
    /// Turn every scheduled snapshot of the MAIN into a backup: the snapshot file is uploaded
    /// by a sidecar of the write pod to `<prefix>/<backup-id>/` with a `manifest.json` written
    /// last. Annotate the cluster with `memgraph.io/backup-request=<any new value>` for a
    /// backup now.
    #[serde(default)]
    pub enabled: bool,
    /// Bucket name. Required when `enabled` is true.
    #[serde(default)]
    pub bucket: String,
    /// Region of the bucket.
    #[serde(default = "default_region")]
    pub region: String,
    /// Endpoint URL of an S3-compatible store (MinIO, Ceph, ...). Unset uses AWS. Requests use
    /// path-style addressing when an endpoint is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Key prefix of this cluster's backups. The operator refuses to write into a prefix that
    /// holds another cluster's backups.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Secret with the keys `access-key-id` and `secret-access-key`. Unset uses the default AWS
    /// credential chain of the pod (for example IRSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// Backups whose manifest says they started more than this many days ago are deleted.
    /// The newest complete backup is never deleted, whatever its age.
    #[serde(default = "default_retention_days")]
    #[schemars(range(min = 1, max = 36500))]
    pub retention_days: i32,
    /// A backup that has not finished this many seconds after it started is marked failed (no
    /// manifest is written, so nothing incomplete is ever taken for a backup) and the next
    /// scheduled snapshot tries again.
    #[serde(default = "default_backup_timeout")]
    #[schemars(range(min = 60, max = 86400))]
    pub timeout_seconds: i32,
    /// Size of each part of the multipart upload, in MiB. Some stores allow at most 1,000
    /// parts, so a snapshot of more than `1000 × partSizeMiB` needs a larger part size.
    #[serde(default = "default_part_size")]
    #[schemars(range(min = 5, max = 5120))]
    pub part_size_mib: i32,
    /// Image of the backup agent sidecar added to the write pod (the operator's own image).
    /// Unset uses the image of this operator release; set it to mirror the image elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_image: Option<String>,
}

impl Default for S3Spec {
    fn default() -> Self {
        Self {
            enabled: false,
            bucket: String::new(),
            region: default_region(),
            endpoint: None,
            prefix: default_prefix(),
            secret_ref: None,
            retention_days: default_retention_days(),
            timeout_seconds: default_backup_timeout(),
            part_size_mib: default_part_size(),
            agent_image: None,
        }
    }
}

fn default_backup_timeout() -> i32 {
    3600
}

fn default_part_size() -> i32 {
    16
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

fn default_prefix() -> String {
    "memgraph/snapshots".to_owned()
}

fn default_retention_days() -> i32 {
    7
}

/// Live validation of the running cluster (results in `status.validation`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationSpec {
    /// Run the checks at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Seconds between connectivity checks (`RETURN 1`) of every instance.
    #[serde(default = "default_connectivity_interval")]
    #[schemars(range(min = 5, max = 86400))]
    pub connectivity_interval_seconds: i32,
    /// Seconds between write-then-read replication tests (also run after each registration).
    #[serde(default = "default_replication_test_interval")]
    #[schemars(range(min = 30, max = 86400))]
    pub replication_test_interval_seconds: i32,
    /// Seconds between replication lag measurements.
    #[serde(default = "default_lag_interval")]
    #[schemars(range(min = 10, max = 86400))]
    pub lag_interval_seconds: i32,
    /// Lag above which the `ReplicationLagAcceptable` condition turns False, in milliseconds.
    #[serde(default = "default_lag_threshold")]
    #[schemars(range(min = 1))]
    pub lag_threshold_ms: i64,
}

impl Default for ValidationSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            connectivity_interval_seconds: default_connectivity_interval(),
            replication_test_interval_seconds: default_replication_test_interval(),
            lag_interval_seconds: default_lag_interval(),
            lag_threshold_ms: default_lag_threshold(),
        }
    }
}

fn default_connectivity_interval() -> i32 {
    30
}

fn default_replication_test_interval() -> i32 {
    300
}

fn default_lag_interval() -> i32 {
    60
}

fn default_lag_threshold() -> i64 {
    1000
}

/// Memgraph credentials.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Secret holding the user name and password.
    pub secret_ref: SecretRef,
    /// Key of the user name in the Secret.
    #[serde(default = "default_username_key")]
    pub username_key: String,
    /// Key of the password in the Secret.
    #[serde(default = "default_password_key")]
    pub password_key: String,
}

fn default_username_key() -> String {
    "username".to_owned()
}

fn default_password_key() -> String {
    "password".to_owned()
}

impl MemgraphClusterSpec {
    /// Image of the read replicas: `read.image`, or the write image when unset.
    pub fn read_image(&self) -> &str {
        self.read.image.as_deref().unwrap_or(&self.write.image)
    }
}
