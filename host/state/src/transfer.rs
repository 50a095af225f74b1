//! Copying a whole state into another backend (`connector state migrate`),
//! row by row and verified.
//!
//! A backend that can be read whole implements [`StateExport`]: it sends
//! every row of every table, one [`Row`] at a time and in a fixed order
//! (table by table, each by connector and key), to a [`RowSink`]. A
//! backend that can be filled implements [`StateImport`]: in one
//! transaction, it takes the rows a feed pushes into it. Nothing holds a
//! whole table: rows stream from one database into the other, and
//! quarantined emails travel as [`connector_email::Email`]s, spooled to
//! files when big.
//!
//! [`migrate`] copies a state and checks the copy: per table and
//! connector, a row count and a SHA-256 over a canonical serialization of
//! the rows ([`Digests`]), computed on the rows read from the source and
//! again on the rows read back from the target. Leases and workers are not
//! copied: the first worker on the target takes each connector's lease
//! with token 1.

use std::collections::BTreeMap;
use std::io::Write as _;

use connector_model::Conversation;
use connector_model::digest::HashingWriter;

use crate::audit::AuditRecord;
use crate::controls::{PauseRecord, RunRequest};
use crate::error::StateError;
use crate::records::{
    QuarantineEntry, RunFailure, RunId, RunRecord, SeenItem, TranscriptLine, UnreadableRecord,
};

/// The tables a transfer copies, in the order they are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Checkpoints, the connectors' own and backfills'.
    Checkpoints,
    /// Runs, with their ids.
    Runs,
    /// The items each run received.
    RunItems,
    /// What each run could not deliver.
    RunFailures,
    /// The conversations each run could not read.
    RunUnreadable,
    /// What the ledger knows of each delivered item once.
    LedgerItems,
    /// Each delivery of an item to a mailbox.
    Deliveries,
    /// Quarantined messages, with their emails.
    Quarantine,
    /// Plugins' key/value state.
    Kv,
    /// Conversations the plugins described.
    Conversations,
    /// What each conversation's days hold for their transcripts.
    TranscriptLines,
    /// Connectors paused by an admin.
    Pauses,
    /// "Run now" requests no worker has taken yet.
    RunRequests,
    /// The audit trail of admin actions, with its chain.
    AuditTrail,
}

impl Table {
    /// Every table, in the order a transfer sends them.
    pub const ALL: [Table; 14] = [
        Table::Checkpoints,
        Table::Runs,
        Table::RunItems,
        Table::RunFailures,
        Table::RunUnreadable,
        Table::LedgerItems,
        Table::Deliveries,
        Table::Quarantine,
        Table::Kv,
        Table::Conversations,
        Table::TranscriptLines,
        Table::Pauses,
        Table::RunRequests,
        Table::AuditTrail,
    ];

