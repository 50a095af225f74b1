//! The SQLite state store: one file per host, in WAL mode with full
//! synchronous writes. One module per table; [`StateStore::commit_page`]
//! writes a page across them in one transaction, so after a crash either
//! the whole page is recorded or none of it is (and the sinks' own
//! duplicate check covers emails delivered but not yet recorded).

mod audit;
mod checkpoints;
mod controls;
mod conversations;
mod fleet;
mod kv;
mod ledger;
mod mailbox;
mod quarantine;
mod runs;
mod schema;
mod transcripts;
mod transfer;

use std::collections::HashSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior, params};

use schema::MIGRATIONS;
pub use schema::SCHEMA_VERSION;

/// The schema migrations, in order: each one's version, description and
/// SQL. For tests that build a database of an older version by hand.
pub fn migrations() -> &'static [(i64, &'static str, &'static str)] {
    MIGRATIONS
}

use connector_state::{
    LeaseLiveness, LeaseRequest, LockOutcome, PageCommit, RunId, RunLock, StateError, StateStore,
};
use connector_state::{SQLITE_READ_ONLY_HINT, encoding, faults, sqlite_hint};
use fleet::Taking;

/// How long a write waits for another process holding the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The state in a SQLite file (or in memory, for tests).
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: Option<PathBuf>,
    /// Connectors whose runs are locked, for a store in memory.
    memory_locks: Arc<Mutex<HashSet<String>>>,
}

use connector_state::encoding::{to_i64, to_u64};

/// Most ids in one `IN (…)` list.
const IDS_PER_QUERY: usize = 500;

/// The rows of `select` (which ends in `connector = ? AND <column> IN`)
/// for `connector` and `ids`, queried in chunks, each read with `read`.
fn rows_for_ids<T>(
    conn: &Connection,
    select: &str,
    connector: &str,
    ids: &[&str],
    read: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StateError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let mut stmt = conn.prepare_cached(&format!("{select} ({marks})"))?;
        let values = std::iter::once(connector).chain(chunk.iter().copied());
        for row in stmt.query_map(rusqlite::params_from_iter(values), &read)? {
            out.push(row?);
        }
    }
    Ok(out)
}

/// The database at `path` could not be opened or brought up to date.
fn open_error(path: &Path, source: rusqlite::Error) -> StateError {
    let hint = match source.sqlite_error_code() {
        // SQLite cannot open a database in a folder it cannot write to,
        // as its write-ahead log lives beside the file.
        Some(rusqlite::ErrorCode::CannotOpen) if !folder_writable(path) => SQLITE_READ_ONLY_HINT,
        Some(rusqlite::ErrorCode::CannotOpen) => {
            "check the path, and its folder's permissions and free space"
        }
        _ => sqlite_hint(&source),
    };
    StateError::Open {
        location: path.display().to_string(),
        source: Box::new(source),
        hint,
    }
}

/// Whether this process may write in the folder of `path` (a read-only
/// file system says no, also to root).
fn folder_writable(path: &Path) -> bool {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(folder) = std::ffi::CString::new(folder.as_os_str().as_encoded_bytes()) else {
        return true;
    };
    // SAFETY: access reads the NUL-terminated path it is given.
    unsafe { libc::access(folder.as_ptr(), libc::W_OK) == 0 }
}

impl SqliteStore {
    /// Opens (creating when absent) the database at `path`, in WAL mode
    /// with full synchronous writes, and brings its schema up to date. A
    /// database from a newer release is refused.
    pub fn open(path: &Path) -> Result<SqliteStore, StateError> {
        let open_error = |source| open_error(path, source);
        let conn = Connection::open(path).map_err(open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(open_error)?;
        // A page cache of 16 MiB (default 2 MiB) keeps the ledger's inner
        // B-tree pages at hand; its random inserts otherwise read pages
        // back from the file at every commit.
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA cache_size = -16384;")
            .map_err(open_error)?;
        let mut db = SqliteStore {
            conn,
            path: Some(path.to_path_buf()),
            memory_locks: Arc::default(),
        };
        db.migrate()?;
        Ok(db)
    }

    /// A fresh database in memory, for tests.
    pub fn open_in_memory() -> Result<SqliteStore, StateError> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| open_error(path, source))?;
        let mut db = SqliteStore {
            conn,
            path: None,
            memory_locks: Arc::default(),
        };
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
        let open_error = |source| open_error(&path, source);
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
                location: path.display().to_string(),
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
}

