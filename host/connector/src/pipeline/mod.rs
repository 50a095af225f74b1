//! One run of a connector: pull pages from the plugin, convert each message,
//! map its participants, import it, and commit the page's ledger entries and
//! checkpoint together.

mod lease;
mod mailbox_budget;
mod page;
mod plugin_kv;
mod preview;
mod redeliver;
mod retry;
mod spool;
mod state_location;

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use connector_email::{ConvertError, DEFAULT_SPILL_ABOVE, EmailConverter};
use connector_model::Conversation;
use connector_model::time::now_ms;
use connector_runtime::wasm::PluginEngine;
use connector_runtime::{Capabilities, KvAccess, PluginError, PluginManifest, SecretStore};
use connector_runtime::{PluginContext, loader};
use connector_secrets::SecretError;
use connector_sink::{Sink, SinkError};
use connector_state::{
    CheckpointSlot, Fence, RunCounts, RunId, RunKind, RunOutcome, SharedStore, StateError,
    StateStore, faults, partition_lease,
};

use crate::config::{ConfigError, ConnectorConfig};
use crate::map::MapError;

pub use lease::{WorkerIdentity, fingerprint, fingerprints};
pub use preview::PREVIEW_PEOPLE;
pub use redeliver::{RedeliverySummary, connector_sink};
pub use retry::RetryPolicy;
pub use state_location::{HostSettings, StateLocation};

/// Why a run failed. Nothing of an unfinished page is committed, so the next
/// run starts again from the last checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A configuration file is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The secrets could not be loaded.
    #[error(transparent)]
    Secrets(#[from] SecretError),
    /// The mapping CSV is wrong.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The plugin failed.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// A message could not be turned into an email.
    #[error(
        "message {item} cannot be converted to an email: {source}; the run stopped before it so nothing is lost; report this to the plugin's author"
    )]
    Convert {
        /// The message id.
        item: String,
        /// Why.
        source: ConvertError,
    },
    /// A transcript line kept in the state cannot be read back.
    #[error(transparent)]
    TranscriptLine(#[from] connector_email::EntryError),
    /// The mailbox store failed in a way retrying did not fix.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The state database failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Another run of the connector is going on.
    #[error(
        "connector `{connector}` is already running ({owner}: the daemon, a backfill or a redelivery, or another worker of the fleet); wait until that run ends (`connector status` and `connector workers` show it), then try again"
    )]
    Busy {
        /// The connector.
        connector: String,
        /// Who runs it.
        owner: String,
    },
    /// A live worker runs the connector with other files.
    #[error(
        "connector `{connector}` runs on worker {worker} with a different {differs}; every worker of a fleet must run the same files, so this one will not run it. Deploy the same files everywhere (or stop the other worker first, to upgrade)"
    )]
    Mismatch {
        /// The connector.
        connector: String,
        /// The files that differ, comma-separated.
        differs: String,
        /// A live worker running the other files.
        worker: String,
    },
}

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop after this many pages, of every partition together (the rest
    /// waits for the next run).
    pub max_pages: Option<u64>,
}

/// A `[from, to)` range of sent times, in ms since the epoch, for a backfill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// First sent time included.
    pub from_ms: i64,
    /// First sent time excluded.
    pub to_ms: i64,
}

impl TimeWindow {
    /// Whether a message sent at `sent_at_ms` falls in the range.
    pub fn contains(&self, sent_at_ms: i64) -> bool {
        (self.from_ms..self.to_ms).contains(&sent_at_ms)
    }

    /// The checkpoint key of a backfill of `connector` over this range: the
    /// backfill resumes there, and the connector's own checkpoint is left
    /// alone.
    pub fn checkpoint_key(&self, connector: &str) -> String {
        format!("{connector}#backfill:{}..{}", self.from_ms, self.to_ms)
    }
}

/// Told about a run's progress (the daemon's live status, progress bars).
pub trait RunObserver: Send + Sync {
    /// A run started.
    fn run_started(&self, _connector: &str, _run: RunId) {}
    /// A page was committed; `total` is what the run did so far.
    fn page_committed(&self, _connector: &str, _total: &RunCounts) {}
}

