//! `memgraph-operator backups list`: the backups of a prefix, for a person choosing one to
//! restore. Only prefixes with a manifest are backups; the others are counted, not listed.

use super::catalog::{self, Entry};
use super::store::{ObjectStore, StoreError};
use super::upload::hex;

/// Whether a backup's data matches its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// The snapshot object has the manifest's size (not read).
    SizeMatches,
    /// The snapshot object was read and its SHA-256 matches.
    ChecksumMatches,
    /// It does not: why.
    Bad(String),
}

impl std::fmt::Display for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verified::SizeMatches => write!(f, "size"),
            Verified::ChecksumMatches => write!(f, "sha256"),
            Verified::Bad(why) => write!(f, "BAD: {why}"),
        }
    }
}

/// Read a backup's snapshot object and compare its SHA-256 with the manifest's.
pub async fn verify_checksum(store: &dyn ObjectStore, prefix: &str, entry: &Entry) -> Result<Verified, StoreError> {
    let Some(m) = &entry.manifest else { return Ok(Verified::Bad("no manifest".to_owned())) };
    let key = super::manifest::snapshot_key(prefix, &entry.id, &m.snapshot.name);
    let Some(mut reader) = store.open(&key).await? else {
        return Ok(Verified::Bad("snapshot object missing".to_owned()));
    };
    let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
    let mut size = 0u64;
    while let Some(chunk) = reader.next_chunk().await? {
        size += chunk.len() as u64;
        sha.update(&chunk);
    }
    let digest = hex(sha.finish().as_ref());
    Ok(if size != m.snapshot.size_bytes {
        Verified::Bad(format!("{size} bytes, manifest says {}", m.snapshot.size_bytes))
    } else if digest != m.snapshot.sha256 {
        Verified::Bad("SHA-256 differs from the manifest".to_owned())
    } else {
        Verified::ChecksumMatches
    })
}

/// The table `backups list` prints, newest first.
pub async fn table(store: &dyn ObjectStore, prefix: &str, verify: bool) -> Result<String, StoreError> {
    let entries = catalog::read(store, prefix).await?;
    let mut rows = vec![[
        "ID".to_owned(),
        "FINISHED".to_owned(),
        "SIZE".to_owned(),
        "MEMGRAPH".to_owned(),
        "SNAPSHOT".to_owned(),
        "VERIFIED".to_owned(),
    ]];
    let mut incomplete = 0;
    for entry in entries.iter().rev() {
        let Some(m) = &entry.manifest else {
            incomplete += 1;
            continue;
        };
        let verified = if !entry.is_good() {
            Verified::Bad("snapshot object missing or of the wrong size".to_owned())
        } else if verify {
            verify_checksum(store, prefix, entry).await?
        } else {
            Verified::SizeMatches
        };
        rows.push([
            entry.id.clone(),
            m.finished_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            m.snapshot.size_bytes.to_string(),
            m.memgraph_version.clone(),
            m.snapshot.name.clone(),
            verified.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..6).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if rows.len() == 1 {
        out.push_str(&format!("no backups under {prefix}/\n"));
    }
    if incomplete > 0 {
        out.push_str(&format!(
            "{incomplete} prefix(es) without a manifest (uploads that failed or are running) are not backups and are not listed\n"
        ));
    }
    Ok(out)
}
