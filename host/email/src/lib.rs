//! Turns a normalized [`Message`] and its [`Conversation`] into an RFC 5322
//! email, ready for a mailbox.
//!
//! The output is deterministic: the same message always gives the same
//! bytes (MIME boundaries are derived from the Message-ID, the Date from the
//! send time), so [`Email::sha256`] identifies the content.
//!
//! Every value a source gives is kept exactly: header values that would not
//! survive a parser unchanged are written as RFC 2047 encoded words, and
//! attachments are written byte for byte; those the HTML body shows
//! through `cid:` URLs go inline beside it (see the `inline` module). Line breaks in text bodies are
//! written as CRLF, as RFC 5322 requires.

mod email;
mod encode;
mod inline;
mod spool;
#[cfg(test)]
mod tests;
mod transcript;
mod writer;

pub use email::Email;
pub use transcript::{
    EntryError, TranscriptDay, TranscriptEntry, TranscriptFile, transcript_item_id,
};

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};
use sha2::{Digest, Sha256};
use writer::{AttachmentSource, EmailWriter, WriteError};

use connector_model::digest::{hex, sha256_hex};
use connector_model::{
    AttachmentData, Conversation, ConversationKind, Message, MessageKind, Person, Relation,
};
use connector_model::{html, is_plain_address};

/// How many participants a generated subject names before "and N others".
const SUBJECT_NAMES: usize = 3;
/// Longest property name kept in an `X-Connector-Property-<Name>` header.
const MAX_PROPERTY_NAME: usize = 40;
/// Media type of attachments whose type is unknown or unusable.
const OCTET_STREAM: &str = "application/octet-stream";

/// Why a message could not be turned into an email.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The message has no id, so it has no stable Message-ID.
    #[error(
        "a message in conversation `{conversation_id}` has an empty id; the plugin must give every message a stable id (report this to the plugin's authors)"
    )]
    EmptyMessageId {
        /// The conversation the message claimed.
        conversation_id: String,
    },
    /// The message was paired with another conversation than its own.
    #[error(
        "message `{message_id}` belongs to conversation `{message_conversation}` but was converted with conversation `{conversation}`; this is a host bug, please report it"
    )]
    ConversationMismatch {
        /// The message's source id.
        message_id: String,
        /// The conversation id the message carries.
        message_conversation: String,
        /// The id of the conversation it was given with.
        conversation: String,
    },
    /// A spooled attachment file could not be read.
    #[error(
        "cannot read attachment `{attachment_id}` of message `{message_id}` from {}: {source}; check that the spool folder still exists and is readable, then run again", path.display()
    )]
    AttachmentRead {
        /// The message's source id.
        message_id: String,
        /// The attachment's id.
        attachment_id: String,
        /// The spool file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// A big email could not be written to its spool file.
    #[error(
        "cannot write the email for message `{message_id}` to a spool file: {source}; check free space and permissions in {}, then run again", dir.display()
    )]
    Spool {
        /// The message's source id.
        message_id: String,
        /// The spool folder.
        dir: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
}

/// Builds emails for one source.
#[derive(Debug, Clone)]
pub struct EmailConverter {
    source_id: String,
    source_name: String,
    /// `source_id` as a DNS label, for Message-IDs and placeholder addresses.
    label: String,
    /// Where emails bigger than `spill_above` bytes are written.
    spool_dir: PathBuf,
    spill_above: usize,
    /// The `To` and `Subject` headers of recent conversations: the
    /// messages of a page mostly share one.
    headers: std::sync::Arc<std::sync::Mutex<HashMap<String, ConversationHeaders>>>,
}

