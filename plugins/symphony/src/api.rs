//! Wire types of the Symphony endpoints the plugin reads, as the FINOS
//! OpenAPI specs name them (pod 20.17, agent 25.8, login 20.14). Every field
//! is optional where servers are known to leave it out, unknown fields are
//! ignored, and integers are also accepted as strings.

use serde::{Deserialize, Deserializer};

/// An `int64` that may also arrive as a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Int(pub i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(i64),
            Float(f64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Number(n) => Ok(Int(n)),
            Either::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Int(f as i64)),
            Either::Float(f) => Err(serde::de::Error::custom(format!("{f} is not an integer"))),
            Either::Text(s) => s
                .trim()
                .parse()
                .map(Int)
                .map_err(|_| serde::de::Error::custom(format!("{s:?} is not an integer"))),
        }
    }
}

/// A stream or message id in the one form the plugin keeps: URL-safe base64
/// without padding. Pods write ids in standard base64 (padded) in JSON and
/// expect the URL-safe form in URLs; the form a payload used must matter
/// neither to comparisons (edit, reply and deletion targets) nor to URLs.
pub fn canonical_id(id: &str) -> String {
    id.trim()
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

fn id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    String::deserialize(d).map(|s| canonical_id(&s))
}

fn optional_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d).map(|s| s.map(|s| canonical_id(&s)))
}

/// Login `Token`: `{"name": "sessionToken", "token": "..."}`.
#[derive(Debug, Deserialize)]
pub struct Token {
    /// The header to send the token in.
    pub name: Option<String>,
    /// The token.
    pub token: Option<String>,
}

/// The spec's `Error` / `V2Error` body.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    /// A message for people.
    pub message: Option<String>,
}

/// `V2AdminStreamList`.
#[derive(Debug, Deserialize)]
pub struct StreamList {
    /// Streams matching the filter, in total.
    pub count: Option<u64>,
    /// This page of them.
    #[serde(default)]
    pub streams: Vec<StreamInfo>,
}

/// `V2AdminStreamInfo`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamInfo {
    /// Stream id ([`canonical_id`]).
    #[serde(deserialize_with = "id")]
    pub id: String,
    /// `IM`, `MIM`, `ROOM` or `POST`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Whether the stream is active.
    pub is_active: Option<bool>,
    /// Whether members from other companies take part.
    pub is_external: Option<bool>,
    /// Whether the stream spans pods.
    pub cross_pod: Option<bool>,
    /// Extra facts.
    pub attributes: Option<StreamAttributes>,
}

/// `V2AdminStreamAttributes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamAttributes {
    /// Room name (rooms only).
    pub room_name: Option<String>,
    /// Current member ids (IM and MIM only).
    pub members: Option<Vec<Int>>,
    /// Creator's user id.
    pub created_by_user_id: Option<Int>,
    /// Time of the last message (ms).
    pub last_message_date: Option<Int>,
}

/// `V2StreamAttributes`: `GET /pod/v2/streams/{sid}/info`, one stream as its
/// members see it (the stream list's facts, without the creator).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamDetails {
    /// Stream id ([`canonical_id`]).
    #[serde(deserialize_with = "id")]
    pub id: String,
    /// `{"type": "IM" | "MIM" | "ROOM" | "POST"}`.
    pub stream_type: Option<StreamTypeName>,
    /// Time of the last message (ms).
    pub last_message_date: Option<Int>,
    /// Member ids (IM, MIM and walls).
    pub stream_attributes: Option<ConversationAttributes>,
    /// Room facts (rooms only).
    pub room_attributes: Option<RoomAttributes>,
}

/// `V2StreamType`.
#[derive(Debug, Clone, Deserialize)]
pub struct StreamTypeName {
    /// `IM`, `MIM`, `ROOM` or `POST`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// `V2ConversationSpecificStreamAttributes`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConversationAttributes {
    /// Member ids.
    pub members: Option<Vec<Int>>,
}

/// `V2RoomSpecificStreamAttributes`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RoomAttributes {
    /// Room name.
    pub name: Option<String>,
}

/// `V2MembershipList`.
#[derive(Debug, Deserialize)]
pub struct MembershipList {
    /// Members in total.
    pub count: Option<u64>,
    /// This page of them.
    #[serde(default)]
    pub members: Vec<MemberInfo>,
}

/// `V2MemberInfo`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberInfo {
    /// The member.
    pub user: Option<MemberUser>,
}

/// `V2MemberUserDetail`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberUser {
    /// User id.
    pub user_id: Int,
    /// Email address (absent for external users).
    pub email: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// True for users of another company.
    pub is_external: Option<bool>,
}

/// An item of the room `MembershipList` (`[{id, owner, joinDate}]`).
#[derive(Debug, Deserialize)]
pub struct RoomMember {
    /// User id.
    pub id: Int,
}

