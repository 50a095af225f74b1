//! The Microsoft Graph sink against a local server as strict as Exchange
//! Online's documentation (`connector_e2e::graph_server`): the real
//! pipeline with the chat-export plugin imports a few hundred messages
//! (small attachments inline, one of 3.5 MB through an upload session) into
//! four mailboxes' `Inbox/Symphony`, with every kind of throttling
//! injected; what the server stored is compared field by field with the
//! source and the ledger, and a second run creates nothing. Then the sink
//! alone: attachments of 1 KB to 40 MB, 0 to 10 per email, bodies near
//! 4 MB and odd mailbox addresses land once and byte-exact; a crash between
//! the uploads and the completion mark is redone once; a missing
//! `Mail.ReadWrite` stops the run while a mailbox outside the access policy
//! is refused alone; a folder deleted mid-run is found again; tokens are
//! renewed once; two sinks sharing a budget stay within a mailbox's 4
//! requests together. Last, the server itself: each documented rule is shown
//! refusing what Exchange refuses, so that it cannot drift back to lenient.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use connector_e2e::chat_fixture::{
    ChatFixture, Paging, USERS, chat_fixture, connector_file, synthetic_email,
};
use connector_e2e::graph_server::{
    BrokenUpload, Counts, GraphOptions, GraphServer, Headers, IN_FLIGHT_SLACK,
};
use connector_email::Email;
use connector_host::config::ConnectorConfig;
use connector_host::pipeline::{Host, RunOptions};
use connector_model::{Attachment, AttachmentData, Mailbox};
use connector_runtime::SecretStore;
use connector_sink::{Delivery, LocalBudget, MailboxBudget, Receipt, Sink, SinkError};
use connector_sink_graph::GraphSettings;
use connector_sink_graph::GraphSink;
use connector_sink_graph::GraphSinkConfig;
use connector_sink_graph::{PENDING_PROPERTY, UPLOAD_SESSION_MIN};
use connector_state::RunOutcome;
use serde_json::{Value, json};

const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const SECRET: &str = "s3cr3t~value";
const BIG: usize = 3_500_000;

fn server(throttle_every: usize) -> GraphServer {
    GraphServer::start(GraphOptions {
        throttle_every,
        ..GraphOptions::new(&USERS, CLIENT_ID, SECRET)
    })
}

fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A connector file that archives the fixture `f` through `server`.
fn graph_connector(
    dir: &std::path::Path,
    server: &GraphServer,
    f: &ChatFixture,
) -> std::path::PathBuf {
    let sink = server.sink_table(CLIENT_ID, "max-concurrency = 8\n");
    connector_file(
        dir,
        "graph-e2e",
        f,
        Paging::default(),
        &sink,
        &format!("graph-client-secret = \"{SECRET}\"\n"),
    )
}

#[test]
fn a_run_creates_every_email_once_as_sent_mail_and_a_second_run_creates_nothing() {
    let server = server(97);
    let tmp = tempfile::tempdir().unwrap();
    let f = chat_fixture(tmp.path(), 300, Some(BIG));
    let path = graph_connector(tmp.path(), &server, &f);
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
    let Counts {
        requests,
        throttled,
        tokens,
        uploads,
        ..
    } = server.counts();
    eprintln!(
        "first run: {deliveries} emails into {} mailboxes in {took:.2?} ({requests} Graph requests, {throttled} answered 429/503/504, {tokens} token(s), {uploads} upload sessions)",
        USERS.len()
    );
    assert!(throttled > 0, "some requests were throttled and retried");
    assert_eq!(tokens, 1, "the token is cached");
    assert!(server.violations().is_empty(), "{:#?}", server.violations());
    assert!(server.max_in_flight_per_mailbox() <= 4);

    // Read back and compare.
    let started = Instant::now();
    let ledger = host.db().ledger_entries("graph-e2e").unwrap();
    let by_key: HashMap<(String, String), _> = ledger
        .iter()
        .map(|e| ((e.mailbox.clone(), e.message_id.clone()), e))
        .collect();
    let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut checked = 0;
    let mut uploaded = 0;
    for user in USERS {
        for m in server.messages(user) {
            assert_eq!(m.folder, "Inbox/Symphony");
            let mid = m.properties["String 0x1035"]
                .trim_matches(['<', '>'])
                .to_string();
            assert!(
                got.entry(user.to_string()).or_default().insert(mid.clone()),
                "{user}: {mid} is there twice"
            );
            let entry = by_key
                .get(&(user.to_string(), mid.clone()))
                .unwrap_or_else(|| panic!("{user}: {mid} not in the ledger"));
            assert_eq!(
                entry.receipt,
                format!("graph:{user}/INBOX/Symphony;id={}", m.id)
            );
            assert_eq!(m.properties["Integer 0x0E07"], "1", "read, not a draft");
            assert!(!m.is_draft, "{mid} is a received item");
            assert_eq!(m.internet_message_id, format!("<{mid}>"));
            let (sender, sent_at) = &f.senders[&mid];
            assert_eq!(m.properties["SystemTime 0x0E06"], utc(*sent_at));
            assert_eq!(m.properties["SystemTime 0x0039"], utc(*sent_at));
            assert_eq!(m.json["from"]["emailAddress"]["address"], sender.as_str());
            let to: BTreeSet<&str> = m.json["toRecipients"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["emailAddress"]["address"].as_str().unwrap())
                .collect();
            assert!(to.contains(user), "{user} among the recipients: {to:?}");
            let content = m.json["body"]["content"].as_str().unwrap();
            let text = &f.texts[&mid];
            match m.json["body"]["contentType"].as_str().unwrap() {
                "text" => assert_eq!(content.trim_end(), text.trim_end(), "{mid}"),
                _ => assert!(content.contains(text.trim_end()), "{mid}: {content}"),
            }
            assert!(
                m.json["subject"].as_str().unwrap().contains("Desk"),
                "{}",
                m.json["subject"]
            );
            match f.attachments.get(&mid) {
                Some((name, bytes)) => {
                    assert_eq!(m.attachments.len(), 1, "{mid}");
                    let a = &m.attachments[0];
                    assert_eq!(&a.name, name);
                    assert!(a.bytes == *bytes, "{user}: {name} intact");
                    assert_eq!(a.uploaded, bytes.len() >= UPLOAD_SESSION_MIN, "{name}");
                    uploaded += usize::from(a.uploaded);
                }
                None => assert!(m.attachments.is_empty(), "{mid}"),
            }
            checked += 1;
        }
    }
    assert_eq!(got, f.expected, "exactly the expected emails per mailbox");
    assert_eq!(checked, deliveries);
    assert_eq!(
        uploaded, 2,
        "the 3.5 MB attachment (in a two-member room) went by upload session to both mailboxes"
    );
    eprintln!(
        "read back and compared {checked} messages in {:.2?}",
        started.elapsed()
    );
    drop(host);

    // Second run: each folder's Message-IDs are read in pages of 50.
    let before = server.counts().requests;
    let host = Host::open(&state).unwrap();
    let started = Instant::now();
    let second = host.run_once(&config, &RunOptions::default()).unwrap();
    assert_eq!(second.outcome, RunOutcome::Succeeded);
    assert_eq!(second.counts.imported, 0, "{:?}", second.counts);
    let total: usize = USERS.iter().map(|u| server.messages(u).len()).sum();
    assert_eq!(total, deliveries, "the second run created nothing");
    assert!(server.violations().is_empty(), "{:#?}", server.violations());
    eprintln!(
        "second run: nothing created, {} Graph requests (the ledger has everything), {:.2?}",
        server.counts().requests - before,
        started.elapsed()
    );

    // A fresh sink (as after a crash before the ledger commit) finds every
    // email by its Message-ID: one paged listing per folder (pages of 50,
    // followed through @odata.nextLink), then answers from its cache.
    let Counts {
        requests: before,
        throttled: throttled_before,
        ..
    } = server.counts();
    let mut fresh = self::sink(&server, SECRET);
    for (user, mids) in &f.expected {
        let mailbox = Mailbox::new(user).unwrap();
        for mid in mids {
            assert!(
                fresh.contains(&mailbox, "INBOX/Symphony", mid).unwrap(),
                "{user}: {mid}"
            );
        }
    }
    let Counts {
        requests: after,
        throttled: throttled_after,
        ..
    } = server.counts();
    let listing = after - before - (throttled_after - throttled_before);
    let pages: usize = f.expected.values().map(|m| m.len().div_ceil(50)).sum();
    assert_eq!(
        listing,
        pages + USERS.len(),
        "one folder lookup and one paged listing per mailbox (429s aside)"
    );
    assert!(server.violations().is_empty(), "{:#?}", server.violations());
}

