//! The plugin's configuration, checked without any I/O.
//!
//! ```json
//! {
//!   "pod_url": "https://acme.symphony.com",
//!   "agent_url": "https://acme-agent.example.com",
//!   "key_manager_url": "https://acme-km.example.com",
//!   "key_manager_login": true,
//!   "username": "compliance-archiver",
//!   "stream_types": ["IM", "MIM", "ROOM", "POST"],
//!   "page_size": 500,
//!   "since": 0,
//!   "events": "auto",
//!   "events_tag": "compliance-archiver",
//!   "events_messages": false
//! }
//! ```
//!
//! The URLs are base URLs (scheme, host, optional port and path prefix); the
//! plugin appends `/login/...` and `/pod/...` to `pod_url`, `/agent/...` to
//! `agent_url` and `/relay/...` to `key_manager_url`. `agent_url` and
//! `key_manager_url` default to `pod_url` (one origin serving everything).
//! `key_manager_login = false` skips the key-manager login, for pods with
//! Simplified Key Delivery, whose agent needs the session token only.
//! The RSA private key is not configuration: it is the signing key
//! `private-key` the host signs the login JWT with.

use connector_sdk::{ConversationKind, SourceError};
use serde::Deserialize;

/// Largest `limit` the agent accepts for a message page.
pub const MAX_PAGE_SIZE: u32 = 500;

/// Symphony stream (conversation) types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamType {
    /// One-to-one instant message.
    Im,
    /// Multi-party instant message.
    Mim,
    /// Chat room.
    Room,
    /// Wall post.
    Post,
}

impl StreamType {
    /// All types, in the default order.
    pub const ALL: [StreamType; 4] = [
        StreamType::Im,
        StreamType::Mim,
        StreamType::Room,
        StreamType::Post,
    ];

    /// The wire name (`IM`, `MIM`, `ROOM`, `POST`).
    pub fn as_str(self) -> &'static str {
        match self {
            StreamType::Im => "IM",
            StreamType::Mim => "MIM",
            StreamType::Room => "ROOM",
            StreamType::Post => "POST",
        }
    }

    /// Parses a wire name, ignoring case.
    pub fn parse(s: &str) -> Option<StreamType> {
        match s.trim().to_ascii_uppercase().as_str() {
            "IM" => Some(StreamType::Im),
            "MIM" => Some(StreamType::Mim),
            "ROOM" => Some(StreamType::Room),
            "POST" => Some(StreamType::Post),
            _ => None,
        }
    }

    /// The conversation kind a stream of this type becomes.
    pub fn conversation_kind(self) -> ConversationKind {
        match self {
            StreamType::Im => ConversationKind::Direct,
            StreamType::Mim => ConversationKind::Group,
            StreamType::Room => ConversationKind::Room,
            StreamType::Post => ConversationKind::Feed,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    pod_url: String,
    agent_url: Option<String>,
    key_manager_url: Option<String>,
    key_manager_login: Option<bool>,
    username: String,
    stream_types: Option<Vec<String>>,
    page_size: Option<u32>,
    since: Option<i64>,
    events: Option<RawEvents>,
    events_tag: Option<String>,
    events_messages: Option<bool>,
}

/// `events` as written: `true`, `false` or `"auto"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawEvents {
    Flag(bool),
    Word(String),
}

/// Whether the run reads the datahose (`POST /agent/v5/events/read`), a
/// paid add-on of the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventsMode {
    /// Read it when the pod has it (the default): a pod that answers 403
    /// or 404 is archived without its events, and the run reports what is
    /// not captured as a standing warning.
    Auto,
    /// Read it, and fail the run when the pod does not have it (`true`).
    Required,
    /// Never read it (`false`).
    Off,
}

impl EventsMode {
    /// Whether the run asks the datahose at all.
    pub fn reads(self) -> bool {
        self != EventsMode::Off
    }

    fn parse(raw: Option<RawEvents>) -> Result<EventsMode, SourceError> {
        match raw {
            None => Ok(EventsMode::Auto),
            Some(RawEvents::Flag(true)) => Ok(EventsMode::Required),
            Some(RawEvents::Flag(false)) => Ok(EventsMode::Off),
            Some(RawEvents::Word(w)) if w.trim().eq_ignore_ascii_case("auto") => {
                Ok(EventsMode::Auto)
            }
            Some(RawEvents::Word(w)) => Err(SourceError::invalid_config(format!(
                "events {w:?} is not a value it takes: write \"auto\" (read the datahose \
                 when the pod has it), true (fail without it) or false (never read it)"
            ))),
        }
    }
}