/// How a run is steered beyond [`RunOptions`].
#[derive(Clone, Default)]
pub struct RunControl {
    /// Once set, the run stops after the page it is on is committed (a page
    /// is never left half recorded); the run ends as interrupted.
    pub stop: Option<Arc<AtomicBool>>,
    /// Make this run a backfill: the plugin is opened without the
    /// connector's checkpoint, only messages sent in the range are
    /// delivered, and the resume position is kept under
    /// [`TimeWindow::checkpoint_key`] (cleared once the backfill completes).
    pub window: Option<TimeWindow>,
    /// Told about progress.
    pub observer: Option<Arc<dyn RunObserver>>,
}

impl RunControl {
    fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }

    /// Sleeps for `pause`, waking early when asked to stop.
    fn sleep(&self, pause: Duration) {
        let until = std::time::Instant::now() + pause;
        while !self.stopping() {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run's id in the state database.
    pub run: RunId,
    /// How it ended.
    pub outcome: RunOutcome,
    /// What it counted.
    pub counts: RunCounts,
}

/// A host process: the plugin engine and the state database, shared by every
/// connector it runs.
pub struct Host {
    engine: PluginEngine,
    db: SharedStore,
    state: StateLocation,
    worker: WorkerIdentity,
    lease_time: Duration,
    state_dir: PathBuf,
    /// Where big emails are spooled while they are delivered.
    spool: spool::SpoolDir,
    /// The mailboxes the mail service asked this process to leave alone.
    pauses: Arc<connector_sink::budget::Pauses>,
}

/// Creates the state folder (and its parents) when absent, readable by its
/// owner only: the state holds the quarantined emails and the plugins'
/// state.
pub fn create_state_dir(state_dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
}

impl Host {
    /// Opens (or creates) the state folder: `state.db` and the compile cache.
    pub fn open(state_dir: &Path) -> Result<Host, RunError> {
        Host::open_with(state_dir, &HostSettings::default())
    }

    /// Opens the state `settings` name (by default `state.db` in the state
    /// folder), and the state folder for this worker's compile cache and
    /// spool.
    pub fn open_with(state_dir: &Path, settings: &HostSettings) -> Result<Host, RunError> {
        create_state_dir(state_dir).map_err(|e| {
            StateError::Io(format!(
                "cannot create the state folder {}: {e}",
                state_dir.display()
            ))
        })?;
        let state_dir = &std::path::absolute(state_dir).map_err(|e| {
            StateError::Io(format!(
                "cannot resolve the state folder {}: {e}",
                state_dir.display()
            ))
        })?;
        let state = settings
            .state
            .clone()
            .unwrap_or_else(|| StateLocation::Sqlite(state_dir.join("state.db")));
        let db = state.open_shared()?;
        let engine = PluginEngine::new(Some(&state_dir.join("compile-cache")))?;
        let spool = spool::SpoolDir::create(state_dir)?;
        Ok(Host {
            engine,
            db,
            state,
            worker: WorkerIdentity::current(),
            lease_time: settings.lease_time,
            state_dir: state_dir.to_path_buf(),
            spool,
            pauses: Default::default(),
        })
    }

    /// The state database.
    pub fn db(&self) -> std::sync::MutexGuard<'_, dyn StateStore + 'static> {
        page::lock(&self.db)
    }

    /// Where the state is.
    pub fn state(&self) -> &StateLocation {
        &self.state
    }

    /// The state folder.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Loads and cross-checks a connector's configuration and its plugin's
    /// manifest, then loads the plugin and asks it to check its config.
    pub fn validate(&self, config: &ConnectorConfig) -> Result<PluginManifest, RunError> {
        // Whatever a run refuses before touching the source; the plugin
        // itself validates without secrets.
        let Checked { manifest, .. } = Checked::load(config)?;
        self.check_plugin_config(&manifest, &config.grants, &config.plugin_config_json())
            .map_err(|e| located(config, e))?;
        config.sink.open(&config.secrets)?;
        Ok(manifest)
    }

    /// Runs a connector once, recording the run (also when it fails).
    pub fn run_once(
        &self,
        config: &ConnectorConfig,
        options: &RunOptions,
    ) -> Result<RunSummary, RunError> {
        self.run_controlled(config, options, &RunControl::default())
    }

    /// Runs a connector once under `control` (stop flag, backfill range,
    /// progress observer), recording the run (also when it fails).
    pub fn run_controlled(
        &self,
        config: &ConnectorConfig,
        options: &RunOptions,
        control: &RunControl,
    ) -> Result<RunSummary, RunError> {
        let (kind, range) = match control.window {
            Some(w) => (RunKind::Backfill, Some((w.from_ms, w.to_ms))),
            None => (RunKind::Run, None),
        };
        let lock = self.lock_runs(config)?;
        let run = {
            let mut db = self.db();
            // A run still marked as running was cut short by a crash, unless
            // another worker reads partitions of the connector right now.
            if !self.partitions_leased_elsewhere(&*db, &config.id)? {
                db.interrupt_unfinished(&config.id, now_ms())?;
            }
            db.begin_run_of(&config.id, now_ms(), kind, range)?
        };
        if let Some(observer) = &control.observer {
            observer.run_started(&config.id, run);
        }
        let tally = RunTally::default();
        let result = self.run_pages(config, options, control, run, lock, &tally);
        let counts = tally.total();
        let (outcome, error) = match &result {
            Ok(outcome) => (*outcome, None),
            Err(e) => (RunOutcome::Failed, Some(e.to_string())),
        };
        self.db()
            .finish_run(run, now_ms(), outcome, &counts, error.as_deref())?;
        // An error is recorded with the run; the caller says it (the daemon
        // in its log, `run --once` on standard error), once.
        result.map(|outcome| RunSummary {
            run,
            outcome,
            counts,
        })
    }

    /// Loads the plugin and asks it for its partitions. A source without
    /// partitions is read whole under the connector's lease `lock`; a
    /// partitioned one releases it and reads its partitions, each under a
    /// lease of its own, so other workers can read the others.
    fn run_pages(
        &self,
        config: &ConnectorConfig,
        options: &RunOptions,
        control: &RunControl,
        run: RunId,
        lock: lease::HeldLease<'_>,
        tally: &RunTally,
    ) -> Result<RunOutcome, RunError> {
        let Checked {
            manifest,
            caps,
            secrets,
            users,
        } = Checked::load(config)?;
        let run_setup = RunSetup {
            config,
            options,
            control,
            run,
            manifest: &manifest,
            caps,
            secrets,
            users: &users,
            config_json: config.plugin_config_json(),
            base_key: match &control.window {
                Some(w) => w.checkpoint_key(&config.id),
                None => config.id.clone(),
            },
            spool: self.spool.path(),
            pages_fetched: Default::default(),
        };
        let mut plugin = self.load_plugin(&run_setup)?;
        let partitions = self.list_partitions(&run_setup, plugin.as_mut())?;
        tracing::info!(connector = %config.id, plugin = %manifest.id, folder = %config.folder_path(&manifest), partitions = partitions.len(), "run started");
        if partitions.is_empty() {
            let mut sink = config.sink.open(&config.secrets)?;
            self.share_budget(sink.as_mut(), &config.id, run);
            let stage = run_setup.stage(lock.fence(), None);
            let outcome = self.read_source(
                &run_setup,
                &stage,
                None,
                plugin.as_mut(),
                sink.as_mut(),
                tally,
            )?;
            if outcome == RunOutcome::Succeeded {
                self.deliver_transcripts(&run_setup, lock.fence(), sink.as_mut(), tally)?;
            }
            return Ok(outcome);
        }
        drop(plugin);
        drop(lock);
        let outcome = self.read_partitions(&run_setup, partitions, tally)?;
        // The partitions are read: the connector's own lease again, for
        // its transcripts (another worker holding it sends them).
        if outcome == RunOutcome::Succeeded
            && config.delivery.transcripts()
            && let Some(lock) = self.take_lease(config, &config.id)?
        {
            let mut sink = config.sink.open(&config.secrets)?;
            self.share_budget(sink.as_mut(), &config.id, run);
            self.deliver_transcripts(&run_setup, lock.fence(), sink.as_mut(), tally)?;
        }
        Ok(outcome)
    }

    /// Delivers the connector's transcripts that are due, when it delivers
    /// transcripts, and adds their counts to the run's. Called once a run
    /// read its source to the end: a day still being caught up on is not
    /// sealed before its messages are read.
    fn deliver_transcripts(
        &self,
        setup: &RunSetup<'_>,
        fence: Fence,
        sink: &mut dyn Sink,
        tally: &RunTally,
    ) -> Result<(), RunError> {
        if !setup.config.delivery.transcripts() {
            return Ok(());
        }
        let stage = setup.transcript_stage(fence);
        let counts =
            stage.deliver_transcripts(setup.config.transcripts.grace, sink, &self.db, setup.run)?;
        tally.add(&counts);
        Ok(())
    }

    fn load_plugin(
        &self,
        setup: &RunSetup<'_>,
    ) -> Result<Box<dyn connector_runtime::Source>, RunError> {
        let kv: KvAccess = Arc::new(plugin_kv::StateKv {
            db: self.db.clone(),
            connector: setup.config.id.clone(),
        });
        let context = PluginContext::new(setup.caps.clone(), setup.secrets.clone()).with_kv(kv);
        Ok(loader::load(&self.engine, setup.manifest, context)?)
    }

    /// The plugin's partitions, asked again after a retryable failure.
    fn list_partitions(
        &self,
        setup: &RunSetup<'_>,
        plugin: &mut dyn connector_runtime::Source,
    ) -> Result<Vec<String>, RunError> {
        let retry = RetryPolicy::new(setup.config.retries);
        let mut failures = 0u32;
        loop {
            match plugin.partitions(&setup.config_json) {
                Ok(ids) => return Ok(ids),
                Err(e) if e.is_retryable() && failures < retry.attempts() => {
                    let pause = retry.pause(failures, &e);
                    failures += 1;
                    tracing::warn!(connector = %setup.config.id, "listing partitions: {e}; retrying in {pause:?}");
                    setup.control.sleep(pause);
                }
                Err(e) => return Err(located(setup.config, e).into()),
            }
        }
    }

    /// Reads partitions `ids` with up to `partitions-at-once` threads, each
    /// with its own plugin instance and sink. A partition another worker
    /// holds is left to it. The first failure stops the taking of further
    /// partitions; the run then fails with it.
    fn read_partitions(
        &self,
        setup: &RunSetup<'_>,
        mut ids: Vec<String>,
        tally: &RunTally,
    ) -> Result<RunOutcome, RunError> {
        // Workers start at different places, so a fleet spreads at once.
        let start = (now_ms().unsigned_abs() as usize ^ std::process::id() as usize) % ids.len();
        ids.rotate_left(start);
        let threads = (setup.config.partitions_at_once as usize).min(ids.len());
        let queue = std::sync::Mutex::new(std::collections::VecDeque::from(ids));
        let failure: std::sync::Mutex<Option<RunError>> = std::sync::Mutex::new(None);
        let incomplete = AtomicBool::new(false);
        let next = || {
            let failed = page::locked(&failure).is_some();
            if failed || setup.control.stopping() || setup.page_limit_reached() {
                return None;
            }
            page::locked(&queue).pop_front()
        };
        let fail = |e: RunError| {
            page::locked(&failure).get_or_insert(e);
        };
        std::thread::scope(|scope| {
            for n in 0..threads {
                let spawned = std::thread::Builder::new()
                    .name(format!("partitions-{}-{n}", setup.config.id))
                    .spawn_scoped(scope, || {
                        let opened = self.load_plugin(setup).and_then(|plugin| {
                            let mut sink = setup.config.sink.open(&setup.config.secrets)?;
                            self.share_budget(sink.as_mut(), &setup.config.id, setup.run);
                            Ok((plugin, sink))
                        });
                        let (mut plugin, mut sink) = match opened {
                            Ok(parts) => parts,
                            Err(e) => return fail(e),
                        };
                        while let Some(id) = next() {
                            let lease_name = partition_lease(&setup.config.id, &id);
                            let held = match self.take_lease(setup.config, &lease_name) {
                                Ok(Some(held)) => held,
                                Ok(None) => {
                                    tracing::debug!(connector = %setup.config.id, partition = %id, "another run reads this partition");
                                    if setup.control.window.is_some() {
                                        incomplete.store(true, Ordering::SeqCst);
                                    }
                                    continue;
                                }
                                Err(e) => return fail(e),
                            };
                            let stage = setup.stage(held.fence(), Some(&id));
                            match self.read_source(setup, &stage, Some(&id), plugin.as_mut(), sink.as_mut(), tally) {
                                Ok(RunOutcome::Succeeded) => {}
                                Ok(_) => incomplete.store(true, Ordering::SeqCst),
                                Err(e) => return fail(e),
                            }
                        }
                    });
                if let Err(e) = spawned {
                    fail(RunError::State(StateError::Io(format!(
                        "cannot start a partition thread: {e}; the machine is out of threads or memory (lower partitions-at-once)"
                    ))));
                }
            }
        });
        if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        let stopped = setup.control.stopping()
            || setup.page_limit_reached()
            || !page::locked(&queue).is_empty();
        Ok(if stopped || incomplete.load(Ordering::SeqCst) {
            RunOutcome::Interrupted
        } else {
            RunOutcome::Succeeded
        })
    }

    /// Reads one partition (or the whole source, `partition` `None`) to its
    /// end: each attempt opens a session at the last committed checkpoint;
    /// a retryable failure ends the attempt and, after a pause, starts
    /// another.
    fn read_source(
        &self,
        setup: &RunSetup<'_>,
        stage: &page::PageStage<'_>,
        partition: Option<&str>,
        plugin: &mut dyn connector_runtime::Source,
        sink: &mut dyn Sink,
        tally: &RunTally,
    ) -> Result<RunOutcome, RunError> {
        let config = setup.config;
        let checkpoint_key = match &stage.checkpoint_slot {
            CheckpointSlot::Key(key) => key.clone(),
            _ => config.id.clone(),
        };
        let retry = stage.retry;
        let mut failures = 0u32;
        let mut outages = 0u32;
        loop {
            // Bound first: the state's lock must not be held through the attempt.
            // One statement per look-up: the state's lock is held to the
            // end of the statement that takes it.
            let own = self.db().checkpoint(&checkpoint_key);
            let checkpoint = match own {
                // A partition's first run goes on from where the whole
                // source was read up to.
                Ok(None) if partition.is_some() => self.db().checkpoint(&setup.base_key),
                own => own,
            };
            let attempt = match checkpoint {
                Err(e) => Err(RunError::State(e)),
                Ok(checkpoint) => {
                    let (attempt, committed) = self.attempt(
                        AttemptParts {
                            setup,
                            partition,
                            checkpoint,
                            stage,
                            tally,
                        },
                        plugin,
                        sink,
                    );
                    if committed > 0 {
                        failures = 0;
                        outages = 0;
                    }
                    attempt
                }
            };
            match attempt {
                Err(RunError::Plugin(e)) if e.is_retryable() && failures < retry.attempts() => {
                    let pause = retry.pause(failures, &e);
                    failures += 1;
                    tracing::warn!(connector = %config.id, partition = ?partition, "{e}; retrying in {pause:?} from the last checkpoint");
                    setup.control.sleep(pause);
                }
                // The state's server is down or restarting: nothing of the
                // page was stored; go on from the last checkpoint once it is
                // back, for as long as the lease holds.
                Err(RunError::State(e @ StateError::Unavailable { .. }))
                    if stage.fence.ensure_live().is_ok() && !setup.control.stopping() =>
                {
                    let pause = retry.backoff(outages.min(4));
                    outages += 1;
                    tracing::warn!(connector = %config.id, partition = ?partition, "{e}; retrying in {pause:?} from the last checkpoint");
                    setup.control.sleep(pause);
                }
                other => return other,
            }
        }
    }

    /// Whether a live lease on a partition of `connector` belongs to another
    /// worker: its run is going on, not cut short.
    fn partitions_leased_elsewhere(
        &self,
        db: &dyn StateStore,
        connector: &str,
    ) -> Result<bool, StateError> {
        let prefix = partition_lease(connector, "");
        let now = db.clock_ms()?;
        Ok(db.leases()?.iter().any(|l| {
            l.connector.starts_with(&prefix) && l.owner != self.worker.id && l.expires_at_ms > now
        }))
    }
}

/// What every partition of a run shares: the connector, its plugin's
/// manifest and grants, the mapping and where checkpoints go.
struct RunSetup<'a> {
    config: &'a ConnectorConfig,
    options: &'a RunOptions,
    control: &'a RunControl,
    run: RunId,
    manifest: &'a PluginManifest,
    caps: Capabilities,
    secrets: SecretStore,
    users: &'a crate::map::UserMap,
    config_json: String,
    /// The checkpoint key of the whole source (the connector's, or a
    /// backfill's); a partition's key is [`partition_lease`] of it.
    base_key: String,
    /// Where big emails are spooled.
    spool: &'a Path,
    /// Pages fetched by every session of the run, for
    /// [`RunOptions::max_pages`].
    pages_fetched: std::sync::atomic::AtomicU64,
}