// ---- the sink alone ---------------------------------------------------

fn emails(tag: &str, n: usize) -> Vec<Email> {
    (0..n)
        .map(|i| synthetic_email(&format!("{tag}-{i}"), i, format!("message {i}"), Vec::new()))
        .collect()
}

fn sink(server: &GraphServer, secret: &str) -> GraphSink {
    let config = GraphSinkConfig {
        tenant: "contoso.example".into(),
        client_id: CLIENT_ID.into(),
        client_secret_secret: "graph-client-secret".into(),
        graph_url: server.graph_url(),
        login_url: server.login_url(),
        max_concurrency: 8,
        mailbox_concurrency: 4,
        mailbox_requests: 10_000,
        mailbox_window_secs: 600,
        timeout_secs: 30,
    };
    GraphSink::new(
        GraphSettings::from_config(&config).unwrap(),
        Arc::new(SecretStore::from_pairs([(
            "graph-client-secret".to_string(),
            secret.to_string(),
        )])),
    )
    .unwrap()
}

#[test]
fn tokens_are_renewed_once_bad_secrets_are_fatal_and_unknown_mailboxes_refused() {
    let server = server(0);
    let list = emails("alone", 6);
    let alice = Mailbox::new(USERS[0]).unwrap();
    let nobody = Mailbox::new("nobody@example.test").unwrap();
    let mut sink = sink(&server, SECRET);
    let batch: Vec<Delivery<'_>> = list[..3]
        .iter()
        .map(|email| Delivery {
            mailbox: &alice,
            folder: "INBOX/Symphony",
            email,
        })
        .collect();
    let results = sink.deliver(&batch);
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    // The token expires: renewed once, nothing lost.
    server.revoke_tokens();
    let batch = vec![
        Delivery {
            mailbox: &alice,
            folder: "INBOX/Symphony",
            email: &list[3],
        },
        Delivery {
            mailbox: &nobody,
            folder: "INBOX/Symphony",
            email: &list[4],
        },
        Delivery {
            mailbox: &alice,
            folder: "INBOX/Symphony",
            email: &list[4],
        },
    ];
    let results = sink.deliver(&batch);
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    match &results[1] {
        Err(e @ SinkError::Refused { reason, .. }) => {
            assert!(reason.contains("ErrorInvalidUser"), "{reason}");
            assert!(!e.is_fatal() && !e.is_retryable());
        }
        other => panic!("refused: {other:?}"),
    }
    assert_eq!(server.counts().tokens, 2, "one token, then one renewal");
    assert!(
        sink.contains(&alice, "INBOX/Symphony", &list[4].message_id)
            .unwrap()
    );
    // A new sink reads the folder and finds what is there.
    let mut fresh = self::sink(&server, SECRET);
    for email in &list[..5] {
        assert!(
            fresh
                .contains(&alice, "INBOX/Symphony", &email.message_id)
                .unwrap()
        );
    }
    assert!(
        !fresh
            .contains(&alice, "INBOX/Symphony", &list[5].message_id)
            .unwrap()
    );
    assert_eq!(server.messages(USERS[0]).len(), 5);

    // A wrong client secret stops the run.
    let mut wrong = self::sink(&server, "wrong");
    let err = wrong
        .contains(&alice, "INBOX/Symphony", &list[5].message_id)
        .unwrap_err();
    assert!(err.is_fatal(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("invalid_client") && text.contains("graph-client-secret"),
        "{text}"
    );
    assert!(server.violations().is_empty(), "{:#?}", server.violations());
}

// ---- the sink against the strict server ------------------------------

/// Attachment files: (name, bytes).
type Files = Vec<(String, Vec<u8>)>;

/// Bytes that differ from one attachment, and one offset, to the next (a
/// byte-exact check then means something).
fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8) ^ (i >> 16) ^ seed.wrapping_mul(97)) as u8)
        .collect()
}

