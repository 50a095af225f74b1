//! Golden test of the demo: `scripts/demo`'s run, repeated in a temporary
//! folder through the `connector` program's command line, must give byte
//! for byte the output recorded in `tests/golden/demo.txt`. It uses nothing
//! of the host's Rust API, only its command line, so it holds across
//! reorganisations of the host's crates.
//!
//! The run is the demo's: the Symphony simulator with `--seed 1 --messages
//! 2000 --large-attachment-mb 5` (in process, on a free loopback port), the
//! Symphony plugin built to wasm32-wasip2 (release, in `target/plugins`, as
//! `scripts/build-plugins` does) and installed with `connector package`,
//! the simulator's key in a 0600 secrets file, and
//! `examples/symphony/connector.toml` itself, with only its addresses and
//! paths pointed at the temporary folder; then `connector validate`,
//! `run --once` and `status`. The program is this crate's `connector-cli`
//! binary, the host's `connector` program built in this crate.
//!
//! Pinned: the output of `validate`, `run --once` (stdout, and stderr with
//! its lines sorted: partitions are read at once),
//! `status` (text and JSON), the admin log (`connector log`, its rows
//! sorted), the counts per
//! mailbox and day (`reconcile --by-day`) and the quarantine (`quarantine
//! list`), whole; the ledger rows (`reconcile`, as CSV and as JSON checked
//! against the mailboxes) and the quarantine as JSON, by line count and
//! SHA-256; and every email file in the Maildir: its Message-ID, the
//! SHA-256 of its bytes, its file name, its modification time and the
//! folders holding it. Normalised, and nothing else: the temporary folder
//! (`$TMP`), the workspace folder (`$REPO`), the machine's name in the
//! Maildir file names (`HOST`) and the run's wall-clock times
//! (`<wall-clock>`).
//!
//! After a deliberate change of the output, regenerate the golden file and
//! review its diff:
//!
//! ```text
//! UPDATE_GOLDEN=1 cargo test -p connector-e2e --test golden_demo
//! git diff tests/golden/demo.txt
//! ```
//!
//! On a mismatch the test prints the first differing lines and writes the
//! whole actual output, and the outputs pinned by digest, under the
//! target folder (the paths are printed), to compare with `diff -u`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use connector_e2e::chat_fixture::message_id_of;
use connector_e2e::ops::{connector, connector_ok};
use connector_e2e::symphony::write_symphony_secrets;
use connector_e2e::{build_plugin, mailboxes, maildir_emails, workspace_root};
use sha2::{Digest, Sha256};
use symphony_sim::{BlockingSim, SimConfig, start_blocking};

/// The `connector` program (this crate's copy of the host's binary: its
/// `main` is the host's `cli::main`, like `target/debug/connector`).
const BIN: &str = env!("CARGO_BIN_EXE_connector-cli");
/// The golden file, in the workspace.
const GOLDEN: &str = "tests/golden/demo.txt";
/// The demo's connector id (examples/symphony/connector.toml).
const CONNECTOR: &str = "symphony-demo";

fn bin() -> &'static Path {
    Path::new(BIN)
}

/// The simulator `scripts/demo` starts: `symphony-sim --seed 1 --messages
/// 2000 --large-attachment-mb 5`, every other flag at its default (the
/// defaults of `SimConfig`), but on a free loopback port.
fn demo_simulator() -> BlockingSim {
    start_blocking(
        SimConfig::builder()
            .seed(1)
            .messages(2000)
            .large_attachment_bytes(5_000_000)
            .build(),
    )
    .expect("the simulator starts")
}

/// Installs the Symphony plugin into `dir` as `scripts/build-plugins
/// symphony` does (the release wasm32-wasip2 build, packaged with
/// `connector package`); returns the installed manifest.
fn install_symphony_plugin(dir: &Path) -> PathBuf {
    let wasm = build_plugin("symphony");
    let manifest = workspace_root().join("plugins/symphony/manifest.toml");
    let out = connector_ok(
        bin(),
        &dir.join("state"),
        &[
            "package",
            manifest.to_str().unwrap(),
            "--wasm",
            wasm.to_str().unwrap(),
            "--out",
            dir.join("plugin").to_str().unwrap(),
        ],
    );
    PathBuf::from(out.trim_end())
}

