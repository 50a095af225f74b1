//! The `audit_trail` and `audit_head` tables: the admins' actions, chained
//! by SHA-256. An append is one immediate transaction, which SQLite runs
//! alone among every process writing to the file, so appends never fork
//! the chain.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::{SqliteStore, to_i64, to_u64};
use connector_state::audit::parse_action;
use connector_state::{AuditEntry, AuditHead, AuditQuery, AuditRecord, AuditTrail, StateError};

/// The columns [`record_of_row`] reads, in its order.
pub(crate) const RECORD_COLUMNS: &str =
    "seq, at_ms, actor, source, action, target, detail, prev_sha256, sha256";

/// A record from a row of [`RECORD_COLUMNS`].
pub(crate) fn record_of_row(r: &rusqlite::Row<'_>) -> Result<AuditRecord, StateError> {
    Ok(AuditRecord {
        seq: to_u64(r.get(0)?),
        entry: AuditEntry {
            at_ms: r.get(1)?,
            actor: r.get(2)?,
            source: r.get(3)?,
            action: parse_action(&r.get::<_, String>(4)?)?,
            target: r.get(5)?,
            detail: r.get(6)?,
        },
        prev_sha256: r.get(7)?,
        sha256: r.get(8)?,
    })
}

/// Writes `record` and makes it the head.
pub(crate) fn insert(conn: &Connection, record: &AuditRecord) -> Result<(), StateError> {
    let e = &record.entry;
    conn.prepare_cached(
        "INSERT INTO audit_trail (seq, at_ms, actor, source, action, target, detail,
            prev_sha256, sha256)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        to_i64(record.seq),
        e.at_ms,
        e.actor,
        e.source,
        e.action.as_str(),
        e.target,
        e.detail,
        record.prev_sha256,
        record.sha256
    ])?;
    conn.prepare_cached(
        "INSERT INTO audit_head (id, seq, sha256) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, sha256 = excluded.sha256",
    )?
    .execute(params![to_i64(record.seq), record.sha256])?;
    Ok(())
}

fn head(conn: &Connection) -> Result<Option<AuditHead>, StateError> {
    Ok(conn
        .prepare_cached("SELECT seq, sha256 FROM audit_head WHERE id = 1")?
        .query_row([], |r| {
            Ok(AuditHead {
                seq: to_u64(r.get(0)?),
                sha256: r.get(1)?,
            })
        })
        .optional()?)
}

fn records(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<AuditRecord>, StateError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(record_of_row(r)?);
    }
    Ok(out)
}

impl AuditTrail for SqliteStore {
    fn append_audit(&mut self, entry: &AuditEntry) -> Result<AuditRecord, StateError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let record = AuditRecord::chained(head(&tx)?.as_ref(), entry.clone());
        insert(&tx, &record)?;
        tx.commit()?;
        Ok(record)
    }

    fn audit_records(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditRecord>, StateError> {
        records(
            &self.conn,
            &format!(
                "SELECT {RECORD_COLUMNS} FROM audit_trail WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ),
            params![to_i64(after_seq), to_i64(limit as u64)],
        )
    }

    fn search_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StateError> {
        records(
            &self.conn,
            &format!(
                "SELECT {RECORD_COLUMNS} FROM audit_trail
                 WHERE (?1 IS NULL OR target = ?1) AND (?2 IS NULL OR actor = ?2)
                    AND (?3 IS NULL OR action = ?3) AND (?4 IS NULL OR seq < ?4)
                 ORDER BY seq DESC LIMIT ?5"
            ),
            params![
                query.target,
                query.actor,
                query.action.map(|a| a.as_str()),
                query.before_seq.map(to_i64),
                to_i64(query.limit as u64)
            ],
        )
    }

    fn audit_head(&self) -> Result<Option<AuditHead>, StateError> {
        head(&self.conn)
    }
}
