//! Symphony messages and events into the WIT `message`.
//!
//! | Symphony | message |
//! | --- | --- |
//! | `messageId` | `id` |
//! | the stream listed | `conversation-id` |
//! | `user` (`userId`, `displayName`, `email`) | `sender` |
//! | `timestamp` | `sent-at` |
//! | `replacing` | kind `edit`, relation `edit-of(replacing)` |
//! | `parentMessageId`, parent in the same stream | relation `reply-to` |
//! | `parentMessageId`, parent in another stream | relation `forward-of` |
//! | `message` + `data` | `text`, `html` (see [`crate::presentation`]) |
//! | `attachments[]` | `fetch` attachments, base64 (see [`attachment_url`]) |
//! | the JSON item as received | `original` |
//! | datahose `MESSAGESUPPRESSED` | kind `deletion`, relation `deletes(messageId)`, id `suppression-<messageId>` |
//! | datahose `USERJOINEDROOM` / `USERLEFTROOM` | kind `member-joined` / `member-left`, id `event-<id>` |

use connector_sdk::{
    Attachment, AttachmentBody, BodyEncoding, FetchSpec, Message, MessageKind, Person, Relation,
};

use crate::api::{self, V4AttachmentInfo, V4Event, V4Message, V4User};
use crate::client::{Server, Tokens, encode_component};
use crate::config::StreamType;
use crate::presentation::Rendered;

/// How a message relates to its `parentMessageId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentKind {
    /// The parent is in the same stream: a reply.
    Reply,
    /// The parent is in another stream: a forward.
    Forward,
    /// The parent could not be found (suppressed, or not visible); recorded
    /// as a reply.
    Unknown,
}

impl ParentKind {
    fn as_str(self) -> &'static str {
        match self {
            ParentKind::Reply => "reply",
            ParentKind::Forward => "forward",
            ParentKind::Unknown => "unknown",
        }
    }
}

/// A person from a `V4User`, with fallbacks for missing name and email.
pub fn person(user: Option<&V4User>, email: Option<String>, name: Option<String>) -> Person {
    let Some(user) = user else {
        return Person::new("unknown").with_name(name).with_email(email);
    };
    let id = user
        .user_id
        .map(|id| id.0.to_string())
        .unwrap_or_else(|| "unknown".into());
    let display_name = api::display_name(
        user.display_name.as_deref(),
        user.first_name.as_deref(),
        user.last_name.as_deref(),
    );
    Person::new(id)
        .with_name(display_name.or(name))
        .with_email(api::clean_email(user.email.as_deref()).or(email))
}

/// The download URL of an attachment:
/// `{agent}/agent/v1/stream/{sid}/attachment?fileId=&messageId=`, the
/// `fileId` as listed (percent-encoded ids are not encoded again).
pub fn attachment_url(agent: &str, stream_id: &str, file_id: &str, message_id: &str) -> String {
    format!(
        "{agent}/agent/v1/stream/{}/attachment?fileId={}&messageId={}",
        encode_component(stream_id, false),
        encode_component(file_id, true),
        encode_component(message_id, false),
    )
}

/// A `fetch` attachment the host downloads (base64) with the session
/// headers.
pub fn attachment(
    index: usize,
    info: &V4AttachmentInfo,
    url: String,
    tokens: &Tokens,
) -> Attachment {
    let file_name = info
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("attachment-{}", index + 1));
    let fetch = tokens
        .headers(Server::Agent)
        .fold(FetchSpec::new(url), |f, (name, value)| {
            f.with_header(name, value)
        })
        .with_encoding(BodyEncoding::Base64);
    let media_type = media_type(&file_name).map(str::to_string);
    Attachment::new(&info.id, file_name, AttachmentBody::Fetch(fetch))
        .with_media_type(media_type)
        .with_size(info.size.and_then(|s| u64::try_from(s.0).ok()))
}

/// The media type of common file extensions.
pub fn media_type(file_name: &str) -> Option<&'static str> {
    let ext = file_name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "pdf" => "application/pdf",
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "htm" | "html" => "text/html",
        "json" => "application/json",
        "xml" => "application/xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "ppt" => "application/vnd.ms-powerpoint",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "eml" => "message/rfc822",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        _ => return None,
    })
}