/// The headers written for a conversation, with what they were written
/// from.
#[derive(Debug)]
struct ConversationHeaders {
    participants: Vec<Person>,
    name: Option<String>,
    /// The encoded `To` value.
    to: String,
    /// The encoded `Subject` value per subject prefix (message kind).
    subjects: Vec<(&'static str, String)>,
}

/// Conversations whose headers are kept at most; the cache starts afresh
/// past that.
const HEADERS_CACHED: usize = 4096;

/// Text attachments up to this size are encoded whole by mail-builder
/// (7bit, quoted-printable or base64, whichever suits); bigger ones, like
/// every other attachment, are base64 written in chunks. A constant, so the
/// same message always gives the same bytes.
const TEXT_ATTACHMENT_WHOLE_MAX: u64 = 4 * 1024 * 1024;

/// Emails up to this size are built in memory; bigger ones in a spool file.
pub const DEFAULT_SPILL_ABOVE: usize = 4 * 1024 * 1024;

impl EmailConverter {
    /// A converter for the source with this id (e.g. `symphony`, part of
    /// every Message-ID, so it must never change for a source) and display
    /// name (e.g. `Symphony`).
    pub fn new(source_id: &str, source_name: &str) -> EmailConverter {
        EmailConverter {
            source_id: source_id.to_string(),
            source_name: source_name.to_string(),
            label: dns_label(source_id),
            spool_dir: writer::default_spool_dir(),
            spill_above: DEFAULT_SPILL_ABOVE,
            headers: Default::default(),
        }
    }

    /// The same converter, writing emails bigger than `spill_above` bytes
    /// to spool files in `dir` instead of memory (by default: the
    /// temporary folder, above [`DEFAULT_SPILL_ABOVE`]).
    pub fn with_spool(mut self, dir: &Path, spill_above: usize) -> EmailConverter {
        self.spool_dir = dir.to_path_buf();
        self.spill_above = spill_above;
        self
    }

    /// The Message-ID (without angle brackets) of the message with this
    /// source id.
    ///
    /// It is `<h>@<label>.connector.invalid`, where `h` is the first 32 hex
    /// digits of SHA-256 over the source id's UTF-8 bytes, a zero byte and
    /// the message id's UTF-8 bytes, and `label` is the source id lower-cased
    /// with every character other than `a-z`, `0-9` and `-` replaced by `-`.
    /// Mailboxes deduplicate on it and replies point at it, so this formula
    /// must stay the same forever.
    pub fn message_id(&self, source_message_id: &str) -> String {
        let mut hash = Sha256::new();
        hash.update(self.source_id.as_bytes());
        hash.update([0u8]);
        hash.update(source_message_id.as_bytes());
        format!(
            "{}@{}.connector.invalid",
            hex(&hash.finalize()[..16]),
            self.label
        )
    }

    /// The address used for someone in the headers: their email when it is
    /// a plain ASCII address, else `<id>@<label>.invalid` where `<id>` is the
    /// person id made safe for a local part (see [`placeholder_local_part`]).
    pub fn address_of(&self, person: &Person) -> String {
        match person.email.as_deref().map(str::trim) {
            Some(email) if is_plain_address(email) => email.to_string(),
            _ => format!(
                "{}@{}.invalid",
                placeholder_local_part(&person.id),
                self.label
            ),
        }
    }

    /// Builds the email for `msg`, which belongs to `conv`, knowing none
    /// of the messages it refers to (see [`EmailConverter::convert_quoting`]).
    pub fn convert(&self, msg: &Message, conv: &Conversation) -> Result<Email, ConvertError> {
        self.build(msg, conv, None, &|_| None)
    }

    /// Builds the email for `msg`, which belongs to `conv`. A message it
    /// replies to (forwards, edits, deletes) that `earlier` knows by source
    /// id is shown at the top of the body as mail clients quote: who sent
    /// it, when, and its first line; one it does not know is "an earlier
    /// message". Source ids appear only in the `X-Connector-*` headers.
    pub fn convert_quoting(
        &self,
        msg: &Message,
        conv: &Conversation,
        earlier: &dyn Fn(&str) -> Option<Quote>,
    ) -> Result<Email, ConvertError> {
        self.build(msg, conv, None, earlier)
    }

