//! What can go wrong with the state store, worded so the operator knows
//! what to do.

use std::path::PathBuf;

use crate::records::RunId;

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
