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
