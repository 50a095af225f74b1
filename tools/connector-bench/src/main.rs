//! `connector-bench`: the whole path, measured.
//!
//! ```sh
//! cargo run --release -p connector-bench            # everything below, each in its own process
//! cargo run --release -p connector-bench -- throughput --messages 50000
//! cargo run --release -p connector-bench -- attachment --mb 100
//! cargo run --release -p connector-bench -- backfill --messages 1000000
//! cargo run --release -p connector-bench -- ledger --deliveries 500000
//! cargo run --release -p connector-bench -- mailbox-ceiling --messages 32000
//! cargo run --release -p connector-bench -- partitions --streams 3000 --at-once 16
//! ```
//!
//! * `throughput`: the Symphony simulator (in a child process) → the
//!   Symphony plugin (wasm) → the host's stages → a Maildir; then the same
//!   data → Dovecot over IMAP (a real Dovecot started for the run, master
//!   user, as `tests/tests/imap_e2e.rs` does); then the raw ceiling of that
//!   Dovecot: the very emails the Maildir run wrote, appended with a minimal
//!   MULTIAPPEND client and no host in front, with as many connections and
//!   as many emails per command as the sink uses. Prints messages and
//!   deliveries per second and the ratio host / raw. Then the
//!   single-mailbox case (`single.rs`): one conversation, one mailbox, one
//!   connection, against the raw client over one connection.
//!   `--only fan-out` or `--only single` runs one case.
//! * `attachment`: one message with a big attachment (100 MiB by default)
//!   among a few small ones, simulator → Maildir; prints the host process's
//!   peak RSS.
//! * `backfill`: a backfill of a million messages from the misbehaving test
//!   plugin's synthetic pages (generated page by page, never all held) into
//!   a Maildir; prints RSS after the first pages, along the way, at the end,
//!   and the peak.
//!
//! * `mailbox-ceiling`: a chat export → the host → the Graph test server
//!   with 100 mailboxes, 250 ms per request and 4 in flight per mailbox
//!   (a ceiling of 1,600 emails/s), with one worker and with two over one
//!   PostgreSQL sharing the mailboxes' budget; prints the ratio to the
//!   ceiling and the share of requests answered 429.
//!
//! * `partitions`: a simulated pod of 3,000 streams with 20 ms per call,
//!   walked by the Symphony plugin's partitions one at a time and 16 at
//!   once; prints both runs' times and the speed-up.
//!
//! * `ledger`: pages of ledger entries (fan-out 5) committed into each state
//!   store, SQLite and a throw-away PostgreSQL; prints bytes on disk per
//!   delivery and deliveries committed per second.
//!
//! Peak RSS is the host process's `VmHWM`; the simulator runs in a child
//! process so it is not counted. Each scenario of `all` runs in a process
//! of its own, so each peak is its own.

mod ceiling;
mod ledger;
mod partitions;
mod single;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use connector_e2e::dovecot::{
    Dovecot, DovecotOptions, MASTER_PASSWORD, MASTER_USER, master_sink_table,
};
use connector_e2e::symphony::{SymphonyConnector, symphony_connector_file};
use connector_e2e::{install_misbehaving, write_file};
use connector_host::config::ConnectorConfig;
use connector_host::pipeline::{Host, RunControl, RunObserver, RunOptions, RunSummary, TimeWindow};
use connector_state::{RunCounts, RunOutcome};
use symphony_sim::{SimConfig, SuppressionMode};