impl RunSetup<'_> {
    /// Whether the run fetched the pages it may (`--max-pages`).
    fn page_limit_reached(&self) -> bool {
        self.options
            .max_pages
            .is_some_and(|max| self.pages_fetched.load(Ordering::SeqCst) >= max)
    }

    /// The page stage of the whole source (`partition` `None`) or of one
    /// partition, under `fence`.
    fn stage(&self, fence: Fence, partition: Option<&str>) -> page::PageStage<'_> {
        let checkpoint_slot = match (partition, &self.control.window) {
            (Some(id), _) => CheckpointSlot::Key(partition_lease(&self.base_key, id)),
            (None, Some(_)) => CheckpointSlot::Key(self.base_key.clone()),
            (None, None) => CheckpointSlot::Connector,
        };
        page::PageStage {
            connector: &self.config.id,
            folder: self.config.folder_path(self.manifest),
            converter: EmailConverter::new(&self.manifest.id, &self.manifest.name)
                .with_spool(self.spool, DEFAULT_SPILL_ABOVE),
            users: self.users,
            retry: RetryPolicy::new(self.config.retries),
            checkpoint_slot,
            fence,
            delivery: self.config.delivery,
            zone: self.config.transcripts.time_zone,
            earlier: Default::default(),
        }
    }

    /// The stage that delivers the connector's transcripts (into their
    /// own folder, never moving a checkpoint), under `fence`.
    fn transcript_stage(&self, fence: Fence) -> page::PageStage<'_> {
        page::PageStage {
            folder: self.config.transcript_folder_path(self.manifest),
            checkpoint_slot: CheckpointSlot::Keep,
            ..self.stage(fence, None)
        }
    }
}