    /// Builds the email for `msg`, with `subject` instead of the one made
    /// from the conversation when it is given, quoting what `earlier`
    /// knows of the messages it refers to.
    fn build(
        &self,
        msg: &Message,
        conv: &Conversation,
        subject: Option<&str>,
        earlier: &dyn Fn(&str) -> Option<Quote>,
    ) -> Result<Email, ConvertError> {
        if msg.id.is_empty() {
            return Err(ConvertError::EmptyMessageId {
                conversation_id: msg.conversation_id.clone(),
            });
        }
        if msg.conversation_id != conv.id {
            return Err(ConvertError::ConversationMismatch {
                message_id: msg.id.clone(),
                message_conversation: msg.conversation_id.clone(),
                conversation: conv.id.clone(),
            });
        }

        let message_id = self.message_id(&msg.id);
        let mut builder = MessageBuilder::new()
            .header("From", Raw::new(self.mailbox(&msg.sender)))
            .date(Date::new(msg.sent_at.div_euclid(1000)));
        let (to, conversation_subject) = self.conversation_headers(msg, conv);
        let subject = match subject {
            Some(given) => encode::unstructured(given, 9).into_owned(),
            None => conversation_subject,
        };
        if !to.is_empty() {
            builder = builder.header("To", Raw::new(to));
        }
        builder = builder
            .header("Subject", Raw::new(subject))
            .message_id(message_id.clone());

        // The Message-ID of each relation's target, worked out once.
        let related: Vec<String> = msg
            .relations
            .iter()
            .map(|r| self.message_id(relation_target(r)))
            .collect();
        let replies: Vec<String> = unique(
            msg.relations
                .iter()
                .zip(&related)
                .filter(|(r, _)| matches!(r, Relation::ReplyTo(_)))
                .map(|(_, id)| id.clone()),
        );
        if !replies.is_empty() {
            builder = builder.in_reply_to(MessageId::from(replies));
        }
        let references: Vec<String> = unique(related.iter().cloned());
        if !references.is_empty() {
            builder = builder.references(MessageId::from(references));
        }

        let mut x: Vec<(Cow<'_, str>, &str)> = vec![
            ("X-Connector-Source".into(), &self.source_id),
            ("X-Connector-Source-Name".into(), &self.source_name),
            ("X-Connector-Conversation-Id".into(), &conv.id),
            (
                "X-Connector-Conversation-Kind".into(),
                conversation_kind(conv.kind),
            ),
            ("X-Connector-Message-Id".into(), &msg.id),
            ("X-Connector-Message-Kind".into(), msg.kind.as_str()),
            ("X-Connector-Sender-Id".into(), &msg.sender.id),
            ("X-Connector-Source-SHA256".into(), &msg.source_sha256),
        ];
        for relation in &msg.relations {
            let name = match relation {
                Relation::ReplyTo(_) => "X-Connector-Reply-To",
                Relation::ForwardOf(_) => "X-Connector-Forward-Of",
                Relation::EditOf(_) => "X-Connector-Edit-Of",
                Relation::Deletes(_) => "X-Connector-Deletes",
            };
            x.push((name.into(), relation_target(relation)));
        }
        for (name, value) in &msg.properties {
            x.push((
                format!("X-Connector-Property-{}", property_header_name(name)).into(),
                value,
            ));
        }
        for (name, value) in x {
            let encoded = encode::unstructured(value, name.len() + 2);
            builder = builder.header(name, Raw::new(encoded));
        }

        let sources: Vec<AttachmentSource<'_>> = msg
            .attachments
            .iter()
            .map(|a| match &a.data {
                AttachmentData::Bytes(bytes) => AttachmentSource::Bytes(bytes),
                AttachmentData::File(path) => AttachmentSource::File(path),
            })
            .collect();
        let mut out = EmailWriter::new(&sources, &self.spool_dir, self.spill_above);
        builder
            .body(self.body(msg, &message_id, earlier)?)
            .serialize(&mut out);
        let built = out.finish().map_err(|e| match e {
            WriteError::Attachment { index, source } => {
                let attachment = &msg.attachments[index];
                ConvertError::AttachmentRead {
                    message_id: msg.id.clone(),
                    attachment_id: attachment.id.clone(),
                    path: match &attachment.data {
                        AttachmentData::File(path) => path.clone(),
                        AttachmentData::Bytes(_) => PathBuf::new(),
                    },
                    source,
                }
            }
            WriteError::Spool(source) => ConvertError::Spool {
                message_id: msg.id.clone(),
                dir: self.spool_dir.clone(),
                source,
            },
        })?;
        Ok(Email::built(message_id, built, msg.sent_at))
    }

