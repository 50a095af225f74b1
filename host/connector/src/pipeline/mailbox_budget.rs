//! The sinks' per-mailbox limits kept in the state store: every worker
//! sharing the state shares each mailbox's concurrency slots, rate window
//! and the pauses the mail service asks for.

use std::sync::Arc;
use std::time::Duration;

use connector_sink::SinkError;
use connector_sink::budget::{MailboxBudget, MailboxLimits, Pauses, RequestGrant, SLOT_LEASE};
use connector_state::{SharedStore, StateError, StateStore};

use super::page::lock;

/// A [`MailboxBudget`] in the state store, for one sink: `holder` names
/// its slots there (this worker, connector and run).
pub(super) struct StateBudget {
    pub db: SharedStore,
    pub holder: String,
    /// The pauses this process's sinks were asked for, by mailbox: every
    /// sink of the process sees them at once.
    pub pauses: Arc<Pauses>,
}

impl StateBudget {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut dyn StateStore, &str) -> Result<T, StateError>,
    ) -> Result<T, SinkError> {
        let mut db = lock(&self.db);
        f(&mut *db, &self.holder).map_err(|e| SinkError::Unavailable {
            target: "the mailbox budget in the state database".into(),
            message: e.to_string(),
        })
    }
}

impl MailboxBudget for StateBudget {
    fn take_slots(
        &self,
        mailbox: &str,
        want: u32,
        limits: &MailboxLimits,
    ) -> Result<Vec<u32>, SinkError> {
        self.with(|db, holder| {
            db.take_mailbox_slots(mailbox, holder, want, limits.concurrency, SLOT_LEASE)
        })
    }

    fn renew_slots(&self, mailbox: &str, slots: &[u32]) -> Result<Vec<u32>, SinkError> {
        self.with(|db, holder| db.renew_mailbox_slots(mailbox, holder, slots, SLOT_LEASE))
    }

    fn release_slots(&self, mailbox: &str, slots: &[u32]) -> Result<(), SinkError> {
        self.with(|db, holder| db.release_mailbox_slots(mailbox, holder, slots))
    }

    fn reserve_requests(
        &self,
        mailbox: &str,
        want: u32,
        limits: &MailboxLimits,
    ) -> Result<RequestGrant, SinkError> {
        let window: Duration = limits.window;
        self.with(|db, _| db.reserve_mailbox_requests(mailbox, want, limits.requests, window))
    }

    fn throttle(&self, mailbox: &str, pause: Duration) -> Result<(), SinkError> {
        self.pauses.hold(mailbox, pause);
        self.with(|db, _| db.throttle_mailbox(mailbox, pause))
    }

    fn paused_for(&self, mailbox: &str) -> Option<Duration> {
        self.pauses.left(mailbox)
    }
}
