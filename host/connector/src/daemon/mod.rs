//! The daemon: runs every connector on its schedule, each on its own thread
//! so that a failing, panicking or slow connector never holds up the
//! others, serves the status over HTTP, and stops cleanly: once asked to
//! stop, each run finishes the page it is on (commits it) and ends as
//! interrupted; the next run resumes at that checkpoint. It honours the
//! admins' controls in the state ([`controls`]): a paused connector starts
//! no run (a run under way stops after its page) until resumed, and a "run
//! now" request starts a run at once, whichever worker takes it.

mod controls;
mod roster;

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::ConnectorConfig;
use crate::config::folder::{ConnectorSet, SharedConnectors};
use crate::console::{AuditHooks, WebContext, WebServer};
use crate::pipeline::{Host, RunControl, RunError, RunObserver, RunOptions, fingerprints};
use crate::status::LiveBoard;
use connector_console::{Console, ConsoleSettings, ServeError};
use connector_model::time::now_ms;
use connector_state::{RunCounts, RunOutcome, RunRequest};
use controls::ControlBoard;
use roster::Roster;

/// How often a waiting connector thread looks at the clock and the stop flag.
const TICK: Duration = Duration::from_millis(200);

/// How the daemon runs.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// Serve `/healthz`, `/status.json` and `/metrics` on this address,
    /// and the console when `console` is set.
    pub listen: Option<String>,
    /// The console's settings (sign-in, roles, TLS).
    pub console: Option<ConsoleSettings>,
    /// Where the connector files were read from (files and folders); the
    /// folders are followed while the daemon runs. Empty: the connectors
    /// given are all there is.
    pub sources: Vec<std::path::PathBuf>,
    /// Forget runs (with their admin logs and reconciliation data) that
    /// finished longer ago than this; `None` keeps them all. The ledger and
    /// the quarantine are never pruned.
    pub log_retention: Option<Duration>,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The web server could not listen.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The console's settings cannot be used.
    #[error(transparent)]
    Console(#[from] connector_console::SettingsError),
    /// A thread could not be started.
    #[error(
        "cannot start a thread for connector `{connector}`: {message}; the machine is out of resources, free some and start again"
    )]
    Thread {
        /// The connector.
        connector: String,
        /// What the system said.
        message: String,
    },
    /// Two connector files share an id.
    #[error(
        "two connector files use the id `{0}`; each connector needs its own id, since the id keys its checkpoint and ledger"
    )]
    DuplicateId(String),
    /// The console's wizard writes connectors into a folder the daemon
    /// does not follow.
    #[error(
        "the console file's [connectors] folder {0} is not a folder this daemon follows, so connectors added in the console would never run; name that folder on the command line (connector daemon … {0})"
    )]
    WizardFolderNotFollowed(std::path::PathBuf),
}

/// A running daemon.
pub struct Daemon {
    roster: Option<JoinHandle<()>>,
    heartbeat: Option<JoinHandle<()>>,
    watcher: Option<JoinHandle<()>>,
    server: Option<WebServer>,
    live: Arc<LiveBoard>,
    stop: Arc<AtomicBool>,
}

/// Removes runs older than the retention from the state database.
pub fn prune(host: &Host, retention: Option<Duration>) {
    let Some(keep) = retention else { return };
    let cutoff = now_ms().saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
    match host.db().prune_runs_before(cutoff) {
        Ok(0) => {}
        Ok(n) => tracing::info!("pruned {n} run(s) older than the log retention"),
        Err(e) => tracing::warn!("cannot prune old runs: {e}"),
    }
}

