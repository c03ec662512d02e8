//! Uploading one snapshot file as a backup: check its header, stream it to a multipart upload
//! one part at a time while computing its SHA-256, and write the manifest last. A failed
//! upload is aborted, so it leaves no parts behind; a backup past its deadline writes no
//! manifest, so it never becomes a backup after the operator has reported it failed.

use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;
use ring::digest;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::header::{self, HeaderError};
use super::manifest::{self, ClusterRef, Manifest, SnapshotRef};
use super::store::{CompletedPart, ObjectStore, StoreError};
use super::volume::Volume;
use crate::clock::Clock;

/// Default part size: 16 MiB keeps 1,000 parts (the cap of some stores) above 15 GiB.
pub const DEFAULT_PART_SIZE: usize = 16 * 1024 * 1024;
/// The smallest part S3 accepts (except the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// What the operator asks the agent to back up.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackupRequest {
    /// The backup id.
    pub id: String,
    /// The cluster.
    pub cluster: ClusterRef,
    /// The Memgraph version running (recorded in the manifest).
    pub memgraph_version: String,
    /// The snapshot file to upload, when the operator could tell which one `CREATE SNAPSHOT`
    /// wrote; otherwise the newest complete snapshot on the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The key prefix of the cluster's backups.
    pub prefix: String,
    /// When the backup started.
    pub started_at: Timestamp,
    /// After this the backup is abandoned and no manifest is written.
    pub deadline: Timestamp,
}

/// Why a backup failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum BackupError {
    /// The volume holds no complete snapshot.
    #[error("no complete snapshot file in snapshots/ to back up")]
    NoSnapshot,
    /// The named snapshot is gone (Memgraph's retention deleted it before it was opened).
    #[error(
        "snapshot {0} is no longer on the volume (Memgraph's retention removed it); the next backup takes a newer one"
    )]
    SnapshotGone(String),
    /// The file failed the header check.
    #[error("snapshot {name} refused: {error}")]
    BadSnapshot {
        /// File name.
        name: String,
        /// What is wrong.
        error: HeaderError,
    },
    /// Reading the volume failed.
    #[error("reading the data volume: {0}")]
    Volume(String),
    /// The store failed.
    #[error("object store: {error}; {hint}")]
    Store {
        /// The failure.
        error: StoreError,
        /// What to do about it.
        hint: &'static str,
    },
    /// The deadline passed.
    #[error("did not finish before its deadline {0}; the next scheduled backup tries again")]
    Deadline(Timestamp),
    /// The prefix holds another cluster's backups.
    #[error(
        "the prefix {prefix} holds backups of another cluster ({other}); set spec.snapshot.s3.prefix to a prefix of this cluster's own"
    )]
    ForeignPrefix {
        /// The prefix.
        prefix: String,
        /// The other cluster (namespace/name uid).
        other: String,
    },
}

impl From<StoreError> for BackupError {
    fn from(error: StoreError) -> Self {
        let hint = error.hint();
        BackupError::Store { error, hint }
    }
}

