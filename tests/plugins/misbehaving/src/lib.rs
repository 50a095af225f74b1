//! A source plugin for the host's failure tests.
//!
//! Configuration (JSON):
//!
//! ```json
//! {"pages": 3, "per_page": 2, "mode": "trap", "at_page": 1, "url": "http://127.0.0.1:9/"}
//! ```
//!
//! * `pages` (default 1): number of pages the source holds;
//! * `per_page` (default 1): messages per page;
//! * `mode` (default `none`): what to do on reaching page `at_page`:
//!   `none`, `trap` (panic), `loop` (spin forever), `oom` (allocate and touch
//!   memory until allocation fails, then panic), `denied-host` (`http::fetch`
//!   of `url`, returning the host's error converted to a source error),
//!   `undeclared-secret` (read the secret `not-declared`, returning its error
//!   as permanent), `error` (a transient error), `endless-attachment` (the
//!   first message of page `at_page` has a deferred attachment of unknown
//!   size whose reads never end);
//! * `at_page` (default 0): absolute, 0-based page number at which to
//!   misbehave; pages before it are served normally;
//! * `url`: target of `denied-host`;
//! * `participants` (default 0): people added to conversation `c1` (`p-0`,
//!   `p-1`, …), for the host's limit on a conversation's size.
//!
//! Page `p` holds messages `m-<p>-<i>` for `i` in `0..per_page` in
//! conversation `c1` (a room with `alice` <alice@example.test> and `bob`
//! <bob@example.test>, described in the first page of each session that has
//! messages); senders alternate, starting with alice. The checkpoint is the
//! next page number as ASCII decimal (e.g. `b"2"`); the page `pages - 1` is
//! `complete`.

use connector_sdk::http::{self, Request};
use connector_sdk::{
    Attachment, AttachmentBody, AttachmentReader, Conversation, ConversationKind, Message, Page,
    Person, Source, SourceError, secrets,
};
use std::hint::black_box;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    None,
    Trap,
    Loop,
    Oom,
    DeniedHost,
    UndeclaredSecret,
    Error,
    EndlessAttachment,
}

fn one() -> u64 {
    1
}

fn mode_none() -> Mode {
    Mode::None
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "one")]
    pages: u64,
    #[serde(default = "one")]
    per_page: u64,
    #[serde(default = "mode_none")]
    mode: Mode,
    #[serde(default)]
    at_page: u64,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    participants: u64,
}

impl Config {
    fn parse(config_json: &str) -> Result<Self, SourceError> {
        let config: Config = connector_sdk::parse_config(config_json)?;
        if config.per_page > 100_000 {
            return Err(SourceError::invalid_config(
                "per_page must be at most 100000",
            ));
        }
        if config.mode == Mode::DeniedHost && config.url.is_none() {
            return Err(SourceError::invalid_config("mode denied-host needs a url"));
        }
        Ok(config)
    }
}

/// The misbehaving source; see the crate documentation.
pub struct Misbehaving {
    config: Config,
    next: u64,
    described: bool,
}

fn person(name: &str, display: &str) -> Person {
    Person::new(name)
        .with_name(display)
        .with_email(format!("{name}@example.test"))
}

