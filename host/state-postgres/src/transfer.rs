//! Transfers (`connector state migrate`): reading the whole state, from
//! one repeatable-read snapshot through server-side cursors, and filling
//! an empty database in one transaction, rows written in batches. Runs
//! keep their ids (the id sequence is advanced past them); ledger items
//! get new keys, their deliveries finding them by (connector, item).

use postgres::{IsolationLevel, Transaction};

use crate::runs::{self, run_record};
use crate::{Fail, PostgresStore, Session, conversations, corrupt, ledger, query_error};
use crate::{audit, controls, quarantine, to_u64, transcripts};
use connector_state::encoding;
use connector_state::transfer::{
    DeliveryRow, LedgerItemRow, Row, RowSink, StateExport, StateImport, Table,
};
use connector_state::{
    FailureKind, PauseRecord, QuarantineEntry, RunFailure, RunId, RunRequest, SeenItem, StateError,
};

/// Rows fetched from a cursor at a time.
const FETCH: i32 = 1000;
/// Quarantine rows fetched at a time (each may carry an email).
const FETCH_QUARANTINE: i32 = 4;
/// Rows written per statement.
const BATCH: usize = 1000;

/// Calls `each` with every row `sql` selects, fetched `fetch` at a time
/// from a cursor (other queries may run in between).
fn each_row<'t>(
    tx: &mut Transaction<'t>,
    sql: &str,
    fetch: i32,
    mut each: impl FnMut(&mut Transaction<'t>, &postgres::Row) -> Result<(), Fail>,
) -> Result<(), Fail> {
    let portal = tx.bind(sql, &[])?;
    loop {
        let rows = tx.query_portal(&portal, fetch)?;
        if rows.is_empty() {
            return Ok(());
        }
        for row in &rows {
            each(tx, row)?;
        }
    }
}

/// Lifts the store's idle-transaction limit for a transfer's one
/// transaction, which waits on the other store between its statements.
fn allow_slow_client(tx: &mut Transaction<'_>) -> Result<(), Fail> {
    tx.batch_execute("SET LOCAL idle_in_transaction_session_timeout = 0")?;
    Ok(())
}

