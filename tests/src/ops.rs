//! Support for the operations tests (daemon, crash safety, admin log,
//! quarantine, reconciliation): a generated chat export with its ground
//! truth, connector files, running the real `connector` binary, reading
//! mailboxes back and plain HTTP GETs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use connector_email::EmailConverter;
use serde_json::json;

/// The folder the operations tests deliver to (`folder = "Chat"`), on disk.
pub const CHAT_FOLDER_ON_DISK: &str = ".INBOX.Chat";

/// The first message's sent time: 2026-01-01T00:00:00Z.
pub const FIRST_SENT_MS: i64 = 1_767_225_600_000;

/// What a generated export should become.
#[derive(Debug, Clone, Default)]
pub struct Truth {
    /// Per mailbox, the Message-IDs it must hold, once each.
    pub mailboxes: BTreeMap<String, BTreeSet<String>>,
    /// Items with a participant that has no mailbox (the `room-ext` ones).
    pub quarantined: BTreeSet<String>,
    /// Every item id, in order.
    pub items: Vec<String>,
    /// Sent time of each item.
    pub sent_at: BTreeMap<String, i64>,
}

impl Truth {
    /// (item, mailbox) pairs in total.
    pub fn pairs(&self) -> usize {
        self.mailboxes.values().map(BTreeSet::len).sum()
    }
}

/// The Message-ID the host gives a chat-export item.
pub fn chat_message_id(item: &str) -> String {
    EmailConverter::new("chat-export", "Chat export").message_id(item)
}

fn person(id: &str, email: Option<&str>) -> serde_json::Value {
    match email {
        Some(e) => json!({"id": id, "name": id, "email": e}),
        None => json!({"id": id, "name": id}),
    }
}

/// Lines of a chat export: three conversations (`room-1` with alice, bob
/// and carol — carol mapped only by the CSV —, `im-1` with alice and bob,
/// `room-ext` with alice and dave, whom nothing maps), and messages
/// `first..first+n`, one per hour from [`FIRST_SENT_MS`], cycling through
/// the conversations. `with_conversations` adds the conversation lines.
pub fn chat_lines(first: usize, n: usize, with_conversations: bool) -> (String, Truth) {
    let alice = person("u-alice", Some("alice@example.test"));
    let bob = person("u-bob", Some("bob@example.test"));
    let carol = person("u-carol", None);
    let dave = person("u-dave", Some("dave@partner.example"));
    let rooms = [
        ("room-1", vec![alice.clone(), bob.clone(), carol.clone()]),
        ("im-1", vec![alice.clone(), bob.clone()]),
        ("room-ext", vec![alice.clone(), dave.clone()]),
    ];
    let mut text = String::new();
    if with_conversations {
        for (id, participants) in &rooms {
            let kind = if *id == "im-1" { "direct" } else { "room" };
            text.push_str(
                &json!({"type": "conversation", "id": id, "kind": kind, "participants": participants})
                    .to_string(),
            );
            text.push('\n');
        }
    }
    let mut truth = Truth::default();
    for i in first..first + n {
        let (conv, _) = &rooms[i % 3];
        let sender = [&alice, &bob][i % 2];
        let id = format!("m-{i:05}");
        let sent_at = FIRST_SENT_MS + i as i64 * 3_600_000;
        text.push_str(
            &json!({"type": "message", "id": id, "conversation": conv, "sender": sender,
                    "sent_at": sent_at, "text": format!("message {i} in {conv} ✓")})
            .to_string(),
        );
        text.push('\n');
        let mailboxes: &[&str] = match *conv {
            "room-1" => &[
                "alice@example.test",
                "bob@example.test",
                "carol@example.test",
            ],
            "im-1" => &["alice@example.test", "bob@example.test"],
            _ => &["alice@example.test"],
        };
        let mut targets: BTreeSet<&str> = mailboxes.iter().copied().collect();
        targets.insert(if i % 2 == 0 {
            "alice@example.test"
        } else {
            "bob@example.test"
        });
        for mb in targets {
            truth
                .mailboxes
                .entry(mb.to_string())
                .or_default()
                .insert(chat_message_id(&id));
        }
        if *conv == "room-ext" {
            truth.quarantined.insert(id.clone());
        }
        truth.sent_at.insert(id.clone(), sent_at);
        truth.items.push(id);
    }
    (text, truth)
}

/// A chat-export connector set up in a folder: plugin, export, mapping,
/// connector file.
pub struct ChatSetup {
    /// The folder everything is in.
    pub root: PathBuf,
    /// The connector file.
    pub config: PathBuf,
    /// The state folder to pass as `--state-dir`.
    pub state: PathBuf,
    /// The Maildir root.
    pub mail: PathBuf,
    /// The export file.
    pub export: PathBuf,
    /// The mapping CSV.
    pub users_csv: PathBuf,
    /// What the export should become.
    pub truth: Truth,
}

