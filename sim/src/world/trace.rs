//! The timeline of a run: faults, role changes, registrations, status changes and violations,
//! in simulated time. Its digest tells whether two runs of a seed were identical.

use std::time::Duration;

use serde::Serialize;

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Simulated milliseconds since the start.
    pub at_ms: u64,
    /// What happened.
    pub what: String,
}

/// The timeline.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Trace {
    /// Entries in order.
    pub entries: Vec<Entry>,
}

impl Trace {
    /// Record something at `at`.
    pub fn record(&mut self, at: Duration, what: impl Into<String>) {
        self.entries.push(Entry { at_ms: u64::try_from(at.as_millis()).unwrap_or(u64::MAX), what: what.into() });
    }

    /// FNV-1a over every entry: equal digests mean equal timelines.
    pub fn digest(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for entry in &self.entries {
            for byte in entry.at_ms.to_le_bytes().iter().chain(entry.what.as_bytes()) {
                hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        hash
    }

    /// Human-readable timeline.
    pub fn render(&self) -> String {
        self.entries.iter().map(|e| format!("{:>9.3}s  {}\n", e.at_ms as f64 / 1000.0, e.what)).collect()
    }
}
