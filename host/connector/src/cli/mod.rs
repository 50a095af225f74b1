//! The `connector` command line: run connectors once or as a daemon, show
//! their status, write admin logs and reconciliation reports, manage
//! the quarantine, pause, resume or run a connector now, and check the
//! audit trail of admin actions. [`main`] is the whole program; `src/main.rs` only calls
//! it (so that tests can build the same binary).

mod audit;
mod console;
mod controls;
mod migrate;
mod plugin;
mod plugin_new;
mod progress;
mod state_args;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDate};

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::ConnectorConfig;
use crate::config::folder::read_connectors;
use crate::daemon::{Daemon, DaemonOptions, prune};
use crate::pipeline::{RunControl, RunObserver, RunOptions, TimeWindow};
use crate::report::{self, MailboxCheck};
use crate::status;
use connector_runtime::{PluginManifest, manifest};
use connector_state::RunId;

use progress::Progress;
use state_args::StateArgs;

/// Archives third-party communications into mailboxes.
#[derive(Parser)]
#[command(name = "connector", version, about)]
struct Cli {
    #[command(flatten)]
    state: StateArgs,
    /// Log filter, e.g. `info`, `debug`, `connector_host=debug,plugin=trace`.
    #[arg(long, global = true, env = "CONNECTOR_LOG", default_value = "info")]
    log: String,
    /// Keep run history (admin logs, reconciliation data) this many days;
    /// older runs are pruned when the daemon starts and after each run.
    /// Unset: kept forever. The delivery ledger and the quarantine are never
    /// pruned.
    #[arg(long, global = true, env = "CONNECTOR_LOG_RETENTION_DAYS")]
    log_retention_days: Option<u32>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs connectors: once with --once (optionally a backfill over a date
    /// range), else on their schedules like `daemon`.
    Run {
        /// Run each connector once and exit.
        #[arg(long)]
        once: bool,
        /// Stop each connector after this many pages.
        #[arg(long)]
        max_pages: Option<u64>,
        /// Backfill: deliver only messages sent from this date or time on
        /// (`2026-01-01` is midnight UTC, or RFC 3339); the connector's own
        /// checkpoint is untouched.
        #[arg(long, requires = "once")]
        from: Option<String>,
        /// Backfill: deliver only messages sent before this date or time
        /// (exclusive).
        #[arg(long, requires = "once")]
        to: Option<String>,
        /// Connector configuration files.
        #[arg(required = true)]
        configs: Vec<PathBuf>,
    },
    /// Runs every connector on its schedule until SIGTERM or Ctrl-C (a second
    /// one stops at once; nothing uncommitted is lost either way).
    Daemon {
        /// Serve `/healthz`, `/status.json` and `/metrics` here, e.g.
        /// 127.0.0.1:9090, and the console with `--console`.
        #[arg(long)]
        listen: Option<String>,
        /// The console file (sign-in, roles, TLS; docs/console.md): serve
        /// the web console on the `--listen` address.
        #[arg(long, requires = "listen")]
        console: Option<PathBuf>,
        /// Connector files, or folders of them (each `*.toml` in a folder is
        /// one; folders are followed while the daemon runs: a connector
        /// added, changed or removed there is started, restarted or stopped).
        #[arg(required = true)]
        configs: Vec<PathBuf>,
    },
    /// The web console's local accounts.
    Console {
        #[command(subcommand)]
        action: console::ConsoleAction,
    },
    /// Checks connector files, their plugins' manifests and configurations.
    Validate {
        /// Connector configuration files.
        #[arg(required = true)]
        configs: Vec<PathBuf>,
    },
    /// Shows each connector's state, last run, counts, next run and last
    /// error with what to do about it.
    Status {
        /// Print JSON (the daemon's `/status.json`).
        #[arg(long)]
        json: bool,
        /// Connector configuration files.
        #[arg(required = true)]
        configs: Vec<PathBuf>,
    },
    /// Lists the workers sharing the state (each daemon is one): their
    /// heartbeat, whether they are alive, and the connectors whose lease
    /// each holds.
    Workers {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Writes a run's admin log as CSV: the counts, then one row per
    /// failure.
    Log {
        /// The run's id (shown by `run`, `status` and the status page).
        #[arg(required_unless_present = "connector")]
        run: Option<i64>,
        /// Instead of a run id: this connector's last run.
        #[arg(long, requires = "last")]
        connector: Option<String>,
        /// With --connector: its last run.
        #[arg(long)]
        last: bool,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Compares what a run saw at the source with what was delivered, per
    /// mailbox and day, with SHA-256s; exits with 1 when anything
    /// mismatches.
    Reconcile {
        /// The run's id.
        #[arg(required_unless_present = "connector")]
        run: Option<i64>,
        /// Instead of a run id: this connector's last run.
        #[arg(long, requires = "last")]
        connector: Option<String>,
        /// With --connector: its last run.
        #[arg(long)]
        last: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
        /// CSV of counts per mailbox and day instead of one row per item.
        #[arg(long)]
        by_day: bool,
        /// Also check that each delivered email is in its mailbox, through
        /// this connector file's sink.
        #[arg(long, value_name = "CONFIG")]
        check_mailboxes: Option<PathBuf>,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Lists or redelivers quarantined items.
    Quarantine {
        #[command(subcommand)]
        action: QuarantineAction,
    },
    /// Manages the state itself.
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// Writes an installable copy of a plugin: its wasm and its manifest with
    /// the wasm's SHA-256 pinned.
    Package {
        /// The plugin's source manifest.
        manifest: PathBuf,
        /// The built `.wasm` component.
        #[arg(long)]
        wasm: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// A plugin author's commands.
    Plugin {
        #[command(subcommand)]
        action: PluginAction,
    },
    /// Checks or exports the audit trail of admin actions.
    Audit {
        #[command(subcommand)]
        action: audit::AuditCommand,
    },
    /// Pauses a connector: no daemon of the fleet starts a run of it (a run
    /// under way stops after its current page) until it is resumed.
    Pause {
        /// The connector's id.
        connector: String,
    },
    /// Resumes a paused connector: it runs on its schedule again.
    Resume {
        /// The connector's id.
        connector: String,
    },
    /// Asks whichever daemon runs the connector to run it at once, whatever
    /// its schedule says.
    RunNow {
        /// The connector's id.
        connector: String,
    },
}

#[derive(Subcommand)]
enum PluginAction {
    /// Creates a plugin from the templates built into this binary: a Rust
    /// crate (manifest, a sample `Source`, unit and harness tests) or a
    /// Python plugin (componentize-py). Inside this repository it joins the
    /// workspace; anywhere else it is a crate of its own on the SDK crate
    /// named by --sdk.
    New {
        /// The plugin's id, crate and folder name: lower-case letters,
        /// digits and '-', starting with a letter.
        name: String,
        /// The folder to create the plugin's folder in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The plugin's language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: plugin_new::Lang,
        /// The display name (the default target folder); by default the
        /// name in CamelCase.
        #[arg(long)]
        display_name: Option<String>,
        /// Outside this repository: the folder of the `connector-sdk` crate
        /// (`sdk/` of the connector framework's source) the plugin builds
        /// on. By default the SDK of the source this binary was built from.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Builds a Rust plugin for wasm32-wasip2 into the folder its manifest's
    /// `wasm` names (what the harness and the host load), then writes an
    /// installable copy with the manifest pinned to the built file.
    Build {
        /// The plugin's folder (manifest.toml and Cargo.toml).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where to write the installable copy (default
        /// `<target>/dist/<plugin id>`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Builds the plugin as `build` does, then runs its crate's tests
    /// (`cargo test`), whose harness tests load the wasm just built.
    Test {
        /// The plugin's folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Checks the manifest and the built component: the API version the
    /// component was built against, and the permissions it asks for.
    Check {
        /// The plugin's folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum QuarantineAction {
    /// Lists quarantined items (of one connector, or all) as CSV:
    /// connector, item, sent, message id, unmapped participants, reason.
    List {
        /// The connector id; all when absent.
        connector: Option<String>,
        /// Print JSON instead of CSV.
        #[arg(long)]
        json: bool,
    },
    /// After fixing the mapping CSV (or a refusing mailbox): delivers the
    /// quarantined items to the newly mapped mailboxes and releases those
    /// that nobody is missing from any more.
    Redeliver {
        /// Connector configuration files.
        #[arg(required = true)]
        configs: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum StateAction {
    /// Copies the SQLite state of `--state-dir` (ledger, quarantine with
    /// its emails, runs, checkpoints, plugin values, conversations, pauses,
    /// the audit trail) into an
    /// empty PostgreSQL database, then checks the copy table by table with
    /// row counts and SHA-256s. Stop every daemon on the SQLite state
    /// first; afterwards run the workers with `--state-url URL`.
    Migrate {
        /// The target: `postgres://USER@HOST:PORT/DB` (with `?sslmode=…`),
        /// an empty database; the password comes from
        /// `--state-password-file` or CONNECTOR_STATE_PASSWORD.
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Csv,
    Json,
}

/// Runs the `connector` program with the process's arguments.
/// Writes a line to standard output. Unlike `println!`, a failed write (the
/// reader closed the pipe) is an error that reaches [`main`], which ends
/// quietly on it.
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}

/// Like [`say!`], without the line break.
macro_rules! say_raw {
    ($($arg:tt)*) => {
        write!(std::io::stdout().lock(), $($arg)*)?
    };
}

/// The exit status of a program ended by `SIGPIPE`, as shells report it.
const EXIT_BROKEN_PIPE: u8 = 128 + 13;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let progress = match &cli.command {
        Command::Run { once: true, .. } => Progress::for_stderr().map(Arc::new),
        _ => None,
    };
    let writer = progress
        .as_ref()
        .map(|p| p.log_writer())
        .unwrap_or_default();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(writer)
        .init();
    match dispatch(cli, progress) {
        Ok(code) => code,
        // `connector log … | head`: the reader has all it wants, so stop
        // without an error message, as Unix tools do.
        Err(e) if is_broken_pipe(&e) => ExitCode::from(EXIT_BROKEN_PIPE),
        Err(e) => {
            eprintln!("error: {}", explain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: most errors
/// already say what caused them (and what to do), so a cause whose text is
/// in what was said before is not repeated.
fn explain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

/// Whether the error comes from writing to a pipe whose reader has gone.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn retention(cli: &Cli) -> Option<Duration> {
    cli.log_retention_days
        .map(|d| Duration::from_secs(u64::from(d) * 86400))
}

fn dispatch(cli: Cli, progress: Option<Arc<Progress>>) -> Result<ExitCode> {
    let retention = retention(&cli);
    match cli.command {
        Command::Run {
            once,
            max_pages,
            from,
            to,
            configs,
        } => {
            if once {
                let window = backfill_window(from.as_deref(), to.as_deref())?;
                run_once(&cli.state, &configs, max_pages, window, retention, progress)
            } else {
                daemon(&cli.state, &configs, None, None, retention)
            }
        }
        Command::Daemon {
            listen,
            console,
            configs,
        } => daemon(&cli.state, &configs, listen, console, retention),
        Command::Console { action } => console::run(action),
        Command::Validate { configs } => validate(&cli.state, &configs),
        Command::Status { json, configs } => status(&cli.state, &configs, json),
        Command::Workers { json } => workers(&cli.state, json),
        Command::Log {
            run,
            connector,
            last: _,
            out,
        } => log(&cli.state, run, connector.as_deref(), out.as_deref()),
        Command::Reconcile {
            run,
            connector,
            last: _,
            format,
            by_day,
            check_mailboxes,
            out,
        } => reconcile(
            &cli.state,
            run,
            connector.as_deref(),
            format,
            by_day,
            check_mailboxes.as_deref(),
            out.as_deref(),
        ),
        Command::Quarantine { action } => match action {
            QuarantineAction::List { connector, json } => {
                quarantine_list(&cli.state, connector.as_deref(), json)
            }
            QuarantineAction::Redeliver { configs } => redeliver(&cli.state, &configs),
        },
        Command::State {
            action: StateAction::Migrate { to },
        } => migrate::migrate(&cli.state, &to),
        Command::Package {
            manifest: source,
            wasm,
            out,
        } => {
            let written = manifest::package(&source, &wasm, &out)?;
            say!("{}", written.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            action: PluginAction::Build { dir, out },
        } => {
            let written = plugin::build(&dir, out.as_deref())?;
            say!("{}", written.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            action:
                PluginAction::New {
                    name,
                    dir,
                    lang,
                    display_name,
                    sdk,
                },
        } => {
            let created = plugin_new::create(&plugin_new::NewPlugin {
                name: &name,
                parent: &dir,
                lang,
                display_name: display_name.as_deref(),
                sdk: sdk.as_deref(),
            })?;
            // As the author named it, for commands to copy.
            let given = dir.join(&name);
            let shown = given.display();
            match created.workspace {
                Some(root) => say!(
                    "created {}, a member of the workspace {}",
                    created.dir.display(),
                    root.display()
                ),
                None => say!("created {}", created.dir.display()),
            }
            say!(
                "next: connector plugin test {shown}   (builds the wasm, runs its tests)\n      \
                 connector plugin build {shown}  (writes an installable copy)"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            action: PluginAction::Test { dir },
        } => {
            say!("{}", plugin::test(&dir)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            action: PluginAction::Check { dir },
        } => {
            say!("{}", plugin::check(&dir)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { action } => audit::audit(&cli.state, action),
        Command::Pause { connector } => controls::pause(&cli.state, &connector),
        Command::Resume { connector } => controls::resume(&cli.state, &connector),
        Command::RunNow { connector } => controls::run_now(&cli.state, &connector),
    }
}

fn load_all(configs: &[PathBuf]) -> Result<Vec<ConnectorConfig>> {
    configs
        .iter()
        .map(|p| ConnectorConfig::load(p).map_err(anyhow::Error::from))
        .collect()
}

/// Parses `2026-01-01` (midnight UTC) or an RFC 3339 time into ms.
fn parse_time(s: &str, flag: &str) -> Result<i64> {
    if let Ok(day) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let midnight = day.and_hms_opt(0, 0, 0).context("midnight exists")?;
        return Ok(midnight.and_utc().timestamp_millis());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .with_context(|| {
            format!("{flag} `{s}` is not a date; write 2026-01-01 (midnight UTC) or an RFC 3339 time such as 2026-01-01T09:00:00+01:00")
        })
}

fn backfill_window(from: Option<&str>, to: Option<&str>) -> Result<Option<TimeWindow>> {
    if from.is_none() && to.is_none() {
        return Ok(None);
    }
    let from_ms = from
        .map(|s| parse_time(s, "--from"))
        .transpose()?
        .unwrap_or(0);
    let to_ms = to
        .map(|s| parse_time(s, "--to"))
        .transpose()?
        .unwrap_or(i64::MAX);
    if from_ms >= to_ms {
        bail!("--from must be before --to (the range is [from, to))");
    }
    Ok(Some(TimeWindow { from_ms, to_ms }))
}

fn run_once(
    state: &StateArgs,
    configs: &[PathBuf],
    max_pages: Option<u64>,
    window: Option<TimeWindow>,
    retention: Option<Duration>,
    progress: Option<Arc<Progress>>,
) -> Result<ExitCode> {
    let connectors = load_all(configs)?;
    let host = state.open_host()?;
    prune(&host, retention);
    let options = RunOptions { max_pages };
    let stop = Arc::new(AtomicBool::new(false));
    install_signal_handler(stop.clone());
    let control = RunControl {
        stop: Some(stop.clone()),
        window,
        observer: progress.clone().map(|p| p as Arc<dyn RunObserver>),
    };
    let mut failed = false;
    for config in &connectors {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let result = host.run_controlled(config, &options, &control);
        if let Some(p) = &progress {
            p.finish(&config.id);
        }
        match result {
            Ok(s) => say!(
                "{}: run {} {} — {}",
                config.id,
                s.run.0,
                s.outcome.as_str(),
                report::counts::summary(&s.counts)
            ),
            Err(e) => {
                failed = true;
                eprintln!("{}: run failed: {e}", config.id);
            }
        }
    }
    prune(&host, retention);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// SIGTERM or Ctrl-C asks for a clean stop (the current page is finished
/// and committed); a second one exits at once, which is safe too: nothing
/// of an uncommitted page was recorded, the next run redoes it.
fn install_signal_handler(stop: Arc<AtomicBool>) {
    let result = ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            eprintln!("stopping now; the page in progress will be redone by the next run");
            std::process::exit(130);
        }
        eprintln!(
            "stopping after the current page (send the signal again to stop at once; nothing is lost either way)"
        );
    });
    if let Err(e) = result {
        tracing::warn!("cannot handle SIGTERM/Ctrl-C: {e}; stopping will abandon the current page");
    }
}

fn daemon(
    state: &StateArgs,
    configs: &[PathBuf],
    listen: Option<String>,
    console: Option<PathBuf>,
    retention: Option<Duration>,
) -> Result<ExitCode> {
    let (connectors, unreadable) = read_connectors(configs);
    if !unreadable.is_empty() {
        let all: Vec<String> = unreadable.into_iter().map(|u| u.error).collect();
        bail!("{}", all.join("\n"));
    }
    let console = console
        .map(|path| connector_console::ConsoleSettings::load(&path))
        .transpose()?;
    let host = Arc::new(state.open_host()?);
    let stop = Arc::new(AtomicBool::new(false));
    install_signal_handler(stop.clone());
    let options = DaemonOptions {
        listen,
        console,
        sources: configs.to_vec(),
        log_retention: retention,
    };
    let n = connectors.len();
    let daemon = Daemon::start(host, connectors, &options, stop)?;
    if let Some(url) = daemon.url() {
        say!("status: {url}/");
    }
    say!("daemon: running {n} connector(s); SIGTERM or Ctrl-C stops it");
    let _ = std::io::stdout().flush();
    daemon.wait();
    say!("daemon: stopped");
    Ok(ExitCode::SUCCESS)
}

fn validate(state: &StateArgs, configs: &[PathBuf]) -> Result<ExitCode> {
    let host = state.open_host()?;
    let mut ok = true;
    for path in configs {
        let result = ConnectorConfig::load(path)
            .map_err(anyhow::Error::from)
            .and_then(|c| host.validate(&c).map_err(anyhow::Error::from));
        match result {
            Ok(m) => say!("{}: ok (plugin {} {})", path.display(), m.id, m.version),
            Err(e) => {
                ok = false;
                eprintln!("{}: {}", path.display(), explain(&e));
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn status(state: &StateArgs, configs: &[PathBuf], json: bool) -> Result<ExitCode> {
    let connectors = load_all(configs)?;
    let db = state.open_db_creating()?;
    let report = status::collect(
        db.as_ref(),
        &connectors,
        None,
        state.lease_time(),
        &crate::pipeline::fingerprints(&connectors),
    )?;
    if json {
        say!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        say_raw!("{}", status::render_text(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn workers(state: &StateArgs, json: bool) -> Result<ExitCode> {
    let db = state.open_db()?;
    let workers = status::workers(db.as_ref(), state.lease_time())?;
    if json {
        say!("{}", serde_json::to_string_pretty(&workers)?);
    } else if workers.is_empty() {
        say!("no worker has sent a heartbeat (daemons do, every third of the lease time)");
    } else {
        say_raw!("{}", status::render_workers(&workers));
    }
    Ok(ExitCode::SUCCESS)
}

fn output(out: Option<&Path>) -> Result<Box<dyn std::io::Write>> {
    Ok(match out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    })
}

fn log(
    state: &StateArgs,
    run: Option<i64>,
    connector: Option<&str>,
    out: Option<&Path>,
) -> Result<ExitCode> {
    let db = state.open_db()?;
    let record = report::pick_run(&*db, run.map(RunId), connector)?;
    let log = report::admin_log(&*db, &record)?;
    report::write_admin_log_csv(&log, output(out)?)?;
    Ok(ExitCode::SUCCESS)
}

fn reconcile(
    state: &StateArgs,
    run: Option<i64>,
    connector: Option<&str>,
    format: Format,
    by_day: bool,
    check_mailboxes: Option<&Path>,
    out: Option<&Path>,
) -> Result<ExitCode> {
    let db = state.open_db()?;
    let record = report::pick_run(&*db, run.map(RunId), connector)?;
    let mut sink_holder = None;
    let mut folder = String::new();
    if let Some(path) = check_mailboxes {
        let config = ConnectorConfig::load(path)?;
        if config.id != record.connector {
            bail!(
                "run {} belongs to connector `{}`, but {} is connector `{}`; pass that connector's file",
                record.id.0,
                record.connector,
                path.display(),
                config.id
            );
        }
        let manifest = PluginManifest::load(&config.plugin)?;
        folder = config.folder_path(&manifest);
        sink_holder = Some(crate::pipeline::connector_sink(&config)?);
    }
    let check = sink_holder.as_mut().map(|sink| MailboxCheck {
        sink: sink.as_mut(),
        folder: folder.clone(),
    });
    let rec = report::reconcile(&*db, &record, check)?;
    let mut w = output(out)?;
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut w, &rec)?;
            writeln!(w)?;
        }
        Format::Csv => report::write_reconciliation_csv(&rec, by_day, &mut w)?,
    }
    w.flush()?;
    if rec.mismatches > 0 {
        eprintln!(
            "{} mismatch(es) in run {}: see the rows marked as mismatches",
            rec.mismatches, rec.run.0
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(serde::Serialize)]
struct QuarantineRow {
    connector: String,
    item_id: String,
    sent_at: String,
    message_id: String,
    unmapped: Vec<String>,
    reason: String,
}

fn quarantine_list(state: &StateArgs, connector: Option<&str>, json: bool) -> Result<ExitCode> {
    let db = state.open_db()?;
    let connectors = match connector {
        Some(c) => vec![c.to_string()],
        None => db.connectors()?,
    };
    let mut rows = Vec::new();
    for c in &connectors {
        for q in db.quarantine(c)? {
            rows.push(QuarantineRow {
                connector: c.clone(),
                item_id: q.item_id,
                sent_at: connector_model::time::iso(q.sent_at_ms),
                message_id: q.message_id,
                unmapped: q.unmapped.iter().map(|p| p.id.clone()).collect(),
                reason: q.reason,
            });
        }
    }
    let stdout = std::io::stdout();
    if json {
        serde_json::to_writer_pretty(stdout.lock(), &rows)?;
        say!();
    } else {
        let mut w = csv::Writer::from_writer(stdout.lock());
        w.write_record([
            "Connector",
            "Item id",
            "Sent at",
            "Message-ID",
            "Unmapped participants",
            "Reason",
        ])?;
        for r in &rows {
            w.write_record([
                r.connector.as_str(),
                r.item_id.as_str(),
                r.sent_at.as_str(),
                r.message_id.as_str(),
                r.unmapped.join(" ").as_str(),
                r.reason.as_str(),
            ])?;
        }
        w.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

fn redeliver(state: &StateArgs, configs: &[PathBuf]) -> Result<ExitCode> {
    let connectors = load_all(configs)?;
    let host = state.open_host()?;
    let mut failed = false;
    for config in &connectors {
        match host.redeliver_quarantine(config) {
            Ok(s) => say!(
                "{}: {}, {} released from the quarantine{}",
                config.id,
                report::counts::summary(&s.counts),
                s.released,
                s.run
                    .map(|r| format!("; admin log: `connector log {}`", r.0))
                    .unwrap_or_default()
            ),
            Err(e) => {
                failed = true;
                eprintln!("{}: redelivery failed: {e}", config.id);
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