/// `V2UserList`.
#[derive(Debug, Deserialize)]
pub struct UserList {
    /// Users found.
    #[serde(default)]
    pub users: Vec<UserV2>,
}

/// `UserV2`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserV2 {
    /// User id.
    pub id: Int,
    /// Email address (absent for external users).
    pub email_address: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
}

/// `V4User`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V4User {
    /// User id.
    pub user_id: Option<Int>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Email address.
    pub email: Option<String>,
    /// Username (internal users).
    pub username: Option<String>,
}

/// `V4Stream`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V4Stream {
    /// Stream id ([`canonical_id`]).
    #[serde(default, deserialize_with = "optional_id")]
    pub stream_id: Option<String>,
    /// `IM`, `MIM`, `ROOM` or `POST`.
    pub stream_type: Option<String>,
    /// Room name.
    pub room_name: Option<String>,
}

/// `V4AttachmentInfo`.
#[derive(Debug, Clone, Deserialize)]
pub struct V4AttachmentInfo {
    /// Attachment id (as the download's `fileId`; may be percent-encoded).
    pub id: String,
    /// File name.
    pub name: Option<String>,
    /// Size in bytes.
    pub size: Option<Int>,
}

/// `V4Message`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V4Message {
    /// Message id ([`canonical_id`], as every message id here).
    #[serde(deserialize_with = "id")]
    pub message_id: String,
    /// Replied-to or forwarded message.
    #[serde(default, deserialize_with = "optional_id")]
    pub parent_message_id: Option<String>,
    /// Time (ms).
    pub timestamp: Int,
    /// PresentationML.
    pub message: Option<String>,
    /// EntityJSON, as a JSON string.
    pub data: Option<String>,
    /// Attachments.
    #[serde(default)]
    pub attachments: Vec<V4AttachmentInfo>,
    /// Sender.
    pub user: Option<V4User>,
    /// Stream.
    pub stream: Option<V4Stream>,
    /// Whether external users received it.
    pub external_recipients: Option<bool>,
    /// Parse problem reported by the agent.
    pub diagnostic: Option<String>,
    /// Client that sent it.
    pub user_agent: Option<String>,
    /// Format it was sent in.
    pub original_format: Option<String>,
    /// Disclaimer sent with it.
    pub disclaimer: Option<String>,
    /// The message this one replaces (an edit).
    #[serde(default, deserialize_with = "optional_id")]
    pub replacing: Option<String>,
    /// The message that replaces this one.
    #[serde(default, deserialize_with = "optional_id")]
    pub replaced_by: Option<String>,
    /// Time of the first version (edits).
    pub initial_timestamp: Option<Int>,
    /// Id of the first version (edits).
    #[serde(default, deserialize_with = "optional_id")]
    pub initial_message_id: Option<String>,
    /// The message a wall post shares, whole.
    pub shared_message: Option<Box<V4Message>>,
}

impl V4Message {
    /// The files that come with the message: its attachments, then those of
    /// the message it shares (downloaded with this message's ids).
    pub fn files(&self) -> impl Iterator<Item = &V4AttachmentInfo> {
        self.attachments.iter().chain(
            self.shared_message
                .iter()
                .flat_map(|shared| shared.attachments.iter()),
        )
    }
}

/// `V5EventList`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventList<'a> {
    /// Events, as raw JSON (kept byte for byte as the source item).
    #[serde(default, borrow)]
    pub events: Vec<&'a serde_json::value::RawValue>,
    /// Acknowledges these events when sent with the next read.
    pub ack_id: Option<String>,
}

/// `V4Event`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V4Event {
    /// Event id.
    pub id: Option<String>,
    /// Message id the event is about.
    #[serde(default, deserialize_with = "optional_id")]
    pub message_id: Option<String>,
    /// Time (ms).
    pub timestamp: Option<Int>,
    /// `MESSAGESUPPRESSED`, `USERJOINEDROOM`, ...
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Who caused it.
    pub initiator: Option<Initiator>,
    /// Details.
    pub payload: Option<Payload>,
}

/// `V4Initiator`.
#[derive(Debug, Deserialize)]
pub struct Initiator {
    /// The user.
    pub user: Option<V4User>,
}

/// The parts of `V4Payload` the plugin reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    /// `V4MessageSuppressed`.
    pub message_suppressed: Option<MessageSuppressed>,
    /// `V4UserJoinedRoom`.
    pub user_joined_room: Option<RoomMembershipChange>,
    /// `V4UserLeftRoom`.
    pub user_left_room: Option<RoomMembershipChange>,
    /// `V4RoomUpdated`.
    pub room_updated: Option<RoomUpdated>,
}

