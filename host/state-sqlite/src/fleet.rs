//! The `leases`, `workers` and `fleet_counters` tables. Processes sharing
//! one SQLite file run on one machine: the operating system's file lock
//! decides who runs a connector, and the lease row gives each run its
//! fencing token, so the rules (and `connector workers`) are those of a
//! PostgreSQL fleet.

use connector_model::time::now_ms;
use rusqlite::{Connection, OptionalExtension, params};

use crate::{SqliteStore, to_i64, to_u64};
use connector_state::encoding;
use connector_state::{
    Fleet, LeaseRecord, LeaseRequest, StateError, WorkerRecord, fingerprint_conflict,
};

/// The counter of commits refused for a stale fencing token.
const FENCED_COMMITS: &str = "fenced_commits";

fn lease_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, i64, i64, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn lease_record(
    (connector, owner, token, expires_at_ms, fingerprint): (String, String, i64, i64, String),
) -> Result<LeaseRecord, StateError> {
    Ok(LeaseRecord {
        connector,
        owner,
        token: to_u64(token),
        expires_at_ms,
        fingerprint: encoding::parse_fingerprint(&fingerprint)?,
    })
}

/// The connector's current fencing token, if it was ever leased.
pub(crate) fn current_token(conn: &Connection, connector: &str) -> Result<Option<u64>, StateError> {
    Ok(conn
        .query_row(
            "SELECT token FROM leases WHERE connector = ?1",
            [connector],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .map(to_u64))
}

/// Counts a commit refused for its stale token.
pub(crate) fn count_fenced(conn: &Connection) -> Result<(), StateError> {
    conn.execute(
        "INSERT INTO fleet_counters (name, value) VALUES (?1, 1)
         ON CONFLICT (name) DO UPDATE SET value = value + 1",
        [FENCED_COMMITS],
    )?;
    Ok(())
}

/// What a lease request gets from the rows, once the operating system's
/// lock is this process's.
pub(crate) enum Taking {
    /// The lease, with its new token.
    Taken(LeaseRecord),
    /// A live worker runs other files.
    Mismatch {
        differs: Vec<String>,
        worker: String,
    },
}

impl SqliteStore {
    /// Takes the connector's lease row with the next token, unless a live
    /// worker runs the connector with other files. The caller holds the
    /// operating system's lock, so any earlier holder is gone: the lease
    /// never lapses on its own (`expires_at_ms` is the largest time) and
    /// is released when the run ends.
    pub(crate) fn take_lease(
        &self,
        connector: &str,
        request: &LeaseRequest,
    ) -> Result<Taking, StateError> {
        let now = now_ms();
        let workers = self.workers()?;
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        let previous = tx
            .query_row(
                "SELECT connector, owner, token, expires_at_ms, fingerprint FROM leases
                 WHERE connector = ?1",
                [connector],
                lease_row,
            )
            .optional()?
            .map(lease_record)
            .transpose()?;
        if let Some(previous) = &previous
            && let Some((differs, worker)) = fingerprint_conflict(
                connector,
                &previous.fingerprint,
                &request.fingerprint,
                &request.owner,
                &workers,
                now,
                request.ttl,
            )
        {
            return Ok(Taking::Mismatch { differs, worker });
        }
        let token = previous.map_or(1, |p| p.token + 1);
        let lease = LeaseRecord {
            connector: connector.to_string(),
            owner: request.owner.clone(),
            token,
            expires_at_ms: i64::MAX,
            fingerprint: request.fingerprint.clone(),
        };
        tx.execute(
            "INSERT INTO leases (connector, owner, token, expires_at_ms, fingerprint)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (connector) DO UPDATE SET owner = excluded.owner,
                token = excluded.token, expires_at_ms = excluded.expires_at_ms,
                fingerprint = excluded.fingerprint",
            params![
                connector,
                lease.owner,
                to_i64(token),
                lease.expires_at_ms,
                encoding::fingerprint_json(&lease.fingerprint)?
            ],
        )?;
        tx.commit()?;
        Ok(Taking::Taken(lease))
    }
}

impl Fleet for SqliteStore {
    fn heartbeat(&mut self, worker: &WorkerRecord) -> Result<(), StateError> {
        self.conn.execute(
            "INSERT INTO workers (id, host, pid, version, started_at_ms, heartbeat_at_ms,
                connectors)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at_ms = excluded.heartbeat_at_ms,
                connectors = excluded.connectors",
            params![
                worker.id,
                worker.host,
                worker.pid,
                worker.version,
                worker.started_at_ms,
                now_ms(),
                encoding::worker_connectors_json(&worker.connectors)?
            ],
        )?;
        Ok(())
    }

    fn forget_worker(&mut self, worker_id: &str) -> Result<(), StateError> {
        self.conn
            .execute("DELETE FROM workers WHERE id = ?1", [worker_id])?;
        Ok(())
    }

    fn workers(&self) -> Result<Vec<WorkerRecord>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, host, pid, version, started_at_ms, heartbeat_at_ms, connectors
             FROM workers ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                WorkerRecord {
                    id: r.get(0)?,
                    host: r.get(1)?,
                    pid: r.get(2)?,
                    version: r.get(3)?,
                    started_at_ms: r.get(4)?,
                    heartbeat_at_ms: r.get(5)?,
                    connectors: Default::default(),
                },
                r.get::<_, String>(6)?,
            ))
        })?;
        rows.map(|row| {
            let (mut worker, connectors) = row?;
            worker.connectors = encoding::parse_worker_connectors(&connectors)?;
            Ok(worker)
        })
        .collect()
    }

    fn leases(&self) -> Result<Vec<LeaseRecord>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT connector, owner, token, expires_at_ms, fingerprint FROM leases
             ORDER BY connector",
        )?;
        let rows = stmt.query_map([], lease_row)?;
        rows.map(|row| lease_record(row?)).collect()
    }

    fn release_lease(&mut self, connector: &str, token: u64) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE leases SET expires_at_ms = 0 WHERE connector = ?1 AND token = ?2",
            params![connector, to_i64(token)],
        )?;
        Ok(())
    }

    fn fenced_commits(&self) -> Result<u64, StateError> {
        let n: Option<i64> = self
            .conn
            .query_row(
                "SELECT value FROM fleet_counters WHERE name = ?1",
                [FENCED_COMMITS],
                |r| r.get(0),
            )
            .optional()?;
        Ok(to_u64(n.unwrap_or(0)))
    }

    fn clock_ms(&self) -> Result<i64, StateError> {
        Ok(now_ms())
    }
}
