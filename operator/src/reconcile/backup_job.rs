//! The backup half of a snapshot job: after `CREATE SNAPSHOT`, find the file it wrote (the way
//! the Memgraph version allows), have the write pod's agent upload it, follow the agent until
//! the backup completes or its deadline passes, check the manifest in the store, and apply
//! retention. Everything here talks to the outside through traits ([`AgentApi`],
//! [`StoreFactory`], [`Bolt`]), so the simulation runs it as is.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;

use super::observed::Observed;
use super::plan::backup::BackupResult;
use crate::api::{MemgraphClusterSpec, RunningBackup};
use crate::backup::agent::{self, AgentApi, AgentError, JobState};
use crate::backup::manifest::{self, ClusterRef, Manifest};
use crate::backup::store::{ObjectStore, StoreError};
use crate::backup::upload::BackupRequest;
use crate::backup::{Credentials, StoreLocation, catalog, retention};
use crate::clock::Clock;
use crate::kube_api::{Kube, KubeError};
use crate::memgraph::{Bolt, BoltValue, SnapshotOutcome};
use crate::names::{ClusterNames, Instance};
use crate::version::MemgraphVersion;

/// Key of the agent Secret holding the request-signing key.
pub const AGENT_KEY: &str = "token";
/// Memgraph 3.3+'s refusal of a snapshot while another is written.
const ALREADY_RUNNING: &str = "Another snapshot creation is already in progress";
/// How often the job asks the agent how far it is.
pub const POLL: Duration = Duration::from_secs(2);

/// Opens the object store of a cluster.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// A store client for `location` with these credentials (`None`: the ambient ones).
    async fn open(
        &self,
        location: &StoreLocation,
        credentials: Option<Credentials>,
    ) -> Result<Arc<dyn ObjectStore>, StoreError>;
}

/// What backup jobs need from the outside.
#[derive(Clone)]
pub struct BackupContext {
    /// How agents are reached.
    pub agents: Arc<dyn AgentApi>,
    /// How stores are opened.
    pub stores: Arc<dyn StoreFactory>,
}

/// Everything a backup job needs, read when it starts.
#[derive(Clone, PartialEq)]
pub struct BackupJob {
    /// What the agent is asked.
    pub request: BackupRequest,
    /// The write pod's DNS name.
    pub agent_host: String,
    /// The request-signing key, or why it could not be read.
    pub agent_key: Result<Vec<u8>, String>,
    /// The store.
    pub location: StoreLocation,
    /// Its credentials, or why they could not be read.
    pub credentials: Result<Option<Credentials>, String>,
    /// `retentionDays`.
    pub retention_days: i32,
    /// The running version, for how the snapshot file is found.
    pub version: Option<MemgraphVersion>,
}

impl std::fmt::Debug for BackupJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupJob")
            .field("id", &self.request.id)
            .field("agent_host", &self.agent_host)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).trim().to_owned())
        .or_else(|| secret.string_data.as_ref().and_then(|d| d.get(key)).map(|v| v.trim().to_owned()))
}

/// The store location of a spec.
pub fn location(spec: &MemgraphClusterSpec) -> Option<StoreLocation> {
    let s3 = spec.snapshot.s3.as_ref()?;
    Some(StoreLocation {
        bucket: s3.bucket.clone(),
        region: s3.region.clone(),
        endpoint: s3.endpoint.clone(),
        prefix: s3.prefix.trim_end_matches('/').to_owned(),
    })
}

/// Read the store credentials named by `spec.snapshot.s3.secretRef`.
pub async fn store_credentials<K: Kube>(
    kube: &K,
    namespace: &str,
    spec: &MemgraphClusterSpec,
) -> Result<Option<Credentials>, String> {
    let Some(reference) = spec.snapshot.s3.as_ref().and_then(|s3| s3.secret_ref.as_ref()) else { return Ok(None) };
    let secret = kube
        .get::<Secret>(namespace, &reference.name)
        .await
        .map_err(|e: KubeError| format!("reading Secret {}: {e}", reference.name))?
        .ok_or_else(|| format!("Secret {} named by spec.snapshot.s3.secretRef does not exist", reference.name))?;
    match (secret_value(&secret, "access-key-id"), secret_value(&secret, "secret-access-key")) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Some(Credentials { access_key_id, secret_access_key })),
        _ => Err(format!("Secret {} lacks access-key-id or secret-access-key; add both keys to it", reference.name)),
    }
}

