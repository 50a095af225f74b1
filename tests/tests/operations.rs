//! What operators and auditors do after runs, with the real binary: the
//! admin log, quarantine redelivery once the mapping is fixed, the
//! reconciliation report (and its mismatch flags), and backfills over a
//! date range.

use std::collections::BTreeSet;
use std::path::Path;

use connector_e2e::ops::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_connector-cli");

fn bin() -> &'static Path {
    Path::new(BIN)
}

/// The admin log: its summary as (column, value) pairs, and its failure rows.
struct AdminLog {
    summary: Vec<(String, String)>,
    failures: Vec<Vec<String>>,
}

impl AdminLog {
    fn parse(text: &str) -> AdminLog {
        let (head, tail) = text
            .split_once("\n\n")
            .expect("a blank line separates the summary from the failures");
        let mut r = csv::Reader::from_reader(head.as_bytes());
        let columns: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
        let values: Vec<String> = r
            .records()
            .next()
            .expect("a summary row")
            .unwrap()
            .iter()
            .map(String::from)
            .collect();
        let mut r = csv::Reader::from_reader(tail.as_bytes());
        assert_eq!(
            r.headers().unwrap().iter().collect::<Vec<_>>(),
            ["Item id", "Source user id", "Mailbox", "Failure", "Reason"]
        );
        let failures = r
            .records()
            .map(|rec| rec.unwrap().iter().map(String::from).collect())
            .collect();
        AdminLog {
            summary: columns.into_iter().zip(values).collect(),
            failures,
        }
    }

    fn get(&self, column: &str) -> &str {
        &self
            .summary
            .iter()
            .find(|(c, _)| c == column)
            .unwrap_or_else(|| panic!("admin log has no column {column}"))
            .1
    }

    fn count(&self, column: &str) -> usize {
        self.get(column).parse().unwrap()
    }
}

fn emails_in_mailboxes(mail: &Path) -> usize {
    mailbox_contents(mail, CHAT_FOLDER_ON_DISK)
        .values()
        .map(Vec::len)
        .sum()
}

#[test]
fn the_admin_log_counts_equal_what_the_mailboxes_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let s = chat_setup(tmp.path(), "ops", 31, 4, "24h");
    let config = s.config.to_str().unwrap();
    let out = connector_ok(bin(), &s.state, &["run", "--once", config]);
    let run: i64 = out
        .split_whitespace()
        .nth(2)
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("`run` names its run: {out}"));
    let text = connector_ok(bin(), &s.state, &["log", "--connector", "ops", "--last"]);
    let by_id = connector_ok(bin(), &s.state, &["log", &run.to_string()]);
    assert_eq!(text, by_id, "`log RUN` and `log --connector --last` agree");
    let log = AdminLog::parse(&text);
    assert_eq!(
        log.summary
            .iter()
            .map(|(c, _)| c.as_str())
            .take(7)
            .collect::<Vec<_>>(),
        [
            "Completion time",
            "Items available from source",
            "Items available for import after fan-out",
            "Imported",
            "Partially imported",
            "Skipped as duplicates",
            "Failed"
        ]
    );
    assert!(log.get("Completion time").starts_with("20"), "{text}");
    let in_mailboxes = emails_in_mailboxes(&s.mail);
    assert_eq!(in_mailboxes, assert_mailboxes_match(&s.mail, &s.truth));
    assert_eq!(log.count("Imported"), in_mailboxes);
    assert_eq!(log.count("Items available from source"), 31);
    let quarantined = s.truth.quarantined.len();
    // Every participant of every message is an item for import: the
    // delivered ones plus dave, who has no mailbox, on each room-ext message.
    assert_eq!(
        log.count("Items available for import after fan-out"),
        in_mailboxes + quarantined
    );
    assert_eq!(log.count("Skipped as duplicates"), 0);
    assert_eq!(log.count("Failed"), quarantined);
    assert_eq!(log.count("Partially imported"), quarantined);
    assert_eq!(log.count("Quarantined"), quarantined);
    assert_eq!(log.get("Outcome"), "succeeded");
    assert_eq!(log.failures.len(), log.count("Failed"));
    let failed_items: BTreeSet<String> = log.failures.iter().map(|f| f[0].clone()).collect();
    assert_eq!(failed_items, s.truth.quarantined);
    for f in &log.failures {
        assert_eq!(f[1], "u-dave");
        assert_eq!(f[2], "", "no mailbox");
        assert_eq!(f[3], "unmapped");
        assert!(f[4].contains("mapping CSV"), "{}", f[4]);
    }

    // A second run finds nothing new: its log says so.
    connector_ok(bin(), &s.state, &["run", "--once", config]);
    let again = AdminLog::parse(&connector_ok(
        bin(),
        &s.state,
        &["log", "--connector", "ops", "--last"],
    ));
    assert_eq!(again.count("Imported"), 0);
    assert_eq!(again.count("Items available from source"), 0);
    assert!(again.failures.is_empty());
    assert_eq!(emails_in_mailboxes(&s.mail), in_mailboxes);
}

