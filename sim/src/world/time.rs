//! Simulated time: a fixed epoch plus turmoil's elapsed time, for status timestamps, cron
//! schedules and snapshot file names. Never the wall clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use memgraph_operator::clock::Clock;

/// Unix seconds of the simulated epoch: 2026-01-01T00:00:00Z.
pub const EPOCH_SECONDS: i64 = 1_767_225_600;

/// Simulated wall clock shared by every part of a run. Inside a turmoil host the host's own
/// elapsed time is used; elsewhere (the driver) the last time the driver recorded.
#[derive(Debug, Clone, Default)]
pub struct SimClock {
    driver_micros: Arc<AtomicU64>,
    random: Arc<AtomicU64>,
}

impl SimClock {
    /// Record the simulation's elapsed time (called by the driver after each step).
    pub fn set_elapsed(&self, elapsed: Duration) {
        self.driver_micros.store(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Elapsed simulated time.
    pub fn elapsed(&self) -> Duration {
        turmoil::sim_elapsed().unwrap_or_else(|| Duration::from_micros(self.driver_micros.load(Ordering::SeqCst)))
    }

    /// Microseconds since the Unix epoch, simulated.
    pub fn unix_micros(&self) -> i64 {
        EPOCH_SECONDS * 1_000_000 + i64::try_from(self.elapsed().as_micros()).unwrap_or(i64::MAX / 2)
    }
}

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_microsecond(self.unix_micros()).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// Replayable, not secret: a splitmix64 stream shared by the run.
    fn fill_random(&self, buf: &mut [u8]) {
        for b in buf.iter_mut() {
            let mut z =
                self.random.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::SeqCst).wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            *b = (z ^ (z >> 31)) as u8;
        }
    }
}

impl fake_memgraph::Clock for SimClock {
    fn now_unix_micros(&self) -> i64 {
        self.unix_micros()
    }
}
