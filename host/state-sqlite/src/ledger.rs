//! The `ledger` table.

use std::collections::HashSet;

use rusqlite::{OptionalExtension, Transaction, params};

use crate::{SqliteStore, rows_for_ids, to_u64};
use connector_state::DeliveryLedger;
use connector_state::StateError;
use connector_state::{DeliveredPair, LedgerEntry, RunId};

impl DeliveryLedger for SqliteStore {
    fn is_delivered(
        &self,
        connector: &str,
        item_id: &str,
        mailbox: &str,
    ) -> Result<bool, StateError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM ledger WHERE connector = ?1 AND item_id = ?2 AND mailbox = ?3",
                params![connector, item_id, mailbox],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn delivered_set(
        &self,
        connector: &str,
        item_ids: &[&str],
    ) -> Result<HashSet<(String, String)>, StateError> {
        let pairs = rows_for_ids(
            &self.conn,
            "SELECT item_id, mailbox FROM ledger WHERE connector = ? AND item_id IN",
            connector,
            item_ids,
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(pairs.into_iter().collect())
    }

    fn delivered_count(&self, connector: &str) -> Result<u64, StateError> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM ledger WHERE connector = ?1",
            [connector],
            |r| r.get(0),
        )?;
        Ok(to_u64(n))
    }

    fn ledger_entries(&self, connector: &str) -> Result<Vec<LedgerEntry>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT item_id, mailbox, message_id, email_sha256, source_sha256, receipt,
                    delivered_at_ms
             FROM ledger WHERE connector = ?1
             ORDER BY delivered_at_ms, item_id, mailbox",
        )?;
        let rows = stmt.query_map([connector], entry_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn ledger_for_items(
        &self,
        connector: &str,
        item_ids: &[&str],
    ) -> Result<Vec<DeliveredPair>, StateError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT item_id, mailbox, message_id, email_sha256, source_sha256, receipt,
                    delivered_at_ms, run_id
             FROM ledger WHERE connector = ?1 AND item_id = ?2 ORDER BY mailbox",
        )?;
        let mut out = Vec::new();
        for id in item_ids {
            let rows = stmt.query_map(params![connector, id], ledger_row)?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }

    fn ledger_of_run(&self, run: RunId) -> Result<Vec<DeliveredPair>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT item_id, mailbox, message_id, email_sha256, source_sha256, receipt,
                    delivered_at_ms, run_id
             FROM ledger WHERE run_id = ?1 ORDER BY item_id, mailbox",
        )?;
        let rows = stmt.query_map([run.0], ledger_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Records the page's deliveries, inside its transaction; pairs already
/// recorded keep their first entry. An item's fields are stored once, with
/// its first delivery; a later delivery of another email of the item keeps
/// that email's SHA-256 in its own row.
pub(super) fn insert(
    tx: &Transaction<'_>,
    connector: &str,
    run: RunId,
    entries: &[LedgerEntry],
) -> Result<(), StateError> {
    let mut find = tx.prepare_cached(
        "SELECT item_key, email_sha256 FROM ledger_items WHERE connector = ?1 AND item_id = ?2",
    )?;
    let mut add_item = tx.prepare_cached(
        "INSERT INTO ledger_items (connector, item_id, message_id, source_sha256,
            email_sha256, first_delivered_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut add_delivery = tx.prepare_cached(
        "INSERT OR IGNORE INTO deliveries (item_key, mailbox, receipt, delivered_at_ms,
            run_id, email_sha256)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut last: Option<(&str, i64, String)> = None;
    for e in entries {
        let (key, item_email) = match &last {
            Some((id, key, email)) if *id == e.item_id => (*key, email.clone()),
            _ => {
                let found: Option<(i64, String)> = find
                    .query_row(params![connector, e.item_id], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                let (key, email) = match found {
                    Some(found) => found,
                    None => {
                        add_item.execute(params![
                            connector,
                            e.item_id,
                            e.message_id,
                            e.source_sha256,
                            e.email_sha256,
                            e.delivered_at_ms
                        ])?;
                        (tx.last_insert_rowid(), e.email_sha256.clone())
                    }
                };
                last = Some((&e.item_id, key, email.clone()));
                (key, email)
            }
        };
        let own_email = (e.email_sha256 != item_email).then_some(&e.email_sha256);
        add_delivery.execute(params![
            key,
            e.mailbox,
            e.receipt,
            e.delivered_at_ms,
            run.0,
            own_email
        ])?;
    }
    Ok(())
}

/// A ledger entry from the columns item id, mailbox, message id, email
/// SHA-256, source SHA-256, receipt and delivery time, in that order.
fn entry_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LedgerEntry> {
    Ok(LedgerEntry {
        item_id: r.get(0)?,
        mailbox: r.get(1)?,
        message_id: r.get(2)?,
        email_sha256: r.get(3)?,
        source_sha256: r.get(4)?,
        receipt: r.get(5)?,
        delivered_at_ms: r.get(6)?,
    })
}

/// An [`entry_row`] followed by its run's id.
fn ledger_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveredPair> {
    Ok(DeliveredPair {
        entry: entry_row(r)?,
        run: RunId(r.get(7)?),
    })
}
