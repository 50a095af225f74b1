//! The host's own state, in one SQLite file: per connector, the source
//! checkpoint, the run history, the delivery ledger (which item went to
//! which mailbox), the quarantine (items with participants that have no
//! mailbox) and the plugin's small key/value store.
//!
//! [`StateDb::commit_page`] is the crash-safety core: the ledger entries,
//! quarantine records, run counts and checkpoint of a page are written in a
//! single transaction, so after a crash either the whole page is recorded
//! or none of it is (and the sinks' own duplicate check covers emails
//! delivered but not yet recorded).

mod reports;
#[cfg(test)]
mod tests;

pub use reports::{ConnectorTotals, DeliveredPair, FailureKind, RunFailure, RunKind, SeenItem};

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::blob::ZeroBlob;
use rusqlite::{Connection, MAIN_DB, OptionalExtension, TransactionBehavior, params};

use connector_email::{DEFAULT_SPILL_ABOVE, Email};
use connector_model::limits::{KvLimit, check_kv_write};
use connector_model::{Person, TimestampMs};

/// Schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = 3;
/// How long a write waits for another process holding the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Most item ids per query of [`StateDb::delivered_set`].
const IDS_PER_QUERY: usize = 500;

/// Schema migrations, applied in order; a database records each one it has.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "checkpoints, runs, ledger, quarantine, kv",
        "
    CREATE TABLE checkpoints (
        connector TEXT PRIMARY KEY NOT NULL,
        data BLOB NOT NULL,
        run_id INTEGER
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        connector TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        finished_at_ms INTEGER,
        outcome TEXT CHECK (outcome IN ('succeeded', 'failed', 'interrupted')),
        pages INTEGER NOT NULL DEFAULT 0,
        items_from_source INTEGER NOT NULL DEFAULT 0,
        items_for_import INTEGER NOT NULL DEFAULT 0,
        imported INTEGER NOT NULL DEFAULT 0,
        skipped_duplicates INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        quarantined INTEGER NOT NULL DEFAULT 0,
        error TEXT
    );
    CREATE INDEX runs_by_connector ON runs (connector, id);
    CREATE TABLE ledger (
        connector TEXT NOT NULL,
        item_id TEXT NOT NULL,
        mailbox TEXT NOT NULL,
        message_id TEXT NOT NULL,
        email_sha256 TEXT NOT NULL,
        source_sha256 TEXT NOT NULL,
        receipt TEXT NOT NULL,
        delivered_at_ms INTEGER NOT NULL,
        run_id INTEGER NOT NULL,
        PRIMARY KEY (connector, item_id, mailbox)
    ) WITHOUT ROWID;
    CREATE TABLE quarantine (
        connector TEXT NOT NULL,
        item_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        email BLOB NOT NULL,
        sent_at_ms INTEGER NOT NULL,
        unmapped TEXT NOT NULL,
        reason TEXT NOT NULL,
        run_id INTEGER NOT NULL,
        PRIMARY KEY (connector, item_id)
    );
    CREATE TABLE kv (
        connector TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (connector, key)
    ) WITHOUT ROWID;
    ",
    ),
    (
        2,
        "run kinds, items seen and failures per run, quarantined items' source SHA-256",
        "
    ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'run'
        CHECK (kind IN ('run', 'backfill', 'redeliver'));
    ALTER TABLE runs ADD COLUMN range_from_ms INTEGER;
    ALTER TABLE runs ADD COLUMN range_to_ms INTEGER;
    ALTER TABLE runs ADD COLUMN pid INTEGER;
    CREATE INDEX runs_by_finish ON runs (finished_at_ms);
    ALTER TABLE quarantine ADD COLUMN source_sha256 TEXT NOT NULL DEFAULT '';
    CREATE TABLE run_items (
        run_id INTEGER NOT NULL,
        connector TEXT NOT NULL,
        item_id TEXT NOT NULL,
        source_sha256 TEXT NOT NULL,
        sent_at_ms INTEGER NOT NULL,
        mailboxes TEXT NOT NULL,
        unmapped TEXT NOT NULL,
        PRIMARY KEY (run_id, item_id)
    ) WITHOUT ROWID;
    CREATE TABLE run_failures (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL,
        connector TEXT NOT NULL,
        item_id TEXT NOT NULL,
        source_user_id TEXT NOT NULL,
        mailbox TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('unmapped', 'refused')),
        reason TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    );
    CREATE INDEX run_failures_by_run ON run_failures (run_id, id);
    CREATE INDEX run_failures_by_item ON run_failures (connector, item_id);
    ",
    ),
    (
        3,
        "quarantined emails in the last column, so big ones stream in and out",
        // SQLite keeps a zero-filled blob unexpanded (and lets it be written
        // in place) only when it is the record's last column.
        "
    CREATE TABLE quarantine_v3 (
        connector TEXT NOT NULL,
        item_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        sent_at_ms INTEGER NOT NULL,
        unmapped TEXT NOT NULL,
        reason TEXT NOT NULL,
        run_id INTEGER NOT NULL,
        source_sha256 TEXT NOT NULL DEFAULT '',
        email BLOB NOT NULL,
        PRIMARY KEY (connector, item_id)
    );
    INSERT INTO quarantine_v3 (connector, item_id, message_id, sent_at_ms, unmapped,
        reason, run_id, source_sha256, email)
        SELECT connector, item_id, message_id, sent_at_ms, unmapped, reason, run_id,
            source_sha256, email FROM quarantine;
    DROP TABLE quarantine;
    ALTER TABLE quarantine_v3 RENAME TO quarantine;
    ",
    ),
];