/// Installs chat-export into `root/plugin` (once per root) and writes a
/// connector `id` over an export of `n` messages, in pages of `page_size`,
/// on `schedule`, delivering into `root/mail` (shared by connectors of the
/// same root).
pub fn chat_setup(root: &Path, id: &str, n: usize, page_size: usize, schedule: &str) -> ChatSetup {
    let manifest = root.join("plugin").join("manifest.toml");
    if !manifest.is_file() {
        crate::install_chat_export(&root.join("plugin"));
    }
    let export_dir = root.join(format!("export-{id}"));
    std::fs::create_dir_all(&export_dir).unwrap();
    let (text, truth) = chat_lines(0, n, true);
    let export = export_dir.join("chat.jsonl");
    std::fs::write(&export, text).unwrap();
    let users_csv = crate::write_file(
        root,
        &format!("users-{id}.csv"),
        "ExternalUserId,Mailbox\nu-carol,carol@example.test\n",
    );
    let config = crate::write_file(
        root,
        &format!("{id}.toml"),
        &format!(
            r#"id = "{id}"
plugin = "plugin/manifest.toml"
folder = "Chat"
schedule = "{schedule}"
retries = 1
[plugin-config]
path = "/export/chat.jsonl"
page_size = {page_size}
[grants]
files = {{ "/export" = "export-{id}" }}
[mapping]
overrides = "users-{id}.csv"
domains = ["example.test"]
[sink]
kind = "maildir"
path = "mail"
fsync = false
"#
        ),
    );
    ChatSetup {
        root: root.to_path_buf(),
        config,
        state: root.join("state"),
        mail: root.join("mail"),
        export,
        users_csv,
        truth,
    }
}

impl ChatSetup {
    /// Maps the quarantined participant `u-dave` to `dave@example.test`,
    /// runs `redeliver` (a `quarantine redeliver`, giving its stdout), and
    /// checks that the quarantined messages reached dave's mailbox, and
    /// every mailbox holds what it should. Returns `redeliver`'s stdout.
    pub fn redeliver_quarantine_to_dave(&mut self, redeliver: impl FnOnce() -> String) -> String {
        std::fs::write(
            &self.users_csv,
            "ExternalUserId,Mailbox\nu-carol,carol@example.test\nu-dave,dave@example.test\n",
        )
        .unwrap();
        let out = redeliver();
        let dave: BTreeSet<String> = self
            .truth
            .quarantined
            .iter()
            .map(|i| chat_message_id(i))
            .collect();
        self.truth
            .mailboxes
            .insert("dave@example.test".to_string(), dave);
        assert_mailboxes_match(&self.mail, &self.truth);
        out
    }
}

/// Appends `n` more messages (numbered from `first`) to a setup's export
/// and adds them to its truth.
pub fn append_messages(setup: &mut ChatSetup, first: usize, n: usize) {
    let (text, truth) = chat_lines(first, n, false);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&setup.export)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
    for (mb, ids) in truth.mailboxes {
        setup.truth.mailboxes.entry(mb).or_default().extend(ids);
    }
    setup.truth.quarantined.extend(truth.quarantined);
    setup.truth.items.extend(truth.items);
    setup.truth.sent_at.extend(truth.sent_at);
}

/// A misbehaving-plugin connector file in `root` (plugin installed into
/// `root/plugin-misbehaving`), delivering into `root/mail`.
pub fn misbehaving_config(root: &Path, id: &str, plugin_config: &str, schedule: &str) -> PathBuf {
    let dir = root.join("plugin-misbehaving");
    let manifest = dir.join("manifest.toml");
    if !manifest.is_file() {
        crate::install_misbehaving(&dir);
    }
    crate::write_file(
        root,
        &format!("{id}.toml"),
        &format!(
            r#"id = "{id}"
plugin = "plugin-misbehaving/manifest.toml"
schedule = "{schedule}"
retries = 0
[plugin-config]
{plugin_config}
[sink]
kind = "maildir"
path = "mail"
fsync = false
"#
        ),
    )
}

/// The Message-IDs in each mailbox's `folder_on_disk`, with repeats (a
/// duplicate delivery shows up twice).
pub fn mailbox_contents(mail: &Path, folder_on_disk: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for mailbox in crate::mailboxes(mail) {
        let mut ids = Vec::new();
        for email in crate::maildir_emails(mail, &mailbox, folder_on_disk) {
            let parsed = mail_parser::MessageParser::default()
                .parse(&email.bytes)
                .unwrap_or_else(|| panic!("{} does not parse", email.path.display()));
            ids.push(
                parsed
                    .message_id()
                    .unwrap_or_else(|| panic!("{} has no Message-ID", email.path.display()))
                    .to_string(),
            );
        }
        ids.sort();
        out.insert(mailbox, ids);
    }
    out
}

