//! Turns an email back into Graph's JSON message shape, and splits its
//! attachments between the create request, `POST …/attachments` and upload
//! sessions.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use mail_parser::{Address, MessageParser, MimeHeaders, PartType};
use serde_json::{Value, json};

use super::{PENDING_PROPERTY, REQUEST_BUDGET, UPLOAD_SESSION_MIN};
use connector_sink::Email;

/// An attachment as Graph takes it.
#[derive(Clone)]
pub(super) struct Attachment {
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl Attachment {
    /// The `fileAttachment` JSON that carries it inline.
    pub(super) fn json(&self) -> Value {
        json!({
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": self.name,
            "contentType": self.content_type,
            "contentBytes": base64::engine::general_purpose::STANDARD.encode(&self.bytes),
        })
    }
}

/// The create request and what has to follow it.
pub(super) struct Built {
    /// The create request's body.
    pub json: Value,
    /// Attachments under 3 MB that did not fit in the create request:
    /// one `POST …/attachments` each.
    pub posted: Vec<Attachment>,
    /// Attachments of 3 MB or more: one upload session each.
    pub uploaded: Vec<Attachment>,
}

/// Graph's `SystemTime` format.
fn system_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn recipients(address: Option<&Address<'_>>) -> Vec<Value> {
    address
        .map(|a| {
            a.iter()
                .filter_map(|addr| {
                    let email = addr.address()?;
                    let mut v = json!({"emailAddress": {"address": email}});
                    if let Some(name) = addr.name() {
                        v["emailAddress"]["name"] = json!(name);
                    }
                    Some(v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Bytes `value` takes as JSON text.
pub(super) fn json_len(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

/// The JSON create body of `email`, with the extended properties of a
/// received, read, non-draft message and its Message-ID. Attachments under
/// [`UPLOAD_SESSION_MIN`] go inline while the request stays within
/// [`REQUEST_BUDGET`]; the others are left for `POST …/attachments` or
/// upload sessions, and the message is then created marked pending
/// ([`PENDING_PROPERTY`] = 1).
pub(super) fn message_json(email: &Email) -> Result<Built, String> {
    // Graph takes a message as JSON, so a spooled email is read whole here.
    let bytes = email
        .bytes()
        .map_err(|e| format!("the email cannot be read: {e}"))?;
    let parsed = MessageParser::default()
        .parse(&bytes[..])
        .ok_or_else(|| "the email cannot be parsed back".to_string())?;
    let sent_ms = parsed
        .date()
        .map(|d| d.to_timestamp() * 1000)
        .unwrap_or(email.sent_at);
    let has_html = parsed
        .html_body
        .first()
        .and_then(|&i| parsed.part(i))
        .is_some_and(|p| matches!(p.body, PartType::Html(_)));
    let body = if has_html {
        json!({"contentType": "html", "content": parsed.body_html(0).unwrap_or_default()})
    } else {
        json!({"contentType": "text", "content": parsed.body_text(0).unwrap_or_default()})
    };
    let mut small = Vec::new();
    let mut uploaded = Vec::new();
    for att in parsed.attachments() {
        let attachment = Attachment {
            name: att
                .attachment_name()
                .map(str::to_string)
                .unwrap_or_else(|| "attachment".to_string()),
            content_type: att
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{sub}", ct.ctype()),
                    None => ct.ctype().to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".to_string()),
            bytes: att.contents().to_vec(),
        };
        if attachment.bytes.len() >= UPLOAD_SESSION_MIN {
            uploaded.push(attachment);
        } else {
            small.push(attachment);
        }
    }
    let props = vec![
        json!({"id": "Integer 0x0E07", "value": "1"}),
        json!({"id": "SystemTime 0x0E06", "value": system_time(email.sent_at)}),
        json!({"id": "SystemTime 0x0039", "value": system_time(sent_ms)}),
        json!({"id": "String 0x1035", "value": format!("<{}>", email.message_id)}),
    ];
    let headers: Vec<Value> = parsed
        .headers()
        .iter()
        .filter(|h| h.name().to_ascii_lowercase().starts_with("x-connector-"))
        .filter_map(|h| {
            let value = h.value().as_text()?;
            Some(json!({"name": h.name(), "value": value}))
        })
        .take(5)
        .collect();
    let mut json = json!({
        "subject": parsed.subject().unwrap_or_default(),
        "body": body,
        "toRecipients": recipients(parsed.to()),
        "ccRecipients": recipients(parsed.cc()),
        "isRead": true,
        "singleValueExtendedProperties": props,
    });
    if let Some(from) = recipients(parsed.from()).into_iter().next() {
        json["from"] = from.clone();
        json["sender"] = from;
    }
    if !headers.is_empty() {
        json["internetMessageHeaders"] = json!(headers);
    }
    // The pending marker may be added below: count it in.
    let base = json_len(&json) + json_len(&pending_property("1")) + 1;
    if base > REQUEST_BUDGET {
        return Err(format!(
            "its body and headers take {base} bytes as JSON, more than the {REQUEST_BUDGET} one Graph request can carry (Graph answers 413 above 4 MB and a received message's body cannot be added to later); shorten the message at the source or archive it through another sink"
        ));
    }
    // Inline what fits, smallest first so that most attachments ride along.
    small.sort_by_key(|a| a.bytes.len());
    let mut inline = Vec::new();
    let mut posted = Vec::new();
    let mut size = base + "\"attachments\":[],".len();
    for attachment in small {
        let value = attachment.json();
        let more = json_len(&value) + 1;
        if posted.is_empty() && size + more <= REQUEST_BUDGET {
            size += more;
            inline.push(value);
        } else {
            posted.push(attachment);
        }
    }
    if !inline.is_empty() {
        json["attachments"] = json!(inline);
    }
    if !posted.is_empty() || !uploaded.is_empty() {
        json["singleValueExtendedProperties"]
            .as_array_mut()
            .expect("built above")
            .push(pending_property("1"));
    }
    Ok(Built {
        json,
        posted,
        uploaded,
    })
}

/// The [`PENDING_PROPERTY`] with this value ("1": attachments are still
/// being added; "0": complete).
pub(super) fn pending_property(value: &str) -> Value {
    json!({"id": PENDING_PROPERTY, "value": value})
}
