//! The object store backups live in, as a small trait: the production implementation is S3
//! (`s3.rs`, feature `s3`), the simulation and unit tests use [`MemStore`], whose faults are
//! switched from outside.
//!
//! The trait has only what backups need: whole small objects (manifests), multipart uploads
//! for snapshot files (bounded memory: one part at a time), streaming reads for restore,
//! listing under a prefix and deletion. Errors say what kind of failure it was, so the
//! operator can tell a person whether to fix credentials, the endpoint or the bucket; their
//! messages never contain credentials.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use thiserror::Error;

/// What went wrong talking to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The store could not be reached (DNS, connection, timeout).
    Unreachable,
    /// The store refused the credentials or the request (403, invalid key, signature mismatch).
    Denied,
    /// The bucket does not exist.
    NoSuchBucket,
    /// An upload id the store no longer knows (aborted or expired).
    NoSuchUpload,
    /// Anything else the store answered with.
    Other,
}

/// A failed store operation: the kind, and a message for people (no secrets in it).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{operation} {key}: {message}")]
pub struct StoreError {
    /// What kind of failure.
    pub kind: StoreErrorKind,
    /// The operation (`put`, `get`, `list`, `delete`, `upload part`, ...).
    pub operation: &'static str,
    /// The key or prefix it was about.
    pub key: String,
    /// What the store or the network said.
    pub message: String,
}

impl StoreError {
    /// A new error.
    pub fn new(kind: StoreErrorKind, operation: &'static str, key: &str, message: impl Into<String>) -> Self {
        Self { kind, operation, key: key.to_owned(), message: message.into() }
    }

    /// What a person should do about it, for conditions and events.
    pub fn hint(&self) -> &'static str {
        match self.kind {
            StoreErrorKind::Unreachable => {
                "check spec.snapshot.s3.endpoint and that the pods can reach the store (network policy, DNS)"
            }
            StoreErrorKind::Denied => {
                "check the access-key-id and secret-access-key in the Secret named by spec.snapshot.s3.secretRef and the key's permissions on the bucket"
            }
            StoreErrorKind::NoSuchBucket => "create the bucket, or fix spec.snapshot.s3.bucket and region",
            StoreErrorKind::NoSuchUpload | StoreErrorKind::Other => {
                "see the message; the next scheduled backup retries"
            }
        }
    }
}

/// One object found by [`ObjectStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Full key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// A multipart upload found by [`ObjectStore::list_uploads`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    /// Key being uploaded.
    pub key: String,
    /// The store's upload id.
    pub upload_id: String,
}

/// A part uploaded with [`ObjectStore::upload_part`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// 1-based part number.
    pub number: i32,
    /// The store's ETag for it.
    pub etag: String,
}

/// An object being read, chunk by chunk (memory bounded by the store's chunk size).
#[async_trait]
pub trait ObjectReader: Send {
    /// The next chunk, or `None` at the end.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, StoreError>;
}

/// The operations backups need from an object store. Keys are full keys within one bucket.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Write a small object whole (a manifest), replacing any object of that key.
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError>;
    /// Read a small object whole; `None` when it does not exist.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;
    /// Open an object for reading in chunks; `None` when it does not exist.
    async fn open(&self, key: &str) -> Result<Option<Box<dyn ObjectReader>>, StoreError>;
    /// Every object whose key starts with `prefix`, in key order (all pages).
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;
    /// Delete an object; a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Start a multipart upload of `key`; returns its upload id.
    async fn create_upload(&self, key: &str) -> Result<String, StoreError>;
    /// Upload part `number` (1-based; every part but the last at least 5 MiB on S3).
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, StoreError>;
    /// Complete a multipart upload: the object appears whole, at once.
    async fn complete_upload(&self, key: &str, upload_id: &str, parts: &[CompletedPart]) -> Result<(), StoreError>;
    /// Abort a multipart upload, discarding its parts.
    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), StoreError>;
    /// Multipart uploads in progress under `prefix`.
    async fn list_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>, StoreError>;
}

/// Faults of a [`MemStore`], switched by a test or the simulation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemFaults {
    /// Every call fails as unreachable (after `latency`).
    pub unreachable: bool,
    /// Every call fails as denied (a wrong or revoked credential).
    pub denied: bool,
    /// Every call takes this long first (a slow or distant store).
    pub latency: Duration,
    /// The next this many part uploads fail.
    pub fail_parts: u32,
}

#[derive(Debug, Default)]
struct MemState {
    objects: BTreeMap<String, Bytes>,
    uploads: BTreeMap<String, (String, BTreeMap<i32, Bytes>)>,
    next_upload: u64,
    faults: MemFaults,
    /// Every completed delete, in order (for oracles: what retention removed).
    deleted: Vec<String>,
    /// Every object written or deleted, in order: (`true` for a write, key).
    history: Vec<(bool, String)>,
}