impl Daemon {
    /// Starts one thread per connector and, when asked, the status server.
    /// Setting `stop` ends it; then call [`Daemon::wait`].
    pub fn start(
        host: Arc<Host>,
        configs: Vec<ConnectorConfig>,
        options: &DaemonOptions,
        stop: Arc<AtomicBool>,
    ) -> Result<Daemon, DaemonError> {
        let mut ids = std::collections::BTreeSet::new();
        for c in &configs {
            if !ids.insert(c.id.clone()) {
                return Err(DaemonError::DuplicateId(c.id.clone()));
            }
        }
        if let Some(folders) = options.console.as_ref().and_then(|c| c.connector_folders()) {
            let wanted = folders.folder.canonicalize().ok();
            let followed = options
                .sources
                .iter()
                .any(|s| s.is_dir() && s.canonicalize().ok() == wanted);
            if !followed {
                return Err(DaemonError::WizardFolderNotFollowed(folders.folder));
            }
        }
        prune(&host, options.log_retention);
        let live = Arc::new(LiveBoard::default());
        let shared: SharedConnectors = Arc::new(RwLock::new(ConnectorSet {
            fingerprints: fingerprints(&configs),
            configs,
        }));
        let server = match &options.listen {
            Some(addr) => {
                let ctx = Arc::new(WebContext::new(host.clone(), shared.clone(), live.clone()));
                let console = match &options.console {
                    Some(settings) => Some(Console::new(
                        settings.clone(),
                        crate::console::nav(),
                        Arc::new(AuditHooks::new(ctx.clone())),
                    )?),
                    None => None,
                };
                Some(WebServer::start(addr, console, ctx)?)
            }
            None => None,
        };
        let heartbeat = {
            let (host, stop, shared) = (host.clone(), stop.clone(), shared.clone());
            std::thread::Builder::new()
                .name("heartbeat".into())
                .spawn(move || send_heartbeats(&host, &shared, &stop))
                .map_err(|e| DaemonError::Thread {
                    connector: "(heartbeat)".into(),
                    message: e.to_string(),
                })?
        };
        // Read once before any connector thread starts, so that a connector
        // paused before the daemon started never runs.
        let board = Arc::new(ControlBoard::default());
        board.look(&host);
        let watcher = {
            let (host, stop, board) = (host.clone(), stop.clone(), board.clone());
            std::thread::Builder::new()
                .name("controls".into())
                .spawn(move || board.watch(&host, &stop, TICK))
                .map_err(|e| DaemonError::Thread {
                    connector: "(controls)".into(),
                    message: e.to_string(),
                })?
        };
        let spawn: roster::Spawn = {
            let (host, live, board) = (host.clone(), live.clone(), board.clone());
            let retention = options.log_retention;
            Box::new(move |config: ConnectorConfig, stop: Arc<AtomicBool>| {
                let worker = Worker {
                    host: host.clone(),
                    live: live.clone(),
                    stop,
                    retention,
                    board: board.clone(),
                };
                std::thread::Builder::new()
                    .name(format!("connector-{}", config.id))
                    .spawn(move || worker.run(&config))
            })
        };
        let roster =
            Roster::start(options.sources.clone(), spawn, shared).map_err(|(connector, e)| {
                DaemonError::Thread {
                    connector,
                    message: e.to_string(),
                }
            })?;
        let roster = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("connectors".into())
                .spawn(move || roster.supervise(&stop, TICK))
                .map_err(|e| DaemonError::Thread {
                    connector: "(connectors)".into(),
                    message: e.to_string(),
                })?
        };
        Ok(Daemon {
            roster: Some(roster),
            heartbeat: Some(heartbeat),
            watcher: Some(watcher),
            server,
            live,
            stop,
        })
    }

    /// Where the web server listens, if it runs.
    pub fn status_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(WebServer::addr)
    }

    /// The web server's `http(s)://address`, if it runs.
    pub fn url(&self) -> Option<String> {
        self.server.as_ref().map(WebServer::url)
    }

    /// The live facts the status shows.
    pub fn live(&self) -> Arc<LiveBoard> {
        self.live.clone()
    }

    /// Asks every connector to stop after its current page.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Waits until every connector thread has ended (after a stop), then
    /// stops the status server.
    pub fn wait(mut self) {
        if let Some(t) = self.roster.take() {
            let _ = t.join();
        }
        if let Some(t) = self.heartbeat.take() {
            let _ = t.join();
        }
        if let Some(t) = self.watcher.take() {
            let _ = t.join();
        }
        self.server.take();
    }
}