/// `V4RoomUpdated`: the room and its new properties.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomUpdated {
    /// The room.
    pub stream: Option<V4Stream>,
    /// Its properties after the change.
    pub new_room_properties: Option<RoomProperties>,
}

/// The parts of `V4RoomProperties` the plugin reads.
#[derive(Debug, Deserialize)]
pub struct RoomProperties {
    /// The room's name.
    pub name: Option<String>,
}

/// The message of a `MESSAGESENT` event (`payload.messageSent`) or of a
/// `SHAREDPOST` one (`payload.sharedPost`), kept as received.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentPayload {
    /// `V4MessageSent`.
    pub message_sent: Option<SentMessage>,
    /// `V4SharedPost`.
    pub shared_post: Option<SentMessage>,
}

/// `V4MessageSent` / `V4SharedPost`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentMessage {
    /// The message, as received.
    pub message: Option<Box<serde_json::value::RawValue>>,
    /// The message a wall post shares (`SHAREDPOST`).
    pub shared_message: Option<Box<V4Message>>,
}

/// A `MESSAGESENT` or `SHAREDPOST` event's payload, as far as the plugin
/// reads it.
#[derive(Debug, Deserialize)]
pub struct SentEvent {
    /// The payload.
    pub payload: Option<SentPayload>,
}

/// `V4MessageSuppressed`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSuppressed {
    /// The suppressed message.
    #[serde(default, deserialize_with = "optional_id")]
    pub message_id: Option<String>,
    /// Its stream.
    pub stream: Option<V4Stream>,
}

/// `V4UserJoinedRoom` / `V4UserLeftRoom`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomMembershipChange {
    /// The room.
    pub stream: Option<V4Stream>,
    /// Who joined or left.
    pub affected_user: Option<V4User>,
}

/// A display name from the fields a user record has.
pub fn display_name(
    display: Option<&str>,
    first: Option<&str>,
    last: Option<&str>,
) -> Option<String> {
    if let Some(d) = display.map(str::trim).filter(|d| !d.is_empty()) {
        return Some(d.to_string());
    }
    let joined = [first, last]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    (!joined.is_empty()).then_some(joined)
}

/// An email when it looks like one (non-empty, with `@`).
pub fn clean_email(email: Option<&str>) -> Option<String> {
    email
        .map(str::trim)
        .filter(|e| e.contains('@') && !e.contains(char::is_whitespace))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_as_numbers_or_strings() {
        let v: Vec<Int> = serde_json::from_str(r#"[1, "2", " 3 ", 4.0]"#).unwrap();
        assert_eq!(v, [Int(1), Int(2), Int(3), Int(4)]);
        assert!(serde_json::from_str::<Int>(r#""x""#).is_err());
        assert!(serde_json::from_str::<Int>("1.5").is_err());
    }

    #[test]
    fn a_spec_example_message_parses() {
        let m: V4Message = serde_json::from_str(
            r#"{"messageId":"abc","timestamp":1700000000000,"message":"<div/>","data":"{}",
                "user":{"userId":7,"displayName":"A"},"stream":{"streamId":"s","streamType":"ROOM"},
                "unknownField":[1,2],"attachments":[{"id":"f%2F1","name":"a.pdf","size":3,"images":[]}]}"#,
        )
        .unwrap();
        assert_eq!(m.timestamp, Int(1_700_000_000_000));
        assert_eq!(m.attachments[0].id, "f%2F1");
        assert_eq!(m.user.unwrap().user_id, Some(Int(7)));
    }

    #[test]
    fn ids_in_either_base64_alphabet_read_as_one_form() {
        let m: V4Message = serde_json::from_str(
            r#"{"messageId":"ab+c/d==","timestamp":1,"parentMessageId":"ab-c_d",
                "replacing":"x/y+","stream":{"streamId":"s+/t=="}}"#,
        )
        .unwrap();
        assert_eq!(m.message_id, "ab-c_d");
        assert_eq!(m.parent_message_id.as_deref(), Some("ab-c_d"));
        assert_eq!(m.replacing.as_deref(), Some("x_y-"));
        assert_eq!(m.replaced_by, None);
        assert_eq!(m.stream.unwrap().stream_id.as_deref(), Some("s-_t"));
    }

    #[test]
    fn names_and_emails() {
        assert_eq!(
            display_name(Some(" "), Some("A"), Some("B")).as_deref(),
            Some("A B")
        );
        assert_eq!(display_name(Some("X"), None, None).as_deref(), Some("X"));
        assert_eq!(display_name(None, None, None), None);
        assert_eq!(clean_email(Some(" a@b ")).as_deref(), Some("a@b"));
        assert_eq!(clean_email(Some("")), None);
        assert_eq!(clean_email(Some("nope")), None);
    }
}
