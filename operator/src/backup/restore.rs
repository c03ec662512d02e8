//! `memgraph-operator restore`: the write pod's init container when the cluster is
//! bootstrapped from a backup (`spec.bootstrap.fromBackup`). On an empty volume it downloads
//! the backup's snapshot to a staging file in the operator's own directory on the volume
//! (never Memgraph's `tmp/`, which Memgraph wipes at start), checks its SHA-256, size and
//! header, refuses a snapshot written by a newer Memgraph than the one about to load it, moves
//! it into `snapshots/` under its original name, and writes a marker. On a volume holding a
//! marker it does nothing; on a volume holding other data it fails without touching anything.
//! Read replicas are never restored: they start empty and the MAIN sends them its data.

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::catalog;
use super::header;
use super::manifest::{self, Manifest};
use super::store::{ObjectStore, StoreError};
use super::upload::hex;
use super::volume::Volume;
use crate::version::MemgraphVersion;

/// The marker a finished restore leaves in the state directory.
pub const MARKER: &str = "restored.json";
const STAGING: &str = "restore.partial";

/// Which backup to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The newest complete backup under the prefix.
    Latest,
    /// This backup id.
    Id(String),
}

impl Selector {
    /// `latest` or an id.
    pub fn parse(text: &str) -> Self {
        if text.is_empty() || text == "latest" { Selector::Latest } else { Selector::Id(text.to_owned()) }
    }
}

/// What the marker records.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Marker {
    /// The backup restored.
    pub backup_id: String,
    /// Its snapshot file.
    pub snapshot: String,
    /// Its SHA-256.
    pub sha256: String,
    /// When.
    pub restored_at: Timestamp,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The volume was restored now.
    Restored(Marker),
    /// The volume was restored before (its marker is there): nothing done.
    AlreadyRestored(Marker),
}

/// Why a restore refused or failed. Nothing on the volume is deleted in any case but the
/// staging file of this restore.
#[derive(Debug, Error)]
pub enum RestoreError {
    /// The volume holds data and no marker.
    #[error(
        "the data volume already holds Memgraph data that was not restored by this operator; refusing to overwrite it. \
         Remove spec.bootstrap, or delete the write pod's PersistentVolumeClaim if that data is not wanted"
    )]
    VolumeNotEmpty,
    /// No such backup.
    #[error("no complete backup {0} under the prefix; run `memgraph-operator backups list` to see the backups there")]
    NotFound(String),
    /// The prefix holds no complete backup.
    #[error("the prefix holds no complete backup to restore")]
    NoBackup,
    /// Written by a newer Memgraph.
    #[error(
        "backup {id} was written by Memgraph {backup}, newer than this cluster's {image}: an older Memgraph cannot load \
         it. Use an image of {backup} or later"
    )]
    TooNew {
        /// The backup.
        id: String,
        /// Its version.
        backup: String,
        /// The cluster's image version.
        image: String,
    },
    /// The downloaded data does not match the manifest.
    #[error("backup {id} is corrupt: {what}; it was not installed")]
    Corrupt {
        /// The backup.
        id: String,
        /// What does not match.
        what: String,
    },
    /// The store failed.
    #[error("object store: {0}; {hint}", hint = .0.hint())]
    Store(#[from] StoreError),
    /// The volume failed.
    #[error("data volume: {0}")]
    Volume(#[from] std::io::Error),
}

fn newer(backup: &str, image: Option<MemgraphVersion>) -> Option<(String, String)> {
    let (b, i) = (MemgraphVersion::parse(backup)?, image?);
    (b > i).then(|| (b.to_string(), i.to_string()))
}

/// Restore the volume from the backup `selector` names under `prefix`.
pub async fn restore(
    store: &dyn ObjectStore,
    volume: &dyn Volume,
    prefix: &str,
    selector: &Selector,
    image: Option<MemgraphVersion>,
    now: Timestamp,
) -> Result<Outcome, RestoreError> {
    if let Some(data) = volume.read_state(MARKER).await? {
        let marker: Marker = serde_json::from_slice(&data).map_err(std::io::Error::other)?;
        return Ok(Outcome::AlreadyRestored(marker));
    }
    if volume.holds_data().await? {
        return Err(RestoreError::VolumeNotEmpty);
    }
    let entries = catalog::read(store, prefix).await?;
    let entry = match selector {
        Selector::Latest => catalog::newest_good(&entries).ok_or(RestoreError::NoBackup)?,
        Selector::Id(id) => {
            entries.iter().find(|e| &e.id == id && e.is_good()).ok_or_else(|| RestoreError::NotFound(id.clone()))?
        }
    };
    let m: &Manifest = entry.manifest.as_ref().ok_or(RestoreError::NoBackup)?;
    if let Some((backup, image)) = newer(&m.memgraph_version, image) {
        return Err(RestoreError::TooNew { id: m.backup_id.clone(), backup, image });
    }
    let corrupt = |what: String| RestoreError::Corrupt { id: m.backup_id.clone(), what };
    let key = manifest::snapshot_key(prefix, &entry.id, &m.snapshot.name);
    let mut reader = store.open(&key).await?.ok_or_else(|| corrupt("its snapshot object is missing".to_owned()))?;
    let mut file = volume.create_staging(STAGING).await?;
    let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
    let mut head = Vec::with_capacity(header::PROBE_LEN);
    let mut size = 0u64;
    while let Some(chunk) = reader.next_chunk().await? {
        if head.len() < header::PROBE_LEN {
            let take = (header::PROBE_LEN - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        sha.update(&chunk);
        size += chunk.len() as u64;
        file.write(&chunk).await?;
    }
    file.sync().await?;
    drop(file);
    let digest = hex(sha.finish().as_ref());
    let check = if size != m.snapshot.size_bytes {
        Err(corrupt(format!("{size} bytes downloaded, the manifest says {}", m.snapshot.size_bytes)))
    } else if digest != m.snapshot.sha256 {
        Err(corrupt("its SHA-256 differs from the manifest's".to_owned()))
    } else {
        header::inspect(&head).map(|_| ()).map_err(|e| corrupt(e.to_string()))
    };
    if let Err(e) = check {
        volume.remove_state(STAGING).await?;
        return Err(e);
    }
    volume.install_snapshot(STAGING, &m.snapshot.name).await?;
    let marker =
        Marker { backup_id: m.backup_id.clone(), snapshot: m.snapshot.name.clone(), sha256: digest, restored_at: now };
    volume.write_state(MARKER, &serde_json::to_vec(&marker).map_err(std::io::Error::other)?).await?;
    Ok(Outcome::Restored(marker))
}