/// Tells the state this worker is alive, a third of the lease time apart,
/// until the daemon stops; then removes it from the fleet's list.
fn send_heartbeats(host: &Host, connectors: &SharedConnectors, stop: &AtomicBool) {
    let beat = host.lease_time() / 3;
    while !stop.load(Ordering::SeqCst) {
        let record = host.worker().record(
            connectors
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .fingerprints
                .clone(),
        );
        if let Err(e) = host.db().heartbeat(&record) {
            tracing::warn!("cannot send the heartbeat, retrying: {e}");
        }
        forget_long_gone(host);
        let until = std::time::Instant::now() + beat;
        while std::time::Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(TICK);
        }
    }
    if let Err(e) = host.db().forget_worker(&host.worker().id) {
        tracing::warn!("cannot remove this worker from the fleet's list: {e}");
    }
}

/// A worker silent this long (killed, its machine lost) leaves the fleet's
/// list; until then `connector workers` shows it as gone.
const FORGET_GONE_AFTER_MS: i64 = 24 * 3600 * 1000;

fn forget_long_gone(host: &Host) {
    let mut db = host.db();
    let gone: Vec<String> = match (db.clock_ms(), db.workers()) {
        (Ok(now), Ok(workers)) => workers
            .into_iter()
            .filter(|w| now - w.heartbeat_at_ms > FORGET_GONE_AFTER_MS)
            .map(|w| w.id)
            .collect(),
        _ => return,
    };
    for id in gone {
        if db.forget_worker(&id).is_ok() {
            tracing::info!(
                "worker {id} sent no heartbeat for a day: removed from the fleet's list"
            );
        }
    }
}

struct Worker {
    host: Arc<Host>,
    live: Arc<LiveBoard>,
    stop: Arc<AtomicBool>,
    retention: Option<Duration>,
    board: Arc<ControlBoard>,
}

/// Tells the live board, and remembers the run id in case the run panics.
struct Tracker {
    live: Arc<LiveBoard>,
    run: std::sync::Mutex<Option<connector_state::RunId>>,
}

impl RunObserver for Tracker {
    fn run_started(&self, connector: &str, run: connector_state::RunId) {
        *self.run.lock().unwrap_or_else(|p| p.into_inner()) = Some(run);
        self.live.run_started(connector, run);
    }

    fn page_committed(&self, connector: &str, total: &RunCounts) {
        self.live.page_committed(connector, total);
    }
}

impl Worker {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Waits until `due` while the connector is not paused, or until a run
    /// of it is requested (from `requests_from` on; the request taken:
    /// `Some`), or the daemon stops. A paused connector waits past `due`
    /// until it is resumed.
    fn wait_until(&self, id: &str, due: i64, requests_from: i64) -> Option<RunRequest> {
        while !self.stopping() {
            let paused = self.board.is_paused(id);
            if !paused && now_ms() >= requests_from && self.board.is_requested(id) {
                match self.host.db().take_run_request(id) {
                    Ok(Some(request)) => return Some(request),
                    // Another worker took it.
                    Ok(None) => self.board.forget_request(id),
                    Err(e) => {
                        tracing::warn!(connector = id, "cannot take the run request: {e}");
                    }
                }
            }
            let now = now_ms();
            if !paused && now >= due {
                return None;
            }
            let left = Duration::from_millis((due - now).max(0) as u64);
            std::thread::sleep(if paused { TICK } else { left.min(TICK) });
        }
        None
    }