    /// The table's name (as in both schemas).
    pub fn name(self) -> &'static str {
        match self {
            Table::Checkpoints => "checkpoints",
            Table::Runs => "runs",
            Table::RunItems => "run_items",
            Table::RunFailures => "run_failures",
            Table::RunUnreadable => "run_unreadable",
            Table::LedgerItems => "ledger_items",
            Table::Deliveries => "deliveries",
            Table::Quarantine => "quarantine",
            Table::Kv => "kv",
            Table::Conversations => "conversations",
            Table::TranscriptLines => "transcript_lines",
            Table::Pauses => "connector_pauses",
            Table::RunRequests => "run_requests",
            Table::AuditTrail => "audit_trail",
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the ledger knows of a delivered item once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerItemRow {
    /// The connector.
    pub connector: String,
    /// The message's source id.
    pub item_id: String,
    /// The email's Message-ID.
    pub message_id: String,
    /// Hex SHA-256 of the source item.
    pub source_sha256: String,
    /// Hex SHA-256 of the email first delivered.
    pub email_sha256: String,
    /// When it was first delivered.
    pub first_delivered_at_ms: i64,
}

/// One delivery of an item to a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    /// The connector.
    pub connector: String,
    /// The message's source id (its [`LedgerItemRow`]).
    pub item_id: String,
    /// The mailbox.
    pub mailbox: String,
    /// Where the sink put it.
    pub receipt: String,
    /// When.
    pub delivered_at_ms: i64,
    /// The run that recorded it.
    pub run: RunId,
    /// The email's SHA-256 when it differs from the item's.
    pub email_sha256: Option<String>,
}

/// One row of a state, whatever keeps it.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// A checkpoint under its key (a connector id, or a backfill's key).
    Checkpoint {
        /// The key: the connector, or `<connector>#backfill:…`.
        key: String,
        /// The checkpoint as stored.
        data: Vec<u8>,
        /// The run that wrote it.
        run: Option<RunId>,
    },
    /// A run, with its id.
    Run(RunRecord),
    /// An item a run received.
    RunItem {
        /// The run.
        run: RunId,
        /// The connector.
        connector: String,
        /// The item.
        item: SeenItem,
    },
    /// A failure a run recorded.
    RunFailure {
        /// The run.
        run: RunId,
        /// The connector.
        connector: String,
        /// The failure.
        failure: RunFailure,
        /// When it was recorded.
        at_ms: i64,
    },
    /// A conversation a run could not read.
    RunUnreadable {
        /// The connector.
        connector: String,
        /// The report, with its run.
        record: UnreadableRecord,
    },
    /// A ledger item.
    LedgerItem(LedgerItemRow),
    /// A delivery.
    Delivery(DeliveryRow),
    /// A quarantined message, its email in memory or spooled.
    Quarantine {
        /// The connector.
        connector: String,
        /// The run that quarantined it.
        run: RunId,
        /// The message.
        entry: QuarantineEntry,
    },
    /// A plugin value.
    Kv {
        /// The connector.
        connector: String,
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
    },
    /// A conversation description.
    Conversation {
        /// The connector.
        connector: String,
        /// The description.
        conversation: Conversation,
    },
    /// A line of a conversation's day, with its part once sealed.
    TranscriptLine {
        /// The connector.
        connector: String,
        /// The line.
        line: TranscriptLine,
        /// Whether its part's delivery was committed.
        delivered: bool,
    },
    /// A connector's pause.
    Pause {
        /// The connector.
        connector: String,
        /// Who paused it, and when.
        pause: PauseRecord,
    },
    /// A connector's pending run request.
    RunRequest {
        /// The connector.
        connector: String,
        /// Who asked, and when.
        request: RunRequest,
    },
    /// A record of the audit trail, its number and hashes kept as they are
    /// (the copy is the same chain).
    Audit(AuditRecord),
}

impl Row {
    /// The table the row belongs to.
    pub fn table(&self) -> Table {
        match self {
            Row::Checkpoint { .. } => Table::Checkpoints,
            Row::Run(_) => Table::Runs,
            Row::RunItem { .. } => Table::RunItems,
            Row::RunFailure { .. } => Table::RunFailures,
            Row::RunUnreadable { .. } => Table::RunUnreadable,
            Row::LedgerItem(_) => Table::LedgerItems,
            Row::Delivery(_) => Table::Deliveries,
            Row::Quarantine { .. } => Table::Quarantine,
            Row::Kv { .. } => Table::Kv,
            Row::Conversation { .. } => Table::Conversations,
            Row::TranscriptLine { .. } => Table::TranscriptLines,
            Row::Pause { .. } => Table::Pauses,
            Row::RunRequest { .. } => Table::RunRequests,
            Row::Audit(_) => Table::AuditTrail,
        }
    }

    /// The connector the row belongs to (for a backfill's checkpoint, the
    /// part of its key before `#`; for an audit record, its target, empty
    /// when it has none).
    pub fn connector(&self) -> &str {
        match self {
            Row::Checkpoint { key, .. } => key.split('#').next().unwrap_or(key),
            Row::Run(r) => &r.connector,
            Row::RunItem { connector, .. }
            | Row::RunFailure { connector, .. }
            | Row::RunUnreadable { connector, .. }
            | Row::Quarantine { connector, .. }
            | Row::Kv { connector, .. }
            | Row::Conversation { connector, .. }
            | Row::TranscriptLine { connector, .. }
            | Row::Pause { connector, .. }
            | Row::RunRequest { connector, .. } => connector,
            Row::Audit(r) => &r.entry.target,
            Row::LedgerItem(i) => &i.connector,
            Row::Delivery(d) => &d.connector,
        }
    }

