//! The `audit_trail` and `audit_head` tables: the admins' actions, chained
//! by SHA-256. Appends of every worker take turns under an advisory lock
//! held until their transaction ends, and each reads the head only once
//! it holds the lock, so the fleet's appends form one chain.

use postgres::GenericClient;

use crate::{Fail, LOCK_AUDIT, LOCK_CLASS, PostgresStore, Session, to_i64, to_u64};
use connector_state::audit::parse_action;
use connector_state::{AuditEntry, AuditHead, AuditQuery, AuditRecord, AuditTrail, StateError};

/// A record from a row of `seq, at_ms, actor, source, action, target,
/// detail, prev_sha256, sha256`.
pub(crate) fn record_of_row(r: &postgres::Row) -> Result<AuditRecord, StateError> {
    Ok(AuditRecord {
        seq: to_u64(r.get(0)),
        entry: AuditEntry {
            at_ms: r.get(1),
            actor: r.get(2),
            source: r.get(3),
            action: parse_action(r.get(4))?,
            target: r.get(5),
            detail: r.get(6),
        },
        prev_sha256: r.get(7),
        sha256: r.get(8),
    })
}

/// Writes `record` and makes it the head.
pub(crate) fn insert<C: GenericClient>(
    s: &mut Session<'_, C>,
    record: &AuditRecord,
) -> Result<(), Fail> {
    let e = &record.entry;
    s.execute(
        "INSERT INTO audit_trail (seq, at_ms, actor, source, action, target, detail,
            prev_sha256, sha256)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &to_i64(record.seq),
            &e.at_ms,
            &e.actor,
            &e.source,
            &e.action.as_str(),
            &e.target,
            &e.detail,
            &record.prev_sha256,
            &record.sha256,
        ],
    )?;
    s.execute(
        "INSERT INTO audit_head (id, seq, sha256) VALUES (1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, sha256 = excluded.sha256",
        &[&to_i64(record.seq), &record.sha256],
    )?;
    Ok(())
}

fn head<C: GenericClient>(s: &mut Session<'_, C>) -> Result<Option<AuditHead>, Fail> {
    Ok(
        s.query_opt("SELECT seq, sha256 FROM audit_head WHERE id = 1", &[])?
            .map(|r| AuditHead {
                seq: to_u64(r.get(0)),
                sha256: r.get(1),
            }),
    )
}

fn records(rows: Vec<postgres::Row>) -> Result<Vec<AuditRecord>, Fail> {
    Ok(rows
        .iter()
        .map(record_of_row)
        .collect::<Result<_, StateError>>()?)
}

impl AuditTrail for PostgresStore {
    fn append_audit(&mut self, entry: &AuditEntry) -> Result<AuditRecord, StateError> {
        self.with(|c| {
            c.transaction(|tx| {
                tx.execute(
                    "SELECT pg_advisory_xact_lock($1, $2)",
                    &[&LOCK_CLASS, &LOCK_AUDIT],
                )?;
                let record = AuditRecord::chained(head(tx)?.as_ref(), entry.clone());
                insert(tx, &record)?;
                Ok(record)
            })
        })
    }

    fn audit_records(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditRecord>, StateError> {
        self.with(|c| {
            records(c.session().query(
                "SELECT seq, at_ms, actor, source, action, target, detail, prev_sha256, sha256
                 FROM audit_trail WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&to_i64(after_seq), &to_i64(limit as u64)],
            )?)
        })
    }

    fn search_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StateError> {
        self.with(|c| {
            records(c.session().query(
                "SELECT seq, at_ms, actor, source, action, target, detail, prev_sha256, sha256
                 FROM audit_trail
                 WHERE ($1::text IS NULL OR target = $1) AND ($2::text IS NULL OR actor = $2)
                    AND ($3::text IS NULL OR action = $3) AND ($4::bigint IS NULL OR seq < $4)
                 ORDER BY seq DESC LIMIT $5",
                &[
                    &query.target,
                    &query.actor,
                    &query.action.map(|a| a.as_str()),
                    &query.before_seq.map(to_i64),
                    &to_i64(query.limit as u64),
                ],
            )?)
        })
    }

    fn audit_head(&self) -> Result<Option<AuditHead>, StateError> {
        self.with(|c| head(&mut c.session()))
    }
}
