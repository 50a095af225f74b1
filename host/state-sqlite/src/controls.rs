//! The `connector_pauses` and `run_requests` tables: what admins ask of
//! the connectors' runs, seen by every process on this state.

use connector_model::time::now_ms;
use rusqlite::{Connection, OptionalExtension, params};

use crate::SqliteStore;
use connector_state::{ConnectorControls, PauseRecord, RunRequest, StateError};

/// Writes a connector's pause (keeping one already there).
pub(crate) fn insert_pause(
    conn: &Connection,
    connector: &str,
    pause: &PauseRecord,
) -> Result<(), StateError> {
    insert_keeping(
        conn,
        "connector_pauses (connector, paused_by, paused_at_ms)",
        connector,
        &pause.by,
        pause.at_ms,
    )
}

/// Writes a connector's run request (keeping one already there).
pub(crate) fn insert_request(
    conn: &Connection,
    connector: &str,
    request: &RunRequest,
) -> Result<(), StateError> {
    insert_keeping(
        conn,
        "run_requests (connector, requested_by, requested_at_ms)",
        connector,
        &request.by,
        request.at_ms,
    )
}

/// Inserts (connector, by, at) into `table_and_columns` unless the
/// connector has a row there already.
fn insert_keeping(
    conn: &Connection,
    table_and_columns: &str,
    connector: &str,
    by: &str,
    at_ms: i64,
) -> Result<(), StateError> {
    conn.prepare_cached(&format!(
        "INSERT INTO {table_and_columns} VALUES (?1, ?2, ?3) ON CONFLICT (connector) DO NOTHING"
    ))?
    .execute(params![connector, by, at_ms])?;
    Ok(())
}

fn by_and_time(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64)> {
    Ok((r.get(0)?, r.get(1)?))
}

/// Every row of `sql` (connector, by, at), as `make` builds them.
fn listed<T>(
    conn: &Connection,
    sql: &str,
    make: fn(String, i64) -> T,
) -> Result<Vec<(String, T)>, StateError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, make(r.get(1)?, r.get(2)?))))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn pause_of(by: String, at_ms: i64) -> PauseRecord {
    PauseRecord { by, at_ms }
}

fn request_of(by: String, at_ms: i64) -> RunRequest {
    RunRequest { by, at_ms }
}

impl ConnectorControls for SqliteStore {
    fn pause(&mut self, connector: &str, by: &str) -> Result<PauseRecord, StateError> {
        let tx = self.conn.transaction()?;
        insert_pause(&tx, connector, &pause_of(by.to_string(), now_ms()))?;
        let (by, at_ms) = tx
            .prepare_cached(
                "SELECT paused_by, paused_at_ms FROM connector_pauses WHERE connector = ?1",
            )?
            .query_row([connector], by_and_time)?;
        tx.commit()?;
        Ok(pause_of(by, at_ms))
    }

    fn resume(&mut self, connector: &str) -> Result<Option<PauseRecord>, StateError> {
        Ok(self
            .conn
            .prepare_cached(
                "DELETE FROM connector_pauses WHERE connector = ?1
                 RETURNING paused_by, paused_at_ms",
            )?
            .query_row([connector], by_and_time)
            .optional()?
            .map(|(by, at_ms)| pause_of(by, at_ms)))
    }

    fn paused(&self, connector: &str) -> Result<Option<PauseRecord>, StateError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT paused_by, paused_at_ms FROM connector_pauses WHERE connector = ?1",
            )?
            .query_row([connector], by_and_time)
            .optional()?
            .map(|(by, at_ms)| pause_of(by, at_ms)))
    }

    fn paused_connectors(&self) -> Result<Vec<(String, PauseRecord)>, StateError> {
        listed(
            &self.conn,
            "SELECT connector, paused_by, paused_at_ms FROM connector_pauses ORDER BY connector",
            pause_of,
        )
    }

    fn request_run(&mut self, connector: &str, by: &str) -> Result<RunRequest, StateError> {
        let tx = self.conn.transaction()?;
        insert_request(&tx, connector, &request_of(by.to_string(), now_ms()))?;
        let request = tx
            .prepare_cached(
                "SELECT requested_by, requested_at_ms FROM run_requests WHERE connector = ?1",
            )?
            .query_row([connector], by_and_time)?;
        tx.commit()?;
        Ok(request_of(request.0, request.1))
    }

    fn take_run_request(&mut self, connector: &str) -> Result<Option<RunRequest>, StateError> {
        // One statement: of two processes deleting the row, one finds it.
        Ok(self
            .conn
            .prepare_cached(
                "DELETE FROM run_requests WHERE connector = ?1
                 RETURNING requested_by, requested_at_ms",
            )?
            .query_row([connector], by_and_time)
            .optional()?
            .map(|(by, at_ms)| request_of(by, at_ms)))
    }

    fn run_requests(&self) -> Result<Vec<(String, RunRequest)>, StateError> {
        listed(
            &self.conn,
            "SELECT connector, requested_by, requested_at_ms FROM run_requests ORDER BY connector",
            request_of,
        )
    }
}
