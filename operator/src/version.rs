//! Memgraph versions, as far as the operator needs them: which replication features exist.

use std::fmt;

/// A Memgraph release `major.minor.patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemgraphVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl MemgraphVersion {
    /// Version `major.minor.patch`.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self { major, minor, patch }
    }

    /// First release with `STRICT_SYNC` replicas.
    pub const STRICT_SYNC: Self = Self::new(3, 5, 0);

    /// First release that serves `SHOW REPLICAS` from cached state instead of a live heartbeat
    /// RPC to every replica (which, on older releases, waits on a replica that does not answer).
    pub const CACHED_SHOW_REPLICAS: Self = Self::new(3, 1, 0);

    /// Whether `SHOW REPLICAS` makes a live RPC per replica (2.21–3.0).
    pub fn live_show_replicas(self) -> bool {
        self < Self::CACHED_SHOW_REPLICAS
    }

    /// Whether this version accepts `REGISTER REPLICA ... STRICT_SYNC`.
    pub fn supports_strict_sync(self) -> bool {
        self >= Self::STRICT_SYNC
    }

    /// Parse `3.12.0`, `v3.12`, `2.21.1-relwithdebinfo`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.strip_prefix('v').unwrap_or(text);
        let core = text.split(['-', '+', '_']).next()?;
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Self::new(major, minor, patch))
    }

    /// The version named by an image reference's tag, when the tag is a version
    /// (`memgraph/memgraph:3.12.0`, `reg:5000/memgraph/memgraph-mage:3.5.1-memgraph-3.5.1`).
    /// Digests and tags such as `latest` give `None`.
    pub fn from_image(image: &str) -> Option<Self> {
        let without_digest = image.split('@').next()?;
        let last_segment = without_digest.rsplit('/').next()?;
        let (_, tag) = last_segment.split_once(':')?;
        // MAGE tags carry the Memgraph version after "memgraph-".
        let tag = tag.rsplit_once("memgraph-").map_or(tag, |(_, v)| v);
        Self::parse(tag)
    }
}

impl fmt::Display for MemgraphVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_images() {
        let cases = [
            ("memgraph/memgraph:3.12.0", Some((3, 12, 0))),
            ("memgraph/memgraph:2.21.0", Some((2, 21, 0))),
            ("docker.io/memgraph/memgraph:3.5", Some((3, 5, 0))),
            ("reg.local:5000/memgraph/memgraph:3.4.1-relwithdebinfo", Some((3, 4, 1))),
            ("memgraph/memgraph-mage:3.5.1-memgraph-3.6.0", Some((3, 6, 0))),
            ("memgraph/memgraph:latest", None),
            ("memgraph/memgraph", None),
            ("reg.local:5000/memgraph/memgraph", None),
            ("memgraph/memgraph@sha256:abcdef", None),
            ("memgraph/memgraph:3.12.0@sha256:abcdef", Some((3, 12, 0))),
        ];
        for (image, want) in cases {
            let want = want.map(|(a, b, c)| MemgraphVersion::new(a, b, c));
            assert_eq!(MemgraphVersion::from_image(image), want, "{image}");
        }
    }

    #[test]
    fn strict_sync_needs_3_5() {
        assert!(!MemgraphVersion::new(3, 4, 9).supports_strict_sync());
        assert!(MemgraphVersion::new(3, 5, 0).supports_strict_sync());
        assert!(MemgraphVersion::new(3, 12, 0).supports_strict_sync());
        assert!(!MemgraphVersion::new(2, 21, 0).supports_strict_sync());
    }
}
