mod round_trip;

use std::path::PathBuf;

use mail_parser::{HeaderName, HeaderValue, MessageParser, MimeHeaders};

use super::*;
use connector_model::{
    Attachment, AttachmentData, Conversation, ConversationKind, Message, Person,
};

fn person(id: &str, name: Option<&str>, email: Option<&str>) -> Person {
    Person {
        id: id.to_string(),
        display_name: name.map(str::to_string),
        email: email.map(str::to_string),
    }
}

fn alice() -> Person {
    person("u-alice", Some("Alice Martin"), Some("alice@example.com"))
}

fn bob() -> Person {
    person("u-bob", Some("Bob Stone"), Some("bob@example.com"))
}

fn carol() -> Person {
    person("u-carol", Some("Carol Wu"), None)
}

fn room() -> Conversation {
    Conversation {
        id: "room-1".to_string(),
        kind: ConversationKind::Room,
        name: Some("Trading desk".to_string()),
        participants: vec![alice(), bob()],
    }
}

fn chat(id: &str, text: &str) -> Message {
    Message {
        id: id.to_string(),
        conversation_id: "room-1".to_string(),
        sender: alice(),
        sent_at: 1_700_000_000_123,
        kind: MessageKind::Chat,
        relations: Vec::new(),
        text: Some(text.to_string()),
        html: None,
        attachments: Vec::new(),
        source_sha256: "ab".repeat(32),
        properties: Vec::new(),
    }
}

fn converter() -> EmailConverter {
    EmailConverter::new("symphony", "Symphony")
}

fn parser() -> MessageParser {
    MessageParser::new()
        .with_mime_headers()
        .with_date_headers()
        .with_address_headers()
        .with_message_ids()
        .header_text(HeaderName::Subject)
        .default_header_text()
}

fn parse(email: &Email) -> mail_parser::Message<'_> {
    parser()
        .parse(email.in_memory().expect("a small email is in memory"))
        .expect("the email parses")
}

/// Every value of an unstructured header, decoded.
fn values(parsed: &mail_parser::Message<'_>, name: &str) -> Vec<String> {
    parsed
        .header_values(name)
        .map(|v| match v {
            HeaderValue::Text(t) => t.to_string(),
            HeaderValue::Empty => String::new(),
            other => panic!("{name} is {other:?}"),
        })
        .collect()
}

fn value(parsed: &mail_parser::Message<'_>, name: &str) -> String {
    let all = values(parsed, name);
    assert_eq!(all.len(), 1, "{name}: {all:?}");
    all.into_iter().next().unwrap()
}

