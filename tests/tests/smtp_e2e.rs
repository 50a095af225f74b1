//! The SMTP journal sink against a real SMTP server (Debian's aiosmtpd,
//! started by the test with a handler that stores exactly what it
//! receives, see `connector_e2e::smtp_server`): the real pipeline with the
//! chat-export plugin journals a few hundred messages with attachments to
//! per-mailbox journal addresses; what the server stored is read back and
//! compared byte for byte with what the ledger says was sent, and with the
//! source's attachments. A second run sends nothing. Then the sink alone:
//! one copy per email for a shared journal address, a refused and a
//! deferred recipient, and the cost of a missing TCP_NODELAY.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_e2e::chat_fixture::{
    Paging, USERS, chat_fixture, connector_file, message_id_of, noise, synthetic_email,
};
use connector_e2e::smtp_server::SmtpServer;
use connector_email::Email;
use connector_host::config::ConnectorConfig;
use connector_host::pipeline::{Host, RunOptions};
use connector_model::Mailbox;
use connector_model::{Attachment, AttachmentData};
use connector_runtime::SecretStore;
use connector_sink::TlsMode;
use connector_sink::{Delivery, Sink, SinkError};
use connector_sink_smtp::SmtpSettings;
use connector_sink_smtp::SmtpSink;
use connector_sink_smtp::SmtpSinkConfig;
use connector_state::RunOutcome;
use mail_parser::{MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};

const FROM: &str = "connector@archive.example.test";

#[test]
fn a_run_journals_every_email_once_byte_for_byte_and_a_second_run_sends_nothing() {
    let server = SmtpServer::start(None);
    let tmp = tempfile::tempdir().unwrap();
    let f = chat_fixture(tmp.path(), 300, Some(200 << 10));
    let sink = format!(
        r#"[sink]
kind = "smtp"
host = "127.0.0.1"
port = {}
tls = "none"
from = "{FROM}"
to = "journal+{{local}}@archive.example.test"
"#,
        server.port()
    );
    let path = connector_file(tmp.path(), "smtp-e2e", &f, Paging::default(), &sink, "");
    let config = ConnectorConfig::load(&path).unwrap();
    let state = tmp.path().join("state");
    let deliveries: usize = f.expected.values().map(BTreeSet::len).sum();

    let host = Host::open(&state).unwrap();
    let started = Instant::now();
    let first = host.run_once(&config, &RunOptions::default()).unwrap();
    let took = started.elapsed();
    assert_eq!(first.outcome, RunOutcome::Succeeded, "{:?}", first.counts);
    assert_eq!(first.counts.items_from_source, 300);
    assert_eq!(first.counts.imported as usize, deliveries);
    assert_eq!(first.counts.failed, 0);
    eprintln!("first run: {deliveries} emails journaled in {took:.2?}");

    // Read back everything the server stored.
    let started = Instant::now();
    let ledger = host.db().ledger_entries("smtp-e2e").unwrap();
    let by_key: HashMap<(String, String), _> = ledger
        .iter()
        .map(|e| ((e.mailbox.clone(), e.message_id.clone()), e))
        .collect();
    let received = server.received();
    assert_eq!(received.len(), deliveries, "one SMTP message per delivery");
    let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &received {
        assert_eq!(r.mail_from, FROM);
        assert_eq!(r.rcpt_tos.len(), 1, "{:?}", r.rcpt_tos);
        let local = r.rcpt_tos[0]
            .strip_prefix("journal+")
            .and_then(|a| a.strip_suffix("@archive.example.test"))
            .unwrap_or_else(|| panic!("unexpected recipient {}", r.rcpt_tos[0]));
        let mailbox = format!("{local}@example.test");
        let mid = message_id_of(&r.bytes);
        assert!(
            got.entry(mailbox.clone()).or_default().insert(mid.clone()),
            "{mailbox}: {mid} journaled twice"
        );
        let entry = by_key
            .get(&(mailbox.clone(), mid.clone()))
            .unwrap_or_else(|| panic!("{mailbox}: {mid} is not in the ledger"));
        assert_eq!(
            r.bytes.strip_suffix(b"\r\n").unwrap_or(&r.bytes).len() + 2,
            r.bytes.len(),
            "SMTP ends a message with CRLF"
        );
        let sent_sha = |b: &[u8]| hex::encode(Sha256::digest(b));
        assert!(
            sent_sha(&r.bytes) == entry.email_sha256
                || sent_sha(&r.bytes[..r.bytes.len() - 2]) == entry.email_sha256,
            "{mailbox}: {mid} differs from what was sent"
        );
        assert!(
            entry
                .receipt
                .starts_with(&format!("smtp:{};250 ", r.rcpt_tos[0]))
                && entry.receipt.contains("queued as J"),
            "receipt {}",
            entry.receipt
        );
        let parsed = MessageParser::default().parse(&r.bytes).unwrap();
        assert_eq!(
            parsed.body_text(0).as_deref().map(str::trim_end),
            Some(f.texts[&mid].trim_end()),
            "{mid}: text"
        );
        if let Some((name, want)) = f.attachments.get(&mid) {
            let att = parsed.attachments().next().expect("an attachment");
            assert_eq!(att.attachment_name(), Some(name.as_str()));
            assert!(
                att.contents() == want.as_slice(),
                "{mailbox}: {name} intact"
            );
        }
    }
    assert_eq!(got, f.expected, "exactly the expected emails per mailbox");
    eprintln!(
        "read back and compared {} emails in {:.2?}",
        received.len(),
        started.elapsed()
    );
    drop(host);

    let host = Host::open(&state).unwrap();
    let second = host.run_once(&config, &RunOptions::default()).unwrap();
    assert_eq!(second.outcome, RunOutcome::Succeeded);
    assert_eq!(second.counts.imported, 0, "{:?}", second.counts);
    assert_eq!(server.count(), deliveries, "the second run sent nothing");
}