/// An email with attachments of these sizes (named `résumé ✓ {n}.bin`)
/// and this text.
fn email_with(tag: &str, i: usize, text: String, sizes: &[usize]) -> (Email, Files) {
    let files: Files = sizes
        .iter()
        .enumerate()
        .map(|(n, &len)| (format!("résumé ✓ {n}.bin"), pattern(i * 100 + n, len)))
        .collect();
    let attachments = files
        .iter()
        .enumerate()
        .map(|(n, (name, bytes))| Attachment {
            id: format!("a{n}"),
            file_name: name.clone(),
            media_type: Some("application/octet-stream".into()),
            data: AttachmentData::Bytes(bytes.clone()),
        })
        .collect();
    (
        synthetic_email(&format!("{tag}-{i}"), i, text, attachments),
        files,
    )
}

/// `email` for `mailbox`'s `INBOX/Symphony`.
fn symphony<'a>(mailbox: &'a Mailbox, email: &'a Email) -> Delivery<'a> {
    Delivery {
        mailbox,
        folder: "INBOX/Symphony",
        email,
    }
}

/// Delivers until nothing is left to retry (as the run does), at most
/// `rounds` times; returns the last results.
fn deliver_all(
    sink: &mut GraphSink,
    batch: &[Delivery<'_>],
    rounds: usize,
) -> Vec<Result<Receipt, SinkError>> {
    let mut results = sink.deliver(batch);
    for _ in 1..rounds {
        if !results
            .iter()
            .any(|r| r.as_ref().is_err_and(SinkError::is_retryable))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        results = sink.deliver(batch);
    }
    results
}

/// Checks that `mailbox` holds exactly `expected` (Message-ID → files),
/// each once, complete, received, byte-exact, large files uploaded.
fn assert_holds(server: &GraphServer, mailbox: &str, expected: &BTreeMap<String, Files>) {
    let messages = server.messages(mailbox);
    let mut seen = BTreeSet::new();
    for m in &messages {
        let mid = m.internet_message_id.trim_matches(['<', '>']).to_string();
        assert!(seen.insert(mid.clone()), "{mailbox}: {mid} is there twice");
        let Some(files) = expected.get(&mid) else {
            panic!("{mailbox}: {mid} was not sent");
        };
        assert!(!m.is_draft, "{mid} is a received item");
        assert_ne!(
            m.properties.get(PENDING_PROPERTY).map(String::as_str),
            Some("1"),
            "{mid} is complete"
        );
        let mut got: Vec<(&str, &[u8], bool)> = m
            .attachments
            .iter()
            .map(|a| (a.name.as_str(), a.bytes.as_slice(), a.uploaded))
            .collect();
        got.sort();
        let mut want: Vec<(&str, &[u8], bool)> = files
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice(), b.len() >= UPLOAD_SESSION_MIN))
            .collect();
        want.sort();
        assert!(
            got == want,
            "{mailbox}: {mid} has {:?}, expected {:?}",
            got.iter()
                .map(|g| (g.0, g.1.len(), g.2))
                .collect::<Vec<_>>(),
            want.iter()
                .map(|w| (w.0, w.1.len(), w.2))
                .collect::<Vec<_>>()
        );
    }
    assert_eq!(
        seen.len(),
        expected.len(),
        "{mailbox}: every email is there"
    );
}

#[test]
fn emails_with_0_to_10_attachments_of_1_kb_to_40_mb_land_once_byte_exact_in_odd_and_unicode_mailboxes()
 {
    let odd = [
        "o'brien+archive@example.test",
        "a#b?c@example.test",
        "x/y@example.test",
        "jürgen.groß@example.test",
    ];
    let users: Vec<&str> = USERS.iter().copied().chain(odd).collect();
    let server = GraphServer::start(GraphOptions {
        // A tenant that raised the 35 MB default for the 40 MB case.
        message_limit: 150_000_000,
        ..GraphOptions::new(&users, CLIENT_ID, SECRET)
    });
    let mailboxes: Vec<Mailbox> = users.iter().map(|u| Mailbox::new_unchecked(u)).collect();
    const K: usize = 1_000;
    const M: usize = 1_000_000;
    let cases: Vec<(&str, Vec<usize>, usize)> = vec![
        ("none", vec![], 100),
        ("1 KB", vec![K], 100),
        ("two of 2 MB", vec![2 * M; 2], 100),
        ("ten of 1 KB", vec![K; 10], 100),
        ("2.9 MB", vec![2_900 * K], 100),
        ("3.1 MB", vec![3_100 * K], 100),
        ("2.9 and 3.1 MB", vec![2_900 * K, 3_100 * K], 100),
        ("2 MB and 1 KB", vec![2 * M, K], 100),
        (
            "ten mixed",
            vec![K, 2 * M, 2_900 * K, 3_100 * K, K, 2 * M, K, 2_900 * K, K, K],
            100,
        ),
        ("40 MB", vec![40 * M], 100),
        ("body near 4 MB", vec![], 3_900 * K),
        ("body near 4 MB and 1 KB", vec![K], 3_900 * K),
    ];
    let mut emails = Vec::new();
    for (i, (label, sizes, text_len)) in cases.iter().enumerate() {
        let text = format!("{label}: Grüße ✓ {}", "x".repeat(*text_len));
        emails.push(email_with("sizes", i, text, sizes));
    }
    let mut expected: Vec<BTreeMap<String, Files>> = vec![BTreeMap::new(); users.len()];
    let mut batch = Vec::new();
    for (i, (email, files)) in emails.iter().enumerate() {
        // The big cases go to one mailbox; the others to every mailbox in turn.
        let targets: Vec<usize> = if cases[i].1.iter().sum::<usize>() > 10 * M {
            vec![0]
        } else {
            vec![i % users.len(), (i + 4) % users.len()]
        };
        for t in targets {
            expected[t].insert(email.message_id.clone(), files.clone());
            batch.push(symphony(&mailboxes[t], email));
        }
    }
    let mut sink = sink(&server, SECRET);
    let started = Instant::now();
    let results = deliver_all(&mut sink, &batch, 3);
    for (d, r) in batch.iter().zip(&results) {
        assert!(r.is_ok(), "{}: {r:?}", d.mailbox);
    }
    eprintln!("{} deliveries in {:.2?}", batch.len(), started.elapsed());
    assert!(server.violations().is_empty(), "{:#?}", server.violations());
    for (t, user) in users.iter().enumerate() {
        assert_holds(&server, user, &expected[t]);
    }
    // A fresh sink finds each, and sends nothing again.
    let before = server.counts();
    let mut fresh = self::sink(&server, SECRET);
    for d in &batch {
        assert!(
            fresh
                .contains(d.mailbox, d.folder, &d.email.message_id)
                .unwrap()
        );
    }
    assert!(fresh.deliver(&batch).iter().all(Result::is_ok));
    let after = server.counts();
    assert_eq!(
        (after.uploads, after.deleted),
        (before.uploads, before.deleted)
    );
    for (t, user) in users.iter().enumerate() {
        assert_holds(&server, user, &expected[t]);
    }
    assert!(server.violations().is_empty(), "{:#?}", server.violations());
}

