//! Transcripts as a Maildir holds them, read back with two independent
//! parsers, and the RFC 5322 checks every email of the tests passes.

use std::path::Path;

use mail_parser::{MessageParser, MimeHeaders};

/// One transcript email in one mailbox.
#[derive(Debug, Clone)]
pub struct StoredTranscript {
    /// The mailbox holding it.
    pub mailbox: String,
    /// Its conversation (`X-Connector-Conversation-Id`).
    pub conversation: String,
    /// Its day (`X-Connector-Property-Transcript-Day`).
    pub day: String,
    /// 0 for the day's transcript, then each addendum.
    pub part: u32,
    /// The source ids of its messages, in the order it shows them.
    pub items: Vec<String>,
    /// Its text body.
    pub body: String,
    /// Its Message-ID.
    pub message_id: String,
    /// The names of its attachments.
    pub attachments: Vec<String>,
    /// The file's bytes.
    pub raw: Vec<u8>,
}

/// Every transcript in `folder_on_disk` of every mailbox under `root`,
/// each checked with [`check_rfc5322`].
pub fn read_transcripts(root: &Path, folder_on_disk: &str) -> Vec<StoredTranscript> {
    let mut out = Vec::new();
    for mailbox in crate::mailboxes(root) {
        for stored in crate::maildir_emails(root, &mailbox, folder_on_disk) {
            check_rfc5322(&stored.bytes);
            let parsed = MessageParser::default()
                .parse(&stored.bytes)
                .expect("a transcript parses");
            let header = |name: &str| {
                parsed
                    .header_raw(name)
                    .unwrap_or_else(|| panic!("a transcript has {name}"))
                    .trim()
                    .to_string()
            };
            let body = parsed.body_text(0).expect("a text body").into_owned();
            let items = body
                .lines()
                .filter(|l| l.starts_with('[') && l.ends_with("):"))
                .filter_map(|l| {
                    let at = l.rfind("(message ")?;
                    Some(l[at + "(message ".len()..l.len() - 2].to_string())
                })
                .collect();
            out.push(StoredTranscript {
                mailbox: mailbox.clone(),
                conversation: header("X-Connector-Conversation-Id"),
                day: header("X-Connector-Property-Transcript-Day"),
                part: header("X-Connector-Property-Transcript-Part")
                    .parse()
                    .expect("a part number"),
                items,
                body,
                message_id: parsed.message_id().expect("a Message-ID").to_string(),
                attachments: parsed
                    .attachments()
                    .map(|a| a.attachment_name().unwrap_or_default().to_string())
                    .collect(),
                raw: stored.bytes,
            });
        }
    }
    out
}

/// Checks `raw` is an RFC 5322 message without defects: every line ends in
/// CRLF and has at most 998 octets, the header is ASCII, and `mailparse`
/// reads every part's header and body.
pub fn check_rfc5322(raw: &[u8]) {
    let text = String::from_utf8_lossy(raw);
    let lines: Vec<&[u8]> = raw.split(|&b| b == b'\n').collect();
    for (n, line) in lines.iter().enumerate() {
        if n + 1 < lines.len() {
            assert!(line.ends_with(b"\r"), "line {n} ends in a bare LF:\n{text}");
        }
        assert!(line.len() <= 999, "line {n} is longer than 998 octets");
        assert!(
            !line[..line.len().saturating_sub(1)].contains(&b'\r'),
            "bare CR in line {n}"
        );
    }
    let header_end = text.find("\r\n\r\n").expect("a header and a body");
    assert!(
        text[..header_end].is_ascii(),
        "a non-ASCII header:\n{}",
        &text[..header_end]
    );
    let parsed = mailparse::parse_mail(raw).expect("mailparse reads the email");
    fn walk(part: &mailparse::ParsedMail<'_>) {
        for header in &part.headers {
            header.get_value();
        }
        part.get_body_raw().expect("mailparse decodes every body");
        assert!(!part.ctype.mimetype.is_empty());
        for sub in &part.subparts {
            walk(sub);
        }
    }
    walk(&parsed);
    for name in ["From", "Date", "Message-ID", "Subject"] {
        assert!(
            mailparse::MailHeaderMap::get_first_value(parsed.headers.as_slice(), name).is_some(),
            "no {name}"
        );
    }
}
