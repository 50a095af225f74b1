//! The normalized message model every stage works on, whatever kind of plugin
//! produced it, and the small helpers every crate shares: [`address`]
//! (plain addresses and [`Mailbox`]), [`digest`] (SHA-256 in hex, the
//! source digest), [`html`] escaping, [`time`] and [`budget`] (what a
//! mailbox's shared rate window grants).

pub mod address;
pub mod budget;
pub mod digest;
pub mod html;
pub mod limits;
pub mod time;

pub use address::{InvalidAddress, Mailbox, is_plain_address};

use std::path::PathBuf;

/// Milliseconds since the Unix epoch, UTC.
pub type TimestampMs = i64;

/// Someone who takes part in a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Person {
    /// Stable id in the source system (`ExternalUserId` in the mapping CSV).
    pub id: String,
    /// Name to show in email headers.
    pub display_name: Option<String>,
    /// Email address known to the source.
    pub email: Option<String>,
}

/// What sort of conversation a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConversationKind {
    /// Two people.
    Direct,
    /// A small group without a name.
    Group,
    /// A named room or channel.
    Room,
    /// A wall or feed of posts.
    Feed,
}

/// A conversation: where messages are addressed and how they are titled.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Conversation {
    /// Stable id in the source system.
    pub id: String,
    /// Kind of conversation.
    pub kind: ConversationKind,
    /// Room or channel name.
    pub name: Option<String>,
    /// Everyone whose mailbox receives the conversation's messages.
    pub participants: Vec<Person>,
}

/// What a message records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessageKind {
    /// An ordinary message.
    Chat,
    /// A new version of an earlier message.
    Edit,
    /// The removal of an earlier message.
    Deletion,
    /// Someone joined the conversation.
    MemberJoined,
    /// Someone left the conversation.
    MemberLeft,
    /// Any other event.
    System,
}

impl MessageKind {
    /// The name used in headers and logs (`chat`, `edit`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Chat => "chat",
            MessageKind::Edit => "edit",
            MessageKind::Deletion => "deletion",
            MessageKind::MemberJoined => "member-joined",
            MessageKind::MemberLeft => "member-left",
            MessageKind::System => "system",
        }
    }
}

/// A link from a message to another message of the same source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relation {
    /// Answers the message with this id.
    ReplyTo(String),
    /// Forwards or quotes the message with this id.
    ForwardOf(String),
    /// Replaces the message with this id.
    EditOf(String),
    /// Removes the message with this id.
    Deletes(String),
}

/// The bytes of an attachment, once the host has fetched them.
#[derive(Debug, Clone, PartialEq)]
pub enum AttachmentData {
    /// Held in memory.
    Bytes(Vec<u8>),
    /// Spooled to a file owned by the run (large downloads).
    File(PathBuf),
}

/// A file attached to a message, with its bytes resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// Id, unique within its message.
    pub id: String,
    /// File name shown in the email.
    pub file_name: String,
    /// MIME type, when known.
    pub media_type: Option<String>,
    /// The bytes.
    pub data: AttachmentData,
}

/// One message in normalized form: the unit the host archives.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Unique and stable within the source: the idempotency key.
    pub id: String,
    /// Id of its conversation.
    pub conversation_id: String,
    /// Who sent it.
    pub sender: Person,
    /// When it was sent.
    pub sent_at: TimestampMs,
    /// What it records.
    pub kind: MessageKind,
    /// Links to other messages.
    pub relations: Vec<Relation>,
    /// Plain-text body.
    pub text: Option<String>,
    /// HTML body.
    pub html: Option<String>,
    /// Attached files.
    pub attachments: Vec<Attachment>,
    /// Hex SHA-256 of the source item as delivered (or of the normalized
    /// message when the plugin gave no original).
    pub source_sha256: String,
    /// Source-specific facts recorded as headers.
    pub properties: Vec<(String, String)>,
}

/// The message property in which a plugin names the participants who
/// belong to other organisations: their source ids, comma-separated. The
/// mapping's policy for external participants applies to them.
pub const EXTERNAL_PARTICIPANTS_PROPERTY: &str = "External-Participants";

impl Message {
    /// The ids the plugin named in [`EXTERNAL_PARTICIPANTS_PROPERTY`].
    pub fn external_participants(&self) -> impl Iterator<Item = &str> {
        self.properties
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(EXTERNAL_PARTICIPANTS_PROPERTY))
            .flat_map(|(_, ids)| ids.split(','))
            .map(str::trim)
            .filter(|id| !id.is_empty())
    }
}

/// A conversation the source could not read in a run, as its plugin
/// reported it: why, and what the operator can do so the next run reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unreadable {
    /// The conversation's id in the source.
    pub conversation_id: String,
    /// Why the source refused it.
    pub reason: String,
    /// What the operator can do about it.
    pub fix: String,
}

/// The fields of a plugin log record that reports an [`Unreadable`]
/// conversation (the WIT world's `log` carries them; the SDK's
/// `report::unreadable` writes them).
pub mod unreadable_fields {
    /// The field naming what a record reports.
    pub const REPORT: &str = "connector-report";
    /// Its value for an unreadable conversation.
    pub const UNREADABLE: &str = "unreadable";
    /// The conversation's id.
    pub const CONVERSATION: &str = "conversation";
    /// Why it could not be read.
    pub const REASON: &str = "reason";
    /// What the operator can do.
    pub const FIX: &str = "fix";
}

impl Unreadable {
    /// The report a plugin log record carries, when its fields are those of
    /// [`unreadable_fields`] with a non-empty conversation id.
    pub fn from_log_fields(fields: &[(String, String)]) -> Option<Unreadable> {
        use unreadable_fields::*;
        let field = |name: &str| {
            fields
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.trim())
        };
        if field(REPORT)? != UNREADABLE {
            return None;
        }
        let conversation_id = field(CONVERSATION).filter(|c| !c.is_empty())?;
        Some(Unreadable {
            conversation_id: conversation_id.to_string(),
            reason: field(REASON).unwrap_or_default().to_string(),
            fix: field(FIX).unwrap_or_default().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_log_record_with_the_unreadable_fields_is_a_report() {
        let report = Unreadable::from_log_fields(&fields(&[
            ("connector-report", "unreadable"),
            ("conversation", "room-1"),
            ("reason", "HTTP 403"),
            ("fix", "add the account"),
        ]));
        assert_eq!(
            report,
            Some(Unreadable {
                conversation_id: "room-1".into(),
                reason: "HTTP 403".into(),
                fix: "add the account".into(),
            })
        );
        for other in [
            fields(&[("conversation", "room-1"), ("reason", "x")]),
            fields(&[("connector-report", "other"), ("conversation", "room-1")]),
            fields(&[("connector-report", "unreadable"), ("conversation", " ")]),
        ] {
            assert_eq!(Unreadable::from_log_fields(&other), None, "{other:?}");
        }
    }

    #[test]
    fn external_participants_are_read_from_their_property() {
        let message = Message {
            id: "m".into(),
            conversation_id: "c".into(),
            sender: Person {
                id: "u".into(),
                display_name: None,
                email: None,
            },
            sent_at: 0,
            kind: MessageKind::Chat,
            relations: Vec::new(),
            text: None,
            html: None,
            attachments: Vec::new(),
            source_sha256: String::new(),
            properties: vec![
                ("Stream-Type".into(), "ROOM".into()),
                ("external-participants".into(), "7, 9,,".into()),
            ],
        };
        assert_eq!(
            message.external_participants().collect::<Vec<_>>(),
            ["7", "9"]
        );
    }
}
