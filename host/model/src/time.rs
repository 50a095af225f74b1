//! Wall-clock time as the host records it: milliseconds since the Unix
//! epoch, shown as RFC 3339.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{
    DateTime, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, SecondsFormat,
    TimeDelta, TimeZone, Utc,
};

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

/// A time zone a connector names for its transcript days: UTC, a fixed
/// offset from it (`+02:00`, `-05:30`), or an IANA zone with its daylight
/// saving rules (`Europe/London`), where a day may last 23 or 25 hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DayZone(Zone);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Zone {
    /// Seconds east of UTC.
    Fixed(i32),
    Named(chrono_tz::Tz),
}

impl Default for Zone {
    fn default() -> Zone {
        Zone::Fixed(0)
    }
}

/// Why a time zone could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a time zone this host knows: write \"UTC\", an offset from UTC such as \"+02:00\" or \"-05:30\" (up to ±18:00), or an IANA zone name such as \"Europe/London\" or \"America/New_York\" (spelled as in the tz database, capitals included)"
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
            _ => {
                return text
                    .parse()
                    .map(|tz| DayZone(Zone::Named(tz)))
                    .map_err(|_| bad());
            }
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
        Ok(DayZone(Zone::Fixed(offset_seconds)))
    }
}

impl std::fmt::Display for DayZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Zone::Fixed(0) => f.write_str("UTC"),
            Zone::Fixed(offset_seconds) => {
                let sign = if offset_seconds < 0 { '-' } else { '+' };
                let minutes = offset_seconds.abs() / 60;
                write!(f, "{sign}{:02}:{:02}", minutes / 60, minutes % 60)
            }
            Zone::Named(tz) => f.write_str(tz.name()),
        }
    }
}

impl DayZone {
    /// The offset from UTC in force here at the UTC time `utc`.
    fn offset_at(self, utc: &NaiveDateTime) -> FixedOffset {
        match self.0 {
            Zone::Fixed(seconds) => FixedOffset::east_opt(seconds).expect("checked when parsed"),
            Zone::Named(tz) => tz.offset_from_utc_datetime(utc).fix(),
        }
    }

    /// The wall-clock time `ms` shows here.
    fn local(self, ms: TimestampMs) -> Option<NaiveDateTime> {
        let utc = DateTime::<Utc>::from_timestamp_millis(ms)?.naive_utc();
        utc.checked_add_offset(self.offset_at(&utc))
    }

    /// The day `ms` falls on here, as `YYYY-MM-DD` (days sort as text).
    pub fn day_of(self, ms: TimestampMs) -> String {
        self.local(ms)
            .map(|t| t.format(DAY_FORMAT).to_string())
            .unwrap_or_else(|| "0000-00-00".to_string())
    }

    /// The time of day `ms` shows here, as `HH:MM:SS`; in a named zone
    /// followed by the zone's abbreviation then (`01:30:00 BST`), which
    /// tells apart the two readings of a clock time the day the clocks go
    /// back.
    pub fn clock_of(self, ms: TimestampMs) -> String {
        let Some(time) = self.local(ms).map(|t| t.format("%H:%M:%S").to_string()) else {
            return ms.to_string();
        };
        match self.0 {
            Zone::Fixed(_) => time,
            Zone::Named(tz) => {
                let utc = DateTime::<Utc>::from_timestamp_millis(ms).expect("read above");
                format!("{time} {}", tz.offset_from_utc_datetime(&utc.naive_utc()))
            }
        }
    }

    /// The last day that ended here at least `grace_ms` before `now_ms`:
    /// the day before the one `now_ms - grace_ms` falls on, which ended
    /// when that one began, however long either lasted.
    pub fn last_closed_day(self, now_ms: TimestampMs, grace_ms: i64) -> String {
        self.local(now_ms.saturating_sub(grace_ms))
            .and_then(|t| t.date().pred_opt())
            .map(|d| d.format(DAY_FORMAT).to_string())
            .unwrap_or_else(|| "0000-00-00".to_string())
    }