/// Read the agent's signing key.
pub async fn agent_key<K: Kube>(kube: &K, names: &ClusterNames) -> Result<Vec<u8>, String> {
    let name = names.backup_agent_secret();
    let secret = kube
        .get::<Secret>(&names.namespace, &name)
        .await
        .map_err(|e| format!("reading Secret {name}: {e}"))?
        .ok_or_else(|| format!("Secret {name} (the backup agent's key) does not exist yet"))?;
    secret_value(&secret, AGENT_KEY)
        .filter(|k| k.len() >= 32)
        .map(String::into_bytes)
        .ok_or_else(|| format!("Secret {name} has no usable {AGENT_KEY}; delete it and the operator makes a new one"))
}

/// Build the job of the backup recorded as running.
pub async fn prepare<K: Kube>(kube: &K, obs: &Observed, running: &RunningBackup) -> Option<BackupJob> {
    let spec = &obs.spec;
    let s3 = spec.snapshot.s3.as_ref()?;
    let names = ClusterNames::new(obs.cluster.name.clone(), obs.cluster.namespace.clone());
    let version = MemgraphVersion::from_image(&spec.write.image);
    Some(BackupJob {
        request: BackupRequest {
            id: running.id.clone(),
            cluster: ClusterRef {
                name: obs.cluster.name.clone(),
                namespace: obs.cluster.namespace.clone(),
                uid: obs.cluster.uid.clone(),
            },
            memgraph_version: version.map_or_else(|| "unknown".to_owned(), |v| v.to_string()),
            snapshot: None,
            prefix: s3.prefix.trim_end_matches('/').to_owned(),
            started_at: running.started_at.0,
            deadline: running.deadline.0,
        },
        agent_host: names.pod_host(Instance::Write),
        agent_key: agent_key(kube, &names).await,
        location: location(spec)?,
        credentials: store_credentials(kube, &obs.cluster.namespace, spec).await,
        retention_days: s3.retention_days,
        version,
    })
}

/// The snapshot file `CREATE SNAPSHOT` wrote, as far as the version can say: 3.5+ returns its
/// path; 2.22+ lists finished files newest first in `SHOW SNAPSHOTS` (which waits for a running
/// snapshot); 2.21 cannot say, and the agent takes the newest complete file.
pub async fn identify(
    bolt: &dyn Bolt,
    address: &str,
    version: Option<MemgraphVersion>,
    outcome: &SnapshotOutcome,
) -> Option<String> {
    let base = |path: &str| path.rsplit('/').next().map(str::to_owned);
    if let SnapshotOutcome::Created(Some(path)) = outcome {
        return base(path);
    }
    if version.is_some_and(|v| v < MemgraphVersion::new(2, 22, 0)) {
        return None;
    }
    let result = bolt.run_within(address, "SHOW SNAPSHOTS", BTreeMap::new(), bolt.timeouts().snapshot).await.ok()?;
    (0..result.rows.len())
        .filter(|i| result.get(*i, "timestamp").and_then(BoltValue::as_int).is_some_and(|ts| ts > 0))
        .find_map(|i| result.get(i, "path").and_then(BoltValue::as_str).and_then(base))
}

