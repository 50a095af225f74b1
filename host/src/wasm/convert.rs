//! Plugin data (WIT types) into the host's model, and a streaming base64
//! decoder for downloads.

use std::io::Read;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::latest::types as wit;
use crate::convert::HashingWriter;
use crate::model;

pub(crate) fn person(p: wit::Person) -> model::Person {
    model::Person {
        id: p.id,
        display_name: p.display_name.filter(|n| !n.trim().is_empty()),
        email: p.email.filter(|e| !e.trim().is_empty()),
    }
}

pub(crate) fn conversation(c: wit::Conversation) -> model::Conversation {
    model::Conversation {
        id: c.id,
        kind: match c.kind {
            wit::ConversationKind::Direct => model::ConversationKind::Direct,
            wit::ConversationKind::Group => model::ConversationKind::Group,
            wit::ConversationKind::Room => model::ConversationKind::Room,
            wit::ConversationKind::Feed => model::ConversationKind::Feed,
        },
        name: c.name.filter(|n| !n.trim().is_empty()),
        participants: c.participants.into_iter().map(person).collect(),
    }
}

fn kind(k: wit::MessageKind) -> model::MessageKind {
    match k {
        wit::MessageKind::Chat => model::MessageKind::Chat,
        wit::MessageKind::Edit => model::MessageKind::Edit,
        wit::MessageKind::Deletion => model::MessageKind::Deletion,
        wit::MessageKind::MemberJoined => model::MessageKind::MemberJoined,
        wit::MessageKind::MemberLeft => model::MessageKind::MemberLeft,
        wit::MessageKind::System => model::MessageKind::System,
    }
}

fn relation(r: wit::Relation) -> model::Relation {
    match r {
        wit::Relation::ReplyTo(id) => model::Relation::ReplyTo(id),
        wit::Relation::ForwardOf(id) => model::Relation::ForwardOf(id),
        wit::Relation::EditOf(id) => model::Relation::EditOf(id),
        wit::Relation::Deletes(id) => model::Relation::Deletes(id),
    }
}

/// A message without its attachments, which the runner resolves separately.
pub(crate) fn message(m: wit::Message, attachments: Vec<model::Attachment>) -> model::Message {
    let source_sha256 = match &m.original {
        Some(bytes) => crate::convert::hex(&Sha256::digest(bytes)),
        None => normalized_digest(&m),
    };
    model::Message {
        id: m.id,
        conversation_id: m.conversation_id,
        sender: person(m.sender),
        sent_at: m.sent_at,
        kind: kind(m.kind),
        relations: m.relations.into_iter().map(relation).collect(),
        text: m.text,
        html: m.html,
        attachments,
        source_sha256,
        properties: m.properties,
    }
}

/// SHA-256 of a canonical JSON rendering of the message, for sources that
/// give no original bytes: compact JSON with the keys in alphabetical
/// order, streamed into the hash.
fn normalized_digest(m: &wit::Message) -> String {
    /// The rendered fields; declared in key order, which is the order
    /// they are written in.
    #[derive(serde::Serialize)]
    struct Canonical<'a> {
        attachments: Vec<[&'a str; 2]>,
        conversation: &'a str,
        html: &'a Option<String>,
        id: &'a str,
        kind: String,
        properties: &'a [(String, String)],
        relations: Vec<String>,
        sender: (&'a str, &'a Option<String>, &'a Option<String>),
        sent_at: i64,
        text: &'a Option<String>,
    }
    let canonical = Canonical {
        attachments: m
            .attachments
            .iter()
            .map(|a| [a.id.as_str(), a.file_name.as_str()])
            .collect(),
        conversation: &m.conversation_id,
        html: &m.html,
        id: &m.id,
        kind: format!("{:?}", m.kind),
        properties: &m.properties,
        relations: m.relations.iter().map(|r| format!("{r:?}")).collect(),
        sender: (&m.sender.id, &m.sender.display_name, &m.sender.email),
        sent_at: m.sent_at,
        text: &m.text,
    };
    let mut hash = HashingWriter::new(std::io::sink());
    serde_json::to_writer(&mut hash, &canonical).expect("writing to a hash cannot fail");
    hash.finish().1
}

/// Decodes base64 (standard or URL-safe alphabet, padded or not, with line
/// breaks) while reading.
pub(crate) struct Base64Reader<R> {
    inner: R,
    pending: Vec<u8>,
    decoded: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read> Base64Reader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Base64Reader {
            inner,
            pending: Vec::new(),
            decoded: Vec::new(),
            pos: 0,
            done: false,
        }
    }

    fn refill(&mut self) -> std::io::Result<()> {
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let mut raw = [0u8; 64 << 10];
        while !self.done && self.pending.len() < 4 {
            let n = self.inner.read(&mut raw)?;
            if n == 0 {
                self.done = true;
            }
            self.pending
                .extend(raw[..n].iter().filter_map(|&b| match b {
                    b'-' => Some(b'+'),
                    b'_' => Some(b'/'),
                    b'=' | b'\r' | b'\n' | b' ' | b'\t' => None,
                    b => Some(b),
                }));
        }
        let take = if self.done {
            self.pending.len()
        } else {
            self.pending.len() / 4 * 4
        };
        self.decoded.clear();
        self.pos = 0;
        engine
            .decode_vec(&self.pending[..take], &mut self.decoded)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        self.pending.drain(..take);
        Ok(())
    }
}

impl<R: Read> Read for Base64Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.decoded.len() {
            if self.done && self.pending.is_empty() {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = buf.len().min(self.decoded.len() - self.pos);
        buf[..n].copy_from_slice(&self.decoded[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Base64Reader::new(input).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn base64_reader_decodes_any_alphabet_with_line_breaks() {
        let data: Vec<u8> = (0..=255u8).cycle().take(200_003).collect();
        let std = base64::engine::general_purpose::STANDARD.encode(&data);
        let wrapped: String = std
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap().to_string() + "\r\n")
            .collect();
        assert_eq!(decode(wrapped.as_bytes()).unwrap(), data);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&data);
        assert_eq!(decode(url.as_bytes()).unwrap(), data);
    }

    #[test]
    fn the_digest_of_a_message_without_original_bytes_never_changes() {
        let m = wit::Message {
            id: "m-1".into(),
            conversation_id: "c \"1\"".into(),
            sender: wit::Person {
                id: "u-1".into(),
                display_name: Some("Zoë".into()),
                email: None,
            },
            sent_at: 1_700_000_000_123,
            kind: wit::MessageKind::Edit,
            relations: vec![
                wit::Relation::EditOf("m-0".into()),
                wit::Relation::ReplyTo("m-\u{1}".into()),
            ],
            text: Some("line\nnext ✓".into()),
            html: None,
            attachments: vec![wit::Attachment {
                id: "a-1".into(),
                file_name: "f.txt".into(),
                media_type: None,
                size: Some(3),
                body: wit::AttachmentBody::Inline(b"abc".to_vec()),
            }],
            original: None,
            properties: vec![("k".into(), "v".into())],
        };
        assert_eq!(normalized_digest(&m), PINNED_DIGEST);
    }

    const PINNED_DIGEST: &str = "d61600a78bfe7aa594bacd1d314ee2cbec5dbb633ad774665042b288aeadcf8f";

    #[test]
    fn base64_reader_rejects_garbage() {
        assert!(decode(b"not*base64!").is_err());
    }
}
