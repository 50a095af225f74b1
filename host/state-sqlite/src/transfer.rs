//! Transfers (`connector state migrate`): reading the whole state, every
//! table row by row from one read transaction (one snapshot of the file,
//! whatever other processes write meanwhile), and filling an empty state
//! in one transaction. Runs keep their ids; ledger items get new keys,
//! their deliveries finding them by (connector, item).

use rusqlite::{Connection, TransactionBehavior, params};

use crate::{SqliteStore, audit, controls, conversations, quarantine, runs, transcripts};
use connector_state::encoding;
use connector_state::transfer::{
    DeliveryRow, LedgerItemRow, Row, RowSink, StateExport, StateImport,
};
use connector_state::{
    FailureKind, PauseRecord, QuarantineEntry, RunFailure, RunId, RunRequest, SeenItem, StateError,
};

impl StateExport for SqliteStore {
    fn export_state(&self, sink: &mut dyn RowSink) -> Result<(), StateError> {
        // A read transaction: every table from the same snapshot.
        let tx = self.conn.unchecked_transaction()?;
        let conn: &Connection = &tx;
        {
            let mut stmt =
                conn.prepare("SELECT connector, data, run_id FROM checkpoints ORDER BY connector")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                sink.push(Row::Checkpoint {
                    key: r.get(0)?,
                    data: r.get(1)?,
                    run: r.get::<_, Option<i64>>(2)?.map(RunId),
                })?;
            }
        }
        self.for_each_run("ORDER BY connector, id", [], |run| sink.push(Row::Run(run)))?;
        {
            let mut stmt = conn.prepare(
                "SELECT run_id, connector, item_id, source_sha256, sent_at_ms, mailboxes, unmapped
                 FROM run_items ORDER BY connector, run_id, item_id",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                sink.push(Row::RunItem {
                    run: RunId(r.get(0)?),
                    connector: r.get(1)?,
                    item: SeenItem {
                        item_id: r.get(2)?,
                        source_sha256: r.get(3)?,
                        sent_at_ms: r.get(4)?,
                        mailboxes: encoding::parse_list(&r.get::<_, String>(5)?)?,
                        unmapped: encoding::parse_list(&r.get::<_, String>(6)?)?,
                    },
                })?;
            }
        }
        {
            let mut stmt = conn.prepare(
                "SELECT run_id, connector, item_id, source_user_id, mailbox, kind, reason, at_ms
                 FROM run_failures ORDER BY connector, id",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                sink.push(Row::RunFailure {
                    run: RunId(r.get(0)?),
                    connector: r.get(1)?,
                    failure: RunFailure {
                        item_id: r.get(2)?,
                        source_user_id: r.get(3)?,
                        mailbox: r.get(4)?,
                        kind: encoding::parse_stored(
                            "failure kind",
                            &r.get::<_, String>(5)?,
                            FailureKind::parse,
                        )?,
                        reason: r.get(6)?,
                    },
                    at_ms: r.get(7)?,
                })?;
            }
        }
        {
            let mut stmt = conn.prepare(&format!(
                "SELECT connector, {} FROM run_unreadable ORDER BY connector, run_id, conversation",
                runs::UNREADABLE_COLUMNS
            ))?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                sink.push(Row::RunUnreadable {
                    connector: r.get(0)?,
                    record: runs::unreadable_record(r, 1)?,
                })?;
            }
        }
        {
            let mut stmt = conn.prepare(
                "SELECT connector, item_id, message_id, source_sha256, email_sha256,
                    first_delivered_at_ms
                 FROM ledger_items ORDER BY connector, item_id",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                sink.push(Row::LedgerItem(LedgerItemRow {
                    connector: r.get(0)?,
                    item_id: r.get(1)?,
                    message_id: r.get(2)?,
                    source_sha256: r.get(3)?,
                    email_sha256: r.get(4)?,
                    first_delivered_at_ms: r.get(5)?,
                }))?;
            }
        }
        {
            let mut stmt = conn.prepare(
                "SELECT i.connector, i.item_id, d.mailbox, d.receipt, d.delivered_at_ms, d.run_id,
                    d.email_sha256
                 FROM deliveries d JOIN ledger_items i ON i.item_key = d.item_key
                 ORDER BY i.connector, i.item_id, d.mailbox",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                sink.push(Row::Delivery(DeliveryRow {
                    connector: r.get(0)?,
                    item_id: r.get(1)?,
                    mailbox: r.get(2)?,
                    receipt: r.get(3)?,
                    delivered_at_ms: r.get(4)?,
                    run: RunId(r.get(5)?),
                    email_sha256: r.get(6)?,
                }))?;
            }
        }
        {
            let mut stmt = conn.prepare(
                "SELECT connector, item_id, message_id, rowid, length(email), sent_at_ms,
                    unmapped, reason, source_sha256, run_id
                 FROM quarantine ORDER BY connector, item_id",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let message_id: String = r.get(2)?;
                let sent_at_ms: i64 = r.get(5)?;
                let email =
                    quarantine::read_email(conn, r.get(3)?, r.get(4)?, &message_id, sent_at_ms)?;
                let unmapped: String = r.get(6)?;
                sink.push(Row::Quarantine {
                    connector: r.get(0)?,
                    run: RunId(r.get(9)?),
                    entry: QuarantineEntry {
                        item_id: r.get(1)?,
                        message_id,
                        email,
                        sent_at_ms,
                        unmapped: encoding::parse_unmapped(&unmapped)?,
                        reason: r.get(7)?,
                        source_sha256: r.get(8)?,
                    },
                })?;
            }
        }
        {
            let mut stmt =
                conn.prepare("SELECT connector, key, value FROM kv ORDER BY connector, key")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                sink.push(Row::Kv {
                    connector: r.get(0)?,
                    key: r.get(1)?,
                    value: r.get(2)?,
                })?;
            }
        }
        {
            let mut stmt = conn.prepare(
                "SELECT connector, description FROM conversations ORDER BY connector, id",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let description: String = r.get(1)?;
                sink.push(Row::Conversation {
                    connector: r.get(0)?,
                    conversation: encoding::parse_conversation(&description)?,
                })?;
            }
        }
        {
            let mut stmt = conn.prepare(&format!(
                "SELECT {} FROM transcript_lines ORDER BY connector, conversation, day, item_id",
                transcripts::LINE_COLUMNS
            ))?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let (connector, line, delivered) = transcripts::line_of_row(r)?;
                sink.push(Row::TranscriptLine {
                    connector,
                    line,
                    delivered,
                })?;
            }
        }
        {
            let mut stmt = conn.prepare(
                "SELECT connector, paused_by, paused_at_ms FROM connector_pauses ORDER BY connector",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                sink.push(Row::Pause {
                    connector: r.get(0)?,
                    pause: PauseRecord {
                        by: r.get(1)?,
                        at_ms: r.get(2)?,
                    },
                })?;
            }
        }
        {
            let mut stmt = conn.prepare(
                "SELECT connector, requested_by, requested_at_ms FROM run_requests
                 ORDER BY connector",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                sink.push(Row::RunRequest {
                    connector: r.get(0)?,
                    request: RunRequest {
                        by: r.get(1)?,
                        at_ms: r.get(2)?,
                    },
                })?;
            }
        }
        {
            let mut stmt = conn.prepare(&format!(
                "SELECT {} FROM audit_trail ORDER BY seq",
                audit::RECORD_COLUMNS
            ))?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                sink.push(Row::Audit(audit::record_of_row(r)?))?;
            }
        }
        tx.finish()?;
        Ok(())
    }

    fn held_state(&self) -> Result<Option<String>, StateError> {
        let mut held = Vec::new();
        for (table, what) in [
            ("runs", "runs"),
            ("deliveries", "deliveries"),
            ("quarantine", "quarantined messages"),
            ("checkpoints", "checkpoints"),
            ("kv", "plugin values"),
            ("connector_pauses", "paused connectors"),
            ("audit_trail", "audit records"),
        ] {
            let n: i64 =
                self.conn
                    .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
            if n > 0 {
                held.push(format!("{n} {what}"));
            }
        }
        Ok((!held.is_empty()).then(|| held.join(", ")))
    }
}

