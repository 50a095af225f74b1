//! The example chat-export plugin, built to wasm32-wasip2, run by the real
//! host into a Maildir; every delivered email is parsed back and compared
//! with the export it came from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use connector_e2e::*;
use connector_email::EmailConverter;
use connector_host::config::ConnectorConfig;
use connector_host::pipeline::{Host, RunOptions};
use connector_state::RunOutcome;
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::json;
use sha2::{Digest, Sha256};

const FOLDER_ON_DISK: &str = ".INBOX.Chat export";

struct Expected {
    id: String,
    conversation: String,
    sender_email: Option<String>,
    sent_at: i64,
    text: Option<String>,
    attachments: Vec<(String, Vec<u8>)>,
    reply_to: Option<String>,
    mailboxes: BTreeSet<String>,
}

struct Export {
    dir: PathBuf,
    lines: Vec<serde_json::Value>,
    expected: Vec<Expected>,
    http_files: BTreeMap<String, Vec<u8>>,
}

fn person(id: &str, name: &str, email: Option<&str>) -> serde_json::Value {
    match email {
        Some(e) => json!({"id": id, "name": name, "email": e}),
        None => json!({"id": id, "name": name}),
    }
}

/// A deterministic export: three conversations, `n` messages with unicode,
/// emoji, long lines, replies, edits, deletions, joins and attachments of all
/// three kinds (inline, downloaded over HTTP as base64, read from a file).
fn build_export(dir: &Path, n: usize, http_origin_placeholder: &str) -> Export {
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let alice = person("u-alice", "Alice Ångström", Some("alice@example.test"));
    let bob = person("u-bob", "Bob 🦀 Builder", Some("Bob@Example.test"));
    let carol = person("u-carol", "Carol NoMail", None); // mapped by the override CSV
    let dave = person("u-dave", "Dave External", Some("dave@partner.example")); // unmapped
    let rooms = [
        (
            "room-1",
            "room",
            Some("Trading desk — Ünïcödé 💹"),
            vec![alice.clone(), bob.clone(), carol.clone()],
        ),
        ("im-1", "direct", None, vec![alice.clone(), bob.clone()]),
        (
            "room-ext",
            "room",
            Some("With a partner"),
            vec![alice.clone(), dave.clone()],
        ),
    ];
    let mailboxes_of = |conv: &str| -> BTreeSet<String> {
        match conv {
            "room-1" => [
                "alice@example.test",
                "bob@example.test",
                "carol@example.test",
            ]
            .map(String::from)
            .into(),
            "im-1" => ["alice@example.test", "bob@example.test"]
                .map(String::from)
                .into(),
            _ => ["alice@example.test"].map(String::from).into(),
        }
    };
    let mut lines = Vec::new();
    for (id, kind, name, participants) in &rooms {
        let mut c =
            json!({"type": "conversation", "id": id, "kind": kind, "participants": participants});
        if let Some(name) = name {
            c["name"] = json!(name);
        }
        lines.push(c);
    }
    let mut expected = Vec::new();
    let mut http_files = BTreeMap::new();
    let senders = [&alice, &bob, &carol];
    for i in 0..n {
        let conv = rooms[i % 3].0;
        let sender = if conv == "room-ext" && i % 2 == 0 {
            &dave
        } else {
            senders[i % 2]
        };
        let id = format!("msg-{i:04}");
        let sent_at = 1_767_000_000_000i64 + i as i64 * 1000;
        let mut text = format!("Message {i} — héllo wörld 😀🚀 «quotes» ");
        if i % 7 == 3 {
            text.push_str(&"long-line ".repeat(1500));
        }
        let mut m = json!({
            "type": "message", "id": id, "conversation": conv, "sender": sender,
            "sent_at": sent_at, "text": text,
        });
        let mut reply_to = None;
        if i % 5 == 4 {
            let target = format!("msg-{:04}", i - 3);
            m["reply_to"] = json!(target);
            reply_to = Some(target);
        }
        if i % 11 == 6 {
            m["kind"] = json!("edit");
            m["edit_of"] = json!(format!("msg-{:04}", i - 3));
        }
        if i % 13 == 12 {
            m["kind"] = json!("deletion");
            m["deletes"] = json!(format!("msg-{:04}", i - 3));
        }
        let mut attachments = Vec::new();
        if i % 6 == 1 {
            let bytes: Vec<u8> = (0..=255u8).cycle().take(3000 + i).collect();
            m["attachments"] = json!([{"id": "a1", "name": format!("data-{i}.bin"), "media_type": "application/octet-stream",
                "content_base64": base64::engine::general_purpose::STANDARD.encode(&bytes)}]);
            attachments.push((format!("data-{i}.bin"), bytes));
        } else if i % 6 == 2 {
            let bytes: Vec<u8> = (0..200_000u32)
                .map(|x| (x.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            let file = format!("report-{i}.pdf");
            std::fs::write(files.join(&file), &bytes).unwrap();
            m["attachments"] = json!([{"id": "f1", "name": file, "media_type": "application/pdf", "path": format!("files/{file}")}]);
            attachments.push((file, bytes));
        } else if i % 6 == 5 {
            let bytes: Vec<u8> = format!("downloaded attachment {i} ✓").into_bytes();
            let path = format!("/att/{i}");
            http_files.insert(
                path.clone(),
                base64::engine::general_purpose::STANDARD
                    .encode(&bytes)
                    .into_bytes(),
            );
            m["attachments"] = json!([{"id": "h1", "name": format!("note-{i}.txt"), "media_type": "text/plain",
                "url": format!("{http_origin_placeholder}{path}"), "encoding": "base64"}]);
            attachments.push((format!("note-{i}.txt"), bytes));
        }
        lines.push(m);
        // The sender is a participant too, even if no longer a member.
        let mut mailboxes = mailboxes_of(conv);
        if let Some(email) = sender["email"]
            .as_str()
            .filter(|e| e.to_lowercase().ends_with("@example.test"))
        {
            mailboxes.insert(email.to_lowercase());
        }
        expected.push(Expected {
            id,
            conversation: conv.to_string(),
            sender_email: sender["email"].as_str().map(str::to_lowercase),
            sent_at,
            text: Some(text),
            attachments,
            reply_to,
            mailboxes,
        });
    }
    Export {
        dir: dir.to_path_buf(),
        lines,
        expected,
        http_files,
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    config: ConnectorConfig,
    state: PathBuf,
    mail: PathBuf,
    export: Export,
}

fn setup(n: usize, page_size: usize) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let plugin_dir = root.join("plugin");
    let manifest = install_chat_export(&plugin_dir);
    let export_dir = root.join("export");
    std::fs::create_dir_all(&export_dir).unwrap();
    let mut export = build_export(&export_dir, n, "ORIGIN");
    let origin = serve_files(export.http_files.clone());
    let text: String = export
        .lines
        .iter()
        .map(|l| l.to_string().replace("ORIGIN", &origin) + "\n")
        .collect();
    std::fs::write(export_dir.join("chat.jsonl"), text).unwrap();
    export.dir = export_dir.clone();
    write_file(
        root,
        "users.csv",
        "ExternalUserId,Mailbox\nu-carol,carol@example.test\n",
    );
    let config = write_file(
        root,
        "connector.toml",
        &format!(
            r#"
id = "chat-e2e"
plugin = "{manifest}"
[plugin-config]
path = "/export/chat.jsonl"
page_size = {page_size}
[grants]
hosts = ["{origin}"]
files = {{ "/export" = "export" }}
[mapping]
overrides = "users.csv"
domains = ["example.test"]
[sink]
kind = "maildir"
path = "mail"
fsync = false
"#,
            manifest = manifest.display()
        ),
    );
    Setup {
        config: ConnectorConfig::load(&config).unwrap(),
        state: root.join("state"),
        mail: root.join("mail"),
        _tmp: tmp,
        export,
    }
}

fn check_mailboxes(s: &Setup) {
    let converter = EmailConverter::new("chat-export", "Chat export");
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &s.export.expected {
        for mb in &e.mailboxes {
            want.entry(mb.clone())
                .or_default()
                .insert(converter.message_id(&e.id));
        }
    }
    assert_eq!(
        mailboxes(&s.mail),
        want.keys().cloned().collect::<Vec<_>>(),
        "mailboxes created"
    );
    let by_id: BTreeMap<String, &Expected> = s
        .export
        .expected
        .iter()
        .map(|e| (converter.message_id(&e.id), e))
        .collect();
    for (mailbox, ids) in &want {
        let emails = maildir_emails(&s.mail, mailbox, FOLDER_ON_DISK);
        let mut seen = BTreeSet::new();
        for stored in &emails {
            let parsed = MessageParser::default()
                .parse(&stored.bytes)
                .expect("email parses");
            let mid = parsed.message_id().expect("Message-ID").to_string();
            assert!(seen.insert(mid.clone()), "{mailbox}: {mid} delivered twice");
            let e = by_id
                .get(&mid)
                .unwrap_or_else(|| panic!("{mailbox}: unexpected {mid}"));
            assert!(
                e.mailboxes.contains(mailbox),
                "{mailbox} got {} it should not",
                e.id
            );
            let header = |name: &str| {
                parsed
                    .header_raw(name)
                    .map(|v| v.trim().to_string())
                    .unwrap_or_else(|| panic!("{} lacks {name}", e.id))
            };
            assert_eq!(header("X-Connector-Message-Id"), e.id);
            assert_eq!(header("X-Connector-Conversation-Id"), e.conversation);
            assert_eq!(
                parsed.date().unwrap().to_timestamp(),
                e.sent_at / 1000,
                "{} Date",
                e.id
            );
            let from = parsed
                .from()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .unwrap()
                .to_lowercase();
            match &e.sender_email {
                Some(email) => assert_eq!(&from, email),
                None => assert!(
                    from.ends_with(".invalid"),
                    "{} placeholder sender {from}",
                    e.id
                ),
            }
            if e.conversation == "room-1" {
                assert_eq!(
                    parsed
                        .subject()
                        .unwrap()
                        .trim_start_matches("Edited: ")
                        .trim_start_matches("Deleted: "),
                    "Trading desk — Ünïcödé 💹"
                );
            }
            let body = parsed.body_text(0).expect("text body");
            let text = e.text.as_ref().unwrap();
            assert!(body.contains(text.trim_end()), "{}: body lost text", e.id);
            if let Some(target) = &e.reply_to {
                assert_eq!(
                    parsed.in_reply_to().as_text().unwrap(),
                    converter.message_id(target)
                );
            }
            let got: Vec<(String, Vec<u8>)> = parsed
                .attachments()
                .map(|a| {
                    (
                        a.attachment_name().unwrap().to_string(),
                        a.contents().to_vec(),
                    )
                })
                .collect();
            assert_eq!(got.len(), e.attachments.len(), "{} attachment count", e.id);
            for ((gn, gb), (wn, wb)) in got.iter().zip(&e.attachments) {
                assert_eq!(gn, wn);
                assert_eq!(
                    Sha256::digest(gb),
                    Sha256::digest(wb),
                    "{} attachment {wn} bytes",
                    e.id
                );
            }
        }
        assert_eq!(
            &seen, ids,
            "{mailbox}: exactly the expected messages, once each"
        );
    }
}

#[test]
fn every_message_reaches_every_mapped_participant_once_and_parses_back_intact() {
    let s = setup(60, 7);
    let host = Host::open(&s.state).unwrap();
    let summary = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded);
    assert_eq!(summary.counts.items_from_source, 60);
    let deliveries: usize = s.export.expected.iter().map(|e| e.mailboxes.len()).sum();
    assert_eq!(summary.counts.imported as usize, deliveries);
    // Messages of the partner room have an unmapped participant: kept in quarantine.
    let with_partner = s
        .export
        .expected
        .iter()
        .filter(|e| e.conversation == "room-ext")
        .count();
    assert_eq!(summary.counts.quarantined as usize, with_partner);
    assert_eq!(
        host.db().quarantine("chat-e2e").unwrap().len(),
        with_partner
    );
    check_mailboxes(&s);
}

#[test]
fn a_second_run_delivers_nothing_twice() {
    let s = setup(30, 10);
    let host = Host::open(&s.state).unwrap();
    let first = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert!(first.counts.imported > 0);
    let second = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(
        second.counts.imported, 0,
        "nothing new at the source, nothing imported"
    );
    check_mailboxes(&s);
}

#[test]
fn a_run_stopped_after_page_k_resumes_at_page_k() {
    let s = setup(40, 5);
    let host = Host::open(&s.state).unwrap();
    let first = host
        .run_once(&s.config, &RunOptions { max_pages: Some(3) })
        .unwrap();
    assert_eq!(first.outcome, RunOutcome::Interrupted);
    assert_eq!(first.counts.pages, 3);
    assert_eq!(first.counts.items_from_source, 15);
    let second = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(second.outcome, RunOutcome::Succeeded);
    assert_eq!(
        second.counts.items_from_source, 25,
        "resumed after the 15 already delivered"
    );
    assert_eq!(second.counts.skipped_duplicates, 0);
    check_mailboxes(&s);
}

#[test]
fn a_lost_ledger_does_not_duplicate_what_the_mailbox_already_holds() {
    let s = setup(20, 6);
    {
        let host = Host::open(&s.state).unwrap();
        host.run_once(&s.config, &RunOptions::default()).unwrap();
    }
    // As if the host died after importing but before committing: no ledger, no checkpoint.
    std::fs::remove_dir_all(&s.state).unwrap();
    let host = Host::open(&s.state).unwrap();
    let again = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(again.counts.imported, 0);
    assert!(again.counts.skipped_duplicates > 0);
    check_mailboxes(&s);
}

#[test]
fn transcripts_in_a_named_zone_cut_days_at_local_midnight_across_both_clock_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let manifest = install_chat_export(&root.join("plugin"));
    let export = root.join("export");
    std::fs::create_dir_all(&export).unwrap();
    let alice = person("u-alice", "Alice", Some("alice@example.test"));
    let bob = person("u-bob", "Bob", Some("bob@example.test"));
    // London's clocks went forward at 01:00 UTC on 2026-03-29 and back at
    // 01:00 UTC on 2026-10-25.
    let sent = [
        ("spring-1", "2026-03-28T23:30:00Z", "2026-03-28"), // 23:30 GMT
        ("spring-2", "2026-03-29T00:30:00Z", "2026-03-29"), // 00:30 GMT
        ("spring-3", "2026-03-29T22:30:00Z", "2026-03-29"), // 23:30 BST
        ("spring-4", "2026-03-29T23:30:00Z", "2026-03-30"), // 00:30 BST
        ("autumn-1", "2026-10-24T23:30:00Z", "2026-10-25"), // 00:30 BST
        ("autumn-2", "2026-10-25T00:30:00Z", "2026-10-25"), // 01:30 BST
        ("autumn-3", "2026-10-25T01:30:00Z", "2026-10-25"), // 01:30 GMT
        ("autumn-4", "2026-10-25T23:30:00Z", "2026-10-25"), // 23:30 GMT
    ];
    let mut lines = vec![json!({"type": "conversation", "id": "desk", "kind": "room",
        "name": "London desk", "participants": [alice.clone(), bob.clone()]})];
    for (i, (id, at, _)) in sent.iter().enumerate() {
        let ms = chrono::DateTime::parse_from_rfc3339(at)
            .unwrap()
            .timestamp_millis();
        lines.push(json!({"type": "message", "id": id, "conversation": "desk",
            "sender": if i % 2 == 0 { &alice } else { &bob }, "sent_at": ms, "text": format!("at {at}")}));
    }
    let text: String = lines.iter().map(|l| l.to_string() + "\n").collect();
    std::fs::write(export.join("chat.jsonl"), text).unwrap();
    let config = write_file(
        root,
        "connector.toml",
        &format!(
            r#"
id = "chat-london"
plugin = "{manifest}"
delivery = "transcripts"
[plugin-config]
path = "/export/chat.jsonl"
page_size = 3
[grants]
files = {{ "/export" = "export" }}
[mapping]
domains = ["example.test"]
[sink]
kind = "maildir"
path = "mail"
fsync = false
[transcripts]
time-zone = "Europe/London"
grace = "0s"
"#,
            manifest = manifest.display()
        ),
    );
    let config = ConnectorConfig::load(&config).unwrap();
    let host = Host::open(&root.join("state")).unwrap();
    let summary = host.run_once(&config, &RunOptions::default()).unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded);

    let mut want: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (id, _, day) in &sent {
        want.entry(day).or_default().push(id.to_string());
    }
    let stored =
        transcripts::read_transcripts(&root.join("mail"), ".INBOX.Chat export.Transcripts");
    for mailbox in ["alice@example.test", "bob@example.test"] {
        let got: BTreeMap<&str, Vec<String>> = stored
            .iter()
            .filter(|t| t.mailbox == mailbox)
            .inspect(|t| assert_eq!((t.conversation.as_str(), t.part), ("desk", 0)))
            .map(|t| (t.day.as_str(), t.items.clone()))
            .collect();
        assert_eq!(got, want, "{mailbox}: one transcript per London day");
    }
    let body = |day: &str| {
        &stored
            .iter()
            .find(|t| t.day == day)
            .unwrap_or_else(|| panic!("a transcript of {day}"))
            .body
    };
    assert!(!body("2026-03-28").contains("clocks changed"));
    assert!(body("2026-03-29").contains("the day lasted 23 hours in Europe/London"));
    assert!(body("2026-03-30").contains("[00:30:00 BST] Bob"));
    let autumn = body("2026-10-25");
    assert!(autumn.contains("the day lasted 25 hours in Europe/London"));
    let bst = autumn.find("[01:30:00 BST] Bob").expect(autumn);
    let gmt = autumn.find("[01:30:00 GMT] Alice").expect(autumn);
    assert!(bst < gmt, "{autumn}");
    // A second run sends no day again.
    let again = host.run_once(&config, &RunOptions::default()).unwrap();
    assert_eq!(again.counts.imported, 0);
}
