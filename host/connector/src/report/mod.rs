//! Reports for administrators and auditors, from the state database:
//!
//! * the **admin log** of a run ([`admin_log`]): the run's counts, named
//!   as Microsoft Purview admins know them from connector admin logs
//!   ([`counts`]), then one row per failure;
//! * the **reconciliation** of a run ([`reconcile`]): per mailbox and day,
//!   every item the source gave against what was delivered, with the
//!   SHA-256 of the source item and of the delivered email, flagging any
//!   mismatch;
//! * the **audit trail** of admin actions ([`audit`]): verified and exported.

pub mod audit;

pub mod counts;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;

pub use counts::{COUNTS, Count};

use connector_model::Mailbox;
use connector_model::time::iso;
use connector_sink::{Sink, SinkError};
use connector_state::{
    FailureKind, RunFailure, RunId, RunKind, RunRecord, SeenItem, StateError, StateStore,
    UnreadableRecord,
};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The run is unknown.
    #[error(
        "run {run} is not in the state database; `connector status` shows recent runs, and runs older than the log retention are pruned"
    )]
    UnknownRun {
        /// The run asked for.
        run: RunId,
    },
    /// The connector has no run.
    #[error("connector `{connector}` has no run yet; run it first (`connector run --once CONFIG`)")]
    NoRuns {
        /// The connector.
        connector: String,
    },
    /// The state database failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Checking a mailbox failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// Writing the report failed.
    #[error("cannot write the report: {0}; check the output file or pipe")]
    Write(#[source] std::io::Error),
}

impl From<csv::Error> for ReportError {
    fn from(e: csv::Error) -> ReportError {
        if !e.is_io_error() {
            return ReportError::Write(std::io::Error::other(e));
        }
        match e.into_kind() {
            csv::ErrorKind::Io(io) => ReportError::Write(io),
            other => ReportError::Write(std::io::Error::other(format!("{other:?}"))),
        }
    }
}

impl From<std::io::Error> for ReportError {
    fn from(e: std::io::Error) -> ReportError {
        ReportError::Write(e)
    }
}

/// A run's admin log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AdminLog {
    /// The run, with its counts.
    pub run: RunRecord,
    /// One row per (item, participant) that was not delivered.
    pub failures: Vec<RunFailure>,
    /// The conversations the run could not read, with the fix.
    pub unreadable: Vec<UnreadableRecord>,
}

/// The run to report on: `run`, or the connector's last one.
pub fn pick_run(
    db: &dyn StateStore,
    run: Option<RunId>,
    connector: Option<&str>,
) -> Result<RunRecord, ReportError> {
    match (run, connector) {
        (Some(run), _) => db.run(run)?.ok_or(ReportError::UnknownRun { run }),
        (None, Some(c)) => db.last_run(c)?.ok_or_else(|| ReportError::NoRuns {
            connector: c.to_string(),
        }),
        (None, None) => Err(ReportError::UnknownRun { run: RunId(0) }),
    }
}

/// Builds the admin log of a run.
pub fn admin_log(db: &dyn StateStore, run: &RunRecord) -> Result<AdminLog, ReportError> {
    Ok(AdminLog {
        failures: db.run_failures(run.id)?,
        unreadable: db.run_unreadable(run.id)?,
        run: run.clone(),
    })
}

/// The column names of the admin log's summary row: the completion time,
/// every count ([`COUNTS`]), then which run it is.
pub fn admin_log_columns() -> Vec<&'static str> {
    std::iter::once("Completion time")
        .chain(COUNTS.iter().map(|c| c.column))
        .chain(["Connector", "Run", "Run kind", "Outcome"])
        .collect()
}

/// The column names of the admin log's failure rows.
pub const FAILURE_COLUMNS: [&str; 5] =
    ["Item id", "Source user id", "Mailbox", "Failure", "Reason"];

/// The column names of the admin log's rows of unreadable conversations.
pub const UNREADABLE_COLUMNS: [&str; 3] = ["Unreadable conversation", "Reason", "Fix"];

