//! The ground truth: what the simulated pod contains, for tests to compare archives against.
//!
//! It is produced by the same generator that feeds the HTTP endpoints, so every id, timestamp
//! and hash here is exactly what a client sees over the wire.

use serde::{Deserialize, Serialize};

/// Symphony stream (conversation) type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StreamType {
    /// One-to-one instant message.
    #[serde(rename = "IM")]
    Im,
    /// Multi-party instant message.
    #[serde(rename = "MIM")]
    Mim,
    /// Chat room.
    #[serde(rename = "ROOM")]
    Room,
    /// User wall post.
    #[serde(rename = "POST")]
    Post,
}

impl StreamType {
    /// The wire name (`IM`, `MIM`, `ROOM`, `POST`).
    pub fn as_str(self) -> &'static str {
        match self {
            StreamType::Im => "IM",
            StreamType::Mim => "MIM",
            StreamType::Room => "ROOM",
            StreamType::Post => "POST",
        }
    }

    /// Parses a wire name (case-insensitive).
    pub fn parse(s: &str) -> Option<StreamType> {
        match s.to_ascii_uppercase().as_str() {
            "IM" => Some(StreamType::Im),
            "MIM" => Some(StreamType::Mim),
            "ROOM" => Some(StreamType::Room),
            "POST" => Some(StreamType::Post),
            _ => None,
        }
    }
}

/// How a message relates to its `parentMessageId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Relation {
    /// A reply in the same stream.
    Reply,
    /// A forward of a message from another stream.
    Forward,
}

/// Everything the simulator serves, as plain data. Serialises to JSON
/// (`--dump-ground-truth`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Seed the data was generated from.
    pub seed: u64,
    /// Company name of the simulated pod's own users.
    pub pod_company: String,
    /// Username of the default service account (the JWT `sub`).
    pub service_account: String,
    /// Whether the planned suppressions are currently in effect (see
    /// [`TruthMessage::suppression_applied`]).
    pub suppressions_applied: bool,
    /// All users (internal, external, and the service account), by id.
    pub users: Vec<TruthUser>,
    /// All streams, in the order `POST /pod/v2/admin/streams/list` returns them.
    pub streams: Vec<TruthStream>,
    /// All messages, grouped by stream (in [`GroundTruth::streams`] order) and within a stream
    /// in the order `GET /agent/v4/stream/{sid}/message` returns them (timestamp, then a
    /// stable order among messages of the same millisecond).
    pub messages: Vec<TruthMessage>,
    /// The datahose's events so far, in the order they entered it (see
    /// [`crate::DatahoseConfig::history`]).
    #[serde(default)]
    pub events: Vec<TruthEvent>,
}

/// An event the datahose holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthEvent {
    /// Event id (`V4Event.id`).
    pub event_id: String,
    /// `MESSAGESENT`, `SHAREDPOST`, `MESSAGESUPPRESSED`, `USERJOINEDROOM`, `USERLEFTROOM`
    /// or `ROOMUPDATED`.
    pub event_type: String,
    /// The stream it happened in (URL-safe base64).
    pub stream_id: String,
    /// The message it is about (sent or suppressed), URL-safe base64.
    pub message_id: Option<String>,
    /// The user who joined or left.
    pub affected_user_id: Option<i64>,
    /// Who caused it.
    pub initiator_user_id: i64,
    /// When (Unix ms).
    pub timestamp: i64,
}

/// A user as the pod knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthUser {
    /// Symphony user id.
    pub user_id: i64,
    /// Username (internal users only).
    pub username: Option<String>,
    /// Email address (external users have theirs too); `None` for internal system accounts
    /// without one.
    pub email: Option<String>,
    /// Display name.
    pub display_name: String,
    /// Company name.
    pub company: String,
    /// True for users of another company (another pod).
    pub external: bool,
    /// `NORMAL` or `SYSTEM`.
    pub account_type: String,
}

/// A stream and its membership history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthStream {
    /// URL-safe base64 stream id (no padding), the form URLs carry; JSON answers give it in
    /// standard base64 with padding.
    pub stream_id: String,
    /// IM, MIM, ROOM or POST.
    pub stream_type: StreamType,
    /// Room name (rooms only).
    pub name: Option<String>,
    /// False for deactivated rooms.
    pub active: bool,
    /// True when members from another company take part (`isExternal`, `crossPod`).
    pub external: bool,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// Every member, current and past, ordered by join time.
    pub members: Vec<TruthMember>,
    /// Number of messages in the stream (including edits and suppressed ones).
    pub message_count: usize,
    /// Whether the service accounts are members, and so may read its messages and
    /// attachments (see [`crate::Membership`]).
    pub service_member: bool,
}

/// One membership of a user in a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthMember {
    /// Symphony user id.
    pub user_id: i64,
    /// Email (`None` for system accounts without one; external users have theirs).
    pub email: Option<String>,
    /// Display name.
    pub display_name: String,
    /// True for users of another company.
    pub external: bool,
    /// Room owner.
    pub owner: bool,
    /// Join time (Unix ms), as `joinDate` in the membership lists.
    pub joined_at: i64,
    /// When the user left (Unix ms); `Some` means a past member, listed only with
    /// `includePastMembers=true`.
    pub left_at: Option<i64>,
}