#[test]
fn a_crash_between_the_uploads_and_completion_is_redone_exactly_once() {
    let server = server(0);
    let alice = Mailbox::new(USERS[0]).unwrap();
    let (email, files) = email_with("crash", 1, "big".into(), &[3_100_000, 2_000_000]);
    let batch = [symphony(&alice, &email)];
    let mut sink = sink(&server, SECRET);
    assert!(
        !sink
            .contains(&alice, "INBOX/Symphony", &email.message_id)
            .unwrap()
    );
    // The server goes away once the upload is done: the item stays pending
    // (the crash leaves it so too: nothing deletes it).
    server.go_down_after_uploads(1);
    let results = sink.deliver(&batch);
    assert!(
        results[0].as_ref().is_err_and(SinkError::is_retryable),
        "{results:?}"
    );
    drop(sink);
    server.come_back();
    let left = server.messages(USERS[0]);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].properties[PENDING_PROPERTY], "1", "left pending");
    // The next run does not count it, deletes it and creates it again, once.
    let mut next = self::sink(&server, SECRET);
    assert!(
        !next
            .contains(&alice, "INBOX/Symphony", &email.message_id)
            .unwrap()
    );
    assert!(next.deliver(&batch)[0].is_ok());
    assert_eq!(server.counts().deleted, 1, "the pending copy is deleted");
    let expected = BTreeMap::from([(email.message_id.clone(), files)]);
    assert_holds(&server, USERS[0], &expected);
    assert_eq!(
        server.messages(USERS[0])[0].properties[PENDING_PROPERTY],
        "0"
    );
    // And the run after that finds it complete.
    let mut third = self::sink(&server, SECRET);
    assert!(
        third
            .contains(&alice, "INBOX/Symphony", &email.message_id)
            .unwrap()
    );
    assert!(third.deliver(&batch)[0].is_ok());
    assert_holds(&server, USERS[0], &expected);
    assert_eq!(server.counts().deleted, 1);
    assert!(server.violations().is_empty(), "{:#?}", server.violations());
}

#[test]
fn a_missing_mail_read_write_stops_the_run_and_a_policy_excluded_mailbox_is_refused_alone() {
    let list = emails("denied", 2);
    let alice = Mailbox::new(USERS[0]).unwrap();
    let bob = Mailbox::new(USERS[1]).unwrap();
    let batch = [symphony(&bob, &list[0]), symphony(&alice, &list[1])];

    // No Mail.ReadWrite: every mailbox answers 403 ErrorAccessDenied.
    let server = GraphServer::start(GraphOptions {
        mail_read_write: false,
        ..GraphOptions::new(&USERS, CLIENT_ID, SECRET)
    });
    let mut sink = sink(&server, SECRET);
    for d in &batch {
        assert!(
            !sink
                .contains(d.mailbox, d.folder, &d.email.message_id)
                .unwrap()
        );
    }
    for result in sink.deliver(&batch) {
        let e = result.unwrap_err();
        assert!(e.is_fatal(), "{e}");
        assert!(e.to_string().contains("grant Mail.ReadWrite"), "{e}");
    }

    // An application access policy that leaves bob out: bob is refused,
    // alice is not, and the run goes on.
    let server = GraphServer::start(GraphOptions {
        outside_policy: vec![USERS[1].to_string()],
        ..GraphOptions::new(&USERS, CLIENT_ID, SECRET)
    });
    let mut sink = self::sink(&server, SECRET);
    for d in &batch {
        assert!(
            !sink
                .contains(d.mailbox, d.folder, &d.email.message_id)
                .unwrap()
        );
    }
    let results = sink.deliver(&batch);
    match &results[0] {
        Err(e @ SinkError::Refused { reason, .. }) => {
            assert!(!e.is_fatal() && !e.is_retryable(), "{e}");
            assert!(reason.contains("application access policy"), "{reason}");
        }
        other => panic!("bob refused: {other:?}"),
    }
    assert!(results[1].is_ok(), "{results:?}");
    assert_eq!(server.messages(USERS[0]).len(), 1);
    assert!(server.violations().is_empty(), "{:#?}", server.violations());
}

#[test]
fn a_folder_deleted_mid_run_is_found_again_and_nothing_is_lost() {
    let server = server(0);
    let alice = Mailbox::new(USERS[0]).unwrap();
    let list = emails("gone", 6);
    let batch = |from: usize| -> Vec<Delivery<'_>> {
        list[from..from + 3]
            .iter()
            .map(|email| symphony(&alice, email))
            .collect()
    };
    let mut sink = sink(&server, SECRET);
    assert!(sink.deliver(&batch(0)).iter().all(Result::is_ok));
    server.delete_folder(USERS[0], "Inbox/Symphony");
    let second = batch(3);
    let results = deliver_all(&mut sink, &second, 3);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let held: BTreeSet<String> = server
        .messages(USERS[0])
        .iter()
        .map(|m| {
            assert_eq!(m.folder, "Inbox/Symphony");
            m.internet_message_id.trim_matches(['<', '>']).to_string()
        })
        .collect();
    let sent: BTreeSet<String> = list[3..].iter().map(|e| e.message_id.clone()).collect();
    assert_eq!(
        held, sent,
        "the folder is created again with the new emails"
    );
    assert!(server.violations().is_empty(), "{:#?}", server.violations());
}