    fn run(&self, config: &ConnectorConfig) {
        let id = config.id.as_str();
        let mut last_start = match self.host.db().last_scheduled_run(id) {
            Ok(r) => r.map(|r| r.started_at_ms),
            Err(e) => {
                tracing::error!(connector = id, "cannot read the last run: {e}; running now");
                None
            }
        };
        // Set while another run (another worker's) holds the lease: look
        // again then, to take over if that worker dies.
        let mut retry_at: Option<i64> = None;
        // A request this worker could not serve (another holds the lease)
        // is left to the holder until then.
        let mut requests_from = 0;
        loop {
            let due = retry_at
                .take()
                .unwrap_or_else(|| config.schedule.next_due(last_start))
                .max(now_ms());
            self.live.set_next_due(id, due);
            tracing::debug!(
                connector = id,
                "next run at {}",
                connector_model::time::iso(due)
            );
            let requested = self.wait_until(id, due, requests_from);
            if self.stopping() {
                break;
            }
            if let Some(r) = &requested {
                tracing::info!(connector = id, "run requested by {}: running now", r.by);
            }
            // Another worker of the fleet may have run it meanwhile.
            // A run of it left unfinished is another worker's, alive or
            // dead: try now (the lease decides), to take over a dead one.
            if requested.is_none()
                && let Ok(Some(r)) = self.host.db().last_scheduled_run(id)
            {
                last_start = last_start.max(Some(r.started_at_ms));
                if r.outcome.is_some() && config.schedule.next_due(last_start) > now_ms() {
                    continue;
                }
            }
            let before = last_start;
            last_start = Some(now_ms());
            let tracker = Arc::new(Tracker {
                live: self.live.clone(),
                run: std::sync::Mutex::new(None),
            });
            // Set by the controls' thread when the connector is paused or
            // the daemon stops.
            let run_stop = self.board.run_starting(id);
            if self.stopping() {
                run_stop.store(true, Ordering::SeqCst);
            }
            let control = RunControl {
                stop: Some(run_stop),
                window: None,
                observer: Some(tracker.clone()),
            };
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                self.host
                    .run_controlled(config, &RunOptions::default(), &control)
            }));
            self.board.run_ended(id);
            match result {
                Ok(Ok(s)) => tracing::info!(
                    connector = id,
                    run = s.run.0,
                    outcome = s.outcome.as_str(),
                    imported = s.counts.imported,
                    quarantined = s.counts.quarantined,
                    "run finished"
                ),
                Ok(Err(RunError::Busy { owner, .. })) => {
                    let wait = self.host.lease_time() / 2;
                    tracing::debug!(connector = id, "held by {owner}; looking again in {wait:?}");
                    // This attempt did not run: the schedule counts from
                    // the run that did. A request waits for the holder.
                    last_start = before;
                    if let Some(r) = &requested
                        && let Err(e) = self.host.db().request_run(id, &r.by)
                    {
                        tracing::warn!(connector = id, "cannot keep the run request: {e}");
                    }
                    let retry = now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
                    retry_at = Some(retry);
                    if requested.is_some() {
                        requests_from = retry;
                    }
                }
                // The next due time retries it.
                Ok(Err(e)) => tracing::error!(
                    connector = id,
                    "run failed: {e}; the run will be retried at its next due time"
                ),
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown panic".into());
                    let message = format!(
                        "the host panicked during the run: {what}; this is a host bug, please report it with the log; nothing uncommitted is lost and the next run resumes at the checkpoint"
                    );
                    tracing::error!(connector = id, "{message}");
                    let run = *tracker.run.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(run) = run {
                        let _ = self.host.db().finish_run(
                            run,
                            now_ms(),
                            RunOutcome::Failed,
                            &RunCounts::default(),
                            Some(&message),
                        );
                    }
                }
            }
            self.live.finished(id);
            prune(&self.host, self.retention);
        }
        tracing::info!(connector = id, "stopped");
    }
}