/// Writes the admin log as CSV: a header and one summary row, an empty
/// line, then a header and one row per failure; when the run could not read
/// some conversations, an empty line, a header and one row per
/// conversation.
pub fn write_admin_log_csv(log: &AdminLog, out: impl Write) -> Result<(), ReportError> {
    let mut w = csv::WriterBuilder::new().flexible(true).from_writer(out);
    w.write_record(admin_log_columns())?;
    let run = &log.run;
    let mut row = vec![run.finished_at_ms.map(iso).unwrap_or_default()];
    row.extend(COUNTS.iter().map(|c| (c.of)(&run.counts).to_string()));
    row.extend([
        run.connector.clone(),
        run.id.0.to_string(),
        run.kind.as_str().to_string(),
        run.outcome.map_or("running", |o| o.as_str()).to_string(),
    ]);
    w.write_record(row)?;
    w.flush()?;
    let mut out = w
        .into_inner()
        .map_err(|e| ReportError::Write(e.into_error()))?;
    out.write_all(b"\n")?;
    let mut w = csv::Writer::from_writer(out);
    w.write_record(FAILURE_COLUMNS)?;
    for f in &log.failures {
        w.write_record([
            f.item_id.as_str(),
            f.source_user_id.as_str(),
            f.mailbox.as_str(),
            f.kind.as_str(),
            f.reason.as_str(),
        ])?;
    }
    w.flush()?;
    if log.unreadable.is_empty() {
        return Ok(());
    }
    let mut out = w
        .into_inner()
        .map_err(|e| ReportError::Write(e.into_error()))?;
    out.write_all(b"\n")?;
    let mut w = csv::Writer::from_writer(out);
    w.write_record(UNREADABLE_COLUMNS)?;
    for u in &log.unreadable {
        let r = &u.report;
        w.write_record([&r.conversation_id, &r.reason, &r.fix])?;
    }
    w.flush()?;
    Ok(())
}

/// How one (item, mailbox or participant) pair of a run compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairStatus {
    /// In the ledger, with the SHA-256 of the same source item.
    Delivered,
    /// Delivered to a mailbox mapped after the run (quarantine redelivery).
    Redelivered,
    /// The participant has no mailbox; the item is in the quarantine.
    Quarantined,
    /// The participant had no mailbox during the run but has since been
    /// mapped and the item left the quarantine.
    MappedLater,
    /// The mailbox refused the item; it is in the quarantine.
    Refused,
    /// Expected but neither delivered nor accounted for: a mismatch.
    Missing,
    /// Delivered, but from a source item with a different SHA-256 than
    /// the run saw (the source changed the item): a mismatch.
    SourceChanged,
    /// The ledger says delivered but the mailbox does not hold it: a
    /// mismatch (only when mailboxes are checked).
    NotInMailbox,
}

impl PairStatus {
    /// The CSV name.
    pub fn as_str(self) -> &'static str {
        match self {
            PairStatus::Delivered => "delivered",
            PairStatus::Redelivered => "redelivered",
            PairStatus::Quarantined => "quarantined",
            PairStatus::MappedLater => "mapped-later",
            PairStatus::Refused => "refused",
            PairStatus::Missing => "missing",
            PairStatus::SourceChanged => "source-changed",
            PairStatus::NotInMailbox => "not-in-mailbox",
        }
    }

    /// Whether this is a mismatch an auditor must look at.
    pub fn is_mismatch(self) -> bool {
        matches!(
            self,
            PairStatus::Missing | PairStatus::SourceChanged | PairStatus::NotInMailbox
        )
    }
}

/// One row of a reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReconRow {
    /// UTC day the item was sent, `YYYY-MM-DD`.
    pub day: String,
    /// The mailbox; empty for a participant without one.
    pub mailbox: String,
    /// The participant without a mailbox, or who refused.
    pub source_user_id: String,
    /// The item's source id.
    pub item_id: String,
    /// When it was sent, RFC 3339 UTC.
    pub sent_at: String,
    /// SHA-256 of the source item as the run saw it.
    pub source_sha256: String,
    /// SHA-256 of the source item recorded with the delivery.
    pub delivered_source_sha256: String,
    /// SHA-256 of the delivered email.
    pub email_sha256: String,
    /// The email's Message-ID.
    pub message_id: String,
    /// The run that delivered it.
    pub delivered_in_run: Option<RunId>,
    /// How it compares.
    pub status: PairStatus,
    /// Whether it is a mismatch.
    pub mismatch: bool,
}

/// Counts of one mailbox on one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DaySummary {
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The mailbox; empty for participants without one.
    pub mailbox: String,
    /// Items the source gave for this mailbox.
    pub seen: u64,
    /// Of those, delivered (now or before, or redelivered).
    pub delivered: u64,
    /// Of those, not delivered and held in the quarantine now (the
    /// participant has no mailbox, or the mailbox refused the item); a
    /// pair count, unlike a run's `quarantined` items.
    pub in_quarantine: u64,
    /// Mismatches.
    pub mismatches: u64,
}

