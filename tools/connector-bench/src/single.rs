//! `throughput`'s single-mailbox case: a chat export of `--messages`
//! messages of about 1 KB in one conversation of one person, archived by
//! the chat-export plugin (pages of 1,000) through the host into one
//! mailbox of a real Dovecot (master user, one connection, `--batch`
//! emails per MULTIAPPEND); then the same emails appended by the raw
//! MULTIAPPEND client over one connection with the same batch size. Prints
//! both rates, their ratio, and how busy the connector's process was (CPU
//! time over wall time of its run). State and mail go where `--dir` and
//! `TMPDIR` say (tmpfs: `--dir /dev/shm`, `TMPDIR=/dev/shm`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use connector_e2e::chat_fixture::{ChatFixture, Paging, connector_file};
use connector_e2e::dovecot::{Dovecot, DovecotOptions, MASTER_PASSWORD, master_sink_table};
use connector_host::config::ConnectorConfig;
use connector_host::pipeline::Host;
use serde_json::json;

use super::{busy, per_sec, raw_multiappend, read_emails_in, report_run, timed_run};

/// Emails per MULTIAPPEND, for the sink and the raw client alike.
pub const BATCH: usize = 500;
/// Messages per plugin page.
const PAGE: u32 = 1_000;
const USER: &str = "archive@example.test";

pub fn single_mailbox(tmp: tempfile::TempDir, messages: usize, batch: usize) -> Result<()> {
    if !Path::new(connector_e2e::dovecot::DOVECOT).is_file() {
        bail!("Dovecot not installed (apt-get install dovecot-imapd)");
    }
    let dovecot = Dovecot::start(DovecotOptions {
        users: vec![(USER.to_string(), "unused-pass".to_string())],
        ..DovecotOptions::default()
    });
    let config = connector(tmp.path(), dovecot.port(), messages, batch)?;
    let host = Host::open(&tmp.path().join("state"))?;
    let dovecot_before = dovecot.cpu_time();
    let (summary, elapsed, cpu) = timed_run(&host, &config)?;
    let dovecot_path = dovecot.cpu_time().saturating_sub(dovecot_before);
    report_run(
        "single mailbox: chat export → Dovecot (IMAP, 1 connection)",
        &summary.counts,
        elapsed,
    );
    println!("single mailbox: the connector used {}", busy(cpu, elapsed));
    println!(
        "single mailbox: Dovecot used {} during the whole path's run",
        busy(dovecot_path, elapsed)
    );
    let emails = read_folder(&dovecot, "INBOX/Symphony")?;
    if emails.len() as u64 != summary.counts.imported {
        bail!(
            "the mailbox holds {} emails, the run imported {}",
            emails.len(),
            summary.counts.imported
        );
    }
    let bytes: usize = emails.iter().map(Vec::len).sum();
    let count = emails.len();
    let by_mailbox = BTreeMap::from([(USER.to_string(), emails)]);
    let dovecot_before = dovecot.cpu_time();
    let raw = raw_multiappend(dovecot.port(), &by_mailbox, 1, batch)?;
    let dovecot_raw = dovecot.cpu_time().saturating_sub(dovecot_before);
    let host_rate = per_sec(summary.counts.imported, elapsed);
    let raw_rate = per_sec(count as u64, raw);
    println!(
        "single mailbox: raw MULTIAPPEND (same {count} emails, mean {} bytes, 1 connection, {batch} per command, no host): {:.2}s = {raw_rate:.0} emails/s",
        bytes / count.max(1),
        raw.as_secs_f64()
    );
    println!(
        "single mailbox: Dovecot used {} during the raw client's run",
        busy(dovecot_raw, raw)
    );
    println!(
        "single mailbox: whole path / raw client: {:.2}",
        host_rate / raw_rate
    );
    Ok(())
}

/// The connector: one conversation whose only participant is [`USER`],
/// `messages` messages of about 1 KB, the IMAP sink with one connection.
fn connector(dir: &Path, port: u16, messages: usize, batch: usize) -> Result<ConnectorConfig> {
    let manifest = connector_e2e::install_chat_export(&dir.join("plugin"));
    let export = dir.join("export");
    std::fs::create_dir_all(&export)?;
    let person = json!({"id": "u-archive", "name": "Archive", "email": USER});
    let mut text = String::with_capacity(messages * 800);
    text.push_str(
        &json!({"type": "conversation", "id": "desk", "kind": "room",
            "name": "Trading desk", "participants": [person]})
        .to_string(),
    );
    text.push('\n');
    let filler = "The desk's note of the day, kept for the record. ".repeat(8);
    for i in 0..messages {
        text.push_str(
            &json!({"type": "message", "id": format!("m{i:07}"), "conversation": "desk",
                "sender": person, "sent_at": 1_767_000_000_000i64 + i as i64,
                "text": format!("Message {i}. {filler}")})
            .to_string(),
        );
        text.push('\n');
    }
    std::fs::write(export.join("chat.jsonl"), text)?;
    let fixture = ChatFixture {
        manifest,
        export,
        expected: Default::default(),
        attachments: Default::default(),
        texts: Default::default(),
        senders: Default::default(),
    };
    let path = connector_file(
        dir,
        "single",
        &fixture,
        Paging {
            page_size: PAGE,
            retries: 3,
        },
        &master_sink_table(port, 1, batch),
        &format!("imap-master-password = \"{MASTER_PASSWORD}\"\n"),
    );
    ConnectorConfig::load(&path).with_context(|| format!("loading {}", path.display()))
}

/// Every email of `folder` of [`USER`], as Dovecot stored it.
fn read_folder(dovecot: &Dovecot, folder: &str) -> Result<Vec<Vec<u8>>> {
    let mut emails = Vec::new();
    for sub in ["cur", "new"] {
        read_emails_in(&dovecot.maildir(USER, folder).join(sub), &mut emails)?;
    }
    Ok(emails)
}