/// What went wrong with the state database.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database could not be opened or prepared.
    #[error("cannot open the state database {}: {source}; check the path, its folder's permissions and free space, and that the file is a database written by this connector", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer release.
    #[error("the state database {} has schema version {found}, but this release understands up to {supported}; run the newer connector release that wrote it, or restore a backup", path.display())]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A file or folder of the state could not be used.
    #[error("{0}; check the state folder's path, permissions and free space")]
    Io(String),
    /// A query failed.
    #[error(
        "state database error: {0}; check free disk space, and run `sqlite3 <state file> 'PRAGMA integrity_check'` if it persists"
    )]
    Sqlite(#[from] rusqlite::Error),
    /// The run is not in the database (for this connector).
    #[error(
        "run {run} is not in the state database (or belongs to another connector); this is a host bug, please report it"
    )]
    UnknownRun {
        /// The run.
        run: RunId,
    },
    /// Stored data could not be read back.
    #[error(
        "the state database holds an unreadable {what}: {message}; restore a backup or report this"
    )]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// Why it is unreadable.
        message: String,
    },
    /// The plugin's key/value state would exceed its quota.
    #[error(
        "the plugin state of connector `{connector}` would grow to {needed} bytes, over its quota of {limit}; the plugin must keep less state (report this to its authors)"
    )]
    QuotaExceeded {
        /// The connector.
        connector: String,
        /// Bytes the connector would use.
        needed: u64,
        /// The quota.
        limit: u64,
    },
    /// A key or value is over its size limit.
    #[error(
        "a plugin state {what} of {size} bytes is over the limit of {limit}; the plugin must store smaller items (report this to its authors)"
    )]
    TooLarge {
        /// `key` or `value`.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

/// Identifies a run in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct RunId(pub i64);

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunOutcome {
    /// Every page was processed.
    Succeeded,
    /// The run stopped on an error.
    Failed,
    /// The run was stopped (signal, shutdown) or the process died.
    Interrupted,
}

impl RunOutcome {
    /// The stored name: `succeeded`, `failed` or `interrupted`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> Result<RunOutcome, StateError> {
        match s {
            "succeeded" => Ok(RunOutcome::Succeeded),
            "failed" => Ok(RunOutcome::Failed),
            "interrupted" => Ok(RunOutcome::Interrupted),
            other => Err(StateError::Corrupt {
                what: "run outcome",
                message: format!("`{other}`"),
            }),
        }
    }
}

