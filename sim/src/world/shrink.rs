//! Shrinking a failing fault schedule to a minimal one that still fails, in the manner of
//! property-test shrinking: drop chunks of faults, then single faults, while the run fails.

use super::faults::Schedule;
use super::run::{RunConfig, run};

/// A smallest schedule (by removal) that still produces a violation with `config`'s seed.
pub fn shrink(config: &RunConfig, failing: &Schedule) -> Schedule {
    shrink_with(failing, |schedule| {
        let mut attempt = config.clone();
        attempt.schedule = Some(schedule.clone());
        !run(&attempt).violations.is_empty()
    })
}

/// Remove faults from `failing` while `fails` still holds: halving chunks down to single
/// faults, until no single fault can be removed.
pub fn shrink_with(failing: &Schedule, fails: impl Fn(&Schedule) -> bool) -> Schedule {
    let mut current = failing.clone();
    let mut chunk = current.faults.len().div_ceil(2).max(1);
    loop {
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
            return current;
        }
        chunk = (chunk / 2).max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::faults::{FaultClass, Schedule};
    use crate::world::rng::Rng;
    use std::time::Duration;

    #[test]
    fn keeps_exactly_the_faults_that_matter() {
        let schedule = Schedule::generate(&mut Rng::new(9), Duration::from_secs(600), &FaultClass::ALL, true);
        assert!(schedule.faults.len() > 20);
        let a = schedule.faults[3].clone();
        let b = schedule.faults[17].clone();
        // "Fails" when both faults are present.
        let minimal = shrink_with(&schedule, |s| s.faults.contains(&a) && s.faults.contains(&b));
        assert_eq!(minimal.faults, vec![a, b]);
    }
}
