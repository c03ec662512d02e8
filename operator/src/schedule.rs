//! Snapshot schedules: standard five-field cron expressions evaluated in UTC.

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use k8s_openapi::jiff::Timestamp;
use thiserror::Error;

/// A schedule that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "'{schedule}' is not a valid cron schedule: {reason}; use five fields (minute hour day-of-month month day-of-week), for example '*/15 * * * *'"
)]
pub struct ScheduleError {
    /// The refused schedule.
    pub schedule: String,
    /// The parser's explanation.
    pub reason: String,
}

/// A parsed snapshot schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
}

impl Schedule {
    /// Parse a five-field cron expression (or an alias such as `@hourly`).
    pub fn parse(schedule: &str) -> Result<Self, ScheduleError> {
        let fail = |reason: String| ScheduleError { schedule: schedule.to_owned(), reason };
        if !schedule.trim_start().starts_with('@') && schedule.split_whitespace().count() != 5 {
            return Err(fail(format!("it has {} fields, not 5", schedule.split_whitespace().count())));
        }
        let parser = CronParser::builder().seconds(Seconds::Disallowed).build();
        let cron = parser.parse(schedule).map_err(|e| fail(e.to_string()))?;
        Ok(Self { cron })
    }

    /// The first scheduled time strictly after `after`, if any.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start: DateTime<Utc> =
            DateTime::from_timestamp(after.as_second(), after.subsec_nanosecond().try_into().ok()?)?;
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        Timestamp::new(next.timestamp(), 0).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("test timestamp")
    }

    #[test]
    fn accepts_kubernetes_style_schedules() {
        let cases = [
            ("*/15 * * * *", "2026-01-01T10:07:00Z", "2026-01-01T10:15:00Z"),
            ("*/15 * * * *", "2026-01-01T10:15:00Z", "2026-01-01T10:30:00Z"),
            ("0 3 * * *", "2026-01-01T10:00:00Z", "2026-01-02T03:00:00Z"),
            // Day of week 0 is Sunday, as in Kubernetes CronJobs; 2026-01-04 is a Sunday.
            ("0 0 * * 0", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"),
            ("0 0 * * 7", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"),
            ("@hourly", "2026-01-01T10:07:00Z", "2026-01-01T11:00:00Z"),
        ];
        for (schedule, after, want) in cases {
            let parsed = Schedule::parse(schedule).unwrap_or_else(|e| panic!("{schedule}: {e}"));
            assert_eq!(parsed.next_after(ts(after)), Some(ts(want)), "{schedule} after {after}");
        }
    }

    #[test]
    fn refuses_bad_schedules_with_a_hint() {
        for schedule in ["", "* * * *", "0 */15 * * * *", "61 * * * *", "* 25 * * *", "every 15 minutes", "*/0 * * * *"]
        {
            let err = Schedule::parse(schedule).expect_err(schedule);
            assert!(err.to_string().contains("*/15 * * * *"), "{err}");
        }
    }
}
