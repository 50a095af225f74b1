//! The Symphony plugin, built to wasm32-wasip2, run by the real host against
//! the Symphony simulator over real HTTP into a Maildir. Every email is
//! parsed back and compared with the simulator's ground truth; runs with
//! injected faults (throttling, expired sessions, server errors, dropped
//! connections) must end with byte-identical mailboxes. A pod where the
//! service account is a member of half the streams gives it those streams,
//! exactly, and names the others with the fix; with the datahose read for
//! messages too, the whole pod arrives exactly once while the datahose
//! re-delivers and reorders. Streams come and go between runs: a new one is
//! archived whole by the next run as a partition of its own; one deactivated
//! or left by the account keeps its archive, ledger and checkpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use base64::Engine as _;
use connector_e2e::symphony::{SymphonyConnector, symphony_connector_file};
use connector_e2e::*;
use connector_email::EmailConverter;
use connector_host::config::ConnectorConfig;
use connector_host::pipeline::{Host, RunOptions, RunSummary};
use connector_model::Person;
use connector_state::{FailureKind, RunOutcome};
use mail_parser::{Encoding, Message, MessageParser, MessagePart, MimeHeaders};
use sha2::{Digest, Sha256};
use symphony_sim::{
    BlockingSim, DatahoseConfig, Faults, GroundTruth, Membership, Relation, SimConfig,
    SuppressionMode, TruthEvent, TruthMessage, normalize_text, start_blocking,
};

const FOLDER_ON_DISK: &str = ".INBOX.Symphony";
const DOMAIN: &str = "acme-capital.example";
const BIN: &str = env!("CARGO_BIN_EXE_connector-cli");

struct Setup {
    _tmp: tempfile::TempDir,
    config: ConnectorConfig,
    state: PathBuf,
    mail: PathBuf,
}

/// Installs the plugin and writes a connector file for the simulator at
/// `base`, with the private key in a 0600 secrets file.
fn setup(base: &str, page_size: u32) -> Setup {
    setup_with(base, page_size, "")
}

/// [`setup`], with more lines for the `[plugin-config]` table.
fn setup_with(base: &str, page_size: u32, plugin_config: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = symphony_connector_file(
        root,
        &SymphonyConnector {
            id: "symphony-e2e",
            base,
            retries: 12,
            page_size,
            domain: DOMAIN,
            sink: "[sink]\nkind = \"maildir\"\npath = \"mail\"\nfsync = false\n",
            extra_secrets: "",
        },
    );
    let text = std::fs::read_to_string(&config).unwrap();
    let page_line = format!("page_size = {page_size}\n");
    assert!(text.contains(&page_line));
    std::fs::write(
        &config,
        text.replacen(&page_line, &format!("{page_line}{plugin_config}\n"), 1),
    )
    .unwrap();
    Setup {
        config: ConnectorConfig::load(&config).unwrap(),
        state: root.join("state"),
        mail: root.join("mail"),
        _tmp: tmp,
    }
}

/// A pod whose service account was added to every stream: everything is
/// readable through the message API.
fn sim_config(messages: usize) -> SimConfig {
    SimConfig::builder()
        .seed(20_240_101)
        .messages(messages)
        .large_attachment_bytes(0)
        .max_small_attachment_bytes(48 * 1024)
        .suppressions(SuppressionMode::Pending)
        .membership(Membership::All)
        .build()
}

/// The ids of the streams the service account is not in, sorted.
fn outside_streams(truth: &GroundTruth) -> Vec<&str> {
    let mut outside: Vec<&str> = truth
        .streams
        .iter()
        .filter(|s| !s.service_member)
        .map(|s| s.stream_id.as_str())
        .collect();
    outside.sort_unstable();
    outside
}

fn sim(config: SimConfig) -> BlockingSim {
    start_blocking(config).expect("the simulator starts")
}