/// Asserts that the mailboxes hold exactly the truth: every expected email
/// once, nothing else. Returns the number of emails.
pub fn assert_mailboxes_match(mail: &Path, truth: &Truth) -> usize {
    let got = mailbox_contents(mail, CHAT_FOLDER_ON_DISK);
    let mut lost = Vec::new();
    let mut duplicated = Vec::new();
    let mut unexpected = Vec::new();
    let mut total = 0;
    for (mailbox, want) in &truth.mailboxes {
        let have = got.get(mailbox).cloned().unwrap_or_default();
        total += have.len();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for id in &have {
            *counts.entry(id.as_str()).or_default() += 1;
        }
        for id in want {
            match counts.get(id.as_str()) {
                None => lost.push(format!("{mailbox}: {id}")),
                Some(1) => {}
                Some(n) => duplicated.push(format!("{mailbox}: {id} ×{n}")),
            }
        }
        for id in counts.keys() {
            if !want.contains(*id) {
                unexpected.push(format!("{mailbox}: {id}"));
            }
        }
    }
    for mailbox in got.keys() {
        if !truth.mailboxes.contains_key(mailbox) {
            unexpected.push(format!("mailbox {mailbox}"));
        }
    }
    assert!(
        lost.is_empty() && duplicated.is_empty() && unexpected.is_empty(),
        "{} lost, {} duplicated, {} unexpected\nlost: {lost:?}\nduplicated: {duplicated:?}\nunexpected: {unexpected:?}",
        lost.len(),
        duplicated.len(),
        unexpected.len()
    );
    total
}

/// Runs the `connector` binary with `--state-dir state` and `args`, and
/// waits for it.
pub fn connector(bin: &Path, state: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env("CONNECTOR_LOG", "warn")
        .output()
        .expect("running the connector binary")
}

/// Like [`connector`], and asserts it succeeded; returns its stdout.
pub fn connector_ok(bin: &Path, state: &Path, args: &[&str]) -> String {
    succeeded(connector(bin, state, args), &format!("connector {args:?}"))
}

/// The stdout of a command (`what`) that must have succeeded; a failure
/// panics showing its status, stdout and stderr.
pub fn succeeded(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A GET over plain HTTP/1.0; returns the status code and the body.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_string()))
}

/// Polls `check` every 100 ms until it returns `Some`, or panics with
/// `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A small deterministic random generator (xorshift64*), for tests that
/// pick random points reproducibly from a printed seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced by a constant).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// The state letter of process `pid` in `/proc/PID/stat` (`T` when
/// stopped, `Z` a zombie); `None` when there is no such process.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// User and system CPU time used by this process so far (every thread,
/// also those that ended).
pub fn own_cpu_time() -> std::time::Duration {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| cpu_of(&stat))
        .map_or(std::time::Duration::ZERO, |(_, cpu)| cpu)
}

/// User and system CPU time used so far by the processes of group `pgid`,
/// with their children that ended and were waited for (a server's worker
/// processes come and go with their connections).
pub fn group_cpu_time(pgid: u32) -> std::time::Duration {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return std::time::Duration::ZERO;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| cpu_of(&stat))
        .filter(|(group, _)| *group == pgid)
        .map(|(_, cpu)| cpu)
        .sum()
}

/// A `/proc/PID/stat` line's process group and CPU time (its own and its
/// waited-for children's, user and system).
fn cpu_of(stat: &str) -> Option<(u32, std::time::Duration)> {
    // The fields after the command name (in parentheses, which may hold
    // spaces): state is field 3 of the line, so field N is at N - 3.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let group: u32 = fields.get(5 - 3)?.parse().ok()?;
    let mut ticks = 0u64;
    for field in 14..=17 {
        ticks += fields.get(field - 3)?.parse::<u64>().ok()?;
    }
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some((
        group,
        std::time::Duration::from_micros(ticks * 1_000_000 / per_second),
    ))
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    process_state(pid).is_some_and(|s| !matches!(s, 'Z' | 'X'))
}

/// The seed of a randomised test: `var` when set (to replay a failure),
/// else one from the clock; printed either way, with how to replay it.
pub fn test_seed(var: &str, what: &str) -> u64 {
    let seed = std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("{what} seed {seed} (rerun with {var}={seed})");
    seed
}
