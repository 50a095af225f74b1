//! Transcripts: one email per conversation per day, every message of the
//! day in order, with time, sender, edits and deletions marked, replies
//! shown with what they answer, membership changes, and every attachment
//! attached.
//!
//! A day's messages are kept (in the host's state store, as
//! [`TranscriptEntry::encode`] gives them) until the day is closed; the
//! transcript is then built from them with
//! [`EmailConverter::transcript`]. The same entries always give the same
//! bytes and the same Message-ID, so a transcript whose delivery is tried
//! again after a crash is recognised by the mailbox.

use connector_model::digest::sha256_hex;
use connector_model::time::DayZone;
use connector_model::{
    Attachment, AttachmentData, Conversation, Message, MessageKind, Person, Relation, TimestampMs,
};
use serde::{Deserialize, Serialize};

use crate::{ConvertError, Email, EmailConverter, event_text, name_of, relation_target};

/// A message as a day's transcript shows it, with its attachments' bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptEntry {
    /// The message's source id.
    pub id: String,
    /// Who sent it.
    pub sender: Person,
    /// When it was sent.
    pub sent_at: TimestampMs,
    /// What it records.
    pub kind: MessageKind,
    /// Links to other messages.
    pub relations: Vec<Relation>,
    /// The text shown: the message's text, else its HTML without tags,
    /// else a description of the event.
    pub text: String,
    /// Hex SHA-256 of the source item.
    pub source_sha256: String,
    /// Its files.
    pub files: Vec<TranscriptFile>,
}

/// A file of a [`TranscriptEntry`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptFile {
    /// Id, unique within its message.
    pub id: String,
    /// File name.
    pub file_name: String,
    /// MIME type, when known.
    pub media_type: Option<String>,
    /// The bytes, base64 in the stored form.
    #[serde(with = "base64_bytes")]
    pub bytes: Vec<u8>,
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// Why a stored transcript entry could not be read back.
#[derive(Debug, thiserror::Error)]
#[error(
    "a stored transcript line of message `{item_id}` cannot be read ({reason}); it was written by another version of the host or the state was damaged: restore the state from a backup, or report this"
)]
pub struct EntryError {
    /// The message's source id.
    pub item_id: String,
    /// What the decoder said.
    pub reason: String,
}

impl TranscriptEntry {
    /// The entry of `msg`, with its attachments read (from memory or their
    /// spool files).
    pub fn from_message(msg: &Message) -> Result<TranscriptEntry, ConvertError> {
        let text = plain_text(msg);
        let mut files = Vec::with_capacity(msg.attachments.len());
        for a in &msg.attachments {
            let bytes = match &a.data {
                AttachmentData::Bytes(bytes) => bytes.clone(),
                AttachmentData::File(path) => {
                    std::fs::read(path).map_err(|source| ConvertError::AttachmentRead {
                        message_id: msg.id.clone(),
                        attachment_id: a.id.clone(),
                        path: path.clone(),
                        source,
                    })?
                }
            };
            files.push(TranscriptFile {
                id: a.id.clone(),
                file_name: a.file_name.clone(),
                media_type: a.media_type.clone(),
                bytes,
            });
        }
        Ok(TranscriptEntry {
            id: msg.id.clone(),
            sender: msg.sender.clone(),
            sent_at: msg.sent_at,
            kind: msg.kind,
            relations: msg.relations.clone(),
            text,
            source_sha256: msg.source_sha256.clone(),
            files,
        })
    }

    /// The stored form (JSON, files in base64).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an entry always serializes")
    }

    /// An entry from its stored form.
    pub fn decode(item_id: &str, bytes: &[u8]) -> Result<TranscriptEntry, EntryError> {
        serde_json::from_slice(bytes).map_err(|e| EntryError {
            item_id: item_id.to_string(),
            reason: e.to_string(),
        })
    }
}

