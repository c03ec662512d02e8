//! Snapshots follow the schedule: the operator's `CREATE SNAPSHOT`s on a cluster number the
//! schedule's ticks, never more than one above them (a tick may be caught up late once), and
//! never more than one below the ticks at which the MAIN was usable, the spec valid and the
//! operator running for the following half minute.
//!
//! Ticks are computed here, independently of the operator's cron parser, for the schedules the
//! world uses (`* * * * *`, `*/N * * * *`, `0 * * * *`).

use std::time::Duration;

use serde::Serialize;

use super::super::time::EPOCH_SECONDS;
use super::Violation;

/// How long after a tick the operator is given to take it.
const TAKE_WITHIN: Duration = Duration::from_secs(30);

/// Minutes between ticks of a schedule the world uses, or `None` for others.
pub fn step_minutes(schedule: &str) -> Option<u64> {
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 || fields[1..] != ["*", "*", "*", "*"] {
        return None;
    }
    match fields[0] {
        "*" => Some(1),
        "0" => Some(60),
        f => f.strip_prefix("*/")?.parse().ok().filter(|n: &u64| *n > 0 && 60 % *n == 0),
    }
}

/// Whether a tick of `step` minutes falls in `(from, to]` of simulated elapsed time.
fn tick_in(step: u64, from: Duration, to: Duration) -> Option<Duration> {
    let minute = |d: Duration| (u64::try_from(EPOCH_SECONDS).unwrap_or(0) + d.as_secs()) / 60;
    let last = minute(to);
    if minute(from) == last || last % step != 0 {
        return None;
    }
    let epoch = u64::try_from(EPOCH_SECONDS).unwrap_or(0);
    Some(Duration::from_secs((last * 60).saturating_sub(epoch)))
}

#[derive(Debug, Clone)]
struct Tick {
    at: Duration,
    /// Still judged usable so far in its window.
    kept: bool,
    /// Its window is over.
    closed: bool,
}

/// Snapshot counting of one cluster.
#[derive(Debug, Default)]
pub struct Snapshots {
    ticks: Vec<Tick>,
    /// `CREATE SNAPSHOT`s the operator sent to the write pod.
    pub issued: u64,
}

/// Snapshot figures of one cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SnapshotCount {
    /// Schedule ticks passed.
    pub ticks: usize,
    /// Ticks at which the operator could take a snapshot.
    pub takeable: usize,
    /// Snapshots the operator asked for.
    pub issued: u64,
}

impl Snapshots {
    /// Advance from `from` to `now`. `schedule` is the spec's schedule when snapshots are enabled;
    /// `takeable` whether the MAIN is usable, the spec valid, the operator running and no fault
    /// active right now.
    pub fn sample(&mut self, from: Duration, now: Duration, schedule: Option<&str>, takeable: bool) {
        for tick in self.ticks.iter_mut().filter(|t| !t.closed) {
            tick.kept &= takeable;
            if now >= tick.at + TAKE_WITHIN {
                tick.closed = true;
            }
        }
        if let Some(at) = schedule.and_then(step_minutes).and_then(|step| tick_in(step, from, now)) {
            self.ticks.push(Tick { at, kept: takeable, closed: false });
        }
    }

    /// Judge the count at the end of the run.
    pub fn judge(&self, cluster: &str, end_ms: u64) -> (SnapshotCount, Option<Violation>) {
        let count = SnapshotCount {
            ticks: self.ticks.len(),
            takeable: self.ticks.iter().filter(|t| t.closed && t.kept).count(),
            issued: self.issued,
        };
        let violation = |what: String| Some(Violation { at_ms: end_ms, cluster: cluster.to_owned(), what });
        if count.issued > count.ticks as u64 + 1 {
            return (
                count.clone(),
                violation(format!(
                    "the operator created {} snapshots for {} schedule ticks: scheduled work was repeated",
                    count.issued, count.ticks
                )),
            );
        }
        if count.issued + 1 < count.takeable as u64 {
            return (
                count.clone(),
                violation(format!(
                    "the operator created {} snapshots while {} schedule ticks found the MAIN usable",
                    count.issued, count.takeable
                )),
            );
        }
        (count, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_the_world_uses_have_steps() {
        assert_eq!(step_minutes("* * * * *"), Some(1));
        assert_eq!(step_minutes("*/5 * * * *"), Some(5));
        assert_eq!(step_minutes("0 * * * *"), Some(60));
        assert_eq!(step_minutes("*/7 * * * *"), None);
        assert_eq!(step_minutes("not a schedule"), None);
    }

    #[test]
    fn ticks_are_counted_once_and_judged_both_ways() {
        let mut s = Snapshots::default();
        let step = Duration::from_millis(100);
        let mut t = Duration::ZERO;
        while t < Duration::from_secs(300) {
            s.sample(t, t + step, Some("* * * * *"), true);
            t += step;
        }
        let (count, v) = s.judge("g", 0);
        assert_eq!((count.ticks, count.takeable), (5, 4), "ticks at 60..300 s; the last one's window is open");
        assert!(v.is_some(), "none taken");
        s.issued = 4;
        assert!(s.judge("g", 0).1.is_none());
        s.issued = 7;
        assert!(s.judge("g", 0).1.is_some_and(|v| v.what.contains("repeated")));
    }
}