    /// The row's canonical serialization, the same whichever backend it
    /// was read from: each field length-prefixed, in a fixed order. An
    /// email counts by its length and SHA-256.
    pub fn canonical(&self) -> Result<Vec<u8>, StateError> {
        let mut out = Canonical::default();
        match self {
            Row::Checkpoint { key, data, run } => {
                out.text(key).bytes(data).opt_int(run.map(|r| r.0));
            }
            Row::Run(r) => {
                out.int(r.id.0)
                    .text(&r.connector)
                    .int(r.started_at_ms)
                    .opt_int(r.finished_at_ms)
                    .opt_text(r.outcome.map(|o| o.as_str()));
                for n in r.counts.values() {
                    out.uint(n);
                }
                out.opt_text(r.error.as_deref())
                    .text(r.kind.as_str())
                    .opt_int(r.range_ms.map(|r| r.0))
                    .opt_int(r.range_ms.map(|r| r.1))
                    .opt_int(r.pid.map(i64::from));
            }
            Row::RunItem {
                run,
                connector,
                item,
            } => {
                out.int(run.0)
                    .text(connector)
                    .text(&item.item_id)
                    .text(&item.source_sha256)
                    .int(item.sent_at_ms)
                    .list(&item.mailboxes)
                    .list(&item.unmapped);
            }
            Row::RunFailure {
                run,
                connector,
                failure,
                at_ms,
            } => {
                out.int(run.0)
                    .text(connector)
                    .text(&failure.item_id)
                    .text(&failure.source_user_id)
                    .text(&failure.mailbox)
                    .text(failure.kind.as_str())
                    .text(&failure.reason)
                    .int(*at_ms);
            }
            Row::RunUnreadable { connector, record } => {
                out.int(record.run.0)
                    .text(connector)
                    .text(&record.report.conversation_id)
                    .text(&record.report.reason)
                    .text(&record.report.fix)
                    .int(record.reported_at_ms);
            }
            Row::LedgerItem(i) => {
                out.text(&i.connector)
                    .text(&i.item_id)
                    .text(&i.message_id)
                    .text(&i.source_sha256)
                    .text(&i.email_sha256)
                    .int(i.first_delivered_at_ms);
            }
            Row::Delivery(d) => {
                out.text(&d.connector)
                    .text(&d.item_id)
                    .text(&d.mailbox)
                    .text(&d.receipt)
                    .int(d.delivered_at_ms)
                    .int(d.run.0)
                    .opt_text(d.email_sha256.as_deref());
            }
            Row::Quarantine {
                connector,
                run,
                entry,
            } => {
                let unmapped =
                    serde_json::to_vec(&entry.unmapped).map_err(|e| StateError::Corrupt {
                        what: "unmapped participant list",
                        message: e.to_string(),
                    })?;
                out.text(connector)
                    .int(run.0)
                    .text(&entry.item_id)
                    .text(&entry.message_id)
                    .int(entry.sent_at_ms)
                    .bytes(&unmapped)
                    .text(&entry.reason)
                    .text(&entry.source_sha256)
                    .uint(entry.email.len())
                    .text(&entry.email.sha256);
            }
            Row::Kv {
                connector,
                key,
                value,
            } => {
                out.text(connector).text(key).bytes(value);
            }
            Row::Conversation {
                connector,
                conversation,
            } => {
                let description =
                    serde_json::to_vec(conversation).map_err(|e| StateError::Corrupt {
                        what: "conversation description",
                        message: e.to_string(),
                    })?;
                out.text(connector).bytes(&description);
            }
            Row::TranscriptLine {
                connector,
                line,
                delivered,
            } => {
                out.text(connector)
                    .text(&line.conversation_id)
                    .text(&line.day)
                    .text(&line.item_id)
                    .int(line.sent_at_ms)
                    .list(&line.mailboxes)
                    .bytes(&line.entry)
                    .opt_int(line.part.map(i64::from))
                    .int(i64::from(*delivered));
            }
            Row::Pause { connector, pause } => {
                out.text(connector).text(&pause.by).int(pause.at_ms);
            }
            Row::RunRequest { connector, request } => {
                out.text(connector).text(&request.by).int(request.at_ms);
            }
            Row::Audit(r) => {
                out.uint(r.seq)
                    .int(r.entry.at_ms)
                    .text(&r.entry.actor)
                    .text(&r.entry.source)
                    .text(r.entry.action.as_str())
                    .text(&r.entry.target)
                    .text(&r.entry.detail)
                    .text(&r.prev_sha256)
                    .text(&r.sha256);
            }
        }
        Ok(out.0)
    }
}

