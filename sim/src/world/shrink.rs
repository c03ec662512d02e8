//! Shrinking a failing fault schedule to a minimal one that still fails, in the manner of
//! property-test shrinking: drop chunks of faults, then single faults, while the run fails.

use super::faults::Schedule;
use super::run::{RunConfig, run};

/// A smallest schedule (by removal) that still produces a violation with `config`'s seed.
pub fn shrink(config: &RunConfig, failing: &Schedule) -> Schedule {
    let fails = |schedule: &Schedule| {
        let mut attempt = config.clone();
        attempt.schedule = Some(schedule.clone());
        !run(&attempt).violations.is_empty()
    };
    let mut current = failing.clone();
    let mut chunk = current.faults.len().div_ceil(2).max(1);
    while chunk >= 1 {
        let mut start = 0;
        let mut removed_any = false;
        while start < current.faults.len() {
            let mut candidate = current.clone();
            let end = (start + chunk).min(candidate.faults.len());
            candidate.faults.drain(start..end);
            if fails(&candidate) {
                current = candidate;
                removed_any = true;
            } else {
                start += chunk;
            }
        }
        if chunk == 1 && !removed_any {
            break;
        }
        chunk = if chunk == 1 { 1 } else { chunk / 2 };
    }
    current
}