/// Everything [`message`] needs besides the message itself.
pub struct MessageParts<'a> {
    /// The item exactly as received.
    pub raw: &'a str,
    /// The stream the message was listed in.
    pub stream_id: &'a str,
    /// Its type.
    pub stream_type: StreamType,
    /// How the message relates to its parent, if it has one.
    pub parent: Option<ParentKind>,
    /// The sender as the plugin knows them (email and name from the member
    /// list), used where the message lacks them.
    pub known_sender: Option<(Option<String>, Option<String>)>,
    /// The converted body.
    pub rendered: Rendered,
    /// The attachments.
    pub attachments: Vec<Attachment>,
}

/// A listed `V4Message` as a WIT message.
pub fn message(msg: &V4Message, parts: MessageParts<'_>) -> Message {
    let (known_email, known_name) = parts.known_sender.unwrap_or((None, None));
    let sender = person(msg.user.as_ref(), known_email, known_name);
    let mut relations = Vec::new();
    let mut properties = vec![(
        "Stream-Type".to_string(),
        parts.stream_type.as_str().to_string(),
    )];
    let mut kind = MessageKind::Chat;
    if let Some(target) = msg.replacing.as_deref().filter(|t| !t.is_empty()) {
        kind = MessageKind::Edit;
        relations.push(Relation::EditOf(target.to_string()));
        properties.push(("Replacing".into(), target.to_string()));
    }
    if let Some(parent) = msg.parent_message_id.as_deref().filter(|p| !p.is_empty()) {
        let how = parts.parent.unwrap_or(ParentKind::Unknown);
        relations.push(match how {
            ParentKind::Forward => Relation::ForwardOf(parent.to_string()),
            ParentKind::Reply | ParentKind::Unknown => Relation::ReplyTo(parent.to_string()),
        });
        properties.push(("Parent-Message-Id".into(), parent.to_string()));
        properties.push(("Parent-Relation".into(), how.as_str().to_string()));
    }
    let mut optional = |name: &str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            properties.push((name.to_string(), v));
        }
    };
    optional("Initial-Message-Id", msg.initial_message_id.clone());
    optional(
        "Initial-Timestamp",
        msg.initial_timestamp.map(|t| t.0.to_string()),
    );
    optional("Replaced-By", msg.replaced_by.clone());
    optional("Message-Format", msg.original_format.clone());
    optional("User-Agent", msg.user_agent.clone());
    optional(
        "Sender-Username",
        msg.user.as_ref().and_then(|u| u.username.clone()),
    );
    optional(
        "Room-Name",
        msg.stream.as_ref().and_then(|s| s.room_name.clone()),
    );
    optional(
        "External-Recipients",
        msg.external_recipients.map(|b| b.to_string()),
    );
    optional("Disclaimer", msg.disclaimer.clone());
    if let Some(shared) = &msg.shared_message {
        optional("Shared-Message-Id", Some(shared.message_id.clone()));
        optional(
            "Shared-Stream-Id",
            shared.stream.as_ref().and_then(|s| s.stream_id.clone()),
        );
        optional(
            "Shared-Sender-Id",
            shared
                .user
                .as_ref()
                .and_then(|u| u.user_id)
                .map(|id| id.0.to_string()),
        );
        optional("Shared-Timestamp", Some(shared.timestamp.0.to_string()));
    }
    optional("Diagnostic", msg.diagnostic.clone());
    if parts.rendered.fallback {
        properties.push(("Markup-Fallback".into(), "true".into()));
    }
    let Rendered {
        text, html, images, ..
    } = parts.rendered;
    // The images the HTML shows inline come after the files, each under
    // the id its `cid:` URL names (the host then attaches it inline).
    let mut attachments = parts.attachments;
    attachments.extend(images.into_iter().map(|image| {
        let size = image.bytes.len() as u64;
        Attachment::new(
            image.id,
            image.file_name,
            AttachmentBody::Inline(image.bytes),
        )
        .with_media_type(image.media_type)
        .with_size(size)
    }));
    Message::new(
        &msg.message_id,
        parts.stream_id,
        sender,
        msg.timestamp.0,
        kind,
    )
    .with_relations(relations)
    .with_text((!text.is_empty()).then_some(text))
    .with_html((!html.is_empty()).then_some(html))
    .with_attachments(attachments)
    .with_original(parts.raw)
    .with_properties(properties)
}

