//! The IMAP sink against a real Dovecot started by the test (see
//! `connector_e2e::dovecot`): the real pipeline with the chat-export plugin
//! imports a few thousand messages (with attachments, one of 50 MB) into
//! several users' `INBOX/Symphony` through the master user; everything is
//! read back over an independent IMAP reader and compared byte for byte
//! (SHA-256) with what the ledger says was sent. A second run appends
//! nothing; Dovecot killed mid-import and started again loses and
//! duplicates nothing. Then the sink alone: a connection cut with
//! MULTIAPPENDs in flight (one stored, its answer lost; the next half
//! sent), TLS (implicit and STARTTLS)
//! with a private CA, a refused email in a MULTIAPPEND batch, refused
//! credentials, an Exchange-like server without MULTIAPPEND, per-user
//! logins, and append rates.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connector_e2e::chat_fixture::{
    ChatFixture, Paging, USERS, chat_fixture, connector_file, message_id_of, noise, synthetic_email,
};
use connector_e2e::dovecot::{
    Dovecot, DovecotOptions, ImapReader, MASTER_PASSWORD, MASTER_USER, master_sink_table,
};
use connector_email::Email;
use connector_host::config::ConnectorConfig;
use connector_host::pipeline::{Host, RunOptions};
use connector_model::Mailbox;
use connector_model::{Attachment, AttachmentData};
use connector_runtime::SecretStore;
use connector_secrets::SecretLookup;
use connector_sink::TlsMode;
use connector_sink::{Delivery, Sink, SinkError};
use connector_sink_imap::ImapSettings;
use connector_sink_imap::ImapSink;
use connector_sink_imap::{ImapAuthMethod, ImapSinkConfig};
use connector_state::RunOutcome;
use mail_parser::{MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};

const FOLDER: &str = "INBOX/Symphony";
const BIG: usize = 50 << 20;

fn users() -> Vec<(String, String)> {
    USERS
        .iter()
        .map(|u| {
            (
                u.to_string(),
                format!("{}-pass", &u[..u.find('@').unwrap()]),
            )
        })
        .collect()
}

fn dovecot(options: DovecotOptions) -> Dovecot {
    Dovecot::start(DovecotOptions {
        users: users(),
        ..options
    })
}

struct Setup {
    _tmp: tempfile::TempDir,
    config: ConnectorConfig,
    state: PathBuf,
    /// Mailbox → Message-IDs it must hold.
    expected: BTreeMap<String, BTreeSet<String>>,
    /// Message-ID → (attachment name, bytes) of messages with attachments.
    attachments: HashMap<String, (String, Vec<u8>)>,
}

/// A chat export of `n` messages in three conversations (every mailbox
/// gets messages from two), small inline attachments, and, when `big`, one
/// message with a 50 MB attachment; and a connector importing it over IMAP
/// into `INBOX/Symphony` through Dovecot's master user.
fn setup(n: usize, big: bool, port: u16, retries: u32, batch: u32) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let fixture = chat_fixture(root, n, big.then_some(BIG));
    let config = connector_file(
        root,
        "imap-e2e",
        &fixture,
        Paging {
            page_size: 250,
            retries,
        },
        &master_sink_table(port, 4, batch as usize),
        &format!("imap-master-password = \"{MASTER_PASSWORD}\"\n"),
    );
    let ChatFixture {
        expected,
        attachments,
        ..
    } = fixture;
    Setup {
        config: ConnectorConfig::load(&config).unwrap(),
        state: root.join("state"),
        _tmp: tmp,
        expected,
        attachments,
    }
}

