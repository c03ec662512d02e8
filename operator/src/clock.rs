//! Time and randomness, injected so the simulation replays a run exactly (DESIGN §3).

use k8s_openapi::jiff::Timestamp;

/// Wall-clock time for status timestamps and schedules.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// Source of random numbers (ids of validation test nodes).
pub trait Random: Send + Sync {
    /// A random 64-bit number.
    fn next_u64(&self) -> u64;
}

/// The system clock: the only place the operator reads the wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A splitmix64 generator: small, seedable, good enough for unique test-node ids.
#[derive(Debug)]
pub struct SeededRandom {
    state: std::sync::atomic::AtomicU64,
}

impl SeededRandom {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: std::sync::atomic::AtomicU64::new(seed) }
    }

    /// A generator seeded from the system clock (production only).
    pub fn from_time() -> Self {
        let nanos = Timestamp::now().as_nanosecond();
        Self::new(nanos as u64 ^ u64::from(std::process::id()))
    }
}

impl Random for SeededRandom {
    fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let (a, b) = (SeededRandom::new(7), SeededRandom::new(7));
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], xs[1]);
        assert_ne!(SeededRandom::new(8).next_u64(), xs[0]);
    }
}
