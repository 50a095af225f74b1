//! The Microsoft Graph sink against a local server that speaks Graph's
//! request and error shapes and checks every request
//! (`connector_e2e::graph_server`): the real pipeline with the chat-export
//! plugin imports a few hundred messages (small attachments inline, one of
//! 3.5 MB through an upload session) into four mailboxes' `Inbox/Symphony`,
//! with 429s injected. What the server stored is read back and compared
//! field by field with the source and the ledger; a second run (which
//! pages through each folder's Message-IDs) creates nothing. Then the sink
//! alone: an expired token is renewed once, a wrong client secret is fatal,
//! an unknown mailbox is refused without holding up the others.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use connector_e2e::chat_fixture::{Paging, USERS, chat_fixture, connector_file, synthetic_email};
use connector_e2e::graph_server::{Counts, GraphOptions, GraphServer};
use connector_email::Email;
use connector_host::config::ConnectorConfig;
use connector_host::pipeline::{Host, RunOptions};
use connector_model::Mailbox;
use connector_runtime::SecretStore;
use connector_sink::{Delivery, Sink, SinkError};
use connector_sink_graph::GraphSettings;
use connector_sink_graph::GraphSink;
use connector_sink_graph::GraphSinkConfig;
use connector_sink_graph::UPLOAD_SESSION_MIN;
use connector_state::RunOutcome;

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

#[test]
fn a_run_creates_every_email_once_as_sent_mail_and_a_second_run_creates_nothing() {
    let server = server(97);
    let tmp = tempfile::tempdir().unwrap();
    let f = chat_fixture(tmp.path(), 300, Some(BIG));
    let sink = format!(
        r#"[sink]
kind = "graph"
tenant = "contoso.example"
client-id = "{CLIENT_ID}"
client-secret-secret = "graph-client-secret"
graph-url = "{}"
login-url = "{}"
max-concurrency = 8
"#,
        server.graph_url(),
        server.login_url()
    );
    let path = connector_file(
        tmp.path(),
        "graph-e2e",
        &f,
        Paging::default(),
        &sink,
        &format!("graph-client-secret = \"{SECRET}\"\n"),
    );
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
        timeout_secs: 30,
    };
    GraphSink::new(
        GraphSettings::from_config(&config).unwrap(),
        Arc::new(SecretStore::from_pairs([(
            "graph-client-secret".to_string(),
            secret.to_string(),
        )])),
    )
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
