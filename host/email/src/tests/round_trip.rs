//! Round-trip properties: any message the model allows becomes an email
//! that two independent parsers (`mail-parser` and `mailparse`) read back
//! to the same sender, participants, time, texts and attachments.

use mailparse::MailHeaderMap;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use super::*;

/// Any string, now and then a long one.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => ".{0,64}",
        1 => (".{1,8}", 1usize..40_000).prop_map(|(s, n)| s.repeat(n)),
    ]
}

fn any_person() -> impl Strategy<Value = Person> {
    (
        ".{0,24}",
        proptest::option::of(".{0,40}"),
        proptest::option::of(prop_oneof![
            "[a-z0-9._%+-]{1,12}@[a-z0-9-]{1,10}\\.[a-z]{2,4}",
            ".{0,24}",
        ]),
    )
        .prop_map(|(id, display_name, email)| Person {
            id,
            display_name,
            email,
        })
}

fn any_attachment() -> impl Strategy<Value = Attachment> {
    (
        ".{0,12}",
        ".{0,40}",
        proptest::option::of(prop_oneof![
            Just("text/plain".to_string()),
            Just("image/png".to_string()),
            ".{0,20}",
        ]),
        prop_oneof![
            8 => proptest::collection::vec(any::<u8>(), 0..512),
            1 => (any::<u8>(), 100_000usize..400_000).prop_map(|(b, n)| vec![b; n]),
        ],
    )
        .prop_map(|(id, file_name, media_type, bytes)| Attachment {
            id,
            file_name,
            media_type,
            data: AttachmentData::Bytes(bytes),
        })
}

fn any_message() -> impl Strategy<Value = (Message, Conversation)> {
    (
        "[^\\s]{1,24}",
        any_person(),
        // Years 1 to 9999: what the Date header can say.
        -62_135_596_800_000i64..253_402_300_799_000,
        proptest::option::of(any_text()),
        proptest::option::of(any_text()),
        proptest::collection::vec(any_attachment(), 0..12),
        proptest::collection::vec(any_person(), 0..6),
        proptest::option::of(".{0,40}"),
    )
        .prop_map(
            |(id, sender, sent_at, text, html, attachments, participants, name)| {
                let conversation = Conversation {
                    id: "c".into(),
                    kind: ConversationKind::Group,
                    name,
                    participants,
                };
                let message = Message {
                    id,
                    conversation_id: "c".into(),
                    sender,
                    sent_at,
                    kind: MessageKind::Chat,
                    relations: Vec::new(),
                    text,
                    html,
                    attachments,
                    source_sha256: "ab".repeat(32),
                    properties: Vec::new(),
                };
                (message, conversation)
            },
        )
}

/// Line breaks as the email writes them: CRLF, whatever the source used.
fn with_crlf(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .replace('\n', "\r\n")
}

/// The name and address a person is written with in `From` and `To`.
fn expected_mailbox(c: &EmailConverter, person: &Person) -> (Option<String>, String) {
    (
        display_name(person).map(str::to_string),
        c.address_of(person),
    )
}

/// The participants once each (by id, then by address), in order.
fn expected_to(c: &EmailConverter, conv: &Conversation) -> Vec<(Option<String>, String)> {
    let mut ids = std::collections::HashSet::new();
    let mut seen = std::collections::HashSet::new();
    conv.participants
        .iter()
        .filter(|p| ids.insert(p.id.clone()))
        .map(|p| expected_mailbox(c, p))
        .filter(|(_, address)| seen.insert(address.to_ascii_lowercase()))
        .collect()
}

fn expected_file_name(a: &Attachment) -> String {
    if a.file_name.trim().is_empty() {
        format!("attachment-{}", a.id)
    } else {
        a.file_name.clone()
    }
}

fn unquote_pairs(quoted: &str) -> String {
    let mut out = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or(c)
        } else {
            c
        });
    }
    out
}

fn attachment_bytes(a: &Attachment) -> &[u8] {
    match &a.data {
        AttachmentData::Bytes(bytes) => bytes,
        AttachmentData::File(_) => unreachable!("generated attachments are in memory"),
    }
}

