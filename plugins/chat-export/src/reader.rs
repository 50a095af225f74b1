//! Reading the export line by line with byte offsets, and building pages.
//! Pure: works over any [`BufRead`], so it is tested without the host.

use crate::format::{self, Line, LineType};
use connector_sdk::{Conversation, Page, SourceError};
use std::collections::HashMap;
use std::io::{self, BufRead};

/// Longest line accepted (an inline attachment of the host's 8 MiB limit is
/// about 11 MiB of base64).
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// A page stops growing once its lines and inline attachments reach this many
/// bytes, even if it has fewer messages than the page size (it always holds at
/// least one message).
pub const MAX_PAGE_BYTES: usize = 16 << 20;

/// Why reading failed.
#[derive(Debug)]
pub enum ReadError {
    /// A line that is not valid in the format.
    Malformed {
        /// 1-based line number.
        line: u64,
        /// Byte offset of the start of the line.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// The checkpoint does not fit the export.
    Checkpoint(String),
    /// Reading failed.
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl From<ReadError> for SourceError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Malformed {
                line,
                offset,
                message,
            } => SourceError::Permanent(format!(
                "chat export line {line} (byte offset {offset}): {message}"
            )),
            ReadError::Checkpoint(message) => SourceError::Permanent(message),
            ReadError::Io(e) => SourceError::from(e),
        }
    }
}

/// One line of the input, without its line ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// 1-based line number.
    pub number: u64,
    /// Byte offset of the start of the line.
    pub offset: u64,
    /// The bytes of the line, without `\n` or `\r\n` (nor a leading UTF-8
    /// byte order mark on the first line).
    pub bytes: Vec<u8>,
}

impl RawLine {
    /// Whether the line holds only white space.
    pub fn is_blank(&self) -> bool {
        self.bytes.iter().all(u8::is_ascii_whitespace)
    }

    fn malformed(&self, message: impl Into<String>) -> ReadError {
        ReadError::Malformed {
            line: self.number,
            offset: self.offset,
            message: message.into(),
        }
    }
}

/// Splits a byte stream into lines, tracking line numbers and byte offsets.
pub struct LineReader<R> {
    inner: R,
    offset: u64,
    number: u64,
}

impl<R: BufRead> LineReader<R> {
    /// Reads `inner` from its start (offset 0, line 1).
    pub fn new(inner: R) -> Self {
        LineReader {
            inner,
            offset: 0,
            number: 0,
        }
    }

    /// Byte offset of the next unread line.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether the input is exhausted.
    pub fn at_eof(&mut self) -> io::Result<bool> {
        Ok(self.inner.fill_buf()?.is_empty())
    }

    /// The next line, or `None` at the end of the input. A last line without
    /// a line ending counts as a line.
    pub fn next_line(&mut self) -> Result<Option<RawLine>, ReadError> {
        let start = self.offset;
        let mut bytes = Vec::new();
        let mut consumed = 0u64;
        let mut ended = false;
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let (take, found) = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if bytes.len() + take > MAX_LINE_BYTES + 2 {
                return Err(ReadError::Malformed {
                    line: self.number + 1,
                    offset: start,
                    message: format!("line is longer than {MAX_LINE_BYTES} bytes"),
                });
            }
            bytes.extend_from_slice(&buf[..take]);
            self.inner.consume(take);
            consumed += take as u64;
            if found {
                ended = true;
                break;
            }
        }
        if consumed == 0 {
            return Ok(None);
        }
        self.offset += consumed;
        self.number += 1;
        if ended {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        if start == 0 && bytes.starts_with(b"\xEF\xBB\xBF") {
            bytes.drain(..3);
        }
        if bytes.len() > MAX_LINE_BYTES {
            return Err(ReadError::Malformed {
                line: self.number,
                offset: start,
                message: format!("line is longer than {MAX_LINE_BYTES} bytes"),
            });
        }
        Ok(Some(RawLine {
            number: self.number,
            offset: start,
            bytes,
        }))
    }
}

/// Encodes the checkpoint for byte `offset`: the UTF-8 JSON `{"offset":N}`.
pub fn encode_checkpoint(offset: u64) -> Vec<u8> {
    format!("{{\"offset\":{offset}}}").into_bytes()
}