/// One attachment of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthAttachment {
    /// The id exactly as `attachments[].id` carries it (percent-encoded, like real pods);
    /// pass it as `fileId` as-is or decoded, both work.
    pub id: String,
    /// File name.
    pub name: String,
    /// Size in bytes of the decoded content.
    pub size: u64,
    /// Lowercase hex SHA-256 of the decoded content.
    pub sha256: String,
    /// True for images (they also carry thumbnails in `attachments[].images`).
    pub image: bool,
}

/// An image shown inline in a message's markup: an `<img>` whose `src` is a `data:` URL
/// (base64), as MessageML allows for small images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthInlineImage {
    /// The data URL's media type (`image/svg+xml`).
    pub media_type: String,
    /// Size in bytes of the decoded image.
    pub size: u64,
    /// Lowercase hex SHA-256 of the decoded image.
    pub sha256: String,
}

/// One message (one version of it: an edit is its own message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthMessage {
    /// URL-safe base64 message id (no padding); JSON answers give it in standard base64.
    pub message_id: String,
    /// Stream id (URL-safe base64).
    pub stream_id: String,
    /// Stream type.
    pub stream_type: StreamType,
    /// Sender's user id.
    pub sender_user_id: i64,
    /// Sender's email (`None` for system accounts without one).
    pub sender_email: Option<String>,
    /// Timestamp (Unix ms). Several messages share a millisecond, some across page
    /// boundaries.
    pub timestamp: i64,
    /// The plain text expected from the PresentationML (see the crate docs for the rule; use
    /// [`normalize_text`] to compare when a reader lays out blocks differently). May be empty
    /// (attachment-only message).
    pub text: String,
    /// Length of `text` in Unicode scalar values (60,000 for the longest message).
    pub text_chars: usize,
    /// User ids mentioned (`com.symphony.user.mention` entities), in order.
    pub mentions: Vec<i64>,
    /// Hashtags (without `#`), in order.
    pub hashtags: Vec<String>,
    /// Cashtags (without `$`), in order.
    pub cashtags: Vec<String>,
    /// Emoji shortcodes, in order.
    pub emojis: Vec<String>,
    /// Attachments, in `attachments[]` order.
    pub attachments: Vec<TruthAttachment>,
    /// Images embedded in the markup as `data:` URLs, in document order (none unless
    /// [`crate::SimConfig::inline_images`]).
    #[serde(default)]
    pub inline_images: Vec<TruthInlineImage>,
    /// `parentMessageId` (reply or forward).
    pub parent_message_id: Option<String>,
    /// Whether the parent relation is a reply or a forward.
    pub relation: Option<Relation>,
    /// `replacing`: the message this edit replaces.
    pub replacing: Option<String>,
    /// `replacedBy`: the edit that replaces this message.
    pub replaced_by: Option<String>,
    /// `initialMessageId`: first version of an edited message (set on edits only).
    pub initial_message_id: Option<String>,
    /// The message this wall post shares (`sharedMessage`): its text and attachments are
    /// part of the post as delivered.
    pub shared_message_id: Option<String>,
    /// `initialTimestamp`: timestamp of the first version (set on edits only).
    pub initial_timestamp: Option<i64>,
    /// True when the message is suppressed in this scenario: planned by the generator or
    /// suppressed at run time through the API.
    pub suppressed: bool,
    /// When it was (or is planned to be) suppressed (Unix ms).
    pub suppressed_at: Option<i64>,
    /// True once the suppression is in effect: the message is then absent from message lists
    /// and a `MESSAGESUPPRESSED` event names it.
    pub suppression_applied: bool,
}

impl GroundTruth {
    /// The message with this id.
    pub fn message(&self, message_id: &str) -> Option<&TruthMessage> {
        self.messages.iter().find(|m| m.message_id == message_id)
    }

    /// The stream with this id.
    pub fn stream(&self, stream_id: &str) -> Option<&TruthStream> {
        self.streams.iter().find(|s| s.stream_id == stream_id)
    }

    /// The user with this id.
    pub fn user(&self, user_id: i64) -> Option<&TruthUser> {
        self.users.iter().find(|u| u.user_id == user_id)
    }

    /// Messages of one stream, in listing order.
    pub fn messages_in<'a>(&'a self, stream_id: &'a str) -> impl Iterator<Item = &'a TruthMessage> {
        self.messages
            .iter()
            .filter(move |m| m.stream_id == stream_id)
    }

    /// Messages a client can list right now (all but those whose suppression is applied).
    pub fn listed_messages(&self) -> impl Iterator<Item = &TruthMessage> {
        self.messages.iter().filter(|m| !m.suppression_applied)
    }

    /// All attachments with the message carrying them.
    pub fn attachments(&self) -> impl Iterator<Item = (&TruthMessage, &TruthAttachment)> {
        self.messages
            .iter()
            .flat_map(|m| m.attachments.iter().map(move |a| (m, a)))
    }
}

/// Collapses every run of whitespace (spaces, tabs, line breaks) to one space and trims:
/// compare an extracted text with [`TruthMessage::text`] through it when the reader renders
/// paragraphs, cells or line breaks differently.
pub fn normalize_text(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
