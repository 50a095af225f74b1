//! What the state store records: runs and their counts, ledger entries,
//! quarantined messages, a page's commit, and what reports read back.

use std::collections::BTreeMap;

use connector_email::Email;
use connector_model::{Conversation, Person, TimestampMs, Unreadable};

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

    /// The value stored as `s` (see [`RunOutcome::as_str`]).
    pub fn parse(s: &str) -> Option<RunOutcome> {
        match s {
            "succeeded" => Some(RunOutcome::Succeeded),
            "failed" => Some(RunOutcome::Failed),
            "interrupted" => Some(RunOutcome::Interrupted),
            _ => None,
        }
    }
}

/// What a run (or a page of it) did: the one definition of every count the
/// run summary, `connector status` (text and JSON), the status page,
/// `/metrics` and the admin log show (`docs/counts.md` lists where each
/// appears).
///
/// An *item* is one message from the source (or, with transcripts, one
/// transcript email). A *pair* is an item and one of its internal
/// participants: the mailbox the participant maps to, or the participant
/// when no mailbox is mapped. External participants that the mapping only
/// names (`external = "name"`) are outside the archive and make no pair.
/// Every pair ends the run as exactly one of imported, skipped as a
/// duplicate or failed, so `items_for_import = imported +
/// skipped_duplicates + failed`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunCounts {
    /// Pages fetched from the source (none for a redelivery).
    pub pages: u64,
    /// Items the source gave (a redelivery: the quarantined items it
    /// examined).
    pub items_from_source: u64,
    /// Pairs after fan-out: one per mailbox an item should reach plus one
    /// per participant without a mailbox (Purview's "items available for
    /// import after fan-out").
    pub items_for_import: u64,
    /// Pairs this run delivered into a mailbox.
    pub imported: u64,
    /// Items with at least one failed pair and at least one pair imported
    /// or skipped as a duplicate: they reached some of their mailboxes
    /// but not all.
    #[serde(default)]
    pub partially_imported: u64,
    /// Pairs already delivered before this run: found in the delivery
    /// ledger, or already in the mailbox.
    pub skipped_duplicates: u64,
    /// Pairs not delivered: a participant without a mailbox, or a mailbox
    /// that refused the item. Each has a row in the admin log (`unmapped`
    /// or `refused`) and its item is in the quarantine.
    pub failed: u64,
    /// Items this run put (or kept) in the quarantine because at least one
    /// of their pairs failed; each item once, whatever the number of its
    /// failed pairs.
    pub quarantined: u64,
}

impl RunCounts {
    /// Adds `other` to these counts, field by field.
    pub fn add(&mut self, other: &RunCounts) {
        let mut sums = self.values();
        for (sum, n) in sums.iter_mut().zip(other.values()) {
            *sum = sum.saturating_add(n);
        }
        *self = RunCounts::from_values(sums);
    }

    /// Counts one item whose pairs ended as `reached` (imported or skipped
    /// as duplicates) and `failed`: a partial import when both are
    /// non-zero, and quarantined when any failed.
    pub fn count_item_outcome(&mut self, reached: u64, failed: u64) {
        if failed > 0 {
            self.quarantined += 1;
            if reached > 0 {
                self.partially_imported += 1;
            }
        }
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
/// [`StateStore::commit_page`](crate::StateStore::commit_page).
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
    /// The lease whose token the commit carries when it is not the
    /// connector's own: a partition's (see [`partition_lease`]).
    pub lease: Option<String>,
    /// The items the source gave in this page, with their expected fan-out.
    pub seen: Vec<SeenItem>,
    /// What could not be delivered, one record per (item, participant or
    /// mailbox).
    pub failures: Vec<RunFailure>,
    /// The conversations the page described, remembered (replacing earlier
    /// descriptions) so later sessions may leave them out.
    pub conversations: Vec<Conversation>,
    /// Conversations the plugin reported it could not read; a later report
    /// of the same conversation in the run replaces an earlier one.
    pub unreadable: Vec<Unreadable>,
    /// The page's messages as their days' transcripts will show them; a
    /// line already kept (same conversation, day and item) stays as it is.
    pub transcript_lines: Vec<TranscriptLine>,
    /// Transcripts delivered with this commit's ledger entries: their
    /// lines are marked delivered.
    pub transcripts_delivered: Vec<TranscriptPart>,
}

/// One message as its conversation's day keeps it until the day's
/// transcript is delivered (and after, so a late message is known to be
/// late).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptLine {
    /// The message's conversation.
    pub conversation_id: String,
    /// The day, `YYYY-MM-DD` in the connector's transcript time zone.
    pub day: String,
    /// The message's source id.
    pub item_id: String,
    /// When it was sent (ms since the epoch).
    pub sent_at_ms: i64,
    /// The mailboxes the message's participants map to: the day's
    /// transcript goes to all of them.
    pub mailboxes: Vec<String>,
    /// The message as the transcript shows it, with its attachments; the
    /// host encodes it, the store keeps it as given.
    pub entry: Vec<u8>,
    /// The transcript email holding it, once sealed (see [`TranscriptPart`]).
    pub part: Option<u32>,
}

/// Where a connector's transcripts stand: conversation days with messages
/// not in a transcript yet (waiting for their day to close), and
/// transcripts sealed but not delivered yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TranscriptBacklog {
    /// Conversation days holding messages no transcript holds yet.
    pub open_days: u64,
    /// Transcripts (days and addenda) sealed and not yet delivered.
    pub unsent: u64,
}

