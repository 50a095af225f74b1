//! Reading the whole state for a transfer (`connector state migrate`):
//! every table, row by row, from one read transaction (one snapshot of
//! the file, whatever other processes write meanwhile).

use rusqlite::Connection;

use crate::runs::parse_list;
use crate::{SqliteStore, quarantine, stored};
use connector_state::transfer::{DeliveryRow, LedgerItemRow, Row, RowSink, StateExport};
use connector_state::{FailureKind, QuarantineEntry, RunFailure, RunId, SeenItem, StateError};

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
        self.for_each_run("ORDER BY connector, id", [], |run| {
            sink.push(Row::Run(run))
        })?;
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
                        mailboxes: parse_list(&r.get::<_, String>(5)?)?,
                        unmapped: parse_list(&r.get::<_, String>(6)?)?,
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
                        kind: stored("failure kind", &r.get::<_, String>(5)?, FailureKind::parse)?,
                        reason: r.get(6)?,
                    },
                    at_ms: r.get(7)?,
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
                        unmapped: serde_json::from_str(&unmapped).map_err(|e| {
                            StateError::Corrupt {
                                what: "unmapped participant list",
                                message: e.to_string(),
                            }
                        })?,
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
                    conversation: serde_json::from_str(&description).map_err(|e| {
                        StateError::Corrupt {
                            what: "conversation description",
                            message: e.to_string(),
                        }
                    })?,
                })?;
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
