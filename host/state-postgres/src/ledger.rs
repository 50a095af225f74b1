//! The ledger, split in two tables partitioned by month: `ledger_items`
//! (what is true of an item once) and `deliveries` (one small row per
//! mailbox an item reached). A delivery's email SHA-256 is stored only
//! when it differs from its item's; reading puts the entry back together.

use std::collections::{HashMap, HashSet};

use postgres::{Row, Transaction};

use crate::{
    Fail, LOCK_CLASS, LOCK_PARTITIONS, LOCK_STATISTICS, PostgresStore, Session, corrupt, to_u64,
};
use connector_state::{DeliveredPair, DeliveryLedger, LedgerEntry, RunId, StateError};

/// The columns of a whole ledger entry and its run, from `deliveries d`
/// joined with `ledger_items i`.
macro_rules! entry_columns {
    () => {
        "i.item_id, d.mailbox, i.message_id, COALESCE(d.email_sha256, i.email_sha256),
         i.source_sha256, d.receipt, d.delivered_at_ms, d.run_id"
    };
}

impl DeliveryLedger for PostgresStore {
    fn is_delivered(
        &self,
        connector: &str,
        item_id: &str,
        mailbox: &str,
    ) -> Result<bool, StateError> {
        self.with(|c| {
            Ok(c.session()
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM ledger_items i JOIN deliveries d ON d.item = i.id
                     WHERE i.connector = $1 AND i.item_id = $2 AND d.mailbox = $3)",
                    &[&connector, &item_id, &mailbox],
                )?
                .get(0))
        })
    }

    fn delivered_set(
        &self,
        connector: &str,
        item_ids: &[&str],
    ) -> Result<HashSet<(String, String)>, StateError> {
        if item_ids.is_empty() {
            return Ok(HashSet::new());
        }
        self.with(|c| {
            let rows = c.session().query(
                "SELECT i.item_id, d.mailbox FROM ledger_items i JOIN deliveries d ON d.item = i.id
                 WHERE i.connector = $1 AND i.item_id = ANY($2)",
                &[&connector, &item_ids],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn delivered_count(&self, connector: &str) -> Result<u64, StateError> {
        self.with(|c| {
            let n: i64 = c
                .session()
                .query_one(
                    "SELECT COUNT(*) FROM ledger_items i JOIN deliveries d ON d.item = i.id
                     WHERE i.connector = $1",
                    &[&connector],
                )?
                .get(0);
            Ok(to_u64(n))
        })
    }

    fn ledger_entries(&self, connector: &str) -> Result<Vec<LedgerEntry>, StateError> {
        self.with(|c| {
            let rows = c.session().query(
                concat!(
                    "SELECT ",
                    entry_columns!(),
                    " FROM ledger_items i JOIN deliveries d ON d.item = i.id
                     WHERE i.connector = $1
                     ORDER BY d.delivered_at_ms, i.item_id, d.mailbox"
                ),
                &[&connector],
            )?;
            Ok(rows.iter().map(|r| delivered_pair(r).entry).collect())
        })
    }

    fn ledger_for_items(
        &self,
        connector: &str,
        item_ids: &[&str],
    ) -> Result<Vec<DeliveredPair>, StateError> {
        if item_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.with(|c| {
            // In the order the ids are given, each item's by mailbox.
            let rows = c.session().query(
                concat!(
                    "SELECT ",
                    entry_columns!(),
                    " FROM UNNEST($2::text[]) WITH ORDINALITY AS q(item_id, n)
                     JOIN ledger_items i ON i.connector = $1 AND i.item_id = q.item_id
                     JOIN deliveries d ON d.item = i.id
                     ORDER BY q.n, d.mailbox"
                ),
                &[&connector, &item_ids],
            )?;
            Ok(rows.iter().map(delivered_pair).collect())
        })
    }

    fn ledger_of_run(&self, run: RunId) -> Result<Vec<DeliveredPair>, StateError> {
        self.with(|c| {
            let rows = c.session().query(
                concat!(
                    "SELECT ",
                    entry_columns!(),
                    " FROM deliveries d JOIN ledger_items i ON i.id = d.item
                     WHERE d.run_id = $1 ORDER BY i.item_id, d.mailbox"
                ),
                &[&run.0],
            )?;
            Ok(rows.iter().map(delivered_pair).collect())
        })
    }
}

fn delivered_pair(r: &Row) -> DeliveredPair {
    DeliveredPair {
        entry: LedgerEntry {
            item_id: r.get(0),
            mailbox: r.get(1),
            message_id: r.get(2),
            email_sha256: r.get(3),
            source_sha256: r.get(4),
            receipt: r.get(5),
            delivered_at_ms: r.get(6),
        },
        run: RunId(r.get(7)),
    }
}

/// Records the page's deliveries inside its transaction, in three
/// statements whatever their number: the missing month partitions, the
/// items not yet in the ledger, and the deliveries of pairs not yet in it.
/// A pair already recorded (earlier, or earlier in the page) keeps its
/// first entry; a new item takes its fields from its first entry.
///
/// Neither table can have a unique key on (connector, item) or (item,
/// mailbox), as they are partitioned by time: "insert only what is
/// missing" holds because commits of one connector are serialized on its
/// lease row, locked by the caller for the whole transaction.
pub(crate) fn insert(
    tx: &mut Session<'_, Transaction<'_>>,
    connector: &str,
    run: RunId,
    entries: &[LedgerEntry],
) -> Result<(), Fail> {
    let mut pairs = HashSet::new();
    let entries: Vec<&LedgerEntry> = entries
        .iter()
        .filter(|e| pairs.insert((e.item_id.as_str(), e.mailbox.as_str())))
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    let times: Vec<i64> = entries.iter().map(|e| e.delivered_at_ms).collect();
    ensure_partitions(tx, &times)?;

    let mut first_of_item = HashMap::new();
    let items: Vec<&LedgerEntry> = entries
        .iter()
        .copied()
        .filter(|e| first_of_item.insert(e.item_id.as_str(), ()).is_none())
        .collect();
    let column = |list: &[&LedgerEntry], f: fn(&LedgerEntry) -> &str| -> Vec<String> {
        list.iter().map(|e| f(e).to_string()).collect()
    };
    tx.execute(
        "INSERT INTO ledger_items (connector, item_id, message_id, source_sha256, email_sha256,
            first_delivered_at_ms)
         SELECT $1, u.item_id, u.message_id, u.source_sha256, u.email_sha256, u.at
         FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
            AS u(item_id, message_id, source_sha256, email_sha256, at)
         WHERE NOT EXISTS (SELECT 1 FROM ledger_items i
                           WHERE i.connector = $1 AND i.item_id = u.item_id)",
        &[
            &connector,
            &column(&items, |e| &e.item_id),
            &column(&items, |e| &e.message_id),
            &column(&items, |e| &e.source_sha256),
            &column(&items, |e| &e.email_sha256),
            &items
                .iter()
                .map(|e| e.delivered_at_ms)
                .collect::<Vec<i64>>(),
        ],
    )?;
    tx.execute(
        "INSERT INTO deliveries (item, mailbox, receipt, delivered_at_ms, run_id, email_sha256)
         SELECT i.id, u.mailbox, u.receipt, u.at, $2, NULLIF(u.email_sha256, i.email_sha256)
         FROM UNNEST($3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[])
            WITH ORDINALITY AS u(item_id, mailbox, receipt, at, email_sha256, n)
         JOIN ledger_items i ON i.connector = $1 AND i.item_id = u.item_id
         WHERE NOT EXISTS (SELECT 1 FROM deliveries d
                           WHERE d.item = i.id AND d.mailbox = u.mailbox)
         ORDER BY u.n",
        &[
            &connector,
            &run.0,
            &column(&entries, |e| &e.item_id),
            &column(&entries, |e| &e.mailbox),
            &column(&entries, |e| &e.receipt),
            &times,
            &column(&entries, |e| &e.email_sha256),
        ],
    )?;
    refresh_statistics(tx)
}

/// Analyzes the ledger partitions that have changed by more than their
/// size (or by 1,000 rows) since they were last analyzed. The commits'
/// lookups by item are index probes only when the planner knows a
/// partition's size: a young month partition without statistics (until
/// autovacuum gets to it, a minute or more) gets whole-partition scans
/// instead, and each commit then costs the size of the month. One worker
/// at a time does it; the others go on without waiting.
fn refresh_statistics(tx: &mut Session<'_, Transaction<'_>>) -> Result<(), Fail> {
    let stale = tx.query(
        "SELECT quote_ident(s.relname) FROM pg_stat_user_tables s
         JOIN pg_class c ON c.oid = s.relid
         WHERE (s.relname LIKE 'ledger\\_items\\_%' OR s.relname LIKE 'deliveries\\_%')
           AND s.n_mod_since_analyze > GREATEST(1000, c.reltuples)",
        &[],
    )?;
    if stale.is_empty() {
        return Ok(());
    }
    let ours: bool = tx
        .query_one(
            "SELECT pg_try_advisory_xact_lock($1, $2)",
            &[&LOCK_CLASS, &LOCK_STATISTICS],
        )?
        .get(0);
    if ours {
        let tables: Vec<String> = stale.iter().map(|r| r.get(0)).collect();
        tx.client
            .batch_execute(&format!("ANALYZE {}", tables.join(", ")))?;
    }
    Ok(())
}

/// Creates the month partitions of both ledger tables that deliveries at
/// `times` (ms) need and that do not exist yet. Creation takes an advisory
/// lock, so that workers needing the same new month take turns; a month
/// that exists costs one catalog query and no lock.
pub(crate) fn ensure_partitions(
    tx: &mut Session<'_, Transaction<'_>>,
    times: &[i64],
) -> Result<(), Fail> {
    let missing = tx.query(
        "SELECT DISTINCT to_char(m, 'YYYY_MM'), (extract(epoch FROM m) * 1000)::bigint,
            (extract(epoch FROM m + interval '1 month') * 1000)::bigint
         FROM (SELECT date_trunc('month', to_timestamp(t / 1000.0) AT TIME ZONE 'UTC') AS m
               FROM UNNEST($1::bigint[]) AS t) AS months
         WHERE to_regclass('ledger_items_' || to_char(m, 'YYYY_MM')) IS NULL
            OR to_regclass('deliveries_' || to_char(m, 'YYYY_MM')) IS NULL",
        &[&times],
    )?;
    if missing.is_empty() {
        return Ok(());
    }
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_CLASS, &LOCK_PARTITIONS],
    )?;
    for month in &missing {
        let (suffix, from, to): (String, i64, i64) = (month.get(0), month.get(1), month.get(2));
        if suffix.is_empty() || !suffix.chars().all(|c| c.is_ascii_digit() || c == '_') {
            return Err(corrupt(
                "ledger month",
                format!("delivery time gives month `{suffix}`"),
            ));
        }
        tx.client.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS ledger_items_{suffix} PARTITION OF ledger_items
                FOR VALUES FROM ({from}) TO ({to});
             CREATE TABLE IF NOT EXISTS deliveries_{suffix} PARTITION OF deliveries
                FOR VALUES FROM ({from}) TO ({to});"
        ))?;
    }
    Ok(())
}