/// A wall post's body followed by the message it shares: a line naming
/// who wrote it, then its text (and, in the HTML, a quote of its HTML).
pub fn with_shared(post: Rendered, shared: &Rendered, author: &str) -> Rendered {
    let heading = format!("Shared message from {author}:");
    let mut text = post.text;
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    text.push_str(&heading);
    if !shared.text.is_empty() {
        text.push('\n');
        text.push_str(&shared.text);
    }
    let mut html = post.html;
    html.push_str("<blockquote><p>");
    crate::presentation::escape_html(&heading, &mut html);
    html.push_str("</p>");
    // The shared message's images follow the post's own.
    let mut shared_html = shared.html.clone();
    let mut shared_images = shared.images.clone();
    crate::presentation::renumber_images(
        &mut shared_html,
        &mut shared_images,
        post.images.len() + 1,
    );
    html.push_str(&shared_html);
    html.push_str("</blockquote>");
    let mut images = post.images;
    images.extend(shared_images);
    Rendered {
        text,
        html,
        fallback: post.fallback || shared.fallback,
        images,
    }
}

/// A message's body followed by a note naming the files it carries that
/// could not be fetched (`name (size bytes, id …)` each), `why`, and `fix`.
pub fn with_unfetched(body: Rendered, files: &[String], why: &str, fix: &str) -> Rendered {
    let heading = format!("{UNFETCHED_HEADING} ({why}):");
    let advice = format!("To archive them: {fix}.");
    let mut text = body.text;
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    text.push_str(&heading);
    for file in files {
        text.push_str("\n- ");
        text.push_str(file);
    }
    text.push('\n');
    text.push_str(&advice);
    let mut html = body.html;
    html.push_str("<div class=\"unfetched\"><p>");
    crate::presentation::escape_html(&heading, &mut html);
    html.push_str("</p><ul>");
    for file in files {
        html.push_str("<li>");
        crate::presentation::escape_html(file, &mut html);
        html.push_str("</li>");
    }
    html.push_str("</ul><p>");
    crate::presentation::escape_html(&advice, &mut html);
    html.push_str("</p></div>");
    Rendered {
        text,
        html,
        fallback: body.fallback,
        images: body.images,
    }
}

/// How the note of [`with_unfetched`] begins.
pub const UNFETCHED_HEADING: &str = "Files not archived";

/// A datahose event the plugin archives, with its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMessage {
    /// The message.
    pub message: Message,
    /// Its stream's id.
    pub stream_id: String,
    /// Its stream's type, when the event says.
    pub stream_type: Option<StreamType>,
    /// Its room's name, when the event says.
    pub room_name: Option<String>,
}

