//! What can go wrong with the state store, worded so the operator knows
//! what to do.

use crate::records::RunId;

/// A backend's own error (SQLite's, PostgreSQL's), kept as the source.
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What the operator should check when a SQLite state fails.
pub const SQLITE_HINT: &str =
    "check free disk space, and run `sqlite3 <state file> 'PRAGMA integrity_check'` if it persists";

/// What the operator should check when a PostgreSQL state fails.
pub const POSTGRES_HINT: &str = "check that the PostgreSQL server is up and reachable, and its log; workers retry on their own once it is back";

/// What went wrong with the state database.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database could not be opened or prepared.
    #[error("cannot open the state database {location}: {source}; {hint}")]
    Open {
        /// The database file, or the server's URL without its password.
        location: String,
        /// What the backend said.
        #[source]
        source: BackendError,
        /// What to check, for this backend.
        hint: &'static str,
    },
    /// The database was written by a newer release.
    #[error(
        "the state database {location} has schema version {found}, but this release understands up to {supported}; run the newer connector release that wrote it (every worker of a fleet must be upgraded together), or restore a backup"
    )]
    NewerSchema {
        /// The database file, or the server's URL without its password.
        location: String,
        /// Its schema version.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A file or folder of the state could not be used.
    #[error("{0}; check the state folder's path, permissions and free space")]
    Io(String),
    /// A query failed.
    #[error("state database error: {source}; {hint}")]
    Query {
        /// What the backend said.
        #[source]
        source: BackendError,
        /// What to check, for this backend.
        hint: &'static str,
    },
    /// The connection to a database server is lost; the next call
    /// reconnects, and nothing of the failed call was stored.
    #[error(
        "the state database {location} is unreachable: {source}; {}",
        POSTGRES_HINT
    )]
    Unavailable {
        /// The server's URL without its password.
        location: String,
        /// What the client said.
        #[source]
        source: BackendError,
    },
    /// A page was committed under a lease another worker has since taken:
    /// nothing of it was stored.
    #[error(
        "the lease on connector `{connector}` was taken over by another worker (this worker's fencing token {token} is stale), so this worker's commit was refused and the run stops; the other worker continues from the last committed checkpoint, nothing is lost. If it happens often, raise the lease time (`--lease-secs`) or find what pauses this worker"
    )]
    Fenced {
        /// The connector.
        connector: String,
        /// The stale token.
        token: u64,
    },
    /// The worker could not renew its lease in time (the state database
    /// unreachable, or the process paused), so it stops before importing
    /// more.
    #[error(
        "this worker's lease on connector `{connector}` lapsed before it could be renewed (the state database was unreachable or this process was paused), so the run stops before importing more; the next holder resumes from the last committed checkpoint and nothing is lost. If it happens often, check the database's reachability or raise the lease time (`--lease-secs`)"
    )]
    LeaseLost {
        /// The connector.
        connector: String,
    },
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

/// What to do about a SQLite state that is read-only.
pub const SQLITE_READ_ONLY_HINT: &str = "the state database or its folder is read-only (a file system mounted read-only, or the file's permissions): make both writable for the user the connector runs as, then run again; nothing is lost";

/// What the operator should do about a SQLite error, by its code.
#[cfg(feature = "sqlite")]
pub fn sqlite_hint(e: &rusqlite::Error) -> &'static str {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => {
            "the disk holding the state folder is full: free space (or grow the volume), then run again; nothing is lost, the run goes on from its last committed page"
        }
        Some(ErrorCode::ReadOnly) => SQLITE_READ_ONLY_HINT,
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "another process holds the state database locked (another `connector` command, or a `sqlite3` shell, on this state folder): let it finish or end it, then run again"
        }
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            "the file is damaged: restore the state folder from a backup (`sqlite3 <state file> 'PRAGMA integrity_check'` shows the damage); the connector never resets or rewrites a damaged state, since its ledger is what keeps each delivery from being made twice"
        }
        _ => SQLITE_HINT,
    }
}

#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for StateError {
    fn from(e: rusqlite::Error) -> StateError {
        StateError::Query {
            hint: sqlite_hint(&e),
            source: Box::new(e),
        }
    }
}

#[cfg(feature = "postgres")]
impl From<postgres::Error> for StateError {
    fn from(e: postgres::Error) -> StateError {
        StateError::Query {
            source: Box::new(e),
            hint: POSTGRES_HINT,
        }
    }
}
