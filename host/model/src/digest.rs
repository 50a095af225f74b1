//! SHA-256 as the host records it: lower-case hex, computed while bytes
//! stream past ([`HashingWriter`]), and the source digest of a message that
//! came without its original bytes ([`normalized_digest`]).

use std::io::{self, Write};

use sha2::{Digest, Sha256};

use crate::Message;

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Writes through to another writer, hashing (SHA-256) and counting what
/// passes.
pub struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    /// A writer in front of `inner` (`io::sink()` to only hash).
    pub fn new(inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            hash: Sha256::new(),
            len: 0,
        }
    }

    /// The inner writer, the lower-case hex SHA-256 and the byte count of
    /// everything written.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex(&self.hash.finalize()), self.len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// SHA-256 of a canonical JSON rendering of the message, for sources that
/// give no original bytes: compact JSON with the keys in alphabetical
/// order, streamed into the hash. It covers what the plugin gave, before
/// the host drops blank names and addresses, and attachments by id and
/// file name only. The rendering (kinds and relations as `MessageKind::Edit`
/// and `Relation::EditOf("…")`) is frozen: recorded digests must not change.
pub fn normalized_digest(m: &Message) -> String {
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
        kind: format!("MessageKind::{:?}", m.kind),
        properties: &m.properties,
        relations: m
            .relations
            .iter()
            .map(|r| format!("Relation::{r:?}"))
            .collect(),
        sender: (&m.sender.id, &m.sender.display_name, &m.sender.email),
        sent_at: m.sent_at,
        text: &m.text,
    };
    let mut hash = HashingWriter::new(io::sink());
    serde_json::to_writer(&mut hash, &canonical).expect("writing to a hash cannot fail");
    hash.finish().1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Attachment, AttachmentData, MessageKind, Person, Relation};

    #[test]
    fn the_digest_of_a_message_without_original_bytes_never_changes() {
        let m = Message {
            id: "m-1".into(),
            conversation_id: "c \"1\"".into(),
            sender: Person {
                id: "u-1".into(),
                display_name: Some("Zoë".into()),
                email: None,
            },
            sent_at: 1_700_000_000_123,
            kind: MessageKind::Edit,
            relations: vec![
                Relation::EditOf("m-0".into()),
                Relation::ReplyTo("m-\u{1}".into()),
            ],
            text: Some("line\nnext ✓".into()),
            html: None,
            attachments: vec![Attachment {
                id: "a-1".into(),
                file_name: "f.txt".into(),
                media_type: None,
                data: AttachmentData::Bytes(b"abc".to_vec()),
            }],
            source_sha256: String::new(),
            properties: vec![("k".into(), "v".into())],
        };
        assert_eq!(normalized_digest(&m), PINNED_DIGEST);
    }

    /// Computed by the host before the digest moved onto the model.
    const PINNED_DIGEST: &str = "d61600a78bfe7aa594bacd1d314ee2cbec5dbb633ad774665042b288aeadcf8f";
}
