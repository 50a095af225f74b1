//! # __PLUGIN_ID__
//!
//! A source plugin for __DISPLAY_NAME__, built on `connector-sdk`. Replace
//! the sample data in [`__TYPE_NAME__::next_page`] with calls to the source
//! (see docs/plugin-guide.md for HTTP, secrets, files, checkpoints and
//! attachments).
//!
//! Configuration (the connector file's `[plugin-config]`, as JSON):
//! `{"room": "General", "messages": 3, "page_size": 2}`.
//!
//! Checkpoint: the index of the next message, as decimal text.

use connector_sdk::{Conversation, ConversationKind, Message, Page, Person, Source, SourceError};
use serde::Deserialize;

/// The plugin's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of the sample room.
    #[serde(default = "default_room")]
    pub room: String,
    /// How many sample messages to emit.
    #[serde(default = "default_messages")]
    pub messages: u32,
    /// Messages per page.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
}

fn default_room() -> String {
    "General".into()
}

fn default_messages() -> u32 {
    3
}

fn default_page_size() -> u32 {
    100
}

impl Config {
    /// Parses and checks the configuration without any I/O.
    pub fn parse(config_json: &str) -> Result<Config, SourceError> {
        let config: Config = connector_sdk::parse_config(config_json)?;
        if config.page_size == 0 {
            return Err(SourceError::invalid_config("page_size must be at least 1"));
        }
        Ok(config)
    }
}

/// One sync session.
pub struct __TYPE_NAME__ {
    config: Config,
    next: u32,
    described: bool,
}

impl Source for __TYPE_NAME__ {
    const NAME: &'static str = "__PLUGIN_ID__";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn validate_config(config_json: &str) -> Result<(), SourceError> {
        Config::parse(config_json).map(|_| ())
    }

    fn open(config_json: &str, checkpoint: Option<Vec<u8>>) -> Result<Self, SourceError> {
        let config = Config::parse(config_json)?;
        let next = match checkpoint {
            None => 0,
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| SourceError::permanent("checkpoint is not a message index"))?,
        };
        // State survives between runs whatever becomes of a page: fine for
        // bookkeeping like this count, never for resume positions (those go
        // in the checkpoint). Outside the host (native tests) it is absent.
        let sessions = connector_sdk::state::get("sessions")
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        let _ = connector_sdk::state::set("sessions", sessions.to_string().as_bytes());
        connector_sdk::info!("session opened"; next = next, sessions = sessions);
        Ok(__TYPE_NAME__ {
            config,
            next,
            described: false,
        })
    }

    fn next_page(&mut self) -> Result<Page, SourceError> {
        // Records are built with constructors and `with_*` methods: fields
        // a later SDK adds get defaults, so this code keeps compiling.
        let person = Person::new("sample-user")
            .with_name("Sample User")
            .with_email("sample.user@example.test");
        let end = (self.next + self.config.page_size).min(self.config.messages);
        // The host commits the checkpoint once every message of the page is
        // delivered.
        let mut page = Page::new(end.to_string()).with_complete(end >= self.config.messages);
        if !self.described {
            // Describe each conversation once per session, in the page of its
            // first message.
            self.described = true;
            page = page.with_conversation(
                Conversation::new("sample-room", ConversationKind::Room)
                    .with_name(&self.config.room)
                    .with_participant(person.clone()),
            );
        }
        for i in self.next..end {
            let sent_at = 1_700_000_000_000 + i64::from(i) * 60_000;
            page = page.with_message(
                Message::chat(
                    format!("sample-{i}"),
                    "sample-room",
                    person.clone(),
                    sent_at,
                )
                .with_text(format!("Sample message {i} from __DISPLAY_NAME__")),
            );
        }
        self.next = end;
        Ok(page)
    }
}

connector_sdk::export!(__TYPE_NAME__);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_checkpoints() {
        let config = r#"{"messages": 3, "page_size": 2}"#;
        let mut session = __TYPE_NAME__::open(config, None).unwrap();
        let first = session.next_page().unwrap();
        assert_eq!(first.messages.len(), 2);
        assert!(!first.complete);
        let mut resumed = __TYPE_NAME__::open(config, Some(first.checkpoint)).unwrap();
        let second = resumed.next_page().unwrap();
        assert_eq!(second.messages[0].id, "sample-2");
        assert!(second.complete);
    }

    #[test]
    fn bad_configuration_is_refused() {
        assert!(matches!(
            __TYPE_NAME__::validate_config(r#"{"page_size": 0}"#),
            Err(SourceError::InvalidConfig(_))
        ));
    }
}