/// Runs until a run succeeds (a run may give up on a long streak of
/// injected faults; the next one resumes at its checkpoint).
fn run_to_success(host: &Host, s: &Setup) -> Vec<RunSummary> {
    let mut runs = Vec::new();
    for _ in 0..4 {
        match host.run_once(&s.config, &RunOptions::default()) {
            Ok(summary) if summary.outcome == RunOutcome::Succeeded => {
                runs.push(summary);
                return runs;
            }
            Ok(summary) => runs.push(summary),
            Err(e) => eprintln!("run failed, running again: {e}"),
        }
    }
    panic!("no run succeeded: {runs:?}");
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// The mailbox of an address the mapping maps (the pod's own domain);
/// external people have addresses of their companies, which map to none.
fn mapped(email: &str) -> Option<String> {
    let email = lower(email);
    email.ends_with(&format!("@{DOMAIN}")).then_some(email)
}

/// A source item: a message, the deletion record of a suppressed one, or
/// a room event of the datahose (join, leave, update).
#[derive(Clone, Copy)]
enum Item<'a> {
    Message(&'a TruthMessage),
    Deletion(&'a TruthMessage),
    Event(&'a TruthEvent),
}

/// What one (source) item should look like, and where it should land.
struct Expected<'a> {
    item: Item<'a>,
    mailboxes: BTreeSet<String>,
    /// Mailboxes that may also receive it (the suppression's initiator).
    optional: BTreeSet<String>,
}

fn expectations(truth: &GroundTruth) -> BTreeMap<String, Expected<'_>> {
    let officer = truth
        .users
        .iter()
        .filter(|u| !u.external && u.email.is_some() && u.account_type == "NORMAL")
        .min_by_key(|u| u.user_id)
        .and_then(|u| u.email.clone())
        .map(|e| lower(&e));
    let mut out = BTreeMap::new();
    for m in &truth.messages {
        let stream = truth.stream(&m.stream_id).unwrap();
        let members: BTreeSet<String> = stream
            .members
            .iter()
            .filter_map(|p| p.email.as_deref().and_then(mapped))
            .collect();
        let mut mailboxes = members.clone();
        mailboxes.extend(m.sender_email.as_deref().and_then(mapped));
        // The tests apply suppressions after a first run: every message was
        // listed once, and stays archived.
        out.insert(
            m.message_id.clone(),
            Expected {
                item: Item::Message(m),
                mailboxes: mailboxes.clone(),
                optional: BTreeSet::new(),
            },
        );
        if m.suppression_applied {
            let mut optional: BTreeSet<String> = officer.iter().cloned().collect();
            optional.extend(m.sender_email.as_deref().and_then(mapped));
            out.insert(
                format!("suppression-{}", m.message_id),
                Expected {
                    item: Item::Deletion(m),
                    mailboxes: members,
                    optional,
                },
            );
        }
    }
    // Room events the datahose holds (with its history): every member's.
    let room_events = ["USERJOINEDROOM", "USERLEFTROOM", "ROOMUPDATED"];
    for ev in truth
        .events
        .iter()
        .filter(|e| room_events.contains(&e.event_type.as_str()))
    {
        let stream = truth.stream(&ev.stream_id).unwrap();
        out.insert(
            format!("event-{}", ev.event_id),
            Expected {
                item: Item::Event(ev),
                mailboxes: stream
                    .members
                    .iter()
                    .filter_map(|p| p.email.as_deref().and_then(mapped))
                    .collect(),
                optional: BTreeSet::new(),
            },
        );
    }
    out
}

/// Checks the email of a room event: its conversation, kind and time.
fn check_event(id: &str, ev: &TruthEvent, parsed: &Message<'_>) {
    assert_eq!(
        header(parsed, "X-Connector-Conversation-Id").as_deref(),
        Some(ev.stream_id.as_str()),
        "{id}"
    );
    let kind = match ev.event_type.as_str() {
        "USERJOINEDROOM" => "member-joined",
        "USERLEFTROOM" => "member-left",
        _ => "system",
    };
    assert_eq!(
        header(parsed, "X-Connector-Message-Kind").as_deref(),
        Some(kind),
        "{id}"
    );
    assert_eq!(
        parsed.date().unwrap().to_timestamp(),
        ev.timestamp.div_euclid(1000),
        "{id} Date"
    );
}

fn header(parsed: &Message<'_>, name: &str) -> Option<String> {
    parsed.header_raw(name).map(|v| v.trim().to_string())
}

/// The body text without the host's relation lines (a quoted message it
/// replies to, "In reply to an earlier message", … and a blank line).
fn body_without_context(parsed: &Message<'_>) -> String {
    let text = parsed
        .body_text(0)
        .map(|t| t.replace("\r\n", "\n"))
        .unwrap_or_default();
    let first = text.lines().next().unwrap_or_default();
    let context = ["In reply to ", "Forwarded from ", "Edit of ", "Deletes "];
    let quoting = first.starts_with("On ") && first.ends_with(" wrote:");
    if quoting || context.iter().any(|c| first.starts_with(c)) {
        text.split_once("\n\n")
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default()
    } else {
        text
    }
}

/// The text the plugin should give: the ground truth's, with mentions
/// followed by the user's email and table cells separated by ` | `.
fn expected_text(truth: &GroundTruth, m: &TruthMessage) -> String {
    let mut text = m.text.clone();
    let mut mentioned: Vec<i64> = m.mentions.clone();
    mentioned.sort_unstable();
    mentioned.dedup();
    for id in mentioned {
        let user = truth.user(id).unwrap();
        if let Some(email) = &user.email {
            let at = format!("@{}", user.display_name);
            text = text.replace(&at, &format!("{at} <{email}>"));
        }
    }
    text.replace('\t', " | ")
}

/// An attachment's bytes as stored. mail-parser hands text parts back
/// decoded to UTF-8 (lossily); those are decoded from the raw transfer
/// encoding instead.
fn attachment_bytes(raw: &[u8], part: &MessagePart<'_>) -> Vec<u8> {
    if !part.is_text() {
        return part.contents().to_vec();
    }
    let body = &raw[part.raw_body_offset() as usize..part.raw_end_offset() as usize];
    match part.encoding {
        Encoding::Base64 => {
            let compact: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .expect("base64 attachment")
        }
        Encoding::QuotedPrintable => {
            // The line break before the boundary is the boundary's.
            let body = body.strip_suffix(b"\r\n").unwrap_or(body);
            let mut out = Vec::with_capacity(body.len());
            let mut i = 0;
            while i < body.len() {
                match body[i] {
                    b'=' if body[i + 1..].starts_with(b"\r\n") => i += 3,
                    b'=' if body[i + 1..].starts_with(b"\n") => i += 2,
                    b'=' => {
                        let hex = std::str::from_utf8(&body[i + 1..i + 3]).unwrap();
                        out.push(u8::from_str_radix(hex, 16).expect("quoted-printable"));
                        i += 3;
                    }
                    b => {
                        out.push(b);
                        i += 1;
                    }
                }
            }
            out
        }
        Encoding::None => part.contents().to_vec(),
    }
}

/// Checks one email against the ground truth.
fn check_email(
    converter: &EmailConverter,
    truth: &GroundTruth,
    id: &str,
    e: &Expected<'_>,
    raw: &[u8],
    parsed: &Message<'_>,
) {
    assert_eq!(
        header(parsed, "X-Connector-Message-Id").as_deref(),
        Some(id)
    );
    let m = match e.item {
        Item::Event(ev) => return check_event(id, ev, parsed),
        Item::Message(m) | Item::Deletion(m) => m,
    };
    let stream = truth.stream(&m.stream_id).unwrap();
    assert_eq!(
        header(parsed, "X-Connector-Conversation-Id").as_deref(),
        Some(m.stream_id.as_str()),
        "{id}"
    );
    let kind = header(parsed, "X-Connector-Message-Kind").unwrap();
    let sha = header(parsed, "X-Connector-Source-SHA256").unwrap();
    assert!(
        sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    let to: BTreeSet<String> = parsed
        .to()
        .map(|list| list.iter().filter_map(|a| a.address()).map(lower).collect())
        .unwrap_or_default();
    let want_to: BTreeSet<String> = stream
        .members
        .iter()
        .map(|p| {
            lower(&converter.address_of(&Person {
                id: p.user_id.to_string(),
                display_name: Some(p.display_name.clone()),
                email: p.email.clone(),
            }))
        })
        .collect();
    assert_eq!(
        to, want_to,
        "{id}: every member, past and external ones included"
    );
    if matches!(e.item, Item::Deletion(_)) {
        assert_eq!(kind, "deletion", "{id}");
        assert_eq!(
            header(parsed, "X-Connector-Deletes").as_deref(),
            Some(m.message_id.as_str())
        );
        assert_eq!(
            parsed.date().unwrap().to_timestamp(),
            m.suppressed_at.unwrap().div_euclid(1000),
            "{id} Date"
        );
        return;
    }
    assert_eq!(
        parsed.date().unwrap().to_timestamp(),
        m.timestamp.div_euclid(1000),
        "{id} Date"
    );
    let from = parsed
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(lower)
        .unwrap();
    match &m.sender_email {
        Some(email) => assert_eq!(from, lower(email), "{id} From"),
        None => assert!(from.ends_with(".invalid"), "{id} placeholder From {from}"),
    }
    assert_eq!(
        header(parsed, "X-Connector-Sender-Id"),
        Some(m.sender_user_id.to_string())
    );
    let external: Vec<String> = stream
        .members
        .iter()
        .filter(|p| p.external)
        .map(|p| p.user_id.to_string())
        .collect();
    assert_eq!(
        header(parsed, "X-Connector-Property-External-Participants"),
        (!external.is_empty()).then(|| external.join(",")),
        "{id}: the external members are named"
    );
    match &m.replacing {
        Some(target) => {
            assert_eq!(kind, "edit", "{id}");
            assert_eq!(header(parsed, "X-Connector-Edit-Of").as_ref(), Some(target));
            assert_eq!(
                header(parsed, "X-Connector-Property-Initial-Message-Id"),
                m.initial_message_id
            );
        }
        None => assert_eq!(kind, "chat", "{id}"),
    }
    let (reply, forward) = (
        header(parsed, "X-Connector-Reply-To"),
        header(parsed, "X-Connector-Forward-Of"),
    );
    match m.relation {
        Some(Relation::Reply) => {
            assert_eq!(reply, m.parent_message_id, "{id} reply");
            assert_eq!(forward, None);
            assert_eq!(
                parsed.in_reply_to().as_text().map(str::to_string),
                Some(converter.message_id(m.parent_message_id.as_deref().unwrap()))
            );
        }
        // A forward whose original the account cannot see (not a member of
        // its stream, and not yet seen on the datahose) is kept as a reply
        // to it, marked unknown.
        Some(Relation::Forward)
            if header(parsed, "X-Connector-Property-Parent-Relation").as_deref()
                == Some("unknown") =>
        {
            assert_eq!(reply, m.parent_message_id, "{id} unknown parent");
            let parent = truth.message(m.parent_message_id.as_deref().unwrap());
            let hidden =
                parent.is_some_and(|p| !truth.stream(&p.stream_id).unwrap().service_member);
            assert!(hidden, "{id}: only a hidden original is unknown");
        }
        Some(Relation::Forward) => {
            assert_eq!(forward, m.parent_message_id, "{id} forward");
            assert_eq!(reply, None);
        }
        None => assert_eq!((reply, forward), (None, None), "{id}"),
    }
    assert_eq!(
        header(parsed, "X-Connector-Property-Stream-Type").as_deref(),
        Some(m.stream_type.as_str())
    );
    if let Some(name) = &stream.name {
        let subject = parsed.subject().unwrap();
        assert_eq!(subject.trim_start_matches("Edited: "), name, "{id} subject");
    }
    // A wall post sharing a message shows it after its own text, with its
    // files after its own.
    let shared = m
        .shared_message_id
        .as_deref()
        .map(|s| truth.message(s).unwrap());
    let files: Vec<_> = m
        .attachments
        .iter()
        .chain(shared.iter().flat_map(|s| &s.attachments))
        .collect();
    // The pod serves a stream's files to its members only: those of other
    // streams (messages from the datahose) are named after the text, with
    // why and how to get them.
    let body = body_without_context(parsed);
    let (text, note) = match body.find("Files not archived (") {
        Some(at) => (body[..at].trim_end().to_string(), Some(&body[at..])),
        None => (body.clone(), None),
    };
    if !stream.service_member && !files.is_empty() {
        let note = note.unwrap_or_else(|| panic!("{id}: the files are named: {body}"));
        assert!(note.contains("not a member"), "{id}: {note}");
        assert!(note.contains("add the service account"), "{id}: {note}");
        for a in &files {
            assert!(
                note.contains(&format!("- {} ({} bytes, id ", a.name, a.size)),
                "{id}: {note}"
            );
        }
    } else {
        assert_eq!(note, None, "{id}");
    }
    if !m.text.is_empty() {
        let got = text;
        let mut want = expected_text(truth, m);
        if let Some(shared) = shared {
            let author = truth.user(shared.sender_user_id).unwrap();
            let author = match &author.email {
                Some(email) => format!("{} <{email}>", author.display_name),
                None => author.display_name.clone(),
            };
            want = format!(
                "{want}\n\nShared message from {author}:\n{}",
                expected_text(truth, shared)
            );
        }
        assert_eq!(normalize_text(&got), normalize_text(&want), "{id}: text");
        if m.text_chars >= 60_000 {
            assert!(
                got.chars().count() >= 60_000,
                "{id}: the long message is whole"
            );
        }
        assert!(
            parsed.body_html(0).is_some(),
            "{id}: an HTML body beside the text"
        );
    }
    // Images the markup embeds arrive inline: each part the HTML names by
    // its Content-ID, in order, the post's own before a shared message's.
    let embedded: Vec<_> = m
        .inline_images
        .iter()
        .chain(shared.iter().flat_map(|s| &s.inline_images))
        .collect();
    let html = parsed.body_html(0).unwrap_or_default();
    let inline: Vec<(String, String)> = parsed
        .attachments()
        .filter_map(|a| {
            let cid = a.content_id()?;
            assert!(
                html.contains(&format!("<img src=\"cid:{cid}\"")),
                "{id}: {html}"
            );
            assert_eq!(a.content_disposition().unwrap().ctype(), "inline", "{id}");
            Some((
                a.content_type()
                    .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or_default()))
                    .unwrap_or_default(),
                hex::encode(Sha256::digest(attachment_bytes(raw, a))),
            ))
        })
        .collect();
    let want_inline: Vec<(String, String)> = embedded
        .iter()
        .map(|i| (i.media_type.clone(), i.sha256.clone()))
        .collect();
    assert_eq!(inline, want_inline, "{id}: inline images byte for byte");
    let got: Vec<(String, String)> = parsed
        .attachments()
        .filter(|a| a.content_id().is_none())
        .map(|a| {
            (
                a.attachment_name().unwrap_or_default().to_string(),
                hex::encode(Sha256::digest(attachment_bytes(raw, a))),
            )
        })
        .collect();
    let want: Vec<(String, String)> = if stream.service_member {
        files
            .iter()
            .map(|a| (a.name.clone(), a.sha256.clone()))
            .collect()
    } else {
        let named = header(parsed, "X-Connector-Property-Unfetched-Attachments");
        assert_eq!(named.is_some(), !files.is_empty(), "{id}: {named:?}");
        Vec::new()
    };
    assert_eq!(got, want, "{id}: attachments byte for byte");
}

