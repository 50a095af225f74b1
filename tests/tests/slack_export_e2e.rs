//! The slack-export plugin, built to wasm32-wasip2, run by the real host
//! over a generated Slack workspace export (ZIP and unzipped folder) into a
//! Maildir; every delivered email is parsed back and compared with the
//! export.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use connector_e2e::slack::{self, SlackExport};
use connector_e2e::*;
use connector_email::EmailConverter;
use connector_host::config::ConnectorConfig;
use connector_host::pipeline::{Host, RunOptions};
use connector_state::RunOutcome;
use mail_parser::{MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};

const FOLDER_ON_DISK: &str = ".INBOX.Slack";

/// Installs slack-export into `dir`, its manifest also declaring the
/// loopback origin that serves `url_private` downloads in these tests.
fn install_slack(dir: &Path) -> PathBuf {
    let manifest = install_plugin("slack-export", "plugins/slack-export/manifest.toml", dir);
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text.replace(
        "hosts = [\"https://files.slack.com\"]",
        "hosts = [\"https://files.slack.com\", \"http://127.0.0.1:*\"]",
    );
    std::fs::write(&manifest, text).unwrap();
    manifest
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    manifest: PathBuf,
    origin: String,
}

fn setup(export: &SlackExport) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let manifest = install_slack(&root.join("plugin"));
    let origin = serve_files(export.downloads.clone());
    std::fs::create_dir_all(root.join("export")).unwrap();
    write_file(
        &root,
        "users.csv",
        "ExternalUserId,Mailbox\nU03CAROL,carol@example.test\n",
    );
    write_secrets(&root, "slack-token = \"Bearer xoxb-test\"\n");
    Setup {
        _tmp: tmp,
        root,
        manifest,
        origin,
    }
}

fn connector(s: &Setup, path: &str, page_size: usize) -> ConnectorConfig {
    let file = write_file(
        &s.root,
        "connector.toml",
        &format!(
            r#"
id = "slack-e2e"
plugin = "{manifest}"
[plugin-config]
path = "{path}"
page_size = {page_size}
download_files = true
[grants]
hosts = ["{origin}"]
secrets = ["slack-token"]
files = {{ "/export" = "export" }}
[secrets]
from = "file"
path = "secrets.toml"
[mapping]
overrides = "users.csv"
domains = ["example.test"]
[sink]
kind = "maildir"
path = "mail"
fsync = false
"#,
            manifest = s.manifest.display(),
            origin = s.origin,
        ),
    );
    ConnectorConfig::load(&file).unwrap()
}

