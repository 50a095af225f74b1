//! What a connector delivers (`delivery`: one email per message, one
//! transcript per conversation per day, or both) and how its transcript
//! days are cut (`[transcripts]`).

use std::time::Duration;

use connector_model::time::DayZone;
use serde::Deserialize;

use super::connector::parse_duration;

/// What a connector delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// One email per message (the default).
    #[default]
    Messages,
    /// One transcript email per conversation per day.
    Transcripts,
    /// Both.
    Both,
}

impl Delivery {
    /// Whether each message is delivered as an email of its own.
    pub fn messages(self) -> bool {
        self != Delivery::Transcripts
    }

    /// Whether days are delivered as transcripts.
    pub fn transcripts(self) -> bool {
        self != Delivery::Messages
    }
}

/// The `[transcripts]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TranscriptConfig {
    /// The time zone days are cut in and times shown in: `UTC` (the
    /// default), an offset such as `+02:00`, or an IANA zone such as
    /// `Europe/London`, whose days follow its daylight saving (23 or 25
    /// hours the days the clocks change).
    #[serde(default, deserialize_with = "day_zone")]
    pub time_zone: DayZone,
    /// How long after a day ends its transcript waits for late messages
    /// before it goes out (`0s`, `30m`, `2h`; default `1h`). A message
    /// that arrives later still goes out, in an addendum.
    #[serde(default = "default_grace", deserialize_with = "grace")]
    pub grace: Duration,
    /// The folder under the connector's folder that receives transcripts
    /// (default `Transcripts`).
    #[serde(default = "default_folder")]
    pub folder: String,
}

impl Default for TranscriptConfig {
    fn default() -> TranscriptConfig {
        TranscriptConfig {
            time_zone: DayZone::default(),
            grace: default_grace(),
            folder: default_folder(),
        }
    }
}

fn default_grace() -> Duration {
    Duration::from_secs(3600)
}

fn default_folder() -> String {
    "Transcripts".to_string()
}

fn day_zone<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DayZone, D::Error> {
    String::deserialize(d)?
        .parse()
        .map_err(serde::de::Error::custom)
}

fn grace<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().trim_end_matches(['s', 'm', 'h', 'd']) == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(&text).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "`{text}` is not a grace period: write a number with a unit: s, m, h or d (e.g. 2h, or 0s for none)"
        ))
    })
}