    /// `"Name" <address>` (or `<address>` without a name), encoded.
    fn mailbox(&self, person: &Person) -> String {
        mailbox_with(person, &self.address_of(person))
    }

    /// The encoded `To` and `Subject` values, from the cache when the
    /// conversation's name and participants are the same as when they
    /// were written.
    fn conversation_headers(&self, msg: &Message, conv: &Conversation) -> (String, String) {
        let mut cache = self.headers.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = cache
            .get(&conv.id)
            .is_some_and(|h| h.participants == conv.participants && h.name == conv.name);
        if !fresh {
            if cache.len() >= HEADERS_CACHED {
                cache.clear();
            }
            cache.insert(
                conv.id.clone(),
                ConversationHeaders {
                    participants: conv.participants.clone(),
                    name: conv.name.clone(),
                    to: self.recipients(conv),
                    subjects: Vec::new(),
                },
            );
        }
        let headers = cache.get_mut(&conv.id).expect("inserted above");
        let prefix = subject_prefix(msg.kind);
        let subject = match headers.subjects.iter().find(|(p, _)| *p == prefix) {
            Some((_, subject)) => subject.clone(),
            None => {
                let subject = encode::unstructured(&subject(msg, conv), 9).into_owned();
                // Without a name or participants the subject names the
                // sender, so it is not the conversation's to keep.
                if !subject_names_sender(conv) {
                    headers.subjects.push((prefix, subject.clone()));
                }
                subject
            }
        };
        (headers.to.clone(), subject)
    }

    /// The `To` list: every participant once, in order.
    fn recipients(&self, conv: &Conversation) -> String {
        let mut seen_ids = std::collections::HashSet::new();
        let mut seen_addresses = std::collections::HashSet::new();
        let mut list = Vec::new();
        for person in &conv.participants {
            if !seen_ids.insert(person.id.as_str()) {
                continue;
            }
            let address = self.address_of(person);
            if !seen_addresses.insert(address.to_ascii_lowercase()) {
                continue;
            }
            list.push(mailbox_with(person, &address));
        }
        list.join(", ")
    }

    /// The body: text and HTML (as alternatives when both exist), in a
    /// multipart/related part with the attachments the HTML shows by
    /// `cid:` (see [`inline`]), then the other attachments, with boundaries
    /// derived from the Message-ID. Attachment
    /// bodies are placeholders the [`EmailWriter`] fills in.
    fn body(
        &self,
        msg: &Message,
        message_id: &str,
        earlier: &dyn Fn(&str) -> Option<Quote>,
    ) -> Result<MimePart<'static>, ConvertError> {
        let context = context_of(msg, earlier);
        let given_text = msg.text.as_deref().filter(|t| !t.is_empty());
        let given_html = msg.html.as_deref().filter(|t| !t.is_empty());
        let text = match (given_text, given_html) {
            (Some(text), _) => Some(with_context(&context, text)),
            (None, Some(_)) => None,
            (None, None) => Some(with_context(&context, &event_text(msg))),
        };
        let html = given_html.map(|html| {
            let quoted: String = context.iter().map(Context::html).collect();
            crlf(&format!("{quoted}{html}"))
        });