#[test]
fn two_sinks_sharing_a_budget_never_send_a_mailbox_more_than_four_requests_together() {
    let server = GraphServer::start(GraphOptions {
        latency: Duration::from_millis(40),
        ..GraphOptions::new(&USERS, CLIENT_ID, SECRET)
    });
    let budget: Arc<dyn MailboxBudget> = Arc::new(LocalBudget::default());
    let alice = Mailbox::new(USERS[0]).unwrap();
    let bob = Mailbox::new(USERS[1]).unwrap();
    let (one, two) = (emails("one", 40), emails("two", 40));
    std::thread::scope(|scope| {
        for emails in [&one, &two] {
            let budget = budget.clone();
            let (server, alice, bob) = (&server, &alice, &bob);
            scope.spawn(move || {
                let mut sink = sink(server, SECRET);
                sink.share_budget(budget);
                let batch: Vec<Delivery<'_>> = emails
                    .iter()
                    .enumerate()
                    .map(|(i, e)| symphony(if i % 4 == 0 { bob } else { alice }, e))
                    .collect();
                let results = deliver_all(&mut sink, &batch, 4);
                assert!(results.iter().all(Result::is_ok), "{results:?}");
            });
        }
    });
    assert_eq!(server.messages(USERS[0]).len(), 60);
    assert_eq!(server.messages(USERS[1]).len(), 20);
    assert!(
        server.max_in_flight_per_mailbox() <= 4,
        "the two sinks together stay within the mailbox's limit"
    );
    assert_eq!(server.counts().over_limits, 0);
    assert!(server.violations().is_empty(), "{:#?}", server.violations());
}

#[test]
fn a_retry_after_one_sink_got_holds_off_every_sink_sharing_the_budget() {
    // Every 4th request is throttled (429 or 503 with Retry-After, or
    // without); asking a mailbox during its Retry-After is a violation.
    let server = GraphServer::start(GraphOptions {
        throttle_every: 4,
        latency: Duration::from_millis(20),
        ..GraphOptions::new(&USERS, CLIENT_ID, SECRET)
    });
    let budget: Arc<dyn MailboxBudget> = Arc::new(LocalBudget::default());
    let alice = Mailbox::new(USERS[0]).unwrap();
    let (one, two) = (emails("one", 12), emails("two", 12));
    std::thread::scope(|scope| {
        for emails in [&one, &two] {
            let (budget, server, alice) = (budget.clone(), &server, &alice);
            scope.spawn(move || {
                let mut sink = sink(server, SECRET);
                sink.share_budget(budget);
                let batch: Vec<Delivery<'_>> = emails.iter().map(|e| symphony(alice, e)).collect();
                let results = deliver_all(&mut sink, &batch, 6);
                assert!(results.iter().all(Result::is_ok), "{results:?}");
            });
        }
    });
    assert!(server.counts().throttled > 0, "the server throttled");
    assert_eq!(server.messages(USERS[0]).len(), 24);
    assert!(
        server.violations().is_empty(),
        "no sink asked the mailbox during another's Retry-After: {:#?}",
        server.violations()
    );
}

#[test]
fn throttled_requests_of_every_kind_still_land_each_email_once() {
    let server = server(3);
    let alice = Mailbox::new(USERS[0]).unwrap();
    let bob = Mailbox::new(USERS[1]).unwrap();
    let emails: Vec<_> = (0..16)
        .map(|i| {
            let sizes: &[usize] = if i % 4 == 0 {
                &[2_000_000, 2_000_000]
            } else {
                &[]
            };
            email_with("throttled", i, format!("message {i}"), sizes)
        })
        .collect();
    let batch: Vec<Delivery<'_>> = emails
        .iter()
        .enumerate()
        .map(|(i, (email, _))| symphony(if i % 2 == 0 { &alice } else { &bob }, email))
        .collect();
    let mut sink = sink(&server, SECRET);
    let results = deliver_all(&mut sink, &batch, 8);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(server.counts().throttled >= 4, "{:?}", server.counts());
    for (n, user) in USERS[..2].iter().enumerate() {
        let expected: BTreeMap<_, _> = emails
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == n)
            .map(|(_, (e, files))| (e.message_id.clone(), files.clone()))
            .collect();
        assert_holds(&server, user, &expected);
    }
    assert!(server.violations().is_empty(), "{:#?}", server.violations());
}

// ---- the test server refuses what Exchange refuses -------------------
//
// One test per documented rule, each sending what Exchange refuses and
// checking the answer, so that the stand-in cannot drift back to lenient.

/// A Graph request from the test, with a valid token; (status, body,
/// headers).
fn graph_send(
    server: &GraphServer,
    method: &str,
    path: &str,
    json: Option<&Value>,
) -> (u16, Value, Headers) {
    let auth = format!("Bearer {}", server.token());
    let body = json.map(|j| j.to_string().into_bytes()).unwrap_or_default();
    let mut headers = vec![("Authorization", auth.as_str())];
    if json.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    server.send(
        method,
        &format!("/graph/v1.0/users/{path}"),
        &headers,
        &body,
    )
}

/// [`graph_send`] without the headers.
fn graph_call(
    server: &GraphServer,
    method: &str,
    path: &str,
    json: Option<&Value>,
) -> (u16, Value) {
    let (status, value, _) = graph_send(server, method, path, json);
    (status, value)
}

fn code(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["error"]["code"].as_str().unwrap_or(""))
}

/// A received (non-draft) message's create body, with `extra` fields.
fn received(extra: Value) -> Value {
    let mut m = json!({
        "subject": "s",
        "body": {"contentType": "text", "content": "b"},
        "singleValueExtendedProperties": [{"id": "Integer 0x0E07", "value": "1"}],
    });
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

fn file_attachment(len: usize) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": "f.bin",
        "contentBytes": base64::engine::general_purpose::STANDARD.encode(pattern(1, len)),
    })
}

/// Creates a message in alice's Inbox; returns its id.
fn create_in_inbox(server: &GraphServer, json: &Value) -> String {
    let path = format!("{}/mailFolders/inbox/messages", USERS[0]);
    let answer = graph_call(server, "POST", &path, Some(json));
    assert_eq!(answer.0, 201, "{}", answer.1);
    answer.1["id"].as_str().unwrap().to_string()
}