/// `examples/symphony/connector.toml` itself, with its simulator address,
/// plugin, secrets file, mapping CSV and Maildir pointed at this test's.
fn demo_connector_file(dir: &Path, base: &str, manifest: &Path, secrets: &Path) -> PathBuf {
    let example = workspace_root().join("examples/symphony");
    let mut text = std::fs::read_to_string(example.join("connector.toml")).unwrap();
    let users_csv = example.join("users.csv");
    let mail = dir.join("mail");
    for (from, to) in [
        ("http://127.0.0.1:18443", base),
        (
            "../../target/plugins/dist/symphony/manifest.toml",
            manifest.to_str().unwrap(),
        ),
        (
            "../../target/demo/symphony-secrets.toml",
            secrets.to_str().unwrap(),
        ),
        ("\"users.csv\"", &format!("\"{}\"", users_csv.display())),
        ("../../target/demo/mail", mail.to_str().unwrap()),
    ] {
        assert!(
            text.contains(from),
            "examples/symphony/connector.toml no longer contains {from}; update this test"
        );
        text = text.replace(from, to);
    }
    connector_e2e::write_file(dir, "connector.toml", &text)
}

/// Every email in every Maildir folder (one with a `cur/`) of every
/// mailbox under `mail`: first the folders, numbered, with their email
/// counts; then one line per distinct email file — Message-ID, SHA-256 of
/// the file's exact bytes, its path in its folder (`cur/` or `new/` and
/// the name), its modification time (Dovecot's INTERNALDATE) in ms, and
/// the numbers of the folders holding it — sorted by Message-ID. The
/// sink's file names are `<sent secs>.K<key>.<host>,S=<size>:2,S`, without
/// time or unique parts of their own, so they are pinned too, with the
/// `<host>` part (this machine's name) read as `HOST`.
fn email_listing(mail: &Path) -> String {
    let mut folders = String::new();
    let mut files = 0;
    let mut emails: BTreeMap<[String; 4], Vec<usize>> = BTreeMap::new();
    let mut n = 0;
    for mailbox in mailboxes(mail) {
        let mut names: Vec<String> = std::fs::read_dir(mail.join(&mailbox))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with('.'))
            .collect();
        names.sort();
        for folder in std::iter::once(String::new()).chain(names) {
            let dir = mail.join(&mailbox).join(&folder);
            if !dir.join("cur").is_dir() {
                continue;
            }
            let left = std::fs::read_dir(dir.join("tmp")).map_or(0, |d| d.count());
            assert_eq!(left, 0, "{}/tmp holds unfinished files", dir.display());
            let found = maildir_emails(mail, &mailbox, &folder);
            n += 1;
            let name = if folder.is_empty() { "INBOX" } else { &folder };
            folders.push_str(&format!("{n} {mailbox}/{name}: {}\n", found.len()));
            files += found.len();
            for email in found {
                let sub = email.path.parent().unwrap().file_name().unwrap();
                let file = email.path.file_name().unwrap().to_string_lossy();
                let mtime = std::fs::metadata(&email.path)
                    .and_then(|m| m.modified())
                    .unwrap()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap();
                let key = [
                    message_id_of(&email.bytes),
                    hex::encode(Sha256::digest(&email.bytes)),
                    format!("{}/{}", sub.to_string_lossy(), without_host(&file)),
                    mtime.as_millis().to_string(),
                ];
                emails.entry(key).or_default().push(n);
            }
        }
    }
    let mut out = format!(
        "{files} email file(s), {} distinct, in these folders:\n{folders}",
        emails.len()
    );
    out.push_str("Message-ID SHA-256 file mtime-ms folders:\n");
    for (fields, numbers) in emails {
        let numbers: Vec<String> = numbers.iter().map(usize::to_string).collect();
        out.push_str(&format!("{} {}\n", fields.join(" "), numbers.join(",")));
    }
    out
}

/// A Maildir file name `<secs>.K<key>.<host>,S=<size>:2,S` with `<host>`
/// (the machine's name) replaced by `HOST`; other names unchanged.
fn without_host(name: &str) -> String {
    let Some((stem, tail)) = name.rsplit_once(",S=") else {
        return name.to_string();
    };
    match stem.splitn(3, '.').collect::<Vec<_>>()[..] {
        [secs, key, _host] if key.starts_with('K') => format!("{secs}.{key}.HOST,S={tail}"),
        _ => name.to_string(),
    }
}