impl Misbehaving {
    fn misbehave(&self) -> Result<(), SourceError> {
        let page = self.next;
        match self.config.mode {
            Mode::None => Ok(()),
            Mode::Trap => panic!("misbehaving plugin: trap at page {page}"),
            Mode::Loop => {
                let mut counter = 0u64;
                loop {
                    counter = black_box(counter.wrapping_add(1));
                }
            }
            Mode::Oom => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut block: Vec<u8> = Vec::new();
                    if block.try_reserve_exact(1 << 20).is_err() {
                        panic!(
                            "misbehaving plugin: allocation failed after {} MiB",
                            hoard.len()
                        );
                    }
                    // Touch every byte so the memory is really used.
                    block.resize(1 << 20, 0xA5);
                    hoard.push(black_box(block));
                }
            }
            Mode::DeniedHost => {
                let url = self.config.url.as_deref().unwrap_or_default();
                match http::fetch(&Request::get(url)) {
                    Err(e) => Err(e.into()),
                    Ok(response) => Err(SourceError::permanent(format!(
                        "misbehaving plugin: fetch of {url} was allowed (status {})",
                        response.status
                    ))),
                }
            }
            Mode::UndeclaredSecret => match secrets::get("not-declared") {
                Err(e) => Err(SourceError::permanent(format!(
                    "misbehaving plugin: reading secret not-declared failed: {e:?}"
                ))),
                Ok(_) => Err(SourceError::permanent(
                    "misbehaving plugin: undeclared secret was readable",
                )),
            },
            Mode::Error => Err(SourceError::transient(format!(
                "misbehaving plugin: requested error at page {page}"
            ))),
            Mode::EndlessAttachment => Ok(()),
        }
    }

    fn page(&mut self) -> Page {
        let p = self.next;
        let (alice, bob) = (person("alice", "Alice"), person("bob", "Bob"));
        if p >= self.config.pages {
            return Page::new(p.to_string()).with_complete(true);
        }
        let per_page = self.config.per_page;
        let messages: Vec<Message> = (0..per_page)
            .map(|i| {
                let sender = if i % 2 == 0 { &alice } else { &bob };
                let n = p * per_page + i;
                let sent_at = 1_700_000_000_000 + n as i64 * 1000;
                Message::chat(format!("m-{p}-{i}"), "c1", sender.clone(), sent_at)
                    .with_text(format!("message {i} of page {p}"))
                    .with_property("X-Test-Page", p.to_string())
            })
            .collect();
        let endless = self.config.mode == Mode::EndlessAttachment && p == self.config.at_page;
        let messages: Vec<Message> = messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                if endless && i == 0 {
                    m.with_attachment(Attachment::new(
                        "endless",
                        "endless.bin",
                        AttachmentBody::Deferred,
                    ))
                } else {
                    m
                }
            })
            .collect();
        self.next = p + 1;
        let mut page = Page::new(self.next.to_string())
            .with_complete(self.next >= self.config.pages)
            .with_messages(messages);
        if !page.messages.is_empty() && !self.described {
            page = page.with_conversation(
                Conversation::new("c1", ConversationKind::Room)
                    .with_name("Misbehaving room")
                    .with_participants([alice, bob].into_iter().chain(
                        (0..self.config.participants).map(|i| Person::new(format!("p-{i}"))),
                    )),
            );
            self.described = true;
        }
        page
    }
}

impl Source for Misbehaving {
    const NAME: &'static str = "misbehaving";
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
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| {
                    SourceError::permanent(format!("misbehaving plugin: bad checkpoint {bytes:?}"))
                })?,
        };
        Ok(Misbehaving {
            config,
            next,
            described: false,
        })
    }

    fn next_page(&mut self) -> Result<Page, SourceError> {
        if self.next == self.config.at_page {
            self.misbehave()?;
        }
        let page = self.page();
        connector_sdk::info!("page served"; page = self.next.saturating_sub(1), messages = page.messages.len());
        Ok(page)
    }

    fn open_attachment(
        &mut self,
        _message_id: &str,
        _attachment_id: &str,
    ) -> Result<Box<dyn AttachmentReader>, SourceError> {
        Ok(Box::new(Endless))
    }
}

/// An attachment whose reads never end.
struct Endless;

impl AttachmentReader for Endless {
    fn read(&mut self, max_bytes: u32) -> Result<Option<Vec<u8>>, SourceError> {
        Ok(Some(vec![0x5A; max_bytes as usize]))
    }
}

connector_sdk::export!(Misbehaving);

#[cfg(test)]
mod tests {
    use super::*;

    fn open(config: &str, checkpoint: Option<&str>) -> Misbehaving {
        Misbehaving::open(config, checkpoint.map(|c| c.as_bytes().to_vec())).unwrap()
    }

    #[test]
    fn pages_and_checkpoints() {
        let mut s = open(r#"{"pages": 2, "per_page": 3}"#, None);
        let p0 = s.next_page().unwrap();
        assert_eq!(p0.conversations.len(), 1);
        let ids: Vec<_> = p0.messages.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["m-0-0", "m-0-1", "m-0-2"]);
        assert_eq!(p0.messages[1].sender.id, "bob");
        assert_eq!(p0.checkpoint, b"1");
        assert!(!p0.complete);
        let p1 = s.next_page().unwrap();
        assert!(p1.conversations.is_empty());
        assert_eq!(p1.checkpoint, b"2");
        assert!(p1.complete);

        let mut s = open(r#"{"pages": 2, "per_page": 3}"#, Some("1"));
        let p1 = s.next_page().unwrap();
        assert_eq!(p1.conversations.len(), 1);
        assert_eq!(p1.messages[0].id, "m-1-0");
        assert!(p1.complete);
    }

    #[test]
    fn error_mode_at_absolute_page() {
        let config = r#"{"pages": 3, "per_page": 1, "mode": "error", "at_page": 1}"#;
        let mut s = open(config, None);
        assert!(s.next_page().is_ok());
        assert!(matches!(s.next_page(), Err(SourceError::Transient(_))));
        let mut s = open(config, Some("2"));
        assert!(s.next_page().unwrap().complete);
    }

    #[test]
    fn config_checks() {
        assert!(Misbehaving::validate_config(r#"{"mode": "denied-host"}"#).is_err());
        assert!(Misbehaving::validate_config(r#"{"mode": "explode"}"#).is_err());
        assert!(Misbehaving::validate_config(r#"{"mode": "oom", "at_page": 0}"#).is_ok());
    }
}