/// What a run (or a page of it) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunCounts {
    /// Pages fetched from the source.
    pub pages: u64,
    /// Messages the source returned.
    pub items_from_source: u64,
    /// (message, mailbox) pairs to import, after fan-out.
    pub items_for_import: u64,
    /// Pairs imported.
    pub imported: u64,
    /// Pairs already delivered before.
    pub skipped_duplicates: u64,
    /// Pairs that failed.
    pub failed: u64,
    /// Messages quarantined for unmapped participants.
    pub quarantined: u64,
}

impl RunCounts {
    /// Adds `other` to these counts, field by field.
    pub fn add(&mut self, other: &RunCounts) {
        self.pages = self.pages.saturating_add(other.pages);
        self.items_from_source = self
            .items_from_source
            .saturating_add(other.items_from_source);
        self.items_for_import = self.items_for_import.saturating_add(other.items_for_import);
        self.imported = self.imported.saturating_add(other.imported);
        self.skipped_duplicates = self
            .skipped_duplicates
            .saturating_add(other.skipped_duplicates);
        self.failed = self.failed.saturating_add(other.failed);
        self.quarantined = self.quarantined.saturating_add(other.quarantined);
    }

    fn as_params(&self) -> [i64; 7] {
        [
            self.pages,
            self.items_from_source,
            self.items_for_import,
            self.imported,
            self.skipped_duplicates,
            self.failed,
            self.quarantined,
        ]
        .map(to_i64)
    }
}

/// One run of a connector.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunRecord {
    /// The run.
    pub id: RunId,
    /// The connector.
    pub connector: String,
    /// When it started.
    pub started_at_ms: TimestampMs,
    /// When it finished; `None` while running, or when the process died.
    pub finished_at_ms: Option<TimestampMs>,
    /// How it ended; `None` while running, or when the process died.
    pub outcome: Option<RunOutcome>,
    /// What it did.
    pub counts: RunCounts,
    /// The error that ended it, if any.
    pub error: Option<String>,
    /// What sort of run it is.
    pub kind: RunKind,
    /// For a backfill, the `[from, to)` range of sent times it covers, in ms.
    pub range_ms: Option<(TimestampMs, TimestampMs)>,
    /// The id of the process that ran it.
    pub pid: Option<u32>,
}

/// A delivered (item, mailbox) pair.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LedgerEntry {
    /// The message's source id.
    pub item_id: String,
    /// The mailbox address.
    pub mailbox: String,
    /// The email's Message-ID.
    pub message_id: String,
    /// Hex SHA-256 of the email delivered.
    pub email_sha256: String,
    /// Hex SHA-256 of the source item.
    pub source_sha256: String,
    /// Where the sink put it.
    pub receipt: String,
    /// When it was delivered.
    pub delivered_at_ms: TimestampMs,
}

/// A message kept back because some participants have no mailbox.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineEntry {
    /// The message's source id.
    pub item_id: String,
    /// The email's Message-ID.
    pub message_id: String,
    /// The built email, kept for redelivery once the mapping is fixed.
    pub email: Email,
    /// When the message was sent.
    pub sent_at_ms: TimestampMs,
    /// The participants without a mailbox.
    pub unmapped: Vec<Person>,
    /// Why it is quarantined.
    pub reason: String,
    /// Hex SHA-256 of the source item (empty for items quarantined before
    /// schema version 2).
    pub source_sha256: String,
}

