//! The host's own state: per connector, the source checkpoint, the run
//! history, the delivery ledger (which item went to which mailbox), the
//! quarantine (items with participants that have no mailbox), the plugin's
//! small key/value store, and the lock that lets one run of a connector go
//! on at a time.
//!
//! Everything goes through the [`StateStore`] trait ([`store`]), one trait
//! per table; [`StateStore::commit_page`] is the crash-safety core, writing
//! a page's ledger entries, quarantine records, counts and checkpoint in
//! one transaction. The backends are crates of their own:
//! `connector-state-sqlite` (one file per host, the default) and
//! `connector-state-postgres` (shared by a fleet of workers). Beside the
//! tables of the runs, the store keeps the admins' side: the hash-chained
//! audit trail of their actions ([`audit`]) and the pauses and "run now"
//! requests every worker honours ([`controls`]).

pub mod audit;
pub mod controls;
pub mod encoding;
pub mod error;
pub mod faults;
pub mod fleet;
pub mod mailbox;
pub mod records;
pub mod store;
pub mod transfer;

pub use audit::{
    AuditAction, AuditEntry, AuditHead, AuditQuery, AuditRecord, AuditTrail, ChainBreak,
    ChainVerifier, GENESIS_SHA256, record_sha256, verify_chain,
};
pub use controls::{ConnectorControls, PauseRecord, RunRequest};
#[cfg(feature = "sqlite")]
pub use error::sqlite_hint;
pub use error::{BackendError, POSTGRES_HINT, SQLITE_HINT, SQLITE_READ_ONLY_HINT, StateError};
pub use fleet::{
    DEFAULT_LEASE, Fence, Fingerprint, Fleet, LeaseKeeper, LeaseLiveness, LeaseRecord,
    LeaseRequest, LockOutcome, RunLock, WorkerRecord, fingerprint_conflict,
};
pub use mailbox::{MailboxBudgets, RequestGrant};
pub use records::{
    CheckpointSlot, ConnectorTotals, DeliveredPair, FailureKind, LedgerEntry, PARTITION_MARK,
    PageCommit, QuarantineEntry, RunCounts, RunFailure, RunId, RunKind, RunOutcome, RunRecord,
    SeenItem, TranscriptBacklog, TranscriptLine, TranscriptPart, UnreadableRecord, partition_lease,
};
pub use store::{
    Checkpoints, ConversationDirectory, DeliveryLedger, PluginValues, QuarantineStore, RunHistory,
    SharedStore, StateStore, TranscriptDays,
};

/// The store's traits, to call their methods: `use connector_state::prelude::*`.
pub mod prelude {
    pub use crate::audit::AuditTrail;
    pub use crate::controls::ConnectorControls;
    pub use crate::fleet::Fleet;
    pub use crate::mailbox::MailboxBudgets;
    pub use crate::store::{
        Checkpoints, ConversationDirectory, DeliveryLedger, PluginValues, QuarantineStore,
        RunHistory, StateStore, TranscriptDays,
    };
}