/// A canonical serialization under construction.
#[derive(Default)]
struct Canonical(Vec<u8>);

impl Canonical {
    fn bytes(&mut self, b: &[u8]) -> &mut Canonical {
        self.0.extend_from_slice(&(b.len() as u64).to_le_bytes());
        self.0.extend_from_slice(b);
        self
    }
    fn text(&mut self, s: &str) -> &mut Canonical {
        self.bytes(s.as_bytes())
    }
    fn opt_text(&mut self, s: Option<&str>) -> &mut Canonical {
        match s {
            None => self.0.push(0),
            Some(s) => {
                self.0.push(1);
                self.text(s);
            }
        }
        self
    }
    fn int(&mut self, n: i64) -> &mut Canonical {
        self.0.extend_from_slice(&n.to_le_bytes());
        self
    }
    fn uint(&mut self, n: u64) -> &mut Canonical {
        self.0.extend_from_slice(&n.to_le_bytes());
        self
    }
    fn opt_int(&mut self, n: Option<i64>) -> &mut Canonical {
        match n {
            None => self.0.push(0),
            Some(n) => {
                self.0.push(1);
                self.int(n);
            }
        }
        self
    }
    fn list(&mut self, items: &[String]) -> &mut Canonical {
        self.uint(items.len() as u64);
        for item in items {
            self.text(item);
        }
        self
    }
}

/// Where an export sends its rows.
pub trait RowSink {
    /// Takes the next row.
    fn push(&mut self, row: Row) -> Result<(), StateError>;
}

impl<F: FnMut(Row) -> Result<(), StateError>> RowSink for F {
    fn push(&mut self, row: Row) -> Result<(), StateError> {
        self(row)
    }
}

/// A state that can be read whole, for a transfer.
pub trait StateExport {
    /// Sends every row of every table to `sink`, from one consistent
    /// snapshot: table by table in the order of [`Table::ALL`], each by
    /// connector and then its key (runs, run items and failures by run id;
    /// failures in the order they were recorded; ledger items by item,
    /// deliveries by item and mailbox; the audit trail by number; the rest
    /// by key). Leases, workers and counters are not sent.
    fn export_state(&self, sink: &mut dyn RowSink) -> Result<(), StateError>;

    /// What the state holds that makes it unfit as a transfer's target
    /// (runs, ledger, quarantine, checkpoints, plugin values or audit
    /// records), as "N runs, M deliveries"; `None` when it holds none.
    fn held_state(&self) -> Result<Option<String>, StateError>;
}

/// A state that can be filled by a transfer.
pub trait StateImport {
    /// In one transaction: calls `feed` with a sink that writes each row
    /// it is given (rows come in the order [`StateExport::export_state`]
    /// sends them), then makes the state ready for use (e.g. advances id
    /// sequences past the copied runs, sets the audit trail's head to its
    /// last copied record) and commits. When `feed` or a write
    /// fails, nothing is stored.
    fn import_state(
        &mut self,
        feed: &mut dyn FnMut(&mut dyn RowSink) -> Result<(), StateError>,
    ) -> Result<(), StateError>;
}

