//! What the state keeps for operators and auditors beyond delivery itself:
//! the kind of each run, the items each run saw with their expected fan-out
//! and source SHA-256, and the failures of each run (participants without a
//! mailbox, mailboxes that refused an item). These feed the admin log, the
//! reconciliation report, the status page and the metrics.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Transaction, params};

use super::{LedgerEntry, PageCommit, RunId, RunOutcome, StateDb, StateError, TimestampMs, to_u64};

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

    pub(super) fn parse(s: &str) -> Result<RunKind, StateError> {
        match s {
            "run" => Ok(RunKind::Run),
            "backfill" => Ok(RunKind::Backfill),
            "redeliver" => Ok(RunKind::Redeliver),
            other => Err(StateError::Corrupt {
                what: "run kind",
                message: format!("`{other}`"),
            }),
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
}

impl FailureKind {
    /// The stored name: `unmapped` or `refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Unmapped => "unmapped",
            FailureKind::Refused => "refused",
        }
    }

    fn parse(s: &str) -> Result<FailureKind, StateError> {
        match s {
            "unmapped" => Ok(FailureKind::Unmapped),
            "refused" => Ok(FailureKind::Refused),
            other => Err(StateError::Corrupt {
                what: "failure kind",
                message: format!("`{other}`"),
            }),
        }
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
    /// (item, mailbox) pairs imported.
    pub imported: u64,
    /// Messages quarantined.
    pub quarantined: u64,
    /// Pairs that failed.
    pub failed: u64,
    /// Pairs skipped as already delivered.
    pub skipped_duplicates: u64,
    /// Messages received from the source.
    pub items_from_source: u64,
    /// When the last successful run finished.
    pub last_success_ms: Option<TimestampMs>,
}

fn json_list(list: &[String]) -> Result<String, StateError> {
    serde_json::to_string(list).map_err(|e| StateError::Corrupt {
        what: "list",
        message: e.to_string(),
    })
}

fn parse_list(text: &str) -> Result<Vec<String>, StateError> {
    serde_json::from_str(text).map_err(|e| StateError::Corrupt {
        what: "list of mailboxes or participants",
        message: e.to_string(),
    })
}

/// Writes a page's seen items and failures inside the page's transaction.
pub(super) fn record_page(
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
            json_list(&item.mailboxes)?,
            json_list(&item.unmapped)?,
        ])?;
    }
    let mut failure = tx.prepare_cached(
        "INSERT INTO run_failures (run_id, connector, item_id, source_user_id, mailbox, kind,
            reason, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let now = connector_model::time::now_ms();
    for f in &page.failures {
        failure.execute(params![
            run.0,
            connector,
            f.item_id,
            f.source_user_id,
            f.mailbox,
            f.kind.as_str(),
            f.reason,
            now,
        ])?;
    }
    Ok(())
}