fn addresses(address: Option<&mail_parser::Address<'_>>) -> Vec<(Option<String>, String)> {
    address
        .map(|a| {
            a.iter()
                .map(|addr| {
                    (
                        addr.name().map(str::to_string),
                        addr.address().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(list) => list.iter().map(|t| t.to_string()).collect(),
        HeaderValue::Empty => Vec::new(),
        other => panic!("not ids: {other:?}"),
    }
}

fn raw_text(email: &Email) -> &str {
    std::str::from_utf8(email.in_memory().expect("a small email is in memory"))
        .expect("the email is ASCII")
}

#[test]
fn message_id_is_stable_hash_of_source_and_message_id() {
    let c = converter();
    assert_eq!(
        c.message_id("msg-1"),
        "5c4fdca2493392fa36bc55d5ad7e6df6@symphony.connector.invalid"
    );
    assert_eq!(c.message_id("msg-1"), c.message_id("msg-1"));
    assert_ne!(c.message_id("msg-1"), c.message_id("msg-2"));
    assert_ne!(
        c.message_id("msg-1"),
        EmailConverter::new("teams", "Teams").message_id("msg-1")
    );
    let odd = EmailConverter::new("My Source_2", "x").message_id("m");
    assert!(odd.ends_with("@my-source-2.connector.invalid"), "{odd}");
}

#[test]
fn every_header_round_trips_through_mail_parser() {
    let mut msg = chat("msg-1", "Hello desk");
    msg.relations = vec![Relation::ReplyTo("msg-0".to_string())];
    msg.properties = vec![
        ("Stream Type".to_string(), "ROOM".to_string()),
        ("external".to_string(), "true".to_string()),
    ];
    let conv = room();
    let c = converter();
    let email = c.convert(&msg, &conv).unwrap();
    let parsed = parse(&email);

    assert_eq!(email.message_id, c.message_id("msg-1"));
    assert_eq!(email.sent_at, msg.sent_at);
    assert_eq!(
        email.sha256,
        connector_model::digest::sha256_hex(&email.bytes().unwrap()[..])
    );
    assert_eq!(parsed.message_id(), Some(email.message_id.as_str()));
    assert_eq!(
        addresses(parsed.from()),
        vec![(
            Some("Alice Martin".to_string()),
            "alice@example.com".to_string()
        )]
    );
    assert_eq!(
        addresses(parsed.to()),
        vec![
            (
                Some("Alice Martin".to_string()),
                "alice@example.com".to_string()
            ),
            (Some("Bob Stone".to_string()), "bob@example.com".to_string()),
        ]
    );
    assert_eq!(parsed.subject(), Some("Trading desk"));
    assert_eq!(parsed.date().unwrap().to_timestamp(), 1_700_000_000);
    assert_eq!(ids(parsed.in_reply_to()), vec![c.message_id("msg-0")]);
    assert_eq!(ids(parsed.references()), vec![c.message_id("msg-0")]);
    assert_eq!(value(&parsed, "X-Connector-Source"), "symphony");
    assert_eq!(value(&parsed, "X-Connector-Source-Name"), "Symphony");
    assert_eq!(value(&parsed, "X-Connector-Conversation-Id"), "room-1");
    assert_eq!(value(&parsed, "X-Connector-Conversation-Kind"), "room");
    assert_eq!(value(&parsed, "X-Connector-Message-Id"), "msg-1");
    assert_eq!(value(&parsed, "X-Connector-Message-Kind"), "chat");
    assert_eq!(value(&parsed, "X-Connector-Sender-Id"), "u-alice");
    assert_eq!(value(&parsed, "X-Connector-Source-SHA256"), "ab".repeat(32));
    assert_eq!(value(&parsed, "X-Connector-Reply-To"), "msg-0");
    assert_eq!(value(&parsed, "X-Connector-Property-Stream-Type"), "ROOM");
    assert_eq!(value(&parsed, "X-Connector-Property-external"), "true");
    assert_eq!(
        parsed.body_text(0).unwrap(),
        "In reply to an earlier message\r\n\r\nHello desk"
    );
    assert_eq!(parsed.text_body_count(), 1);
    assert_eq!(parsed.attachment_count(), 0);
    assert!(raw_text(&email).contains("\r\nMIME-Version: 1.0\r\n"));
}

#[test]
fn conversion_is_deterministic() {
    let mut msg = chat("msg-1", "same");
    msg.html = Some("<b>same</b>".to_string());
    msg.attachments.push(Attachment {
        id: "a1".to_string(),
        file_name: "x.bin".to_string(),
        media_type: None,
        data: AttachmentData::Bytes(vec![1, 2, 3]),
    });
    let first = converter().convert(&msg, &room()).unwrap();
    let second = converter().convert(&msg, &room()).unwrap();
    assert_eq!(first, second);
}

#[test]
fn sender_without_email_gets_a_valid_placeholder_address() {
    let mut msg = chat("m", "hi");
    msg.sender = carol();
    let mut conv = room();
    conv.participants.push(carol());
    conv.participants
        .push(person("Weird Id/ÄÖ@x", Some("Dora"), Some("not an email")));
    let email = converter().convert(&msg, &conv).unwrap();
    let parsed = parse(&email);
    assert_eq!(
        addresses(parsed.from()),
        vec![(
            Some("Carol Wu".to_string()),
            "u-carol@symphony.invalid".to_string()
        )]
    );
    let to = addresses(parsed.to());
    assert_eq!(to.len(), 4);
    assert_eq!(to[2].1, "u-carol@symphony.invalid");
    let weird = &to[3].1;
    assert!(is_plain_address(weird), "{weird}");
    assert!(weird.starts_with("weird_id_"), "{weird}");
    assert!(weird.ends_with("@symphony.invalid"), "{weird}");
    assert_eq!(weird, &converter().address_of(&conv.participants[3]));
}

#[test]
fn placeholder_local_parts_keep_distinct_ids_distinct() {
    assert_eq!(placeholder_local_part("u-1.x_y"), "u-1.x_y");
    let a = placeholder_local_part("a b");
    let b = placeholder_local_part("a_b");
    let c = placeholder_local_part("A b");
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert_eq!(b, "a_b");
    let long = placeholder_local_part(&"x".repeat(500));
    assert!(long.len() <= 64, "{long}");
    let empty = placeholder_local_part("");
    assert_eq!(empty.len(), 8);
    for id in ["..", ".a.", "日本", "a@b", "\"q\""] {
        let local = placeholder_local_part(id);
        assert!(
            is_plain_address(&format!("{local}@x.invalid")),
            "{id} -> {local}"
        );
    }
}

#[test]
fn recipients_are_participants_once_and_sender_only_when_a_participant() {
    let mut conv = room();
    conv.participants = vec![bob(), bob(), carol()];
    let mut twin = bob();
    twin.id = "u-bob-2".to_string();
    conv.participants.push(twin);
    let email = converter().convert(&chat("m", "x"), &conv).unwrap();
    let to = addresses(parse(&email).to());
    let addrs: Vec<&str> = to.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(addrs, ["bob@example.com", "u-carol@symphony.invalid"]);
}

#[test]
fn conversation_without_participants_has_no_to_header() {
    let mut conv = room();
    conv.participants.clear();
    let email = converter().convert(&chat("m", "x"), &conv).unwrap();
    assert!(parse(&email).to().is_none());
}

#[test]
fn unnamed_conversation_subject_lists_participants() {
    let mut conv = room();
    conv.name = None;
    conv.kind = ConversationKind::Group;
    conv.participants = vec![alice(), bob(), carol()];
    let email = converter().convert(&chat("m", "x"), &conv).unwrap();
    assert_eq!(
        parse(&email).subject(),
        Some("Conversation with Alice Martin, Bob Stone, Carol Wu")
    );

    conv.participants
        .push(person("u-d", None, Some("d@example.com")));
    conv.participants.push(person("u-e", None, None));
    let email = converter().convert(&chat("m", "x"), &conv).unwrap();
    assert_eq!(
        parse(&email).subject(),
        Some("Conversation with Alice Martin, Bob Stone, Carol Wu and 2 others")
    );

    conv.participants.truncate(4);
    let email = converter().convert(&chat("m", "x"), &conv).unwrap();
    assert_eq!(
        parse(&email).subject(),
        Some("Conversation with Alice Martin, Bob Stone, Carol Wu and 1 other")
    );

    conv.participants = vec![person("u-e", None, None)];
    let email = converter().convert(&chat("m", "x"), &conv).unwrap();
    assert_eq!(parse(&email).subject(), Some("Conversation with u-e"));
}

#[test]
fn subject_prefix_names_edits_deletions_joins_and_leaves() {
    for (kind, subject) in [
        (MessageKind::Edit, "Edited: Trading desk"),
        (MessageKind::Deletion, "Deleted: Trading desk"),
        (MessageKind::MemberJoined, "Member joined: Trading desk"),
        (MessageKind::MemberLeft, "Member left: Trading desk"),
        (MessageKind::System, "Trading desk"),
    ] {
        let mut msg = chat("m", "x");
        msg.kind = kind;
        let email = converter().convert(&msg, &room()).unwrap();
        let parsed = parse(&email);
        assert_eq!(parsed.subject(), Some(subject));
        assert_eq!(value(&parsed, "X-Connector-Message-Kind"), kind.as_str());
    }
}

#[test]
fn edits_forwards_and_deletions_are_referenced_and_named_in_the_body_without_source_ids() {
    let c = converter();
    let mut msg = chat("m-9", "corrected text");
    msg.kind = MessageKind::Edit;
    msg.relations = vec![
        Relation::EditOf("m-1".to_string()),
        Relation::ForwardOf("m-2".to_string()),
        Relation::Deletes("m-3".to_string()),
        Relation::EditOf("m-1".to_string()),
    ];
    let email = c.convert(&msg, &room()).unwrap();
    let parsed = parse(&email);
    assert!(parsed.in_reply_to().is_empty());
    assert_eq!(
        ids(parsed.references()),
        vec![
            c.message_id("m-1"),
            c.message_id("m-2"),
            c.message_id("m-3")
        ]
    );
    assert_eq!(values(&parsed, "X-Connector-Edit-Of"), ["m-1", "m-1"]);
    assert_eq!(values(&parsed, "X-Connector-Forward-Of"), ["m-2"]);
    assert_eq!(values(&parsed, "X-Connector-Deletes"), ["m-3"]);
    assert_eq!(
        parsed.body_text(0).unwrap(),
        "Edit of an earlier message\r\nForwarded from an earlier message\r\nDeletes an earlier message\r\nEdit of an earlier message\r\n\r\ncorrected text"
    );
}

#[test]
fn events_without_a_body_are_described() {
    let c = converter();
    let mut joined = chat("j", "");
    joined.text = None;
    joined.kind = MessageKind::MemberJoined;
    let parsed_text = |m: &Message| {
        let email = c.convert(m, &room()).unwrap();
        parse(&email).body_text(0).unwrap().to_string()
    };
    assert_eq!(parsed_text(&joined), "Alice Martin joined the conversation");
    joined.kind = MessageKind::MemberLeft;
    assert_eq!(parsed_text(&joined), "Alice Martin left the conversation");

    let mut deleted = chat("d", "");
    deleted.kind = MessageKind::Deletion;
    deleted.relations = vec![Relation::Deletes("m-1".to_string())];
    assert_eq!(
        parsed_text(&deleted),
        "Deletes an earlier message\r\n\r\nThis message was deleted"
    );
}

#[test]
fn a_reply_quotes_the_sender_time_and_first_line_of_a_known_message_not_its_source_id() {
    let c = converter();
    let mut parent = chat("post:t:town-square:1", "Price is 101\nsecond line");
    parent.sent_at = 1_767_607_200_000; // 2026-01-05 10:00:00 UTC
    let mut reply = chat("post:t:town-square:2", "Agreed");
    reply.html = Some("<p>Agreed</p>".into());
    reply.relations = vec![Relation::ReplyTo(parent.id.clone())];
    let known = |id: &str| (id == parent.id).then(|| Quote::of(&parent));
    let email = c.convert_quoting(&reply, &room(), &known).unwrap();
    let parsed = parse(&email);
    assert_eq!(
        parsed.body_text(0).unwrap(),
        "On 2026-01-05 at 10:00:00 UTC, Alice Martin wrote:\r\n> Price is 101\r\n\r\nAgreed"
    );
    assert_eq!(
        parsed.body_html(0).unwrap(),
        "<p>On 2026-01-05 at 10:00:00 UTC, Alice Martin wrote:</p>\r\n<blockquote>Price is 101</blockquote>\r\n<p>Agreed</p>"
    );
    assert_eq!(value(&parsed, "X-Connector-Reply-To"), parent.id);
    assert_eq!(ids(parsed.in_reply_to()), vec![c.message_id(&parent.id)]);
    let again = c.convert_quoting(&reply, &room(), &known).unwrap();
    assert_eq!(
        again.sha256, email.sha256,
        "the same reply makes the same email"
    );

    let unknown = c.convert(&reply, &room()).unwrap();
    let text = parse(&unknown).body_text(0).unwrap().to_string();
    assert_eq!(text, "In reply to an earlier message\r\n\r\nAgreed");
    assert!(!text.contains("town-square"), "{text}");
}

#[test]
fn text_and_html_become_multipart_alternative() {
    let mut msg = chat("m", "plain *text*");
    msg.html = Some("<p>html <b>text</b></p>".to_string());
    let email = converter().convert(&msg, &room()).unwrap();
    let parsed = parse(&email);
    let root = parsed.root_part();
    assert_eq!(
        root.content_type().unwrap().subtype(),
        Some("alternative"),
        "{}",
        raw_text(&email)
    );
    assert_eq!(parsed.body_text(0).unwrap(), "plain *text*");
    assert_eq!(parsed.body_html(0).unwrap(), "<p>html <b>text</b></p>");
}

#[test]
fn html_only_message_keeps_html_and_links_relations() {
    let c = converter();
    let mut msg = chat("m", "");
    msg.text = None;
    msg.html = Some("<p>only html</p>".to_string());
    let email = c.convert(&msg, &room()).unwrap();
    let parsed = parse(&email);
    assert_eq!(parsed.root_part().content_type().unwrap().ctype(), "text");
    assert_eq!(parsed.body_html(0).unwrap(), "<p>only html</p>");

    msg.relations = vec![Relation::ReplyTo("m<0>".to_string())];
    let email = c.convert(&msg, &room()).unwrap();
    assert_eq!(
        parse(&email).body_html(0).unwrap(),
        "<p>In reply to an earlier message</p>\r\n<p>only html</p>"
    );
}

#[test]
fn non_ascii_and_emoji_header_values_round_trip_exactly() {
    let mut conv = room();
    conv.name = Some("Équipe 東京 🚀 — «déjà vu»".to_string());
    conv.participants = vec![
        person("u-1", Some("Zoë Ørsted 😀"), Some("zoe@example.com")),
        person("u-2", Some("王小明"), Some("wang@example.com")),
        person("u-3", Some("O'Brien, \"Pat\" \\ (ops)"), None),
        person("u-4", Some("  padded  name  "), None),
    ];
    let mut msg = chat("m", "x");
    msg.sender = conv.participants[0].clone();
    msg.properties = vec![("Label".to_string(), "café ☕ — naïve".to_string())];
    let email = converter().convert(&msg, &conv).unwrap();
    let parsed = parse(&email);
    assert!(email.bytes().unwrap().is_ascii());
    assert_eq!(parsed.subject(), conv.name.as_deref());
    let names: Vec<Option<String>> = addresses(parsed.to()).into_iter().map(|a| a.0).collect();
    let expected: Vec<Option<String>> = conv
        .participants
        .iter()
        .map(|p| p.display_name.clone())
        .collect();
    assert_eq!(names, expected);
    assert_eq!(
        addresses(parsed.from())[0].0.as_deref(),
        Some("Zoë Ørsted 😀")
    );
    assert_eq!(
        value(&parsed, "X-Connector-Property-Label"),
        "café ☕ — naïve"
    );
}

#[test]
fn odd_ids_round_trip_in_headers() {
    let odd = [
        "  spaced  id  ",
        "=?utf-8?Q?fake?=",
        "tab\there",
        "semi;colon:<angle>(paren)\"quote\"",
        "ünïcödé/🙂",
        "",
        "line\r\nbreak",
        "nul\0byte",
    ];
    for id in odd {
        let mut conv = room();
        conv.id = format!("conv {id}");
        let mut msg = chat(&format!("msg {id}"), "x");
        msg.conversation_id = conv.id.clone();
        msg.sender.id = id.to_string();
        msg.relations = vec![Relation::ReplyTo(id.to_string())];
        msg.properties = vec![(id.to_string(), id.to_string())];
        let c = converter();
        let email = c.convert(&msg, &conv).unwrap();
        let parsed = parse(&email);
        assert!(email.bytes().unwrap().is_ascii());
        assert_eq!(value(&parsed, "X-Connector-Conversation-Id"), conv.id);
        assert_eq!(value(&parsed, "X-Connector-Message-Id"), msg.id);
        assert_eq!(value(&parsed, "X-Connector-Sender-Id"), id);
        assert_eq!(value(&parsed, "X-Connector-Reply-To"), id);
        assert_eq!(ids(parsed.in_reply_to()), vec![c.message_id(id)]);
        let property = format!("X-Connector-Property-{}", property_header_name(id));
        assert_eq!(value(&parsed, &property), id, "{id:?}");
    }
}

#[test]
fn property_names_become_header_safe_tokens() {
    assert_eq!(property_header_name("Stream Type"), "Stream-Type");
    assert_eq!(property_header_name("a:b\r\nc"), "a-b-c");
    assert_eq!(property_header_name("日本"), "Unnamed");
    assert_eq!(property_header_name(&"x".repeat(100)).len(), 40);
}

#[test]
fn ten_thousand_character_values_round_trip_with_short_lines() {
    let long_ascii = "word ".repeat(2000).trim_end().to_string();
    let long_token = "x".repeat(10_000);
    let long_unicode = "ü".repeat(10_000);
    let mut conv = room();
    conv.name = Some(long_token.clone());
    let mut msg = chat("m", &format!("{long_token}\n{long_unicode}"));
    msg.sender.display_name = Some(long_unicode.clone());
    msg.properties = vec![
        ("Ascii".to_string(), long_ascii.clone()),
        ("Unicode".to_string(), long_unicode.clone()),
    ];
    let email = converter().convert(&msg, &conv).unwrap();
    let text = raw_text(&email);
    for line in text.split("\r\n") {
        // Only a short value after a long header name may pass 78.
        let limit = if line.starts_with("X-Connector-Source-SHA256: ") {
            120
        } else {
            78
        };
        assert!(line.len() <= limit, "line of {}: {line:.100}", line.len());
    }
    let parsed = parse(&email);
    assert_eq!(parsed.subject(), Some(long_token.as_str()));
    assert_eq!(
        addresses(parsed.from())[0].0.as_deref(),
        Some(long_unicode.as_str())
    );
    assert_eq!(value(&parsed, "X-Connector-Property-Ascii"), long_ascii);
    assert_eq!(value(&parsed, "X-Connector-Property-Unicode"), long_unicode);
    assert_eq!(
        parsed.body_text(0).unwrap(),
        format!("{long_token}\r\n{long_unicode}")
    );
}

#[test]
fn text_line_breaks_are_written_as_crlf() {
    let crlf_text = "one\r\ntwo\r\n\r\nthree\r\n";
    let email = converter().convert(&chat("a", crlf_text), &room()).unwrap();
    assert_eq!(parse(&email).body_text(0).unwrap(), crlf_text);

    let mixed = "one\ntwo\rthree\r\nfour";
    let email = converter().convert(&chat("b", mixed), &room()).unwrap();
    assert_eq!(
        parse(&email).body_text(0).unwrap(),
        "one\r\ntwo\r\nthree\r\nfour"
    );
    assert!(!raw_text(&email).replace("\r\n", "").contains(['\r', '\n']));
}

#[test]
fn unicode_text_body_round_trips() {
    let text = "Grüße 👋\r\n  indented line with trailing space \r\n\ttab";
    let email = converter().convert(&chat("u", text), &room()).unwrap();
    assert!(email.bytes().unwrap().is_ascii());
    assert_eq!(parse(&email).body_text(0).unwrap(), text);
}

fn attachment(id: &str, name: &str, media: Option<&str>, data: AttachmentData) -> Attachment {
    Attachment {
        id: id.to_string(),
        file_name: name.to_string(),
        media_type: media.map(str::to_string),
        data,
    }
}

#[test]
fn binary_attachment_bytes_round_trip_exactly() {
    let binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let text_with_bare_lf = b"line one\nline two \n\r\nno newline at end".to_vec();
    let mut msg = chat("m", "see attached");
    msg.attachments = vec![
        attachment(
            "a1",
            "data.bin",
            None,
            AttachmentData::Bytes(binary.clone()),
        ),
        attachment(
            "a2",
            "Résumé 2024.txt",
            Some("Text/Plain; charset=latin1"),
            AttachmentData::Bytes(text_with_bare_lf.clone()),
        ),
        attachment(
            "a3",
            "",
            Some("not a media type"),
            AttachmentData::Bytes(Vec::new()),
        ),
    ];
    let email = converter().convert(&msg, &room()).unwrap();
    let parsed = parse(&email);
    assert_eq!(parsed.body_text(0).unwrap(), "see attached");
    assert_eq!(
        parsed.root_part().content_type().unwrap().subtype(),
        Some("mixed")
    );
    let parts: Vec<_> = parsed.attachments().collect();
    assert_eq!(parts.len(), 3);

    assert_eq!(parts[0].attachment_name(), Some("data.bin"));
    assert_eq!(parts[0].content_type().unwrap().ctype(), "application");
    assert_eq!(
        parts[0].content_type().unwrap().subtype(),
        Some("octet-stream")
    );
    assert_eq!(parts[0].contents(), binary.as_slice());

    assert_eq!(parts[1].attachment_name(), Some("Résumé 2024.txt"));
    assert_eq!(parts[1].content_type().unwrap().ctype(), "text");
    assert_eq!(parts[1].content_type().unwrap().subtype(), Some("plain"));
    assert_eq!(parts[1].contents(), text_with_bare_lf.as_slice());

    assert_eq!(parts[2].attachment_name(), Some("attachment-a3"));
    assert_eq!(
        parts[2].content_type().unwrap().subtype(),
        Some("octet-stream")
    );
    assert!(parts[2].contents().is_empty());
}

#[test]
fn an_attachment_the_html_shows_by_cid_is_inline_beside_it_in_multipart_related() {
    let png: Vec<u8> = (0..=255u8).rev().cycle().take(700).collect();
    let mut msg = chat("m-inline", "chart below");
    msg.html = Some(
        r#"<p>chart below</p><img src="cid:chart%2F1@inline" alt="chart"><p>cid:other@x is text</p>"#
            .to_string(),
    );
    msg.attachments = vec![
        attachment(
            "report",
            "report.pdf",
            Some("application/pdf"),
            AttachmentData::Bytes(b"%PDF".to_vec()),
        ),
        attachment(
            "chart/1@inline",
            "chart.png",
            Some("image/png"),
            AttachmentData::Bytes(png.clone()),
        ),
        // Named by no `cid:` URL: an ordinary attachment, Content-ID-like id or not.
        attachment(
            "unused@inline",
            "unused.png",
            Some("image/png"),
            AttachmentData::Bytes(vec![1, 2]),
        ),
    ];
    let email = converter().convert(&msg, &room()).unwrap();
    assert_eq!(
        converter().convert(&msg, &room()).unwrap().in_memory(),
        email.in_memory(),
        "the same message gives the same bytes"
    );
    let parsed = parse(&email);
    assert_eq!(
        parsed.root_part().content_type().unwrap().subtype(),
        Some("mixed")
    );
    let related = parsed
        .parts
        .iter()
        .find(|p| p.content_type().and_then(|c| c.subtype()) == Some("related"))
        .expect("a multipart/related part");
    assert_eq!(
        related.content_type().unwrap().attribute("type"),
        Some("multipart/alternative")
    );
    let inline = parsed
        .parts
        .iter()
        .find(|p| p.content_id() == Some("chart/1@inline"))
        .expect("the image carries its Content-ID");
    assert_eq!(inline.contents(), png.as_slice());
    assert_eq!(inline.content_disposition().unwrap().ctype(), "inline");
    assert_eq!(inline.attachment_name(), Some("chart.png"));
    let mailparse_tree = mailparse::parse_mail(email.in_memory().unwrap()).unwrap();
    let related_children: Vec<String> = mailparse_tree.subparts[0]
        .subparts
        .iter()
        .map(|p| p.ctype.mimetype.clone())
        .collect();
    assert_eq!(related_children, ["multipart/alternative", "image/png"]);
    let ordinary: Vec<(&str, Option<&str>)> = mailparse_tree.subparts[1..]
        .iter()
        .map(|p| {
            let cid = p.headers.iter().find(|h| h.get_key() == "Content-ID");
            (p.ctype.mimetype.as_str(), cid.map(|_| "cid"))
        })
        .collect();
    assert_eq!(ordinary, [("application/pdf", None), ("image/png", None)]);
}

#[test]
fn a_cid_url_naming_an_id_that_is_no_content_id_leaves_the_attachment_ordinary() {
    let mut msg = chat("m-plain-id", "x");
    msg.html = Some(r#"<img src="cid:plain-id">"#.to_string());
    msg.attachments = vec![attachment(
        "plain-id",
        "a.png",
        Some("image/png"),
        AttachmentData::Bytes(vec![9]),
    )];
    let email = converter().convert(&msg, &room()).unwrap();
    assert!(!raw_text(&email).contains("multipart/related"));
    assert!(!raw_text(&email).contains("Content-ID"));
}

#[test]
fn five_megabyte_attachment_from_a_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    let big = noise(5 * 1024 * 1024, 0x1234_5678);
    std::fs::write(&path, &big).unwrap();
    let mut msg = chat("m", "");
    msg.text = None;
    msg.attachments = vec![attachment(
        "big",
        "big.bin",
        Some("application/x-custom"),
        AttachmentData::File(path),
    )];
    let spool = tempfile::tempdir().unwrap();
    let email = converter()
        .with_spool(spool.path(), DEFAULT_SPILL_ABOVE)
        .convert(&msg, &room())
        .unwrap();
    let file = email
        .spool_path()
        .expect("an email over the threshold is spooled");
    assert!(file.starts_with(spool.path()));
    assert_eq!(std::fs::metadata(file).unwrap().len(), email.len());
    let bytes = email.bytes().unwrap();
    assert_eq!(
        email.sha256,
        connector_model::digest::sha256_hex(&bytes[..])
    );
    let parsed = parser().parse(&bytes[..]).unwrap();
    assert_eq!(parsed.body_text(0).unwrap(), "Alice Martin sent big.bin");
    let part = parsed.attachments().next().unwrap();
    assert_eq!(part.content_type().unwrap().subtype(), Some("x-custom"));
    assert_eq!(part.contents().len(), big.len());
    assert!(part.contents() == big.as_slice());
}

#[test]
fn missing_attachment_file_is_an_error_naming_the_file() {
    let mut msg = chat("m", "x");
    msg.attachments = vec![attachment(
        "gone",
        "gone.bin",
        None,
        AttachmentData::File(PathBuf::from("/nonexistent/spool/gone.bin")),
    )];
    let err = converter().convert(&msg, &room()).unwrap_err();
    assert!(matches!(err, ConvertError::AttachmentRead { .. }));
    let text = err.to_string();
    assert!(text.contains("/nonexistent/spool/gone.bin"), "{text}");
    assert!(text.contains("run again"), "{text}");
}

#[test]
fn message_without_id_or_with_another_conversation_is_refused() {
    let err = converter().convert(&chat("", "x"), &room()).unwrap_err();
    assert!(matches!(err, ConvertError::EmptyMessageId { .. }));
    let mut msg = chat("m", "x");
    msg.conversation_id = "other".to_string();
    let err = converter().convert(&msg, &room()).unwrap_err();
    assert!(matches!(err, ConvertError::ConversationMismatch { .. }));
}

#[test]
fn dates_before_1970_and_milliseconds_are_handled() {
    let mut msg = chat("m", "x");
    msg.sent_at = -86_400_500;
    let email = converter().convert(&msg, &room()).unwrap();
    assert_eq!(email.sent_at, -86_400_500);
    assert_eq!(parse(&email).date().unwrap().to_timestamp(), -86_401);
}

#[test]
fn hostile_attachment_names_and_media_types_cannot_inject_headers() {
    let mut msg = chat("m", "x");
    msg.attachments = vec![attachment(
        "a\r\nBcc: evil@example.com",
        "name\r\nBcc: evil@example.com\".txt",
        Some("text/plain\r\nBcc: evil@example.com"),
        AttachmentData::Bytes(b"data".to_vec()),
    )];
    let email = converter().convert(&msg, &room()).unwrap();
    let parsed = parse(&email);
    assert!(parsed.bcc().is_none());
    assert!(!raw_text(&email).contains("\r\nBcc:"));
    let part = parsed.attachments().next().unwrap();
    assert_eq!(part.contents(), b"data");
    assert_eq!(part.content_type().unwrap().subtype(), Some("octet-stream"));
    assert_eq!(
        values(&parsed, "X-Connector-Attachment-Id"),
        Vec::<String>::new(),
        "attachment ids are part headers, not message headers"
    );
}

/// Deterministic bytes that are not text.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

#[test]
fn a_spooled_email_has_the_same_bytes_as_one_built_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    // Sizes around base64 line (57) and chunk (57 * 1024) boundaries.
    let sizes = [
        0,
        1,
        56,
        57,
        58,
        57 * 1024 - 1,
        57 * 1024,
        57 * 1024 + 1,
        200_000,
    ];
    let mut msg = chat("m", "attachments of every size");
    for (i, size) in sizes.iter().enumerate() {
        let bytes = noise(*size, i as u32 + 7);
        let data = if i % 2 == 0 {
            let path = dir.path().join(format!("a{i}"));
            std::fs::write(&path, &bytes).unwrap();
            AttachmentData::File(path)
        } else {
            AttachmentData::Bytes(bytes)
        };
        msg.attachments.push(attachment(
            &format!("a{i}"),
            &format!("a{i}.bin"),
            None,
            data,
        ));
    }
    let in_memory = converter()
        .with_spool(dir.path(), usize::MAX)
        .convert(&msg, &room())
        .unwrap();
    let spooled = converter()
        .with_spool(dir.path(), 0)
        .convert(&msg, &room())
        .unwrap();
    assert!(in_memory.spool_path().is_none());
    assert!(spooled.spool_path().is_some());
    assert_eq!(in_memory.sha256, spooled.sha256);
    assert_eq!(in_memory.len(), spooled.len());
    assert_eq!(in_memory.bytes().unwrap(), spooled.bytes().unwrap());

    let parsed = parse(&in_memory);
    let parts: Vec<_> = parsed.attachments().collect();
    assert_eq!(parts.len(), sizes.len());
    for (i, (part, size)) in parts.iter().zip(sizes).enumerate() {
        assert_eq!(part.contents(), noise(size, i as u32 + 7), "attachment {i}");
    }
    let text = std::str::from_utf8(in_memory.in_memory().unwrap()).unwrap();
    let long: Vec<&str> = text.split("\r\n").filter(|line| line.len() > 998).collect();
    assert!(long.is_empty(), "{long:?}");
}

#[test]
fn attachments_are_base64_exactly_as_mail_builder_writes_them() {
    let bytes = noise(57 * 1024 * 3 + 5, 3);
    let mut msg = chat("m", "x");
    msg.attachments = vec![attachment(
        "a",
        "a.bin",
        None,
        AttachmentData::Bytes(bytes.clone()),
    )];
    let email = converter().convert(&msg, &room()).unwrap();
    let reference = mail_builder::MessageBuilder::new()
        .attachment("application/octet-stream", "a.bin", bytes)
        .write_to_vec()
        .unwrap();
    let body_of = |email: &[u8]| -> Vec<u8> {
        let text = std::str::from_utf8(email).unwrap();
        let start = text.find("base64\r\n\r\n").unwrap() + 10;
        let end = start + text[start..].find("\r\n--").unwrap_or(text.len() - start);
        text[start..end].trim_end().as_bytes().to_vec()
    };
    assert_eq!(
        body_of(email.in_memory().unwrap()),
        body_of(&reference),
        "same base64 text"
    );
}

/// A message with one attachment of 1,000 bytes.
fn with_kilobyte_attachment() -> Message {
    let mut msg = chat("m", "x");
    msg.attachments = vec![attachment(
        "a",
        "a.bin",
        None,
        AttachmentData::Bytes(noise(1000, 1)),
    )];
    msg
}

#[test]
fn a_spool_file_is_removed_with_the_last_copy_of_its_email() {
    let dir = tempfile::tempdir().unwrap();
    let msg = with_kilobyte_attachment();
    let email = converter()
        .with_spool(dir.path(), 100)
        .convert(&msg, &room())
        .unwrap();
    let path = email.spool_path().unwrap().to_path_buf();
    let copy = email.clone();
    drop(email);
    assert!(path.is_file(), "a copy still uses it");
    let mut out = Vec::new();
    copy.write_to(&mut out).unwrap();
    assert_eq!(out.len() as u64, copy.len());
    drop(copy);
    assert!(!path.exists());
}

#[test]
fn an_unwritable_spool_folder_is_an_error_naming_it() {
    let msg = with_kilobyte_attachment();
    let err = converter()
        .with_spool(std::path::Path::new("/nonexistent/spool"), 100)
        .convert(&msg, &room())
        .unwrap_err();
    assert!(matches!(err, ConvertError::Spool { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("/nonexistent/spool"), "{text}");
    assert!(text.contains("free space"), "{text}");
}

#[test]
fn the_bytes_of_an_email_never_change_between_releases() {
    // Ledgers and reconciliation compare emails by hash: a change in how
    // the same message is written must be deliberate.
    let mut msg = chat("m-golden", "line one\nline two\r\nline three\rend ✓");
    msg.html = Some("<p>line one</p>\n<p>✓</p>".into());
    msg.relations = vec![Relation::ReplyTo("m-0".into())];
    msg.properties = vec![("Thread".into(), "t-1".into())];
    msg.attachments = vec![attachment(
        "a1",
        "notes.txt",
        Some("text/plain"),
        AttachmentData::Bytes(b"some notes\n".to_vec()),
    )];
    let email = converter().convert(&msg, &room()).unwrap();
    assert_eq!(email.sha256, GOLDEN_SHA256);
}

const GOLDEN_SHA256: &str = "5e4594ba405363fec9a119d2f42a9e6d760334461f016590ba7dd705cfde20bd";

#[test]
fn the_to_header_follows_membership_changes_of_a_conversation() {
    let converter = converter();
    let to_of = |conv: &Conversation| -> Vec<String> {
        let email = converter.convert(&chat("m", "x"), conv).unwrap();
        let parsed = parse(&email);
        parsed
            .to()
            .unwrap()
            .iter()
            .map(|a| a.address().unwrap().to_string())
            .collect()
    };
    let mut conv = room();
    let before = to_of(&conv);
    assert_eq!(before.len(), 2);
    conv.participants.pop();
    assert_eq!(to_of(&conv), before[..1], "a member left");
    conv.participants.push(bob());
    assert_eq!(to_of(&conv), before, "and came back");
}

#[test]
fn the_subject_follows_renames_kinds_and_senders_of_a_conversation() {
    let converter = converter();
    let subject_of = |msg: &Message, conv: &Conversation| -> String {
        let email = converter.convert(msg, conv).unwrap();
        parse(&email).subject().unwrap().to_string()
    };
    let mut conv = room();
    let mut msg = chat("m", "x");
    assert_eq!(subject_of(&msg, &conv), "Trading desk");
    msg.kind = MessageKind::Edit;
    assert_eq!(subject_of(&msg, &conv), "Edited: Trading desk");
    conv.name = Some("Rates desk".into());
    assert_eq!(subject_of(&msg, &conv), "Edited: Rates desk");
    msg.kind = MessageKind::Chat;
    conv.name = None;
    conv.participants.clear();
    assert_eq!(subject_of(&msg, &conv), "Conversation with Alice Martin");
    msg.sender = bob();
    let by_bob = subject_of(&msg, &conv);
    assert!(by_bob.starts_with("Conversation with ") && !by_bob.contains("Alice"));
}
