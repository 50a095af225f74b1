//! One run of a connector: pull pages from the plugin, convert each message,
//! map its participants, import it, and commit the page's ledger entries and
//! checkpoint together.

mod page;
mod retry;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{ConfigError, ConnectorConfig, PluginManifest, SinkConfig};
use crate::convert::{ConvertError, EmailConverter};
use crate::map::{MapError, UserMap};
use crate::model::Conversation;
use crate::plugin::secrets::SecretError;
use crate::plugin::{Capabilities, PluginError, SecretStore, loader};
use crate::sink::{MaildirSink, Sink, SinkError};
use crate::state::{RunCounts, RunId, RunOutcome, StateDb, StateError};
use crate::wasm::{KvAccess, PluginEngine};

pub use retry::RetryPolicy;

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
    /// The mailbox store failed in a way retrying did not fix.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The state database failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop after this many pages (the rest waits for the next run).
    pub max_pages: Option<u64>,
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
    db: Arc<Mutex<StateDb>>,
    state_dir: PathBuf,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Host {
    /// Opens (or creates) the state folder: `state.db` and the compile cache.
    pub fn open(state_dir: &Path) -> Result<Host, RunError> {
        std::fs::create_dir_all(state_dir).map_err(|e| {
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
        let db = StateDb::open(&state_dir.join("state.db"))?;
        let engine = PluginEngine::new(Some(&state_dir.join("compile-cache")))?;
        Ok(Host {
            engine,
            db: Arc::new(Mutex::new(db)),
            state_dir: state_dir.to_path_buf(),
        })
    }

    /// The state database.
    pub fn db(&self) -> std::sync::MutexGuard<'_, StateDb> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state folder.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Loads and cross-checks a connector's configuration and its plugin's
    /// manifest, then loads the plugin and asks it to check its config.
    pub fn validate(&self, config: &ConnectorConfig) -> Result<PluginManifest, RunError> {
        let manifest = PluginManifest::load(&config.plugin)?;
        config.check_grants(&manifest)?;
        if let Some(csv) = &config.mapping.overrides {
            UserMap::load(Some(csv), config.mapping.domains.clone())?;
        }
        let mut plugin = loader::load(
            &self.engine,
            &manifest,
            Capabilities::none(&manifest),
            SecretStore::default(),
            None,
        )?;
        plugin.validate_config(&config.plugin_config_json())?;
        Ok(manifest)
    }

    /// Runs a connector once, recording the run (also when it fails).
    pub fn run_once(
        &self,
        config: &ConnectorConfig,
        options: &RunOptions,
    ) -> Result<RunSummary, RunError> {
        let run = {
            let mut db = self.db();
            // A run still marked as running was cut short by a crash.
            db.interrupt_unfinished(&config.id, now_ms())?;
            db.begin_run(&config.id, now_ms())?
        };
        let mut counts = RunCounts::default();
        let result = self.run_pages(config, options, run, &mut counts);
        let (outcome, error) = match &result {
            Ok(outcome) => (*outcome, None),
            Err(e) => (RunOutcome::Failed, Some(e.to_string())),
        };
        self.db()
            .finish_run(run, now_ms(), outcome, &counts, error.as_deref())?;
        match result {
            Ok(outcome) => Ok(RunSummary {
                run,
                outcome,
                counts,
            }),
            Err(e) => {
                tracing::error!(connector = %config.id, "run failed: {e}");
                Err(e)
            }
        }
    }

    fn run_pages(
        &self,
        config: &ConnectorConfig,
        options: &RunOptions,
        run: RunId,
        counts: &mut RunCounts,
    ) -> Result<RunOutcome, RunError> {
        let manifest = PluginManifest::load(&config.plugin)?;
        config.check_grants(&manifest)?;
        let caps = Capabilities::new(&manifest, config);
        let secret_names: BTreeSet<String> =
            caps.secrets.union(&caps.signing_keys).cloned().collect();
        let secrets = SecretStore::load(&config.secrets, &secret_names)?;
        let users = UserMap::load(
            config.mapping.overrides.as_deref(),
            config.mapping.domains.clone(),
        )?;
        let mut sink = open_sink(&config.sink);
        let kv = KvAccess {
            db: self.db.clone(),
            connector: config.id.clone(),
        };
        let mut plugin = loader::load(&self.engine, &manifest, caps, secrets, Some(kv))?;
        let stage = page::PageStage {
            connector: &config.id,
            folder: format!("INBOX/{}", config.folder_name(&manifest)),
            converter: EmailConverter::new(&manifest.id, &manifest.name),
            users: &users,
            retry: RetryPolicy::new(config.retries),
        };
        let config_json = config.plugin_config_json();
        let retry = RetryPolicy::new(config.retries);
        let mut failures = 0u32;
        let mut pages = 0u64;
        tracing::info!(connector = %config.id, plugin = %manifest.id, folder = %stage.folder, "run started");
        // Each attempt opens a session at the last committed checkpoint; a
        // retryable failure ends the attempt and, after a pause, starts another.
        loop {
            let checkpoint = self.db().checkpoint(&config.id)?;
            let mut conversations: HashMap<String, Conversation> = HashMap::new();
            let attempt = (|| -> Result<RunOutcome, RunError> {
                let mut session = plugin.open(&config_json, checkpoint)?;
                loop {
                    if options.max_pages.is_some_and(|max| pages >= max) {
                        return Ok(RunOutcome::Interrupted);
                    }
                    let page = session.next_page()?;
                    let complete = page.complete;
                    let page_counts =
                        stage.deliver(page, &mut conversations, sink.as_mut(), &self.db, run)?;
                    tracing::info!(
                        connector = %config.id,
                        messages = page_counts.items_from_source,
                        imported = page_counts.imported,
                        duplicates = page_counts.skipped_duplicates,
                        quarantined = page_counts.quarantined,
                        "page committed"
                    );
                    counts.add(&page_counts);
                    pages += 1;
                    failures = 0;
                    if complete {
                        return Ok(RunOutcome::Succeeded);
                    }
                }
            })();
            match attempt {
                Err(RunError::Plugin(e)) if e.is_retryable() && failures < retry.attempts() => {
                    let pause = retry.pause(failures, &e);
                    failures += 1;
                    tracing::warn!(connector = %config.id, "{e}; retrying in {pause:?} from the last checkpoint");
                    std::thread::sleep(pause);
                }
                other => return other,
            }
        }
    }
}

fn open_sink(config: &SinkConfig) -> Box<dyn Sink> {
    match config {
        SinkConfig::Maildir { path, fsync } => Box::new(MaildirSink::new(path.clone(), *fsync)),
    }
}
