//! Time, injected so the simulation replays a run exactly (DESIGN §3).

use k8s_openapi::jiff::Timestamp;

/// Wall-clock time for status timestamps and schedules.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system clock: the only place the operator reads the wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}
