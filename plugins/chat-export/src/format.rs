//! The lines of the export format (see `FORMAT.md`) and their conversion into
//! the SDK's types. Pure: no I/O, no host calls.

use base64::Engine as _;
use connector_sdk::{
    Attachment, AttachmentBody, BodyEncoding, Conversation, ConversationKind, FetchSpec, Message,
    MessageKind, Person, Relation,
};
use serde::de::{self, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer};

/// A line, parsed and converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A `"type": "conversation"` line.
    Conversation(Conversation),
    /// A `"type": "message"` line.
    Message(Box<ParsedMessage>),
}

/// A message line: the message plus what the plugin must remember about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMessage {
    /// The message (with `original` left empty: the caller owns the bytes).
    pub message: Message,
    /// `(attachment id, path relative to the export's folder)` of each
    /// deferred attachment.
    pub deferred: Vec<(String, String)>,
    /// Bytes of inline attachment content, for page size accounting.
    pub inline_bytes: usize,
}

/// What a line is, read cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineType {
    /// A conversation description.
    Conversation,
    /// A message.
    Message,
}

#[derive(Deserialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    kind: LineType,
}

impl<'de> Deserialize<'de> for LineType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        match &*s {
            "conversation" => Ok(LineType::Conversation),
            "message" => Ok(LineType::Message),
            other => Err(de::Error::custom(format!(
                "unknown line type {other:?}, expected \"conversation\" or \"message\""
            ))),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonLine {
    id: String,
    name: Option<String>,
    email: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum KindLine {
    Direct,
    Group,
    Room,
    Feed,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConversationLine {
    #[serde(rename = "type")]
    _type: IgnoredAny,
    id: String,
    kind: KindLine,
    name: Option<String>,
    participants: Vec<PersonLine>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum MessageKindLine {
    Chat,
    Edit,
    Deletion,
    MemberJoined,
    MemberLeft,
    System,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum EncodingLine {
    Identity,
    Base64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentLine {
    id: String,
    name: String,
    media_type: Option<String>,
    size: Option<u64>,
    content_base64: Option<String>,
    url: Option<String>,
    encoding: Option<EncodingLine>,
    path: Option<String>,
}

/// `sent_at`: an RFC 3339 string or integer milliseconds since the epoch.
struct SentAt(i64);

impl<'de> Deserialize<'de> for SentAt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SentAt;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an RFC 3339 timestamp string or integer milliseconds since the epoch")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SentAt, E> {
                Ok(SentAt(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SentAt, E> {
                i64::try_from(v)
                    .map(SentAt)
                    .map_err(|_| E::custom("sent_at is out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SentAt, E> {
                connector_sdk::time::parse_rfc3339(v)
                    .map(SentAt)
                    .ok_or_else(|| E::custom(format!("sent_at {v:?} is not an RFC 3339 timestamp")))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageLine {
    #[serde(rename = "type")]
    _type: IgnoredAny,
    id: String,
    conversation: String,
    sender: PersonLine,
    sent_at: SentAt,
    kind: Option<MessageKindLine>,
    text: Option<String>,
    html: Option<String>,
    reply_to: Option<String>,
    forward_of: Option<String>,
    edit_of: Option<String>,
    deletes: Option<String>,
    #[serde(default)]
    properties: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    attachments: Vec<AttachmentLine>,
}

/// Reads only the `type` of a line (the whole line must still be valid JSON).
pub fn line_type(bytes: &[u8]) -> Result<LineType, String> {
    serde_json::from_slice::<TypeOnly>(bytes)
        .map(|t| t.kind)
        .map_err(json_error)
}

/// Parses and checks a line.
pub fn parse_line(bytes: &[u8]) -> Result<Line, String> {
    match line_type(bytes)? {
        LineType::Conversation => {
            let line: ConversationLine = serde_json::from_slice(bytes)
                .map_err(|e| format!("invalid conversation: {}", json_error(e)))?;
            convert_conversation(line).map(Line::Conversation)
        }
        LineType::Message => {
            let line: MessageLine = serde_json::from_slice(bytes)
                .map_err(|e| format!("invalid message: {}", json_error(e)))?;
            convert_message(line).map(|m| Line::Message(Box::new(m)))
        }
    }
}

/// serde_json's message, with the position given as a column: every line is
/// line 1 to the parser.
fn json_error(e: serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line 1 column ") {
        Some(i) => format!("{} (column {})", &text[..i], e.column()),
        None => text,
    }
}

fn non_empty(what: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        Err(format!("{what} must not be empty"))
    } else {
        Ok(())
    }
}

fn convert_person(what: &str, p: PersonLine) -> Result<Person, String> {
    non_empty(&format!("{what} id"), &p.id)?;
    Ok(Person::new(p.id).with_name(p.name).with_email(p.email))
}

fn convert_conversation(line: ConversationLine) -> Result<Conversation, String> {
    non_empty("conversation id", &line.id)?;
    let participants = line
        .participants
        .into_iter()
        .map(|p| convert_person("participant", p))
        .collect::<Result<Vec<_>, _>>()?;
    let kind = match line.kind {
        KindLine::Direct => ConversationKind::Direct,
        KindLine::Group => ConversationKind::Group,
        KindLine::Room => ConversationKind::Room,
        KindLine::Feed => ConversationKind::Feed,
    };
    Ok(Conversation::new(line.id, kind)
        .with_name(line.name)
        .with_participants(participants))
}

/// Base64 as exporters write it: standard or URL-safe alphabet, padding
/// optional, line breaks and spaces allowed.
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CONFIG);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CONFIG);
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let engine = if compact.contains(['-', '_']) {
        &URL_SAFE
    } else {
        &STANDARD
    };
    engine.decode(compact.as_bytes()).map_err(|e| e.to_string())
}

/// Checks a relative attachment path: no absolute paths, no `..`, no
/// backslashes or empty segments.
pub fn check_relative_path(path: &str) -> Result<(), String> {
    let ok = !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "attachment path {path:?} must be relative to the export's folder, \
             without '..', '.', empty segments or backslashes"
        ))
    }
}

fn convert_attachment(
    message_id: &str,
    a: AttachmentLine,
    deferred: &mut Vec<(String, String)>,
    inline_bytes: &mut usize,
) -> Result<Attachment, String> {
    non_empty("attachment id", &a.id)?;
    non_empty(&format!("name of attachment {:?}", a.id), &a.name)?;
    let sources = [
        a.content_base64.is_some(),
        a.url.is_some(),
        a.path.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if sources != 1 {
        return Err(format!(
            "attachment {:?} of message {message_id:?} must have exactly one of \
             \"content_base64\", \"url\" and \"path\"",
            a.id
        ));
    }
    if a.encoding.is_some() && a.url.is_none() {
        return Err(format!(
            "attachment {:?}: \"encoding\" applies to \"url\" attachments only",
            a.id
        ));
    }
    let mut size = a.size;
    let body = if let Some(content) = a.content_base64 {
        let bytes = decode_base64(&content)
            .map_err(|e| format!("attachment {:?}: invalid content_base64: {e}", a.id))?;
        if let Some(declared) = a.size
            && declared != bytes.len() as u64
        {
            return Err(format!(
                "attachment {:?}: size {declared} does not match its content ({} bytes)",
                a.id,
                bytes.len()
            ));
        }
        size = Some(bytes.len() as u64);
        *inline_bytes += bytes.len();
        AttachmentBody::Inline(bytes)
    } else if let Some(url) = a.url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "attachment {:?}: url {url:?} must be an absolute http(s) URL",
                a.id
            ));
        }
        AttachmentBody::Fetch(FetchSpec::new(url).with_encoding(match a.encoding {
            Some(EncodingLine::Base64) => BodyEncoding::Base64,
            Some(EncodingLine::Identity) | None => BodyEncoding::Identity,
        }))
    } else {
        let path = a.path.unwrap_or_default();
        check_relative_path(&path).map_err(|e| format!("attachment {:?}: {e}", a.id))?;
        deferred.push((a.id.clone(), path));
        AttachmentBody::Deferred
    };
    Ok(Attachment::new(a.id, a.name, body)
        .with_media_type(a.media_type)
        .with_size(size))
}

