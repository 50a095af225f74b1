//! The `runs` table, with each run's items (`run_items`), failures
//! (`run_failures`) and the conversations it could not read
//! (`run_unreadable`).

use connector_model::{TimestampMs, Unreadable};
use postgres::{Row, Transaction};

use crate::conversations::last_of_each;
use crate::{Fail, PostgresStore, Session, to_i64, to_u64};
use connector_state::encoding;
use connector_state::records::*;
use connector_state::{RunHistory, StateError};

/// The columns [`PostgresStore::query_unreadable`] reads, in its order.
macro_rules! unreadable_columns {
    () => {
        "SELECT run_id, reported_at_ms, conversation, reason, fix FROM run_unreadable "
    };
}

/// The columns [`run_record`] reads, in its order.
macro_rules! run_columns {
    () => {
        "SELECT id, connector, started_at_ms, finished_at_ms, outcome, pages,
            items_from_source, items_for_import, imported, skipped_duplicates,
            failed, quarantined, error, kind, range_from_ms, range_to_ms, pid,
            partially_imported
         FROM runs "
    };
}

impl RunHistory for PostgresStore {
    fn begin_run_of(
        &mut self,
        connector: &str,
        started_at_ms: i64,
        kind: RunKind,
        range_ms: Option<(TimestampMs, TimestampMs)>,
    ) -> Result<RunId, StateError> {
        self.with(|c| {
            let row = c.session().query_one(
                "INSERT INTO runs (connector, started_at_ms, kind, range_from_ms, range_to_ms, pid)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &connector,
                    &started_at_ms,
                    &kind.as_str(),
                    &range_ms.map(|r| r.0),
                    &range_ms.map(|r| r.1),
                    &i64::from(std::process::id()),
                ],
            )?;
            Ok(RunId(row.get(0)))
        })
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
        self.with(|c| {
            let changed = c.session().execute(
                "UPDATE runs SET finished_at_ms = $1, outcome = $2, error = $3,
                    pages = GREATEST(pages, $4), items_from_source = GREATEST(items_from_source, $5),
                    items_for_import = GREATEST(items_for_import, $6),
                    imported = GREATEST(imported, $7),
                    skipped_duplicates = GREATEST(skipped_duplicates, $8),
                    failed = GREATEST(failed, $9), quarantined = GREATEST(quarantined, $10),
                    partially_imported = GREATEST(partially_imported, $12)
                 WHERE id = $11",
                &[
                    &finished_at_ms,
                    &outcome.as_str(),
                    &error,
                    &p,
                    &s,
                    &f,
                    &i,
                    &d,
                    &x,
                    &q,
                    &run.0,
                    &pi,
                ],
            )?;
            if changed == 0 {
                return Err(Fail::State(StateError::UnknownRun { run }));
            }
            Ok(())
        })
    }

    fn interrupt_unfinished(&mut self, connector: &str, now_ms: i64) -> Result<usize, StateError> {
        self.with(|c| {
            let n = c.session().execute(
                "UPDATE runs SET outcome = 'interrupted', finished_at_ms = $2,
                    error = COALESCE(error, 'the run did not finish (the process stopped)')
                 WHERE connector = $1 AND outcome IS NULL",
                &[&connector, &now_ms],
            )?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn runs(&self, connector: &str, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        self.query_runs(
            concat!(
                run_columns!(),
                "WHERE connector = $1 ORDER BY id DESC LIMIT $2"
            ),
            &[&connector, &to_i64(limit as u64)],
        )
    }

    fn run(&self, run: RunId) -> Result<Option<RunRecord>, StateError> {
        Ok(self
            .query_runs(concat!(run_columns!(), "WHERE id = $1"), &[&run.0])?
            .into_iter()
            .next())
    }

    fn last_finished_run(&self, connector: &str) -> Result<Option<RunRecord>, StateError> {
        Ok(self
            .query_runs(
                concat!(
                    run_columns!(),
                    "WHERE connector = $1 AND outcome IS NOT NULL AND kind <> 'redeliver'
                     ORDER BY id DESC LIMIT 1"
                ),
                &[&connector],
            )?
            .into_iter()
            .next())
    }

    fn last_scheduled_run(&self, connector: &str) -> Result<Option<RunRecord>, StateError> {
        Ok(self
            .query_runs(
                concat!(
                    run_columns!(),
                    "WHERE connector = $1 AND kind = 'run' ORDER BY id DESC LIMIT 1"
                ),
                &[&connector],
            )?
            .into_iter()
            .next())
    }

    fn prune_runs_before(&mut self, cutoff_ms: TimestampMs) -> Result<u64, StateError> {
        self.with(|c| {
            c.transaction(|tx| {
                tx.execute(
                    "DELETE FROM run_items WHERE run_id IN (SELECT id FROM runs
                     WHERE finished_at_ms IS NOT NULL AND finished_at_ms < $1)",
                    &[&cutoff_ms],
                )?;
                tx.execute(
                    "DELETE FROM run_failures WHERE run_id IN (SELECT id FROM runs
                     WHERE finished_at_ms IS NOT NULL AND finished_at_ms < $1)",
                    &[&cutoff_ms],
                )?;
                tx.execute(
                    "DELETE FROM run_unreadable WHERE run_id IN (SELECT id FROM runs
                     WHERE finished_at_ms IS NOT NULL AND finished_at_ms < $1)",
                    &[&cutoff_ms],
                )?;
                tx.execute(
                    "DELETE FROM runs WHERE finished_at_ms IS NOT NULL AND finished_at_ms < $1",
                    &[&cutoff_ms],
                )
            })
        })
    }

    fn connectors(&self) -> Result<Vec<String>, StateError> {
        self.with(|c| {
            let rows = c.session().query(
                "SELECT connector FROM runs UNION SELECT connector FROM quarantine
                 UNION SELECT connector FROM ledger_items ORDER BY 1",
                &[],
            )?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn connector_totals(&self, connector: &str) -> Result<ConnectorTotals, StateError> {
        self.with(|c| {
            let mut s = c.session();
            let mut totals = ConnectorTotals::default();
            // The sums in the order of `encoding::RUN_COUNT_COLUMNS`.
            let rows = s.query(
                "SELECT outcome, COUNT(*), SUM(pages)::bigint, SUM(items_from_source)::bigint,
                    SUM(items_for_import)::bigint, SUM(imported)::bigint,
                    SUM(skipped_duplicates)::bigint, SUM(failed)::bigint,
                    SUM(quarantined)::bigint, SUM(partially_imported)::bigint
                 FROM runs WHERE connector = $1 GROUP BY outcome",
                &[&connector],
            )?;
            for row in rows {
                // Runs still going (or cut short by a crash) count what
                // they committed, but are no finished run.
                if let Some(outcome) = row.get::<_, Option<String>>(0) {
                    encoding::parse_stored("run outcome", &outcome, RunOutcome::parse)?;
                    totals.runs_by_outcome.insert(outcome, to_u64(row.get(1)));
                }
                totals
                    .counts
                    .add(&RunCounts::from_columns(std::array::from_fn(|i| {
                        row.get(2 + i)
                    })));
            }
            totals.last_success_ms = s
                .query_one(
                    "SELECT MAX(finished_at_ms) FROM runs
                     WHERE connector = $1 AND outcome = 'succeeded'",
                    &[&connector],
                )?
                .get(0);
            Ok(totals)
        })
    }

    fn run_items(&self, run: RunId) -> Result<Vec<SeenItem>, StateError> {
        self.with(|c| {
            let rows = c.session().query(
                "SELECT item_id, source_sha256, sent_at_ms, mailboxes::text, unmapped::text
                 FROM run_items WHERE run_id = $1 ORDER BY sent_at_ms, item_id",
                &[&run.0],
            )?;
            rows.iter()
                .map(|r| {
                    Ok(SeenItem {
                        item_id: r.get(0),
                        source_sha256: r.get(1),
                        sent_at_ms: r.get(2),
                        mailboxes: encoding::parse_list(r.get(3))?,
                        unmapped: encoding::parse_list(r.get(4))?,
                    })
                })
                .collect()
        })
    }

    fn run_failures(&self, run: RunId) -> Result<Vec<RunFailure>, StateError> {
        self.with(|c| {
            let rows = c.session().query(
                "SELECT item_id, source_user_id, mailbox, kind, reason
                 FROM run_failures WHERE run_id = $1 ORDER BY id",
                &[&run.0],
            )?;
            rows.iter()
                .map(|r| {
                    Ok(RunFailure {
                        item_id: r.get(0),
                        source_user_id: r.get(1),
                        mailbox: r.get(2),
                        kind: encoding::parse_stored("failure kind", r.get(3), FailureKind::parse)?,
                        reason: r.get(4),
                    })
                })
                .collect()
        })
    }

    fn run_unreadable(&self, run: RunId) -> Result<Vec<UnreadableRecord>, StateError> {
        self.query_unreadable(
            concat!(
                unreadable_columns!(),
                "WHERE run_id = $1 ORDER BY conversation"
            ),
            &[&run.0],
        )
    }

    fn unreadable(&self, connector: &str) -> Result<Vec<UnreadableRecord>, StateError> {
        let mut out = self.query_unreadable(
            concat!(
                unreadable_columns!(),
                "WHERE connector = $1 AND run_id >= COALESCE((SELECT MAX(id) FROM runs
                     WHERE connector = $1 AND outcome = 'succeeded' AND kind <> 'redeliver'), 0)
                 ORDER BY conversation, run_id DESC"
            ),
            &[&connector],
        )?;
        out.dedup_by(|later, kept| later.report.conversation_id == kept.report.conversation_id);
        Ok(out)
    }

    fn refused_mailboxes(
        &self,
        connector: &str,
        item_id: &str,
    ) -> Result<Vec<(String, String)>, StateError> {
        self.with(|c| {
            let rows = c.session().query(
                "SELECT f.mailbox, MIN(f.source_user_id) FROM run_failures f
                 WHERE f.connector = $1 AND f.item_id = $2 AND f.kind = 'refused'
                   AND NOT EXISTS (SELECT 1 FROM ledger_items i JOIN deliveries d ON d.item = i.id
                                   WHERE i.connector = f.connector AND i.item_id = f.item_id
                                     AND d.mailbox = f.mailbox)
                 GROUP BY f.mailbox ORDER BY f.mailbox",
                &[&connector, &item_id],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }
}

impl PostgresStore {
    /// The reports `sql` (an [`unreadable_columns`] query) selects.
    fn query_unreadable(
        &self,
        sql: &'static str,
        params: crate::Params<'_>,
    ) -> Result<Vec<UnreadableRecord>, StateError> {
        self.with(|c| {
            let rows = c.session().query(sql, params)?;
            Ok(rows.iter().map(|r| unreadable_record(r, 0)).collect())
        })
    }

    /// The runs `sql` (a [`run_columns`] query) selects.
    fn query_runs(
        &self,
        sql: &'static str,
        params: crate::Params<'_>,
    ) -> Result<Vec<RunRecord>, StateError> {
        self.with(|c| {
            let rows = c.session().query(sql, params)?;
            rows.iter().map(run_record).collect()
        })
    }
}

/// The report in the [`unreadable_columns`] of a row, from column `first`.
pub(crate) fn unreadable_record(r: &Row, first: usize) -> UnreadableRecord {
    UnreadableRecord {
        run: RunId(r.get(first)),
        reported_at_ms: r.get(first + 1),
        report: Unreadable {
            conversation_id: r.get(first + 2),
            reason: r.get(first + 3),
            fix: r.get(first + 4),
        },
    }
}

pub(crate) fn run_record(r: &Row) -> Result<RunRecord, Fail> {
    let range: (Option<i64>, Option<i64>) = (r.get(14), r.get(15));
    Ok(RunRecord {
        id: RunId(r.get(0)),
        connector: r.get(1),
        started_at_ms: r.get(2),
        finished_at_ms: r.get(3),
        outcome: r
            .get::<_, Option<&str>>(4)
            .map(|o| encoding::parse_stored("run outcome", o, RunOutcome::parse))
            .transpose()?,
        // pages … quarantined, then partially_imported (added later).
        counts: RunCounts::from_columns(std::array::from_fn(|i| {
            r.get(if i < 7 { 5 + i } else { 17 })
        })),
        error: r.get(12),
        kind: encoding::parse_stored("run kind", r.get(13), RunKind::parse)?,
        range_ms: match range {
            (Some(from), Some(to)) => Some((from, to)),
            _ => None,
        },
        pid: r
            .get::<_, Option<i64>>(16)
            .and_then(|p| u32::try_from(p).ok()),
    })
}

/// Adds the page's counts to its run, and records the items it saw and
/// what could not be delivered, inside the page's transaction.
pub(crate) fn add_page(
    tx: &mut Session<'_, Transaction<'_>>,
    connector: &str,
    run: RunId,
    page: &PageCommit,
) -> Result<(), Fail> {
    let [p, s, f, i, d, x, q, pi] = page.counts.columns();
    let changed = tx.execute(
        "UPDATE runs SET pages = pages + $1, items_from_source = items_from_source + $2,
            items_for_import = items_for_import + $3, imported = imported + $4,
            skipped_duplicates = skipped_duplicates + $5, failed = failed + $6,
            quarantined = quarantined + $7, partially_imported = partially_imported + $10
         WHERE id = $8 AND connector = $9",
        &[&p, &s, &f, &i, &d, &x, &q, &run.0, &connector, &pi],
    )?;
    if changed == 0 {
        return Err(Fail::State(StateError::UnknownRun { run }));
    }
    record_items_and_failures(tx, connector, run, page)
}

/// Writes a page's seen items (an item seen again in the run replaces its
/// record), failures (in order) and unreadable conversations (a report
/// replaces the run's earlier one of the conversation), one statement each.
fn record_items_and_failures(
    tx: &mut Session<'_, Transaction<'_>>,
    connector: &str,
    run: RunId,
    page: &PageCommit,
) -> Result<(), Fail> {
    if !page.seen.is_empty() {
        let seen = last_of_each(&page.seen, |s| s.item_id.as_str());
        let mut mailboxes = Vec::with_capacity(seen.len());
        let mut unmapped = Vec::with_capacity(seen.len());
        for item in &seen {
            mailboxes.push(encoding::json_list(&item.mailboxes)?);
            unmapped.push(encoding::json_list(&item.unmapped)?);
        }
        tx.execute(
            "INSERT INTO run_items (run_id, connector, item_id, source_sha256, sent_at_ms,
                mailboxes, unmapped)
             SELECT $1, $2, u.item_id, u.source_sha256, u.sent_at_ms, u.mailboxes::jsonb,
                u.unmapped::jsonb
             FROM UNNEST($3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[])
                AS u(item_id, source_sha256, sent_at_ms, mailboxes, unmapped)
             ON CONFLICT (run_id, item_id) DO UPDATE SET
                connector = excluded.connector, source_sha256 = excluded.source_sha256,
                sent_at_ms = excluded.sent_at_ms, mailboxes = excluded.mailboxes,
                unmapped = excluded.unmapped",
            &[
                &run.0,
                &connector,
                &seen.iter().map(|s| s.item_id.as_str()).collect::<Vec<_>>(),
                &seen
                    .iter()
                    .map(|s| s.source_sha256.as_str())
                    .collect::<Vec<_>>(),
                &seen.iter().map(|s| s.sent_at_ms).collect::<Vec<i64>>(),
                &mailboxes,
                &unmapped,
            ],
        )?;
    }
    if !page.failures.is_empty() {
        let f = &page.failures;
        let text = |get: fn(&RunFailure) -> &str| -> Vec<&str> { f.iter().map(get).collect() };
        tx.execute(
            "INSERT INTO run_failures (run_id, connector, item_id, source_user_id, mailbox, kind,
                reason, at_ms)
             SELECT $1, $2, u.item_id, u.source_user_id, u.mailbox, u.kind, u.reason,
                state_now_ms()
             FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
                WITH ORDINALITY AS u(item_id, source_user_id, mailbox, kind, reason, n)
             ORDER BY u.n",
            &[
                &run.0,
                &connector,
                &text(|f| &f.item_id),
                &text(|f| &f.source_user_id),
                &text(|f| &f.mailbox),
                &text(|f| f.kind.as_str()),
                &text(|f| &f.reason),
            ],
        )?;
    }
    if !page.unreadable.is_empty() {
        let reports = last_of_each(&page.unreadable, |u| u.conversation_id.as_str());
        let text = |get: fn(&Unreadable) -> &str| -> Vec<&str> {
            reports.iter().map(|u| get(u)).collect()
        };
        tx.execute(
            "INSERT INTO run_unreadable (run_id, connector, conversation, reason, fix,
                reported_at_ms)
             SELECT $1, $2, u.conversation, u.reason, u.fix, state_now_ms()
             FROM UNNEST($3::text[], $4::text[], $5::text[]) AS u(conversation, reason, fix)
             ON CONFLICT (run_id, conversation) DO UPDATE SET
                reason = excluded.reason, fix = excluded.fix,
                reported_at_ms = excluded.reported_at_ms",
            &[
                &run.0,
                &connector,
                &text(|u| &u.conversation_id),
                &text(|u| &u.reason),
                &text(|u| &u.fix),
            ],
        )?;
    }
    Ok(())
}