/// `text` with only what differs between runs replaced: the temporary
/// folder by `$TMP`, the workspace by `$REPO`, and the wall-clock times of
/// this run (start, end, last success, next run, report time) by
/// `<wall-clock>` — every RFC 3339 time and every JSON `..._ms` number
/// from a minute before `started` on. The data's own times (the simulated
/// pod's messages are from 2024) are kept, and so are the run ids: the
/// state folder is new, so the demo's run is always run 1.
fn normalise(text: &str, tmp: &Path, started: DateTime<Utc>) -> String {
    let text = without_worker_ids(
        &text
            .replace(tmp.to_str().unwrap(), "$TMP")
            .replace(workspace_root().to_str().unwrap(), "$REPO"),
    );
    let cutoff = started - chrono::Duration::minutes(1);
    let is_wall_clock = |t: &str| match DateTime::parse_from_rfc3339(t) {
        Ok(t) => t >= cutoff,
        Err(_) => t
            .parse::<i64>()
            .is_ok_and(|ms| ms >= cutoff.timestamp_millis()),
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some((at, len)) = next_time(rest) {
        out.push_str(&rest[..at]);
        let time = &rest[at..at + len];
        out.push_str(if is_wall_clock(time) {
            "<wall-clock>"
        } else {
            time
        });
        rest = &rest[at + len..];
    }
    out.push_str(rest);
    out
}

/// `text` with each worker id (`<host>:<pid>:<start in hex>`, the process
/// that ran the demo) replaced by `<worker>`.
fn without_worker_ids(text: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let prefix = format!("{}:", host.trim());
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&prefix) {
        out.push_str(&rest[..at]);
        let after = &rest[at + prefix.len()..];
        let pid = after.bytes().take_while(u8::is_ascii_digit).count();
        let start = after[pid..]
            .strip_prefix(':')
            .map_or(0, |t| t.bytes().take_while(u8::is_ascii_hexdigit).count());
        if pid > 0 && start > 0 {
            out.push_str("<worker>");
            rest = &after[pid + 1 + start..];
        } else {
            out.push_str(&prefix);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The first time in `s` — `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`, or the
/// number after `_ms": ` (JSON milliseconds) —: its start and length.
fn next_time(s: &str) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    let digits =
        |i: usize, n: usize| i + n <= b.len() && b[i..i + n].iter().all(u8::is_ascii_digit);
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    (0..b.len()).find_map(|i| {
        if b[i..].starts_with(b"_ms\": ") {
            let start = i + 6;
            let len = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
            return (len > 0).then_some((start, len));
        }
        let shape = digits(i, 4)
            && at(i + 4, b'-')
            && digits(i + 5, 2)
            && at(i + 7, b'-')
            && digits(i + 8, 2)
            && at(i + 10, b'T')
            && digits(i + 11, 2)
            && at(i + 13, b':')
            && digits(i + 14, 2)
            && at(i + 16, b':')
            && digits(i + 17, 2);
        if !shape {
            return None;
        }
        let mut end = i + 19;
        if at(end, b'.') {
            end += 1;
            while digits(end, 1) {
                end += 1;
            }
        }
        if at(end, b'Z') {
            return Some((i, end + 1 - i));
        }
        if (at(end, b'+') || at(end, b'-')) && digits(end + 1, 2) && at(end + 3, b':') {
            return Some((i, end + 6 - i));
        }
        None
    })
}

/// The SHA-256 and line count of a large output, for the golden file.
fn digest(text: &str) -> String {
    format!(
        "{} lines, sha256 {}",
        text.lines().count(),
        hex::encode(Sha256::digest(text.as_bytes()))
    )
}

/// The demo's output: the golden text, and the whole of the outputs the
/// golden text holds only the digests of (name, text).
struct DemoOutput {
    golden: String,
    digested: Vec<(String, String)>,
}

/// Runs the demo in `tmp`: the simulator, then `scripts/demo`'s commands
/// (`validate`, `run --once`, `status`), then every report the command line
/// offers on the run, then reads the Maildir.
fn run_demo(tmp: &Path) -> DemoOutput {
    let started = Utc::now();
    let sim = demo_simulator();
    let manifest = install_symphony_plugin(tmp);
    let secrets = write_symphony_secrets(tmp, "");
    let config = demo_connector_file(tmp, &sim.base_url(), &manifest, &secrets);
    let config = config.to_str().unwrap();
    let state = tmp.join("state");
    let mut out = DemoOutput {
        golden: String::new(),
        digested: Vec::new(),
    };
    // Adds the output of `connector ARGS`, whole or (`whole` false) as its
    // line count and SHA-256.
    let mut add = |args: &[&str], text: &str, whole: bool| {
        let title = normalise(&format!("connector {}", args.join(" ")), tmp, started);
        let text = normalise(text, tmp, started);
        if whole {
            out.golden.push_str(&format!("== {title}\n{text}"));
            if !text.ends_with('\n') {
                out.golden.push('\n');
            }
        } else {
            out.golden
                .push_str(&format!("== {title}: {}\n", digest(&text)));
            out.digested.push((title, text));
        }
    };
    let cli = |args: &[&str]| connector_ok(bin(), &state, args);

    let args = ["validate", config];
    add(&args, &cli(&args), true);
    // The run's warnings and errors (`--log warn`, as the demo) too.
    let args = ["run", "--once", config];
    let run_started = Instant::now();
    let run = connector(bin(), &state, &args);
    eprintln!("`connector run --once` took {:?}", run_started.elapsed());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "the demo's run failed: {stderr}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    // The stream partitions are read several at once, so their lines come
    // in any order: they are pinned sorted by what follows their time.
    let mut lines: Vec<&str> = stderr.lines().collect();
    lines.sort_by_key(|line| line.split_once(' ').map_or(*line, |(_, rest)| rest));
    let stderr = lines.join("\n");
    add(&args, &format!("{stdout}-- stderr:\n{stderr}\n"), true);
    let args = ["status", config];
    add(&args, &cli(&args), true);
    let args = ["status", "--json", config];
    add(&args, &cli(&args), true);
    // The admin log (CSV, its only format), its rows sorted: partitions
    // read at once record their failures in any order.
    let args = ["log", "--connector", CONNECTOR, "--last"];
    let log = cli(&args);
    let mut rows: Vec<&str> = log.lines().collect();
    if rows.len() > 1 {
        rows[1..].sort_unstable();
    }
    add(&args, &format!("{}\n", rows.join("\n")), true);
    // The reconciliation: the ledger's rows, one per (item, mailbox or
    // unmapped participant) — all the ledger holds but its delivery times
    // and receipts (Maildir file paths, named after this machine, pinned
    // with the emails below) — as CSV and as JSON (checked against the
    // mailboxes); and its counts per mailbox and day.
    let args = ["reconcile", "--connector", CONNECTOR, "--last"];
    add(&args, &cli(&args), false);
    let args = [
        "reconcile",
        "--connector",
        CONNECTOR,
        "--last",
        "--format",
        "json",
        "--check-mailboxes",
        config,
    ];
    add(&args, &cli(&args), false);
    let args = ["reconcile", "--connector", CONNECTOR, "--last", "--by-day"];
    add(&args, &cli(&args), true);
    // The quarantine.
    let args = ["quarantine", "list"];
    add(&args, &cli(&args), true);
    let args = ["quarantine", "list", "--json"];
    add(&args, &cli(&args), false);
    drop(sim);

    out.golden.push_str("== emails (the Maildir)\n");
    out.golden.push_str(&email_listing(&tmp.join("mail")));
    out
}

#[test]
fn demo_output_is_unchanged_byte_for_byte() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let actual = run_demo(tmp.path());
    eprintln!("the demo took {:?}", started.elapsed());
    let path = workspace_root().join(GOLDEN);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual.golden).unwrap();
        eprintln!("wrote {} ({} bytes)", path.display(), actual.golden.len());
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {GOLDEN} ({e}); write it with UPDATE_GOLDEN=1"));
    if actual.golden != expected {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("golden_demo");
        std::fs::create_dir_all(&dir).unwrap();
        let whole = dir.join("demo.txt");
        std::fs::write(&whole, &actual.golden).unwrap();
        let mut digested = String::new();
        for (i, (title, text)) in actual.digested.iter().enumerate() {
            let file = dir.join(format!("digested-{i}.txt"));
            std::fs::write(&file, text).unwrap();
            digested.push_str(&format!("  {}: {title}\n", file.display()));
        }
        panic!(
            "the demo's output differs from {GOLDEN}:\n{}\nThe whole output is in {}; \
             compare:\n  diff -u {} {}\nThe outputs pinned by digest, whole:\n{digested}\
             If the change is intended, regenerate the golden file with UPDATE_GOLDEN=1 \
             and review its diff.",
            first_differences(&expected, &actual.golden, 20),
            whole.display(),
            path.display(),
            whole.display()
        );
    }
}

/// The first `n` lines only `expected` or only `actual` has, in order,
/// with their line numbers.
fn first_differences(expected: &str, actual: &str, n: usize) -> String {
    let count = |text: &str| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for l in text.lines() {
            *m.entry(l.to_string()).or_default() += 1;
        }
        m
    };
    let only = |text: &str, other: &str, sign: char| {
        let mut left = count(other);
        let mut out = Vec::new();
        for (i, l) in text.lines().enumerate() {
            match left.get_mut(l) {
                Some(k) if *k > 0 => *k -= 1,
                _ => out.push(format!("{sign} {:>6}: {l}", i + 1)),
            }
        }
        out
    };
    let missing = only(expected, actual, '-');
    let extra = only(actual, expected, '+');
    let mut report = format!(
        "{} line(s) expected but missing, {} unexpected (of {} expected, {} actual lines)\n",
        missing.len(),
        extra.len(),
        expected.lines().count(),
        actual.lines().count()
    );
    for l in missing.iter().take(n).chain(extra.iter().take(n)) {
        report.push_str(l);
        report.push('\n');
    }
    report
}