/// Everything one page of a run records, written atomically by
/// [`StateDb::commit_page`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageCommit {
    /// Deliveries made; entries already in the ledger are left as they are.
    pub ledger: Vec<LedgerEntry>,
    /// Messages to quarantine; an item already quarantined is replaced.
    pub quarantine: Vec<QuarantineEntry>,
    /// Quarantined items now delivered, removed from the quarantine.
    pub released: Vec<String>,
    /// The page's counts, added to the run's.
    pub counts: RunCounts,
    /// The checkpoint to resume from after this page, stored as given.
    pub checkpoint: Vec<u8>,
    /// Where the checkpoint goes.
    pub checkpoint_slot: CheckpointSlot,
    /// The items the source gave in this page, with their expected fan-out.
    pub seen: Vec<SeenItem>,
    /// What could not be delivered, one record per (item, participant or
    /// mailbox).
    pub failures: Vec<RunFailure>,
}

/// Which checkpoint a page commit moves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CheckpointSlot {
    /// The connector's own checkpoint (scheduled runs).
    #[default]
    Connector,
    /// A separate key, e.g. a backfill's resume position, so that the
    /// connector's own checkpoint is untouched.
    Key(String),
    /// No checkpoint is written (quarantine redelivery).
    Keep,
}

/// The state database.
#[derive(Debug)]
pub struct StateDb {
    conn: Connection,
    path: Option<PathBuf>,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl StateDb {
    /// Opens (creating when absent) the database at `path`, in WAL mode
    /// with full synchronous writes, and brings its schema up to date. A
    /// database from a newer release is refused.
    pub fn open(path: &Path) -> Result<StateDb, StateError> {
        let open_error = |source| StateError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(open_error)?;
        // A page cache of 16 MiB (default 2 MiB) keeps the ledger's inner
        // B-tree pages at hand; its random inserts otherwise read pages
        // back from the file at every commit.
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA cache_size = -16384;")
            .map_err(open_error)?;
        let mut db = StateDb {
            conn,
            path: Some(path.to_path_buf()),
        };
        db.migrate()?;
        Ok(db)
    }

    /// A fresh database in memory, for tests.
    pub fn open_in_memory() -> Result<StateDb, StateError> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StateError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let mut db = StateDb { conn, path: None };
        db.migrate()?;
        Ok(db)
    }