#[test]
fn quarantined_items_reach_newly_mapped_mailboxes_once_the_mapping_csv_is_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = chat_setup(tmp.path(), "quar", 24, 5, "24h");
    let config = &s.config.to_str().unwrap().to_string();
    connector_ok(bin(), &s.state, &["run", "--once", config]);
    let list = connector_ok(bin(), &s.state, &["quarantine", "list"]);
    let mut r = csv::Reader::from_reader(list.as_bytes());
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), s.truth.quarantined.len(), "{list}");
    for row in &rows {
        assert_eq!(&row[0], "quar");
        assert!(s.truth.quarantined.contains(&row[1]));
        assert_eq!(&row[4], "u-dave");
    }

    // Before the fix nothing changes.
    let out = connector_ok(bin(), &s.state, &["quarantine", "redeliver", config]);
    assert!(out.contains(" 0 imported"), "{out}");
    assert!(
        out.contains(&format!("{} quarantined", rows.len())),
        "{out}"
    );
    assert!(out.contains(" 0 released"), "{out}");

    let state = s.state.clone();
    let out = s.redeliver_quarantine_to_dave(|| {
        connector_ok(bin(), &state, &["quarantine", "redeliver", config])
    });
    let n = rows.len();
    assert!(out.contains(&format!("{n} imported")), "{out}");
    assert!(out.contains(&format!("{n} released")), "{out}");
    let list = connector_ok(bin(), &s.state, &["quarantine", "list", "quar", "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&list).unwrap(),
        Value::Array(vec![])
    );

    // The redelivery has its own admin log.
    let log = AdminLog::parse(&connector_ok(
        bin(),
        &s.state,
        &["log", "--connector", "quar", "--last"],
    ));
    assert_eq!(log.get("Run kind"), "redeliver");
    assert_eq!(log.count("Imported"), n);
    assert_eq!(log.count("Failed"), 0);

    // Doing it again, or a backfill over everything, delivers nothing twice.
    let out = connector_ok(bin(), &s.state, &["quarantine", "redeliver", config]);
    assert!(out.contains(": 0 item(s) from source"), "{out}");
    let out = connector_ok(
        bin(),
        &s.state,
        &["run", "--once", "--from", "2020-01-01", config],
    );
    assert!(out.contains(" 0 imported"), "{out}");
    assert!(out.contains(" 0 quarantined"), "{out}");
    assert_mailboxes_match(&s.mail, &s.truth);
}

