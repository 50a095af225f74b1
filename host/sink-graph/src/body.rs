//! Turns an email back into Graph's JSON message shape.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use mail_parser::{Address, MessageParser, MimeHeaders, PartType};
use serde_json::{Value, json};

use super::{INLINE_ATTACHMENT_MAX, INLINE_TOTAL_MAX};
use connector_sink::Email;

/// An attachment sent through an upload session after the create.
pub(super) struct LargeAttachment {
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// The create request's body and the attachments left for upload sessions.
pub(super) struct Built {
    pub json: Value,
    pub large: Vec<LargeAttachment>,
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

/// The JSON create body of `email`, with the extended properties of a
/// received, read, non-draft message. The Message-ID property is left out
/// when some attachment needs an upload session (it is set afterwards).
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
    let mut inline = Vec::new();
    let mut large = Vec::new();
    let mut inline_total = 0;
    for att in parsed.attachments() {
        let bytes = att.contents().to_vec();
        let name = att
            .attachment_name()
            .map(str::to_string)
            .unwrap_or_else(|| "attachment".to_string());
        let content_type = att
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{sub}", ct.ctype()),
                None => ct.ctype().to_string(),
            })
            .unwrap_or_else(|| "application/octet-stream".to_string());
        if bytes.len() > INLINE_ATTACHMENT_MAX || inline_total + bytes.len() > INLINE_TOTAL_MAX {
            large.push(LargeAttachment {
                name,
                content_type,
                bytes,
            });
        } else {
            inline_total += bytes.len();
            inline.push(json!({
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": name,
                "contentType": content_type,
                "contentBytes": base64::engine::general_purpose::STANDARD.encode(&bytes),
            }));
        }
    }
    let mut props = vec![
        json!({"id": "Integer 0x0E07", "value": "1"}),
        json!({"id": "SystemTime 0x0E06", "value": system_time(email.sent_at)}),
        json!({"id": "SystemTime 0x0039", "value": system_time(sent_ms)}),
    ];
    if large.is_empty() {
        props.push(message_id_property(&email.message_id));
    }
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
    if !inline.is_empty() {
        json["attachments"] = json!(inline);
    }
    Ok(Built { json, large })
}

/// The `String 0x1035` (PR_INTERNET_MESSAGE_ID) property.
pub(super) fn message_id_property(message_id: &str) -> Value {
    json!({"id": "String 0x1035", "value": format!("<{message_id}>")})
}