/// Decodes a checkpoint made by [`encode_checkpoint`].
pub fn decode_checkpoint(bytes: &[u8]) -> Result<u64, ReadError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Checkpoint {
        offset: u64,
    }
    serde_json::from_slice::<Checkpoint>(bytes)
        .map(|c| c.offset)
        .map_err(|e| {
            ReadError::Checkpoint(format!(
                "checkpoint {:?} is not a chat-export checkpoint: {e}",
                String::from_utf8_lossy(bytes)
            ))
        })
}

struct KnownConversation {
    conversation: Conversation,
    /// Described in an earlier page of this session (in this form).
    sent: bool,
}

/// Builds pages from the lines of an export.
pub struct PageReader<R> {
    lines: LineReader<R>,
    page_size: usize,
    conversations: HashMap<String, KnownConversation>,
    deferred: HashMap<(String, String), String>,
    complete: bool,
}

impl<R: BufRead> PageReader<R> {
    /// Starts reading `input` (an export from its first byte) for a session
    /// resuming at byte `start` (0 for the first run): the lines before
    /// `start` are read to learn their conversations, their messages are not
    /// emitted again.
    pub fn new(input: R, start: u64, page_size: usize) -> Result<Self, ReadError> {
        let mut reader = PageReader {
            lines: LineReader::new(input),
            page_size: page_size.max(1),
            conversations: HashMap::new(),
            deferred: HashMap::new(),
            complete: false,
        };
        while reader.lines.offset() < start {
            let Some(line) = reader.lines.next_line()? else {
                return Err(ReadError::Checkpoint(format!(
                    "checkpoint at byte {start} is beyond the end of the export ({} bytes): \
                     the export was truncated or replaced",
                    reader.lines.offset()
                )));
            };
            if line.is_blank() {
                continue;
            }
            let kind = format::line_type(&line.bytes).map_err(|e| line.malformed(e))?;
            if kind == LineType::Conversation {
                reader.learn(&line)?;
            }
        }
        if reader.lines.offset() != start {
            return Err(ReadError::Checkpoint(format!(
                "checkpoint at byte {start} is not at the start of a line of the export: \
                 the export was changed or replaced"
            )));
        }
        Ok(reader)
    }

    /// Byte offset of the next unread line.
    pub fn offset(&self) -> u64 {
        self.lines.offset()
    }

    /// The path (relative to the export's folder) of a deferred attachment
    /// of a message emitted in this session.
    pub fn deferred_path(&self, message_id: &str, attachment_id: &str) -> Option<&str> {
        self.deferred
            .get(&(message_id.to_string(), attachment_id.to_string()))
            .map(String::as_str)
    }

    fn learn(&mut self, line: &RawLine) -> Result<Conversation, ReadError> {
        match format::parse_line(&line.bytes).map_err(|e| line.malformed(e))? {
            Line::Conversation(c) => {
                self.conversations.insert(
                    c.id.clone(),
                    KnownConversation {
                        conversation: c.clone(),
                        sent: false,
                    },
                );
                Ok(c)
            }
            Line::Message(_) => Err(line.malformed("expected a conversation line")),
        }
    }