#[test]
fn reconcile_proves_every_delivery_and_flags_an_altered_source_item_and_a_lost_email() {
    let tmp = tempfile::tempdir().unwrap();
    let s = chat_setup(tmp.path(), "audit", 27, 6, "24h");
    let config = s.config.to_str().unwrap();
    connector_ok(bin(), &s.state, &["run", "--once", config]);
    let args = [
        "reconcile",
        "--connector",
        "audit",
        "--last",
        "--format",
        "json",
        "--check-mailboxes",
        config,
    ];
    let rec: Value = serde_json::from_str(&connector_ok(bin(), &s.state, &args)).unwrap();
    assert_eq!(rec["items_seen"], 27);
    assert_eq!(rec["mismatches"], 0);
    assert_eq!(rec["mailboxes_checked"], true);
    let rows = rec["rows"].as_array().unwrap();
    let delivered: Vec<&Value> = rows.iter().filter(|r| r["status"] == "delivered").collect();
    assert_eq!(delivered.len(), s.truth.pairs());
    for r in &delivered {
        assert_eq!(r["source_sha256"], r["delivered_source_sha256"]);
        assert_eq!(r["email_sha256"].as_str().unwrap().len(), 64);
        assert_eq!(r["source_sha256"].as_str().unwrap().len(), 64);
    }
    let quarantined = rows.iter().filter(|r| r["status"] == "quarantined").count();
    assert_eq!(quarantined, s.truth.quarantined.len());
    // Per mailbox per day, the counts add up (27 hourly messages: two days).
    let by_day = connector_ok(
        bin(),
        &s.state,
        &["reconcile", "--connector", "audit", "--last", "--by-day"],
    );
    let mut r = csv::Reader::from_reader(by_day.as_bytes());
    let mut days = BTreeSet::new();
    let mut delivered_sum = 0;
    for rec in r.records() {
        let rec = rec.unwrap();
        days.insert(rec[0].to_string());
        delivered_sum += rec[3].parse::<usize>().unwrap();
        assert_eq!(&rec[5], "0");
    }
    assert_eq!(days, ["2026-01-01", "2026-01-02"].map(String::from).into());
    assert_eq!(delivered_sum, s.truth.pairs());

    // The source alters a message it already gave (same length, so the
    // export's offsets hold), and an email disappears from a mailbox.
    let text = std::fs::read_to_string(&s.export).unwrap();
    std::fs::write(
        &s.export,
        text.replace("\"message 1 in im-1", "\"MESSAGE 1 in im-1"),
    )
    .unwrap();
    let victim = chat_message_id("m-00004");
    let alice = connector_e2e::maildir_emails(&s.mail, "alice@example.test", CHAT_FOLDER_ON_DISK);
    let lost = alice
        .iter()
        .find(|e| String::from_utf8_lossy(&e.bytes).contains(&victim))
        .unwrap();
    std::fs::remove_file(&lost.path).unwrap();

    let out = connector_ok(
        bin(),
        &s.state,
        &[
            "run",
            "--once",
            "--from",
            "2026-01-01",
            "--to",
            "2026-01-03",
            config,
        ],
    );
    assert!(
        out.contains(" 0 imported"),
        "the ledger keeps the backfill from redelivering: {out}"
    );
    let result = connector(bin(), &s.state, &args);
    assert_eq!(
        result.status.code(),
        Some(1),
        "mismatches make reconcile fail"
    );
    let rec: Value = serde_json::from_slice(&result.stdout).unwrap();
    let flagged: BTreeSet<(String, String, String)> = rec["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["mismatch"] == true)
        .map(|r| {
            (
                r["item_id"].as_str().unwrap().to_string(),
                r["mailbox"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String, String)> = [
        ("m-00001", "alice@example.test", "source-changed"),
        ("m-00001", "bob@example.test", "source-changed"),
        ("m-00004", "alice@example.test", "not-in-mailbox"),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.into(), b.into(), c.into()))
    .collect();
    assert_eq!(flagged, want);
    assert_eq!(rec["mismatches"], 3);
}

#[test]
fn a_backfill_delivers_only_its_date_range_resumes_when_interrupted_and_leaves_the_checkpoint_alone()
 {
    let tmp = tempfile::tempdir().unwrap();
    let s = chat_setup(tmp.path(), "back", 48, 4, "24h");
    let config = s.config.to_str().unwrap();
    let range = [
        "--from",
        "2026-01-01T10:00:00Z",
        "--to",
        "2026-01-01T20:00:00Z",
    ];
    // Stopped after 4 pages (messages 0–15, of which 10–15 are in range).
    let mut args = vec!["run", "--once", "--max-pages", "4"];
    args.extend(range);
    args.push(config);
    let out = connector_ok(bin(), &s.state, &args);
    assert!(out.contains("interrupted"), "{out}");
    assert!(out.contains(" 6 item(s) from source"), "{out}");
    // The same backfill again resumes at its own checkpoint: messages 16–19.
    let mut args = vec!["run", "--once"];
    args.extend(range);
    args.push(config);
    let out = connector_ok(bin(), &s.state, &args);
    assert!(out.contains("succeeded"), "{out}");
    assert!(out.contains(" 4 item(s) from source"), "{out}");
    let in_range: BTreeSet<String> = (10..20)
        .map(|i| chat_message_id(&format!("m-{i:05}")))
        .collect();
    let got = mailbox_contents(&s.mail, CHAT_FOLDER_ON_DISK);
    let mut pairs = 0;
    for (mailbox, ids) in &got {
        for id in ids {
            assert!(
                in_range.contains(id),
                "{mailbox} got {id}, outside the range"
            );
        }
        pairs += ids.len();
    }
    let want_pairs: usize = s
        .truth
        .mailboxes
        .values()
        .map(|ids| ids.intersection(&in_range).count())
        .sum();
    assert_eq!(pairs, want_pairs);

    // The connector's own checkpoint was never moved: its first run starts
    // at the beginning and skips what the backfill delivered.
    let out = connector_ok(bin(), &s.state, &["run", "--once", config]);
    assert!(out.contains(" 48 item(s) from source"), "{out}");
    assert!(
        out.contains(&format!(" {want_pairs} skipped as duplicates")),
        "{out}"
    );
    assert_mailboxes_match(&s.mail, &s.truth);
}

#[test]
fn a_closed_output_pipe_ends_the_command_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let s = chat_setup(tmp.path(), "pipe", 12, 4, "24h");
    connector_ok(
        bin(),
        &s.state,
        &["run", "--once", s.config.to_str().unwrap()],
    );
    for args in [
        &["log", "--connector", "pipe", "--last"][..],
        &["status", s.config.to_str().unwrap()][..],
        &["quarantine", "list"][..],
    ] {
        // As `connector log … | head` once head has exited: the reader is
        // gone before the command writes anything.
        let mut child = std::process::Command::new(bin())
            .arg("--state-dir")
            .arg(&s.state)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "{args:?} printed: {stderr}");
        assert_eq!(
            out.status.code(),
            Some(141),
            "{args:?}: as if ended by SIGPIPE"
        );
    }
}

/// `connector validate` and `connector run --once` on `s`'s connector
/// file: each must fail; their standard errors.
fn validate_and_run_refuse(s: &ChatSetup) -> [String; 2] {
    let config = s.config.to_str().unwrap();
    [&["validate", config][..], &["run", "--once", config][..]].map(|args| {
        let out = connector(bin(), &s.state, args);
        assert!(!out.status.success(), "{args:?} must fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    })
}

#[test]
fn a_missing_mapping_csv_is_named_once_with_its_connector_file_and_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let s = chat_setup(tmp.path(), "nocsv", 3, 4, "24h");
    std::fs::remove_file(&s.users_csv).unwrap();
    for stderr in validate_and_run_refuse(&s) {
        assert!(
            stderr.contains(&s.users_csv.display().to_string()),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "{} names in [mapping] overrides",
                s.config.display()
            )),
            "says which connector file names it: {stderr}"
        );
        assert!(stderr.contains("create it"), "says what to do: {stderr}");
        assert_eq!(stderr.matches("os error 2").count(), 1, "{stderr}");
        assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");
    }
}

/// A chat-export connector `id` of 3 messages whose connector file has
/// `from` replaced by `to`.
fn chat_setup_with(dir: &Path, id: &str, from: &str, to: &str) -> ChatSetup {
    let s = chat_setup(dir, id, 3, 4, "24h");
    let text = std::fs::read_to_string(&s.config).unwrap();
    let changed = text.replace(from, to);
    assert_ne!(text, changed, "the setup's connector file has {from:?}");
    std::fs::write(&s.config, changed).unwrap();
    s
}

#[test]
fn a_path_outside_the_granted_folders_is_named_with_the_grant_to_add() {
    let tmp = tempfile::tempdir().unwrap();
    let s = chat_setup_with(tmp.path(), "nofolder", "\"/export\" = ", "\"/data\" = ");
    for stderr in validate_and_run_refuse(&s) {
        assert!(stderr.contains("/export/chat.jsonl"), "{stderr}");
        assert!(
            stderr.contains("not inside a folder granted to the plugin"),
            "{stderr}"
        );
        assert!(
            stderr.contains("`[grants] files = { \"/export\" = "),
            "says how to grant it: {stderr}"
        );
        assert!(!stderr.contains("os error 44"), "{stderr}");
    }
}

#[test]
fn a_plugin_that_reads_files_with_no_granted_folder_is_refused_before_the_source_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let s = chat_setup_with(
        tmp.path(),
        "nogrant",
        "files = { \"/export\" = \"export-nogrant\" }\n",
        "",
    );
    for stderr in validate_and_run_refuse(&s) {
        assert!(
            stderr.contains(&format!(
                "{}: plugin `chat-export` reads files",
                s.config.display()
            )),
            "names the connector file: {stderr}"
        );
        assert!(
            stderr.contains("grants it no folder") && stderr.contains("files = { \"/export\""),
            "says what to add: {stderr}"
        );
    }
}