/// The row count and SHA-256 of one table's rows of one connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDigest {
    /// The table.
    pub table: Table,
    /// The connector.
    pub connector: String,
    /// How many rows.
    pub rows: u64,
    /// Hex SHA-256 over the rows' canonical serializations, in order.
    pub sha256: String,
}

/// Row counts and SHA-256s of a state, per table and connector, as rows
/// pass by.
#[derive(Default)]
pub struct Digests {
    tables: BTreeMap<(Table, String), (u64, HashingWriter<std::io::Sink>)>,
}

impl Digests {
    /// Counts and hashes `row`.
    pub fn add(&mut self, row: &Row) -> Result<(), StateError> {
        let canonical = row.canonical()?;
        let (rows, hash) = self
            .tables
            .entry((row.table(), row.connector().to_string()))
            .or_insert_with(|| (0, HashingWriter::new(std::io::sink())));
        *rows += 1;
        hash.write_all(&(canonical.len() as u64).to_le_bytes())
            .and_then(|()| hash.write_all(&canonical))
            .map_err(|e| StateError::Io(format!("cannot hash a row: {e}")))?;
        Ok(())
    }

    /// The counts and hashes, by table and connector.
    pub fn finish(self) -> Vec<TableDigest> {
        self.tables
            .into_iter()
            .map(|((table, connector), (rows, hash))| TableDigest {
                table,
                connector,
                rows,
                sha256: hash.finish().1,
            })
            .collect()
    }
}

/// The row counts and SHA-256s of everything `state` holds.
pub fn digest(state: &dyn StateExport) -> Result<Vec<TableDigest>, StateError> {
    let mut digests = Digests::default();
    state.export_state(&mut |row: Row| digests.add(&row))?;
    Ok(digests.finish())
}

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The target already holds state: a migration only fills an empty
    /// database, so that nothing is delivered twice or mixed.
    #[error(
        "the target state {location} is not empty (it holds {held}); migrate into an empty database: create a new one (e.g. `createdb connector_state`), or drop and recreate this one if it holds nothing you need, then run the migration again"
    )]
    TargetNotEmpty {
        /// The target, without secrets.
        location: String,
        /// What it holds.
        held: String,
    },
    /// The copy read back from the target differs from the source.
    #[error(
        "the copy differs from the source in table `{table}` of connector `{connector}`: the source has {expected_rows} rows (SHA-256 {expected_sha256}), the target {found_rows} (SHA-256 {found_sha256}); do not use the target: drop and recreate its database and run the migration again (the source is unchanged), and report this if it happens again"
    )]
    Mismatch {
        /// The table.
        table: Table,
        /// The connector.
        connector: String,
        /// Rows in the source.
        expected_rows: u64,
        /// Their SHA-256.
        expected_sha256: String,
        /// Rows in the target.
        found_rows: u64,
        /// Their SHA-256.
        found_sha256: String,
    },
    /// Reading the source failed; the target's transaction was rolled back.
    #[error(
        "reading the source state failed, nothing was stored in the target: {0}; fix that and run the migration again"
    )]
    Source(#[source] StateError),
    /// Writing the target failed; its transaction was rolled back.
    #[error(
        "writing the target state failed, so the migration stopped: {0}. Its transaction was rolled back and the target should be empty; if the migration is refused next time because the target is not empty, drop and recreate the target database, then run it again"
    )]
    Target(#[source] StateError),
}

/// Checks that `target` holds exactly what `expected` says (as
/// [`migrate`] or [`digest`] computed it on the source): the first table
/// and connector whose count or SHA-256 differs is a
/// [`TransferError::Mismatch`].
pub fn verify(expected: &[TableDigest], target: &dyn StateExport) -> Result<(), TransferError> {
    let found = digest(target).map_err(TransferError::Target)?;
    compare(expected, &found)
}

