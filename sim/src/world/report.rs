//! What a run reports: per-cluster figures (availability, freshness, durability, snapshots,
//! cost) and, on request, the picture of the run as lanes over simulated time.

use std::collections::BTreeMap;
use std::time::Duration;

use fake_memgraph::{ReplicaState, Role};
use serde::Serialize;

use super::clusters::Setup;
use super::oracles::availability::{Outage, Served};
use super::oracles::economy::Cost;
use super::oracles::reads::Freshness;
use super::oracles::snapshots::SnapshotCount;
use super::oracles::writes::Durability;
use super::oracles::{Violation, ms};
use super::picture::{Band, LaneBuilder, Mark, MarkKind, Picture, Tone};
use super::truth::{ClusterTruth, read_index};
use super::workload::{Kind, SharedLedger};

/// Figures of one cluster over a run.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    /// How it started.
    pub setup: Setup,
    /// Writes through the write Service.
    pub writes: Served,
    /// Reads through the read Service.
    pub reads: Served,
    /// Stretches of at least a second in which every request of a kind failed.
    pub outages: Vec<Outage>,
    /// Read staleness.
    pub freshness: Freshness,
    /// Acknowledged writes and their fate.
    pub durability: Durability,
    /// Snapshots against the schedule.
    pub snapshots: SnapshotCount,
    /// Backups, when the cluster takes them.
    pub backups: Option<super::oracles::backups::BackupCount>,
    /// Reconciles and API writes.
    pub cost: Cost,
    /// Time from the end of the faults until it equalled a fresh deploy.
    pub convergence_ms: Option<u64>,
    /// Each loss of the MAIN and the time until a write was acknowledged again.
    pub recoveries: Vec<super::oracles::failover::Recovery>,
    /// Acknowledged writes lost.
    pub rpo: super::oracles::failover::Rpo,
}

/// The picture's lanes, sampled as the run goes (only when a picture is wanted).
#[derive(Default)]
pub struct Lanes {
    /// Whether to sample at all.
    pub enabled: bool,
    order: Vec<String>,
    builders: BTreeMap<String, LaneBuilder>,
    seen: BTreeMap<(String, Kind), usize>,
    marks: Vec<(Option<String>, u64, String, MarkKind)>,
}

fn pod_state(cluster: &str, name: &str, truth: &ClusterTruth) -> (String, Tone) {
    let Some(p) = truth.pods.get(name) else { return ("gone".into(), Tone::Off) };
    let role = match p.role {
        Some(Role::Main) => "MAIN",
        Some(Role::Replica) => "REPLICA",
        None => "down",
    };
    let label = p.label.as_deref().unwrap_or("-");
    let ready = if p.hung {
        "frozen"
    } else if p.terminating {
        "terminating"
    } else if p.ready {
        "ready"
    } else {
        "not ready"
    };
    let usable = match read_index(cluster, name) {
        Some(i) => truth.replica_usable(cluster, i),
        None => truth.write_usable(cluster),
    };
    let labelled = p.label.is_some();
    let tone = match (labelled, usable) {
        (true, true) => Tone::Good,
        (true, false) if p.routable() => Tone::Bad,
        (false, true) => Tone::Warn,
        _ if !p.ready => Tone::Off,
        _ => Tone::Neutral,
    };
    (format!("{role} · {label} · {ready}"), tone)
}

impl Lanes {
    fn lane(&mut self, name: String, group: &str) -> &mut LaneBuilder {
        if !self.builders.contains_key(&name) {
            self.order.push(name.clone());
        }
        self.builders.entry(name.clone()).or_insert_with(|| LaneBuilder::new(name, group))
    }

    /// Sample one cluster.
    pub fn sample(&mut self, now: Duration, cluster: &str, truth: &ClusterTruth, ledger: &SharedLedger) {
        if !self.enabled {
            return;
        }
        let at = ms(now);
        for kind in [Kind::Write, Kind::Read] {
            let key = (cluster.to_owned(), kind);
            let from = self.seen.get(&key).copied().unwrap_or(0);
            let (state, upto) = match ledger.lock() {
                Ok(l) => {
                    let last = l.attempts.iter().skip(from).rev().find(|a| a.kind == kind).cloned();
                    (last, l.attempts.len())
                }
                Err(_) => (None, from),
            };
            self.seen.insert(key, upto);
            let name = format!("{cluster} {}", if kind == Kind::Write { "writes" } else { "reads" });
            if let Some(a) = state {
                let (text, tone) = match &a.error {
                    None => ("served".to_owned(), Tone::Good),
                    Some(e) => (format!("failing: {e}"), Tone::Bad),
                };
                self.lane(name, cluster).sample(at, &text, tone);
            } else {
                self.lane(name, cluster);
            }
        }
        let phase = truth.status.as_ref().and_then(|s| s["phase"].as_str()).unwrap_or("-").to_owned();
        let tone = match phase.as_str() {
            "Running" => Tone::Good,
            "Failed" => Tone::Bad,
            "-" => Tone::Off,
            _ => Tone::Warn,
        };
        self.lane(format!("{cluster} phase"), cluster).sample(at, &phase, tone);
        let mut pods: Vec<&String> = truth.pods.keys().collect();
        pods.sort_by_key(|p| (read_index(cluster, p), (*p).clone()));
        for pod in pods {
            let (text, tone) = pod_state(cluster, pod, truth);
            self.lane(pod.clone(), pod).sample(at, &text, tone);
            if let Some(i) = read_index(cluster, pod) {
                let row = truth.rows.get(&format!("read_{i}"));
                let (text, tone) = match row {
                    None => ("not registered".to_owned(), Tone::Off),
                    Some(r) if r.healthy() => (format!("in sync ({})", r.mode), Tone::Good),
                    Some(r) if r.state == Some(ReplicaState::Diverged) => ("diverged".to_owned(), Tone::Bad),
                    Some(r) => (format!("{:?} ({})", r.state, r.mode), Tone::Warn),
                };
                self.lane(format!("{pod} registration"), pod).sample(at, &text, tone);
            }
        }
    }

    /// Mark a violation.
    pub fn violation(&mut self, v: &Violation) {
        if self.enabled {
            self.marks.push((None, v.at_ms, v.to_string(), MarkKind::Violation));
        }
    }

    /// Mark an instant on a cluster's lane (`writes`, `reads`, `phase`).
    pub fn mark(&mut self, lane: String, at_ms: u64, text: String, kind: MarkKind) {
        if self.enabled {
            self.marks.push((Some(lane), at_ms, text, kind));
        }
    }

    /// Draw the run.
    pub fn picture(self, title: String, end_ms: u64, bands: &[(Duration, Duration, String)]) -> Picture {
        let mut picture = Picture::new(title, end_ms);
        let mut builders = self.builders;
        for name in &self.order {
            if let Some(b) = builders.remove(name) {
                picture.push_lane(b.finish(end_ms));
            }
        }
        for (start, end, text) in bands {
            picture.bands.push(Band { start_ms: ms(*start), end_ms: ms(*end).min(end_ms), text: text.clone() });
        }
        for (lane, at_ms, text, kind) in self.marks {
            let lane = lane.and_then(|l| picture.lane_index(&l));
            picture.marks.push(Mark { at_ms, lane, text, kind });
        }
        picture
    }
}