/// Turns a datahose event into a message: `MESSAGESUPPRESSED` into a
/// deletion, `USERJOINEDROOM` / `USERLEFTROOM` into joins and leaves,
/// `ROOMUPDATED` into a system message. Other events (messages are read by
/// the session), and events without the fields they need, give `None`.
pub fn event(raw: &str, ev: &V4Event) -> Option<EventMessage> {
    let payload = ev.payload.as_ref()?;
    let kind = ev.kind.as_deref().unwrap_or_default();
    let initiator = ev.initiator.as_ref().and_then(|i| i.user.as_ref());
    let sent_at = ev.timestamp.map(|t| t.0).unwrap_or(0);
    let mut properties = vec![("Event-Type".to_string(), kind.to_string())];
    if let Some(id) = &ev.id {
        properties.push(("Event-Id".into(), id.clone()));
    }
    let stream_facts = |s: Option<&api::V4Stream>| {
        let s = s?;
        Some((
            s.stream_id.clone().filter(|i| !i.is_empty())?,
            s.stream_type.as_deref().and_then(StreamType::parse),
            s.room_name.clone(),
        ))
    };
    let (message, (stream_id, stream_type, room_name)) = match kind {
        "MESSAGESUPPRESSED" => {
            let sup = payload.message_suppressed.as_ref()?;
            let target = sup
                .message_id
                .clone()
                .or_else(|| ev.message_id.clone())
                .filter(|t| !t.is_empty())?;
            let stream = stream_facts(sup.stream.as_ref())?;
            let sender = person(initiator, None, None);
            let who = sender
                .display_name
                .clone()
                .unwrap_or_else(|| sender.id.clone());
            properties.push(("Suppressed-Message-Id".into(), target.clone()));
            let message = Message::new(
                format!("suppression-{target}"),
                &stream.0,
                sender,
                sent_at,
                MessageKind::Deletion,
            )
            .with_relation(Relation::Deletes(target.clone()))
            .with_text(format!("{who} suppressed (deleted) message {target}."))
            .with_original(raw);
            (message, stream)
        }
        "USERJOINEDROOM" | "USERLEFTROOM" => {
            let joined = kind == "USERJOINEDROOM";
            let change = if joined {
                payload.user_joined_room.as_ref()?
            } else {
                payload.user_left_room.as_ref()?
            };
            let stream = stream_facts(change.stream.as_ref())?;
            let affected = change.affected_user.as_ref().or(initiator)?;
            let sender = person(Some(affected), None, None);
            if let Some(by) = initiator.and_then(|u| u.user_id) {
                properties.push(("Initiator-Id".into(), by.0.to_string()));
            }
            let id = ev
                .id
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| format!("{}-{}-{}", stream.0, sender.id, sent_at));
            let kind = if joined {
                MessageKind::MemberJoined
            } else {
                MessageKind::MemberLeft
            };
            let message = Message::new(format!("event-{id}"), &stream.0, sender, sent_at, kind)
                .with_original(raw);
            (message, stream)
        }
        "ROOMUPDATED" => {
            let update = payload.room_updated.as_ref()?;
            let mut stream = stream_facts(update.stream.as_ref())?;
            let name = update
                .new_room_properties
                .as_ref()
                .and_then(|p| p.name.clone());
            stream.2 = stream.2.or(name.clone());
            let sender = person(initiator, None, None);
            let id = ev.id.clone().filter(|i| !i.is_empty())?;
            let text = match &name {
                Some(name) => format!("The room was updated; its name is now {name:?}."),
                None => "The room's properties were updated.".to_string(),
            };
            let message = Message::new(
                format!("event-{id}"),
                &stream.0,
                sender,
                sent_at,
                MessageKind::System,
            )
            .with_text(text)
            .with_original(raw);
            (message, stream)
        }
        _ => return None,
    };
    if let Some(t) = stream_type {
        properties.insert(0, ("Stream-Type".into(), t.as_str().to_string()));
    }
    Some(EventMessage {
        message: message.with_properties(properties),
        stream_id,
        stream_type,
        room_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presentation;

    fn tokens() -> Tokens {
        Tokens {
            session: ("sessionToken".into(), "s1".into()),
            key_manager: Some(("keyManagerToken".into(), "k1".into())),
        }
    }

    fn rendered(text: &str) -> Rendered {
        Rendered {
            text: text.into(),
            html: format!("<p>{text}</p>"),
            fallback: false,
            images: Vec::new(),
        }
    }

    #[test]
    fn an_edit_reply_with_attachments() {
        let raw = r#"{"messageId":"m2","parentMessageId":"m0","timestamp":1700000000001,"message":"<div/>","data":"{}",
            "attachments":[{"id":"internal_7%2FAb%3D%3D","name":"Q3 forecast (final).xlsx","size":1234,"images":[]},{"id":"x","name":"","size":1}],
            "user":{"userId":7,"displayName":"Alice Smith","username":"asmith"},"stream":{"streamId":"S1","streamType":"ROOM"},
            "replacing":"m1","initialMessageId":"m1","initialTimestamp":1700000000000,"originalFormat":"com.symphony.messageml.v2"}"#;
        let msg: V4Message = serde_json::from_str(raw).unwrap();
        let atts: Vec<Attachment> = msg
            .attachments
            .iter()
            .enumerate()
            .map(|(i, a)| {
                attachment(
                    i,
                    a,
                    attachment_url("http://a:1", "S1", &a.id, &msg.message_id),
                    &tokens(),
                )
            })
            .collect();
        let m = message(
            &msg,
            MessageParts {
                raw,
                stream_id: "S1",
                stream_type: StreamType::Room,
                parent: Some(ParentKind::Reply),
                known_sender: Some((Some("alice@acme.example".into()), None)),
                rendered: rendered("Correction: x"),
                attachments: atts,
            },
        );
        assert_eq!(m.id, "m2");
        assert_eq!(m.conversation_id, "S1");
        assert_eq!(m.sent_at, 1_700_000_000_001);
        assert_eq!(m.kind, MessageKind::Edit);
        assert_eq!(
            m.relations,
            vec![
                Relation::EditOf("m1".into()),
                Relation::ReplyTo("m0".into())
            ]
        );
        assert_eq!(m.sender.id, "7");
        assert_eq!(m.sender.display_name.as_deref(), Some("Alice Smith"));
        assert_eq!(m.sender.email.as_deref(), Some("alice@acme.example"));
        assert_eq!(m.original.as_deref(), Some(raw.as_bytes()));
        let prop = |k: &str| {
            m.properties
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(prop("Stream-Type"), Some("ROOM"));
        assert_eq!(prop("Initial-Message-Id"), Some("m1"));
        assert_eq!(prop("Initial-Timestamp"), Some("1700000000000"));
        assert_eq!(prop("Parent-Relation"), Some("reply"));
        assert_eq!(prop("Sender-Username"), Some("asmith"));
        assert_eq!(m.attachments.len(), 2);
        let a = &m.attachments[0];
        assert_eq!(a.file_name, "Q3 forecast (final).xlsx");
        assert_eq!(a.size, Some(1234));
        assert!(a.media_type.as_deref().unwrap().contains("spreadsheetml"));
        match &a.body {
            AttachmentBody::Fetch(spec) => {
                assert_eq!(
                    spec.url,
                    "http://a:1/agent/v1/stream/S1/attachment?fileId=internal_7%2FAb%3D%3D&messageId=m2"
                );
                assert_eq!(spec.encoding, BodyEncoding::Base64);
                assert_eq!(spec.headers.len(), 2);
                assert!(spec.secret_headers.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.attachments[1].file_name, "attachment-2");
    }

    #[test]
    fn forwards_and_unknown_parents() {
        let raw = r#"{"messageId":"m","parentMessageId":"p","timestamp":5,"user":{"userId":1}}"#;
        let msg: V4Message = serde_json::from_str(raw).unwrap();
        let with = |parent| {
            message(
                &msg,
                MessageParts {
                    raw,
                    stream_id: "S",
                    stream_type: StreamType::Im,
                    parent,
                    known_sender: None,
                    rendered: presentation::render("", &Default::default(), &|_| None),
                    attachments: Vec::new(),
                },
            )
        };
        let m = with(Some(ParentKind::Forward));
        assert_eq!(m.relations, vec![Relation::ForwardOf("p".into())]);
        assert_eq!(m.kind, MessageKind::Chat);
        assert_eq!((m.text.clone(), m.html.clone()), (None, None));
        let m = with(None);
        assert_eq!(m.relations, vec![Relation::ReplyTo("p".into())]);
    }

    #[test]
    fn suppression_events_become_deletions() {
        let raw = r#"{"id":"sup-0-m9","messageId":"m9","timestamp":1700000100000,"type":"MESSAGESUPPRESSED",
            "initiator":{"user":{"userId":3,"displayName":"Compliance Officer","email":"co@acme.example"}},
            "payload":{"messageSuppressed":{"messageId":"m9","stream":{"streamId":"S9","streamType":"MIM"}}}}"#;
        let ev: V4Event = serde_json::from_str(raw).unwrap();
        let e = event(raw, &ev).unwrap();
        assert_eq!(e.stream_id, "S9");
        assert_eq!(e.stream_type, Some(StreamType::Mim));
        let m = e.message;
        assert_eq!(m.id, "suppression-m9");
        assert_eq!(m.kind, MessageKind::Deletion);
        assert_eq!(m.relations, vec![Relation::Deletes("m9".into())]);
        assert_eq!(m.sender.email.as_deref(), Some("co@acme.example"));
        assert_eq!(m.sent_at, 1_700_000_100_000);
        assert_eq!(m.original.as_deref(), Some(raw.as_bytes()));
        assert!(
            m.properties
                .contains(&("Event-Id".into(), "sup-0-m9".into()))
        );
    }

    #[test]
    fn join_and_leave_events() {
        let raw = r#"{"id":"e1","timestamp":9,"type":"USERLEFTROOM","initiator":{"user":{"userId":1}},
            "payload":{"userLeftRoom":{"stream":{"streamId":"R","streamType":"ROOM","roomName":"Desk"},"affectedUser":{"userId":2,"displayName":"Bob"}}}}"#;
        let ev: V4Event = serde_json::from_str(raw).unwrap();
        let e = event(raw, &ev).unwrap();
        assert_eq!(e.message.kind, MessageKind::MemberLeft);
        assert_eq!(e.message.id, "event-e1");
        assert_eq!(e.message.sender.id, "2");
        assert_eq!(e.room_name.as_deref(), Some("Desk"));
        assert!(
            e.message
                .properties
                .contains(&("Initiator-Id".into(), "1".into()))
        );
        let other: V4Event =
            serde_json::from_str(r#"{"type":"MESSAGESENT","payload":{}}"#).unwrap();
        assert!(event("{}", &other).is_none());
        let broken: V4Event = serde_json::from_str(
            r#"{"type":"MESSAGESUPPRESSED","payload":{"messageSuppressed":{}}}"#,
        )
        .unwrap();
        assert!(event("{}", &broken).is_none());
    }

    #[test]
    fn media_types() {
        assert_eq!(media_type("report.PDF"), Some("application/pdf"));
        assert_eq!(media_type("archive.tar.gz"), Some("application/gzip"));
        assert_eq!(media_type("no extension"), None);
        assert_eq!(media_type("x.unknown"), None);
    }

    #[test]
    fn a_shared_messages_images_follow_the_posts_own_and_every_image_is_attached_by_its_cid() {
        let image = |b64: &str| {
            presentation::render(
                &format!(r#"<div><p>x</p><img src="data:image/png;base64,{b64}" alt="c"/></div>"#),
                &Default::default(),
                &|_| None,
            )
        };
        let post = image("AAEC");
        let shared = image("AwQF");
        let both = with_shared(post, &shared, "Bob <bob@x.example>");
        let ids: Vec<&str> = both.images.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["image-1@inline.symphony", "image-2@inline.symphony"]);
        assert_eq!(both.images[1].bytes, [3, 4, 5]);
        assert!(
            both.html
                .contains(r#"<blockquote><p>Shared message from Bob &lt;bob@x.example&gt;:</p><div><p>x</p><img src="cid:image-2@inline.symphony" alt="c">"#),
            "{}",
            both.html
        );
        let msg: V4Message = serde_json::from_value(serde_json::json!({
            "messageId": "m1", "timestamp": 1, "message": "", "user": {"userId": 7}
        }))
        .unwrap();
        let m = message(
            &msg,
            MessageParts {
                raw: "{}",
                stream_id: "s1",
                stream_type: StreamType::Post,
                parent: None,
                known_sender: None,
                rendered: both,
                attachments: Vec::new(),
            },
        );
        let attached: Vec<(&str, &str, Option<&str>)> = m
            .attachments
            .iter()
            .map(|a| (a.id.as_str(), a.file_name.as_str(), a.media_type.as_deref()))
            .collect();
        assert_eq!(
            attached,
            [
                ("image-1@inline.symphony", "image-1.png", Some("image/png")),
                ("image-2@inline.symphony", "image-2.png", Some("image/png"))
            ]
        );
        assert!(matches!(&m.attachments[0].body, AttachmentBody::Inline(b) if b == &[0, 1, 2]));
    }
}