impl StateExport for PostgresStore {
    fn export_state(&self, sink: &mut dyn RowSink) -> Result<(), StateError> {
        self.with(|c| {
            let mut tx = c
                .client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            allow_slow_client(&mut tx)?;
            let mut send = |row: Row| sink.push(row).map_err(Fail::State);
            each_row(
                &mut tx,
                "SELECT connector, data, run_id FROM checkpoints ORDER BY connector",
                FETCH,
                |_, r| {
                    send(Row::Checkpoint {
                        key: r.get(0),
                        data: r.get(1),
                        run: r.get::<_, Option<i64>>(2).map(RunId),
                    })
                },
            )?;
            each_row(
                &mut tx,
                "SELECT id, connector, started_at_ms, finished_at_ms, outcome, pages,
                    items_from_source, items_for_import, imported, skipped_duplicates, failed,
                    quarantined, error, kind, range_from_ms, range_to_ms, pid, partially_imported
                 FROM runs ORDER BY connector, id",
                FETCH,
                |_, r| send(Row::Run(run_record(r)?)),
            )?;
            each_row(
                &mut tx,
                "SELECT run_id, connector, item_id, source_sha256, sent_at_ms, mailboxes::text,
                    unmapped::text
                 FROM run_items ORDER BY connector, run_id, item_id",
                FETCH,
                |_, r| {
                    send(Row::RunItem {
                        run: RunId(r.get(0)),
                        connector: r.get(1),
                        item: SeenItem {
                            item_id: r.get(2),
                            source_sha256: r.get(3),
                            sent_at_ms: r.get(4),
                            mailboxes: encoding::parse_list(r.get(5))?,
                            unmapped: encoding::parse_list(r.get(6))?,
                        },
                    })
                },
            )?;
            each_row(
                &mut tx,
                "SELECT run_id, connector, item_id, source_user_id, mailbox, kind, reason, at_ms
                 FROM run_failures ORDER BY connector, id",
                FETCH,
                |_, r| {
                    let kind: &str = r.get(5);
                    send(Row::RunFailure {
                        run: RunId(r.get(0)),
                        connector: r.get(1),
                        failure: RunFailure {
                            item_id: r.get(2),
                            source_user_id: r.get(3),
                            mailbox: r.get(4),
                            kind: FailureKind::parse(kind)
                                .ok_or_else(|| corrupt("failure kind", format!("`{kind}`")))?,
                            reason: r.get(6),
                        },
                        at_ms: r.get(7),
                    })
                },
            )?;
            each_row(
                &mut tx,
                "SELECT run_id, reported_at_ms, conversation, reason, fix, connector
                 FROM run_unreadable ORDER BY connector, run_id, conversation",
                FETCH,
                |_, r| {
                    send(Row::RunUnreadable {
                        connector: r.get(5),
                        record: runs::unreadable_record(r, 0),
                    })
                },
            )?;
            each_row(
                &mut tx,
                "SELECT connector, item_id, message_id, source_sha256, email_sha256,
                    first_delivered_at_ms
                 FROM ledger_items ORDER BY connector, item_id",
                FETCH,
                |_, r| {
                    send(Row::LedgerItem(LedgerItemRow {
                        connector: r.get(0),
                        item_id: r.get(1),
                        message_id: r.get(2),
                        source_sha256: r.get(3),
                        email_sha256: r.get(4),
                        first_delivered_at_ms: r.get(5),
                    }))
                },
            )?;
            each_row(
                &mut tx,
                "SELECT i.connector, i.item_id, d.mailbox, d.receipt, d.delivered_at_ms, d.run_id,
                    d.email_sha256
                 FROM deliveries d JOIN ledger_items i ON i.id = d.item
                 ORDER BY i.connector, i.item_id, d.mailbox",
                FETCH,
                |_, r| {
                    send(Row::Delivery(DeliveryRow {
                        connector: r.get(0),
                        item_id: r.get(1),
                        mailbox: r.get(2),
                        receipt: r.get(3),
                        delivered_at_ms: r.get(4),
                        run: RunId(r.get(5)),
                        email_sha256: r.get(6),
                    }))
                },
            )?;
            each_row(
                &mut tx,
                "SELECT connector, item_id, message_id, email_len, sent_at_ms, unmapped::text,
                    reason, source_sha256, email, run_id
                 FROM quarantine ORDER BY connector, item_id",
                FETCH_QUARANTINE,
                |tx, r| {
                    let connector: String = r.get(0);
                    let item_id: String = r.get(1);
                    let message_id: String = r.get(2);
                    let sent_at_ms: i64 = r.get(4);
                    let email = quarantine::read_email(
                        tx,
                        quarantine::CHUNKS_OF_ITEM,
                        (&connector, &item_id),
                        &message_id,
                        sent_at_ms,
                        to_u64(r.get(3)),
                        r.get(8),
                    )?;
                    send(Row::Quarantine {
                        connector,
                        run: RunId(r.get(9)),
                        entry: QuarantineEntry {
                            item_id,
                            message_id,
                            email,
                            sent_at_ms,
                            unmapped: encoding::parse_unmapped(r.get(5))?,
                            reason: r.get(6),
                            source_sha256: r.get(7),
                        },
                    })
                },
            )?;
            each_row(
                &mut tx,
                "SELECT connector, key, value FROM kv ORDER BY connector, key",
                FETCH,
                |_, r| {
                    send(Row::Kv {
                        connector: r.get(0),
                        key: r.get(1),
                        value: r.get(2),
                    })
                },
            )?;
            each_row(
                &mut tx,
                "SELECT connector, description::text FROM conversations ORDER BY connector, id",
                FETCH,
                |_, r| {
                    send(Row::Conversation {
                        connector: r.get(0),
                        conversation: encoding::parse_conversation(r.get(1))?,
                    })
                },
            )?;
            each_row(
                &mut tx,
                &format!(
                    "SELECT {} FROM transcript_lines ORDER BY connector, conversation, day, item_id",
                    transcripts::LINE_COLUMNS
                ),
                FETCH,
                |_, r| {
                    let (connector, line, delivered) = transcripts::line_of_row(r);
                    send(Row::TranscriptLine {
                        connector,
                        line,
                        delivered,
                    })
                },
            )?;
            each_row(
                &mut tx,
                "SELECT connector, paused_by, paused_at_ms FROM connector_pauses ORDER BY connector",
                FETCH,
                |_, r| {
                    send(Row::Pause {
                        connector: r.get(0),
                        pause: PauseRecord {
                            by: r.get(1),
                            at_ms: r.get(2),
                        },
                    })
                },
            )?;
            each_row(
                &mut tx,
                "SELECT connector, requested_by, requested_at_ms FROM run_requests
                 ORDER BY connector",
                FETCH,
                |_, r| {
                    send(Row::RunRequest {
                        connector: r.get(0),
                        request: RunRequest {
                            by: r.get(1),
                            at_ms: r.get(2),
                        },
                    })
                },
            )?;
            each_row(
                &mut tx,
                "SELECT seq, at_ms, actor, source, action, target, detail, prev_sha256, sha256
                 FROM audit_trail ORDER BY seq",
                FETCH,
                |_, r| send(Row::Audit(audit::record_of_row(r)?)),
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn held_state(&self) -> Result<Option<String>, StateError> {
        self.with(|c| {
            let row = c.session().query_one(
                "SELECT (SELECT COUNT(*) FROM runs), (SELECT COUNT(*) FROM deliveries),
                    (SELECT COUNT(*) FROM quarantine), (SELECT COUNT(*) FROM checkpoints),
                    (SELECT COUNT(*) FROM kv), (SELECT COUNT(*) FROM connector_pauses),
                    (SELECT COUNT(*) FROM audit_trail)",
                &[],
            )?;
            let held: Vec<String> = [
                "runs",
                "deliveries",
                "quarantined messages",
                "checkpoints",
                "plugin values",
                "paused connectors",
                "audit records",
            ]
            .iter()
            .enumerate()
            .filter_map(|(i, what)| {
                let n: i64 = row.get(i);
                (n > 0).then(|| format!("{n} {what}"))
            })
            .collect();
            Ok((!held.is_empty()).then(|| held.join(", ")))
        })
    }
}

impl StateImport for PostgresStore {
    fn import_state(
        &mut self,
        feed: &mut dyn FnMut(&mut dyn RowSink) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        self.with(|c| {
            c.transaction(|tx| {
                allow_slow_client(tx.client)?;
                let mut writer = Writer {
                    tx,
                    batch: Vec::new(),
                };
                feed(&mut writer).map_err(Fail::State)?;
                writer.flush()?;
                // New runs continue after the copied ones.
                tx.execute(
                    "SELECT setval(pg_get_serial_sequence('runs', 'id'), m)
                     FROM (SELECT MAX(id) AS m FROM runs) AS s WHERE m IS NOT NULL",
                    &[],
                )?;
                Ok(())
            })
        })
    }
}

/// Writes a transfer's rows into a transaction; rows of the big tables
/// are held back and written a batch at a time.
struct Writer<'s, 'a, 't> {
    tx: &'s mut Session<'a, Transaction<'t>>,
    /// Rows of one batched table not written yet.
    batch: Vec<Row>,
}

impl RowSink for Writer<'_, '_, '_> {
    fn push(&mut self, row: Row) -> Result<(), StateError> {
        self.write(row).map_err(|e| match e {
            Fail::Pg(e) => query_error(e),
            Fail::State(e) => e,
        })
    }
}

impl Writer<'_, '_, '_> {
    fn write(&mut self, row: Row) -> Result<(), Fail> {
        if self
            .batch
            .first()
            .is_some_and(|first| first.table() != row.table())
        {
            self.flush()?;
        }
        if matches!(
            row,
            Row::RunItem { .. } | Row::RunFailure { .. } | Row::LedgerItem(_) | Row::Delivery(_)
        ) {
            self.batch.push(row);
            if self.batch.len() >= BATCH {
                self.flush()?;
            }
            return Ok(());
        }
        let tx = &mut *self.tx;
        match row {
            Row::RunItem { .. }
            | Row::RunFailure { .. }
            | Row::LedgerItem(_)
            | Row::Delivery(_) => {
                unreachable!("batched above")
            }
            Row::RunUnreadable { connector, record } => {
                let report = &record.report;
                tx.execute(
                    "INSERT INTO run_unreadable (run_id, connector, conversation, reason, fix,
                        reported_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &record.run.0,
                        &connector,
                        &report.conversation_id,
                        &report.reason,
                        &report.fix,
                        &record.reported_at_ms,
                    ],
                )?;
            }
            Row::Checkpoint { key, data, run } => {
                tx.execute(
                    "INSERT INTO checkpoints (connector, data, run_id) VALUES ($1, $2, $3)",
                    &[&key, &data, &run.map(|r| r.0)],
                )?;
            }
            Row::Run(r) => {
                let counts = r.counts.columns();
                tx.execute(
                    "INSERT INTO runs (id, connector, started_at_ms, finished_at_ms, outcome, pages,
                        items_from_source, items_for_import, imported, skipped_duplicates, failed,
                        quarantined, error, kind, range_from_ms, range_to_ms, pid, partially_imported)
                     OVERRIDING SYSTEM VALUE
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                        $17, $18)",
                    &[
                        &r.id.0,
                        &r.connector,
                        &r.started_at_ms,
                        &r.finished_at_ms,
                        &r.outcome.map(|o| o.as_str()),
                        &counts[0],
                        &counts[1],
                        &counts[2],
                        &counts[3],
                        &counts[4],
                        &counts[5],
                        &counts[6],
                        &r.error,
                        &r.kind.as_str(),
                        &r.range_ms.map(|r| r.0),
                        &r.range_ms.map(|r| r.1),
                        &r.pid.map(i64::from),
                        &counts[7],
                    ],
                )?;
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
                tx.execute(
                    "INSERT INTO kv (connector, key, value) VALUES ($1, $2, $3)",
                    &[&connector, &key, &value],
                )?;
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

    /// Writes the rows held back, in one statement.
    fn flush(&mut self) -> Result<(), Fail> {
        let batch = std::mem::take(&mut self.batch);
        let Some(table) = batch.first().map(Row::table) else {
            return Ok(());
        };
        let tx = &mut *self.tx;
        match table {
            Table::RunItems => {
                let (mut runs, mut sent) = (Vec::new(), Vec::new());
                let mut text: [Vec<&str>; 3] = Default::default();
                let (mut mailboxes, mut unmapped) = (Vec::new(), Vec::new());
                for row in &batch {
                    if let Row::RunItem {
                        run,
                        connector,
                        item,
                    } = row
                    {
                        runs.push(run.0);
                        text[0].push(connector);
                        text[1].push(&item.item_id);
                        text[2].push(&item.source_sha256);
                        sent.push(item.sent_at_ms);
                        mailboxes.push(encoding::json_list(&item.mailboxes)?);
                        unmapped.push(encoding::json_list(&item.unmapped)?);
                    }
                }
                tx.execute(
                    "INSERT INTO run_items (run_id, connector, item_id, source_sha256, sent_at_ms,
                        mailboxes, unmapped)
                     SELECT u.run_id, u.connector, u.item_id, u.source_sha256, u.sent_at_ms,
                        u.mailboxes::jsonb, u.unmapped::jsonb
                     FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                        $6::text[], $7::text[])
                        AS u(run_id, connector, item_id, source_sha256, sent_at_ms, mailboxes,
                             unmapped)",
                    &[
                        &runs, &text[0], &text[1], &text[2], &sent, &mailboxes, &unmapped,
                    ],
                )?;
            }
            Table::RunFailures => {
                let mut runs = Vec::new();
                let mut at = Vec::new();
                let mut text: [Vec<&str>; 6] = Default::default();
                for row in &batch {
                    if let Row::RunFailure {
                        run,
                        connector,
                        failure,
                        at_ms,
                    } = row
                    {
                        runs.push(run.0);
                        at.push(*at_ms);
                        for (column, value) in text.iter_mut().zip([
                            connector.as_str(),
                            &failure.item_id,
                            &failure.source_user_id,
                            &failure.mailbox,
                            failure.kind.as_str(),
                            &failure.reason,
                        ]) {
                            column.push(value);
                        }
                    }
                }
                tx.execute(
                    "INSERT INTO run_failures (run_id, connector, item_id, source_user_id, mailbox,
                        kind, reason, at_ms)
                     SELECT u.run_id, u.connector, u.item_id, u.source_user_id, u.mailbox, u.kind,
                        u.reason, u.at_ms
                     FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                        $6::text[], $7::text[], $8::bigint[])
                        WITH ORDINALITY AS u(run_id, connector, item_id, source_user_id, mailbox,
                            kind, reason, at_ms, n)
                     ORDER BY u.n",
                    &[
                        &runs, &text[0], &text[1], &text[2], &text[3], &text[4], &text[5], &at,
                    ],
                )?;
            }
            Table::LedgerItems => {
                let mut text: [Vec<&str>; 5] = Default::default();
                let mut times = Vec::new();
                for row in &batch {
                    if let Row::LedgerItem(i) = row {
                        for (column, value) in text.iter_mut().zip([
                            &i.connector,
                            &i.item_id,
                            &i.message_id,
                            &i.source_sha256,
                            &i.email_sha256,
                        ]) {
                            column.push(value);
                        }
                        times.push(i.first_delivered_at_ms);
                    }
                }
                ledger::ensure_partitions(tx, &times)?;
                tx.execute(
                    "INSERT INTO ledger_items (connector, item_id, message_id, source_sha256,
                        email_sha256, first_delivered_at_ms)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[],
                        $5::text[], $6::bigint[])",
                    &[&text[0], &text[1], &text[2], &text[3], &text[4], &times],
                )?;
            }
            Table::Deliveries => {
                let mut text: [Vec<&str>; 4] = Default::default();
                let (mut times, mut runs, mut emails) = (Vec::new(), Vec::new(), Vec::new());
                for row in &batch {
                    if let Row::Delivery(d) = row {
                        for (column, value) in
                            text.iter_mut()
                                .zip([&d.connector, &d.item_id, &d.mailbox, &d.receipt])
                        {
                            column.push(value);
                        }
                        times.push(d.delivered_at_ms);
                        runs.push(d.run.0);
                        emails.push(d.email_sha256.as_deref());
                    }
                }
                ledger::ensure_partitions(tx, &times)?;
                let written = tx.execute(
                    "INSERT INTO deliveries (item, mailbox, receipt, delivered_at_ms, run_id,
                        email_sha256)
                     SELECT i.id, u.mailbox, u.receipt, u.at, u.run_id, u.email_sha256
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                        $6::bigint[], $7::text[])
                        WITH ORDINALITY AS u(connector, item_id, mailbox, receipt, at, run_id,
                            email_sha256, n)
                     JOIN ledger_items i ON i.connector = u.connector AND i.item_id = u.item_id
                     ORDER BY u.n",
                    &[
                        &text[0], &text[1], &text[2], &text[3], &times, &runs, &emails,
                    ],
                )?;
                if written != batch.len() as u64 {
                    return Err(corrupt(
                        "ledger",
                        format!(
                            "{} of {} deliveries name an item the source's ledger lacks",
                            batch.len() as u64 - written,
                            batch.len()
                        ),
                    ));
                }
            }
            _ => unreachable!("only the tables above are batched"),
        }
        Ok(())
    }
}