/// Reads every user's folder back over IMAP and checks: exactly the
/// expected Message-IDs, once each; each email's SHA-256 is the one the
/// ledger recorded as sent; receipts name the UID it is stored under;
/// attachments come back intact. Returns how many emails were checked.
fn check_mailboxes(dovecot: &Dovecot, s: &Setup) -> usize {
    let host = Host::open(&s.state).unwrap();
    let ledger = host.db().ledger_entries("imap-e2e").unwrap();
    let by_key: HashMap<(String, String), _> = ledger
        .iter()
        .map(|e| ((e.mailbox.clone(), e.message_id.clone()), e))
        .collect();
    assert_eq!(
        by_key.len(),
        ledger.len(),
        "one ledger entry per (mailbox, email)"
    );
    let mut checked = 0;
    for user in USERS {
        let mut reader = ImapReader::login(dovecot.port(), user);
        assert!(
            reader.subscribed().iter().any(|f| f == FOLDER),
            "{user}: {FOLDER} subscribed"
        );
        let messages = reader.messages(FOLDER);
        let mut seen = BTreeSet::new();
        for (uid, bytes) in &messages {
            let mid = message_id_of(bytes);
            assert!(seen.insert(mid.clone()), "{user}: {mid} is there twice");
            let entry = by_key
                .get(&(user.to_string(), mid.clone()))
                .unwrap_or_else(|| panic!("{user}: {mid} is not in the ledger"));
            assert_eq!(
                hex::encode(Sha256::digest(bytes)),
                entry.email_sha256,
                "{user}: {mid} differs from what was sent"
            );
            if entry.receipt.contains(";UID=") {
                assert!(
                    entry
                        .receipt
                        .starts_with(&format!("imap:{user}/{FOLDER};UIDVALIDITY="))
                        && entry.receipt.ends_with(&format!(";UID={uid}")),
                    "{user}: receipt {} for UID {uid}",
                    entry.receipt
                );
            }
            if let Some((name, want)) = s.attachments.get(&mid) {
                let parsed = MessageParser::default().parse(bytes).unwrap();
                let att = parsed.attachments().next().expect("an attachment");
                assert_eq!(att.attachment_name(), Some(name.as_str()));
                assert!(att.contents() == want.as_slice(), "{user}: {name} intact");
            }
            checked += 1;
        }
        assert_eq!(
            &seen, &s.expected[user],
            "{user}: exactly the expected emails"
        );
        // Flags and INTERNALDATE of the first one.
        let first = &reader.run("UID FETCH 1:1 (FLAGS INTERNALDATE)")[0];
        let first = String::from_utf8_lossy(first);
        assert!(first.contains("\\Seen"), "{first}");
        assert!(
            first.contains("-Dec-2025 "),
            "INTERNALDATE is the send time: {first}"
        );
    }
    let entries_for_users = ledger.len();
    assert_eq!(
        checked, entries_for_users,
        "every ledger entry is in a mailbox"
    );
    checked
}

#[test]
fn thousands_of_emails_land_once_byte_for_byte_and_a_second_run_appends_nothing() {
    let dovecot = dovecot(DovecotOptions::default());
    let s = setup(1500, true, dovecot.port(), 2, 100);
    let deliveries: usize = s.expected.values().map(BTreeSet::len).sum();
    let host = Host::open(&s.state).unwrap();
    let started = Instant::now();
    let first = host.run_once(&s.config, &RunOptions::default()).unwrap();
    let took = started.elapsed();
    assert_eq!(first.outcome, RunOutcome::Succeeded, "{:?}", first.counts);
    assert_eq!(first.counts.items_from_source, 1500);
    assert_eq!(first.counts.imported as usize, deliveries);
    // Emails written ahead of their page count as imported by it, not as
    // found in the mailbox.
    assert_eq!(first.counts.skipped_duplicates, 0);
    assert_eq!(first.counts.failed, 0);
    eprintln!(
        "first run: {deliveries} emails (one with a 50 MB attachment, to 2 mailboxes) into {} mailboxes in {took:.2?}",
        USERS.len()
    );
    drop(host);
    let started = Instant::now();
    let checked = check_mailboxes(&dovecot, &s);
    eprintln!(
        "read back and compared {checked} emails in {:.2?}",
        started.elapsed()
    );
    assert_eq!(checked, deliveries);

    let on_disk: Vec<usize> = USERS
        .iter()
        .map(|u| dovecot.count_on_disk(u, FOLDER))
        .collect();
    let host = Host::open(&s.state).unwrap();
    let second = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(second.outcome, RunOutcome::Succeeded);
    assert_eq!(second.counts.imported, 0, "{:?}", second.counts);
    let again: Vec<usize> = USERS
        .iter()
        .map(|u| dovecot.count_on_disk(u, FOLDER))
        .collect();
    assert_eq!(on_disk, again, "the second run appended nothing");
}