/// A run's reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reconciliation {
    /// The run.
    pub run: RunId,
    /// Its connector.
    pub connector: String,
    /// Its kind.
    pub kind: RunKind,
    /// Whether the mailboxes themselves were checked.
    pub mailboxes_checked: bool,
    /// Items the run saw at the source.
    pub items_seen: u64,
    /// All mismatches.
    pub mismatches: u64,
    /// Per mailbox per day.
    pub days: Vec<DaySummary>,
    /// Every pair.
    pub rows: Vec<ReconRow>,
}

/// A mailbox store and folder to check deliveries against.
pub struct MailboxCheck<'a> {
    /// The connector's sink.
    pub sink: &'a mut dyn Sink,
    /// The folder its items go to, e.g. `INBOX/Chat`.
    pub folder: String,
}

fn day_of(ms: i64) -> String {
    iso(ms).chars().take(10).collect()
}

/// Compares what `run` saw at the source with the ledger (and, with
/// `check`, with the mailboxes).
pub fn reconcile(
    db: &dyn StateStore,
    run: &RunRecord,
    mut check: Option<MailboxCheck<'_>>,
) -> Result<Reconciliation, ReportError> {
    let connector = run.connector.as_str();
    let mut seen: Vec<SeenItem> = db.run_items(run.id)?;
    let failures = db.run_failures(run.id)?;
    if run.kind == RunKind::Redeliver {
        // A redelivery saw no source: its items are the ones it handled.
        let mut items: BTreeMap<String, SeenItem> = BTreeMap::new();
        for d in db.ledger_of_run(run.id)? {
            let e = items.entry(d.entry.item_id.clone()).or_insert(SeenItem {
                item_id: d.entry.item_id.clone(),
                source_sha256: d.entry.source_sha256.clone(),
                sent_at_ms: 0,
                mailboxes: Vec::new(),
                unmapped: Vec::new(),
            });
            e.mailboxes.push(d.entry.mailbox.clone());
        }
        for f in &failures {
            let e = items.entry(f.item_id.clone()).or_insert(SeenItem {
                item_id: f.item_id.clone(),
                source_sha256: String::new(),
                sent_at_ms: 0,
                mailboxes: Vec::new(),
                unmapped: Vec::new(),
            });
            match f.kind {
                FailureKind::Unmapped => e.unmapped.push(f.source_user_id.clone()),
                FailureKind::Refused => e.mailboxes.push(f.mailbox.clone()),
                FailureKind::External => {}
            }
        }
        let sent: HashMap<String, i64> = db
            .quarantine(connector)?
            .into_iter()
            .map(|q| (q.item_id, q.sent_at_ms))
            .collect();
        seen = items
            .into_values()
            .map(|mut i| {
                i.sent_at_ms = sent.get(&i.item_id).copied().unwrap_or(0);
                i
            })
            .collect();
    }
    let ids: Vec<&str> = seen.iter().map(|s| s.item_id.as_str()).collect();
    let mut delivered: HashMap<(String, String), connector_state::DeliveredPair> = HashMap::new();
    for d in db.ledger_for_items(connector, &ids)? {
        delivered.insert((d.entry.item_id.clone(), d.entry.mailbox.clone()), d);
    }
    let refused: BTreeSet<(&str, &str)> = failures
        .iter()
        .filter(|f| f.kind == FailureKind::Refused)
        .map(|f| (f.item_id.as_str(), f.mailbox.as_str()))
        .collect();
    let quarantined: BTreeSet<String> = db
        .quarantine(connector)?
        .into_iter()
        .map(|q| q.item_id)
        .collect();
    let mut rows = Vec::new();
    for item in &seen {
        let base = ReconRow {
            day: day_of(item.sent_at_ms),
            mailbox: String::new(),
            source_user_id: String::new(),
            item_id: item.item_id.clone(),
            sent_at: iso(item.sent_at_ms),
            source_sha256: item.source_sha256.clone(),
            delivered_source_sha256: String::new(),
            email_sha256: String::new(),
            message_id: String::new(),
            delivered_in_run: None,
            status: PairStatus::Missing,
            mismatch: false,
        };
        let expected: BTreeSet<&str> = item.mailboxes.iter().map(String::as_str).collect();
        let mut mailboxes: BTreeSet<&str> = expected.clone();
        for (i, m) in delivered.keys() {
            if *i == item.item_id {
                mailboxes.insert(m.as_str());
            }
        }
        for mailbox in mailboxes {
            let mut row = ReconRow {
                mailbox: mailbox.to_string(),
                ..base.clone()
            };
            match delivered.get(&(item.item_id.clone(), mailbox.to_string())) {
                Some(d) => {
                    row.delivered_source_sha256 = d.entry.source_sha256.clone();
                    row.email_sha256 = d.entry.email_sha256.clone();
                    row.message_id = d.entry.message_id.clone();
                    row.delivered_in_run = Some(d.run);
                    row.status = if !expected.contains(mailbox) {
                        PairStatus::Redelivered
                    } else if !item.source_sha256.is_empty()
                        && !d.entry.source_sha256.is_empty()
                        && d.entry.source_sha256 != item.source_sha256
                    {
                        PairStatus::SourceChanged
                    } else {
                        PairStatus::Delivered
                    };
                    if let Some(check) = check.as_mut()
                        && let Ok(mb) = Mailbox::new(mailbox)
                        && !check
                            .sink
                            .contains(&mb, &check.folder, &d.entry.message_id)?
                    {
                        row.status = PairStatus::NotInMailbox;
                    }
                }
                None if refused.contains(&(item.item_id.as_str(), mailbox)) => {
                    row.status = PairStatus::Refused;
                }
                None => row.status = PairStatus::Missing,
            }
            row.mismatch = row.status.is_mismatch();
            rows.push(row);
        }
        for person in &item.unmapped {
            rows.push(ReconRow {
                source_user_id: person.clone(),
                status: if quarantined.contains(&item.item_id) {
                    PairStatus::Quarantined
                } else {
                    PairStatus::MappedLater
                },
                ..base.clone()
            });
        }
    }
    let mut days: BTreeMap<(String, String), DaySummary> = BTreeMap::new();
    for r in &rows {
        let d = days
            .entry((r.day.clone(), r.mailbox.clone()))
            .or_insert_with(|| DaySummary {
                day: r.day.clone(),
                mailbox: r.mailbox.clone(),
                ..DaySummary::default()
            });
        d.seen += 1;
        match r.status {
            PairStatus::Delivered | PairStatus::Redelivered | PairStatus::SourceChanged => {
                d.delivered += 1
            }
            PairStatus::Quarantined | PairStatus::Refused => d.in_quarantine += 1,
            _ => {}
        }
        if r.mismatch {
            d.mismatches += 1;
        }
    }
    Ok(Reconciliation {
        run: run.id,
        connector: connector.to_string(),
        kind: run.kind,
        mailboxes_checked: check.is_some(),
        items_seen: seen.len() as u64,
        mismatches: rows.iter().filter(|r| r.mismatch).count() as u64,
        days: days.into_values().collect(),
        rows,
    })
}