    /// When `day` (`YYYY-MM-DD`) begins and ends here, in milliseconds
    /// since the epoch: from its first instant to the first instant of the
    /// next day, so 23 or 25 hours apart when the clocks change that day.
    /// `None` when `day` is not a date or out of range.
    pub fn day_span(self, day: &str) -> Option<(TimestampMs, TimestampMs)> {
        let date = NaiveDate::parse_from_str(day, DAY_FORMAT).ok()?;
        Some((self.start_of(date)?, self.start_of(date.succ_opt()?)?))
    }

    /// The first instant of `date` here. Where the clocks change at
    /// midnight it is the earliest instant the day shows: the first of the
    /// two midnights when they go back, and the instant they jump when they
    /// go forward past midnight (local midnight by the offset in force a
    /// day before, when the zone changed its clocks at most once since).
    fn start_of(self, date: NaiveDate) -> Option<TimestampMs> {
        let midnight = date.and_time(NaiveTime::MIN);
        let utc = match self.0 {
            Zone::Fixed(seconds) => midnight.checked_sub_offset(FixedOffset::east_opt(seconds)?)?,
            Zone::Named(tz) => match tz.from_local_datetime(&midnight) {
                LocalResult::Single(t) => t.naive_utc(),
                LocalResult::Ambiguous(earliest, _) => earliest.naive_utc(),
                LocalResult::None => {
                    let day_before = midnight.checked_sub_signed(TimeDelta::days(1))?;
                    midnight.checked_sub_offset(self.offset_at(&day_before))?
                }
            },
        };
        Some(utc.and_utc().timestamp_millis())
    }
}