impl StateImport for SqliteStore {
    fn import_state(
        &mut self,
        feed: &mut dyn FnMut(&mut dyn RowSink) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        feed(&mut |row: Row| write(&tx, row))?;
        // Run ids: AUTOINCREMENT continues after the largest id inserted.
        tx.commit()?;
        Ok(())
    }
}

/// Writes one row of a transfer inside its transaction.
fn write(tx: &rusqlite::Transaction<'_>, row: Row) -> Result<(), StateError> {
    match row {
        Row::Checkpoint { key, data, run } => {
            tx.prepare_cached(
                "INSERT INTO checkpoints (connector, data, run_id) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![key, data, run.map(|r| r.0)])?;
        }
        Row::Run(r) => {
            let [p, s, f, i, d, x, q, pi] = r.counts.columns();
            tx.prepare_cached(
                "INSERT INTO runs (id, connector, started_at_ms, finished_at_ms, outcome, pages,
                    items_from_source, items_for_import, imported, skipped_duplicates, failed,
                    quarantined, error, kind, range_from_ms, range_to_ms, pid, partially_imported)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                    ?17, ?18)",
            )?
            .execute(params![
                r.id.0,
                r.connector,
                r.started_at_ms,
                r.finished_at_ms,
                r.outcome.map(|o| o.as_str()),
                p,
                s,
                f,
                i,
                d,
                x,
                q,
                r.error,
                r.kind.as_str(),
                r.range_ms.map(|r| r.0),
                r.range_ms.map(|r| r.1),
                r.pid.map(i64::from),
                pi,
            ])?;
        }
        Row::RunItem {
            run,
            connector,
            item,
        } => {
            tx.prepare_cached(
                "INSERT INTO run_items (run_id, connector, item_id, source_sha256, sent_at_ms,
                    mailboxes, unmapped)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                run.0,
                connector,
                item.item_id,
                item.source_sha256,
                item.sent_at_ms,
                encoding::json_list(&item.mailboxes)?,
                encoding::json_list(&item.unmapped)?
            ])?;
        }
        Row::RunFailure {
            run,
            connector,
            failure,
            at_ms,
        } => runs::insert_failure(tx, run, &connector, &failure, at_ms)?,
        Row::RunUnreadable { connector, record } => runs::insert_unreadable(
            tx,
            record.run,
            &connector,
            &record.report,
            record.reported_at_ms,
        )?,
        Row::LedgerItem(i) => {
            tx.prepare_cached(
                "INSERT INTO ledger_items (connector, item_id, message_id, source_sha256,
                    email_sha256, first_delivered_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                i.connector,
                i.item_id,
                i.message_id,
                i.source_sha256,
                i.email_sha256,
                i.first_delivered_at_ms
            ])?;
        }
        Row::Delivery(d) => {
            let written = tx
                .prepare_cached(
                    "INSERT INTO deliveries (item_key, mailbox, receipt, delivered_at_ms, run_id,
                        email_sha256)
                     SELECT item_key, ?3, ?4, ?5, ?6, ?7 FROM ledger_items
                     WHERE connector = ?1 AND item_id = ?2",
                )?
                .execute(params![
                    d.connector,
                    d.item_id,
                    d.mailbox,
                    d.receipt,
                    d.delivered_at_ms,
                    d.run.0,
                    d.email_sha256
                ])?;
            if written != 1 {
                return Err(StateError::Corrupt {
                    what: "ledger",
                    message: format!(
                        "a delivery of item `{}` of connector `{}` names an item the source's ledger lacks",
                        d.item_id, d.connector
                    ),
                });
            }
        }
        Row::Quarantine {
            connector,
            run,
            entry,
        } => {
            let entries = std::slice::from_ref(&entry);
            let unmapped = encoding::unmapped_lists(entries)?;
            quarantine::insert(tx, &connector, run, entries, &unmapped)?;
        }
        Row::Kv {
            connector,
            key,
            value,
        } => {
            tx.prepare_cached("INSERT INTO kv (connector, key, value) VALUES (?1, ?2, ?3)")?
                .execute(params![connector, key, value])?;
        }
        Row::Conversation {
            connector,
            conversation,
        } => {
            conversations::store(tx, &connector, std::slice::from_ref(&conversation))?;
        }
        Row::TranscriptLine {
            connector,
            line,
            delivered,
        } => {
            transcripts::insert(tx, &connector, &line, delivered)?;
        }
        Row::Pause { connector, pause } => controls::insert_pause(tx, &connector, &pause)?,
        Row::RunRequest { connector, request } => {
            controls::insert_request(tx, &connector, &request)?;
        }
        // In order of number: the head ends at the last one.
        Row::Audit(record) => audit::insert(tx, &record)?,
    }
    Ok(())
}