/// A checked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Pod base URL, without a trailing `/`.
    pub pod_url: String,
    /// Agent base URL, without a trailing `/`.
    pub agent_url: String,
    /// Key manager base URL, without a trailing `/`.
    pub key_manager_url: String,
    /// Whether to log in to the key manager (not needed with Simplified Key
    /// Delivery, where the agent takes the session token alone).
    pub key_manager_login: bool,
    /// Service account username (the JWT `sub`).
    pub username: String,
    /// Stream types to archive, without repeats, in [`StreamType::ALL`] order.
    pub stream_types: Vec<StreamType>,
    /// Messages per request (1 to 500).
    pub page_size: u32,
    /// Where streams without a position start (ms since the epoch).
    pub since: i64,
    /// Whether to read suppressions and room joins/leaves from the datahose
    /// (`POST /agent/v5/events/read`).
    pub events: EventsMode,
    /// The datahose feed's tag.
    pub events_tag: String,
    /// Whether to read messages from the datahose too (`MESSAGESENT`,
    /// `SHAREDPOST`): the messages of every conversation, also those the
    /// service account is not a member of.
    pub events_messages: bool,
}

impl Config {
    /// Parses and checks `config_json`.
    pub fn parse(config_json: &str) -> Result<Config, SourceError> {
        let raw: RawConfig = connector_sdk::parse_config(config_json)?;
        let pod_url = base_url("pod_url", &raw.pod_url)?;
        let agent_url = match &raw.agent_url {
            Some(url) => base_url("agent_url", url)?,
            None => pod_url.clone(),
        };
        let key_manager_url = match &raw.key_manager_url {
            Some(url) => base_url("key_manager_url", url)?,
            None => pod_url.clone(),
        };
        let username = raw.username.trim().to_string();
        if username.is_empty() || username.chars().any(char::is_control) {
            return Err(SourceError::invalid_config(
                "username must be the service account's username (not empty)",
            ));
        }
        let stream_types = match raw.stream_types {
            None => StreamType::ALL.to_vec(),
            Some(list) => {
                let mut types = Vec::new();
                for name in &list {
                    let t = StreamType::parse(name).ok_or_else(|| {
                        SourceError::invalid_config(format!(
                            "stream_types: unknown type {name:?}; use IM, MIM, ROOM or POST"
                        ))
                    })?;
                    if !types.contains(&t) {
                        types.push(t);
                    }
                }
                if types.is_empty() {
                    return Err(SourceError::invalid_config(
                        "stream_types must name at least one of IM, MIM, ROOM, POST",
                    ));
                }
                types.sort();
                types
            }
        };
        let page_size = match raw.page_size {
            None => MAX_PAGE_SIZE,
            Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            Some(n) => {
                return Err(SourceError::invalid_config(format!(
                    "page_size {n} is out of range (1 to {MAX_PAGE_SIZE})"
                )));
            }
        };
        let since = raw.since.unwrap_or(0);
        if since < 0 {
            return Err(SourceError::invalid_config(format!(
                "since {since} must be a time in milliseconds since 1970 (0 or more)"
            )));
        }
        let events_tag = match raw.events_tag {
            Some(tag) => {
                let tag = tag.trim().to_string();
                if tag.is_empty() || tag.chars().count() > 80 || tag.chars().any(char::is_control) {
                    return Err(SourceError::invalid_config(
                        "events_tag must have 1 to 80 characters",
                    ));
                }
                tag
            }
            None => default_tag(&username),
        };
        Ok(Config {
            pod_url,
            agent_url,
            key_manager_url,
            key_manager_login: raw.key_manager_login.unwrap_or(true),
            username,
            stream_types,
            page_size,
            since,
            events: EventsMode::parse(raw.events)?,
            events_tag,
            events_messages: raw.events_messages.unwrap_or(false),
        })
    }

    /// Whether streams of type `t` are archived.
    pub fn wants(&self, t: StreamType) -> bool {
        self.stream_types.contains(&t)
    }
}

/// `connector-<username>`, cut to 80 characters.
fn default_tag(username: &str) -> String {
    format!("connector-{username}").chars().take(80).collect()
}