/// One transcript email to build: a conversation's day (or an addendum
/// of it) and the entries it holds.
#[derive(Debug, Clone, Copy)]
pub struct TranscriptDay<'a> {
    /// The day, `YYYY-MM-DD` in `zone`.
    pub day: &'a str,
    /// The time zone of the day and of the times shown.
    pub zone: DayZone,
    /// 0 for the day's transcript, then 1, 2, … for each addendum.
    pub part: u32,
    /// The entries, in the order shown (by sent time).
    pub entries: &'a [TranscriptEntry],
}

impl TranscriptDay<'_> {
    /// The id the ledger and the quarantine know this transcript by:
    /// `transcript:<day>:<part>:<conversation id>`.
    pub fn item_id(&self, conversation_id: &str) -> String {
        transcript_item_id(conversation_id, self.day, self.part)
    }

    /// Hex SHA-256 over the entries' source digests, one a line: the
    /// transcript's source digest.
    pub fn source_sha256(&self) -> String {
        let sources: Vec<&str> = self
            .entries
            .iter()
            .map(|e| e.source_sha256.as_str())
            .collect();
        sha256_hex(sources.join("\n").as_bytes())
    }
}

/// The id the ledger knows a transcript by (see [`TranscriptDay::item_id`]).
pub fn transcript_item_id(conversation_id: &str, day: &str, part: u32) -> String {
    format!("transcript:{day}:{part}:{conversation_id}")
}

impl EmailConverter {
    /// The transcript email of `day` of `conv`: a text body with one
    /// paragraph per entry, then every entry's files. Its Message-ID is
    /// [`EmailConverter::message_id`] of [`TranscriptDay::item_id`].
    pub fn transcript(
        &self,
        day: &TranscriptDay<'_>,
        conv: &Conversation,
    ) -> Result<Email, ConvertError> {
        let item_id = day.item_id(&conv.id);
        let mut text = transcript_heading(day, conv);
        for entry in day.entries {
            text.push_str(&entry_paragraph(entry, day));
        }
        let mut attachments = Vec::new();
        for entry in day.entries {
            for file in &entry.files {
                attachments.push(Attachment {
                    id: format!("{}/{}", entry.id, file.id),
                    file_name: file.file_name.clone(),
                    media_type: file.media_type.clone(),
                    data: AttachmentData::Bytes(file.bytes.clone()),
                });
            }
        }
        let count = day.entries.len().to_string();
        let mut properties = vec![
            ("Transcript-Day".to_string(), day.day.to_string()),
            ("Transcript-Time-Zone".to_string(), day.zone.to_string()),
            ("Transcript-Part".to_string(), day.part.to_string()),
            ("Transcript-Messages".to_string(), count),
        ];
        if day.part > 0 {
            properties.push(("Transcript-Addendum".to_string(), "yes".to_string()));
        }
        let transcript = Message {
            id: item_id,
            conversation_id: conv.id.clone(),
            sender: Person {
                id: "transcript".to_string(),
                display_name: Some(format!("{} transcripts", self.source_name)),
                email: None,
            },
            sent_at: day.entries.iter().map(|e| e.sent_at).max().unwrap_or(0),
            kind: MessageKind::System,
            relations: Vec::new(),
            text: Some(text),
            html: None,
            attachments,
            source_sha256: day.source_sha256(),
            properties,
        };
        let subject = match day.part {
            0 => format!("Transcript {}: {}", day.day, conversation_title(conv)),
            n => format!(
                "Transcript {} (addendum {n}): {}",
                day.day,
                conversation_title(conv)
            ),
        };
        self.build(&transcript, conv, Some(&subject), &|_| None)
    }
}

/// The conversation's name, or the names of its participants.
fn conversation_title(conv: &Conversation) -> String {
    match conv.name.as_deref().filter(|n| !n.trim().is_empty()) {
        Some(name) => name.to_string(),
        None => {
            let names: Vec<&str> = conv.participants.iter().map(name_of).collect();
            if names.is_empty() {
                format!("conversation {}", conv.id)
            } else {
                format!("conversation with {}", names.join(", "))
            }
        }
    }
}

