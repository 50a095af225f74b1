//! The state store every part of the host works through, whatever keeps
//! it. One trait per table ([`Checkpoints`], [`RunHistory`],
//! [`DeliveryLedger`], [`QuarantineStore`], [`PluginValues`],
//! [`ConversationDirectory`], [`TranscriptDays`]) and
//! [`StateStore`], which joins them and adds the writes that span tables:
//! a page's commit and the lock a run holds. The admins' tables,
//! [`AuditTrail`] and [`ConnectorControls`], are part of it too.
//!
//! Callers bring the traits into scope with `use connector_state::prelude::*`.

use std::collections::HashSet;

use connector_model::{Conversation, TimestampMs};

use crate::audit::AuditTrail;
use crate::controls::ConnectorControls;
use crate::error::StateError;
use crate::fleet::{Fleet, LeaseRequest, LockOutcome};
use crate::mailbox::MailboxBudgets;
use crate::records::*;

/// A connector's resume positions: where its source plugin continues, and a
/// backfill's own position under a separate key.
pub trait Checkpoints {
    /// The checkpoint to resume the connector from, if any.
    fn checkpoint(&self, connector: &str) -> Result<Option<Vec<u8>>, StateError>;

    /// Forgets the connector's checkpoint, so its next run starts from the
    /// beginning (the ledger still prevents duplicate deliveries).
    fn clear_checkpoint(&mut self, connector: &str) -> Result<(), StateError>;

    /// How many partitions of the connector have a checkpoint of their own
    /// (keys [`crate::partition_lease`] of the connector's id).
    fn partition_checkpoints(&self, connector: &str) -> Result<u64, StateError>;
}

/// Every run of every connector: when and how it ran, what it counted, the
/// items it saw and what could not be delivered.
pub trait RunHistory {
    /// Records the start of a scheduled (or `--once`) run.
    fn begin_run(&mut self, connector: &str, started_at_ms: i64) -> Result<RunId, StateError> {
        self.begin_run_of(connector, started_at_ms, RunKind::Run, None)
    }

    /// Records the start of a run of `kind`, with the backfill range when
    /// there is one, and this process's id (so `status` can tell a running
    /// run from one whose process died).
    fn begin_run_of(
        &mut self,
        connector: &str,
        started_at_ms: i64,
        kind: RunKind,
        range_ms: Option<(TimestampMs, TimestampMs)>,
    ) -> Result<RunId, StateError>;

    /// Records the end of a run. `counts` are the run's totals as the
    /// caller knows them: each stored count becomes the larger of what the
    /// committed pages added up to and the given value, so passing the
    /// totals, or zeros, both leave the right numbers.
    fn finish_run(
        &mut self,
        run: RunId,
        finished_at_ms: i64,
        outcome: RunOutcome,
        counts: &RunCounts,
        error: Option<&str>,
    ) -> Result<(), StateError>;

    /// Marks the connector's runs that never finished (the process died or
    /// was killed) as interrupted at `now_ms`; returns how many there were.
    fn interrupt_unfinished(&mut self, connector: &str, now_ms: i64) -> Result<usize, StateError>;

    /// The connector's most recent runs, newest first.
    fn runs(&self, connector: &str, limit: usize) -> Result<Vec<RunRecord>, StateError>;

    /// One run, by id.
    fn run(&self, run: RunId) -> Result<Option<RunRecord>, StateError>;

    /// The connector's most recent run.
    fn last_run(&self, connector: &str) -> Result<Option<RunRecord>, StateError> {
        Ok(self.runs(connector, 1)?.into_iter().next())
    }

    /// The connector's last finished run that is not a redelivery, if any.
    fn last_finished_run(&self, connector: &str) -> Result<Option<RunRecord>, StateError>;

    /// The connector's last scheduled run (started, whatever its outcome).
    fn last_scheduled_run(&self, connector: &str) -> Result<Option<RunRecord>, StateError>;

