//! The header check the agent runs before uploading a snapshot file and the restore runs
//! before installing one (`memgraph-behaviour.md` §10).
//!
//! A Memgraph snapshot starts with the magic `MGsn` and a little-endian u64 format version,
//! followed by the section offsets. A snapshot being written already has its final name, but
//! its offsets are still zero until the writer seeks back at the end; a file whose offsets are
//! all zero is therefore not (yet) a snapshot anyone can load. Each offset is written as a type
//! marker byte followed by eight little-endian bytes.

use thiserror::Error;

/// The magic a snapshot file starts with.
pub const SNAPSHOT_MAGIC: &[u8; 4] = b"MGsn";
/// The oldest snapshot format any supported Memgraph reads.
pub const OLDEST_FORMAT: u64 = 14;
/// The marker written before each encoded unsigned integer (Memgraph's `Marker::TYPE_INT`).
pub const INT_MARKER: u8 = 0x12;
/// Section offsets checked.
pub const OFFSETS: usize = 8;
/// Bytes of a file [`inspect`] needs.
pub const PROBE_LEN: usize = 12 + OFFSETS * 9;

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The snapshot format version.
    pub format_version: u64,
}

/// Why a file is not a complete snapshot.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HeaderError {
    /// Shorter than a header.
    #[error("the file is only {0} bytes long, shorter than a snapshot header")]
    TooShort(usize),
    /// Does not start with `MGsn`.
    #[error("the file does not start with Memgraph's snapshot magic MGsn")]
    NotASnapshot,
    /// A format version no supported Memgraph writes.
    #[error("snapshot format version {0} is not one Memgraph 2.21 or later writes (oldest readable: 14)")]
    UnsupportedFormat(u64),
    /// The section offsets are still zero: Memgraph is writing it, or was killed while it did.
    #[error("the snapshot is incomplete (its section offsets are zero): it is being written or its writer died")]
    Incomplete,
}

/// Check the first [`PROBE_LEN`] bytes of a file (fewer if the file is shorter).
pub fn inspect(head: &[u8]) -> Result<SnapshotHeader, HeaderError> {
    if head.len() < PROBE_LEN {
        return Err(HeaderError::TooShort(head.len()));
    }
    if &head[..4] != SNAPSHOT_MAGIC {
        return Err(HeaderError::NotASnapshot);
    }
    let mut version = [0u8; 8];
    version.copy_from_slice(&head[4..12]);
    let format_version = u64::from_le_bytes(version);
    if !(OLDEST_FORMAT..=1_000).contains(&format_version) {
        return Err(HeaderError::UnsupportedFormat(format_version));
    }
    let offsets = &head[12..PROBE_LEN];
    let any_set = offsets.chunks(9).any(|field| field[1..].iter().any(|b| *b != 0));
    if !any_set {
        return Err(HeaderError::Incomplete);
    }
    Ok(SnapshotHeader { format_version })
}

/// A header with the given offsets, as Memgraph lays it out (for fakes and tests).
pub fn encode(format_version: u64, offsets: [u64; OFFSETS]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PROBE_LEN);
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&format_version.to_le_bytes());
    for offset in offsets {
        out.push(INT_MARKER);
        out.extend_from_slice(&offset.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_header_passes_and_says_its_version() {
        let head = encode(27, [0, 96, 200, 300, 400, 500, 0, 600]);
        assert_eq!(inspect(&head), Ok(SnapshotHeader { format_version: 27 }));
    }

    #[test]
    fn partial_foreign_and_short_files_are_refused() {
        assert_eq!(inspect(&encode(27, [0; OFFSETS])), Err(HeaderError::Incomplete));
        let mut wal = encode(27, [1; OFFSETS]);
        wal[..4].copy_from_slice(b"MGwl");
        assert_eq!(inspect(&wal), Err(HeaderError::NotASnapshot));
        assert_eq!(inspect(b"MGsn"), Err(HeaderError::TooShort(4)));
        assert_eq!(inspect(&encode(3, [1; OFFSETS])), Err(HeaderError::UnsupportedFormat(3)));
    }
}