/// How a day is written: `YYYY-MM-DD`.
const DAY_FORMAT: &str = "%Y-%m-%d";

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
        for bad in ["+2", "+02:60", "+19:00", "02:00", ""] {
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

    /// `text` (RFC 3339) in milliseconds since the epoch.
    fn at(text: &str) -> TimestampMs {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn named_zones_parse_and_display_as_their_iana_name_and_utc_and_offsets_stay_as_they_were() {
        for name in ["Europe/London", "America/New_York", "Asia/Tokyo", "Etc/UTC"] {
            let zone: DayZone = name.parse().unwrap();
            assert_eq!(zone.to_string(), name);
            assert_eq!(zone.to_string().parse::<DayZone>().unwrap(), zone);
        }
        assert_eq!(
            " Europe/London ".parse::<DayZone>().unwrap().to_string(),
            "Europe/London"
        );
        for fixed in ["UTC", "+02:00", "-05:30", "+00:30"] {
            assert_eq!(fixed.parse::<DayZone>().unwrap().to_string(), fixed);
        }
        assert_eq!("utc".parse::<DayZone>().unwrap(), DayZone::default());
        assert_eq!("Z".parse::<DayZone>().unwrap(), DayZone::default());
        assert_ne!("Etc/UTC".parse::<DayZone>().unwrap(), DayZone::default());
    }

    #[test]
    fn an_unknown_zone_is_refused_with_its_name_and_what_to_write() {
        for bad in [
            "Europe/Londn",
            "europe/london",
            "Mars/Olympus_Mons",
            "London",
        ] {
            let message = bad.parse::<DayZone>().unwrap_err().to_string();
            assert!(message.contains(&format!("`{bad}`")), "{message}");
            for advice in ["\"UTC\"", "\"+02:00\"", "IANA", "\"Europe/London\""] {
                assert!(message.contains(advice), "{advice}: {message}");
            }
        }
    }

    #[test]
    fn a_london_spring_forward_day_lasts_23_hours_and_the_next_day_starts_at_local_midnight() {
        let london: DayZone = "Europe/London".parse().unwrap();
        let (start, end) = london.day_span("2026-03-29").unwrap();
        assert_eq!(start, at("2026-03-29T00:00:00Z"));
        assert_eq!(end, at("2026-03-29T23:00:00Z"), "midnight BST");
        assert_eq!(end - start, 23 * HOUR_MS);
        assert_eq!(london.day_span("2026-03-28").unwrap().1, start);
        assert_eq!(london.day_of(at("2026-03-28T23:30:00Z")), "2026-03-28");
        assert_eq!(london.clock_of(at("2026-03-28T23:30:00Z")), "23:30:00 GMT");
        assert_eq!(london.clock_of(at("2026-03-29T00:59:59Z")), "00:59:59 GMT");
        assert_eq!(london.clock_of(at("2026-03-29T01:00:00Z")), "02:00:00 BST");
        assert_eq!(london.day_of(at("2026-03-29T22:59:59Z")), "2026-03-29");
        // 00:30 local on the day after the clocks went forward is that day.
        assert_eq!(london.day_of(at("2026-03-29T23:30:00Z")), "2026-03-30");
        assert_eq!(london.clock_of(at("2026-03-29T23:30:00Z")), "00:30:00 BST");
        // The short day is closed at its true end, not 24 hours on.
        assert_eq!(london.last_closed_day(end, 0), "2026-03-29");
        assert_eq!(london.last_closed_day(end - 1, 0), "2026-03-28");
        assert_eq!(london.last_closed_day(end + HOUR_MS, HOUR_MS), "2026-03-29");
    }

    #[test]
    fn a_london_autumn_day_lasts_25_hours_and_every_instant_of_it_falls_on_it() {
        let london: DayZone = "Europe/London".parse().unwrap();
        let (start, end) = london.day_span("2026-10-25").unwrap();
        assert_eq!(start, at("2026-10-24T23:00:00Z"), "midnight BST");
        assert_eq!(end, at("2026-10-26T00:00:00Z"), "midnight GMT");
        assert_eq!(end - start, 25 * HOUR_MS);
        assert_eq!(london.day_of(start - 1), "2026-10-24");
        for hour in 0..25 {
            assert_eq!(
                london.day_of(start + hour * HOUR_MS),
                "2026-10-25",
                "{hour}"
            );
        }
        assert_eq!(london.day_of(end), "2026-10-26");
        // 01:30 comes twice; the abbreviation tells which.
        assert_eq!(london.clock_of(at("2026-10-25T00:30:00Z")), "01:30:00 BST");
        assert_eq!(london.clock_of(at("2026-10-25T01:30:00Z")), "01:30:00 GMT");
        assert_eq!(london.last_closed_day(end - 1, 0), "2026-10-24");
        assert_eq!(london.last_closed_day(end, 0), "2026-10-25");
    }

    #[test]
    fn where_the_clocks_change_at_midnight_a_day_starts_at_its_earliest_instant() {
        // Santiago went from 00:00 -04 straight to 01:00 -03 on
        // 2022-09-11: that day has no midnight and starts at the jump.
        let santiago: DayZone = "America/Santiago".parse().unwrap();
        let (start, end) = santiago.day_span("2022-09-11").unwrap();
        assert_eq!(start, at("2022-09-11T04:00:00Z"));
        assert_eq!(end, at("2022-09-12T03:00:00Z"));
        assert_eq!(
            santiago.day_span("2022-09-10").unwrap(),
            (at("2022-09-10T04:00:00Z"), start)
        );
        assert_eq!(santiago.day_of(start - 1), "2022-09-10");
        assert_eq!(santiago.day_of(start), "2022-09-11");
        assert_eq!(santiago.clock_of(start), "01:00:00 -03");
        // Havana went back from 01:00 CDT to 00:00 CST on 2023-11-05:
        // midnight came twice, and the day starts at the first.
        let havana: DayZone = "America/Havana".parse().unwrap();
        let (start, end) = havana.day_span("2023-11-05").unwrap();
        assert_eq!(start, at("2023-11-05T04:00:00Z"));
        assert_eq!(end, at("2023-11-06T05:00:00Z"));
        assert_eq!(havana.day_of(start - 1), "2023-11-04");
        assert_eq!(havana.day_of(start + HOUR_MS), "2023-11-05");
        assert_eq!(havana.clock_of(start), "00:00:00 CDT");
        assert_eq!(havana.clock_of(start + HOUR_MS), "00:00:00 CST");
    }

    #[test]
    fn fixed_zones_have_24_hour_days_and_no_span_for_what_is_not_a_day() {
        let east: DayZone = "+02:00".parse().unwrap();
        assert_eq!(
            east.day_span("2024-01-02"),
            Some((at("2024-01-01T22:00:00Z"), at("2024-01-02T22:00:00Z")))
        );
        assert_eq!(east.day_span("2024-13-01"), None);
        assert_eq!(east.day_span("yesterday"), None);
    }
}