/// The lines above the entries: what the email is, how long the day was
/// when the clocks changed on it, and for an addendum that it is one and
/// why.
fn transcript_heading(day: &TranscriptDay<'_>, conv: &Conversation) -> String {
    let mut text = format!(
        "Transcript of {} on {} (times in {}): {} message(s).\n",
        conversation_title(conv),
        day.day,
        day.zone,
        day.entries.len()
    );
    if let Some((start, end)) = day.zone.day_span(day.day) {
        let minutes = (end - start) / 60_000;
        if minutes != 24 * 60 {
            let length = match minutes % 60 {
                0 => format!("{} hours", minutes / 60),
                m => format!("{} hours {m} minutes", minutes / 60),
            };
            text.push_str(&format!(
                "The clocks changed on {}: the day lasted {length} in {}.\n",
                day.day, day.zone
            ));
        }
    }
    if day.part > 0 {
        text.push_str(&format!(
            "Addendum {}: these messages of {} arrived after the day's transcript was sent.\n",
            day.part, day.day
        ));
    }
    text
}

/// One entry: a line with its time, sender and what it is, then its text
/// indented, then its files.
fn entry_paragraph(entry: &TranscriptEntry, day: &TranscriptDay<'_>) -> String {
    let who = person_line(&entry.sender);
    let time = day.zone.clock_of(entry.sent_at);
    let what = match entry.kind {
        MessageKind::Edit => " edited a message".to_string(),
        MessageKind::Deletion => " deleted a message".to_string(),
        MessageKind::MemberJoined => " joined the conversation".to_string(),
        MessageKind::MemberLeft => " left the conversation".to_string(),
        MessageKind::System => " (system event)".to_string(),
        MessageKind::Chat => String::new(),
    };
    let mut out = format!("\n[{time}] {who}{what} (message {}):\n", entry.id);
    for relation in &entry.relations {
        let target = relation_target(relation);
        let label = match relation {
            Relation::ReplyTo(_) => "In reply to",
            Relation::ForwardOf(_) => "Forwarding",
            Relation::EditOf(_) => "Edit of",
            Relation::Deletes(_) => "Deletes",
        };
        let quoted = day.entries.iter().find(|e| e.id == target).map(|e| {
            format!(
                " from {} at {}: \"{}\"",
                name_of(&e.sender),
                day.zone.clock_of(e.sent_at),
                first_line(&e.text)
            )
        });
        out.push_str(&format!(
            "    {label} message {target}{}\n",
            quoted.unwrap_or_default()
        ));
    }
    if !matches!(
        entry.kind,
        MessageKind::MemberJoined | MessageKind::MemberLeft
    ) {
        for line in entry.text.lines() {
            out.push_str("    ");
            out.push_str(line);
            out.push('\n');
        }
    }
    for file in &entry.files {
        out.push_str(&format!(
            "    [attached: {} ({} bytes)]\n",
            file.file_name,
            file.bytes.len()
        ));
    }
    out
}

/// `Name <address>`, or the name (or id) alone.
fn person_line(person: &Person) -> String {
    match person.email.as_deref().filter(|e| !e.trim().is_empty()) {
        Some(email) => format!("{} <{email}>", name_of(person)),
        None => name_of(person).to_string(),
    }
}

/// The message's text as plain text: its text, else its HTML without
/// tags, else a description of the event.
pub(crate) fn plain_text(msg: &Message) -> String {
    let given = msg.text.as_deref().filter(|t| !t.trim().is_empty());
    match (given, msg.html.as_deref().filter(|h| !h.trim().is_empty())) {
        (Some(text), _) => text.to_string(),
        (None, Some(html)) => without_tags(html),
        (None, None) => event_text(msg),
    }
}

/// The first line of `text`, cut at 80 characters (with `…`).
pub(crate) fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    let mut cut: String = line.chars().take(80).collect();
    if line.chars().count() > 80 {
        cut.push('…');
    }
    cut
}