/// A run's counts, added to by every partition's pages.
#[derive(Default)]
struct RunTally(std::sync::Mutex<RunCounts>);

impl RunTally {
    /// Adds a committed page's counts; the run's total so far.
    fn add(&self, page: &RunCounts) -> RunCounts {
        let mut total = page::locked(&self.0);
        total.add(page);
        total.clone()
    }

    fn total(&self) -> RunCounts {
        page::locked(&self.0).clone()
    }
}

impl Host {
    /// Gives `sink` the mailboxes' limits kept in the state, shared with
    /// every worker of the fleet, for this run of `connector`.
    fn share_budget(&self, sink: &mut dyn Sink, connector: &str, run: RunId) {
        sink.share_budget(Arc::new(mailbox_budget::StateBudget {
            db: self.db.clone(),
            holder: format!("{}/{connector}/run {}", self.worker.id, run.0),
            pauses: self.pauses.clone(),
        }));
    }
}

/// What a run needs before it touches the source, each part checked: the
/// plugin's manifest, the grants against it (nothing undeclared, a folder
/// for a plugin that reads files), the granted secrets (a secrets file must
/// be readable by its owner only) and the mapping (its overrides CSV).
/// `connector validate` and every run both start here, so validate refuses
/// whatever a run would refuse before reading anything.
struct Checked {
    manifest: PluginManifest,
    caps: Capabilities,
    secrets: SecretStore,
    users: crate::map::UserMap,
}