    /// The database file, `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn display_path(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| PathBuf::from(":memory:"))
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StateError> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?)
    }

    fn migrate(&mut self) -> Result<(), StateError> {
        let path = self.display_path();
        let open_error = |source| StateError::Open {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(open_error)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY NOT NULL,
                description TEXT NOT NULL,
                applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
            );",
        )
        .map_err(open_error)?;
        let current: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .map_err(open_error)?;
        if current > SCHEMA_VERSION {
            return Err(StateError::NewerSchema {
                path,
                found: current,
                supported: SCHEMA_VERSION,
            });
        }
        for (version, description, sql) in MIGRATIONS {
            if *version <= current {
                continue;
            }
            tx.execute_batch(sql).map_err(open_error)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, description) VALUES (?1, ?2)",
                params![version, description],
            )
            .map_err(open_error)?;
        }
        tx.commit().map_err(open_error)?;
        Ok(())
    }

    // ----- checkpoints -------------------------------------------------

    /// The checkpoint to resume the connector from, if any.
    pub fn checkpoint(&self, connector: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self
            .conn
            .query_row(
                "SELECT data FROM checkpoints WHERE connector = ?1",
                [connector],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Forgets the connector's checkpoint, so its next run starts from the
    /// beginning (the ledger still prevents duplicate deliveries).
    pub fn clear_checkpoint(&mut self, connector: &str) -> Result<(), StateError> {
        self.conn
            .execute("DELETE FROM checkpoints WHERE connector = ?1", [connector])?;
        Ok(())
    }

    // ----- runs ----------------------------------------------------------

    /// Records the start of a scheduled (or `--once`) run.
    pub fn begin_run(&mut self, connector: &str, started_at_ms: i64) -> Result<RunId, StateError> {
        self.begin_run_of(connector, started_at_ms, RunKind::Run, None)
    }

    /// Records the start of a run of `kind`, with the backfill range when
    /// there is one, and this process's id (so `status` can tell a running
    /// run from one whose process died).
    pub fn begin_run_of(
        &mut self,
        connector: &str,
        started_at_ms: i64,
        kind: RunKind,
        range_ms: Option<(TimestampMs, TimestampMs)>,
    ) -> Result<RunId, StateError> {
        self.conn.execute(
            "INSERT INTO runs (connector, started_at_ms, kind, range_from_ms, range_to_ms, pid)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                connector,
                started_at_ms,
                kind.as_str(),
                range_ms.map(|r| r.0),
                range_ms.map(|r| r.1),
                i64::from(std::process::id())
            ],
        )?;
        Ok(RunId(self.conn.last_insert_rowid()))
    }

    /// Records the end of a run. `counts` are the run's totals as the
    /// caller knows them: each stored count becomes the larger of what the
    /// committed pages added up to and the given value, so passing the
    /// totals, or zeros, both leave the right numbers.
    pub fn finish_run(
        &mut self,
        run: RunId,
        finished_at_ms: i64,
        outcome: RunOutcome,
        counts: &RunCounts,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        let [p, s, f, i, d, x, q] = counts.as_params();
        let changed = self.conn.execute(
            "UPDATE runs SET finished_at_ms = ?1, outcome = ?2, error = ?3,
                pages = MAX(pages, ?4), items_from_source = MAX(items_from_source, ?5),
                items_for_import = MAX(items_for_import, ?6), imported = MAX(imported, ?7),
                skipped_duplicates = MAX(skipped_duplicates, ?8), failed = MAX(failed, ?9),
                quarantined = MAX(quarantined, ?10)
             WHERE id = ?11",
            params![
                finished_at_ms,
                outcome.as_str(),
                error,
                p,
                s,
                f,
                i,
                d,
                x,
                q,
                run.0
            ],
        )?;
        if changed == 0 {
            return Err(StateError::UnknownRun { run });
        }
        Ok(())
    }

    /// Marks the connector's runs that never finished (the process died or
    /// was killed) as interrupted at `now_ms`; returns how many there were.
    pub fn interrupt_unfinished(
        &mut self,
        connector: &str,
        now_ms: i64,
    ) -> Result<usize, StateError> {
        Ok(self.conn.execute(
            "UPDATE runs SET outcome = 'interrupted', finished_at_ms = ?2,
                error = COALESCE(error, 'the run did not finish (the process stopped)')
             WHERE connector = ?1 AND outcome IS NULL",
            params![connector, now_ms],
        )?)
    }

    /// The connector's most recent runs, newest first.
    pub fn runs(&self, connector: &str, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        self.query_runs(
            "WHERE connector = ?1 ORDER BY id DESC LIMIT ?2",
            params![connector, to_i64(limit as u64)],
        )
    }

    /// One run, by id.
    pub fn run(&self, run: RunId) -> Result<Option<RunRecord>, StateError> {
        Ok(self
            .query_runs("WHERE id = ?1", params![run.0])?
            .into_iter()
            .next())
    }

    /// Runs selected by an SQL tail (`WHERE … ORDER BY …`) over `runs`.
    fn query_runs(
        &self,
        tail: &str,
        values: impl rusqlite::Params,
    ) -> Result<Vec<RunRecord>, StateError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT id, connector, started_at_ms, finished_at_ms, outcome, pages,
                    items_from_source, items_for_import, imported, skipped_duplicates,
                    failed, quarantined, error, kind, range_from_ms, range_to_ms, pid
             FROM runs {tail}"
        ))?;
        let rows = stmt.query_map(values, |r| {
            let range: (Option<i64>, Option<i64>) = (r.get(14)?, r.get(15)?);
            Ok((
                RunRecord {
                    id: RunId(r.get(0)?),
                    connector: r.get(1)?,
                    started_at_ms: r.get(2)?,
                    finished_at_ms: r.get(3)?,
                    outcome: None,
                    counts: RunCounts {
                        pages: to_u64(r.get(5)?),
                        items_from_source: to_u64(r.get(6)?),
                        items_for_import: to_u64(r.get(7)?),
                        imported: to_u64(r.get(8)?),
                        skipped_duplicates: to_u64(r.get(9)?),
                        failed: to_u64(r.get(10)?),
                        quarantined: to_u64(r.get(11)?),
                    },
                    error: r.get(12)?,
                    kind: RunKind::Run,
                    range_ms: match range {
                        (Some(from), Some(to)) => Some((from, to)),
                        _ => None,
                    },
                    pid: r
                        .get::<_, Option<i64>>(16)?
                        .and_then(|p| u32::try_from(p).ok()),
                },
                r.get::<_, Option<String>>(4)?,
                r.get::<_, String>(13)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mut record, outcome, kind) = row?;
            record.outcome = outcome.as_deref().map(RunOutcome::parse).transpose()?;
            record.kind = RunKind::parse(&kind)?;
            out.push(record);
        }
        Ok(out)
    }

    /// The connector's most recent run.
    pub fn last_run(&self, connector: &str) -> Result<Option<RunRecord>, StateError> {
        Ok(self.runs(connector, 1)?.into_iter().next())
    }

    // ----- ledger --------------------------------------------------------

    /// Whether the item was delivered to the mailbox.
    pub fn is_delivered(
        &self,
        connector: &str,
        item_id: &str,
        mailbox: &str,
    ) -> Result<bool, StateError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM ledger WHERE connector = ?1 AND item_id = ?2 AND mailbox = ?3",
                params![connector, item_id, mailbox],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// The `(item id, mailbox)` pairs already delivered for these items.
    pub fn delivered_set<S: AsRef<str>>(
        &self,
        connector: &str,
        item_ids: &[S],
    ) -> Result<HashSet<(String, String)>, StateError> {
        let mut out = HashSet::new();
        for chunk in item_ids.chunks(IDS_PER_QUERY) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT item_id, mailbox FROM ledger WHERE connector = ? AND item_id IN ({marks})"
            );
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let values = std::iter::once(connector).chain(chunk.iter().map(AsRef::as_ref));
            let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            for row in rows {
                out.insert(row?);
            }
        }
        Ok(out)
    }

    /// How many (item, mailbox) pairs the connector has delivered.
    pub fn delivered_count(&self, connector: &str) -> Result<u64, StateError> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM ledger WHERE connector = ?1",
            [connector],
            |r| r.get(0),
        )?;
        Ok(to_u64(n))
    }

    /// The connector's whole ledger, by delivery time, item and mailbox.
    pub fn ledger_entries(&self, connector: &str) -> Result<Vec<LedgerEntry>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT item_id, mailbox, message_id, email_sha256, source_sha256, receipt,
                    delivered_at_ms
             FROM ledger WHERE connector = ?1
             ORDER BY delivered_at_ms, item_id, mailbox",
        )?;
        let rows = stmt.query_map([connector], |r| {
            Ok(LedgerEntry {
                item_id: r.get(0)?,
                mailbox: r.get(1)?,
                message_id: r.get(2)?,
                email_sha256: r.get(3)?,
                source_sha256: r.get(4)?,
                receipt: r.get(5)?,
                delivered_at_ms: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records a page in one transaction: its ledger entries (pairs already
    /// recorded keep their first entry), quarantine records (replacing
    /// earlier ones of the same item), released quarantine items, counts
    /// (added to the run's), the items seen and the failures (for the admin
    /// log and reconciliation) and checkpoint (in its slot). Either all of
    /// it is stored or, on error, none of it.
    pub fn commit_page(
        &mut self,
        connector: &str,
        run: RunId,
        page: &PageCommit,
    ) -> Result<(), StateError> {
        let mut unmapped_json = Vec::with_capacity(page.quarantine.len());
        for q in &page.quarantine {
            unmapped_json.push(serde_json::to_string(&q.unmapped).map_err(|e| {
                StateError::Corrupt {
                    what: "unmapped participant list",
                    message: e.to_string(),
                }
            })?);
        }

        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO ledger (connector, item_id, mailbox, message_id,
                    email_sha256, source_sha256, receipt, delivered_at_ms, run_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for e in &page.ledger {
                insert.execute(params![
                    connector,
                    e.item_id,
                    e.mailbox,
                    e.message_id,
                    e.email_sha256,
                    e.source_sha256,
                    e.receipt,
                    e.delivered_at_ms,
                    run.0
                ])?;
            }
            let mut quarantine = tx.prepare_cached(
                "INSERT OR REPLACE INTO quarantine (connector, item_id, message_id, email,
                    sent_at_ms, unmapped, reason, run_id, source_sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for (q, unmapped) in page.quarantine.iter().zip(&unmapped_json) {
                // A spooled (big) email is streamed into a blob of its size.
                let email: Box<dyn rusqlite::ToSql> = match q.email.in_memory() {
                    Some(bytes) => Box::new(bytes),
                    None => Box::new(ZeroBlob(i32::try_from(q.email.len()).map_err(|_| {
                        StateError::Io(format!(
                            "email {} is {} bytes, too big for the quarantine (at most 2 GiB)",
                            q.message_id,
                            q.email.len()
                        ))
                    })?)),
                };
                quarantine.execute(params![
                    connector,
                    q.item_id,
                    q.message_id,
                    email,
                    q.sent_at_ms,
                    unmapped,
                    q.reason,
                    run.0,
                    q.source_sha256
                ])?;
                if q.email.in_memory().is_none() {
                    let row = tx.last_insert_rowid();
                    let mut blob = tx.blob_open(MAIN_DB, c"quarantine", c"email", row, false)?;
                    q.email.write_to(&mut blob).map_err(|e| {
                        StateError::Io(format!(
                            "cannot copy email {} into the quarantine: {e}",
                            q.message_id
                        ))
                    })?;
                }
            }
            let mut release =
                tx.prepare_cached("DELETE FROM quarantine WHERE connector = ?1 AND item_id = ?2")?;
            for item_id in &page.released {
                release.execute(params![connector, item_id])?;
            }
            let [p, s, f, i, d, x, q] = page.counts.as_params();
            let changed = tx.execute(
                "UPDATE runs SET pages = pages + ?1, items_from_source = items_from_source + ?2,
                    items_for_import = items_for_import + ?3, imported = imported + ?4,
                    skipped_duplicates = skipped_duplicates + ?5, failed = failed + ?6,
                    quarantined = quarantined + ?7
                 WHERE id = ?8 AND connector = ?9",
                params![p, s, f, i, d, x, q, run.0, connector],
            )?;
            if changed == 0 {
                return Err(StateError::UnknownRun { run });
            }
            reports::record_page(&tx, connector, run, page)?;
            let key = match &page.checkpoint_slot {
                CheckpointSlot::Connector => Some(connector),
                CheckpointSlot::Key(key) => Some(key.as_str()),
                CheckpointSlot::Keep => None,
            };
            if let Some(key) = key {
                tx.execute(
                    "INSERT INTO checkpoints (connector, data, run_id) VALUES (?1, ?2, ?3)
                     ON CONFLICT (connector) DO UPDATE SET data = excluded.data,
                        run_id = excluded.run_id",
                    params![key, page.checkpoint, run.0],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    // ----- quarantine ----------------------------------------------------

    /// The connector's quarantined messages, oldest first. Emails bigger
    /// than [`DEFAULT_SPILL_ABOVE`] are copied into spool files in the
    /// temporary folder rather than memory.
    pub fn quarantine(&self, connector: &str) -> Result<Vec<QuarantineEntry>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT item_id, message_id, rowid, length(email), sent_at_ms, unmapped, reason,
                source_sha256
             FROM quarantine WHERE connector = ?1 ORDER BY sent_at_ms, item_id",
        )?;
        let rows = stmt.query_map([connector], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (item_id, message_id, row, len, sent_at_ms, unmapped, reason, source_sha256) = row?;
            let unmapped = serde_json::from_str(&unmapped).map_err(|e| StateError::Corrupt {
                what: "unmapped participant list",
                message: e.to_string(),
            })?;
            let mut blob = self
                .conn
                .blob_open(MAIN_DB, c"quarantine", c"email", row, true)?;
            let email = if len as u64 > DEFAULT_SPILL_ABOVE as u64 {
                Email::spool_from(message_id.clone(), &mut blob, &std::env::temp_dir(), sent_at_ms)
                    .map_err(|e| {
                        StateError::Io(format!(
                            "cannot copy quarantined email {message_id} to a spool file in {}: {e}; check free space there",
                            std::env::temp_dir().display()
                        ))
                    })?
            } else {
                let mut bytes = Vec::with_capacity(len as usize);
                std::io::Read::read_to_end(&mut blob, &mut bytes).map_err(|e| {
                    StateError::Io(format!("cannot read quarantined email {message_id}: {e}"))
                })?;
                Email::from_bytes(message_id.clone(), bytes, sent_at_ms)
            };
            out.push(QuarantineEntry {
                email,
                item_id,
                message_id,
                sent_at_ms,
                unmapped,
                reason,
                source_sha256,
            });
        }
        Ok(out)
    }

    /// How many messages the connector has in quarantine.
    pub fn quarantine_count(&self, connector: &str) -> Result<u64, StateError> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM quarantine WHERE connector = ?1",
            [connector],
            |r| r.get(0),
        )?;
        Ok(to_u64(n))
    }

    // ----- plugin key/value state ---------------------------------------

    /// The value the connector's plugin stored under `key`.
    pub fn kv_get(&self, connector: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM kv WHERE connector = ?1 AND key = ?2",
                params![connector, key],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Stores `value` under `key`, within the limits of
    /// [`connector_model::limits`].
    pub fn kv_set(&mut self, connector: &str, key: &str, value: &[u8]) -> Result<(), StateError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let others: i64 = tx.query_row(
            "SELECT COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(value)), 0)
             FROM kv WHERE connector = ?1 AND key <> ?2",
            params![connector, key],
            |r| r.get(0),
        )?;
        check_kv_write(key, value, to_u64(others)).map_err(|limit| match limit {
            KvLimit::TooLarge { what, size, limit } => StateError::TooLarge { what, size, limit },
            KvLimit::Quota { needed, limit } => StateError::QuotaExceeded {
                connector: connector.to_string(),
                needed,
                limit,
            },
        })?;
        tx.execute(
            "INSERT INTO kv (connector, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (connector, key) DO UPDATE SET value = excluded.value",
            params![connector, key, value],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Removes `key` (nothing happens when it is absent).
    pub fn kv_delete(&mut self, connector: &str, key: &str) -> Result<(), StateError> {
        self.conn.execute(
            "DELETE FROM kv WHERE connector = ?1 AND key = ?2",
            params![connector, key],
        )?;
        Ok(())
    }

    /// Bytes (keys plus values) the connector's plugin state uses.
    pub fn kv_usage(&self, connector: &str) -> Result<u64, StateError> {
        let n: i64 = self.conn.query_row(
            "SELECT COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(value)), 0)
             FROM kv WHERE connector = ?1",
            [connector],
            |r| r.get(0),
        )?;
        Ok(to_u64(n))
    }
}