/// `html` without its tags, entities of `<`, `>`, `&` and quotes decoded,
/// line breaks and the ends of blocks as line breaks.
fn without_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    let mut tag = String::new();
    for c in html.chars() {
        match (in_tag, c) {
            (false, '<') => {
                in_tag = true;
                tag.clear();
            }
            (true, '>') => {
                in_tag = false;
                let closing = tag.starts_with('/');
                let name = tag.trim_start_matches('/').to_ascii_lowercase();
                let name = name
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .next()
                    .unwrap_or_default();
                if name == "br" || (closing && ["p", "div", "li", "tr"].contains(&name)) {
                    out.push('\n');
                }
            }
            (true, c) => tag.push(c),
            (false, c) => out.push(c),
        }
    }
    let out = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_model::ConversationKind;

    fn person(id: &str, name: &str) -> Person {
        Person {
            id: id.into(),
            display_name: Some(name.into()),
            email: Some(format!("{id}@x.test")),
        }
    }

    fn entry(id: &str, at: TimestampMs, kind: MessageKind, text: &str) -> TranscriptEntry {
        TranscriptEntry {
            id: id.into(),
            sender: person("alice", "Alice Smith"),
            sent_at: at,
            kind,
            relations: Vec::new(),
            text: text.into(),
            source_sha256: "ab".repeat(32),
            files: Vec::new(),
        }
    }

    fn room() -> Conversation {
        Conversation {
            id: "room-1".into(),
            kind: ConversationKind::Room,
            name: Some("Rates desk".into()),
            participants: vec![person("alice", "Alice Smith"), person("bob", "Bob Jones")],
        }
    }

    fn day_entries() -> Vec<TranscriptEntry> {
        let base = 1_704_103_200_000; // 2024-01-01T10:00:00Z
        let mut reply = entry("m2", base + 60_000, MessageKind::Chat, "Agreed.");
        reply.sender = person("bob", "Bob Jones");
        reply.relations = vec![Relation::ReplyTo("m1".into())];
        let mut edit = entry("m3", base + 120_000, MessageKind::Edit, "Price is 101.5");
        edit.relations = vec![Relation::EditOf("m1".into())];
        let mut deletion = entry("m4", base + 180_000, MessageKind::Deletion, "deleted");
        deletion.relations = vec![Relation::Deletes("m2".into())];
        let mut first = entry("m1", base, MessageKind::Chat, "Price is 101\nsecond line");
        first.files.push(TranscriptFile {
            id: "f1".into(),
            file_name: "quote.pdf".into(),
            media_type: Some("application/pdf".into()),
            bytes: vec![0, 1, 2, 255],
        });
        let joined = entry("m5", base + 240_000, MessageKind::MemberJoined, "joined");
        vec![first, reply, edit, deletion, joined]
    }

    #[test]
    fn a_transcript_shows_every_message_in_order_with_replies_edits_deletions_joins_and_files() {
        let entries = day_entries();
        let day = TranscriptDay {
            day: "2024-01-01",
            zone: DayZone::default(),
            part: 0,
            entries: &entries,
        };
        let converter = EmailConverter::new("symphony", "Symphony");
        let email = converter.transcript(&day, &room()).unwrap();
        assert_eq!(
            email.message_id,
            converter.message_id("transcript:2024-01-01:0:room-1")
        );
        let raw = email.bytes().unwrap().into_owned();
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert_eq!(parsed.subject(), Some("Transcript 2024-01-01: Rates desk"));
        let body = parsed.body_text(0).unwrap();
        let at = |needle: &str| {
            body.find(needle)
                .unwrap_or_else(|| panic!("{needle}: {body}"))
        };
        assert!(at("[10:00:00] Alice Smith <alice@x.test> (message m1)") < at("(message m2)"));
        assert!(at("    Price is 101\r\n    second line") > 0);
        assert!(at("[10:01:00] Bob Jones <bob@x.test> (message m2)") > 0);
        assert!(at("In reply to message m1 from Alice Smith at 10:00:00: \"Price is 101\"") > 0);
        assert!(at("edited a message (message m3)") < at("deleted a message (message m4)"));
        assert!(at("Edit of message m1") > 0 && at("Deletes message m2") > 0);
        assert!(at("Alice Smith <alice@x.test> joined the conversation (message m5)") > 0);
        assert!(at("[attached: quote.pdf (4 bytes)]") > 0);
        assert!(
            !body.contains("clocks changed"),
            "a UTC day is 24 hours: {body}"
        );
        let files: Vec<_> = parsed.attachments().collect();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].contents(), &[0, 1, 2, 255]);
        // The same entries give the same bytes.
        let again = converter.transcript(&day, &room()).unwrap();
        assert_eq!(again.sha256, email.sha256);
        // An independent parser finds nothing wrong.
        let strict = mailparse::parse_mail(&raw).unwrap();
        assert_eq!(strict.subparts.len(), 2);
    }

    #[test]
    fn an_addendum_says_it_is_one_and_has_its_own_message_id() {
        let entries = day_entries();
        let late = [entries[1].clone()];
        let day = TranscriptDay {
            day: "2024-01-01",
            zone: "+02:00".parse().unwrap(),
            part: 1,
            entries: &late,
        };
        let converter = EmailConverter::new("symphony", "Symphony");
        let email = converter.transcript(&day, &room()).unwrap();
        let raw = email.bytes().unwrap().into_owned();
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert_eq!(
            parsed.subject(),
            Some("Transcript 2024-01-01 (addendum 1): Rates desk")
        );
        let body = parsed.body_text(0).unwrap();
        assert!(
            body.contains("arrived after the day's transcript was sent"),
            "{body}"
        );
        assert!(body.contains("[12:01:00] Bob Jones"), "{body}");
        // The reply's parent is in another part: it is named by id.
        assert!(body.contains("In reply to message m1\r\n"), "{body}");
        assert_ne!(
            email.message_id,
            converter.message_id("transcript:2024-01-01:0:room-1")
        );
    }

    #[test]
    fn a_day_the_clocks_go_back_tells_its_length_and_the_zone_of_each_repeated_time() {
        // 2026-10-25 in London: 01:30 BST, then an hour later 01:30 GMT.
        let first = entry("m1", 1_792_888_200_000, MessageKind::Chat, "before");
        let second = entry("m2", 1_792_891_800_000, MessageKind::Chat, "after");
        let entries = [first, second];
        let day = TranscriptDay {
            day: "2026-10-25",
            zone: "Europe/London".parse().unwrap(),
            part: 0,
            entries: &entries,
        };
        let converter = EmailConverter::new("symphony", "Symphony");
        let raw = converter
            .transcript(&day, &room())
            .unwrap()
            .bytes()
            .unwrap()
            .into_owned();
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        let body = parsed.body_text(0).unwrap();
        assert!(body.contains("(times in Europe/London)"), "{body}");
        assert!(
            body.contains(
                "The clocks changed on 2026-10-25: the day lasted 25 hours in Europe/London."
            ),
            "{body}"
        );
        let bst = body.find("[01:30:00 BST] Alice Smith").expect(&body);
        let gmt = body.find("[01:30:00 GMT] Alice Smith").expect(&body);
        assert!(bst < gmt, "{body}");
        assert_eq!(
            parsed
                .header_raw("X-Connector-Property-Transcript-Time-Zone")
                .map(str::trim),
            Some("Europe/London")
        );
    }

    #[test]
    fn an_entry_keeps_its_files_through_its_stored_form() {
        let entries = day_entries();
        let stored = entries[0].encode();
        assert_eq!(TranscriptEntry::decode("m1", &stored).unwrap(), entries[0]);
        assert!(TranscriptEntry::decode("m1", b"{").is_err());
    }

    #[test]
    fn html_only_messages_show_their_text() {
        assert_eq!(
            without_tags("<div>Hi <b>there</b></div><p>a &amp; b &lt;c&gt;</p>"),
            "Hi there\na & b <c>"
        );
    }
}