#[test]
fn a_bad_plugin_setting_is_reported_at_its_line_of_the_connector_file() {
    let tmp = tempfile::tempdir().unwrap();
    let s = chat_setup(tmp.path(), "badcfg", 3, 4, "24h");
    let text = std::fs::read_to_string(&s.config).unwrap();
    let bad = text.replace("page_size = 4\n", "page_size = \"four\"\n");
    assert_ne!(text, bad, "the setup sets page_size");
    std::fs::write(&s.config, &bad).unwrap();
    let line = bad
        .lines()
        .position(|l| l.starts_with("page_size"))
        .unwrap()
        + 1;
    let place = format!(
        "{}:{line}: `page_size` in [plugin-config]",
        s.config.display()
    );
    for stderr in validate_and_run_refuse(&s) {
        assert!(stderr.contains(&place), "expected {place:?} in: {stderr}");
        assert!(!stderr.contains("line 1 column"), "{stderr}");
    }
}

#[test]
fn the_state_folder_is_created_for_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let s = chat_setup(tmp.path(), "perm", 2, 4, "24h");
    connector_ok(
        bin(),
        &s.state,
        &["run", "--once", s.config.to_str().unwrap()],
    );
    let mode = std::fs::metadata(&s.state).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
}

#[test]
fn validate_refuses_a_secrets_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let s = chat_setup(tmp.path(), "exposed", 2, 4, "24h");
    let secrets = s.root.join("exposed-secrets.toml");
    std::fs::write(&secrets, "token = \"t\"\n").unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut text = std::fs::read_to_string(&s.config).unwrap();
    text.push_str("[secrets]\nfrom = \"file\"\npath = \"exposed-secrets.toml\"\n");
    std::fs::write(&s.config, text).unwrap();
    let out = connector(bin(), &s.state, &["validate", s.config.to_str().unwrap()]);
    assert!(!out.status.success(), "validate must refuse what run would");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("chmod 600"), "{stderr}");
}