/// IMAP connections and emails per MULTIAPPEND, for the sink and the raw
/// client alike.
const IMAP_CONNECTIONS: usize = 4;
const IMAP_BATCH: usize = 100;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().map(String::as_str).unwrap_or("all");
    let opt = |name: &str, default: u64| -> Result<u64> {
        match args.iter().position(|a| a == name) {
            Some(i) => args
                .get(i + 1)
                .with_context(|| format!("{name} needs a value"))?
                .replace('_', "")
                .parse()
                .with_context(|| format!("{name} needs a number")),
            None => Ok(default),
        }
    };
    let dir = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let tempdir = || -> Result<tempfile::TempDir> {
        Ok(match &dir {
            Some(d) => tempfile::tempdir_in(d)?,
            None => tempfile::tempdir()?,
        })
    };
    match command {
        "all" => {
            for scenario in [
                &["throughput"][..],
                &["attachment"][..],
                &["backfill"][..],
                &["ledger"][..],
            ] {
                let status = Command::new(std::env::current_exe()?)
                    .args(scenario)
                    .args(
                        dir.iter()
                            .flat_map(|d| [OsStr::new("--dir"), d.as_os_str()]),
                    )
                    .status()?;
                if !status.success() {
                    bail!("scenario {scenario:?} failed: {status}");
                }
            }
            Ok(())
        }
        "throughput" => {
            let only = args
                .iter()
                .position(|a| a == "--only")
                .and_then(|i| args.get(i + 1))
                .map(String::as_str);
            let messages = opt("--messages", 50_000)? as usize;
            if only != Some("single") {
                throughput(tempdir()?, messages, !args.iter().any(|a| a == "--no-imap"))?;
            }
            if only != Some("fan-out") && !args.iter().any(|a| a == "--no-imap") {
                single::single_mailbox(
                    tempdir()?,
                    messages,
                    opt("--batch", single::BATCH as u64)? as usize,
                )?;
            }
            Ok(())
        }
        "attachment" => attachment(tempdir()?, opt("--mb", 100)?),
        "backfill" => backfill(
            tempdir()?,
            opt("--messages", 1_000_000)?,
            opt("--per-page", 1000)?,
        ),
        "ledger" => ledger::ledger(tempdir()?, opt("--deliveries", 500_000)? as usize),
        "mailbox-ceiling" => ceiling::mailbox_ceiling(
            tempdir()?,
            &ceiling::Ceiling {
                messages: opt("--messages", 32_000)? as usize,
                mailboxes: opt("--mailboxes", 100)? as usize,
                latency: Duration::from_millis(opt("--latency-ms", 250)?),
            },
        ),
        "partitions" => partitions::partitions(
            tempdir()?,
            &partitions::Partitions {
                streams: opt("--streams", 3_000)? as usize,
                latency: Duration::from_millis(opt("--latency-ms", 20)?),
                at_once: opt("--at-once", 16)? as u32,
            },
        ),
        "sim" => serve_sim(opt("--messages", 1000)? as usize, opt("--large-bytes", 0)?),
        other => bail!(
            "unknown command `{other}`: use all, throughput [--messages N] [--no-imap] [--only fan-out|single] [--batch N], attachment [--mb N], backfill [--messages N] [--per-page N], ledger [--deliveries N], mailbox-ceiling [--messages N] [--mailboxes N] [--latency-ms N], partitions [--streams N] [--latency-ms N] [--at-once N]; each takes --dir D (where the state and the Maildir go)"
        ),
    }
}