/// Checks every mailbox against the ground truth: each item exactly once in
/// each mapped participant's `INBOX/Symphony`, nothing else; returns
/// (mailbox, Message-ID) → SHA-256 of the email.
fn check_archive(s: &Setup, truth: &GroundTruth) -> BTreeMap<(String, String), String> {
    check_archive_of(s, truth, truth)
}

/// [`check_archive`] for the items of `expected` (part of the pod), each
/// checked against the whole pod's `truth` (the messages it shares, the
/// people it names).
fn check_archive_of(
    s: &Setup,
    expected: &GroundTruth,
    truth: &GroundTruth,
) -> BTreeMap<(String, String), String> {
    let converter = EmailConverter::new("symphony", "Symphony");
    let expected = expectations(expected);
    let by_message_id: BTreeMap<String, (&String, &Expected<'_>)> = expected
        .iter()
        .map(|(id, e)| (converter.message_id(id), (id, e)))
        .collect();
    let mut snapshot = BTreeMap::new();
    let mut checked: BTreeMap<String, String> = BTreeMap::new();
    let mut seen: BTreeMap<&String, BTreeSet<String>> = BTreeMap::new();
    for mailbox in mailboxes(&s.mail) {
        for stored in maildir_emails(&s.mail, &mailbox, FOLDER_ON_DISK) {
            let parsed = MessageParser::default()
                .parse(&stored.bytes)
                .expect("the email parses");
            if !checked.contains_key(parsed.message_id().unwrap_or_default()) {
                connector_e2e::transcripts::check_rfc5322(&stored.bytes);
            }
            let mid = parsed.message_id().expect("a Message-ID").to_string();
            let (id, e) = by_message_id
                .get(&mid)
                .unwrap_or_else(|| panic!("{mailbox}: unexpected email {mid}"));
            assert!(
                e.mailboxes.contains(&mailbox) || e.optional.contains(&mailbox),
                "{mailbox} received {id}, which it should not"
            );
            assert!(
                seen.entry(id).or_default().insert(mailbox.clone()),
                "{mailbox}: {id} delivered twice"
            );
            let sha = hex::encode(Sha256::digest(&stored.bytes));
            match checked.get(&mid) {
                Some(first) => assert_eq!(first, &sha, "{id}: the same email in every mailbox"),
                None => {
                    check_email(&converter, truth, id, e, &stored.bytes, &parsed);
                    checked.insert(mid.clone(), sha.clone());
                }
            }
            snapshot.insert((mailbox.clone(), mid), sha);
        }
    }
    for (id, e) in &expected {
        let got = seen.get(id).cloned().unwrap_or_default();
        for mailbox in &e.mailboxes {
            assert!(got.contains(mailbox), "{mailbox} lacks {id}");
        }
    }
    snapshot
}

fn deliveries(truth: &GroundTruth) -> usize {
    expectations(truth)
        .values()
        .map(|e| e.mailboxes.len())
        .sum()
}

#[test]
fn every_message_reaches_every_mapped_participant_once_and_matches_the_ground_truth() {
    let sim = sim(sim_config(2000));
    let s = setup(&sim.base_url(), 50);
    let host = Host::open(&s.state).unwrap();

    // Interrupted after a few pages, then resumed from the checkpoint.
    let first = host
        .run_once(&s.config, &RunOptions { max_pages: Some(6) })
        .unwrap();
    assert_eq!(first.outcome, RunOutcome::Interrupted);
    let second = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(second.outcome, RunOutcome::Succeeded);
    let truth = sim.ground_truth();
    assert_eq!(truth.messages.len(), 2000);
    assert_eq!(
        (first.counts.items_from_source + second.counts.items_from_source) as usize,
        truth.messages.len(),
        "every message taken once"
    );
    assert_eq!(second.counts.skipped_duplicates, 0);
    assert_eq!(
        (first.counts.imported + second.counts.imported) as usize,
        deliveries(&truth)
    );
    assert!(
        second.counts.quarantined > 0,
        "external members (other domains) and email-less ones are quarantined"
    );
    check_archive(&s, &truth);

    // Nothing new: nothing imported.
    let third = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(third.outcome, RunOutcome::Succeeded);
    assert_eq!(
        (third.counts.items_from_source, third.counts.imported),
        (0, 0)
    );

    // Suppressions happen: the next run archives them as deletions.
    let applied = sim.apply_suppressions();
    assert!(applied > 0);
    let fourth = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(fourth.outcome, RunOutcome::Succeeded);
    assert_eq!(fourth.counts.items_from_source as usize, applied);
    let truth = sim.ground_truth();
    check_archive(&s, &truth);
    let stats = sim.stats();
    assert!(stats.message_pages > 0 && stats.attachment_downloads > 0);
}

#[test]
fn faults_do_not_change_the_archive() {
    let clean_sim = sim(sim_config(800));
    let clean = setup(&clean_sim.base_url(), 50);
    let clean_host = Host::open(&clean.state).unwrap();
    run_to_success(&clean_host, &clean);
    clean_sim.apply_suppressions();
    run_to_success(&clean_host, &clean);
    let clean_snapshot = check_archive(&clean, &clean_sim.ground_truth());

    let faults: Faults =
        "429:every=70:burst=2:retry=1,400:every=113:burst=1:retry=1,5xx:every=89:status=503,drop:p=0.015,expire:after=30"
            .parse()
            .unwrap();
    let mut config = sim_config(800);
    config.faults = faults;
    // A dropped answer to a datahose read leaves its batch unacknowledged:
    // the datahose gives it again after a while (30 s on a pod), here soon
    // enough for the retried read to get it.
    config.datahose.redeliver_after = std::time::Duration::from_millis(100);
    let faulty_sim = sim(config);
    let faulty = setup(&faulty_sim.base_url(), 50);
    let faulty_host = Host::open(&faulty.state).unwrap();
    // Sessions also expire by time: every token dies now and then, also
    // while the host downloads attachments.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let expirer = {
        let (stop, handle) = (stop.clone(), faulty_sim.handle());
        std::thread::spawn(move || {
            let mut expired = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(2000));
                expired += handle.expire_sessions();
            }
            expired
        })
    };
    run_to_success(&faulty_host, &faulty);
    faulty_sim.apply_suppressions();
    run_to_success(&faulty_host, &faulty);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let expired = expirer.join().unwrap();
    let stats = faulty_sim.stats();
    assert!(expired > 0 && stats.unauthorized > 0, "{expired} {stats:?}");
    assert!(stats.throttled_429 > 0, "{stats:?}");
    assert!(stats.throttled_400 > 0, "{stats:?}");
    assert!(stats.server_errors > 0, "{stats:?}");
    assert!(stats.dropped_connections > 0, "{stats:?}");
    let faulty_snapshot = check_archive(&faulty, &faulty_sim.ground_truth());
    assert_eq!(
        faulty_snapshot, clean_snapshot,
        "the same mailboxes, byte for byte"
    );
}

#[test]
fn a_fifty_megabyte_attachment_arrives_whole() {
    const SIZE: u64 = 50 * 1000 * 1000;
    let config = SimConfig::builder()
        .seed(5)
        .membership(Membership::All)
        .messages(120)
        .large_attachment_bytes(SIZE)
        .max_small_attachment_bytes(4 * 1024)
        .max_length_message(false)
        .build();
    let sim = sim(config);
    let s = setup(&sim.base_url(), 500);
    let host = Host::open(&s.state).unwrap();
    let summary = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded);
    let truth = sim.ground_truth();
    let (m, big) = truth
        .attachments()
        .find(|(_, a)| a.size == SIZE)
        .expect("the large attachment");
    let converter = EmailConverter::new("symphony", "Symphony");
    let mid = converter.message_id(&m.message_id);
    let sender = m.sender_email.as_deref().map(lower).unwrap();
    let emails = maildir_emails(&s.mail, &sender, FOLDER_ON_DISK);
    let stored = emails
        .iter()
        .find(|e| {
            MessageParser::default()
                .parse_headers(&e.bytes)
                .and_then(|p| p.message_id().map(|id| id == mid))
                .unwrap_or(false)
        })
        .expect("the email with the large attachment");
    let parsed = MessageParser::default().parse(&stored.bytes).unwrap();
    let att = parsed
        .attachments()
        .find(|a| a.attachment_name() == Some(big.name.as_str()))
        .unwrap();
    assert_eq!(att.contents().len() as u64, SIZE);
    assert_eq!(hex::encode(Sha256::digest(att.contents())), big.sha256);
    check_archive(&s, &truth);
}

/// What the message API shows a service account that is a member of some
/// streams only: their messages, and forwards from the other streams
/// recorded as replies to a parent it cannot see (`Parent-Relation:
/// unknown`).
fn readable_part(truth: &GroundTruth) -> GroundTruth {
    let readable: BTreeSet<&str> = truth
        .streams
        .iter()
        .filter(|s| s.service_member)
        .map(|s| s.stream_id.as_str())
        .collect();
    let mut part = truth.clone();
    part.messages
        .retain(|m| readable.contains(m.stream_id.as_str()));
    for m in &mut part.messages {
        let parent_stream = m
            .parent_message_id
            .as_deref()
            .and_then(|p| truth.message(p))
            .map(|p| p.stream_id.as_str());
        if parent_stream.is_some_and(|s| !readable.contains(s)) {
            m.relation = Some(Relation::Reply);
        }
    }
    part
}

/// A pod of 600 messages whose service account is a member of half the
/// streams.
fn half_member_pod() -> symphony_sim::SimConfigBuilder {
    SimConfig::builder()
        .seed(20_240_101)
        .messages(600)
        .large_attachment_bytes(0)
        .max_small_attachment_bytes(8 * 1024)
        .membership(Membership::Half)
}