impl StateStore for SqliteStore {
    fn commit_page(
        &mut self,
        connector: &str,
        run: RunId,
        fence: u64,
        page: &PageCommit,
    ) -> Result<(), StateError> {
        let unmapped = encoding::unmapped_lists(&page.quarantine)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let lease = page.lease.as_deref().unwrap_or(connector);
        if fleet::current_token(&tx, lease)? != Some(fence) {
            drop(tx);
            fleet::count_fenced(&self.conn)?;
            return Err(encoding::fenced(lease, fence));
        }
        ledger::insert(&tx, connector, run, &page.ledger)?;
        faults::reached(faults::Point::InCommit);
        quarantine::insert(&tx, connector, run, &page.quarantine, &unmapped)?;
        quarantine::release(&tx, connector, &page.released)?;
        runs::add_page(&tx, connector, run, page)?;
        checkpoints::store(&tx, connector, run, &page.checkpoint_slot, &page.checkpoint)?;
        conversations::store(&tx, connector, &page.conversations)?;
        transcripts::store(
            &tx,
            connector,
            &page.transcript_lines,
            &page.transcripts_delivered,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// An exclusive lock on `<folder of the database>/locks/<connector>.lock`,
    /// released by the operating system when the process ends, also on
    /// `kill -9` (in memory, a lock within the process); then the lease row
    /// with the next fencing token. The lease lasts as long as the lock.
    fn lock_runs(
        &self,
        connector: &str,
        request: &LeaseRequest,
    ) -> Result<LockOutcome, StateError> {
        let held = || LockOutcome::Held {
            owner: "another process on this machine".to_string(),
        };
        let keep: Box<dyn std::any::Any + Send> = match &self.path {
            None => match MemoryLock::take(&self.memory_locks, connector) {
                Some(lock) => Box::new(lock),
                None => return Ok(held()),
            },
            Some(path) => match lock_file(path, connector)? {
                Some(file) => Box::new(file),
                None => return Ok(held()),
            },
        };
        Ok(match self.take_lease(connector, request)? {
            Taking::Taken(lease) => {
                LockOutcome::Taken(RunLock::new(lease, LeaseLiveness::forever(), keep))
            }
            Taking::Mismatch { differs, worker } => LockOutcome::Mismatch { differs, worker },
        })
    }
}

/// `<lease>.lock` for a lease name that is a safe file name (a connector
/// id), else named by the name's SHA-256 (a partition's lease, whose id the
/// plugin chose).
fn lock_file_name(lease: &str) -> String {
    let safe = lease.len() <= 200
        && lease
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if safe {
        format!("{lease}.lock")
    } else {
        format!(
            "sha256-{}.lock",
            connector_model::digest::sha256_hex(lease.as_bytes())
        )
    }
}

/// The connector's lock file next to the database, locked; `None` when
/// another process holds it.
fn lock_file(database: &Path, connector: &str) -> Result<Option<File>, StateError> {
    let dir = database.parent().unwrap_or(Path::new(".")).join("locks");
    let io = |e: std::io::Error| {
        StateError::Io(format!("cannot use the lock folder {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let file: File = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join(lock_file_name(connector)))
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}

/// The run lock of a connector of an in-memory store.
struct MemoryLock {
    held: Arc<Mutex<HashSet<String>>>,
    connector: String,
}

impl MemoryLock {
    fn take(held: &Arc<Mutex<HashSet<String>>>, connector: &str) -> Option<MemoryLock> {
        let mut set = held.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(connector.to_string()).then(|| MemoryLock {
            held: held.clone(),
            connector: connector.to_string(),
        })
    }
}

impl Drop for MemoryLock {
    fn drop(&mut self) {
        let mut set = self.held.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&self.connector);
    }
}

#[cfg(test)]
mod tests {
    // What every store does is in tests/tests/state_store.rs, run against
    // SQLite and PostgreSQL alike, with what is SQLite's own in its
    // `sqlite_only` module; here only what needs the store's connection.
    use super::*;

    #[test]
    fn open_creates_a_versioned_schema_in_wal_mode_with_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let db = SqliteStore::open(&path).unwrap();
        assert_eq!(db.path(), Some(path.as_path()));
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
        let pragma = |name: &str| -> String {
            db.conn
                .query_row(&format!("PRAGMA {name}"), [], |r| {
                    r.get::<_, rusqlite::types::Value>(0)
                })
                .map(|v| match v {
                    rusqlite::types::Value::Integer(n) => n.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    other => format!("{other:?}"),
                })
                .unwrap()
        };
        assert_eq!(pragma("journal_mode"), "wal");
        assert_eq!(pragma("synchronous"), "2", "FULL");
        assert!(pragma("busy_timeout").parse::<i64>().unwrap() >= 1000);
    }
}