/// The first difference between two sets of digests.
pub fn compare(expected: &[TableDigest], found: &[TableDigest]) -> Result<(), TransferError> {
    let index = |list: &[TableDigest]| -> BTreeMap<(Table, String), (u64, String)> {
        list.iter()
            .map(|d| ((d.table, d.connector.clone()), (d.rows, d.sha256.clone())))
            .collect()
    };
    let (expected, found) = (index(expected), index(found));
    let keys: std::collections::BTreeSet<_> = expected.keys().chain(found.keys()).collect();
    let none = (0, "-".to_string());
    for key in keys {
        let e = expected.get(key).unwrap_or(&none);
        let f = found.get(key).unwrap_or(&none);
        if e != f {
            return Err(TransferError::Mismatch {
                table: key.0,
                connector: key.1.clone(),
                expected_rows: e.0,
                expected_sha256: e.1.clone(),
                found_rows: f.0,
                found_sha256: f.1.clone(),
            });
        }
    }
    Ok(())
}

/// Copies everything `source` holds into the empty `target` (in one
/// transaction of the target), then reads the target back and checks it
/// against what was read from the source. Returns the source's digests.
/// `target_location` names the target in errors.
pub fn migrate<T: StateExport + StateImport>(
    source: &dyn StateExport,
    target: &mut T,
    target_location: &str,
) -> Result<Vec<TableDigest>, TransferError> {
    if let Some(held) = target.held_state().map_err(TransferError::Target)? {
        return Err(TransferError::TargetNotEmpty {
            location: target_location.to_string(),
            held,
        });
    }
    let mut digests = Digests::default();
    // Whether the export failed on its own (not on a write it passed on).
    let mut source_failed = false;
    let imported = target.import_state(&mut |into: &mut dyn RowSink| {
        let mut write_failed = false;
        let result = source.export_state(&mut |row: Row| {
            digests.add(&row)?;
            into.push(row).inspect_err(|_| write_failed = true)
        });
        source_failed = result.is_err() && !write_failed;
        result
    });
    if let Err(e) = imported {
        return Err(if source_failed {
            TransferError::Source(e)
        } else {
            TransferError::Target(e)
        });
    }
    let expected = digests.finish();
    verify(&expected, target)?;
    Ok(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests(rows: &[Row]) -> Vec<TableDigest> {
        let mut d = Digests::default();
        for row in rows {
            d.add(row).unwrap();
        }
        d.finish()
    }

    fn kv(connector: &str, key: &str, value: &[u8]) -> Row {
        Row::Kv {
            connector: connector.to_string(),
            key: key.to_string(),
            value: value.to_vec(),
        }
    }

    #[test]
    fn a_changed_value_is_a_mismatch_naming_table_and_connector() {
        let source = digests(&[kv("a", "k", b"1"), kv("b", "k", b"2")]);
        assert!(compare(&source, &source).is_ok());
        let tampered = digests(&[kv("a", "k", b"1"), kv("b", "k", b"3")]);
        match compare(&source, &tampered) {
            Err(TransferError::Mismatch {
                table,
                connector,
                expected_rows,
                found_rows,
                ..
            }) => {
                assert_eq!((table, connector.as_str()), (Table::Kv, "b"));
                assert_eq!((expected_rows, found_rows), (1, 1));
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_or_extra_row_is_a_mismatch() {
        let source = digests(&[kv("a", "k", b"1"), kv("a", "l", b"2")]);
        let fewer = digests(&[kv("a", "k", b"1")]);
        assert!(matches!(
            compare(&source, &fewer),
            Err(TransferError::Mismatch {
                expected_rows: 2,
                found_rows: 1,
                ..
            })
        ));
        assert!(compare(&fewer, &digests(&[])).is_err());
    }

    #[test]
    fn fields_cannot_shift_into_each_other() {
        let a = kv("a", "kv", b"");
        let b = kv("a", "k", b"v");
        assert_ne!(a.canonical().unwrap(), b.canonical().unwrap());
    }

    #[test]
    fn a_backfill_checkpoint_counts_for_its_connector() {
        let row = Row::Checkpoint {
            key: "chat#backfill:1..2".to_string(),
            data: vec![1],
            run: Some(RunId(3)),
        };
        assert_eq!(row.connector(), "chat");
        assert_eq!(row.table(), Table::Checkpoints);
    }
}