    /// Removes the runs that finished before `cutoff_ms`, with their items
    /// and failures (the admin log and reconciliation of those runs). The
    /// ledger, the quarantine and the checkpoints are never pruned. Returns
    /// how many runs were removed.
    fn prune_runs_before(&mut self, cutoff_ms: TimestampMs) -> Result<u64, StateError>;

    /// Every connector id the database knows (from runs, the ledger or the
    /// quarantine), sorted.
    fn connectors(&self) -> Result<Vec<String>, StateError>;

    /// The connector's totals over the runs kept.
    fn connector_totals(&self, connector: &str) -> Result<ConnectorTotals, StateError>;

    /// The items a run received from the source, in sent order.
    fn run_items(&self, run: RunId) -> Result<Vec<SeenItem>, StateError>;

    /// The failures a run recorded, in the order they happened.
    fn run_failures(&self, run: RunId) -> Result<Vec<RunFailure>, StateError>;

    /// The conversations a run reported it could not read, by conversation.
    fn run_unreadable(&self, run: RunId) -> Result<Vec<UnreadableRecord>, StateError>;

    /// The conversations the connector's source cannot read now, by
    /// conversation: those reported by its last run that read the source to
    /// the end (a succeeded run or backfill) or by any later run, each with
    /// its latest report. A conversation that run read without a report is
    /// not listed, whatever earlier runs said.
    fn unreadable(&self, connector: &str) -> Result<Vec<UnreadableRecord>, StateError>;

    /// The mailboxes that refused this item in any run and that the ledger
    /// still lacks, for redelivery.
    fn refused_mailboxes(
        &self,
        connector: &str,
        item_id: &str,
    ) -> Result<Vec<(String, String)>, StateError>;
}

/// Which item went to which mailbox, as which email, and when: what makes a re-
/// run deliver only what is missing.
pub trait DeliveryLedger {
    /// Whether the item was delivered to the mailbox.
    fn is_delivered(
        &self,
        connector: &str,
        item_id: &str,
        mailbox: &str,
    ) -> Result<bool, StateError>;

    /// The `(item id, mailbox)` pairs already delivered for these items.
    fn delivered_set(
        &self,
        connector: &str,
        item_ids: &[&str],
    ) -> Result<HashSet<(String, String)>, StateError>;

    /// How many (item, mailbox) pairs the connector has delivered.
    fn delivered_count(&self, connector: &str) -> Result<u64, StateError>;

    /// The connector's whole ledger, by delivery time, item and mailbox.
    fn ledger_entries(&self, connector: &str) -> Result<Vec<LedgerEntry>, StateError>;

    /// Every ledger entry of these items (any run), by item and mailbox.
    fn ledger_for_items(
        &self,
        connector: &str,
        item_ids: &[&str],
    ) -> Result<Vec<DeliveredPair>, StateError>;

    /// The ledger entries a run recorded.
    fn ledger_of_run(&self, run: RunId) -> Result<Vec<DeliveredPair>, StateError>;
}

/// Messages kept back because some participants have no mailbox, with their
/// built emails, until the mapping is fixed and they are redelivered.
pub trait QuarantineStore {
    /// The connector's quarantined messages, oldest first. Emails bigger
    /// than [`connector_email::DEFAULT_SPILL_ABOVE`] are copied into spool files in the
    /// temporary folder rather than memory.
    fn quarantine(&self, connector: &str) -> Result<Vec<QuarantineEntry>, StateError>;

    /// How many messages the connector has in quarantine.
    fn quarantine_count(&self, connector: &str) -> Result<u64, StateError>;

    /// Whether the item is in the quarantine.
    fn is_quarantined(&self, connector: &str, item_id: &str) -> Result<bool, StateError>;
}

/// Each connector's plugin key/value values (the plugin's `state` import),
/// within the limits of `connector_model::limits`.
pub trait PluginValues {
    /// The value the connector's plugin stored under `key`.
    fn kv_get(&self, connector: &str, key: &str) -> Result<Option<Vec<u8>>, StateError>;

