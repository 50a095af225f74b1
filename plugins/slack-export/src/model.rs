//! The JSON of a Slack export, as far as the plugin uses it. Unknown fields
//! are ignored: Slack adds fields over time, and the whole message object is
//! kept verbatim as the message's `original` anyway.

use serde::Deserialize;

/// An entry of `users.json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct User {
    /// `U…` (or `W…` on Enterprise Grid).
    pub id: String,
    /// The handle.
    #[serde(default)]
    pub name: Option<String>,
    /// Full name.
    #[serde(default)]
    pub real_name: Option<String>,
    /// Profile fields.
    #[serde(default)]
    pub profile: Profile,
    /// Whether the account is deactivated.
    #[serde(default)]
    pub deleted: bool,
    /// Whether this is a bot user.
    #[serde(default)]
    pub is_bot: bool,
}

/// The `profile` of a user (also the `user_profile` of a message).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Profile {
    /// Full name.
    #[serde(default)]
    pub real_name: Option<String>,
    /// Display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The handle (in `user_profile`).
    #[serde(default)]
    pub name: Option<String>,
    /// Email address (present when the export includes emails).
    #[serde(default)]
    pub email: Option<String>,
}

/// An entry of `channels.json`, `groups.json`, `mpims.json` or `dms.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Channel {
    /// `C…`, `G…` or `D…`.
    pub id: String,
    /// The channel name (absent for DMs).
    #[serde(default)]
    pub name: Option<String>,
    /// Member user ids.
    #[serde(default)]
    pub members: Vec<String>,
    /// Whether the channel is archived.
    #[serde(default)]
    pub is_archived: bool,
    /// Creation time, seconds.
    #[serde(default)]
    pub created: Option<i64>,
}

/// The `edited` object of a message.
#[derive(Debug, Clone, Deserialize)]
pub struct Edited {
    /// Who edited it.
    #[serde(default)]
    pub user: Option<String>,
    /// When.
    pub ts: String,
}

/// A file shared in a message.
#[derive(Debug, Clone, Deserialize)]
pub struct SlackFile {
    /// `F…`.
    pub id: String,
    /// File name.
    #[serde(default)]
    pub name: Option<String>,
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// MIME type.
    #[serde(default)]
    pub mimetype: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Authenticated URL of the file.
    #[serde(default)]
    pub url_private: Option<String>,
    /// Authenticated download URL.
    #[serde(default)]
    pub url_private_download: Option<String>,
    /// `tombstone` for deleted files, `hidden_by_limit`, `external`, …
    #[serde(default)]
    pub mode: Option<String>,
}

/// A bot's profile on its messages.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BotProfile {
    /// The bot's name.
    #[serde(default)]
    pub name: Option<String>,
}

/// One message of a day file.
#[derive(Debug, Clone, Deserialize)]
pub struct SlackMessage {
    /// `message` for messages.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Sub-type (`channel_join`, `bot_message`, `thread_broadcast`, …).
    #[serde(default)]
    pub subtype: Option<String>,
    /// Timestamp, the message's id within its channel.
    pub ts: String,
    /// Sender's user id.
    #[serde(default)]
    pub user: Option<String>,
    /// The sender's profile as of the message.
    #[serde(default)]
    pub user_profile: Option<Profile>,
    /// Bot id of bot messages.
    #[serde(default)]
    pub bot_id: Option<String>,
    /// Display name of bot messages.
    #[serde(default)]
    pub username: Option<String>,
    /// Bot profile of bot messages.
    #[serde(default)]
    pub bot_profile: Option<BotProfile>,
    /// Text in Slack's mrkdwn.
    #[serde(default)]
    pub text: Option<String>,
    /// The thread's parent `ts` (equal to `ts` on the parent itself).
    #[serde(default)]
    pub thread_ts: Option<String>,
    /// The parent's author, on replies.
    #[serde(default)]
    pub parent_user_id: Option<String>,
    /// Number of replies, on a parent.
    #[serde(default)]
    pub reply_count: Option<u64>,
    /// Set when the message was edited (the export holds the last text).
    #[serde(default)]
    pub edited: Option<Edited>,
    /// Shared files.
    #[serde(default)]
    pub files: Vec<SlackFile>,
    /// The new version, for `message_changed`.
    #[serde(default)]
    pub message: Option<Box<SlackMessage>>,
    /// The removed message's ts, for `message_deleted`.
    #[serde(default)]
    pub deleted_ts: Option<String>,
    /// Reactions.
    #[serde(default)]
    pub reactions: Vec<Reaction>,
}

/// A reaction on a message.
#[derive(Debug, Clone, Deserialize)]
pub struct Reaction {
    /// Emoji name.
    pub name: String,
    /// Who reacted.
    #[serde(default)]
    pub users: Vec<String>,
}

/// A Slack `ts` (`"1709543100.000200"`) as (seconds, microseconds), which
/// orders like the timestamps do.
pub fn parse_ts(ts: &str) -> Option<(i64, u32)> {
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, "0"));
    let secs: i64 = secs.parse().ok()?;
    if frac.is_empty() || frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let micros: u32 = format!("{frac:0<6}").parse().ok()?;
    Some((secs, micros))
}

/// Milliseconds since the epoch of a Slack `ts`.
pub fn ts_to_ms(ts: &str) -> Option<i64> {
    parse_ts(ts).map(|(s, us)| s * 1000 + i64::from(us / 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_ts("1709543100.000200"), Some((1_709_543_100, 200)));
        assert_eq!(ts_to_ms("1709543100.123456"), Some(1_709_543_100_123));
        assert_eq!(parse_ts("1709543100"), Some((1_709_543_100, 0)));
        assert_eq!(parse_ts("x.1"), None);
        assert!(parse_ts("1.000200") < parse_ts("1.0003"));
    }
}
