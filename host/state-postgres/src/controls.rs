//! The `connector_pauses` and `run_requests` tables: what admins ask of
//! the connectors' runs, seen by every worker of the fleet. Each change is
//! one statement; taking a run request deletes its row, so of workers
//! taking at once only the one whose delete found the row gets it. Times
//! are the server's clock.

use postgres::GenericClient;

use crate::{Fail, PostgresStore, Session};
use connector_state::{ConnectorControls, PauseRecord, RunRequest, StateError};

/// Writes a connector's pause as copied from another state.
pub(crate) fn insert_pause<C: GenericClient>(
    s: &mut Session<'_, C>,
    connector: &str,
    pause: &PauseRecord,
) -> Result<(), Fail> {
    s.execute(
        "INSERT INTO connector_pauses (connector, paused_by, paused_at_ms) VALUES ($1, $2, $3)",
        &[&connector, &pause.by, &pause.at_ms],
    )?;
    Ok(())
}

/// Writes a connector's run request as copied from another state.
pub(crate) fn insert_request<C: GenericClient>(
    s: &mut Session<'_, C>,
    connector: &str,
    request: &RunRequest,
) -> Result<(), Fail> {
    s.execute(
        "INSERT INTO run_requests (connector, requested_by, requested_at_ms) VALUES ($1, $2, $3)",
        &[&connector, &request.by, &request.at_ms],
    )?;
    Ok(())
}

fn pause_of(r: &postgres::Row, first: usize) -> PauseRecord {
    PauseRecord {
        by: r.get(first),
        at_ms: r.get(first + 1),
    }
}

fn request_of(r: &postgres::Row, first: usize) -> RunRequest {
    RunRequest {
        by: r.get(first),
        at_ms: r.get(first + 1),
    }
}

impl ConnectorControls for PostgresStore {
    fn pause(&mut self, connector: &str, by: &str) -> Result<PauseRecord, StateError> {
        self.with(|c| {
            // A conflict updates nothing but returns the pause in force.
            let row = c.session().query_one(
                "INSERT INTO connector_pauses AS p (connector, paused_by, paused_at_ms)
                 VALUES ($1, $2, state_now_ms())
                 ON CONFLICT (connector) DO UPDATE SET paused_by = p.paused_by
                 RETURNING paused_by, paused_at_ms",
                &[&connector, &by],
            )?;
            Ok(pause_of(&row, 0))
        })
    }

    fn resume(&mut self, connector: &str) -> Result<Option<PauseRecord>, StateError> {
        self.with(|c| {
            Ok(c.session()
                .query_opt(
                    "DELETE FROM connector_pauses WHERE connector = $1
                     RETURNING paused_by, paused_at_ms",
                    &[&connector],
                )?
                .map(|r| pause_of(&r, 0)))
        })
    }

    fn paused(&self, connector: &str) -> Result<Option<PauseRecord>, StateError> {
        self.with(|c| {
            Ok(c.session()
                .query_opt(
                    "SELECT paused_by, paused_at_ms FROM connector_pauses WHERE connector = $1",
                    &[&connector],
                )?
                .map(|r| pause_of(&r, 0)))
        })
    }

    fn paused_connectors(&self) -> Result<Vec<(String, PauseRecord)>, StateError> {
        self.with(|c| {
            Ok(c.session()
                .query(
                    "SELECT connector, paused_by, paused_at_ms FROM connector_pauses
                     ORDER BY connector",
                    &[],
                )?
                .iter()
                .map(|r| (r.get(0), pause_of(r, 1)))
                .collect())
        })
    }

    fn request_run(&mut self, connector: &str, by: &str) -> Result<RunRequest, StateError> {
        self.with(|c| {
            let row = c.session().query_one(
                "INSERT INTO run_requests AS q (connector, requested_by, requested_at_ms)
                 VALUES ($1, $2, state_now_ms())
                 ON CONFLICT (connector) DO UPDATE SET requested_by = q.requested_by
                 RETURNING requested_by, requested_at_ms",
                &[&connector, &by],
            )?;
            Ok(request_of(&row, 0))
        })
    }

    fn take_run_request(&mut self, connector: &str) -> Result<Option<RunRequest>, StateError> {
        self.with(|c| {
            Ok(c.session()
                .query_opt(
                    "DELETE FROM run_requests WHERE connector = $1
                     RETURNING requested_by, requested_at_ms",
                    &[&connector],
                )?
                .map(|r| request_of(&r, 0)))
        })
    }

    fn run_requests(&self) -> Result<Vec<(String, RunRequest)>, StateError> {
        self.with(|c| {
            Ok(c.session()
                .query(
                    "SELECT connector, requested_by, requested_at_ms FROM run_requests
                     ORDER BY connector",
                    &[],
                )?
                .iter()
                .map(|r| (r.get(0), request_of(r, 1)))
                .collect())
        })
    }
}