        // Attachments the HTML shows through `cid:` URLs go beside it in a
        // multipart/related part (see [`inline`]).
        let cids = given_html
            .map(inline::referenced_content_ids)
            .unwrap_or_default();
        let mut attachments = Vec::with_capacity(msg.attachments.len());
        let mut inline_parts = Vec::new();
        for (index, attachment) in msg.attachments.iter().enumerate() {
            let media_type = attachment
                .media_type
                .as_deref()
                .and_then(usable_media_type)
                .unwrap_or_else(|| OCTET_STREAM.to_string());
            let file_name = if attachment.file_name.trim().is_empty() {
                format!("attachment-{}", attachment.id)
            } else {
                attachment.file_name.clone()
            };
            // A text attachment that fits in memory is given to mail-builder
            // whole, which picks 7bit, quoted-printable or base64 for it;
            // anything else is base64 written by the EmailWriter in chunks
            // from where it lies.
            let text_bytes = if media_type.starts_with("text/") {
                match &attachment.data {
                    AttachmentData::Bytes(bytes) => Some(bytes.clone()),
                    AttachmentData::File(path)
                        if std::fs::metadata(path)
                            .is_ok_and(|m| m.len() <= TEXT_ATTACHMENT_WHOLE_MAX) =>
                    {
                        Some(std::fs::read(path).map_err(|source| {
                            ConvertError::AttachmentRead {
                                message_id: msg.id.clone(),
                                attachment_id: attachment.id.clone(),
                                path: path.clone(),
                                source,
                            }
                        })?)
                    }
                    AttachmentData::File(_) => None,
                }
            } else {
                None
            };
            let streamed = text_bytes.is_none();
            let body = text_bytes.unwrap_or_else(|| writer::placeholder(index));
            let id_header = "X-Connector-Attachment-Id";
            let inline = cids.contains(&attachment.id) && inline::is_content_id(&attachment.id);
            let part = MimePart::new(
                ContentType::new(media_type).attribute("name", file_name.clone()),
                BodyPart::Binary(Cow::Owned(body)),
            );
            let mut part = if inline {
                part.cid(attachment.id.clone()).header(
                    "Content-Disposition",
                    ContentType::new("inline").attribute("filename", file_name),
                )
            } else {
                part.attachment(file_name)
            }
            .header(
                id_header,
                Raw::new(encode::unstructured(&attachment.id, id_header.len() + 2).into_owned()),
            );
            if streamed {
                part = part.transfer_encoding("base64");
            }
            if inline {
                inline_parts.push(part);
            } else {
                attachments.push(part);
            }
        }

        let texts: Vec<&str> = text.iter().chain(html.iter()).map(String::as_str).collect();
        // Only the boundaries the email uses are worked out.
        let hash = std::cell::OnceCell::new();
        let boundary = |suffix: &str| {
            let hash = hash.get_or_init(|| hex(&Sha256::digest(message_id.as_bytes())[..12]));
            boundary(hash, suffix, &texts)
        };
        let alternative = (text.is_some() && html.is_some()).then(|| boundary("alt"));
        let mixed = (!attachments.is_empty() || (text.is_none() && html.is_none()))
            .then(|| boundary("mix"));
        let related = (!inline_parts.is_empty()).then(|| boundary("rel"));
        // RFC 2387: `type` names the root part's media type.
        let root_type = if text.is_some() {
            "multipart/alternative"
        } else {
            "text/html"
        };
        let main = match (text, html) {
            (Some(text), Some(html)) => Some(MimePart::new(
                ContentType::new("multipart/alternative")
                    .attribute("boundary", alternative.unwrap_or_default()),
                vec![
                    MimePart::new("text/plain", text),
                    MimePart::new("text/html", html),
                ],
            )),
            (Some(text), None) => Some(MimePart::new("text/plain", text)),
            (None, Some(html)) => Some(MimePart::new("text/html", html)),
            (None, None) => None,
        };
        // Inline parts exist only beside an HTML body, so `main` is some.
        let main = match (main, related) {
            (Some(main), Some(related)) => {
                let mut parts = Vec::with_capacity(inline_parts.len() + 1);
                parts.push(main);
                parts.extend(inline_parts);
                Some(MimePart::new(
                    ContentType::new("multipart/related")
                        .attribute("boundary", related)
                        .attribute("type", root_type),
                    parts,
                ))
            }
            (main, _) => main,
        };
        Ok(match main {
            Some(main) if attachments.is_empty() => main,
            main => {
                let mut parts = Vec::with_capacity(attachments.len() + 1);
                parts.extend(main);
                parts.extend(attachments);
                MimePart::new(
                    ContentType::new("multipart/mixed")
                        .attribute("boundary", mixed.unwrap_or_default()),
                    parts,
                )
            }
        })
    }
}

