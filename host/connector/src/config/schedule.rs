//! When the daemon runs a connector: every fixed interval (`24h`, `30m`)
//! or on a cron expression (`0 2 * * *`, seconds optional, in the host's
//! local time zone).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{Local, TimeZone};

use super::connector::parse_duration;
use connector_model::TimestampMs;

/// A connector's schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every interval, counted from the start of the last run.
    Every(Duration),
    /// At the times a cron expression matches (five fields, or six with
    /// seconds first), local time.
    Cron {
        /// The expression as written.
        expression: String,
        /// The parsed expression.
        cron: Box<croner::Cron>,
    },
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        match (self, other) {
            (Schedule::Every(a), Schedule::Every(b)) => a == b,
            (Schedule::Cron { expression: a, .. }, Schedule::Cron { expression: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Default for Schedule {
    /// Once a day.
    fn default() -> Schedule {
        Schedule::Every(Duration::from_secs(24 * 3600))
    }
}

/// Why a schedule could not be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{value}` is not a schedule: {reason}; write a number with a unit: s, m, h or d (e.g. 24h), or a cron expression such as `0 2 * * *` (minute hour day month weekday)"
)]
pub struct ScheduleError {
    /// The text given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Schedule, ScheduleError> {
        let s = s.trim();
        if let Some(d) = parse_duration(s) {
            return Ok(Schedule::Every(d));
        }
        if !s.contains(char::is_whitespace) {
            return Err(ScheduleError {
                value: s.to_string(),
                reason: "it is neither an interval nor a cron expression".to_string(),
            });
        }
        let cron = croner::Cron::from_str(s).map_err(|e| ScheduleError {
            value: s.to_string(),
            reason: format!("the cron expression is invalid ({e})"),
        })?;
        Ok(Schedule::Cron {
            expression: s.to_string(),
            cron: Box::new(cron),
        })
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(d) => {
                let secs = d.as_secs();
                if secs % 3600 == 0 {
                    write!(f, "{}h", secs / 3600)
                } else if secs % 60 == 0 {
                    write!(f, "{}m", secs / 60)
                } else {
                    write!(f, "{secs}s")
                }
            }
            Schedule::Cron { expression, .. } => f.write_str(expression),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Schedule, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Schedule {
    /// When the next run is due, in ms since the epoch: right away when the
    /// connector never ran; else one interval after the last run started,
    /// or the first cron time after it. A time in the past means "now"
    /// (a run missed while the daemon was down is made up once).
    pub fn next_due(&self, last_start_ms: Option<TimestampMs>) -> TimestampMs {
        let Some(last) = last_start_ms else {
            return 0;
        };
        match self {
            Schedule::Every(d) => {
                last.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            }
            Schedule::Cron { cron, .. } => {
                let Some(start) = Local.timestamp_millis_opt(last).earliest() else {
                    return last;
                };
                cron.find_next_occurrence(&start, false)
                    .map_or(i64::MAX, |t| t.timestamp_millis())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_cron_expressions_parse() {
        assert_eq!(
            "24h".parse::<Schedule>().unwrap(),
            Schedule::Every(Duration::from_secs(86400))
        );
        let cron: Schedule = "*/5 * * * *".parse().unwrap();
        assert_eq!(cron.to_string(), "*/5 * * * *");
        let seconds: Schedule = "*/2 * * * * *".parse().unwrap();
        assert!(matches!(seconds, Schedule::Cron { .. }));
        let e = "every day".parse::<Schedule>().unwrap_err().to_string();
        assert!(e.contains("cron expression is invalid"), "{e}");
        let e = "fortnightly".parse::<Schedule>().unwrap_err().to_string();
        assert!(e.contains("write a number with a unit"), "{e}");
    }

    #[test]
    fn next_due_follows_the_last_start() {
        let hourly = Schedule::Every(Duration::from_secs(3600));
        assert_eq!(hourly.next_due(None), 0);
        assert_eq!(hourly.next_due(Some(1_000)), 3_601_000);
        let every_minute: Schedule = "* * * * *".parse().unwrap();
        let last = 1_767_225_610_000; // 2026-01-01T00:00:10Z
        let next = every_minute.next_due(Some(last));
        assert!(next > last && next <= last + 60_000, "{next}");
        assert_eq!(next % 60_000, 0);
    }
}