fn rules_server() -> GraphServer {
    GraphServer::start(GraphOptions::new(&USERS, CLIENT_ID, SECRET))
}

#[test]
fn the_graph_server_refuses_upload_sessions_under_3_mb_or_over_150_mb() {
    let server = rules_server();
    let id = create_in_inbox(&server, &received(json!({})));
    let path = format!("{}/messages/{id}/attachments/createUploadSession", USERS[0]);
    let session = |size: usize| json!({"AttachmentItem": {"attachmentType": "file", "name": "f.bin", "size": size}});
    assert_eq!(
        code(&graph_call(
            &server,
            "POST",
            &path,
            Some(&session(2_999_999))
        )),
        (400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize")
    );
    assert_eq!(
        code(&graph_call(
            &server,
            "POST",
            &path,
            Some(&session(150_000_001))
        )),
        (400, "ErrorAttachmentSizeShouldNotBeGreaterThanMaximumSize")
    );
    assert_eq!(
        graph_call(&server, "POST", &path, Some(&session(3_000_000))).0,
        201
    );
    // Past the mailbox's message size limit (35 MB by default).
    assert_eq!(
        code(&graph_call(
            &server,
            "POST",
            &path,
            Some(&session(36_000_000))
        )),
        (400, "ErrorMessageSizeExceeded")
    );
}

#[test]
fn the_graph_server_refuses_requests_over_4_mb_and_attachments_of_3_mb_outside_upload_sessions() {
    let server = rules_server();
    let path = format!("{}/mailFolders/inbox/messages", USERS[0]);
    let big_body =
        received(json!({"body": {"contentType": "text", "content": "x".repeat(4 << 20)}}));
    assert_eq!(
        code(&graph_call(&server, "POST", &path, Some(&big_body))),
        (413, "RequestBodyTooLarge")
    );
    // 3,000,000 bytes are 4,000,000 in base64: under 4 MB, still refused.
    let inline = received(json!({"attachments": [file_attachment(3_000_000)]}));
    assert_eq!(
        code(&graph_call(&server, "POST", &path, Some(&inline))),
        (400, "ErrorAttachmentSizeShouldNotBeGreaterThanMaximumSize")
    );
    let id = create_in_inbox(&server, &received(json!({})));
    let attachments = format!("{}/messages/{id}/attachments", USERS[0]);
    assert_eq!(
        code(&graph_call(
            &server,
            "POST",
            &attachments,
            Some(&file_attachment(3_000_000))
        )),
        (400, "ErrorAttachmentSizeShouldNotBeGreaterThanMaximumSize")
    );
    assert_eq!(
        graph_call(
            &server,
            "POST",
            &attachments,
            Some(&file_attachment(2_999_999))
        )
        .0,
        201
    );
}

#[test]
fn the_graph_server_takes_upload_puts_only_as_documented() {
    let server = rules_server();
    let id = create_in_inbox(&server, &received(json!({})));
    let path = format!("{}/messages/{id}/attachments/createUploadSession", USERS[0]);
    let size = 5_000_000;
    let session =
        json!({"AttachmentItem": {"attachmentType": "file", "name": "f.bin", "size": size}});
    let answer = graph_call(&server, "POST", &path, Some(&session));
    assert_eq!(answer.0, 201);
    let url = answer.1["uploadUrl"].as_str().unwrap();
    let upload = &url[url.find("/upload/").unwrap()..];
    let bytes = pattern(7, size);
    let put = |range: &str, chunk: &[u8], extra: &[(&str, &str)]| {
        let mut headers = vec![("Content-Range", range)];
        headers.extend_from_slice(extra);
        let (status, value, headers) = server.send("PUT", upload, &headers, chunk);
        (status, value, headers)
    };
    let octet = ("Content-Type", "application/octet-stream");
    let first = &bytes[..3_932_160];
    // No Content-Type, a token, a range not where the server is, a chunk
    // over 4 MB: all refused.
    assert_eq!(put("bytes 0-3932159/5000000", first, &[]).0, 400);
    assert_eq!(
        put(
            "bytes 0-3932159/5000000",
            first,
            &[octet, ("Authorization", "Bearer x")]
        )
        .0,
        400
    );
    assert_eq!(
        put(
            "bytes 100-3932259/5000000",
            &bytes[100..3_932_260],
            &[octet]
        )
        .0,
        416
    );
    let too_big = &bytes[..(4 << 20) + 1];
    assert_eq!(put("bytes 0-4194304/5000000", too_big, &[octet]).0, 413);
    assert_eq!(server.violations().len(), 4, "{:#?}", server.violations());
    // As documented: in order, octet-stream, no token.
    let (status, value, _) = put("bytes 0-3932159/5000000", first, &[octet]);
    assert_eq!(
        (status, value["nextExpectedRanges"][0].as_str()),
        (200, Some("3932160"))
    );
    let (status, _, headers) = put(
        "bytes 3932160-4999999/5000000",
        &bytes[3_932_160..],
        &[octet],
    );
    assert_eq!(status, 201);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "Location" && v.contains("attachments('"))
    );
    let stored = &server.messages(USERS[0])[0].attachments;
    assert!(stored.len() == 1 && stored[0].bytes == bytes && stored[0].uploaded);
}

#[test]
fn the_graph_server_refuses_changing_the_message_id_flags_body_or_subject_of_a_received_message() {
    let server = rules_server();
    let id = create_in_inbox(
        &server,
        &received(json!({"internetMessageId": "<a@example.test>"})),
    );
    let path = format!("{}/messages/{id}", USERS[0]);
    let property = |id: &str, value: &str| json!({"singleValueExtendedProperties": [{"id": id, "value": value}]});
    for refused in [
        json!({"internetMessageId": "<b@example.test>"}),
        json!({"subject": "changed"}),
        json!({"body": {"contentType": "text", "content": "changed"}}),
        property("String 0x1035", "<b@example.test>"),
        property("Integer 0x0E07", "1"),
    ] {
        assert_eq!(
            code(&graph_call(&server, "PATCH", &path, Some(&refused))),
            (400, "ErrorInvalidPropertySet"),
            "{refused}"
        );
    }
    // What a received item lets an app change: named properties, isRead.
    assert_eq!(
        graph_call(
            &server,
            "PATCH",
            &path,
            Some(&property(PENDING_PROPERTY, "0"))
        )
        .0,
        200
    );
    assert_eq!(
        graph_call(&server, "PATCH", &path, Some(&json!({"isRead": false}))).0,
        200
    );
    // A draft (no PR_MESSAGE_FLAGS) may still change its Message-ID.
    let draft = create_in_inbox(&server, &json!({"subject": "draft"}));
    let path = format!("{}/messages/{draft}", USERS[0]);
    let change = json!({"internetMessageId": "<c@example.test>"});
    assert_eq!(graph_call(&server, "PATCH", &path, Some(&change)).0, 200);
    let stored = server.messages(USERS[0]);
    assert_eq!(stored[0].internet_message_id, "<a@example.test>");
    assert!(stored[1].is_draft);
}