fn volume_error(e: std::io::Error) -> BackupError {
    BackupError::Volume(e.to_string())
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The newest complete snapshot on the volume (by name, which starts with its creation time,
/// as Memgraph's recovery orders them).
pub async fn newest_complete(volume: &dyn Volume) -> Result<String, BackupError> {
    let mut names: Vec<String> = volume
        .snapshot_names()
        .await
        .map_err(volume_error)?
        .into_iter()
        .filter(|n| manifest::durable_timestamp(n).is_some())
        .collect();
    names.sort();
    while let Some(name) = names.pop() {
        let Some(mut file) = volume.open_snapshot(&name).await.map_err(volume_error)? else { continue };
        let mut head = vec![0u8; header::PROBE_LEN];
        let n = read_full(file.as_mut(), &mut head).await.map_err(volume_error)?;
        if header::inspect(&head[..n]).is_ok() {
            return Ok(name);
        }
    }
    Err(BackupError::NoSnapshot)
}

async fn read_full(file: &mut dyn super::volume::OpenFile, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Upload the snapshot of `request` and write its manifest. Memory use is one part.
pub async fn upload(
    store: &dyn ObjectStore,
    volume: &dyn Volume,
    clock: &dyn Clock,
    request: &BackupRequest,
    part_size: usize,
) -> Result<Manifest, BackupError> {
    let name = match &request.snapshot {
        Some(name) => name.clone(),
        None => newest_complete(volume).await?,
    };
    let durable_timestamp =
        manifest::durable_timestamp(&name).ok_or_else(|| BackupError::SnapshotGone(name.clone()))?;
    // Opened first: Memgraph's retention may unlink it now and the copy still completes.
    let mut file = volume
        .open_snapshot(&name)
        .await
        .map_err(volume_error)?
        .ok_or_else(|| BackupError::SnapshotGone(name.clone()))?;
    let part_size = part_size.max(header::PROBE_LEN);
    let mut buf = vec![0u8; part_size];
    let n = read_full(file.as_mut(), &mut buf).await.map_err(volume_error)?;
    let head = header::inspect(&buf[..n.min(header::PROBE_LEN)])
        .map_err(|error| BackupError::BadSnapshot { name: name.clone(), error })?;
    let key = manifest::snapshot_key(&request.prefix, &request.id, &name);
    let upload_id = store.create_upload(&key).await?;
    let streamed = stream_parts(store, file.as_mut(), clock, request, &key, &upload_id, buf, n).await;
    let (parts, size, sha) = match streamed {
        Ok(done) => done,
        Err(e) => {
            if let Err(abort) = store.abort_upload(&key, &upload_id).await {
                tracing::warn!(%key, error = %abort, "could not abort the failed upload; the next retention pass does");
            }
            return Err(e);
        }
    };
    store.complete_upload(&key, &upload_id, &parts).await?;
    let finished_at = clock.now();
    if finished_at > request.deadline {
        // The data stays without a manifest: not a backup, and cleaned up as an orphan.
        return Err(BackupError::Deadline(request.deadline));
    }
    let manifest = Manifest {
        format: manifest::FORMAT,
        backup_id: request.id.clone(),
        cluster: request.cluster.clone(),
        memgraph_version: request.memgraph_version.clone(),
        snapshot: SnapshotRef {
            name,
            size_bytes: size,
            sha256: sha,
            durable_timestamp,
            format_version: head.format_version,
        },
        started_at: request.started_at,
        finished_at,
    };
    let body = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Volume(e.to_string()))?;
    store.put(&manifest::manifest_key(&request.prefix, &request.id), Bytes::from(body)).await?;
    Ok(manifest)
}

#[allow(clippy::too_many_arguments)]
async fn stream_parts(
    store: &dyn ObjectStore,
    file: &mut dyn super::volume::OpenFile,
    clock: &dyn Clock,
    request: &BackupRequest,
    key: &str,
    upload_id: &str,
    mut buf: Vec<u8>,
    mut filled: usize,
) -> Result<(Vec<CompletedPart>, u64, String), BackupError> {
    let mut sha = digest::Context::new(&digest::SHA256);
    let mut parts = Vec::new();
    let mut size = 0u64;
    loop {
        if clock.now() > request.deadline {
            return Err(BackupError::Deadline(request.deadline));
        }
        sha.update(&buf[..filled]);
        size += filled as u64;
        let number = i32::try_from(parts.len() + 1).unwrap_or(i32::MAX);
        let body = Bytes::copy_from_slice(&buf[..filled]);
        parts.push(store.upload_part(key, upload_id, number, body).await?);
        if filled < buf.len() {
            break;
        }
        filled = read_full(file, &mut buf).await.map_err(volume_error)?;
        if filled == 0 {
            break;
        }
    }
    Ok((parts, size, hex(sha.finish().as_ref())))
}