    /// Stores `value` under `key`, within the limits of
    /// [`connector_model::limits`].
    fn kv_set(&mut self, connector: &str, key: &str, value: &[u8]) -> Result<(), StateError>;

    /// Removes `key` (nothing happens when it is absent).
    fn kv_delete(&mut self, connector: &str, key: &str) -> Result<(), StateError>;

    /// Bytes (keys plus values) the connector's plugin state uses.
    fn kv_usage(&self, connector: &str) -> Result<u64, StateError>;
}

/// The conversations each connector's plugin has described, so that a
/// plugin need describe a conversation only once: the host remembers it
/// across pages, sessions and runs.
pub trait ConversationDirectory {
    /// The stored descriptions of those of `ids` the connector's plugin has
    /// described, in no particular order.
    fn conversations(&self, connector: &str, ids: &[&str])
    -> Result<Vec<Conversation>, StateError>;
}

/// What each conversation's days hold for their transcripts: the lines
/// kept by page commits, sealed into transcript emails once a day is
/// closed, marked delivered by the commit that records the deliveries.
pub trait TranscriptDays {
    /// The `(conversation, day)` pairs with lines not yet sealed into a
    /// transcript, on days up to `last_closed_day` (`YYYY-MM-DD`), by
    /// conversation and day.
    fn days_to_seal(
        &self,
        connector: &str,
        last_closed_day: &str,
    ) -> Result<Vec<(String, String)>, StateError>;

    /// Seals the day's lines that are in no transcript yet into the next
    /// part (0 when the day had none, else one past the last): that
    /// transcript holds exactly them, also when its delivery is tried
    /// again after a crash. `None` when every line is already sealed.
    fn seal_transcript(
        &mut self,
        connector: &str,
        conversation: &str,
        day: &str,
    ) -> Result<Option<TranscriptPart>, StateError>;

    /// The sealed parts whose delivery no commit has recorded yet, by
    /// conversation, day and part.
    fn undelivered_transcripts(&self, connector: &str) -> Result<Vec<TranscriptPart>, StateError>;

    /// How many days are open and how many transcripts wait to be sent.
    fn transcript_backlog(&self, connector: &str) -> Result<TranscriptBacklog, StateError>;

    /// The lines of one part, by sent time and item.
    fn transcript_lines(
        &self,
        connector: &str,
        part: &TranscriptPart,
    ) -> Result<Vec<TranscriptLine>, StateError>;
}

/// The whole state of a host: every table, and the writes across them.
pub trait StateStore:
    Checkpoints
    + RunHistory
    + DeliveryLedger
    + QuarantineStore
    + PluginValues
    + ConversationDirectory
    + TranscriptDays
    + Fleet
    + MailboxBudgets
    + AuditTrail
    + ConnectorControls
    + Send
{
    /// Records a page in one transaction: its ledger entries (pairs already
    /// recorded keep their first entry), quarantine records (replacing
    /// earlier ones of the same item), released quarantine items, counts
    /// (added to the run's), the items seen, the failures and the
    /// unreadable conversations (for the admin log and reconciliation) and
    /// checkpoint (in its slot). Either all of
    /// it is stored or, on error, none of it; a `fence` that is no longer
    /// the connector's lease token is refused with [`StateError::Fenced`]
    /// (and counted in [`Fleet::fenced_commits`]).
    fn commit_page(
        &mut self,
        connector: &str,
        run: RunId,
        fence: u64,
        page: &PageCommit,
    ) -> Result<(), StateError>;

    /// Takes the lease that lets one run of `connector` go on at a time,
    /// across processes and, with a shared store, across machines. The
    /// lease is renewed until the returned lock is dropped.
    fn lock_runs(&self, connector: &str, request: &LeaseRequest)
    -> Result<LockOutcome, StateError>;
}

/// A store shared by the threads of a host (the run loop, the plugin's
/// key/value import, the status server).
pub type SharedStore = std::sync::Arc<std::sync::Mutex<dyn StateStore>>;
