//! The `runs` table, with each run's items (`run_items`), failures
//! (`run_failures`) and the conversations it could not read
//! (`run_unreadable`).

use connector_model::{TimestampMs, Unreadable};
use rusqlite::{Transaction, params};

use crate::{SqliteStore, to_i64, to_u64};
use connector_state::RunHistory;
use connector_state::StateError;
use connector_state::encoding;
use connector_state::records::*;

impl RunHistory for SqliteStore {
    fn begin_run_of(
        &mut self,
        connector: &str,
        started_at_ms: i64,
        kind: RunKind,
        range_ms: Option<(TimestampMs, TimestampMs)>,
    ) -> Result<RunId, StateError> {
        self.conn.execute(
            "INSERT INTO runs (connector, started_at_ms, kind, range_from_ms, range_to_ms, pid)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                connector,
                started_at_ms,
                kind.as_str(),
                range_ms.map(|r| r.0),
                range_ms.map(|r| r.1),
                i64::from(std::process::id())
            ],
        )?;
        Ok(RunId(self.conn.last_insert_rowid()))
    }

    fn finish_run(
        &mut self,
        run: RunId,
        finished_at_ms: i64,
        outcome: RunOutcome,
        counts: &RunCounts,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        let [p, s, f, i, d, x, q, pi] = counts.columns();
        let changed = self.conn.execute(
            "UPDATE runs SET finished_at_ms = ?1, outcome = ?2, error = ?3,
                pages = MAX(pages, ?4), items_from_source = MAX(items_from_source, ?5),
                items_for_import = MAX(items_for_import, ?6), imported = MAX(imported, ?7),
                skipped_duplicates = MAX(skipped_duplicates, ?8), failed = MAX(failed, ?9),
                quarantined = MAX(quarantined, ?10),
                partially_imported = MAX(partially_imported, ?12)
             WHERE id = ?11",
            params![
                finished_at_ms,
                outcome.as_str(),
                error,
                p,
                s,
                f,
                i,
                d,
                x,
                q,
                run.0,
                pi
            ],
        )?;
        if changed == 0 {
            return Err(StateError::UnknownRun { run });
        }
        Ok(())
    }

    fn interrupt_unfinished(&mut self, connector: &str, now_ms: i64) -> Result<usize, StateError> {
        Ok(self.conn.execute(
            "UPDATE runs SET outcome = 'interrupted', finished_at_ms = ?2,
                error = COALESCE(error, 'the run did not finish (the process stopped)')
             WHERE connector = ?1 AND outcome IS NULL",
            params![connector, now_ms],
        )?)
    }

    fn runs(&self, connector: &str, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        self.query_runs(
            "WHERE connector = ?1 ORDER BY id DESC LIMIT ?2",
            params![connector, to_i64(limit as u64)],
        )
    }

    fn run(&self, run: RunId) -> Result<Option<RunRecord>, StateError> {
        Ok(self
            .query_runs("WHERE id = ?1", params![run.0])?
            .into_iter()
            .next())
    }

    fn last_finished_run(&self, connector: &str) -> Result<Option<RunRecord>, StateError> {
        Ok(self
            .query_runs(
                "WHERE connector = ?1 AND outcome IS NOT NULL AND kind <> 'redeliver'
                 ORDER BY id DESC LIMIT 1",
                params![connector],
            )?
            .into_iter()
            .next())
    }

    fn last_scheduled_run(&self, connector: &str) -> Result<Option<RunRecord>, StateError> {
        Ok(self
            .query_runs(
                "WHERE connector = ?1 AND kind = 'run' ORDER BY id DESC LIMIT 1",
                params![connector],
            )?
            .into_iter()
            .next())
    }

    fn prune_runs_before(&mut self, cutoff_ms: TimestampMs) -> Result<u64, StateError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let old = "SELECT id FROM runs WHERE finished_at_ms IS NOT NULL AND finished_at_ms < ?1";
        tx.execute(
            &format!("DELETE FROM run_items WHERE run_id IN ({old})"),
            [cutoff_ms],
        )?;
        tx.execute(
            &format!("DELETE FROM run_failures WHERE run_id IN ({old})"),
            [cutoff_ms],
        )?;
        tx.execute(
            &format!("DELETE FROM run_unreadable WHERE run_id IN ({old})"),
            [cutoff_ms],
        )?;
        let n = tx.execute(
            "DELETE FROM runs WHERE finished_at_ms IS NOT NULL AND finished_at_ms < ?1",
            [cutoff_ms],
        )?;
        tx.commit()?;
        Ok(n as u64)
    }

    fn connectors(&self) -> Result<Vec<String>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT connector FROM runs UNION SELECT connector FROM quarantine
             UNION SELECT connector FROM ledger ORDER BY 1",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn connector_totals(&self, connector: &str) -> Result<ConnectorTotals, StateError> {
        let mut totals = ConnectorTotals::default();
        let sums = encoding::RUN_COUNT_COLUMNS
            .map(|c| format!("COALESCE(SUM({c}), 0)"))
            .join(", ");
        let mut stmt = self.conn.prepare(&format!(
            "SELECT outcome, COUNT(*), {sums}
             FROM runs WHERE connector = ?1 GROUP BY outcome"
        ))?;
        let rows = stmt.query_map([connector], |r| {
            let mut columns = [0i64; 8];
            for (k, c) in columns.iter_mut().enumerate() {
                *c = r.get(k + 2)?;
            }
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, i64>(1)?,
                RunCounts::from_columns(columns),
            ))
        })?;
        for row in rows {
            let (outcome, runs, counts) = row?;
            // Runs still going (or cut short by a crash) count what they
            // committed, but are no finished run.
            if let Some(outcome) = outcome {
                encoding::parse_stored("run outcome", &outcome, RunOutcome::parse)?;
                totals.runs_by_outcome.insert(outcome, to_u64(runs));
            }
            totals.counts.add(&counts);
        }
        totals.last_success_ms = self.conn.query_row(
            "SELECT MAX(finished_at_ms) FROM runs WHERE connector = ?1 AND outcome = 'succeeded'",
            [connector],
            |r| r.get(0),
        )?;
        Ok(totals)
    }

    fn run_items(&self, run: RunId) -> Result<Vec<SeenItem>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT item_id, source_sha256, sent_at_ms, mailboxes, unmapped
             FROM run_items WHERE run_id = ?1 ORDER BY sent_at_ms, item_id",
        )?;
        let rows = stmt.query_map([run.0], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (item_id, source_sha256, sent_at_ms, mailboxes, unmapped) = row?;
            out.push(SeenItem {
                item_id,
                source_sha256,
                sent_at_ms,
                mailboxes: encoding::parse_list(&mailboxes)?,
                unmapped: encoding::parse_list(&unmapped)?,
            });
        }
        Ok(out)
    }

    fn run_failures(&self, run: RunId) -> Result<Vec<RunFailure>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT item_id, source_user_id, mailbox, kind, reason
             FROM run_failures WHERE run_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([run.0], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (item_id, source_user_id, mailbox, kind, reason) = row?;
            out.push(RunFailure {
                item_id,
                source_user_id,
                mailbox,
                kind: encoding::parse_stored("failure kind", &kind, FailureKind::parse)?,
                reason,
            });
        }
        Ok(out)
    }

    fn run_unreadable(&self, run: RunId) -> Result<Vec<UnreadableRecord>, StateError> {
        self.query_unreadable("WHERE run_id = ?1 ORDER BY conversation", params![run.0])
    }

    fn unreadable(&self, connector: &str) -> Result<Vec<UnreadableRecord>, StateError> {
        let mut out = self.query_unreadable(
            "WHERE connector = ?1 AND run_id >= COALESCE((SELECT MAX(id) FROM runs
                 WHERE connector = ?1 AND outcome = 'succeeded' AND kind <> 'redeliver'), 0)
             ORDER BY conversation, run_id DESC",
            params![connector],
        )?;
        out.dedup_by(|later, kept| later.report.conversation_id == kept.report.conversation_id);
        Ok(out)
    }

    fn refused_mailboxes(
        &self,
        connector: &str,
        item_id: &str,
    ) -> Result<Vec<(String, String)>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT f.mailbox, MIN(f.source_user_id) FROM run_failures f
             WHERE f.connector = ?1 AND f.item_id = ?2 AND f.kind = 'refused'
               AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.connector = f.connector
                               AND l.item_id = f.item_id AND l.mailbox = f.mailbox)
             GROUP BY f.mailbox ORDER BY f.mailbox",
        )?;
        let rows = stmt.query_map(params![connector, item_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl SqliteStore {
    /// Reports selected by an SQL tail (`WHERE … ORDER BY …`) over
    /// `run_unreadable`.
    fn query_unreadable(
        &self,
        tail: &str,
        values: impl rusqlite::Params,
    ) -> Result<Vec<UnreadableRecord>, StateError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {UNREADABLE_COLUMNS} FROM run_unreadable {tail}"
        ))?;
        let rows = stmt.query_map(values, |r| unreadable_record(r, 0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Runs selected by an SQL tail (`WHERE … ORDER BY …`) over `runs`.
    fn query_runs(
        &self,
        tail: &str,
        values: impl rusqlite::Params,
    ) -> Result<Vec<RunRecord>, StateError> {
        let mut out = Vec::new();
        self.for_each_run(tail, values, |run| {
            out.push(run);
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `each` with every run an SQL tail (`WHERE … ORDER BY …`)
    /// over `runs` selects, in order, one at a time.
    pub(super) fn for_each_run(
        &self,
        tail: &str,
        values: impl rusqlite::Params,
        mut each: impl FnMut(RunRecord) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT id, connector, started_at_ms, finished_at_ms, outcome, pages,
                    items_from_source, items_for_import, imported, skipped_duplicates,
                    failed, quarantined, error, kind, range_from_ms, range_to_ms, pid,
                    partially_imported
             FROM runs {tail}"
        ))?;
        let rows = stmt.query_map(values, |r| {
            let range: (Option<i64>, Option<i64>) = (r.get(14)?, r.get(15)?);
            Ok((
                RunRecord {
                    id: RunId(r.get(0)?),
                    connector: r.get(1)?,
                    started_at_ms: r.get(2)?,
                    finished_at_ms: r.get(3)?,
                    outcome: None,
                    counts: RunCounts::from_columns([
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                        r.get(10)?,
                        r.get(11)?,
                        r.get(17)?,
                    ]),
                    error: r.get(12)?,
                    kind: RunKind::Run,
                    range_ms: match range {
                        (Some(from), Some(to)) => Some((from, to)),
                        _ => None,
                    },
                    pid: r
                        .get::<_, Option<i64>>(16)?
                        .and_then(|p| u32::try_from(p).ok()),
                },
                r.get::<_, Option<String>>(4)?,
                r.get::<_, String>(13)?,
            ))
        })?;
        for row in rows {
            let (mut record, outcome, kind) = row?;
            record.outcome = outcome
                .as_deref()
                .map(|o| encoding::parse_stored("run outcome", o, RunOutcome::parse))
                .transpose()?;
            record.kind = encoding::parse_stored("run kind", &kind, RunKind::parse)?;
            each(record)?;
        }
        Ok(())
    }
}

/// Adds the page's counts to its run, and records the items it saw and
/// what could not be delivered, inside the page's transaction.
pub(super) fn add_page(
    tx: &Transaction<'_>,
    connector: &str,
    run: RunId,
    page: &PageCommit,
) -> Result<(), StateError> {
    let [p, s, f, i, d, x, q, pi] = page.counts.columns();
    let changed = tx.execute(
        "UPDATE runs SET pages = pages + ?1, items_from_source = items_from_source + ?2,
            items_for_import = items_for_import + ?3, imported = imported + ?4,
            skipped_duplicates = skipped_duplicates + ?5, failed = failed + ?6,
            quarantined = quarantined + ?7, partially_imported = partially_imported + ?10
         WHERE id = ?8 AND connector = ?9",
        params![p, s, f, i, d, x, q, run.0, connector, pi],
    )?;
    if changed == 0 {
        return Err(StateError::UnknownRun { run });
    }
    record_items_and_failures(tx, connector, run, page)
}

/// Writes a page's seen items, failures and unreadable conversations
/// inside the page's transaction.
fn record_items_and_failures(
    tx: &Transaction<'_>,
    connector: &str,
    run: RunId,
    page: &PageCommit,
) -> Result<(), StateError> {
    let mut seen = tx.prepare_cached(
        "INSERT OR REPLACE INTO run_items (run_id, connector, item_id, source_sha256,
            sent_at_ms, mailboxes, unmapped)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for item in &page.seen {
        seen.execute(params![
            run.0,
            connector,
            item.item_id,
            item.source_sha256,
            item.sent_at_ms,
            encoding::json_list(&item.mailboxes)?,
            encoding::json_list(&item.unmapped)?,
        ])?;
    }
    let now = connector_model::time::now_ms();
    for f in &page.failures {
        insert_failure(tx, run, connector, f, now)?;
    }
    for report in &page.unreadable {
        insert_unreadable(tx, run, connector, report, now)?;
    }
    Ok(())
}

/// The columns [`unreadable_record`] reads, in its order.
pub(super) const UNREADABLE_COLUMNS: &str = "run_id, reported_at_ms, conversation, reason, fix";

/// The report in the [`UNREADABLE_COLUMNS`] of a row, from column `first`.
pub(super) fn unreadable_record(
    r: &rusqlite::Row<'_>,
    first: usize,
) -> rusqlite::Result<UnreadableRecord> {
    Ok(UnreadableRecord {
        run: RunId(r.get(first)?),
        reported_at_ms: r.get(first + 1)?,
        report: Unreadable {
            conversation_id: r.get(first + 2)?,
            reason: r.get(first + 3)?,
            fix: r.get(first + 4)?,
        },
    })
}

/// Records that `run` could not read a conversation (replacing the run's
/// earlier report of it).
pub(super) fn insert_unreadable(
    tx: &Transaction<'_>,
    run: RunId,
    connector: &str,
    report: &Unreadable,
    at_ms: i64,
) -> Result<(), StateError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO run_unreadable (run_id, connector, conversation, reason, fix,
            reported_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        run.0,
        connector,
        report.conversation_id,
        report.reason,
        report.fix,
        at_ms,
    ])?;
    Ok(())
}

/// Records a failure of `run` that happened at `at_ms`.
pub(super) fn insert_failure(
    tx: &Transaction<'_>,
    run: RunId,
    connector: &str,
    failure: &RunFailure,
    at_ms: i64,
) -> Result<(), StateError> {
    tx.prepare_cached(
        "INSERT INTO run_failures (run_id, connector, item_id, source_user_id, mailbox, kind,
            reason, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        run.0,
        connector,
        failure.item_id,
        failure.source_user_id,
        failure.mailbox,
        failure.kind.as_str(),
        failure.reason,
        at_ms,
    ])?;
    Ok(())
}