// ----- memory ------------------------------------------------------------

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`).
fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn rss() -> u64 {
    proc_status("VmRSS")
}

fn peak_rss() -> u64 {
    proc_status("VmHWM")
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

// ----- the simulator, in a child process ----------------------------------

/// Serves a simulator until stdin closes; prints `BASE <url>` when ready.
fn serve_sim(messages: usize, large_bytes: u64) -> Result<()> {
    let sim = symphony_sim::start_blocking(sim_config(messages, large_bytes))?;
    println!("BASE {}", sim.base_url());
    std::io::stdout().flush()?;
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(sim);
    Ok(())
}

fn sim_config(messages: usize, large_bytes: u64) -> SimConfig {
    SimConfig::builder()
        .seed(20_240_101)
        .messages(messages)
        .large_attachment_bytes(large_bytes)
        .max_small_attachment_bytes(1024)
        .max_length_message(false)
        .suppressions(SuppressionMode::Pending)
        // The whole path is measured: the service account reads every stream.
        .membership(symphony_sim::Membership::All)
        .build()
}

/// A simulator child process; killed when dropped.
struct SimProcess {
    child: Child,
    base: String,
}

impl SimProcess {
    fn start(messages: usize, large_bytes: u64) -> Result<SimProcess> {
        let started = Instant::now();
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "sim",
                "--messages",
                &messages.to_string(),
                "--large-bytes",
                &large_bytes.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("simulator stdout")?).read_line(&mut line)?;
        let Some(base) = line.trim().strip_prefix("BASE ") else {
            bail!("the simulator did not start: {line:?}");
        };
        eprintln!(
            "simulator: {messages} messages generated in {:.1}s at {base}",
            started.elapsed().as_secs_f64()
        );
        Ok(SimProcess {
            base: base.to_string(),
            child,
        })
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- connectors ----------------------------------------------------------

/// Writes a connector file for the Symphony plugin against `base`, with
/// the `sink` table given.
fn symphony_connector(
    dir: &Path,
    base: &str,
    sink: &str,
    extra_secret: &str,
) -> Result<ConnectorConfig> {
    let path = symphony_connector_file(
        dir,
        &SymphonyConnector {
            id: "bench",
            base,
            retries: 3,
            page_size: 500,
            domain: "acme-capital.example",
            sink,
            extra_secrets: extra_secret,
        },
    );
    Ok(ConnectorConfig::load(&path)?)
}

fn maildir_sink(path: &Path) -> String {
    format!(
        "[sink]\nkind = \"maildir\"\npath = \"{}\"\nfsync = false\n",
        path.display()
    )
}

/// Runs once after loading (and compiling) the plugin outside the clock;
/// returns the run, its wall time and the CPU time this process used
/// meanwhile (every thread; Dovecot and the simulator are other
/// processes).
fn timed_run(host: &Host, config: &ConnectorConfig) -> Result<(RunSummary, Duration, Duration)> {
    host.validate(config)?;
    let cpu = connector_e2e::ops::own_cpu_time();
    let started = Instant::now();
    let summary = host.run_once(config, &RunOptions::default())?;
    let elapsed = started.elapsed();
    let cpu = connector_e2e::ops::own_cpu_time().saturating_sub(cpu);
    if summary.outcome != RunOutcome::Succeeded {
        bail!("the run ended {:?}: {:?}", summary.outcome, summary.counts);
    }
    Ok((summary, elapsed, cpu))
}

/// "busy N%": CPU time over wall time.
fn busy(cpu: Duration, wall: Duration) -> String {
    format!(
        "{:.2}s of CPU in {:.2}s: busy {:.0}%",
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    )
}

fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn report_run(label: &str, counts: &RunCounts, elapsed: Duration) {
    println!(
        "{label}: {} messages, {} deliveries in {:.2}s = {:.0} messages/s, {:.0} deliveries/s",
        counts.items_from_source,
        counts.imported,
        elapsed.as_secs_f64(),
        per_sec(counts.items_from_source, elapsed),
        per_sec(counts.imported, elapsed),
    );
}

// ----- throughput ----------------------------------------------------------

fn throughput(tmp: tempfile::TempDir, messages: usize, imap: bool) -> Result<()> {
    let sim = SimProcess::start(messages, 0)?;
    let mail = tmp.path().join("mail");
    let dir = tmp.path().join("maildir-run");
    std::fs::create_dir_all(&dir)?;
    let config = symphony_connector(&dir, &sim.base, &maildir_sink(&mail), "")?;
    let host = Host::open(&dir.join("state"))?;
    let (summary, elapsed, _) = timed_run(&host, &config)?;
    println!("peak RSS of the Maildir run: {}", mb(peak_rss()));
    let emails = read_maildir(&mail)?;
    let bytes: u64 = emails.values().flatten().map(|e| e.len() as u64).sum();
    let count: usize = emails.values().map(Vec::len).sum();
    println!(
        "simulator → Maildir: mean email {} bytes, {} mailboxes",
        bytes / count.max(1) as u64,
        emails.len()
    );
    report_run("simulator → Maildir", &summary.counts, elapsed);
    drop(host);
    if !imap {
        return Ok(());
    }
    if !Path::new(connector_e2e::dovecot::DOVECOT).is_file() {
        println!("Dovecot not installed (apt-get install dovecot-imapd): IMAP figures skipped");
        return Ok(());
    }
    let dovecot = Dovecot::start(DovecotOptions {
        users: emails
            .keys()
            .map(|m| (m.clone(), "unused-pass".to_string()))
            .collect(),
        ..DovecotOptions::default()
    });
    let dir = tmp.path().join("imap-run");
    std::fs::create_dir_all(&dir)?;
    let sink = master_sink_table(dovecot.port(), IMAP_CONNECTIONS, IMAP_BATCH);
    let config = symphony_connector(
        &dir,
        &sim.base,
        &sink,
        &format!("imap-master-password = \"{MASTER_PASSWORD}\"\n"),
    )?;
    let host = Host::open(&dir.join("state"))?;
    let (summary, host_elapsed, cpu) = timed_run(&host, &config)?;
    report_run("simulator → Dovecot (IMAP)", &summary.counts, host_elapsed);
    println!(
        "simulator → Dovecot: the connector (and the bench's own thread) used {}",
        busy(cpu, host_elapsed)
    );
    let host_rate = per_sec(summary.counts.imported, host_elapsed);
    let raw_elapsed = raw_multiappend(dovecot.port(), &emails, IMAP_CONNECTIONS, IMAP_BATCH)?;
    let raw_rate = per_sec(count as u64, raw_elapsed);
    println!(
        "raw MULTIAPPEND ceiling (same {count} emails, {IMAP_CONNECTIONS} connections, {IMAP_BATCH} per command, no host): {:.2}s = {raw_rate:.0} deliveries/s",
        raw_elapsed.as_secs_f64()
    );
    println!(
        "simulator → Dovecot / raw ceiling: {:.0}%",
        100.0 * host_rate / raw_rate
    );
    Ok(())
}

/// Every email under a Maildir root, by mailbox.
fn read_maildir(root: &Path) -> Result<BTreeMap<String, Vec<Vec<u8>>>> {
    let mut out = BTreeMap::new();
    for mailbox in std::fs::read_dir(root)? {
        let mailbox = mailbox?;
        let name = mailbox.file_name().to_string_lossy().into_owned();
        let mut emails = Vec::new();
        for folder in std::fs::read_dir(mailbox.path())? {
            read_emails_in(&folder?.path().join("cur"), &mut emails)?;
        }
        out.insert(name, emails);
    }
    Ok(out)
}

/// Adds the files of `dir` (none when it does not exist), in name order.
fn read_emails_in(dir: &Path, emails: &mut Vec<Vec<u8>>) -> Result<()> {
    let Ok(files) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut paths: Vec<PathBuf> = files
        .map(|f| f.map(|f| f.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    for path in paths {
        emails.push(std::fs::read(path)?);
    }
    Ok(())
}

/// Appends every mailbox's emails to its `INBOX/Raw` with a minimal IMAP
/// client: master-user login, `batch` emails per MULTIAPPEND with
/// non-synchronizing literals, `connections` mailboxes at a time.
/// Returns the time from the first connection to the last answer.
fn raw_multiappend(
    port: u16,
    emails: &BTreeMap<String, Vec<Vec<u8>>>,
    connections: usize,
    batch: usize,
) -> Result<Duration> {
    type Work<'a> = Vec<(&'a String, &'a Vec<Vec<u8>>)>;
    let queue: Mutex<Work<'_>> = Mutex::new(emails.iter().collect());
    let started = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..connections)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let Some((mailbox, emails)) = queue.lock().unwrap().pop() else {
                            return Ok(());
                        };
                        raw_mailbox(port, mailbox, emails, batch)?;
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("raw IMAP worker")?;
        }
        Ok(())
    })?;
    Ok(started.elapsed())
}

fn raw_mailbox(port: u16, mailbox: &str, emails: &[Vec<u8>], batch: usize) -> Result<()> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, stream);
    let mut line = String::new();
    reader.read_line(&mut line)?; // greeting
    let mut tag = 0u32;
    let mut command = |writer: &mut std::io::BufWriter<TcpStream>, wire: &[u8]| -> Result<()> {
        tag += 1;
        let t = format!("r{tag}");
        writer.write_all(t.as_bytes())?;
        writer.write_all(b" ")?;
        writer.write_all(wire)?;
        writer.flush()?;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                bail!("Dovecot closed the connection");
            }
            if let Some(rest) = line.strip_prefix(&t) {
                if rest.starts_with(" OK") {
                    return Ok(());
                }
                bail!("Dovecot answered {line:?}");
            }
        }
    };
    command(
        &mut writer,
        format!("LOGIN \"{mailbox}*{MASTER_USER}\" \"{MASTER_PASSWORD}\"\r\n").as_bytes(),
    )?;
    command(&mut writer, b"CREATE \"INBOX/Raw\"\r\n")?;
    for chunk in emails.chunks(batch) {
        let mut wire = b"APPEND \"INBOX/Raw\"".to_vec();
        for email in chunk {
            wire.extend_from_slice(
                format!(
                    " (\\Seen) \"01-Jan-2024 00:00:00 +0000\" {{{}+}}\r\n",
                    email.len()
                )
                .as_bytes(),
            );
            wire.extend_from_slice(email);
        }
        wire.extend_from_slice(b"\r\n");
        command(&mut writer, &wire)?;
    }
    command(&mut writer, b"LOGOUT\r\n").ok();
    Ok(())
}

// ----- memory: a big attachment -----------------------------------------------

fn attachment(tmp: tempfile::TempDir, mib: u64) -> Result<()> {
    let size = mib << 20;
    let sim = SimProcess::start(40, size)?;
    let mail = tmp.path().join("mail");
    let config = symphony_connector(tmp.path(), &sim.base, &maildir_sink(&mail), "")?;
    let host = Host::open(&tmp.path().join("state"))?;
    host.validate(&config)?;
    let before = rss();
    let started = Instant::now();
    let summary = host.run_once(&config, &RunOptions::default())?;
    let elapsed = started.elapsed();
    let largest = largest_file(&mail)?;
    println!(
        "attachment of {mib} MiB ({} bytes): run {:?}, {} messages, {} deliveries in {:.1}s, largest email {}",
        size,
        summary.outcome,
        summary.counts.items_from_source,
        summary.counts.imported,
        elapsed.as_secs_f64(),
        mb(largest)
    );
    println!(
        "attachment: RSS before the run {}, peak RSS {}, RSS after {}",
        mb(before),
        mb(peak_rss()),
        mb(rss())
    );
    Ok(())
}

fn largest_file(root: &Path) -> Result<u64> {
    let mut largest = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                dirs.push(entry.path());
            } else {
                largest = largest.max(meta.len());
            }
        }
    }
    Ok(largest)
}

// ----- memory: a 1M-message backfill -----------------------------------------

/// Samples RSS as pages are committed.
struct Sampler {
    pages: AtomicU64,
    every: u64,
    samples: Mutex<Vec<(u64, u64, Duration)>>,
    started: Instant,
}

impl RunObserver for Sampler {
    fn page_committed(&self, _connector: &str, total: &RunCounts) {
        let page = self.pages.fetch_add(1, Ordering::Relaxed) + 1;
        if page == 10 || page.is_multiple_of(self.every) {
            let sample = (total.items_from_source, rss(), self.started.elapsed());
            eprintln!(
                "  {:>8} messages  RSS {}  {:.0}s",
                sample.0,
                mb(sample.1),
                sample.2.as_secs_f64()
            );
            self.samples.lock().unwrap().push(sample);
        }
    }
}

fn backfill(tmp: tempfile::TempDir, messages: u64, per_page: u64) -> Result<()> {
    let pages = messages.div_ceil(per_page);
    let manifest = install_misbehaving(&tmp.path().join("plugin"));
    // Bob's messages go to Alice's mailbox too: one email per message.
    write_file(
        tmp.path(),
        "mapping.csv",
        "ExternalUserId,Mailbox\nbob,alice@example.test\n",
    );
    let path = write_file(
        tmp.path(),
        "connector.toml",
        &format!(
            r#"
id = "backfill"
plugin = "{}"
retries = 0
[mapping]
overrides = "mapping.csv"
[plugin-config]
pages = {pages}
per_page = {per_page}
[sink]
kind = "maildir"
path = "mail"
fsync = false
"#,
            manifest.display()
        ),
    );
    let config = ConnectorConfig::load(&path)?;
    let host = Host::open(&tmp.path().join("state"))?;
    host.validate(&config)?;
    let sampler = Arc::new(Sampler {
        pages: AtomicU64::new(0),
        every: (pages / 10).max(1),
        samples: Mutex::new(Vec::new()),
        started: Instant::now(),
    });
    let control = RunControl {
        window: Some(TimeWindow {
            from_ms: 0,
            to_ms: i64::MAX,
        }),
        observer: Some(sampler.clone()),
        ..RunControl::default()
    };
    let before = rss();
    let started = Instant::now();
    let summary = host.run_controlled(&config, &RunOptions::default(), &control)?;
    let elapsed = started.elapsed();
    report_run(
        &format!("backfill (misbehaving plugin, {per_page} per page) → Maildir"),
        &summary.counts,
        elapsed,
    );
    let samples = sampler.samples.lock().unwrap();
    let first = samples.first().map_or(0, |s| s.1);
    println!(
        "backfill: RSS before {}, after the first 10 pages {}, at the end {}, peak {}",
        mb(before),
        mb(first),
        mb(rss()),
        mb(peak_rss())
    );
    Ok(())
}