/// What `mailparse` reads: (name, address) pairs of an address header.
fn mailparse_addresses(
    parsed: &mailparse::ParsedMail<'_>,
    name: &str,
) -> Vec<(Option<String>, String)> {
    let Some(header) = parsed
        .headers
        .iter()
        .find(|h| h.get_key_ref().eq_ignore_ascii_case(name))
    else {
        return Vec::new();
    };
    mailparse::addrparse_header(header)
        .expect("the address header parses")
        .iter()
        .flat_map(|addr| match addr {
            mailparse::MailAddr::Single(s) => vec![s.clone()],
            mailparse::MailAddr::Group(g) => g.addrs.clone(),
        })
        .map(|s| (s.display_name, s.addr))
        .collect()
}

/// [`expected_mailbox`] as `mailparse` reads it: it trims whitespace
/// around a display name.
fn trimmed(list: Vec<(Option<String>, String)>) -> Vec<(Option<String>, String)> {
    list.into_iter()
        .map(|(name, address)| (name.map(|n| n.trim().to_string()), address))
        .collect()
}

/// Every leaf part of `mailparse`'s tree, in order.
fn leaves<'a>(part: &'a mailparse::ParsedMail<'a>, out: &mut Vec<&'a mailparse::ParsedMail<'a>>) {
    if part.subparts.is_empty() {
        out.push(part);
    }
    for sub in &part.subparts {
        leaves(sub, out);
    }
}

fn check_mail_parser(c: &EmailConverter, msg: &Message, conv: &Conversation, bytes: &[u8]) {
    let parsed = parser().parse(bytes).expect("mail-parser reads the email");
    assert_eq!(parsed.message_id(), Some(c.message_id(&msg.id).as_str()));
    assert_eq!(
        addresses(parsed.from()),
        vec![expected_mailbox(c, &msg.sender)]
    );
    assert_eq!(addresses(parsed.to()), expected_to(c, conv));
    // mail-parser reads a year below 1000 ("0099") by the obsolete two-
    // and three-digit rules of RFC 5322 4.3 (as 1999); the header is right.
    const YEAR_1000: i64 = -30_610_224_000_000;
    if msg.sent_at >= YEAR_1000 {
        assert_eq!(
            parsed.date().expect("a Date header").to_timestamp(),
            msg.sent_at.div_euclid(1000)
        );
    }
    let text = msg.text.as_deref().filter(|t| !t.is_empty());
    let html = msg.html.as_deref().filter(|t| !t.is_empty());
    if let Some(text) = text {
        assert_eq!(
            parsed.body_text(0).as_deref(),
            Some(with_crlf(text).as_str())
        );
    }
    if let Some(html) = html {
        assert_eq!(
            parsed.body_html(0).as_deref(),
            Some(with_crlf(html).as_str())
        );
    }
    let parts: Vec<_> = parsed.attachments().collect();
    assert_eq!(parts.len(), msg.attachments.len());
    for (part, a) in parts.iter().zip(&msg.attachments) {
        assert_eq!(part.attachment_name(), Some(expected_file_name(a).as_str()));
        // mail-parser hands out text/* parts as decoded text; mailparse
        // below checks their exact bytes.
        let is_text = a
            .media_type
            .as_deref()
            .and_then(usable_media_type)
            .is_some_and(|t| t.starts_with("text/"));
        match std::str::from_utf8(attachment_bytes(a)) {
            Err(_) if is_text => assert_eq!(
                part.contents(),
                String::from_utf8_lossy(attachment_bytes(a)).as_bytes()
            ),
            _ => assert_eq!(part.contents(), attachment_bytes(a)),
        }
    }
}