/// One transcript email of a conversation's day: the day's transcript
/// (part 0), or an addendum of messages that arrived after it went out
/// (parts 1, 2, …).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TranscriptPart {
    /// The conversation.
    pub conversation_id: String,
    /// The day, `YYYY-MM-DD` in the connector's transcript time zone.
    pub day: String,
    /// 0 for the day's transcript, then one more per addendum.
    pub part: u32,
}

/// What separates a connector (or a backfill's key) from a partition's id
/// in the partition's lease and checkpoint key.
pub const PARTITION_MARK: &str = "#partition:";

/// The name of the lease (and the checkpoint key) of a partition of
/// `connector`, or of a backfill's key when `base` is one.
pub fn partition_lease(base: &str, partition: &str) -> String {
    format!("{base}{PARTITION_MARK}{partition}")
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

/// What sort of run a run record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunKind {
    /// A scheduled run (or `run --once`) from the connector's checkpoint.
    Run,
    /// A backfill over a range of sent times, with its own checkpoint.
    Backfill,
    /// A redelivery of quarantined items after the mapping was fixed.
    Redeliver,
}

impl RunKind {
    /// The stored name: `run`, `backfill` or `redeliver`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Run => "run",
            RunKind::Backfill => "backfill",
            RunKind::Redeliver => "redeliver",
        }
    }

    /// The value stored as `s` (see [`RunKind::as_str`]).
    pub fn parse(s: &str) -> Option<RunKind> {
        match s {
            "run" => Some(RunKind::Run),
            "backfill" => Some(RunKind::Backfill),
            "redeliver" => Some(RunKind::Redeliver),
            _ => None,
        }
    }
}

/// Why an (item, participant) pair was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The participant has no mailbox; the item is in the quarantine.
    Unmapped,
    /// The mailbox store refused the item; it is in the quarantine.
    Refused,
    /// The participant belongs to another organisation and has no mailbox
    /// here: named in the email and the admin log, not quarantined (the
    /// mapping's policy for external participants).
    External,
}

impl FailureKind {
    /// The stored name: `unmapped`, `refused` or `external`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Unmapped => "unmapped",
            FailureKind::Refused => "refused",
            FailureKind::External => "external",
        }
    }

    /// The value stored as `s` (see [`FailureKind::as_str`]).
    pub fn parse(s: &str) -> Option<FailureKind> {
        match s {
            "unmapped" => Some(FailureKind::Unmapped),
            "refused" => Some(FailureKind::Refused),
            "external" => Some(FailureKind::External),
            _ => None,
        }
    }

    /// Whether the pair counts as failed in the admin log (an external
    /// participant without a mailbox is outside the archive, not a failure).
    pub fn is_failure(self) -> bool {
        self != FailureKind::External
    }
}

/// One item a run could not deliver to one participant or mailbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunFailure {
    /// The message's source id.
    pub item_id: String,
    /// The participant's id in the source (`ExternalUserId`).
    pub source_user_id: String,
    /// The mailbox that refused it; empty when the participant has none.
    pub mailbox: String,
    /// Why.
    pub kind: FailureKind,
    /// What happened and what to do about it.
    pub reason: String,
}

/// A conversation a run could not read, as the state keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnreadableRecord {
    /// The run that reported it.
    pub run: RunId,
    /// When the page reporting it was committed.
    pub reported_at_ms: TimestampMs,
    /// The conversation, why, and the fix.
    #[serde(flatten)]
    pub report: Unreadable,
}

/// An item a run received from the source, with what it should become.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SeenItem {
    /// The message's source id.
    pub item_id: String,
    /// Hex SHA-256 of the source item as the run received it.
    pub source_sha256: String,
    /// When it was sent.
    pub sent_at_ms: TimestampMs,
    /// The mailboxes it should reach (the expected fan-out).
    pub mailboxes: Vec<String>,
    /// Ids of participants without a mailbox.
    pub unmapped: Vec<String>,
}

/// A ledger entry with the run that recorded it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveredPair {
    /// The delivery.
    pub entry: LedgerEntry,
    /// The run that recorded it.
    pub run: RunId,
}

/// A connector's totals over the runs the database keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConnectorTotals {
    /// Finished runs by outcome (`succeeded`, `failed`, `interrupted`).
    pub runs_by_outcome: BTreeMap<String, u64>,
    /// The counts of every run kept (finished or not), added up.
    #[serde(flatten)]
    pub counts: RunCounts,
    /// When the last successful run finished.
    pub last_success_ms: Option<TimestampMs>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_counts_add_every_field() {
        let mut total = RunCounts::from_values([1, 2, 4, 2, 1, 0, 1, 1]);
        total.add(&RunCounts::from_values([1, 1, 1, 1, 1, 1, 1, 0]));
        assert_eq!(total, RunCounts::from_values([2, 3, 5, 3, 2, 1, 2, 1]));
        let json = serde_json::to_value(&total).unwrap();
        assert_eq!(json["items_for_import"], 5);
        assert_eq!(json["partially_imported"], 1);
    }

    #[test]
    fn an_item_is_quarantined_when_a_pair_failed_and_partial_when_another_reached_its_mailbox() {
        let mut counts = RunCounts::default();
        counts.count_item_outcome(3, 0);
        assert_eq!(counts, RunCounts::default(), "delivered everywhere");
        counts.count_item_outcome(0, 2);
        assert_eq!((counts.quarantined, counts.partially_imported), (1, 0));
        counts.count_item_outcome(2, 1);
        assert_eq!((counts.quarantined, counts.partially_imported), (2, 1));
    }
}