#[test]
fn dovecot_killed_mid_import_then_restarted_loses_and_duplicates_nothing() {
    let dovecot = Arc::new(Mutex::new(dovecot(DovecotOptions::default())));
    let (port, alice_dir) = {
        let d = dovecot.lock().unwrap();
        (d.port(), d.maildir(USERS[0], FOLDER))
    };
    // Small MULTIAPPENDs, so the kill lands inside a page: some emails are
    // in the mailbox but not in the ledger.
    let s = setup(1500, false, port, 1, 20);
    let alice_expected = s.expected[USERS[0]].len();
    // Kill Dovecot (all its processes, as a crash would) once 40% of
    // alice's emails are on disk: in the third page of five.
    let killer = {
        let dovecot = dovecot.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let n = ["cur", "new"]
                    .iter()
                    .map(|sub| std::fs::read_dir(alice_dir.join(sub)).map_or(0, |d| d.count()))
                    .sum::<usize>();
                if n >= alice_expected * 2 / 5 || Instant::now() > deadline {
                    dovecot.lock().unwrap().kill();
                    return n;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let host = Host::open(&s.state).unwrap();
    let first = host.run_once(&s.config, &RunOptions::default());
    let at_kill = killer.join().unwrap();
    let err = first.expect_err("the run fails while Dovecot is down");
    eprintln!(
        "killed with {at_kill} of alice's {alice_expected} emails on disk; the run said: {err}"
    );
    assert!(at_kill < alice_expected, "killed mid-import");
    let recorded = host.db().ledger_entries("imap-e2e").unwrap().len();

    dovecot.lock().unwrap().restart();
    let second = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(second.outcome, RunOutcome::Succeeded);
    eprintln!(
        "after restart: {} recorded before, {} imported now, {} found already in the mailbox",
        recorded, second.counts.imported, second.counts.skipped_duplicates
    );
    assert!(
        second.counts.skipped_duplicates > 0,
        "the kill left emails in the mailbox that the ledger does not have; `contains` must find them"
    );
    assert_eq!(
        recorded as u64 + second.counts.imported + second.counts.skipped_duplicates,
        s.expected.values().map(|v| v.len() as u64).sum::<u64>()
    );
    drop(host);
    let deliveries: usize = s.expected.values().map(BTreeSet::len).sum();
    let d = dovecot.lock().unwrap();
    assert_eq!(check_mailboxes(&d, &s), deliveries);
}

// ---- the sink alone ---------------------------------------------------

/// `n` emails built by the host's converter from synthetic messages, each
/// about `size` bytes.
fn synthetic_emails(tag: &str, n: usize, size: usize) -> Vec<Email> {
    (0..n)
        .map(|i| {
            let text = format!("message {i} {}", "x".repeat(size.saturating_sub(1200)));
            synthetic_email(&format!("{tag}-{i}"), i, text, Vec::new())
        })
        .collect()
}

fn with_attachment(tag: &str, bytes: Vec<u8>) -> Email {
    let attachment = Attachment {
        id: "a".into(),
        file_name: "data.bin".into(),
        media_type: None,
        data: AttachmentData::Bytes(bytes),
    };
    synthetic_email(tag, 0, "see attached".into(), vec![attachment])
}

fn sink_config(port: u16, tls: TlsMode, auth: ImapAuthMethod) -> ImapSinkConfig {
    ImapSinkConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        tls,
        ca_file: None,
        auth,
        master_user: Some(MASTER_USER.into()),
        master_separator: "*".into(),
        password_secret: Some(match auth {
            ImapAuthMethod::Login => "imap-password-{mailbox}".into(),
            _ => "imap-master-password".into(),
        }),
        token_secret: None,
        tenant: None,
        client_id: None,
        client_secret_secret: None,
        login_url: None,
        max_connections: 4,
        mailbox_connections: 4,
        batch_messages: 100,
        batch_mb: 32,
        timeout_secs: 30,
    }
}

fn secrets(master_password: &str) -> Arc<dyn SecretLookup> {
    let mut pairs = vec![(
        "imap-master-password".to_string(),
        master_password.to_string(),
    )];
    for (user, pass) in users() {
        pairs.push((format!("imap-password-{user}"), pass));
    }
    Arc::new(SecretStore::from_pairs(pairs))
}

fn open(config: &ImapSinkConfig, master_password: &str) -> Result<ImapSink, SinkError> {
    ImapSink::new(
        ImapSettings::from_config(config).unwrap(),
        secrets(master_password),
    )
}

fn deliver_all(
    sink: &mut ImapSink,
    user: &Mailbox,
    emails: &[Email],
) -> Vec<Result<String, SinkError>> {
    let batch: Vec<Delivery<'_>> = emails
        .iter()
        .map(|email| Delivery {
            mailbox: user,
            folder: FOLDER,
            email,
        })
        .collect();
    sink.deliver(&batch)
        .into_iter()
        .map(|r| r.map(|receipt| receipt.0))
        .collect()
}

fn assert_stored(dovecot: &Dovecot, user: &str, emails: &[Email]) {
    let stored = ImapReader::login(dovecot.port(), user).messages(FOLDER);
    let stored: Vec<&Vec<u8>> = stored.iter().map(|(_, b)| b).collect();
    assert_eq!(stored.len(), emails.len(), "{user}: count");
    for (i, (a, b)) in stored.iter().zip(emails).enumerate() {
        assert!(a[..] == b.bytes().unwrap()[..], "{user}: email {i} differs");
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it (PEM).
fn private_ca() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "connector test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[test]
fn tls_and_starttls_verify_the_server_against_the_ca_file() {
    let (ca_pem, cert_pem, key_pem) = private_ca();
    let dovecot = dovecot(DovecotOptions {
        tls: Some((cert_pem, key_pem)),
        ..DovecotOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let alice = Mailbox::new(USERS[0]).unwrap();
    let emails = synthetic_emails("tls", 30, 2000);

    let mut implicit = sink_config(
        dovecot.imaps_port().unwrap(),
        TlsMode::Implicit,
        ImapAuthMethod::Master,
    );
    implicit.ca_file = Some(ca_file.clone());
    let mut sink = open(&implicit, MASTER_PASSWORD).unwrap();
    assert!(
        deliver_all(&mut sink, &alice, &emails[..15])
            .iter()
            .all(Result::is_ok)
    );

    let mut starttls = sink_config(dovecot.port(), TlsMode::Starttls, ImapAuthMethod::Master);
    starttls.ca_file = Some(ca_file);
    let mut sink = open(&starttls, MASTER_PASSWORD).unwrap();
    assert!(
        sink.contains(&alice, FOLDER, &emails[0].message_id)
            .unwrap()
    );
    assert!(
        deliver_all(&mut sink, &alice, &emails)
            .iter()
            .all(Result::is_ok)
    );
    assert_stored(&dovecot, USERS[0], &emails);

    // Without the private CA the certificate is not trusted: a settings
    // error, not something to retry.
    let untrusted = sink_config(
        dovecot.imaps_port().unwrap(),
        TlsMode::Implicit,
        ImapAuthMethod::Master,
    );
    let mut sink = open(&untrusted, MASTER_PASSWORD).unwrap();
    let err = sink.contains(&alice, FOLDER, "x@y").unwrap_err();
    assert!(matches!(err, SinkError::Setup { .. }), "{err}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("ca-file"), "{err}");
}

#[test]
fn an_oversized_email_is_refused_alone_while_the_rest_of_its_batch_lands() {
    let dovecot = dovecot(DovecotOptions {
        max_mail_size: Some("100k".into()),
        ..DovecotOptions::default()
    });
    let bob = Mailbox::new(USERS[1]).unwrap();
    let mut emails = synthetic_emails("quota", 6, 2000);
    emails[3] = with_attachment("too-big", noise(200_000, 7));
    let mut sink = open(
        &sink_config(dovecot.port(), TlsMode::None, ImapAuthMethod::Master),
        MASTER_PASSWORD,
    )
    .unwrap();
    let results = deliver_all(&mut sink, &bob, &emails);
    for (i, r) in results.iter().enumerate() {
        if i == 3 {
            let err = r.as_ref().unwrap_err();
            assert!(matches!(err, SinkError::Refused { .. }), "{err}");
            assert!(!err.is_retryable());
            // Dovecot answers `NO [LIMIT] Mail size is larger than…`.
            assert!(err.to_string().contains("Mail size is larger"), "{err}");
        } else {
            assert!(r.is_ok(), "{i}: {r:?}");
        }
    }
    let mut kept = emails.clone();
    kept.remove(3);
    assert_stored(&dovecot, USERS[1], &kept);
}

/// A loopback proxy to `port` that cuts its first connection once the
/// client has sent `cut_after` bytes: nothing more reaches the server, and
/// nothing more the server says reaches the client; the connection is
/// closed (both ways) once the server has answered an APPEND since (or
/// after 10 s). Later connections pass. Returns its port.
fn cutting_proxy(port: u16, cut_after: usize) -> u16 {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (n, client) in listener.incoming().enumerate() {
            let Ok(mut client) = client else { return };
            let mut server = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let (mut from_server, mut to_client) =
                (server.try_clone().unwrap(), client.try_clone().unwrap());
            let cut = Arc::new(AtomicBool::new(false));
            let (answered_tx, answered) = std::sync::mpsc::channel();
            let cutting = cut.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0; 16 << 10];
                while let Ok(read @ 1..) = from_server.read(&mut buf) {
                    if !cutting.load(Ordering::SeqCst) {
                        if to_client.write_all(&buf[..read]).is_err() {
                            break;
                        }
                    } else if buf[..read].windows(10).any(|w| w == b"[APPENDUID") {
                        let _ = answered_tx.send(());
                    }
                }
            });
            std::thread::spawn(move || {
                let limit = if n == 0 { cut_after } else { usize::MAX };
                let mut sent = 0;
                let mut buf = vec![0; 16 << 10];
                while let Ok(read @ 1..) = client.read(&mut buf) {
                    let take = read.min(limit - sent);
                    if server.write_all(&buf[..take]).is_err() {
                        break;
                    }
                    sent += take;
                    if sent == limit {
                        cut.store(true, Ordering::SeqCst);
                        let _ = answered.recv_timeout(Duration::from_secs(10));
                        break;
                    }
                }
                let _ = server.shutdown(Shutdown::Both);
                let _ = client.shutdown(Shutdown::Both);
            });
        }
    });
    proxy_port
}

#[test]
fn a_connection_cut_inside_pipelined_multiappends_loses_and_duplicates_nothing() {
    let dovecot = dovecot(DovecotOptions::default());
    let carol = Mailbox::new(USERS[2]).unwrap();
    let emails = synthetic_emails("cut", 100, 2000);
    let batch_bytes: usize = emails[..20].iter().map(|e| e.len() as usize).sum();
    // Cut halfway into the second MULTIAPPEND of 20: the first may have
    // been stored without its answer reaching the sink.
    let port = cutting_proxy(dovecot.port(), batch_bytes * 3 / 2);
    let mut config = sink_config(port, TlsMode::None, ImapAuthMethod::Master);
    config.batch_messages = 20;
    let mut sink = open(&config, MASTER_PASSWORD).unwrap();
    let first = deliver_all(&mut sink, &carol, &emails);
    let failed: Vec<Email> = emails
        .iter()
        .zip(&first)
        .filter(|(_, r)| r.is_err())
        .map(|(e, _)| e.clone())
        .collect();
    assert!(!failed.is_empty(), "the cut failed nothing");
    assert_eq!(
        dovecot.count_on_disk(USERS[2], FOLDER),
        20,
        "the first MULTIAPPEND was stored before the cut"
    );
    for r in first.iter().filter_map(|r| r.as_ref().err()) {
        assert!(r.is_retryable(), "{r}");
    }
    // What the pipeline does next: deliver what failed again.
    let second = deliver_all(&mut sink, &carol, &failed);
    assert!(second.iter().all(Result::is_ok), "{second:?}");
    assert_stored(&dovecot, USERS[2], &emails);
}

#[test]
fn refused_credentials_are_not_retried_and_name_what_to_fix() {
    let dovecot = dovecot(DovecotOptions::default());
    let config = sink_config(dovecot.port(), TlsMode::None, ImapAuthMethod::Master);
    let alice = Mailbox::new(USERS[0]).unwrap();
    let mut wrong = open(&config, "not-the-password").unwrap();
    let err = wrong.contains(&alice, FOLDER, "x@y").unwrap_err();
    assert!(matches!(err, SinkError::Authentication { .. }), "{err}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("master password"), "{err}");

    let mut right = open(&config, MASTER_PASSWORD).unwrap();
    let stranger = Mailbox::new("nobody-here@example.test").unwrap();
    let err = right.contains(&stranger, FOLDER, "x@y").unwrap_err();
    assert!(matches!(err, SinkError::Authentication { .. }), "{err}");
    assert!(
        err.to_string().contains("nobody-here@example.test"),
        "{err}"
    );
}

#[test]
fn per_user_logins_import_into_each_users_own_mailbox() {
    let dovecot = dovecot(DovecotOptions::default());
    let config = sink_config(dovecot.port(), TlsMode::None, ImapAuthMethod::Login);
    let mut sink = open(&config, "unused").unwrap();
    let emails = synthetic_emails("login", 10, 1500);
    for user in USERS {
        let mb = Mailbox::new(user).unwrap();
        assert!(
            deliver_all(&mut sink, &mb, &emails)
                .iter()
                .all(Result::is_ok)
        );
    }
    for user in USERS {
        assert_stored(&dovecot, user, &emails);
    }
}

/// Appends `emails` into every user's folder in one batch; returns emails
/// per second.
fn append_rate(dovecot: &Dovecot, emails: &[Email], connections: u32) -> f64 {
    let mut config = sink_config(dovecot.port(), TlsMode::None, ImapAuthMethod::Master);
    config.max_connections = connections;
    let mut sink = open(&config, MASTER_PASSWORD).unwrap();
    let boxes: Vec<Mailbox> = USERS.iter().map(|u| Mailbox::new(u).unwrap()).collect();
    for mb in &boxes {
        assert!(!sink.contains(mb, FOLDER, &emails[0].message_id).unwrap());
    }
    let batch: Vec<Delivery<'_>> = boxes
        .iter()
        .flat_map(|mb| {
            emails.iter().map(move |email| Delivery {
                mailbox: mb,
                folder: FOLDER,
                email,
            })
        })
        .collect();
    let started = Instant::now();
    let results = sink.deliver(&batch);
    let took = started.elapsed();
    assert!(results.iter().all(Result::is_ok));
    batch.len() as f64 / took.as_secs_f64()
}

#[test]
fn exchange_like_servers_without_multiappend_get_pipelined_appends() {
    let emails = synthetic_emails("rate", 1000, 3000);
    let multi = dovecot(DovecotOptions::default());
    let multi_rate = append_rate(&multi, &emails, 4);
    let exchange = dovecot(DovecotOptions {
        capability: Some("IMAP4rev1 LITERAL+ SASL-IR UIDPLUS AUTH=PLAIN UNSELECT".into()),
        ..DovecotOptions::default()
    });
    let single_rate = append_rate(&exchange, &emails, 4);
    eprintln!(
        "append rates, 4 mailboxes x 1000 emails of ~3 KB, 4 connections: MULTIAPPEND+LITERAL+ {multi_rate:.0}/s; pipelined single APPENDs {single_rate:.0}/s"
    );
    for user in USERS {
        assert_stored(&exchange, user, &emails);
        assert_stored(&multi, user, &emails);
    }
    // Every email got a receipt with its UID from APPENDUID (checked in
    // the unit tests); here: the fallback really sent single APPENDs.
    let log = exchange.log();
    assert!(!log.contains("BAD"), "{log}");
}