async fn wait_for_agent(
    ctx: &BackupContext,
    clock: &dyn Clock,
    job: &BackupJob,
    key: &[u8],
) -> Result<Manifest, String> {
    let request = &job.request;
    let mut started = false;
    let mut last_error: Option<AgentError> = None;
    while clock.now() < request.deadline {
        let answer = if started {
            agent::backup_state(ctx.agents.as_ref(), &job.agent_host, key, &request.id).await
        } else {
            agent::start_backup(ctx.agents.as_ref(), &job.agent_host, key, request).await.map(Some)
        };
        match answer {
            Ok(Some(JobState::Completed { manifest })) => return Ok(*manifest),
            Ok(Some(JobState::Failed { error })) => return Err(error),
            Ok(Some(JobState::Running)) => started = true,
            // The agent lost it (its volume was replaced): ask again.
            Ok(None) => started = false,
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(POLL).await;
    }
    Err(format!(
        "did not finish before its deadline {} (spec.snapshot.s3.timeoutSeconds){}; no manifest was written. The next \
         scheduled snapshot tries again",
        request.deadline,
        last_error.map(|e| format!("; last: {e}")).unwrap_or_default()
    ))
}

/// Upload, verify and apply retention. `outcome` is what `CREATE SNAPSHOT` said, if this job
/// ran it.
pub async fn run(
    ctx: &BackupContext,
    bolt: &dyn Bolt,
    clock: &dyn Clock,
    mut job: BackupJob,
    address: &str,
    outcome: Option<&Result<SnapshotOutcome, String>>,
) -> BackupResult {
    let id = job.request.id.clone();
    let fail = |error: String| BackupResult { id: id.clone(), outcome: Err(error), kept: None };
    match outcome {
        // Memgraph's own periodic snapshot is being written: it is as fresh as the one asked
        // for, and `SHOW SNAPSHOTS` (2.22+) waits for it and lists it.
        Some(Err(e))
            if e.contains(ALREADY_RUNNING) && job.version.is_none_or(|v| v >= MemgraphVersion::new(2, 22, 0)) =>
        {
            job.request.snapshot = identify(bolt, address, job.version, &SnapshotOutcome::Created(None)).await;
            if job.request.snapshot.is_none() {
                return fail(format!(
                    "CREATE SNAPSHOT failed ({e}) and SHOW SNAPSHOTS did not name a finished snapshot"
                ));
            }
        }
        Some(Err(e)) => return fail(format!("CREATE SNAPSHOT failed ({e}), so there was nothing new to upload")),
        Some(Ok(o)) => job.request.snapshot = identify(bolt, address, job.version, o).await,
        None => {}
    }
    let credentials = match job.credentials.clone() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let key = match job.agent_key.clone() {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let store = match ctx.stores.open(&job.location, credentials).await {
        Ok(s) => s,
        Err(e) => return fail(format!("{e}; {}", e.hint())),
    };
    // Never write into another cluster's backups.
    match catalog::read(store.as_ref(), &job.location.prefix).await {
        Ok(entries) => {
            if let Some(other) = catalog::foreign_owner(&entries, &job.request.cluster.uid) {
                return fail(format!(
                    "the prefix {} holds backups of another cluster ({other}); set spec.snapshot.s3.prefix to a prefix \
                     of this cluster's own",
                    job.location.prefix
                ));
            }
        }
        Err(e) => return fail(format!("{e}; {}", e.hint())),
    }
    let manifest = match wait_for_agent(ctx, clock, &job, &key).await {
        Ok(m) => m,
        Err(e) => {
            let kept = apply_retention(store.as_ref(), &job, clock.now()).await;
            return BackupResult { id: id.clone(), outcome: Err(e), kept };
        }
    };
    // The store, not the agent, has the last word: the manifest must be there.
    let key_of_manifest = manifest::manifest_key(&job.location.prefix, &id);
    match store.get(&key_of_manifest).await {
        Ok(Some(_)) => {}
        Ok(None) => return fail(format!("the agent reported success but {key_of_manifest} is not in the store")),
        Err(e) => return fail(format!("checking the manifest: {e}; {}", e.hint())),
    }
    let kept = apply_retention(store.as_ref(), &job, clock.now()).await;
    BackupResult { id, outcome: Ok(manifest), kept }
}

/// Retention over the cluster's prefix, and abort uploads left by dead agents; the number of
/// complete backups kept, when the store could be listed.
async fn apply_retention(store: &dyn ObjectStore, job: &BackupJob, now: Timestamp) -> Option<i32> {
    let prefix = &job.location.prefix;
    let orphan_age = job.request.deadline.duration_since(job.request.started_at).unsigned_abs() + POLL * 5;
    let entries = match catalog::read(store, prefix).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(%prefix, error = %e, "retention could not list the backups");
            return None;
        }
    };
    // The backup of this job is finished either way: nothing under the prefix is being written.
    let deletions = retention::plan(&entries, now, job.retention_days, orphan_age, None);
    if let Err(e) = retention::apply(store, &deletions).await {
        tracing::warn!(%prefix, error = %e, "retention stopped; the next backup continues it");
    }
    if let Ok(uploads) = store.list_uploads(&format!("{prefix}/")).await {
        for upload in uploads {
            let id = upload.key.strip_prefix(&format!("{prefix}/")).and_then(|r| r.split('/').next());
            let old = id.and_then(manifest::id_time).is_some_and(|t| now.duration_since(t).unsigned_abs() > orphan_age);
            if old && let Err(e) = store.abort_upload(&upload.key, &upload.upload_id).await {
                tracing::warn!(key = %upload.key, error = %e, "could not abort a stale upload");
            }
        }
    }
    let after = catalog::read(store, prefix).await.ok()?;
    i32::try_from(after.iter().filter(|e| e.is_good()).count()).ok()
}
