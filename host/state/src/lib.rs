//! The host's own state: per connector, the source checkpoint, the run
//! history, the delivery ledger (which item went to which mailbox), the
//! quarantine (items with participants that have no mailbox), the plugin's
//! small key/value store, and the lock that lets one run of a connector go
//! on at a time.
//!
//! Everything goes through the [`StateStore`] trait ([`store`]), one trait
//! per table; [`StateStore::commit_page`] is the crash-safety core, writing
//! a page's ledger entries, quarantine records, counts and checkpoint in
//! one transaction. [`SqliteStore`] ([`sqlite`]) is the first backend: one
//! SQLite file per host.

pub mod error;
pub mod records;
pub mod sqlite;
pub mod store;

pub use error::StateError;
pub use records::{
    CheckpointSlot, ConnectorTotals, DeliveredPair, FailureKind, LedgerEntry, PageCommit,
    QuarantineEntry, RunCounts, RunFailure, RunId, RunKind, RunOutcome, RunRecord, SeenItem,
};
pub use sqlite::{SCHEMA_VERSION, SqliteStore};
pub use store::{
    Checkpoints, ConversationDirectory, DeliveryLedger, PluginValues, QuarantineStore, RunHistory,
    RunLock, SharedStore, StateStore,
};

/// The store's traits, to call their methods: `use connector_state::prelude::*`.
pub mod prelude {
    pub use crate::store::{
        Checkpoints, ConversationDirectory, DeliveryLedger, PluginValues, QuarantineStore,
        RunHistory, StateStore,
    };
}
