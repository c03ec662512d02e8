//! The clusters of a run, drawn from its seed: how many share the operator, and each one's
//! Memgraph release, replication mode and durability policy, snapshot schedule and size.

use serde::Serialize;
use serde_json::{Value, json};

use super::rng::Rng;

/// Cluster names, in order.
pub const NAMES: [&str; 3] = ["g", "h", "k"];

/// Releases a run draws from, oldest first: blocking `SHOW REPLICAS` (2.21, 3.0), the pre-3.5
/// snapshot error (3.4), and the current ones.
pub const VERSIONS: [&str; 6] = ["2.21.0", "3.0.0", "3.4.0", "3.10.0", "3.11.0", "3.12.0"];

/// Snapshot schedules a run draws from (the snapshot oracle knows exactly these).
pub const SCHEDULES: [&str; 4] = ["* * * * *", "*/2 * * * *", "*/5 * * * *", "*/15 * * * *"];

/// The image of a release.
pub fn image(version: &str) -> String {
    format!("memgraph/memgraph:{version}")
}

/// The release of an image the world made, if any.
pub fn version_of(image: &str) -> Option<&str> {
    VERSIONS.iter().copied().find(|v| image.ends_with(&format!(":{v}")))
}

/// Whether a release supports STRICT_SYNC (3.5+).
pub fn has_strict_sync(version: &str) -> bool {
    VERSIONS.iter().position(|v| *v == version).is_some_and(|i| i >= 3)
}

/// How one cluster starts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setup {
    /// Its name.
    pub name: String,
    /// Memgraph release.
    pub version: String,
    /// `ASYNC`, `SYNC` or `STRICT_SYNC`.
    pub mode: String,
    /// `Required` or `Preferred`.
    pub durability: String,
    /// Snapshot schedule.
    pub schedule: String,
    /// Read replicas.
    pub replicas: i32,
    /// Backups to the world's object store (`spec.snapshot.s3`).
    pub backups: bool,
    /// Automatic failover (`spec.failover.enabled`, the default detection delay).
    pub failover: bool,
}

impl Setup {
    /// The cluster object to create.
    pub fn object(&self, namespace: &str) -> Value {
        json!({
            "apiVersion": "memgraph.io/v1alpha1",
            "kind": "MemgraphCluster",
            "metadata": {"name": self.name, "namespace": namespace},
            "spec": {
                // Every acknowledged write is durable on the MAIN (fsync per transaction), so a
                // lost acknowledged write is a real loss, not WAL batching.
                "write": {"image": image(&self.version), "config": {"walFlushEveryNTx": 1}},
                "read": {"replicas": self.replicas},
                "replication": {"mode": self.mode, "dataDurability": self.durability},
                "snapshot": self.snapshot(),
                "failover": {"enabled": self.failover, "detectionDelaySeconds": FAILOVER_DELAY_SECONDS},
            },
        })
    }

    fn snapshot(&self) -> Value {
        if !self.backups {
            return json!({"schedule": self.schedule});
        }
        json!({
            "schedule": self.schedule,
            "s3": {
                "enabled": true,
                "bucket": super::backups::BUCKET,
                "endpoint": "http://object-store.sim:9000",
                "prefix": format!("backups/{}", self.name),
                "secretRef": {"name": super::backups::CREDENTIALS_SECRET},
                // Short enough that a stuck backup is seen within a run.
                "timeoutSeconds": 120,
                "retentionDays": 1,
            },
        })
    }
}

/// The detection delay of the clusters with failover (the spec's default).
pub const FAILOVER_DELAY_SECONDS: u64 = 5;

/// Which clusters fail over automatically: with `on` (the default, or with `--no-failover` a
/// run that may draw a fault class aimed at the MAIN), half of them, drawn from a stream of
/// their own so that the other draws of a seed stay what they were before failover existed.
pub fn draw_failover(rng: &mut Rng, setups: &mut [Setup], on: bool) {
    for setup in setups.iter_mut() {
        setup.failover = on && rng.chance(0.5);
    }
}

/// Which clusters back up: drawn from a stream of its own, so the other draws of a seed stay
/// what they were before backups existed.
pub fn draw_backups(rng: &mut Rng, setups: &mut [Setup]) {
    for setup in setups.iter_mut() {
        setup.backups = rng.chance(0.75);
    }
    // Every run has backups to judge, and to bootstrap a cluster from.
    if setups.iter().all(|s| !s.backups)
        && let Some(first) = setups.first_mut()
    {
        first.backups = true;
    }
}

/// Draw the clusters of a run. `count` forces how many (else 1, 2 or 3 from the seed);
/// the first cluster has `replicas` read replicas, the others two each.
pub fn draw(rng: &mut Rng, count: Option<usize>, replicas: i32) -> Vec<Setup> {
    let count = count.unwrap_or_else(|| match rng.below(20) {
        0..=11 => 1,
        12..=16 => 2,
        _ => 3,
    });
    (0..count.clamp(1, NAMES.len()))
        .map(|i| {
            // Half the runs use the newest release, the rest spread over the others.
            let version = if rng.chance(0.5) {
                VERSIONS[VERSIONS.len() - 1]
            } else {
                VERSIONS[usize::try_from(rng.below(VERSIONS.len() as u64 - 1)).unwrap_or(0)]
            };
            let mode = match rng.below(10) {
                0..=4 => "ASYNC",
                5..=7 => "SYNC",
                _ if has_strict_sync(version) => "STRICT_SYNC",
                _ => "SYNC",
            };
            let durability = if rng.chance(0.6) { "Required" } else { "Preferred" };
            let schedule = SCHEDULES[usize::try_from(rng.below(SCHEDULES.len() as u64)).unwrap_or(0)];
            Setup {
                name: NAMES[i].to_owned(),
                version: version.to_owned(),
                mode: mode.to_owned(),
                durability: durability.to_owned(),
                schedule: schedule.to_owned(),
                replicas: if i == 0 { replicas } else { 2 },
                backups: false,
                failover: false,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_deterministic_and_consistent() {
        let a = draw(&mut Rng::new(5), None, 3);
        assert_eq!(a, draw(&mut Rng::new(5), None, 3));
        let mut seen_versions = std::collections::BTreeSet::new();
        let mut counts = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let setups = draw(&mut Rng::new(seed), None, 3);
            counts.insert(setups.len());
            for s in setups {
                seen_versions.insert(s.version.clone());
                assert!(s.mode != "STRICT_SYNC" || has_strict_sync(&s.version), "{s:?}");
                assert_eq!(version_of(&image(&s.version)), Some(s.version.as_str()));
            }
        }
        assert_eq!(seen_versions.len(), VERSIONS.len());
        assert_eq!(counts, [1, 2, 3].into());
    }
}