    /// The next page: up to `page_size` messages, the conversations they use
    /// that this session has not described yet, the checkpoint after them,
    /// and `complete` once the end of the export is reached.
    pub fn next_page(&mut self) -> Result<Page, ReadError> {
        let mut conversations: Vec<Conversation> = Vec::new();
        let mut messages = Vec::new();
        let mut bytes = 0usize;
        while !self.complete && messages.len() < self.page_size && bytes < MAX_PAGE_BYTES {
            let Some(line) = self.lines.next_line()? else {
                self.complete = true;
                break;
            };
            if line.is_blank() {
                continue;
            }
            match format::parse_line(&line.bytes).map_err(|e| line.malformed(e))? {
                Line::Conversation(c) => {
                    self.conversations.insert(
                        c.id.clone(),
                        KnownConversation {
                            conversation: c,
                            sent: false,
                        },
                    );
                }
                Line::Message(parsed) => {
                    let message = parsed.message;
                    let known = self
                        .conversations
                        .get_mut(&message.conversation_id)
                        .ok_or_else(|| {
                            line.malformed(format!(
                                "message {:?} belongs to conversation {:?}, which no earlier \
                                 line describes",
                                message.id, message.conversation_id
                            ))
                        })?;
                    if !known.sent {
                        known.sent = true;
                        let c = known.conversation.clone();
                        match conversations.iter_mut().find(|p| p.id == c.id) {
                            Some(existing) => *existing = c,
                            None => conversations.push(c),
                        }
                    }
                    for (attachment_id, path) in parsed.deferred {
                        self.deferred
                            .insert((message.id.clone(), attachment_id), path);
                    }
                    bytes += line.bytes.len() + parsed.inline_bytes;
                    messages.push(message.with_original(line.bytes));
                }
            }
        }
        if !self.complete && self.lines.at_eof()? {
            self.complete = true;
        }
        Ok(Page::new(encode_checkpoint(self.lines.offset()))
            .with_conversations(conversations)
            .with_messages(messages)
            .with_complete(self.complete))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_sdk::{AttachmentBody, ConversationKind};

    fn conv(id: &str) -> String {
        format!(
            r#"{{"type":"conversation","id":"{id}","kind":"group","participants":[{{"id":"u1"}}]}}"#
        )
    }

    fn msg(id: &str, conv: &str) -> String {
        format!(
            r#"{{"type":"message","id":"{id}","conversation":"{conv}","sender":{{"id":"u1"}},"sent_at":1,"text":"{id}"}}"#
        )
    }

    fn export(lines: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(l.as_bytes());
            out.push(b'\n');
        }
        out
    }

    fn ids(page: &Page) -> Vec<&str> {
        page.messages.iter().map(|m| m.id.as_str()).collect()
    }

    fn conv_ids(page: &Page) -> Vec<&str> {
        page.conversations.iter().map(|c| c.id.as_str()).collect()
    }

    fn offset_of(page: &Page) -> u64 {
        decode_checkpoint(&page.checkpoint).unwrap()
    }

    #[test]
    fn line_reader_offsets_and_endings() {
        let data = b"\xEF\xBB\xBFone\r\ntwo\n\nthree";
        let mut r = LineReader::new(&data[..]);
        let l1 = r.next_line().unwrap().unwrap();
        assert_eq!((l1.number, l1.offset, &l1.bytes[..]), (1, 0, &b"one"[..]));
        let l2 = r.next_line().unwrap().unwrap();
        assert_eq!((l2.number, l2.offset, &l2.bytes[..]), (2, 8, &b"two"[..]));
        let l3 = r.next_line().unwrap().unwrap();
        assert!(l3.is_blank());
        assert_eq!(l3.offset, 12);
        let l4 = r.next_line().unwrap().unwrap();
        assert_eq!(
            (l4.number, l4.offset, &l4.bytes[..]),
            (4, 13, &b"three"[..])
        );
        assert_eq!(r.offset(), data.len() as u64);
        assert_eq!(r.next_line().unwrap(), None);
    }

    #[test]
    fn line_reader_small_buffer() {
        let data = b"abcdefghij\nklm\n";
        let mut r = LineReader::new(io::BufReader::with_capacity(3, &data[..]));
        assert_eq!(r.next_line().unwrap().unwrap().bytes, b"abcdefghij");
        let l = r.next_line().unwrap().unwrap();
        assert_eq!((l.offset, &l.bytes[..]), (11, &b"klm"[..]));
        assert!(r.next_line().unwrap().is_none());
    }