/// An object store in memory, shared by clones. Latency waits on Tokio's clock, so it runs
/// in simulated time under turmoil.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    state: Arc<Mutex<MemState>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Change the faults.
    pub fn set_faults(&self, faults: MemFaults) {
        self.state().faults = faults;
    }

    /// The faults now.
    pub fn faults(&self) -> MemFaults {
        self.state().faults.clone()
    }

    /// Every object, by key (bypasses faults: what is really stored).
    pub fn objects(&self) -> BTreeMap<String, Bytes> {
        self.state().objects.clone()
    }

    /// Store an object directly, bypassing faults (a test's setup).
    pub fn insert(&self, key: &str, body: Bytes) {
        let mut state = self.state();
        state.objects.insert(key.to_owned(), body);
        state.history.push((true, key.to_owned()));
    }

    /// Replace an object's bytes behind everyone's back (a corrupted object).
    pub fn corrupt(&self, key: &str, body: Bytes) {
        self.state().objects.insert(key.to_owned(), body);
    }

    /// Uploads in progress (bypasses faults).
    pub fn pending_uploads(&self) -> usize {
        self.state().uploads.len()
    }

    /// Keys deleted so far, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.state().deleted.clone()
    }

    /// Every object written (`true`) or deleted (`false`), in order.
    pub fn history(&self) -> Vec<(bool, String)> {
        self.state().history.clone()
    }

    async fn enter(&self, operation: &'static str, key: &str) -> Result<(), StoreError> {
        let faults = self.faults();
        if !faults.latency.is_zero() {
            tokio::time::sleep(faults.latency).await;
        }
        if faults.unreachable {
            return Err(StoreError::new(StoreErrorKind::Unreachable, operation, key, "connection refused"));
        }
        if faults.denied {
            return Err(StoreError::new(
                StoreErrorKind::Denied,
                operation,
                key,
                "The AWS Access Key Id you provided does not exist in our records",
            ));
        }
        Ok(())
    }
}

struct MemReader {
    data: Bytes,
}

#[async_trait]
impl ObjectReader for MemReader {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, StoreError> {
        if self.data.is_empty() {
            return Ok(None);
        }
        let n = self.data.len().min(64 * 1024);
        Ok(Some(self.data.split_to(n)))
    }
}

#[async_trait]
impl ObjectStore for MemStore {
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.enter("put", key).await?;
        let mut state = self.state();
        state.objects.insert(key.to_owned(), body);
        state.history.push((true, key.to_owned()));
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.enter("get", key).await?;
        Ok(self.state().objects.get(key).cloned())
    }

    async fn open(&self, key: &str) -> Result<Option<Box<dyn ObjectReader>>, StoreError> {
        self.enter("get", key).await?;
        Ok(self.state().objects.get(key).cloned().map(|data| Box::new(MemReader { data }) as Box<dyn ObjectReader>))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.enter("list", prefix).await?;
        Ok(self
            .state()
            .objects
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| ObjectInfo { key: k.clone(), size: v.len() as u64 })
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.enter("delete", key).await?;
        let mut state = self.state();
        state.objects.remove(key);
        state.deleted.push(key.to_owned());
        state.history.push((false, key.to_owned()));
        Ok(())
    }

    async fn create_upload(&self, key: &str) -> Result<String, StoreError> {
        self.enter("create upload", key).await?;
        let mut state = self.state();
        state.next_upload += 1;
        let id = format!("upload-{}", state.next_upload);
        state.uploads.insert(id.clone(), (key.to_owned(), BTreeMap::new()));
        Ok(id)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, StoreError> {
        self.enter("upload part", key).await?;
        let mut state = self.state();
        if state.faults.fail_parts > 0 {
            state.faults.fail_parts -= 1;
            return Err(StoreError::new(StoreErrorKind::Other, "upload part", key, "InternalError: part lost"));
        }
        let Some((_, parts)) = state.uploads.get_mut(upload_id) else {
            return Err(StoreError::new(StoreErrorKind::NoSuchUpload, "upload part", key, "NoSuchUpload"));
        };
        parts.insert(number, body);
        Ok(CompletedPart { number, etag: format!("\"{upload_id}-{number}\"") })
    }

    async fn complete_upload(&self, key: &str, upload_id: &str, parts: &[CompletedPart]) -> Result<(), StoreError> {
        self.enter("complete upload", key).await?;
        let mut state = self.state();
        let Some((_, stored)) = state.uploads.remove(upload_id) else {
            return Err(StoreError::new(StoreErrorKind::NoSuchUpload, "complete upload", key, "NoSuchUpload"));
        };
        let mut whole = Vec::new();
        for part in parts {
            let Some(body) = stored.get(&part.number) else {
                return Err(StoreError::new(StoreErrorKind::Other, "complete upload", key, "InvalidPart"));
            };
            whole.extend_from_slice(body);
        }
        state.objects.insert(key.to_owned(), Bytes::from(whole));
        state.history.push((true, key.to_owned()));
        Ok(())
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.enter("abort upload", key).await?;
        self.state().uploads.remove(upload_id);
        Ok(())
    }

    async fn list_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>, StoreError> {
        self.enter("list uploads", prefix).await?;
        Ok(self
            .state()
            .uploads
            .iter()
            .filter(|(_, (key, _))| key.starts_with(prefix))
            .map(|(id, (key, _))| UploadInfo { key: key.clone(), upload_id: id.clone() })
            .collect())
    }
}