/// Checks a base URL: `http(s)://host[:port][/prefix]`, without query,
/// fragment, user info or whitespace; returns it without trailing `/`.
fn base_url(field: &str, url: &str) -> Result<String, SourceError> {
    let url = url.trim();
    let bad = |why: &str| {
        SourceError::invalid_config(format!(
            "{field} {url:?} {why}; give a base URL such as https://acme.symphony.com"
        ))
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| bad("must start with https:// or http://"))?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("must not contain spaces"));
    }
    if url.contains(['?', '#']) {
        return Err(bad("must not have a query or fragment"));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || authority.starts_with(':') {
        return Err(bad("has no valid host"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(r#"{"pod_url": "https://pod.example/", "username": "bot"}"#).unwrap();
        assert_eq!(c.pod_url, "https://pod.example");
        assert_eq!(c.agent_url, "https://pod.example");
        assert_eq!(c.key_manager_url, "https://pod.example");
        assert_eq!(c.stream_types, StreamType::ALL.to_vec());
        assert_eq!(c.page_size, 500);
        assert_eq!(c.since, 0);
        assert_eq!(c.events, EventsMode::Auto);
        assert_eq!(c.events_tag, "connector-bot");
    }

    #[test]
    fn events_takes_auto_true_and_false() {
        let events = |value: &str| {
            Config::parse(&format!(
                r#"{{"pod_url": "https://pod.example", "username": "bot", "events": {value}}}"#
            ))
            .unwrap()
            .events
        };
        assert_eq!(events(r#""auto""#), EventsMode::Auto);
        assert_eq!(events(r#"" AUTO ""#), EventsMode::Auto);
        assert_eq!(events("true"), EventsMode::Required);
        assert_eq!(events("false"), EventsMode::Off);
    }

    #[test]
    fn full_config() {
        let c = Config::parse(
            r#"{"pod_url": "https://pod.example", "agent_url": "http://127.0.0.1:8443/",
                "key_manager_url": "https://km.example/prefix", "username": " bot ",
                "stream_types": ["room", "IM", "ROOM"], "page_size": 1, "since": 1700000000000,
                "events": false, "events_tag": "archiver"}"#,
        )
        .unwrap();
        assert_eq!(c.agent_url, "http://127.0.0.1:8443");
        assert_eq!(c.key_manager_url, "https://km.example/prefix");
        assert_eq!(c.username, "bot");
        assert_eq!(c.stream_types, vec![StreamType::Im, StreamType::Room]);
        assert_eq!(c.page_size, 1);
        assert_eq!(c.since, 1_700_000_000_000);
        assert_eq!(c.events, EventsMode::Off);
        assert_eq!(c.events_tag, "archiver");
        assert!(c.wants(StreamType::Room) && !c.wants(StreamType::Post));
    }

    #[test]
    fn bad_configs_are_invalid_config() {
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"pod_url": "https://pod.example"}"#,
            r#"{"username": "bot"}"#,
            r#"{"pod_url": "pod.example", "username": "bot"}"#,
            r#"{"pod_url": "ftp://pod.example", "username": "bot"}"#,
            r#"{"pod_url": "https://", "username": "bot"}"#,
            r#"{"pod_url": "https://pod.example?x=1", "username": "bot"}"#,
            r#"{"pod_url": "https://user@pod.example", "username": "bot"}"#,
            r#"{"pod_url": "https://pod .example", "username": "bot"}"#,
            r#"{"pod_url": "https://pod.example", "username": "  "}"#,
            r#"{"pod_url": "https://pod.example", "username": "bot", "stream_types": []}"#,
            r#"{"pod_url": "https://pod.example", "username": "bot", "stream_types": ["CHAT"]}"#,
            r#"{"pod_url": "https://pod.example", "username": "bot", "page_size": 0}"#,
            r#"{"pod_url": "https://pod.example", "username": "bot", "page_size": 501}"#,
            r#"{"pod_url": "https://pod.example", "username": "bot", "since": -1}"#,
            r#"{"pod_url": "https://pod.example", "username": "bot", "events_tag": ""}"#,
            r#"{"pod_url": "https://pod.example", "username": "bot", "events": "sometimes"}"#,
            r#"{"pod_url": "https://pod.example", "username": "bot", "events": 1}"#,
            r#"{"pod_url": "https://pod.example", "username": "bot", "private_key": "x"}"#,
            r#"{"pod_url": "https://pod.example", "username": "bot", "agent_url": "x"}"#,
        ] {
            assert!(
                matches!(Config::parse(bad), Err(SourceError::InvalidConfig(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn long_usernames_give_a_short_tag() {
        let name = "x".repeat(200);
        let c = Config::parse(&format!(
            r#"{{"pod_url": "https://pod.example", "username": "{name}"}}"#
        ))
        .unwrap();
        assert_eq!(c.events_tag.chars().count(), 80);
    }

    #[test]
    fn kinds() {
        assert_eq!(StreamType::Im.conversation_kind(), ConversationKind::Direct);
        assert_eq!(StreamType::Mim.conversation_kind(), ConversationKind::Group);
        assert_eq!(StreamType::Room.conversation_kind(), ConversationKind::Room);
        assert_eq!(StreamType::Post.conversation_kind(), ConversationKind::Feed);
        assert_eq!(StreamType::parse(" post "), Some(StreamType::Post));
        assert_eq!(StreamType::parse("x"), None);
    }
}
