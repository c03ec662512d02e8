//! Time, injected so the simulation replays a run exactly (DESIGN §3).

use k8s_openapi::jiff::Timestamp;

/// Wall-clock time for status timestamps and schedules.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// Fill `buf` with unpredictable bytes (keys the operator generates). Injected with the
    /// clock for the same reason: the simulation replays it from its seed.
    fn fill_random(&self, buf: &mut [u8]);
}

/// The system clock: the only place the operator reads the wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn fill_random(&self, buf: &mut [u8]) {
        use ring::rand::SecureRandom;
        // The system's generator fails only if the kernel has none; a key of zeros would be
        // worse than stopping, so the caller sees an all-zero key and refuses it.
        if ring::rand::SystemRandom::new().fill(buf).is_err() {
            buf.fill(0);
        }
    }
}
