//! Wall-clock time as the host records it: milliseconds since the Unix
//! epoch, shown as RFC 3339.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::TimestampMs;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> TimestampMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `ms` as RFC 3339 in UTC to the second (`2024-05-01T12:00:00Z`), or the
/// number itself when it is out of range.
pub fn iso(ms: TimestampMs) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// A time zone a connector names for its transcript days: UTC or a fixed
/// offset from it (`+02:00`, `-05:30`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DayZone {
    /// Seconds east of UTC.
    offset_seconds: i32,
}

/// Why a time zone could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a time zone this host knows: write \"UTC\" or an offset from UTC such as \"+02:00\" or \"-05:30\" (up to ±18:00)"
)]
pub struct DayZoneError(pub String);

impl std::str::FromStr for DayZone {
    type Err = DayZoneError;

    fn from_str(s: &str) -> Result<DayZone, DayZoneError> {
        let text = s.trim();
        if text.eq_ignore_ascii_case("utc") || text == "Z" {
            return Ok(DayZone::default());
        }
        let bad = || DayZoneError(s.to_string());
        let (sign, rest) = match text.as_bytes().first() {
            Some(b'+') => (1, &text[1..]),
            Some(b'-') => (-1, &text[1..]),
            _ => return Err(bad()),
        };
        let (hours, minutes) = rest.split_once(':').ok_or_else(bad)?;
        let number = |part: &str| {
            (part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<i32>().ok())
                .flatten()
        };
        let (hours, minutes) = (
            number(hours).ok_or_else(bad)?,
            number(minutes).ok_or_else(bad)?,
        );
        let offset_seconds = sign * (hours * 3600 + minutes * 60);
        if minutes >= 60 || offset_seconds.abs() > 18 * 3600 {
            return Err(bad());
        }
        Ok(DayZone { offset_seconds })
    }
}

impl std::fmt::Display for DayZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.offset_seconds == 0 {
            return f.write_str("UTC");
        }
        let sign = if self.offset_seconds < 0 { '-' } else { '+' };
        let minutes = self.offset_seconds.abs() / 60;
        write!(f, "{sign}{:02}:{:02}", minutes / 60, minutes % 60)
    }
}

impl DayZone {
    fn offset(self) -> chrono::FixedOffset {
        chrono::FixedOffset::east_opt(self.offset_seconds).expect("checked when parsed")
    }

    fn local(self, ms: TimestampMs) -> Option<DateTime<chrono::FixedOffset>> {
        DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.with_timezone(&self.offset()))
    }

    /// The day `ms` falls on here, as `YYYY-MM-DD` (days sort as text).
    pub fn day_of(self, ms: TimestampMs) -> String {
        self.local(ms)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| "0000-00-00".to_string())
    }

    /// The time of day `ms` shows here, as `HH:MM:SS`.
    pub fn clock_of(self, ms: TimestampMs) -> String {
        self.local(ms)
            .map(|t| t.format("%H:%M:%S").to_string())
            .unwrap_or_else(|| ms.to_string())
    }

    /// The last day that ended here at least `grace_ms` before `now_ms`.
    pub fn last_closed_day(self, now_ms: TimestampMs, grace_ms: i64) -> String {
        let day_ms = 24 * 3600 * 1000;
        self.day_of(now_ms.saturating_sub(grace_ms).saturating_sub(day_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_zones_are_utc_or_fixed_offsets_and_days_follow_them() {
        let utc: DayZone = "UTC".parse().unwrap();
        let east: DayZone = "+02:00".parse().unwrap();
        let west: DayZone = "-05:30".parse().unwrap();
        assert_eq!(east.to_string(), "+02:00");
        assert_eq!(west.to_string(), "-05:30");
        assert_eq!(utc.to_string(), "UTC");
        for bad in ["Europe/Paris", "+2", "+02:60", "+19:00", "02:00", ""] {
            assert!(bad.parse::<DayZone>().is_err(), "{bad}");
        }
        // 2024-01-01T23:30:00Z
        let ms = 1_704_151_800_000;
        assert_eq!(utc.day_of(ms), "2024-01-01");
        assert_eq!(east.day_of(ms), "2024-01-02");
        assert_eq!(east.clock_of(ms), "01:30:00");
        assert_eq!(west.day_of(ms), "2024-01-01");
        // A day is closed once it ended, plus the grace.
        let midnight = 1_704_153_600_000; // 2024-01-02T00:00:00Z
        assert_eq!(utc.last_closed_day(midnight, 0), "2024-01-01");
        assert_eq!(utc.last_closed_day(midnight, 1), "2023-12-31");
        assert_eq!(
            utc.last_closed_day(midnight + 3_600_000, 3_600_000),
            "2024-01-01"
        );
    }
}
