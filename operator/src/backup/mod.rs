//! Backups of the MAIN's snapshots to an object store, their retention, and restore
//! (DESIGN §5, `memgraph-behaviour.md` §10).
//!
//! - [`store`]: the object store trait, and an in-memory store for tests and the simulation.
//! - `s3` (feature `s3`): the production store on aws-sdk-s3.
//! - [`header`], [`manifest`]: what a snapshot file and a backup are.
//! - [`upload`], [`agent`]: the sidecar that uploads, and how the operator asks it to.
//! - [`catalog`], [`retention`]: what the store holds and what to delete.
//! - [`volume`]: the data volume as the agent and the restore see it.

pub mod agent;
pub mod catalog;
pub mod header;
pub mod listing;
pub mod manifest;
pub mod restore;
pub mod retention;
#[cfg(feature = "s3")]
pub mod s3;
pub mod store;
pub mod upload;
pub mod volume;

use std::fmt;

/// Where backups of a cluster are kept: a bucket, and a key prefix within it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreLocation {
    /// Bucket name.
    pub bucket: String,
    /// Region (S3 needs one even for stores that ignore it).
    pub region: String,
    /// Endpoint URL of an S3-compatible store; `None` is AWS. With an endpoint, requests use
    /// path-style addressing and send checksums only when the operation requires them.
    pub endpoint: Option<String>,
    /// Key prefix, without a trailing `/`.
    pub prefix: String,
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)?;
        if let Some(endpoint) = &self.endpoint {
            write!(f, " at {endpoint}")?;
        }
        Ok(())
    }
}

/// Static credentials for the store. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests;