    #[test]
    fn pages_and_conversations() {
        let data = export(&[
            conv("a"),
            msg("1", "a"),
            msg("2", "a"),
            conv("b"),
            msg("3", "b"),
            msg("4", "a"),
            msg("5", "b"),
        ]);
        let mut r = PageReader::new(&data[..], 0, 2).unwrap();
        let p1 = r.next_page().unwrap();
        assert_eq!(ids(&p1), ["1", "2"]);
        assert_eq!(conv_ids(&p1), ["a"]);
        assert_eq!(p1.conversations[0].kind, ConversationKind::Group);
        assert!(!p1.complete);
        let p2 = r.next_page().unwrap();
        assert_eq!(ids(&p2), ["3", "4"]);
        assert_eq!(conv_ids(&p2), ["b"]);
        let p3 = r.next_page().unwrap();
        assert_eq!(ids(&p3), ["5"]);
        assert!(p3.conversations.is_empty());
        assert!(p3.complete);
        assert_eq!(offset_of(&p3), data.len() as u64);
        // Original is the raw line.
        assert_eq!(
            p3.messages[0].original.as_deref(),
            Some(msg("5", "b").as_bytes())
        );
        // After the end: empty complete pages.
        let p4 = r.next_page().unwrap();
        assert!(p4.messages.is_empty() && p4.complete);
        assert_eq!(p4.checkpoint, p3.checkpoint);
    }

    #[test]
    fn full_last_page_is_complete() {
        let data = export(&[conv("a"), msg("1", "a"), msg("2", "a")]);
        let mut r = PageReader::new(&data[..], 0, 2).unwrap();
        let p = r.next_page().unwrap();
        assert_eq!(ids(&p), ["1", "2"]);
        assert!(p.complete);
    }

    #[test]
    fn resume_redescribes_conversations() {
        let data = export(&[
            conv("a"),
            msg("1", "a"),
            conv("b"),
            msg("2", "b"),
            msg("3", "a"),
            msg("4", "b"),
        ]);
        let mut r = PageReader::new(&data[..], 0, 2).unwrap();
        let p1 = r.next_page().unwrap();
        assert_eq!(ids(&p1), ["1", "2"]);
        let resume = offset_of(&p1);

        let mut r = PageReader::new(&data[..], resume, 10).unwrap();
        let p = r.next_page().unwrap();
        assert_eq!(ids(&p), ["3", "4"]);
        assert_eq!(conv_ids(&p), ["a", "b"]);
        assert!(p.complete);
    }

    #[test]
    fn resume_at_end() {
        let data = export(&[conv("a"), msg("1", "a")]);
        let mut r = PageReader::new(&data[..], data.len() as u64, 10).unwrap();
        let p = r.next_page().unwrap();
        assert!(p.messages.is_empty() && p.conversations.is_empty() && p.complete);
        assert_eq!(offset_of(&p), data.len() as u64);
    }

    #[test]
    fn bad_checkpoints() {
        let data = export(&[conv("a"), msg("1", "a")]);
        assert!(matches!(
            PageReader::new(&data[..], 5, 10),
            Err(ReadError::Checkpoint(m)) if m.contains("not at the start of a line")
        ));
        assert!(matches!(
            PageReader::new(&data[..], data.len() as u64 + 1, 10),
            Err(ReadError::Checkpoint(m)) if m.contains("beyond the end")
        ));
        assert!(decode_checkpoint(b"12").is_err());
        assert_eq!(decode_checkpoint(&encode_checkpoint(42)).unwrap(), 42);
    }

    #[test]
    fn malformed_line_names_line_and_offset() {
        let data = export(&[conv("a"), msg("1", "a"), "{oops".to_string(), msg("2", "a")]);
        let mut r = PageReader::new(&data[..], 0, 10).unwrap();
        let err = r.next_page().unwrap_err();
        let offset = (conv("a").len() + msg("1", "a").len() + 2) as u64;
        match &err {
            ReadError::Malformed {
                line, offset: o, ..
            } => {
                assert_eq!((*line, *o), (3, offset));
            }
            other => panic!("{other:?}"),
        }
        let text = SourceError::from(err).to_string();
        assert!(text.contains("line 3") && text.contains(&format!("byte offset {offset}")));
    }