impl StateDb {
    /// The failures a run recorded, in the order they happened.
    pub fn run_failures(&self, run: RunId) -> Result<Vec<RunFailure>, StateError> {
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
                kind: FailureKind::parse(&kind)?,
                reason,
            });
        }
        Ok(out)
    }

    /// The mailboxes that refused this item in any run and that the ledger
    /// still lacks, for redelivery.
    pub fn refused_mailboxes(
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

    /// The items a run received from the source, in sent order.
    pub fn run_items(&self, run: RunId) -> Result<Vec<SeenItem>, StateError> {
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
                mailboxes: parse_list(&mailboxes)?,
                unmapped: parse_list(&unmapped)?,
            });
        }
        Ok(out)
    }

    /// Every ledger entry of these items (any run), by item and mailbox.
    pub fn ledger_for_items<S: AsRef<str>>(
        &self,
        connector: &str,
        item_ids: &[S],
    ) -> Result<Vec<DeliveredPair>, StateError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT item_id, mailbox, message_id, email_sha256, source_sha256, receipt,
                    delivered_at_ms, run_id
             FROM ledger WHERE connector = ?1 AND item_id = ?2 ORDER BY mailbox",
        )?;
        let mut out = Vec::new();
        for id in item_ids {
            let rows = stmt.query_map(params![connector, id.as_ref()], ledger_row)?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }

    /// The ledger entries a run recorded.
    pub fn ledger_of_run(&self, run: RunId) -> Result<Vec<DeliveredPair>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT item_id, mailbox, message_id, email_sha256, source_sha256, receipt,
                    delivered_at_ms, run_id
             FROM ledger WHERE run_id = ?1 ORDER BY item_id, mailbox",
        )?;
        let rows = stmt.query_map([run.0], ledger_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether the item is in the quarantine.
    pub fn is_quarantined(&self, connector: &str, item_id: &str) -> Result<bool, StateError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM quarantine WHERE connector = ?1 AND item_id = ?2",
                params![connector, item_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Every connector id the database knows (from runs, the ledger or the
    /// quarantine), sorted.
    pub fn connectors(&self) -> Result<Vec<String>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT connector FROM runs UNION SELECT connector FROM quarantine
             UNION SELECT connector FROM ledger ORDER BY 1",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The connector's totals over the runs kept.
    pub fn connector_totals(&self, connector: &str) -> Result<ConnectorTotals, StateError> {
        let mut totals = ConnectorTotals::default();
        let mut stmt = self.conn.prepare(
            "SELECT outcome, COUNT(*), SUM(imported), SUM(quarantined), SUM(failed),
                    SUM(skipped_duplicates), SUM(items_from_source)
             FROM runs WHERE connector = ?1 AND outcome IS NOT NULL GROUP BY outcome",
        )?;
        let rows = stmt.query_map([connector], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })?;
        for row in rows {
            let (outcome, runs, imported, quarantined, failed, duplicates, from_source) = row?;
            RunOutcome::parse(&outcome)?;
            totals.runs_by_outcome.insert(outcome, to_u64(runs));
            totals.imported += to_u64(imported);
            totals.quarantined += to_u64(quarantined);
            totals.failed += to_u64(failed);
            totals.skipped_duplicates += to_u64(duplicates);
            totals.items_from_source += to_u64(from_source);
        }
        // Runs still going (or cut short by a crash) count what they committed.
        let (imported, quarantined, failed, duplicates, from_source): (i64, i64, i64, i64, i64) =
            self.conn.query_row(
                "SELECT COALESCE(SUM(imported), 0), COALESCE(SUM(quarantined), 0),
                        COALESCE(SUM(failed), 0), COALESCE(SUM(skipped_duplicates), 0),
                        COALESCE(SUM(items_from_source), 0)
                 FROM runs WHERE connector = ?1 AND outcome IS NULL",
                [connector],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?;
        totals.imported += to_u64(imported);
        totals.quarantined += to_u64(quarantined);
        totals.failed += to_u64(failed);
        totals.skipped_duplicates += to_u64(duplicates);
        totals.items_from_source += to_u64(from_source);
        totals.last_success_ms = self.conn.query_row(
            "SELECT MAX(finished_at_ms) FROM runs WHERE connector = ?1 AND outcome = 'succeeded'",
            [connector],
            |r| r.get(0),
        )?;
        Ok(totals)
    }

    /// The connector's last finished run that is not a redelivery, if any.
    pub fn last_finished_run(
        &self,
        connector: &str,
    ) -> Result<Option<super::RunRecord>, StateError> {
        Ok(self
            .query_runs(
                "WHERE connector = ?1 AND outcome IS NOT NULL AND kind <> 'redeliver'
                 ORDER BY id DESC LIMIT 1",
                params![connector],
            )?
            .into_iter()
            .next())
    }

    /// The connector's last scheduled run (started, whatever its outcome).
    pub fn last_scheduled_run(
        &self,
        connector: &str,
    ) -> Result<Option<super::RunRecord>, StateError> {
        Ok(self
            .query_runs(
                "WHERE connector = ?1 AND kind = 'run' ORDER BY id DESC LIMIT 1",
                params![connector],
            )?
            .into_iter()
            .next())
    }

    /// Removes the runs that finished before `cutoff_ms`, with their items
    /// and failures (the admin log and reconciliation of those runs). The
    /// ledger, the quarantine and the checkpoints are never pruned. Returns
    /// how many runs were removed.
    pub fn prune_runs_before(&mut self, cutoff_ms: TimestampMs) -> Result<u64, StateError> {
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
        let n = tx.execute(
            "DELETE FROM runs WHERE finished_at_ms IS NOT NULL AND finished_at_ms < ?1",
            [cutoff_ms],
        )?;
        tx.commit()?;
        Ok(n as u64)
    }
}

fn ledger_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveredPair> {
    Ok(DeliveredPair {
        entry: LedgerEntry {
            item_id: r.get(0)?,
            mailbox: r.get(1)?,
            message_id: r.get(2)?,
            email_sha256: r.get(3)?,
            source_sha256: r.get(4)?,
            receipt: r.get(5)?,
            delivered_at_ms: r.get(6)?,
        },
        run: RunId(r.get(7)?),
    })
}