/// `"Name" <address>` (or `<address>` without a name), encoded.
fn mailbox_with(person: &Person, address: &str) -> String {
    match display_name(person) {
        Some(name) => format!("{} <{address}>", encode::phrase(name, 6)),
        None => format!("<{address}>"),
    }
}

/// A MIME boundary derived from the Message-ID (`hash`: the first 24 hex
/// digits of its SHA-256), changed in the (practically impossible) case
/// that a text part contains it.
fn boundary(hash: &str, suffix: &str, texts: &[&str]) -> String {
    let mut candidate = format!("=_conn_{hash}_{suffix}");
    let mut n = 0u32;
    while texts.iter().any(|t| t.contains(&candidate)) {
        n += 1;
        candidate = format!("=_conn_{hash}_{suffix}{n}");
    }
    candidate
}

/// The items without repeats, in order of first appearance.
fn unique(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn relation_target(relation: &Relation) -> &str {
    match relation {
        Relation::ReplyTo(id)
        | Relation::ForwardOf(id)
        | Relation::EditOf(id)
        | Relation::Deletes(id) => id,
    }
}

fn conversation_kind(kind: ConversationKind) -> &'static str {
    match kind {
        ConversationKind::Direct => "direct",
        ConversationKind::Group => "group",
        ConversationKind::Room => "room",
        ConversationKind::Feed => "feed",
    }
}

fn display_name(person: &Person) -> Option<&str> {
    person
        .display_name
        .as_deref()
        .filter(|name| !name.trim().is_empty())
}

/// What a person is called in generated text: display name, else email,
/// else id.
fn name_of(person: &Person) -> &str {
    display_name(person)
        .or_else(|| person.email.as_deref().filter(|e| !e.trim().is_empty()))
        .unwrap_or(&person.id)
}

/// The subject: the conversation's name, or "Conversation with …", with a
/// prefix naming the event for edits, deletions, joins and leaves.
fn subject(msg: &Message, conv: &Conversation) -> String {
    let base = match conv.name.as_deref().filter(|n| !n.trim().is_empty()) {
        Some(name) => name.to_string(),
        None => {
            let mut seen = std::collections::HashSet::new();
            let names: Vec<&str> = conv
                .participants
                .iter()
                .filter(|p| seen.insert(p.id.as_str()))
                .map(name_of)
                .collect();
            if names.is_empty() {
                format!("Conversation with {}", name_of(&msg.sender))
            } else if names.len() <= SUBJECT_NAMES {
                format!("Conversation with {}", names.join(", "))
            } else {
                let others = names.len() - SUBJECT_NAMES;
                format!(
                    "Conversation with {} and {others} other{}",
                    names[..SUBJECT_NAMES].join(", "),
                    if others == 1 { "" } else { "s" }
                )
            }
        }
    };
    format!("{}{base}", subject_prefix(msg.kind))
}

