//! Injected wall clock and id source, so a simulation replays exactly from its seed.

use std::sync::{Arc, Mutex};

/// Wall-clock time for snapshot file names and `creation_time` (never for timing; that is tokio's).
pub trait Clock: Send + Sync + 'static {
    /// Microseconds since the Unix epoch.
    fn now_unix_micros(&self) -> i64;
}

/// The real system clock: the one place in the crate that reads wall-clock time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_micros(&self) -> i64 {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(_) => 0,
        }
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<Mutex<i64>>);

impl ManualClock {
    /// Starts at `micros`.
    pub fn new(micros: i64) -> Self {
        ManualClock(Arc::new(Mutex::new(micros)))
    }

    /// Sets the time.
    pub fn set(&self, micros: i64) {
        *lock(&self.0) = micros;
    }

    /// Moves the time forward.
    pub fn advance_micros(&self, d: i64) {
        *lock(&self.0) += d;
    }
}

impl Clock for ManualClock {
    fn now_unix_micros(&self) -> i64 {
        *lock(&self.0)
    }
}

/// A clock backed by a closure, e.g. `base + turmoil::elapsed()` in a simulation.
pub struct FnClock<F>(pub F);

impl<F: Fn() -> i64 + Send + Sync + 'static> Clock for FnClock<F> {
    fn now_unix_micros(&self) -> i64 {
        (self.0)()
    }
}

/// A simulation clock: `base_micros` plus the current turmoil host's elapsed simulated time
/// (or just `base_micros` outside a simulation).
pub fn turmoil_clock(base_micros: i64) -> FnClock<impl Fn() -> i64 + Send + Sync + 'static> {
    FnClock(move || {
        let elapsed = turmoil::sim_elapsed().unwrap_or_default();
        base_micros + i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX / 2)
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked; the plain data inside is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A seeded source of ids (UUIDs, epoch ids). Clones share one stream.
#[derive(Debug, Clone)]
pub struct IdSource(Arc<Mutex<u64>>);

impl IdSource {
    /// A deterministic stream from `seed` (SplitMix64).
    pub fn seeded(seed: u64) -> Self {
        IdSource(Arc::new(Mutex::new(seed)))
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        let mut s = lock(&self.0);
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A random (version 4 format) UUID string.
    pub fn uuid(&self) -> String {
        let hi = self.next_u64();
        let lo = self.next_u64();
        let hi = (hi & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
        let lo = (lo & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xFFFF,
            hi & 0xFFFF,
            lo >> 48,
            lo & 0xFFFF_FFFF_FFFF
        )
    }
}

/// Formats Unix microseconds as Memgraph's file-name stamp `YYYYmmddHHMMSSffffff` (UTC).
pub fn file_stamp(micros: i64) -> String {
    let (y, mo, d, h, mi, s, us) = civil(micros);
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}{us:06}")
}

/// Formats Unix microseconds as ISO-8601 with offset, e.g. `2024-05-01T10:15:08.851236+00:00`.
pub fn iso8601(micros: i64) -> String {
    let (y, mo, d, h, mi, s, us) = civil(micros);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{us:06}+00:00")
}

/// Parses a `YYYYmmddHHMMSSffffff` stamp back into Unix microseconds.
pub fn stamp_to_micros(stamp: &str) -> Option<i64> {
    if stamp.len() != 20 || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |a: usize, b: usize| stamp[a..b].parse::<i64>().ok();
    let (y, m, d) = (n(0, 4)?, n(4, 6)?, n(6, 8)?);
    let (h, mi, s, us) = (n(8, 10)?, n(10, 12)?, n(12, 14)?, n(14, 20)?);
    // Days from civil (Howard Hinnant), the inverse of `civil`.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + s) * 1_000_000) + us)
}

/// Splits Unix microseconds into UTC calendar fields (Howard Hinnant's days-to-civil).
fn civil(micros: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = micros.div_euclid(1_000_000);
    let us = micros.rem_euclid(1_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, sod / 3600, (sod / 60) % 60, sod % 60, us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_match_memgraph_format() {
        // 2023-11-17T10:15:08.851236Z, the example from Memgraph's docs.
        let micros = 1_700_216_108_851_236;
        assert_eq!(file_stamp(micros), "20231117101508851236");
        assert_eq!(iso8601(micros), "2023-11-17T10:15:08.851236+00:00");
        assert_eq!(file_stamp(0), "19700101000000000000");
        assert_eq!(iso8601(951_782_400_000_000), "2000-02-29T00:00:00.000000+00:00");
        for m in [micros, 0, 951_782_400_000_001, 4_102_444_799_999_999] {
            assert_eq!(stamp_to_micros(&file_stamp(m)), Some(m));
        }
        assert_eq!(stamp_to_micros("2023"), None);
    }

    #[test]
    fn ids_are_deterministic_per_seed() {
        let a = IdSource::seeded(7);
        let b = IdSource::seeded(7);
        let c = IdSource::seeded(8);
        let (ua, ub, uc) = (a.uuid(), b.uuid(), c.uuid());
        assert_eq!(ua, ub);
        assert_ne!(ua, uc);
        assert_eq!(ua.len(), 36);
        assert_eq!(&ua[14..15], "4");
        assert_ne!(a.uuid(), ua);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(10);
        assert_eq!(c.now_unix_micros(), 10);
        c.advance_micros(5);
        assert_eq!(c.now_unix_micros(), 15);
    }
}
