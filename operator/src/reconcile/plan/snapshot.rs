//! Scheduled `CREATE SNAPSHOT` on the MAIN. Each tick of `spec.snapshot.schedule` is taken at
//! most once: the tick is claimed in `status.lastSnapshotTick` (written with a resourceVersion
//! precondition, so an old view cannot claim it again) before the snapshot runs, and a failure
//! waits for the next tick instead of retrying. Ticks missed while the operator could not take
//! them are caught up with a single snapshot; ticks of a schedule from before it was set are not.

use k8s_openapi::jiff::Timestamp;

use super::{Action, Facts, Planner};
use crate::schedule::Schedule;

/// Most ticks walked to find the latest one due (a minutely schedule missed for a week).
const MAX_CATCH_UP: usize = 10_080;

/// The latest tick of `schedule` after `last` that is due at `now`, if any.
pub(super) fn due_tick(schedule: &Schedule, last: Timestamp, now: Timestamp) -> Option<Timestamp> {
    let mut tick = schedule.next_after(last).filter(|t| *t <= now)?;
    for _ in 0..MAX_CATCH_UP {
        match schedule.next_after(tick) {
            Some(next) if next <= now => tick = next,
            _ => break,
        }
    }
    Some(tick)
}

/// Plan the snapshot of a due tick.
pub(super) fn plan_snapshot(p: &mut Planner<'_>, facts: &Facts) {
    // One at a time: a tick that comes while one runs is taken when it is done.
    let backup_running = p.obs.status.backups.as_ref().is_some_and(|b| b.running.is_some());
    if !p.spec.snapshot.enabled || !facts.main.routable() || p.obs.snapshot_running || backup_running {
        return;
    }
    let Ok(schedule) = Schedule::parse(&p.spec.snapshot.schedule) else { return };
    let status = &p.obs.status;
    // A schedule never counted before (new cluster, or changed): its ticks count from now.
    if status.snapshot_schedule.as_deref() != Some(p.spec.snapshot.schedule.as_str()) {
        p.snapshot_tick = Some(p.now);
        if let Some(next) = schedule.next_after(p.now) {
            p.due(next);
        }
        return;
    }
    let last = status
        .last_snapshot_tick
        .as_ref()
        .or(status.last_snapshot_time.as_ref())
        .map(|t| t.0)
        .or(p.obs.cluster.created)
        .unwrap_or(p.now);
    match due_tick(&schedule, last, p.now) {
        Some(tick) => {
            p.snapshot_tick = Some(tick);
            p.push(Action::CreateSnapshot { tick });
            if let Some(next) = schedule.next_after(p.now) {
                p.due(next);
            }
        }
        None => {
            if let Some(next) = schedule.next_after(last.max(p.now)) {
                p.due(next);
            }
        }
    }
}