/// Runs `connector run --once` on `s`, which must succeed (`when` says in
/// what case); its log.
fn run_cli_to_success(s: &Setup, when: &str) -> String {
    let out = connector_e2e::ops::connector(
        std::path::Path::new(BIN),
        &s.state,
        &["run", "--once", s.config.path.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "the run succeeds {when}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The conversations `connector status --json` lists as not read, with
/// their reasons and fixes.
fn not_read(state: &std::path::Path, file: &std::path::Path) -> BTreeMap<String, (String, String)> {
    let out = connector_e2e::ops::connector_ok(
        std::path::Path::new(BIN),
        state,
        &["status", "--json", file.to_str().unwrap()],
    );
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    status["connectors"][0]["unreadable"]
        .as_array()
        .expect("the status lists unreadable conversations")
        .iter()
        .map(|u| {
            let text = |k: &str| u[k].as_str().unwrap().to_string();
            (text("conversation_id"), (text("reason"), text("fix")))
        })
        .collect()
}

#[test]
fn a_pod_where_the_account_is_a_member_of_half_the_streams_archives_those_exactly_and_names_the_others_with_the_fix()
 {
    // A pod refuses non-members with 403; some agents answer 400.
    for status in [403, 400] {
        let sim = sim(half_member_pod().non_member_status(status).build());
        let truth = sim.ground_truth();
        let skipped = outside_streams(&truth);
        assert!(skipped.len() > 1 && skipped.len() < truth.streams.len());
        let s = setup(&sim.base_url(), 50);
        let file = s.config.path.clone();
        let run = || run_cli_to_success(&s, "though some streams are refused");
        // Each stream is a partition of its own: the log names each refused one.
        let log = run();
        for id in &skipped {
            assert!(
                log.contains(&format!("conversation {id} could not be read")),
                "{id}: {log}"
            );
        }
        // The status, its page and the admin log name each refused stream
        // with the pod's answer and the fix.
        let listed = not_read(&s.state, &file);
        assert_eq!(
            listed.keys().map(String::as_str).collect::<Vec<_>>(),
            skipped,
            "every refused stream, and only those"
        );
        for (id, (reason, fix)) in &listed {
            assert!(reason.contains(&format!("HTTP {status}")), "{id}: {reason}");
            assert!(
                fix.contains("add the service account to the conversation")
                    && fix.contains("datahose"),
                "{id}: {fix}"
            );
        }
        let text = connector_e2e::ops::connector_ok(
            std::path::Path::new(BIN),
            &s.state,
            &["status", file.to_str().unwrap()],
        );
        assert!(
            text.contains(&format!("not read: {} conversation(s)", skipped.len())),
            "{text}"
        );
        let admin_log = connector_e2e::ops::connector_ok(
            std::path::Path::new(BIN),
            &s.state,
            &["log", "--connector", "symphony-e2e", "--last"],
        );
        assert!(
            admin_log.contains("Unreadable conversation,Reason,Fix"),
            "{admin_log}"
        );
        for id in &skipped {
            assert!(
                admin_log
                    .lines()
                    .any(|l| l.starts_with(id) && l.contains("add the service account")),
                "{id} in the admin log:\n{admin_log}"
            );
        }
        let readable = readable_part(&truth);
        check_archive_of(&s, &readable, &truth);
        assert!(sim.stats().not_member >= skipped.len() as u64);

        // The account is added to one refused stream (one whose messages
        // nobody forwarded elsewhere, whose archived forwards would name an
        // unknown parent): the next run archives it, it leaves the list, and
        // the others are asked again; nothing is delivered twice.
        let forwarded_from = |id: &str| {
            truth.messages.iter().any(|m| {
                m.stream_id != id
                    && m.parent_message_id
                        .as_deref()
                        .and_then(|p| truth.message(p))
                        .is_some_and(|p| p.stream_id == id)
            })
        };
        let joined = *skipped
            .iter()
            .find(|id| !forwarded_from(id))
            .expect("a refused stream nobody forwarded from");
        assert!(sim.add_service_account(joined));
        run();
        let listed = not_read(&s.state, &file);
        let still: Vec<&str> = skipped.iter().copied().filter(|id| *id != joined).collect();
        assert_eq!(
            listed.keys().map(String::as_str).collect::<Vec<_>>(),
            still,
            "the stream read this run left the list"
        );
        let truth = sim.ground_truth();
        check_archive_of(&s, &readable_part(&truth), &truth);
    }
}

#[test]
fn a_pod_without_the_datahose_is_archived_and_the_run_succeeds_with_a_standing_warning_of_what_is_not_captured()
 {
    let sim = sim(SimConfig {
        datahose_addon: false,
        ..sim_config(150)
    });
    let truth = sim.ground_truth();
    let s = setup(&sim.base_url(), 50);
    let file = s.config.path.clone();
    let datahose = "datahose (suppressions, joins and leaves)";
    for _ in 0..2 {
        run_cli_to_success(&s, "without the datahose");
        // Every run names what is missing: the warning stands.
        let listed = not_read(&s.state, &file);
        let (reason, fix) = listed.get(datahose).expect("the status names the datahose");
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert!(
            reason.contains("HTTP 404")
                && reason.contains("suppressions")
                && reason.contains("joins and leaves"),
            "{reason}"
        );
        assert!(
            fix.contains("enable the datahose") && fix.contains("\"events\" = false"),
            "{fix}"
        );
        let admin_log = connector_e2e::ops::connector_ok(
            std::path::Path::new(BIN),
            &s.state,
            &["log", "--connector", "symphony-e2e", "--last"],
        );
        assert!(
            admin_log
                .lines()
                .any(|l| l.contains(datahose) && l.contains("enable the datahose")),
            "{admin_log}"
        );
    }
    check_archive(&s, &truth);
}

#[test]
fn with_the_datahose_a_pod_where_the_account_is_in_half_the_streams_is_archived_whole_exactly_once()
{
    let datahose = DatahoseConfig {
        history: true,
        wait: std::time::Duration::from_millis(300),
        redeliver_after: std::time::Duration::from_millis(1500),
        batch: 40,
    };
    let sim = sim(half_member_pod().datahose(datahose).build());
    let s = setup_with(&sim.base_url(), 50, "events_messages = true");
    let host = Host::open(&s.state).unwrap();
    // Another worker of the fleet, reading with the same tag, takes a batch
    // and dies before acknowledging it: the datahose gives it again later.
    let tag = format!("connector-{}", symphony_sim::TEST_USERNAME);
    assert_eq!(sim.take_datahose_batch_without_ack(&tag), 40);

    let first = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(first.outcome, RunOutcome::Succeeded);
    // The lost batch comes back once its acknowledgement is overdue.
    std::thread::sleep(std::time::Duration::from_millis(1600));
    let second = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(second.outcome, RunOutcome::Succeeded);
    assert!(sim.stats().redelivered_events >= 40, "{:?}", sim.stats());
    let truth = sim.ground_truth();
    assert!(truth.streams.iter().any(|s| !s.service_member));
    check_archive(&s, &truth);
    // The streams the account is not in are listed: their messages came
    // from the datahose, their files could not be fetched.
    let outside = outside_streams(&truth);
    let listed = not_read(&s.state, &s.config.path);
    assert_eq!(
        listed.keys().map(String::as_str).collect::<Vec<_>>(),
        outside
    );
    for (id, (reason, fix)) in &listed {
        assert!(reason.contains("files cannot be fetched"), "{id}: {reason}");
        assert!(
            fix.contains("add the service account to the conversation"),
            "{id}: {fix}"
        );
    }

    // Suppressions reach the datahose and are archived as deletions.
    assert!(sim.apply_suppressions() > 0);
    let third = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(third.outcome, RunOutcome::Succeeded);
    check_archive(&s, &sim.ground_truth());
}

/// Runs a pod where the account is in every stream once with `[mapping]
/// external = policy` (the default when `None`); returns the connector's
/// quarantined item ids, with the unmapped participants of each, and the
/// run's admin log.
fn run_with_external_policy(
    sim: &BlockingSim,
    policy: Option<&str>,
) -> (
    BTreeMap<String, BTreeSet<String>>,
    connector_host::report::AdminLog,
) {
    let s = setup(&sim.base_url(), 100);
    if let Some(policy) = policy {
        let text = std::fs::read_to_string(&s.config.path).unwrap();
        let line = format!("domains = [\"{DOMAIN}\"]\n");
        assert!(text.contains(&line));
        std::fs::write(
            &s.config.path,
            text.replacen(&line, &format!("{line}external = \"{policy}\"\n"), 1),
        )
        .unwrap();
    }
    let config = ConnectorConfig::load(&s.config.path).unwrap();
    let host = Host::open(&s.state).unwrap();
    let summary = host.run_once(&config, &RunOptions::default()).unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded);
    let db = host.db();
    let quarantined = db
        .quarantine(&config.id)
        .unwrap()
        .into_iter()
        .map(|q| (q.item_id, q.unmapped.into_iter().map(|p| p.id).collect()))
        .collect();
    let run = db.run(summary.run).unwrap().unwrap();
    let log = connector_host::report::admin_log(&*db, &run).unwrap();
    (quarantined, log)
}

#[test]
fn external_participants_are_named_not_quarantined_while_internal_unmapped_ones_still_are() {
    let sim = sim(sim_config(400));
    let truth = sim.ground_truth();
    let external_ids: BTreeSet<String> = truth
        .users
        .iter()
        .filter(|u| u.external)
        .map(|u| u.user_id.to_string())
        .collect();
    // Per message: its members without a mailbox, internal and external.
    let unmapped = |m: &TruthMessage, external: bool| -> BTreeSet<String> {
        truth
            .stream(&m.stream_id)
            .unwrap()
            .members
            .iter()
            .filter(|p| p.external == external)
            .filter(|p| p.email.as_deref().and_then(mapped).is_none())
            .map(|p| p.user_id.to_string())
            .collect()
    };

    let (quarantined, log) = run_with_external_policy(&sim, None);
    let (mut named_only, mut held) = (0, 0);
    for m in &truth.messages {
        let internal = unmapped(m, false);
        let external = unmapped(m, true);
        match quarantined.get(&m.message_id) {
            Some(people) => {
                assert_eq!(
                    people, &internal,
                    "{}: held for its internal people only",
                    m.message_id
                );
                held += 1;
            }
            None => assert!(
                internal.is_empty(),
                "{}: {internal:?} lack a mailbox",
                m.message_id
            ),
        }
        let named: BTreeSet<String> = log
            .failures
            .iter()
            .filter(|f| f.item_id == m.message_id && f.kind == FailureKind::External)
            .map(|f| f.source_user_id.clone())
            .collect();
        assert_eq!(
            named, external,
            "{}: the external people are named",
            m.message_id
        );
        if internal.is_empty() && !external.is_empty() {
            named_only += 1;
        }
    }
    assert!(named_only > 0 && held > 0, "{named_only} {held}");
    assert!(
        log.failures.iter().any(|f| f.kind == FailureKind::External
            && f.reason.contains("belongs to another organisation"))
    );
    assert_eq!(
        log.run.counts.failed,
        log.failures
            .iter()
            .filter(|f| f.kind != FailureKind::External)
            .count() as u64,
        "named external people are not failures"
    );
    for people in quarantined.values() {
        assert!(people.is_disjoint(&external_ids), "{people:?}");
    }

    // `external = "quarantine"` holds a message for anyone without a mailbox.
    let (quarantined, _) = run_with_external_policy(&sim, Some("quarantine"));
    for m in &truth.messages {
        let mut everyone = unmapped(m, false);
        everyone.extend(unmapped(m, true));
        assert_eq!(
            quarantined.get(&m.message_id).cloned().unwrap_or_default(),
            everyone,
            "{}",
            m.message_id
        );
    }
}

#[test]
fn an_unknown_external_policy_is_refused_with_the_values_it_takes() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup("http://127.0.0.1:9", 10);
    let text = std::fs::read_to_string(&s.config.path).unwrap();
    let line = format!("domains = [\"{DOMAIN}\"]\n");
    let file = tmp.path().join("connector.toml");
    std::fs::write(
        &file,
        text.replacen(&line, &format!("{line}external = \"drop\"\n"), 1),
    )
    .unwrap();
    let err = ConnectorConfig::load(&file).unwrap_err().to_string();
    assert!(
        err.contains("drop") && err.contains("name") && err.contains("quarantine"),
        "{err}"
    );
}

/// What a walk archived, per message id: its conversation and sender.
fn walked(runs: &[connector_plugin_harness::Run]) -> BTreeMap<String, (String, Option<String>)> {
    runs.iter()
        .flat_map(|r| r.messages())
        .map(|m| {
            (
                m.id.clone(),
                (m.conversation_id.clone(), m.sender.email.clone()),
            )
        })
        .collect()
}

/// The Symphony plugin under the harness (built first), against the
/// simulator at `base`, with pages of 50 and no page limit to speak of.
fn symphony_harness(base: &str) -> connector_plugin_harness::Harness {
    build_plugin("symphony");
    connector_plugin_harness::Harness::new(workspace_root().join("plugins/symphony/manifest.toml"))
        .config(serde_json::json!({
            "pod_url": base, "agent_url": base, "key_manager_url": base,
            "username": symphony_sim::TEST_USERNAME, "page_size": 50,
        }))
        .grant_host(base)
        .forward(base)
        .signing_key("private-key", symphony_sim::TEST_PRIVATE_KEY_PEM)
        .max_pages(100_000)
}

#[test]
fn a_partitioned_walk_archives_the_same_messages_as_the_whole_pod_walk() {
    // Hundreds of streams (the stream list pages past 100), half of them
    // not readable by the account, and a latency on every call.
    let sim = sim(SimConfig {
        latency: std::time::Duration::from_millis(2),
        datahose: DatahoseConfig {
            wait: std::time::Duration::from_millis(20),
            ..DatahoseConfig::default()
        },
        ..SimConfig::builder()
            .seed(7)
            .messages(120)
            .large_attachment_bytes(0)
            .max_small_attachment_bytes(8 * 1024)
            .membership(Membership::Half)
            .extra_streams(120, 120, 2)
            .build()
    });
    let base = sim.base_url();
    let harness = || symphony_harness(&base);
    let whole = harness().run_pages().expect("the whole-pod walk");
    let partitions = harness().partitions().expect("the partitions");
    let truth = sim.ground_truth();
    assert_eq!(partitions.len(), truth.streams.len() + 1);
    assert_eq!(partitions.last().map(String::as_str), Some("datahose"));
    let mut runs = Vec::new();
    for id in &partitions {
        let run = harness()
            .partition(id)
            .run_pages()
            .unwrap_or_else(|e| panic!("partition {id}: {e}"));
        runs.push(run);
    }
    let whole = walked(std::slice::from_ref(&whole));
    let parts = walked(&runs);
    // Every message of the streams the account may read, and nothing else.
    let readable: BTreeSet<&str> = truth
        .streams
        .iter()
        .filter(|s| s.service_member)
        .map(|s| s.stream_id.as_str())
        .collect();
    let want: BTreeSet<&str> = truth
        .messages
        .iter()
        .filter(|m| readable.contains(m.stream_id.as_str()))
        .map(|m| m.message_id.as_str())
        .collect();
    assert_eq!(
        whole.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        want
    );
    assert_eq!(parts, whole);
}

/// A pod of 300 messages whose service account is in every stream, with
/// one room and one IM held back for the test to create between runs.
fn pod_with_later_streams() -> SimConfig {
    SimConfig::builder()
        .seed(20_240_101)
        .messages(300)
        .large_attachment_bytes(0)
        .max_small_attachment_bytes(8 * 1024)
        .membership(Membership::All)
        .later_streams(1, 1, 7)
        .build()
}

/// The checkpoint the host keeps for the partition of stream `sid`.
fn stream_checkpoint(host: &Host, s: &Setup, sid: &str) -> Option<Vec<u8>> {
    let key = connector_state::partition_lease(&s.config.id, &format!("stream:{sid}"));
    host.db().checkpoint(&key).unwrap()
}

/// The ledger: per source item, the mailboxes it was delivered to, with the
/// Message-ID and email hash.
fn ledger(host: &Host, s: &Setup) -> BTreeMap<String, BTreeSet<(String, String, String)>> {
    let mut out: BTreeMap<String, BTreeSet<(String, String, String)>> = BTreeMap::new();
    for e in host.db().ledger_entries(&s.config.id).unwrap() {
        out.entry(e.item_id)
            .or_default()
            .insert((lower(&e.mailbox), e.message_id, e.email_sha256));
    }
    out
}

/// A connector over `sim` that has run once, successfully.
fn archived_once(sim: &BlockingSim) -> (Setup, Host) {
    let s = setup(&sim.base_url(), 50);
    let host = Host::open(&s.state).unwrap();
    let first = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(first.outcome, RunOutcome::Succeeded);
    (s, host)
}

#[test]
fn a_stream_created_between_two_runs_is_archived_whole_by_the_next_run_exactly_once() {
    let sim = sim(pod_with_later_streams());
    let (s, host) = archived_once(&sim);
    let before = sim.ground_truth();
    check_archive(&s, &before);

    // A room is created and an IM opened, and people write in them.
    let room = sim.create_stream(symphony_sim::StreamType::Room).unwrap();
    let im = sim.create_stream(symphony_sim::StreamType::Im).unwrap();
    let after = sim.ground_truth();
    assert_eq!(after.streams.len(), before.streams.len() + 2);
    let new: BTreeSet<&str> = after
        .messages
        .iter()
        .filter(|m| m.stream_id == room || m.stream_id == im)
        .map(|m| m.message_id.as_str())
        .collect();
    assert_eq!(new.len(), 14);
    assert_eq!(after.messages.len(), before.messages.len() + new.len());
    for sid in [&room, &im] {
        assert!(
            stream_checkpoint(&host, &s, sid).is_none(),
            "{sid}: no partition before it existed"
        );
        assert!(after.stream(sid).unwrap().members.len() >= 2);
    }

    // The next run lists them as partitions of their own and archives all
    // their messages, to their members, once.
    let second = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(second.outcome, RunOutcome::Succeeded);
    assert_eq!(second.counts.items_from_source as usize, new.len());
    assert_eq!(second.counts.skipped_duplicates, 0);
    assert_eq!(
        second.counts.imported as usize,
        deliveries(&after) - deliveries(&before)
    );
    check_archive(&s, &after);
    for sid in [&room, &im] {
        assert!(
            stream_checkpoint(&host, &s, sid).is_some(),
            "{sid}: the new partition's checkpoint"
        );
    }
    let ledger = ledger(&host, &s);
    let expected = expectations(&after);
    for id in &new {
        let mailboxes: BTreeSet<String> = ledger[*id].iter().map(|(m, ..)| m.clone()).collect();
        assert_eq!(mailboxes, expected[*id].mailboxes, "{id} in the ledger");
    }

    // Nothing new: nothing read again.
    let third = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(third.outcome, RunOutcome::Succeeded);
    assert_eq!(
        (third.counts.items_from_source, third.counts.imported),
        (0, 0)
    );
    check_archive(&s, &after);
}

#[test]
fn a_stream_that_leaves_keeps_what_was_archived_and_the_next_runs_succeed_without_repeats() {
    let sim = sim(pod_with_later_streams());
    let (s, host) = archived_once(&sim);
    let truth = sim.ground_truth();
    let archived = check_archive(&s, &truth);
    let ledger_before = ledger(&host, &s);
    let with_messages = |kind: symphony_sim::StreamType| {
        truth
            .streams
            .iter()
            .filter(|t| t.stream_type == kind && t.active && t.message_count > 0)
            .max_by_key(|t| t.message_count)
            .unwrap()
            .stream_id
            .clone()
    };
    // A room is deactivated; the service account is removed from an IM.
    let room = with_messages(symphony_sim::StreamType::Room);
    let im = with_messages(symphony_sim::StreamType::Im);
    let checkpoints: Vec<Vec<u8>> = [&room, &im]
        .iter()
        .map(|sid| stream_checkpoint(&host, &s, sid).expect("a checkpoint after the first run"))
        .collect();
    assert!(sim.set_room_active(&room, false));
    assert!(sim.remove_service_account(&im));
    let now = sim.ground_truth();
    assert!(!now.stream(&room).unwrap().active);
    assert!(!now.stream(&im).unwrap().service_member);
    assert_eq!(now.messages.len(), truth.messages.len());

    // The next run succeeds: nothing new, nothing again, the archive, the
    // ledger and both checkpoints as they were; the IM is named as not read.
    let second = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(second.outcome, RunOutcome::Succeeded);
    assert_eq!(
        (
            second.counts.items_from_source,
            second.counts.imported,
            second.counts.skipped_duplicates
        ),
        (0, 0, 0)
    );
    assert_eq!(check_archive(&s, &truth), archived);
    assert_eq!(ledger(&host, &s), ledger_before);
    for id in truth
        .messages
        .iter()
        .filter(|m| m.stream_id == room || m.stream_id == im)
    {
        assert!(ledger_before.contains_key(&id.message_id), "{id:?}");
    }
    for (sid, kept) in [&room, &im].iter().zip(&checkpoints) {
        assert_eq!(
            stream_checkpoint(&host, &s, sid).as_ref(),
            Some(kept),
            "{sid}: its checkpoint is kept"
        );
    }
    let listed = not_read(&s.state, &s.config.path);
    assert_eq!(
        listed.keys().map(String::as_str).collect::<Vec<_>>(),
        vec![im.as_str()],
        "the IM the account left, and only it"
    );

    // The account is added back: the IM goes on from its checkpoint, with
    // nothing delivered twice.
    assert!(sim.add_service_account(&im));
    let third = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(third.outcome, RunOutcome::Succeeded);
    assert_eq!(
        (
            third.counts.items_from_source,
            third.counts.imported,
            third.counts.skipped_duplicates
        ),
        (0, 0, 0)
    );
    assert_eq!(check_archive(&s, &truth), archived);
    assert!(not_read(&s.state, &s.config.path).is_empty());
}

#[test]
fn a_stream_type_no_longer_configured_leaves_the_partitions_and_keeps_its_archive() {
    let sim = sim(sim_config(300));
    let (s, host) = archived_once(&sim);
    let truth = sim.ground_truth();
    let archived = check_archive(&s, &truth);
    let ledger_before = ledger(&host, &s);
    let ims: Vec<String> = truth
        .streams
        .iter()
        .filter(|st| st.stream_type == symphony_sim::StreamType::Im)
        .map(|st| {
            connector_state::partition_lease(&s.config.id, &format!("stream:{}", st.stream_id))
        })
        .collect();
    assert!(!ims.is_empty());
    let with_checkpoint = |keys: &[String]| {
        keys.iter()
            .filter(|k| host.db().checkpoint(k).unwrap().is_some())
            .count()
    };
    assert_eq!(with_checkpoint(&ims), ims.len());

    // From now on rooms only: the IMs are no longer partitions.
    let text = std::fs::read_to_string(&s.config.path).unwrap();
    std::fs::write(
        &s.config.path,
        text.replacen(
            "page_size = 50\n",
            "page_size = 50\nstream_types = [\"ROOM\"]\n",
            1,
        ),
    )
    .unwrap();
    let rooms_only = ConnectorConfig::load(&s.config.path).unwrap();
    let before = host.db().partition_checkpoints(&rooms_only.id).unwrap();
    let second = host.run_once(&rooms_only, &RunOptions::default()).unwrap();
    assert_eq!(second.outcome, RunOutcome::Succeeded);
    assert_eq!(
        (second.counts.items_from_source, second.counts.imported),
        (0, 0)
    );
    // What was archived from the IMs stays: emails, ledger, checkpoints.
    assert_eq!(check_archive(&s, &truth), archived);
    assert_eq!(ledger(&host, &s), ledger_before);
    assert_eq!(with_checkpoint(&ims), ims.len());
    assert_eq!(
        host.db().partition_checkpoints(&rooms_only.id).unwrap(),
        before
    );
}

#[test]
fn a_connector_read_whole_before_partitions_goes_on_from_its_checkpoint_in_every_partition() {
    use connector_state::{DEFAULT_LEASE, LeaseRequest, LockOutcome, PageCommit, RunCounts};
    let sim = sim(sim_config(400));
    let base = sim.base_url();
    // A run of the whole pod to its end, as the plugin read it before it
    // listed partitions.
    let whole = symphony_harness(&base)
        .run_pages()
        .expect("the whole-pod walk");
    assert_eq!(whole.messages().count(), 400);
    let s = setup(&base, 50);
    let host = Host::open(&s.state).unwrap();
    {
        // Its checkpoint, as the connector's state kept it then.
        let mut db = host.db();
        let id = s.config.id.as_str();
        let run = db.begin_run(id, 0).unwrap();
        let request = LeaseRequest {
            owner: "before partitions".into(),
            ttl: DEFAULT_LEASE,
            fingerprint: Default::default(),
        };
        let LockOutcome::Taken(lock) = db.lock_runs(id, &request).unwrap() else {
            panic!("the lease is free");
        };
        let page = PageCommit {
            checkpoint: whole.last_checkpoint().unwrap(),
            ..PageCommit::default()
        };
        db.commit_page(id, run, lock.token(), &page).unwrap();
        db.finish_run(run, 1, RunOutcome::Succeeded, &RunCounts::default(), None)
            .unwrap();
        let token = lock.token();
        drop(lock);
        db.release_lease(id, token).unwrap();
    }

    // Partitioned now: each partition starts at its position in it.
    let run = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(run.outcome, RunOutcome::Succeeded);
    assert_eq!(
        (run.counts.items_from_source, run.counts.imported),
        (0, 0),
        "nothing is read again"
    );
    let truth = sim.ground_truth();
    assert_eq!(
        host.db().partition_checkpoints(&s.config.id).unwrap() as usize,
        truth.streams.len() + 1,
        "every stream's partition and the datahose now have their own"
    );
}

/// Where the Maildir keeps the transcripts (`INBOX/Symphony/Transcripts`).
const TRANSCRIPTS_ON_DISK: &str = ".INBOX.Symphony.Transcripts";

/// Makes the connector deliver `delivery` (`both`, `transcripts`), with
/// days in UTC sent as soon as they end.
fn deliver(s: &mut Setup, delivery: &str) {
    let path = s.config.path.clone();
    let text = std::fs::read_to_string(&path).unwrap();
    let retries = text
        .lines()
        .find(|l| l.starts_with("retries = "))
        .expect("a retries line")
        .to_string();
    let text = text.replacen(
        &retries,
        &format!("{retries}\ndelivery = \"{delivery}\""),
        1,
    ) + "\n[transcripts]\ngrace = \"0s\"\n";
    std::fs::write(&path, text).unwrap();
    s.config = ConnectorConfig::load(&path).unwrap();
}

/// What a conversation's day should hold: its items in sent order, and
/// the mailboxes of each item.
type ExpectedDays = BTreeMap<(String, String), Vec<(i64, String, BTreeSet<String>)>>;

/// The UTC day of `ms`, `YYYY-MM-DD`.
fn utc_day(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

/// Each conversation's days as the ground truth has them.
fn expected_days(truth: &GroundTruth) -> ExpectedDays {
    let mut days: ExpectedDays = BTreeMap::new();
    for (id, e) in expectations(truth) {
        let (stream, at) = match e.item {
            Item::Message(m) => (m.stream_id.clone(), m.timestamp),
            Item::Event(ev) => (ev.stream_id.clone(), ev.timestamp),
            Item::Deletion(_) => panic!("these tests apply no suppressions"),
        };
        let mut mailboxes = e.mailboxes.clone();
        mailboxes.extend(e.optional.iter().cloned());
        days.entry((stream, utc_day(at)))
            .or_default()
            .push((at, id, mailboxes));
    }
    for items in days.values_mut() {
        items.sort();
    }
    days
}

/// Checks every transcript against the ground truth: each conversation's
/// day is told once across its parts (the day's transcript, then
/// addenda), exactly the day's items, each part in sent order, every part
/// in the mailbox of each of its items' participants and the same bytes in
/// each. Returns the parts, by conversation, day and part number.
fn check_transcripts(
    s: &Setup,
    truth: &GroundTruth,
) -> BTreeMap<(String, String, u32), connector_e2e::transcripts::StoredTranscript> {
    let expected = expected_days(truth);
    let every = expectations(truth);
    let mut parts: BTreeMap<(String, String, u32), connector_e2e::transcripts::StoredTranscript> =
        BTreeMap::new();
    let mut holders: BTreeMap<(String, String, u32), BTreeSet<String>> = BTreeMap::new();
    for t in connector_e2e::transcripts::read_transcripts(&s.mail, TRANSCRIPTS_ON_DISK) {
        let key = (t.conversation.clone(), t.day.clone(), t.part);
        assert!(
            holders
                .entry(key.clone())
                .or_default()
                .insert(t.mailbox.clone()),
            "{}: {key:?} delivered twice",
            t.mailbox
        );
        match parts.get(&key) {
            Some(first) => assert_eq!(first.raw, t.raw, "{key:?}: the same email everywhere"),
            None => {
                parts.insert(key, t);
            }
        }
    }
    let mut told: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for ((conversation, day, part), t) in &parts {
        let items = expected
            .get(&(conversation.clone(), day.clone()))
            .unwrap_or_else(|| {
                panic!("a transcript of {conversation} on {day}, a day without items")
            });
        let order: Vec<&String> = items.iter().map(|(_, id, _)| id).collect();
        // In sent order: a subsequence of the day's order.
        let positions: Vec<usize> = t
            .items
            .iter()
            .map(|id| {
                order
                    .iter()
                    .position(|o| *o == id)
                    .unwrap_or_else(|| panic!("{conversation} {day}: {id} is not of this day"))
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "{conversation} {day} part {part}: not in sent order: {:?}",
            t.items
        );
        let mailboxes: BTreeSet<String> = items
            .iter()
            .filter(|(_, id, _)| t.items.contains(id))
            .flat_map(|(_, _, m)| m.iter().cloned())
            .collect();
        let held = &holders[&(conversation.clone(), day.clone(), *part)];
        assert!(
            held.is_subset(&mailboxes),
            "{conversation} {day} part {part} went to {held:?}, not all of them participants ({mailboxes:?})"
        );
        let required: BTreeSet<String> = items
            .iter()
            .filter(|(_, id, _)| t.items.contains(id))
            .flat_map(|(_, id, _)| every[id].mailboxes.iter().cloned())
            .collect();
        assert!(
            required.is_subset(held),
            "{conversation} {day} part {part}: missing in {:?}",
            required.difference(held).collect::<Vec<_>>()
        );
        assert_eq!(
            t.body
                .contains("arrived after the day's transcript was sent"),
            *part > 0,
            "an addendum, and only an addendum, says it is one"
        );
        told.entry((conversation.clone(), day.clone()))
            .or_default()
            .extend(t.items.iter().cloned());
    }
    for ((conversation, day), items) in &expected {
        let mut want: Vec<&String> = items.iter().map(|(_, id, _)| id).collect();
        let mut got: Vec<&String> = told
            .get(&(conversation.clone(), day.clone()))
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        want.sort();
        got.sort();
        assert_eq!(
            got, want,
            "{conversation} on {day}: each item once, none missing"
        );
    }
    parts
}

#[test]
fn with_delivery_both_every_message_email_and_every_daily_transcript_equals_the_ground_truth() {
    let sim = sim(sim_config(600));
    let mut s = setup(&sim.base_url(), 50);
    deliver(&mut s, "both");
    let host = Host::open(&s.state).unwrap();
    let runs = run_to_success(&host, &s);
    let truth = sim.ground_truth();
    check_archive(&s, &truth);
    let parts = check_transcripts(&s, &truth);
    let days: BTreeSet<&String> = parts.keys().map(|(_, day, _)| day).collect();
    assert!(days.len() >= 2, "the pod's messages span days: {days:?}");
    assert!(parts.keys().all(|(_, _, part)| *part == 0), "no addenda");
    // Every file of the day's message emails is attached to its transcript.
    let mut files: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut counted = BTreeSet::new();
    for mailbox in mailboxes(&s.mail) {
        for stored in maildir_emails(&s.mail, &mailbox, FOLDER_ON_DISK) {
            let parsed = MessageParser::default().parse(&stored.bytes).unwrap();
            if !counted.insert(parsed.message_id().unwrap().to_string()) {
                continue;
            }
            let conversation = header(&parsed, "X-Connector-Conversation-Id").unwrap();
            let day = utc_day(parsed.date().unwrap().to_timestamp() * 1000);
            *files.entry((conversation, day)).or_default() += parsed.attachments().count();
        }
    }
    for ((conversation, day, _), t) in &parts {
        let key = (conversation.clone(), day.clone());
        assert_eq!(t.attachments.len(), files[&key], "{conversation} {day}");
    }
    // The transcripts count in the run and the admin log.
    let transcripts =
        connector_e2e::transcripts::read_transcripts(&s.mail, TRANSCRIPTS_ON_DISK).len() as u64;
    let messages: u64 = deliveries(&truth) as u64;
    let imported: u64 = runs.iter().map(|r| r.counts.imported).sum();
    assert_eq!(imported, messages + transcripts);
    let admin_log = connector_e2e::ops::connector_ok(
        std::path::Path::new(BIN),
        &s.state,
        &["log", "--connector", "symphony-e2e", "--last"],
    );
    let summary: Vec<&str> = admin_log.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(summary[3], imported.to_string(), "Imported: {admin_log}");
    // The ledger knows each transcript by its own id.
    let (conversation, day, _) = parts.keys().next().unwrap();
    let mailbox = &parts.values().next().unwrap().mailbox;
    assert!(
        host.db()
            .is_delivered(
                "symphony-e2e",
                &format!("transcript:{day}:0:{conversation}"),
                mailbox
            )
            .unwrap()
    );
    // A second run delivers nothing again.
    let again = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(again.counts.imported, 0);
    assert_eq!(check_transcripts(&s, &truth).len(), parts.len());
    // The status says where the transcripts stand: every day was sent.
    let status: serde_json::Value = serde_json::from_str(&connector_e2e::ops::connector_ok(
        std::path::Path::new(BIN),
        &s.state,
        &["status", "--json", s.config.path.to_str().unwrap()],
    ))
    .unwrap();
    assert_eq!(
        status["connectors"][0]["transcripts"],
        serde_json::json!({"open_days": 0, "unsent": 0})
    );
}

#[test]
fn with_delivery_transcripts_only_the_days_arrive_and_no_email_per_message() {
    let sim = sim(sim_config(200));
    let mut s = setup(&sim.base_url(), 50);
    deliver(&mut s, "transcripts");
    let host = Host::open(&s.state).unwrap();
    let runs = run_to_success(&host, &s);
    for mailbox in mailboxes(&s.mail) {
        assert!(
            maildir_emails(&s.mail, &mailbox, FOLDER_ON_DISK).is_empty(),
            "{mailbox} got emails of single messages"
        );
    }
    let parts = check_transcripts(&s, &sim.ground_truth());
    assert!(!parts.is_empty());
    let delivered =
        connector_e2e::transcripts::read_transcripts(&s.mail, TRANSCRIPTS_ON_DISK).len() as u64;
    assert_eq!(
        runs.iter().map(|r| r.counts.imported).sum::<u64>(),
        delivered
    );
}

/// Runs the binary once on `s`, killed by itself the `n`th time it
/// reaches `point`; whether it was killed.
fn run_killed_at(s: &Setup, point: &str, n: u64) -> bool {
    use std::os::unix::process::ExitStatusExt;
    let out = std::process::Command::new(BIN)
        .arg("--state-dir")
        .arg(&s.state)
        .args(["run", "--once"])
        .arg(&s.config.path)
        .env("CONNECTOR_LOG", "error")
        .env("CONNECTOR_KILL_AT", format!("{point}:{n}"))
        .output()
        .unwrap();
    match out.status.signal() {
        Some(9) => true,
        _ => {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            false
        }
    }
}

#[test]
fn a_process_killed_mid_day_and_while_sending_transcripts_delivers_each_transcript_exactly_once() {
    let sim = sim(sim_config(300));
    let mut s = setup(&sim.base_url(), 20);
    deliver(&mut s, "both");
    // Killed while the day's pages come in (some committed, some not),
    // then right after a transcript reached the mailboxes and before its
    // ledger entries were committed, then between two transcripts.
    assert!(run_killed_at(&s, "committed", 3), "killed mid-day");
    assert!(
        connector_e2e::transcripts::read_transcripts(&s.mail, TRANSCRIPTS_ON_DISK).is_empty(),
        "no day is sent before the source was read to its end"
    );
    assert!(
        run_killed_at(&s, "transcript", 2),
        "killed after a transcript"
    );
    assert!(run_killed_at(&s, "transcript", 3), "killed after another");
    assert!(
        !run_killed_at(&s, "transcript", 1_000_000),
        "the last run ends"
    );
    let truth = sim.ground_truth();
    check_archive(&s, &truth);
    let parts = check_transcripts(&s, &truth);
    assert!(parts.keys().all(|(_, _, part)| *part == 0), "no addenda");
    // The ledger knows each transcript delivery once.
    let host = Host::open(&s.state).unwrap();
    let again = host.run_once(&s.config, &RunOptions::default()).unwrap();
    assert_eq!(again.counts.imported, 0);
}

#[test]
fn a_message_that_arrives_after_its_day_was_sent_goes_into_one_addendum_of_that_day() {
    let redeliver_after = std::time::Duration::from_secs(20);
    let datahose = DatahoseConfig {
        history: true,
        wait: std::time::Duration::from_millis(300),
        redeliver_after,
        batch: 40,
    };
    let sim = sim(half_member_pod().messages(300).datahose(datahose).build());
    let mut s = setup_with(&sim.base_url(), 50, "events_messages = true");
    deliver(&mut s, "both");
    let host = Host::open(&s.state).unwrap();
    // Other readers of the feed take batches and die: their messages come
    // again after the first run sent their days (the first batches hold
    // the rooms' first joins, whose days have nothing else).
    let tag = format!("connector-{}", symphony_sim::TEST_USERNAME);
    let taken = std::time::Instant::now();
    for _ in 0..4 {
        assert_eq!(sim.take_datahose_batch_without_ack(&tag), 40);
    }
    run_to_success(&host, &s);
    assert_eq!(sim.stats().redelivered_events, 0, "nothing came back yet");
    let before = connector_e2e::transcripts::read_transcripts(&s.mail, TRANSCRIPTS_ON_DISK);
    assert!(!before.is_empty() && before.iter().all(|t| t.part == 0));
    std::thread::sleep(
        (redeliver_after + std::time::Duration::from_secs(1)).saturating_sub(taken.elapsed()),
    );
    run_to_success(&host, &s);
    assert!(sim.stats().redelivered_events >= 160, "{:?}", sim.stats());
    let truth = sim.ground_truth();
    check_archive(&s, &truth);
    let parts = check_transcripts(&s, &truth);
    // The rooms' joins and leaves from the datahose are lines of their days.
    for (kind, line) in [
        ("USERJOINEDROOM", "joined the conversation"),
        ("USERLEFTROOM", "left the conversation"),
    ] {
        let event = truth
            .events
            .iter()
            .find(|e| e.event_type == kind)
            .expect("the pod has such an event");
        let id = format!("event-{}", event.event_id);
        let told = parts
            .values()
            .find(|t| t.items.contains(&id))
            .unwrap_or_else(|| panic!("{id} is in a transcript"));
        assert!(
            told.body
                .lines()
                .any(|l| l.contains(line) && l.ends_with(&format!("(message {id}):"))),
            "{id}: {}",
            told.body
        );
    }
    let addenda: Vec<&(String, String, u32)> =
        parts.keys().filter(|(_, _, part)| *part > 0).collect();
    assert!(!addenda.is_empty(), "late messages came");
    for (conversation, day, part) in &addenda {
        assert_eq!(*part, 1, "{conversation} {day}: one addendum");
        // The addendum holds exactly what the day's transcript lacked.
        let sent = &parts[&(conversation.clone(), day.clone(), 0)];
        let late = &parts[&(conversation.clone(), day.clone(), 1)];
        assert!(late.items.iter().all(|i| !sent.items.contains(i)));
        assert!(
            before
                .iter()
                .any(|t| t.conversation == *conversation && t.day == *day),
            "the day was sent by the first run"
        );
    }
}

/// Text escaped as the plugin writes it into HTML.
fn html_escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[test]
fn rich_content_shows_in_the_html_mentions_tags_tables_emoji_shared_posts_and_inline_images() {
    let sim = sim(SimConfig {
        inline_images: true,
        ..sim_config(500)
    });
    let s = setup(&sim.base_url(), 50);
    let host = Host::open(&s.state).unwrap();
    run_to_success(&host, &s);
    let truth = sim.ground_truth();
    // Every email parses without defects and matches the ground truth
    // (text, files and inline images byte for byte).
    check_archive(&s, &truth);

    let mut emails: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for mailbox in mailboxes(&s.mail) {
        for stored in maildir_emails(&s.mail, &mailbox, FOLDER_ON_DISK) {
            let parsed = MessageParser::default().parse(&stored.bytes).unwrap();
            let id = header(&parsed, "X-Connector-Message-Id").unwrap();
            emails.entry(id).or_insert(stored.bytes);
        }
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &truth.messages {
        let Some(raw) = emails.get(&m.message_id) else {
            continue;
        };
        let parsed = MessageParser::default().parse(raw).unwrap();
        let html = parsed.body_html(0).unwrap_or_default().into_owned();
        let text = parsed.body_text(0).unwrap_or_default().into_owned();
        let id = &m.message_id;
        for user in m.mentions.iter().map(|u| truth.user(*u).unwrap()) {
            let name = html_escaped(&user.display_name);
            let (shown, written) = match user.email.as_deref() {
                Some(email) => (
                    format!("<a href=\"mailto:{email}\">@{name}</a>"),
                    format!("@{} <{email}>", user.display_name),
                ),
                None => (format!("<b>@{name}</b>"), format!("@{}", user.display_name)),
            };
            assert!(html.contains(&shown), "{id}: {shown} in {html}");
            assert!(text.contains(&written), "{id}: {written} in {text}");
            *seen.entry("mention").or_default() += 1;
        }
        for tag in &m.hashtags {
            assert!(html.contains(&format!("<b>#{tag}</b>")), "{id}: {html}");
            assert!(text.contains(&format!("#{tag}")), "{id}: {text}");
            *seen.entry("hashtag").or_default() += 1;
        }
        for ticker in &m.cashtags {
            assert!(html.contains(&format!("<b>${ticker}</b>")), "{id}: {html}");
            assert!(text.contains(&format!("${ticker}")), "{id}: {text}");
            *seen.entry("cashtag").or_default() += 1;
        }
        if !m.emojis.is_empty() {
            // The emoji end the message.
            let mut emoji: Vec<char> = m
                .text
                .chars()
                .rev()
                .take_while(|c| !c.is_ascii() && !c.is_alphabetic())
                .collect();
            emoji.reverse();
            let emoji: String = emoji.into_iter().collect();
            assert!(!emoji.is_empty(), "{id}: {}", m.text);
            assert!(html.contains(&emoji), "{id}: {emoji} in {html}");
            assert!(text.contains(&emoji), "{id}: {emoji} in {text}");
            *seen.entry("emoji").or_default() += 1;
        }
        let rows: Vec<&str> = m.text.lines().filter(|l| l.contains('\t')).collect();
        if !rows.is_empty() {
            assert!(html.contains("<table><thead><tr><th>"), "{id}: {html}");
            for row in rows {
                let cells: Vec<&str> = row.split('\t').collect();
                assert!(text.contains(&cells.join(" | ")), "{id}: {text}");
                let tag = if cells[0] == "Ticker" { "th" } else { "td" };
                let html_row: String = cells
                    .iter()
                    .map(|c| format!("<{tag}>{}</{tag}>", html_escaped(c)))
                    .collect();
                assert!(
                    html.contains(&format!("<tr>{html_row}</tr>")),
                    "{id}: {html}"
                );
            }
            *seen.entry("table").or_default() += 1;
        }
        if let Some(original) = m.parent_message_id.as_deref()
            && m.relation == Some(Relation::Forward)
        {
            assert_eq!(
                header(&parsed, "X-Connector-Forward-Of").as_deref(),
                Some(original)
            );
            assert!(text.starts_with("Forwarded from "), "{id}: {text}");
            assert!(
                !text.contains(original),
                "{id}: the source id stays in the headers: {text}"
            );
            *seen.entry("forward").or_default() += 1;
        }
        if let Some(shared) = m
            .shared_message_id
            .as_deref()
            .and_then(|s| truth.message(s))
        {
            let author = truth.user(shared.sender_user_id).unwrap();
            let heading = format!("Shared message from {}", author.display_name);
            assert!(
                html.contains(&format!("<blockquote><p>{}", html_escaped(&heading))),
                "{id}: {html}"
            );
            assert!(text.contains(&heading), "{id}: {text}");
            let files: Vec<&str> = parsed
                .attachments()
                .filter_map(|a| a.attachment_name())
                .collect();
            for file in &shared.attachments {
                assert!(files.contains(&file.name.as_str()), "{id}: {files:?}");
                *seen.entry("shared file").or_default() += 1;
            }
            *seen.entry("shared").or_default() += 1;
        }
        if !m.inline_images.is_empty() {
            // check_archive matched each inline part to its `cid:`; here the
            // parts sit beside the HTML in one multipart/related.
            let tree = mailparse::parse_mail(raw).unwrap();
            fn related<'a>(
                p: &'a mailparse::ParsedMail<'a>,
            ) -> Option<&'a mailparse::ParsedMail<'a>> {
                if p.ctype.mimetype == "multipart/related" {
                    return Some(p);
                }
                p.subparts.iter().find_map(related)
            }
            let related = related(&tree).unwrap_or_else(|| panic!("{id}: multipart/related"));
            assert_eq!(related.subparts[0].ctype.mimetype, "multipart/alternative");
            let shared = m
                .shared_message_id
                .as_deref()
                .and_then(|s| truth.message(s));
            let want: Vec<&str> = m
                .inline_images
                .iter()
                .chain(shared.iter().flat_map(|s| &s.inline_images))
                .map(|i| i.sha256.as_str())
                .collect();
            let mut got = Vec::new();
            for image in &related.subparts[1..] {
                assert_eq!(image.ctype.mimetype, "image/svg+xml", "{id}");
                let cid = image
                    .headers
                    .iter()
                    .find(|h| h.get_key().eq_ignore_ascii_case("Content-ID"))
                    .map(|h| h.get_value())
                    .unwrap_or_else(|| panic!("{id}: a Content-ID"));
                let cid = cid.trim().trim_start_matches('<').trim_end_matches('>');
                assert!(html.contains(&format!("src=\"cid:{cid}\"")), "{id}: {html}");
                got.push(hex::encode(Sha256::digest(image.get_body_raw().unwrap())));
            }
            assert_eq!(got, want, "{id}: the exact bytes");
            *seen.entry("inline image").or_default() += 1;
        }
    }
    for kind in [
        "mention",
        "hashtag",
        "cashtag",
        "emoji",
        "table",
        "forward",
        "shared",
        "shared file",
        "inline image",
    ] {
        assert!(
            seen.get(kind).is_some_and(|n| *n > 0),
            "no {kind} checked: {seen:?}"
        );
    }
}