    #[test]
    fn message_before_its_conversation() {
        let data = export(&[msg("1", "a"), conv("a")]);
        let mut r = PageReader::new(&data[..], 0, 10).unwrap();
        match r.next_page() {
            Err(ReadError::Malformed {
                line: 1, message, ..
            }) => {
                assert!(message.contains("no earlier line describes"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_line_before_checkpoint_is_reported() {
        let data = export(&["nope".to_string(), conv("a"), msg("1", "a")]);
        assert!(matches!(
            PageReader::new(&data[..], data.len() as u64, 10),
            Err(ReadError::Malformed {
                line: 1,
                offset: 0,
                ..
            })
        ));
    }

    #[test]
    fn redescribed_conversation_is_sent_again() {
        let mut updated = conv("a");
        updated = updated.replace("\"group\"", "\"room\"");
        let data = export(&[
            conv("a"),
            msg("1", "a"),
            updated,
            msg("2", "a"),
            msg("3", "a"),
        ]);
        let mut r = PageReader::new(&data[..], 0, 10).unwrap();
        let p = r.next_page().unwrap();
        assert_eq!(ids(&p), ["1", "2", "3"]);
        assert_eq!(conv_ids(&p), ["a"]);
        assert_eq!(p.conversations[0].kind, ConversationKind::Room);
    }

    #[test]
    fn deferred_attachments_are_remembered() {
        let line = r#"{"type":"message","id":"m","conversation":"a","sender":{"id":"u1"},"sent_at":1,"attachments":[{"id":"x","name":"x.pdf","path":"files/x.pdf"}]}"#;
        let data = export(&[conv("a"), line.to_string()]);
        let mut r = PageReader::new(&data[..], 0, 10).unwrap();
        assert_eq!(r.deferred_path("m", "x"), None);
        let p = r.next_page().unwrap();
        assert_eq!(p.messages[0].attachments[0].body, AttachmentBody::Deferred);
        assert_eq!(r.deferred_path("m", "x"), Some("files/x.pdf"));
        assert_eq!(r.deferred_path("m", "y"), None);
    }

    #[test]
    fn sample_export_reads_completely() {
        let data = include_bytes!("../sample/chat.jsonl");
        let mut r = PageReader::new(&data[..], 0, 7).unwrap();
        let mut all = Vec::new();
        let mut described = Vec::new();
        loop {
            let p = r.next_page().unwrap();
            described.extend(p.conversations.iter().map(|c| c.id.clone()));
            all.extend(p.messages);
            if p.complete {
                break;
            }
        }
        assert!(all.len() >= 30, "{}", all.len());
        let mut unique = described.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), described.len());
        for m in &all {
            assert!(described.contains(&m.conversation_id));
        }
    }
}

#[cfg(test)]
mod resume_tests {
    use super::*;

    /// Resuming from the checkpoint of any page yields exactly the messages
    /// after it, each conversation described before its first use.
    #[test]
    fn resume_from_every_page_of_the_sample() {
        let data = include_bytes!("../sample/chat.jsonl");
        let mut all = Vec::new();
        let mut checkpoints = vec![encode_checkpoint(0)];
        let mut r = PageReader::new(&data[..], 0, 3).unwrap();
        loop {
            let p = r.next_page().unwrap();
            all.extend(p.messages.iter().map(|m| m.id.clone()));
            checkpoints.push(p.checkpoint.clone());
            if p.complete {
                break;
            }
        }
        for (i, checkpoint) in checkpoints.iter().enumerate() {
            let start = decode_checkpoint(checkpoint).unwrap();
            let mut r = PageReader::new(&data[..], start, 5).unwrap();
            let mut rest = Vec::new();
            let mut described = std::collections::HashSet::new();
            loop {
                let p = r.next_page().unwrap();
                for c in &p.conversations {
                    assert!(described.insert(c.id.clone()));
                }
                for m in &p.messages {
                    assert!(described.contains(&m.conversation_id));
                    rest.push(m.id.clone());
                }
                if p.complete {
                    break;
                }
            }
            assert_eq!(rest, all[(i * 3).min(all.len())..], "resume at page {i}");
        }
    }

    #[test]
    fn overlong_line_is_rejected() {
        let mut data = vec![b'x'; MAX_LINE_BYTES + 10];
        data.push(b'\n');
        let mut r = LineReader::new(&data[..]);
        assert!(matches!(
            r.next_line(),
            Err(ReadError::Malformed { line: 1, offset: 0, message }) if message.contains("longer")
        ));
    }

    proptest::proptest! {
        #[test]
        fn any_checkpoint_offset_round_trips(offset in proptest::num::u64::ANY) {
            proptest::prop_assert_eq!(decode_checkpoint(&encode_checkpoint(offset)).ok(), Some(offset));
        }
    }
}