/// The columns of [`write_reconciliation_csv`].
pub const RECONCILE_COLUMNS: [&str; 12] = [
    "Day",
    "Mailbox",
    "Source user id",
    "Item id",
    "Sent at",
    "Source SHA-256",
    "Delivered source SHA-256",
    "Email SHA-256",
    "Message-ID",
    "Delivered in run",
    "Status",
    "Mismatch",
];

/// Writes one CSV row per pair (or, with `by_day`, one per mailbox and
/// day: `Day,Mailbox,Seen,Delivered,In quarantine,Mismatches`).
pub fn write_reconciliation_csv(
    r: &Reconciliation,
    by_day: bool,
    out: impl Write,
) -> Result<(), ReportError> {
    let mut w = csv::Writer::from_writer(out);
    if by_day {
        w.write_record([
            "Day",
            "Mailbox",
            "Seen",
            "Delivered",
            "In quarantine",
            "Mismatches",
        ])?;
        for d in &r.days {
            w.write_record([
                d.day.clone(),
                d.mailbox.clone(),
                d.seen.to_string(),
                d.delivered.to_string(),
                d.in_quarantine.to_string(),
                d.mismatches.to_string(),
            ])?;
        }
    } else {
        w.write_record(RECONCILE_COLUMNS)?;
        for row in &r.rows {
            w.write_record([
                row.day.clone(),
                row.mailbox.clone(),
                row.source_user_id.clone(),
                row.item_id.clone(),
                row.sent_at.clone(),
                row.source_sha256.clone(),
                row.delivered_source_sha256.clone(),
                row.email_sha256.clone(),
                row.message_id.clone(),
                row.delivered_in_run
                    .map(|r| r.0.to_string())
                    .unwrap_or_default(),
                row.status.as_str().to_string(),
                if row.mismatch { "yes" } else { "no" }.to_string(),
            ])?;
        }
    }
    w.flush()?;
    Ok(())
}