#[test]
fn the_graph_server_gives_a_message_created_without_message_id_its_own() {
    let server = rules_server();
    create_in_inbox(&server, &received(json!({})));
    create_in_inbox(
        &server,
        &received(json!({"internetMessageId": "<mine@example.test>"})),
    );
    let path = format!(
        "{}/mailFolders/inbox/messages?$select=internetMessageId",
        USERS[0]
    );
    let (status, list) = graph_call(&server, "GET", &path, None);
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["internetMessageId"].as_str().unwrap())
        .collect();
    assert!(
        ids[0].starts_with('<') && ids[0].contains('@') && ids[0] != "<mine@example.test>",
        "{ids:?}"
    );
    assert_eq!(ids[1], "<mine@example.test>");
}

#[test]
fn the_graph_server_denies_every_mailbox_without_mail_read_write_and_a_policy_excluded_one_alone() {
    let inbox = |user: &str| {
        format!("{user}/mailFolders/inbox/childFolders?$filter=displayName%20eq%20'x'")
    };
    let server = GraphServer::start(GraphOptions {
        mail_read_write: false,
        ..GraphOptions::new(&USERS, CLIENT_ID, SECRET)
    });
    for user in USERS {
        let answer = graph_call(&server, "GET", &inbox(user), None);
        assert_eq!(code(&answer), (403, "ErrorAccessDenied"));
        assert!(
            answer.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Access is denied")
        );
    }
    let server = GraphServer::start(GraphOptions {
        outside_policy: vec![USERS[1].to_string()],
        ..GraphOptions::new(&USERS, CLIENT_ID, SECRET)
    });
    assert_eq!(graph_call(&server, "GET", &inbox(USERS[0]), None).0, 200);
    let answer = graph_call(&server, "GET", &inbox(USERS[1]), None);
    assert_eq!(code(&answer), (403, "ErrorAccessDenied"));
    assert_eq!(answer.1["error"]["message"], "Access to OData is disabled.");
    assert_eq!(
        code(&graph_call(
            &server,
            "GET",
            &inbox("nobody@example.test"),
            None
        )),
        (404, "ErrorInvalidUser")
    );
}

#[test]
fn the_graph_server_finds_mailboxes_only_percent_encoded() {
    let odd = "a#b+c@example.test";
    let server = GraphServer::start(GraphOptions::new(&[odd], CLIENT_ID, SECRET));
    let filter = "mailFolders/inbox/childFolders?$filter=displayName%20eq%20'x'";
    assert_eq!(
        graph_call(
            &server,
            "GET",
            &format!("a%23b%2Bc%40example.test/{filter}"),
            None
        )
        .0,
        200
    );
    // Unencoded, `#` ends the path: another (unknown) user.
    assert_eq!(
        code(&graph_call(
            &server,
            "GET",
            &format!("{odd}/{filter}"),
            None
        )),
        (404, "ErrorInvalidUser")
    );
}

#[test]
fn the_graph_server_throttles_with_429_503_and_504_and_holds_a_mailbox_off_for_its_retry_after() {
    let server = GraphServer::start(GraphOptions {
        throttle_every: 2,
        ..GraphOptions::new(&USERS, CLIENT_ID, SECRET)
    });
    let list = format!("{}/mailFolders/inbox/messages", USERS[0]);
    let retry_after = |server: &GraphServer, method: &str, json: Option<&Value>| {
        let (status, _, headers) = graph_send(server, method, &list, json);
        let after = headers
            .iter()
            .find(|(k, _)| k == "Retry-After")
            .map(|(_, v)| v.clone());
        (status, after)
    };
    assert_eq!(retry_after(&server, "GET", None), (200, None));
    assert_eq!(retry_after(&server, "GET", None), (429, Some("1".into())));
    // Asking again while Retry-After runs (past what requests in flight
    // may take): throttled again, and a fault.
    std::thread::sleep(IN_FLIGHT_SLACK + Duration::from_millis(150));
    assert_eq!(retry_after(&server, "GET", None).0, 429);
    assert_eq!(server.violations().len(), 1, "{:#?}", server.violations());
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(retry_after(&server, "GET", None), (429, None));
    assert_eq!(retry_after(&server, "GET", None), (200, None));
    assert_eq!(retry_after(&server, "GET", None), (503, Some("1".into())));
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(retry_after(&server, "GET", None), (200, None));
    // A 504 to a create: the gateway timed out, the message is there.
    assert_eq!(
        retry_after(&server, "POST", Some(&received(json!({})))),
        (504, None)
    );
    assert_eq!(server.messages(USERS[0]).len(), 1);
}

#[test]
fn the_graph_server_answers_404_for_a_folder_deleted_meanwhile() {
    let server = rules_server();
    let path = format!("{}/mailFolders/inbox/childFolders", USERS[0]);
    let (status, folder) = graph_call(
        &server,
        "POST",
        &path,
        Some(&json!({"displayName": "Archive"})),
    );
    assert_eq!(status, 201);
    let id = folder["id"].as_str().unwrap();
    server.delete_folder(USERS[0], "Inbox/Archive");
    let messages = format!("{}/mailFolders/{id}/messages", USERS[0]);
    assert_eq!(
        code(&graph_call(&server, "GET", &messages, None)),
        (404, "ErrorItemNotFound")
    );
    assert_eq!(
        code(&graph_call(
            &server,
            "POST",
            &messages,
            Some(&received(json!({})))
        )),
        (404, "ErrorItemNotFound")
    );
}