fn check_mailboxes(mail: &Path, expected: &[slack::ExpectedMessage]) {
    let converter = EmailConverter::new("slack-export", "Slack");
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in expected {
        for mb in &e.mailboxes {
            want.entry(mb.clone())
                .or_default()
                .insert(converter.message_id(&e.id));
        }
    }
    assert_eq!(mailboxes(mail), want.keys().cloned().collect::<Vec<_>>());
    let by_id: BTreeMap<String, &slack::ExpectedMessage> = expected
        .iter()
        .map(|e| (converter.message_id(&e.id), e))
        .collect();
    for (mailbox, ids) in &want {
        let mut seen = BTreeSet::new();
        for stored in maildir_emails(mail, mailbox, FOLDER_ON_DISK) {
            let parsed = MessageParser::default().parse(&stored.bytes).unwrap();
            let mid = parsed.message_id().unwrap().to_string();
            assert!(seen.insert(mid.clone()), "{mailbox}: {mid} twice");
            let e = by_id
                .get(&mid)
                .unwrap_or_else(|| panic!("unexpected {mid}"));
            let header = |name: &str| parsed.header_raw(name).map(|v| v.trim().to_string());
            assert_eq!(
                header("X-Connector-Message-Id").as_deref(),
                Some(e.id.as_str())
            );
            assert_eq!(
                header("X-Connector-Conversation-Id").as_deref(),
                Some(e.conversation.as_str())
            );
            assert_eq!(
                parsed.date().unwrap().to_timestamp(),
                e.sent_at / 1000,
                "{}",
                e.id
            );
            let from = parsed
                .from()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .unwrap()
                .to_lowercase();
            if let Some(email) = &e.sender_email {
                assert_eq!(&from, email, "{}", e.id);
            }
            if !e.text.is_empty() {
                let body = parsed.body_text(0).expect("text body");
                assert!(
                    body.contains(&e.text),
                    "{}: body {body:?} lacks {:?}",
                    e.id,
                    e.text
                );
            }
            if let Some(parent) = &e.reply_to {
                assert_eq!(
                    parsed.in_reply_to().as_text().unwrap(),
                    converter.message_id(parent),
                    "{} thread parent",
                    e.id
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
            assert_eq!(got.len(), e.attachments.len(), "{} attachments", e.id);
            for ((gn, gb), (wn, wb)) in got.iter().zip(&e.attachments) {
                assert_eq!(gn, wn);
                assert_eq!(Sha256::digest(gb), Sha256::digest(wb), "{} {wn}", e.id);
            }
        }
        assert_eq!(&seen, ids, "{mailbox}: exactly the expected messages");
    }
}

#[test]
fn a_slack_zip_export_reaches_every_mapped_member_once_and_parses_back_intact() {
    let export = slack::build(3, 6);
    let s = setup(&export);
    export.write_zip(&s.root.join("export/slack.zip"), &s.origin);
    let config = connector(&s, "/export/slack.zip", 7);
    let host = Host::open(&s.root.join("state")).unwrap();
    host.validate(&config).unwrap();
    let summary = host.run_once(&config, &RunOptions::default()).unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded);
    assert_eq!(
        summary.counts.items_from_source as usize,
        export.expected.len()
    );
    let deliveries: usize = export.expected.iter().map(|e| e.mailboxes.len()).sum();
    assert_eq!(summary.counts.imported as usize, deliveries);
    let quarantined = export.expected.iter().filter(|e| e.quarantined).count();
    assert_eq!(summary.counts.quarantined as usize, quarantined);
    check_mailboxes(&s.root.join("mail"), &export.expected);
    // Nothing new: nothing imported again.
    let again = host.run_once(&config, &RunOptions::default()).unwrap();
    assert_eq!(again.counts.imported, 0);
    assert_eq!(again.counts.items_from_source, 0);
}

#[test]
fn a_newer_export_of_the_same_workspace_imports_only_what_is_new() {
    let older = slack::build(2, 5);
    let newer = slack::build(4, 5);
    let s = setup(&newer);
    let dir = s.root.join("export/slack");
    older.write_dir(&dir, &s.origin);
    let config = connector(&s, "/export/slack", 50);
    let host = Host::open(&s.root.join("state")).unwrap();
    let first = host.run_once(&config, &RunOptions::default()).unwrap();
    assert_eq!(
        first.counts.items_from_source as usize,
        older.expected.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
    newer.write_dir(&dir, &s.origin);
    let second = host.run_once(&config, &RunOptions::default()).unwrap();
    assert_eq!(second.outcome, RunOutcome::Succeeded);
    assert_eq!(
        second.counts.items_from_source as usize,
        newer.expected.len() - older.expected.len(),
        "only days 3 and 4 are new"
    );
    assert_eq!(second.counts.skipped_duplicates, 0);
    check_mailboxes(&s.root.join("mail"), &newer.expected);
}

#[test]
fn a_run_stopped_midway_resumes_where_it_stopped() {
    let export = slack::build(2, 4);
    let s = setup(&export);
    export.write_zip(&s.root.join("export/slack.zip"), &s.origin);
    let config = connector(&s, "/export/slack.zip", 3);
    let host = Host::open(&s.root.join("state")).unwrap();
    let first = host
        .run_once(&config, &RunOptions { max_pages: Some(4) })
        .unwrap();
    assert_eq!(first.outcome, RunOutcome::Interrupted);
    assert_eq!(first.counts.items_from_source, 12);
    let second = host.run_once(&config, &RunOptions::default()).unwrap();
    assert_eq!(second.outcome, RunOutcome::Succeeded);
    assert_eq!(
        second.counts.items_from_source as usize,
        export.expected.len() - 12
    );
    check_mailboxes(&s.root.join("mail"), &export.expected);
}

#[test]
fn the_example_connector_file_parses() {
    let config =
        ConnectorConfig::load(&workspace_root().join("examples/slack/connector.toml")).unwrap();
    assert_eq!(config.id, "slack");
    assert!(config.plugin.ends_with("slack-export/manifest.toml"));
}