fn is_header_token(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn convert_message(line: MessageLine) -> Result<ParsedMessage, String> {
    non_empty("message id", &line.id)?;
    non_empty("conversation", &line.conversation)?;
    let sender = convert_person("sender", line.sender)?;
    let kind = match line.kind {
        Some(k) => k,
        None if line.edit_of.is_some() => MessageKindLine::Edit,
        None if line.deletes.is_some() => MessageKindLine::Deletion,
        None => MessageKindLine::Chat,
    };
    if kind == MessageKindLine::Edit && line.edit_of.is_none() {
        return Err(format!(
            "message {:?} of kind edit needs \"edit_of\"",
            line.id
        ));
    }
    if kind == MessageKindLine::Deletion && line.deletes.is_none() {
        return Err(format!(
            "message {:?} of kind deletion needs \"deletes\"",
            line.id
        ));
    }
    let mut relations = Vec::new();
    for (target, make) in [
        (line.reply_to, Relation::ReplyTo as fn(String) -> Relation),
        (line.forward_of, Relation::ForwardOf),
        (line.edit_of, Relation::EditOf),
        (line.deletes, Relation::Deletes),
    ] {
        if let Some(target) = target {
            non_empty("related message id", &target)?;
            relations.push(make(target));
        }
    }
    let mut properties = Vec::with_capacity(line.properties.len());
    for (key, value) in line.properties {
        if !is_header_token(&key) {
            return Err(format!(
                "property name {key:?} must be a header token (letters, digits, '-', '_', '.')"
            ));
        }
        let value = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => {
                return Err(format!(
                    "property {key:?} must be a string, number or boolean"
                ));
            }
        };
        properties.push((key, value));
    }
    let mut deferred = Vec::new();
    let mut inline_bytes = 0;
    let mut attachments: Vec<Attachment> = Vec::with_capacity(line.attachments.len());
    for a in line.attachments {
        if attachments.iter().any(|b| b.id == a.id) {
            return Err(format!(
                "message {:?} has two attachments with id {:?}",
                line.id, a.id
            ));
        }
        attachments.push(convert_attachment(
            &line.id,
            a,
            &mut deferred,
            &mut inline_bytes,
        )?);
    }
    let kind = match kind {
        MessageKindLine::Chat => MessageKind::Chat,
        MessageKindLine::Edit => MessageKind::Edit,
        MessageKindLine::Deletion => MessageKind::Deletion,
        MessageKindLine::MemberJoined => MessageKind::MemberJoined,
        MessageKindLine::MemberLeft => MessageKind::MemberLeft,
        MessageKindLine::System => MessageKind::System,
    };
    Ok(ParsedMessage {
        message: Message::new(line.id, line.conversation, sender, line.sent_at.0, kind)
            .with_relations(relations)
            .with_text(line.text)
            .with_html(line.html)
            .with_attachments(attachments)
            .with_properties(properties),
        deferred,
        inline_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(json: &str) -> ParsedMessage {
        match parse_line(json.as_bytes()) {
            Ok(Line::Message(m)) => *m,
            other => panic!("{other:?}"),
        }
    }

    fn error(json: &str) -> String {
        parse_line(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn conversation_line() {
        let line = parse_line(
            br#"{"type":"conversation","id":"c1","kind":"room","name":"Caf\u00e9",
                "participants":[{"id":"u1","name":"Zo\u00eb","email":"zoe@example.test"},{"id":"u2"}]}"#,
        )
        .unwrap();
        assert_eq!(
            line,
            Line::Conversation(
                Conversation::new("c1", ConversationKind::Room)
                    .with_name("Café")
                    .with_participant(
                        Person::new("u1")
                            .with_name("Zoë")
                            .with_email("zoe@example.test")
                    )
                    .with_participant(Person::new("u2"))
            )
        );
    }

    #[test]
    fn full_message_line() {
        let m = message(
            r#"{"type":"message","id":"m1","conversation":"c1","sender":{"id":"u1"},
               "sent_at":"2024-03-01T09:30:00Z","text":"hi","html":"<p>hi</p>","reply_to":"m0",
               "properties":{"X-Channel":"web","priority":2,"pinned":true},
               "attachments":[
                 {"id":"a1","name":"a.txt","media_type":"text/plain","content_base64":"aGVsbG8="},
                 {"id":"a2","name":"b.bin","url":"https://files.example.test/b","encoding":"base64"},
                 {"id":"a3","name":"c.pdf","path":"files/c.pdf","size":12}]}"#,
        );
        let msg = &m.message;
        assert_eq!(msg.sent_at, 1_709_285_400_000);
        assert_eq!(msg.kind, MessageKind::Chat);
        assert_eq!(msg.relations, vec![Relation::ReplyTo("m0".into())]);
        assert_eq!(
            msg.properties,
            vec![
                ("X-Channel".to_string(), "web".to_string()),
                ("pinned".to_string(), "true".to_string()),
                ("priority".to_string(), "2".to_string()),
            ]
        );
        assert_eq!(
            msg.attachments[0].body,
            AttachmentBody::Inline(b"hello".to_vec())
        );
        assert_eq!(msg.attachments[0].size, Some(5));
        assert_eq!(
            msg.attachments[1].body,
            AttachmentBody::Fetch(
                FetchSpec::new("https://files.example.test/b").with_encoding(BodyEncoding::Base64)
            )
        );
        assert_eq!(msg.attachments[2].body, AttachmentBody::Deferred);
        assert_eq!(msg.attachments[2].size, Some(12));
        assert_eq!(
            m.deferred,
            vec![("a3".to_string(), "files/c.pdf".to_string())]
        );
        assert_eq!(m.inline_bytes, 5);
    }

    #[test]
    fn kinds_and_relations() {
        let m = message(
            r#"{"type":"message","id":"m2","conversation":"c","sender":{"id":"u"},"sent_at":5,"edit_of":"m1","text":"x"}"#,
        );
        assert_eq!(m.message.kind, MessageKind::Edit);
        assert_eq!(m.message.relations, vec![Relation::EditOf("m1".into())]);
        assert_eq!(m.message.sent_at, 5);
        let m = message(
            r#"{"type":"message","id":"m3","conversation":"c","sender":{"id":"u"},"sent_at":5,"kind":"member-joined"}"#,
        );
        assert_eq!(m.message.kind, MessageKind::MemberJoined);
        assert!(error(
            r#"{"type":"message","id":"m3","conversation":"c","sender":{"id":"u"},"sent_at":5,"kind":"deletion"}"#
        )
        .contains("needs \"deletes\""));
    }

    #[test]
    fn malformed_lines() {
        assert!(error("{").contains("column"));
        assert!(error(r#"{"type":"reaction"}"#).contains("unknown line type"));
        assert!(error(r#"{"id":"x"}"#).contains("missing field `type`"));
        assert!(
            error(r#"{"type":"conversation","id":"c","kind":"stage","participants":[]}"#)
                .contains("unknown variant")
        );
        let base = r#"{"type":"message","id":"m","conversation":"c","sender":{"id":"u"}"#;
        assert!(error(&format!("{base}}}")).contains("missing field `sent_at`"));
        assert!(error(&format!("{base},\"sent_at\":\"yesterday\"}}")).contains("RFC 3339"));
        assert!(error(&format!("{base},\"sent_at\":1.5}}")).contains("RFC 3339"));
        assert!(
            error(&format!("{base},\"sent_at\":1,\"colour\":\"red\"}}")).contains("unknown field")
        );
        assert!(
            error(&format!(
                "{base},\"sent_at\":1,\"attachments\":[{{\"id\":\"a\",\"name\":\"n\"}}]}}"
            ))
            .contains("exactly one of")
        );
        assert!(error(&format!(
            "{base},\"sent_at\":1,\"attachments\":[{{\"id\":\"a\",\"name\":\"n\",\"path\":\"../x\"}}]}}"
        ))
        .contains("without '..'"));
        assert!(error(&format!(
            "{base},\"sent_at\":1,\"attachments\":[{{\"id\":\"a\",\"name\":\"n\",\"content_base64\":\"!!\"}}]}}"
        ))
        .contains("content_base64"));
        assert!(
            error(&format!(
                "{base},\"sent_at\":1,\"properties\":{{\"a b\":\"x\"}}}}"
            ))
            .contains("header token")
        );
        assert!(
            error(&format!(
                "{base},\"sent_at\":1,\"properties\":{{\"a\":null}}}}"
            ))
            .contains("string, number or boolean")
        );
    }

    #[test]
    fn base64_variants() {
        assert_eq!(decode_base64("aGVs\nbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("-_8=").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(decode_base64("+/8").unwrap(), vec![0xfb, 0xff]);
    }
}