#[test]
fn the_graph_server_throttles_a_fifth_concurrent_request_for_one_mailbox_with_retry_after() {
    let server = GraphServer::start(GraphOptions {
        latency: Duration::from_millis(300),
        ..GraphOptions::new(&USERS, CLIENT_ID, SECRET)
    });
    let path = format!("{}/mailFolders/inbox/messages", USERS[0]);
    let other = format!("{}/mailFolders/inbox/messages", USERS[1]);
    let answers: Vec<(u16, Value, Headers)> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| graph_send(&server, "GET", &path, None)))
            .chain([scope.spawn(|| graph_send(&server, "GET", &other, None))])
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let refused: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
    assert!(!refused.is_empty(), "{answers:?}");
    for (_, body, headers) in &refused {
        assert_eq!(body["error"]["code"], "ApplicationThrottled");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("MailboxConcurrency"),
            "{body}"
        );
        assert!(
            headers.iter().any(|(k, _)| k == "Retry-After"),
            "{headers:?}"
        );
    }
    assert_eq!(answers[6].0, 200, "another mailbox is not held up");
    assert!(server.max_in_flight_per_mailbox() > 4);
    assert!(
        server.violations().iter().any(|v| v.contains("in flight")),
        "{:#?}",
        server.violations()
    );
}

#[test]
fn the_graph_server_refuses_a_mailbox_past_its_requests_per_window_until_the_window_ends() {
    let server = GraphServer::start(GraphOptions {
        mailbox_requests: 3,
        mailbox_window: Duration::from_secs(2),
        ..GraphOptions::new(&USERS, CLIENT_ID, SECRET)
    });
    let list = |user: &str| format!("{user}/mailFolders/inbox/messages");
    for _ in 0..3 {
        assert_eq!(graph_send(&server, "GET", &list(USERS[0]), None).0, 200);
    }
    let (status, body, headers) = graph_send(&server, "GET", &list(USERS[0]), None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("ApplicationThrottled"))
    );
    let retry_after: u64 = headers
        .iter()
        .find(|(k, _)| k == "Retry-After")
        .map(|(_, v)| v.parse().unwrap())
        .expect("a Retry-After");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(
        graph_send(&server, "GET", &list(USERS[1]), None).0,
        200,
        "the window is per mailbox"
    );
    assert_eq!(server.counts().over_limits, 1);
    assert!(
        server
            .violations()
            .iter()
            .any(|v| v.contains("in a window of 3")),
        "{:#?}",
        server.violations()
    );
    // Once the Retry-After has run, the window is new.
    std::thread::sleep(Duration::from_secs(retry_after));
    assert_eq!(graph_send(&server, "GET", &list(USERS[0]), None).0, 200);
}

#[test]
fn a_run_without_mail_read_write_stops_and_quarantines_nothing_while_an_excluded_mailbox_only_loses_its_own()
 {
    // No Mail.ReadWrite: the run stops saying what to grant.
    let server = GraphServer::start(GraphOptions {
        mail_read_write: false,
        ..GraphOptions::new(&USERS, CLIENT_ID, SECRET)
    });
    let tmp = tempfile::tempdir().unwrap();
    let f = chat_fixture(tmp.path(), 20, None);
    let config = ConnectorConfig::load(&graph_connector(tmp.path(), &server, &f)).unwrap();
    let host = Host::open(&tmp.path().join("state")).unwrap();
    match host.run_once(&config, &RunOptions::default()) {
        Err(e) => assert!(e.to_string().contains("grant Mail.ReadWrite"), "{e}"),
        Ok(summary) => panic!("the run went on: {summary:?}"),
    }
    assert!(host.db().quarantine_count("graph-e2e").unwrap() == 0);

    // Bob outside the access policy: the others get everything.
    let server = GraphServer::start(GraphOptions {
        outside_policy: vec![USERS[1].to_string()],
        ..GraphOptions::new(&USERS, CLIENT_ID, SECRET)
    });
    let tmp = tempfile::tempdir().unwrap();
    let f = chat_fixture(tmp.path(), 20, None);
    let config = ConnectorConfig::load(&graph_connector(tmp.path(), &server, &f)).unwrap();
    let host = Host::open(&tmp.path().join("state")).unwrap();
    let summary = host.run_once(&config, &RunOptions::default()).unwrap();
    let for_bob = f.expected.get(USERS[1]).map_or(0, BTreeSet::len);
    let others: usize = f
        .expected
        .iter()
        .filter(|(u, _)| u.as_str() != USERS[1])
        .map(|(_, m)| m.len())
        .sum();
    assert!(for_bob > 0);
    assert_eq!(
        summary.counts.imported as usize, others,
        "{:?}",
        summary.counts
    );
    assert_eq!(
        summary.counts.failed as usize, for_bob,
        "{:?}",
        summary.counts
    );
    assert!(server.messages(USERS[1]).is_empty());
    assert!(server.violations().is_empty(), "{:#?}", server.violations());
}

#[test]
fn an_upload_session_that_never_completes_or_keeps_asking_for_the_same_bytes_fails_the_item_and_ends()
 {
    for broken in [BrokenUpload::NeverCreated, BrokenUpload::AsksFromZeroAgain] {
        let server = server(0);
        let alice = Mailbox::new(USERS[0]).unwrap();
        let (email, files) = email_with("broken", 1, "big".into(), &[3_100_000]);
        let batch = [symphony(&alice, &email)];
        server.break_uploads(Some(broken));
        let mut sink = sink(&server, SECRET);
        let results = sink.deliver(&batch);
        let err = results[0]
            .as_ref()
            .expect_err("a broken upload is not a delivery");
        assert!(err.is_retryable(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("never answered 201 Created") || text.contains("which it had been sent"),
            "{broken:?}: {text}"
        );
        // Once the server is mended, the next run delivers the item once.
        server.break_uploads(None);
        drop(sink);
        let mut next = self::sink(&server, SECRET);
        assert!(next.deliver(&batch)[0].is_ok());
        let expected = BTreeMap::from([(email.message_id.clone(), files)]);
        assert_holds(&server, USERS[0], &expected);
    }
}