/// The subject's prefix naming the event for edits, deletions, joins and
/// leaves.
fn subject_prefix(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Edit => "Edited: ",
        MessageKind::Deletion => "Deleted: ",
        MessageKind::MemberJoined => "Member joined: ",
        MessageKind::MemberLeft => "Member left: ",
        MessageKind::Chat | MessageKind::System => "",
    }
}

/// Whether [`subject`] names the message's sender (the conversation has
/// neither a name nor participants).
fn subject_names_sender(conv: &Conversation) -> bool {
    conv.name.as_deref().is_none_or(|n| n.trim().is_empty()) && conv.participants.is_empty()
}

/// What a message's body shows of one it refers to (replies to, forwards,
/// edits, deletes), when the host knows it: who sent it, when, and its
/// first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The sender's name (display name, else email address, else id).
    pub sender: String,
    /// When it was sent, in ms since the epoch.
    pub sent_at: i64,
    /// Its first line of text (an event's description when it has none),
    /// cut at 80 characters.
    pub first_line: String,
}

impl Quote {
    /// What a message referring to `msg` shows of it.
    pub fn of(msg: &Message) -> Quote {
        Quote {
            sender: name_of(&msg.sender).to_string(),
            sent_at: msg.sent_at,
            first_line: transcript::first_line(&transcript::plain_text(msg)),
        }
    }
}

/// The lines above a message's own text about one message it refers to.
struct Context {
    /// "On … , Alice wrote:", or "In reply to an earlier message".
    intro: String,
    /// The first line of the message referred to, when known.
    quoted: Option<String>,
}

impl Context {
    /// As plain text: the intro, then the quoted line after `> `.
    fn text(&self) -> String {
        match &self.quoted {
            Some(line) => format!("{}\n> {line}", self.intro),
            None => self.intro.clone(),
        }
    }

    /// As HTML: the intro as a paragraph, the quoted line in a blockquote.
    fn html(&self) -> String {
        let quoted = self
            .quoted
            .as_deref()
            .map(|line| format!("<blockquote>{}</blockquote>\n", html::escape(line)))
            .unwrap_or_default();
        format!("<p>{}</p>\n{quoted}", html::escape(&self.intro))
    }
}

/// One [`Context`] per relation, the known ones (by `earlier`) quoted,
/// the others "an earlier message". Times are in UTC, so the same message
/// always makes the same email.
fn context_of(msg: &Message, earlier: &dyn Fn(&str) -> Option<Quote>) -> Vec<Context> {
    msg.relations
        .iter()
        .map(|relation| match earlier(relation_target(relation)) {
            Some(quote) => {
                let utc = connector_model::time::DayZone::default();
                let when = format!(
                    "{} at {} UTC",
                    utc.day_of(quote.sent_at),
                    utc.clock_of(quote.sent_at)
                );
                let who = &quote.sender;
                let intro = match relation {
                    Relation::ReplyTo(_) => format!("On {when}, {who} wrote:"),
                    Relation::ForwardOf(_) => format!("Forwarded from {who}, {when}:"),
                    Relation::EditOf(_) => format!("Edit of the message {who} sent {when}:"),
                    Relation::Deletes(_) => format!("Deletes the message {who} sent {when}:"),
                };
                Context {
                    intro,
                    quoted: Some(quote.first_line),
                }
            }
            None => Context {
                intro: match relation {
                    Relation::ReplyTo(_) => "In reply to an earlier message",
                    Relation::ForwardOf(_) => "Forwarded from an earlier message",
                    Relation::EditOf(_) => "Edit of an earlier message",
                    Relation::Deletes(_) => "Deletes an earlier message",
                }
                .to_string(),
                quoted: None,
            },
        })
        .collect()
}

/// The body text with the relations' context and a blank line in front.
fn with_context(context: &[Context], text: &str) -> String {
    if context.is_empty() {
        crlf(text)
    } else {
        let lines: Vec<String> = context.iter().map(Context::text).collect();
        crlf(&format!("{}\n\n{text}", lines.join("\n")))
    }
}