#[test]
fn a_reply_quotes_the_sender_time_and_first_line_of_the_message_it_answers_not_its_source_id() {
    let tmp = tempfile::tempdir().unwrap();
    // One message a page: the parent is in the page before the reply's.
    let s = chat_setup(tmp.path(), "replies", 0, 1, "24h");
    let alice = serde_json::json!({"id": "u-alice", "email": "alice@example.test"});
    let bob = serde_json::json!({"id": "u-bob", "email": "bob@example.test"});
    let lines = [
        serde_json::json!({"type": "conversation", "id": "town-square", "kind": "room",
                           "participants": [alice, bob]}),
        serde_json::json!({"type": "message", "id": "post:t:town-square:1",
                           "conversation": "town-square", "sender": alice,
                           "sent_at": "2026-01-05T10:00:00Z", "text": "Price is 101\nsecond line"}),
        serde_json::json!({"type": "message", "id": "post:t:town-square:2",
                           "conversation": "town-square", "sender": bob,
                           "sent_at": "2026-01-05T10:05:00Z", "text": "Agreed",
                           "reply_to": "post:t:town-square:1"}),
        serde_json::json!({"type": "message", "id": "post:t:town-square:3",
                           "conversation": "town-square", "sender": bob,
                           "sent_at": "2026-01-05T10:06:00Z", "text": "Still agreed",
                           "reply_to": "post:t:town-square:0"}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&s.export, text).unwrap();
    connector_ok(
        bin(),
        &s.state,
        &["run", "--once", s.config.to_str().unwrap()],
    );
    let bodies: Vec<String> =
        connector_e2e::maildir_emails(&s.mail, "alice@example.test", ".INBOX.Chat")
            .iter()
            .map(|e| {
                let parsed = mail_parser::MessageParser::default()
                    .parse(&e.bytes)
                    .expect("an email");
                parsed.body_text(0).unwrap().replace("\r\n", "\n")
            })
            .collect();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    assert!(
        bodies.contains(
            &"On 2026-01-05 at 10:00:00 UTC, alice@example.test wrote:\n> Price is 101\n\nAgreed"
                .to_string()
        ),
        "the reply quotes its parent: {bodies:?}"
    );
    assert!(
        bodies.contains(&"In reply to an earlier message\n\nStill agreed".to_string()),
        "a reply to a message the host never read says so: {bodies:?}"
    );
    for body in &bodies {
        assert!(!body.contains("post:t:"), "no source id in a body: {body}");
    }
}