impl Checked {
    fn load(config: &ConnectorConfig) -> Result<Checked, RunError> {
        let manifest = PluginManifest::load(&config.plugin)?;
        config.check_grants(&manifest)?;
        let caps = Capabilities::from_grants(&manifest, &config.grants);
        let names: BTreeSet<String> = caps.secrets.union(&caps.signing_keys).cloned().collect();
        let secrets = SecretStore::load(&config.secrets, &names)?;
        let users = config.user_map()?;
        Ok(Checked {
            manifest,
            caps,
            secrets,
            users,
        })
    }
}

/// A plugin's complaint about its configuration, pointed at the line of
/// the connector file it is about.
fn located(config: &ConnectorConfig, e: PluginError) -> PluginError {
    match e {
        PluginError::InvalidConfig(message) => {
            PluginError::InvalidConfig(config.locate_plugin_config_error(&message))
        }
        other => other,
    }
}

/// Most pages delivered and committed together (when the plugin is ahead
/// of delivery), and so most pages waiting between the two.
const MAX_PAGES_PER_COMMIT: usize = 4;
/// Pages are not added to a commit once it holds this many messages.
const MAX_MESSAGES_PER_COMMIT: usize = 5_000;

/// What one attempt of a run works with.
struct AttemptParts<'a> {
    setup: &'a RunSetup<'a>,
    /// The partition read (`None`: the whole source).
    partition: Option<&'a str>,
    checkpoint: Option<Vec<u8>>,
    stage: &'a page::PageStage<'a>,
    tally: &'a RunTally,
}