fn check_mailparse(c: &EmailConverter, msg: &Message, conv: &Conversation, bytes: &[u8]) {
    let parsed = mailparse::parse_mail(bytes).expect("mailparse reads the email");
    let header = |name: &str| parsed.headers.get_first_value(name);
    assert_eq!(
        header("Message-ID"),
        Some(format!("<{}>", c.message_id(&msg.id)))
    );
    assert_eq!(
        trimmed(mailparse_addresses(&parsed, "From")),
        trimmed(vec![expected_mailbox(c, &msg.sender)])
    );
    assert_eq!(
        trimmed(mailparse_addresses(&parsed, "To")),
        trimmed(expected_to(c, conv))
    );
    let date = header("Date").expect("a Date header");
    // mailparse reads years from 1970 on only.
    if msg.sent_at >= 0 {
        assert_eq!(
            mailparse::dateparse(&date).expect("the date parses"),
            msg.sent_at.div_euclid(1000)
        );
    }
    let mut parts = Vec::new();
    leaves(&parsed, &mut parts);
    let (files, bodies): (Vec<_>, Vec<_>) = parts.into_iter().partition(|p| {
        p.get_content_disposition().disposition == mailparse::DispositionType::Attachment
    });
    let body_of = |mime: &str| {
        bodies
            .iter()
            .find(|p| p.ctype.mimetype == mime)
            .map(|p| p.get_body().expect("the body decodes"))
    };
    // mailparse drops a byte-order mark that opens a body when it decodes it.
    let bom_dropped = |text: &str| with_crlf(text).trim_start_matches('\u{feff}').to_string();
    if let Some(text) = msg.text.as_deref().filter(|t| !t.is_empty()) {
        assert_eq!(
            body_of("text/plain").as_deref().map(bom_dropped),
            Some(bom_dropped(text))
        );
    }
    if let Some(html) = msg.html.as_deref().filter(|t| !t.is_empty()) {
        assert_eq!(
            body_of("text/html").as_deref().map(bom_dropped),
            Some(bom_dropped(html))
        );
    }
    assert_eq!(files.len(), msg.attachments.len());
    for (part, a) in files.iter().zip(&msg.attachments) {
        assert_eq!(
            part.get_body_raw().expect("the attachment decodes"),
            attachment_bytes(a)
        );
        // mailparse splits parameters at every ';', quoted or not; mail-parser
        // above reads such names.
        if expected_file_name(a).contains(';') {
            continue;
        }
        let disposition = part.get_content_disposition();
        // mailparse hands a plain quoted parameter back with its
        // quoted-pairs (RFC 5322 3.2.1) still escaped; an encoded one
        // (RFC 2231) it decodes whole.
        let raw = part
            .headers
            .get_first_header("Content-Disposition")
            .map(|h| String::from_utf8_lossy(h.get_value_raw()).into_owned())
            .unwrap_or_default();
        let encoded = raw.contains("filename*");
        assert_eq!(
            disposition.params.get("filename").map(|n| if encoded {
                n.clone()
            } else {
                unquote_pairs(n)
            }),
            Some(expected_file_name(a))
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_message_reads_back_the_same_with_two_parsers((msg, conv) in any_message()) {
        let spool = tempfile::tempdir().unwrap();
        // Small spill threshold: long bodies and files take the spooled path.
        let c = converter().with_spool(spool.path(), 256 * 1024);
        let email = c.convert(&msg, &conv).expect("the message converts");
        let bytes = email.bytes().expect("the email reads back");
        check_mail_parser(&c, &msg, &conv, &bytes);
        check_mailparse(&c, &msg, &conv, &bytes);
    }
}

#[test]
fn a_file_name_with_quotes_and_backslashes_reads_back_with_both_parsers() {
    let (mut msg, conv) = any_message()
        .new_tree(&mut proptest::test_runner::TestRunner::deterministic())
        .unwrap()
        .current();
    msg.attachments = ["say \"hi\".txt", "back\\slash", "", "\\\""]
        .into_iter()
        .enumerate()
        .map(|(i, name)| Attachment {
            id: format!("{i}\""),
            file_name: name.to_string(),
            media_type: Some("application/octet-stream".into()),
            data: AttachmentData::Bytes(vec![i as u8; 3]),
        })
        .collect();
    let c = converter();
    let email = c.convert(&msg, &conv).unwrap();
    let bytes = email.bytes().unwrap();
    check_mail_parser(&c, &msg, &conv, &bytes);
    check_mailparse(&c, &msg, &conv, &bytes);
}