/// What to write when the message has no body: a description of the event.
fn event_text(msg: &Message) -> String {
    let who = name_of(&msg.sender);
    match msg.kind {
        MessageKind::MemberJoined => format!("{who} joined the conversation"),
        MessageKind::MemberLeft => format!("{who} left the conversation"),
        MessageKind::Deletion => "This message was deleted".to_string(),
        MessageKind::Edit => "This message was edited and has no text".to_string(),
        MessageKind::Chat | MessageKind::System if !msg.attachments.is_empty() => {
            let names: Vec<&str> = msg
                .attachments
                .iter()
                .map(|a| a.file_name.as_str())
                .collect();
            format!("{who} sent {}", names.join(", "))
        }
        MessageKind::Chat => format!("{who} sent a message without text"),
        MessageKind::System => "System event".to_string(),
    }
}

/// Line breaks as CRLF (bare CR and bare LF included).
fn crlf(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32 + 2);
    let mut at = 0;
    while let Some(found) = memchr::memchr2(b'\r', b'\n', &bytes[at..]) {
        let end = at + found;
        out.extend_from_slice(&bytes[at..end]);
        out.extend_from_slice(b"\r\n");
        at = if bytes[end] == b'\r' && bytes.get(end + 1) == Some(&b'\n') {
            end + 2
        } else {
            end + 1
        };
    }
    out.extend_from_slice(&bytes[at..]);
    // Only ASCII CR and LF were touched, between whole characters.
    String::from_utf8(out).expect("UTF-8 in, UTF-8 out")
}

/// `type/subtype` lower-cased when it is a valid single-part media type
/// (parameters are dropped). `multipart/*` and `message/*` are refused:
/// their parts may not be base64-encoded, which an attachment is.
fn usable_media_type(value: &str) -> Option<String> {
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    let (kind, subtype) = essence.split_once('/')?;
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    (token(kind) && token(subtype) && kind != "multipart" && kind != "message").then_some(essence)
}

/// `X-Connector-Property-<Name>` suffix: letters, digits and `-`; any other
/// run of characters becomes one `-`; at most 40 characters; `Unnamed`
/// when nothing is left.
fn property_header_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed: String = out
        .trim_matches('-')
        .chars()
        .take(MAX_PROPERTY_NAME)
        .collect();
    let trimmed = trimmed.trim_end_matches('-');
    if trimmed.is_empty() {
        "Unnamed".to_string()
    } else {
        trimmed.to_string()
    }
}

/// `source_id` as a DNS label: lower case, `a-z0-9-`, never empty.
fn dns_label(source_id: &str) -> String {
    let label: String = source_id
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .collect();
    let label = label.trim_matches('-');
    if label.is_empty() {
        "source".to_string()
    } else {
        label.chars().take(63).collect()
    }
}

/// The local part of a placeholder address for a person without a usable
/// email: the id lower-cased when it consists of `a-z`, `0-9`, `.`, `_`, `-`
/// (no leading, trailing or double dot) and is at most 48 characters;
/// otherwise those characters kept, every other run replaced by `_`, cut to
/// 48 characters and followed by `-` and 8 hex digits of the id's SHA-256,
/// so that different ids keep different addresses.
pub fn placeholder_local_part(id: &str) -> String {
    let clean = !id.is_empty()
        && id.len() <= 48
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && !id.starts_with('.')
        && !id.ends_with('.')
        && !id.contains("..");
    if clean {
        return id.to_string();
    }
    let mut out = String::new();
    for c in id.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' {
            out.push(c);
        } else if c == '.' && !out.is_empty() && !out.ends_with('.') {
            out.push('.');
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let cut: String = out.chars().take(48).collect();
    let cut = cut.trim_end_matches('.');
    let hash = sha256_hex(id.as_bytes());
    let sep = if cut.is_empty() { "" } else { "-" };
    format!("{cut}{sep}{}", &hash[..8])
}