// ---- the sink alone ---------------------------------------------------

/// What an SMTP server stores for `bytes`: the same, ending with CRLF
/// (SMTP ends every message with a line break, RFC 5321 4.1.1.4).
fn on_the_wire(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn emails(tag: &str, n: usize) -> Vec<Email> {
    (0..n)
        .map(|i| {
            let attachments = if i % 10 == 0 {
                vec![Attachment {
                    id: "a".into(),
                    file_name: "data.bin".into(),
                    media_type: None,
                    data: AttachmentData::Bytes(noise(3000, i as u64)),
                }]
            } else {
                Vec::new()
            };
            synthetic_email(
                &format!("{tag}-{i}"),
                i,
                format!("message {i}\r\n.leading dot line\r\n.\r\nend"),
                attachments,
            )
        })
        .collect()
}

fn sink(port: u16, to: &str, nodelay: bool) -> SmtpSink {
    let config = SmtpSinkConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        tls: TlsMode::None,
        ca_file: None,
        username: None,
        password_secret: None,
        from: FROM.into(),
        to: to.into(),
        hello_name: None,
        timeout_secs: 30,
        tcp_nodelay: nodelay,
    };
    SmtpSink::new(
        SmtpSettings::from_config(&config).unwrap(),
        Arc::new(SecretStore::from_pairs(Vec::<(String, String)>::new())),
    )
    .unwrap()
}

#[test]
fn a_shared_journal_address_gets_one_copy_per_email_and_refusals_are_per_item() {
    let server = SmtpServer::start(None);
    let mut sink = sink(server.port(), "journal@archive.example.test", true);
    let list = emails("shared", 20);
    let alice = Mailbox::new(USERS[0]).unwrap();
    let bob = Mailbox::new(USERS[1]).unwrap();
    let mut batch = Vec::new();
    for email in &list {
        for mailbox in [&alice, &bob] {
            batch.push(Delivery {
                mailbox,
                folder: "INBOX/Symphony",
                email,
            });
        }
    }
    let results = sink.deliver(&batch);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(results[0].as_ref().unwrap(), results[1].as_ref().unwrap());
    let received = server.received();
    assert_eq!(received.len(), 20, "one journal copy per email");
    for (r, email) in received.iter().zip(&list) {
        assert!(
            r.bytes == on_the_wire(&email.bytes().unwrap()),
            "bytes unchanged (dot-stuffing undone): got {} bytes, sent {}",
            r.bytes.len(),
            email.len(),
        );
    }
    assert!(
        sink.contains(&bob, "INBOX/Symphony", &list[3].message_id)
            .unwrap()
    );
    assert!(!sink.contains(&bob, "INBOX/Symphony", "other@x").unwrap());

    // Per-mailbox addresses: one refused (550), one deferred (451).
    let mut sink = self::sink(server.port(), "{mailbox}", true);
    let refuse = Mailbox::new("refuse@example.test").unwrap();
    let busy = Mailbox::new("busy@example.test").unwrap();
    let more = emails("per", 3);
    let batch = vec![
        Delivery {
            mailbox: &refuse,
            folder: "INBOX",
            email: &more[0],
        },
        Delivery {
            mailbox: &alice,
            folder: "INBOX",
            email: &more[1],
        },
        Delivery {
            mailbox: &busy,
            folder: "INBOX",
            email: &more[2],
        },
    ];
    let results = sink.deliver(&batch);
    match &results[0] {
        Err(e @ SinkError::Refused { reason, .. }) => {
            assert!(reason.contains("550"), "{reason}");
            assert!(!e.is_retryable() && !e.is_fatal());
        }
        other => panic!("refused: {other:?}"),
    }
    assert!(results[1].is_ok(), "{:?}", results[1]);
    assert!(
        matches!(&results[2], Err(e @ SinkError::Unavailable { .. }) if e.is_retryable()),
        "{:?}",
        results[2]
    );
    assert_eq!(server.count(), 21);
}

#[test]
fn tcp_nodelay_saves_the_delayed_ack_on_every_email() {
    let server = SmtpServer::start(None);
    let list = emails("speed", 150);
    let alice = Mailbox::new(USERS[0]).unwrap();
    let time = |nodelay: bool, to: &str| {
        let mut sink = sink(server.port(), to, nodelay);
        // Connect first, so only sending is timed.
        let warm = emails(&format!("warm-{nodelay}"), 1);
        sink.deliver(&[Delivery {
            mailbox: &alice,
            folder: "INBOX",
            email: &warm[0],
        }])[0]
            .as_ref()
            .unwrap();
        let batch: Vec<Delivery<'_>> = list
            .iter()
            .map(|email| Delivery {
                mailbox: &alice,
                folder: "INBOX",
                email,
            })
            .collect();
        let started = Instant::now();
        let results = sink.deliver(&batch);
        let took = started.elapsed();
        assert!(results.iter().all(Result::is_ok));
        took / list.len() as u32
    };
    let with = time(true, "with@archive.example.test");
    let without = time(false, "without@archive.example.test");
    eprintln!("per email: {with:.2?} with TCP_NODELAY, {without:.2?} without");
    assert!(
        with < Duration::from_millis(15),
        "with TCP_NODELAY an email should take well under the 40 ms delayed ACK: {with:?}"
    );
    assert!(with < without, "{with:?} vs {without:?}");
}