impl Host {
    /// One session of the plugin, as a pipeline of four threads, so that
    /// the plugin, the host and the mail store work at once: this thread
    /// fetches pages; a planner converts and maps them (merging the pages
    /// the plugin got ahead with, at most [`MAX_PAGES_PER_COMMIT`]); an
    /// importer delivers one planned page after another; a committer
    /// commits each imported page, strictly in order. A page's commit
    /// follows the confirmation of all its emails, so what the mail store
    /// holds and the ledger lacks is at most the pages between the two (a
    /// crash leaves them to the mailboxes' Message-ID check, as it always
    /// could one page). A plugin whose manifest sets `fetch-after-commit`
    /// is asked for a page only once the one before is committed. Returns
    /// how the attempt ended and how many pages it committed; a failure of
    /// any thread ends them all.
    fn attempt(
        &self,
        parts: AttemptParts<'_>,
        plugin: &mut dyn connector_runtime::Source,
        sink: &mut dyn Sink,
    ) -> (Result<RunOutcome, RunError>, u64) {
        let AttemptParts {
            setup,
            partition,
            checkpoint,
            stage,
            tally,
        } = parts;
        let RunSetup {
            config,
            control,
            run,
            ..
        } = *setup;
        let config_json = setup.config_json.as_str();
        let db = &self.db;
        let in_flight = page::InFlight::default();
        let in_flight = &in_flight;
        let after_commit = setup.manifest.fetch_after_commit;
        std::thread::scope(|scope| {
            let (pages_tx, pages_rx) =
                std::sync::mpsc::sync_channel::<connector_runtime::Page>(MAX_PAGES_PER_COMMIT);
            // One message per page committed, for `fetch-after-commit`.
            let (committed_tx, committed_rx) = std::sync::mpsc::channel::<()>();
            // One page waits between two stages: enough to keep each busy.
            // Two wait for the importer, which takes the second as it
            // starts on the first (the sink may start on it meanwhile).
            let (planned_tx, planned_rx) = std::sync::mpsc::sync_channel::<PlannedPage>(2);
            let (imported_tx, imported_rx) = std::sync::mpsc::sync_channel::<PlannedPage>(1);
            let thread =
                |name: &str| std::thread::Builder::new().name(format!("{name}-{}", config.id));
            let planner = thread("plan").spawn_scoped(scope, move || -> StageEnd {
                let mut conversations: HashMap<String, Conversation> = HashMap::new();
                while let Ok(mut page) = pages_rx.recv() {
                    // Pages the plugin got ahead with are delivered and
                    // committed together: fewer commits, and fewer
                    // waits for the slowest mailbox.
                    let mut merged = 1;
                    while !page.complete
                        && merged < MAX_PAGES_PER_COMMIT
                        && page.messages.len() < MAX_MESSAGES_PER_COMMIT
                    {
                        match pages_rx.try_recv() {
                            Ok(next) => {
                                page.absorb(next);
                                merged += 1;
                            }
                            Err(_) => break,
                        }
                    }
                    let complete = page.complete;
                    let planned = stage
                        .prepare(page, &mut conversations, db, in_flight)
                        .map_err(|e| (e, 0))?;
                    let next = PlannedPage {
                        planned,
                        merged,
                        complete,
                    };
                    if planned_tx.send(next).is_err() {
                        break;
                    }
                }
                Ok(StageOutcome::Done)
            });
            let importer = thread("import").spawn_scoped(scope, move || -> StageEnd {
                let mut held = None;
                while let Some(mut page) = held.take().or_else(|| planned_rx.recv().ok()) {
                    held = planned_rx.try_recv().ok();
                    let next = held.as_ref().map(|n: &PlannedPage| &n.planned);
                    stage
                        .import_planned(&mut page.planned, next, sink)
                        .map_err(|e| (e, 0))?;
                    if imported_tx.send(page).is_err() {
                        break;
                    }
                }
                Ok(StageOutcome::Done)
            });
            let committer = thread("commit").spawn_scoped(scope, move || -> StageEnd {
                let mut committed = 0u64;
                while let Ok(page) = imported_rx.recv() {
                    let result = stage.commit_planned(page.planned, db, run, in_flight);
                    let mut page_counts = match result {
                        Ok(c) => c,
                        Err(e) => return Err((e, committed)),
                    };
                    page_counts.pages = page.merged as u64;
                    faults::reached(faults::Point::Committed);
                    committed += page.merged as u64;
                    for _ in 0..page.merged {
                        let _ = committed_tx.send(());
                    }
                    tracing::info!(
                        connector = %config.id,
                        messages = page_counts.items_from_source,
                        imported = page_counts.imported,
                        duplicates = page_counts.skipped_duplicates,
                        quarantined = page_counts.quarantined,
                        "page committed"
                    );
                    let total = tally.add(&page_counts);
                    if let Some(observer) = &control.observer {
                        observer.page_committed(&config.id, &total);
                    }
                    if page.complete {
                        if let (Some(_), CheckpointSlot::Key(key)) =
                            (&control.window, &stage.checkpoint_slot)
                        {
                            // A finished backfill starts over next
                            // time; the ledger keeps that free of
                            // duplicates.
                            let cleared = page::lock(db).clear_checkpoint(key);
                            if let Err(e) = cleared {
                                return Err((e.into(), committed));
                            }
                        }
                        return Ok(StageOutcome::Committed(RunOutcome::Succeeded, committed));
                    }
                }
                // The stages before stopped before a complete page.
                Ok(StageOutcome::Committed(RunOutcome::Interrupted, committed))
            });
            let stages = match (planner, importer, committer) {
                (Ok(p), Ok(i), Ok(c)) => [p, i, c],
                (p, i, c) => {
                    let e = [p.err(), i.err(), c.err()].into_iter().flatten().next();
                    drop(pages_tx);
                    return (
                        Err(RunError::State(StateError::Io(format!(
                            "cannot start the delivery threads: {}; the machine is out of threads or memory",
                            e.map(|e| e.to_string()).unwrap_or_default()
                        )))),
                        0,
                    );
                }
            };
            // The session outlives the stages: attachments it spooled
            // are read until the last page is delivered.
            let mut session = None;
            let fetched = (|| -> Result<(), RunError> {
                let session = session.insert(
                    plugin
                        .open(config_json, partition, checkpoint)
                        .map_err(|e| located(config, e))?,
                );
                loop {
                    if setup.page_limit_reached() || control.stopping() {
                        return Ok(());
                    }
                    let mut page = session.next_page()?;
                    setup.pages_fetched.fetch_add(1, Ordering::SeqCst);
                    faults::reached(faults::Point::Fetch);
                    if let Some(window) = &control.window {
                        page.messages.retain(|m| window.contains(m.sent_at));
                    }
                    let complete = page.complete;
                    if pages_tx.send(page).is_err() {
                        // A stage stopped; its result says why.
                        return Ok(());
                    }
                    if complete {
                        return Ok(());
                    }
                    if after_commit && committed_rx.recv().is_err() {
                        // The committer stopped before committing the page.
                        return Ok(());
                    }
                }
            })();
            drop(pages_tx);
            // Joined in order, so that every stage has ended before the
            // session is dropped; the first stage to fail says why.
            let ends: Vec<StageEnd> = stages
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect();
            drop(session);
            let mut committed = 0;
            let mut outcome = None;
            let mut failure = None;
            for end in ends {
                match end {
                    Ok(StageOutcome::Done) => {}
                    Ok(StageOutcome::Committed(o, n)) => {
                        outcome = Some(o);
                        committed = n;
                    }
                    Err((e, n)) => {
                        committed = committed.max(n);
                        failure.get_or_insert(e);
                    }
                }
            }
            let result = match (failure, fetched) {
                (Some(e), _) | (None, Err(e)) => Err(e),
                (None, Ok(())) => Ok(outcome.unwrap_or(RunOutcome::Interrupted)),
            };
            (result, committed)
        })
    }
}

/// A planned page on its way from the planner to the committer.
struct PlannedPage {
    planned: page::Planned,
    /// How many of the plugin's pages it merges.
    merged: usize,
    /// It is the source's last.
    complete: bool,
}

/// How a stage of [`Host::attempt`] ended.
enum StageOutcome {
    /// Its input ended (or the next stage stopped).
    Done,
    /// The committer: how the attempt ended, and how many pages it
    /// committed.
    Committed(RunOutcome, u64),
}

/// A stage's end: its outcome, or the failure that stopped it (with the
/// pages committed before, for the committer).
type StageEnd = Result<StageOutcome, (RunError, u64)>;
