//! The fleet's tables: `leases` (one per connector, with its fencing
//! token), `workers` (heartbeats) and `fleet_counters` (refused commits).
//! Every time is the server's clock (`state_now_ms()`), so workers whose
//! clocks disagree still agree on who holds a lease.

use std::time::Duration;

use postgres::{Client, GenericClient, Row, Statement, Transaction};

use crate::{Fail, PostgresStore, Session, to_i64, to_u64};
use connector_state::encoding;
use connector_state::fleet::fingerprint_conflict;
use connector_state::{
    Fingerprint, Fleet, LeaseKeeper, LeaseLiveness, LeaseRecord, LeaseRequest, LockOutcome,
    RunLock, StateError, WorkerRecord,
};

/// Takes the lease when it is absent, lapsed or released; one statement,
/// so that of two workers asking at once exactly one gets it. The token
/// grows by one at every taking.
const TAKE: &str = "INSERT INTO leases AS l (connector, owner, token, expires_at_ms, fingerprint)
     VALUES ($1, $2, 1, state_now_ms() + $3, $4::text::jsonb)
     ON CONFLICT (connector) DO UPDATE SET owner = excluded.owner, token = l.token + 1,
        expires_at_ms = excluded.expires_at_ms, fingerprint = excluded.fingerprint
     WHERE l.expires_at_ms <= state_now_ms()
     RETURNING token, expires_at_ms";

/// Extends a lease still held with `token`.
const RENEW: &str = "UPDATE leases SET expires_at_ms = state_now_ms() + $3
     WHERE connector = $1 AND token = $2";

impl Fleet for PostgresStore {
    fn heartbeat(&mut self, worker: &WorkerRecord) -> Result<(), StateError> {
        let connectors = encoding::worker_connectors_json(&worker.connectors)?;
        self.with(|c| {
            c.session().execute(
                "INSERT INTO workers (id, host, pid, version, started_at_ms, heartbeat_at_ms,
                    connectors)
                 VALUES ($1, $2, $3, $4, $5, state_now_ms(), $6::text::jsonb)
                 ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
                    version = excluded.version, started_at_ms = excluded.started_at_ms,
                    heartbeat_at_ms = excluded.heartbeat_at_ms, connectors = excluded.connectors",
                &[
                    &worker.id,
                    &worker.host,
                    &i64::from(worker.pid),
                    &worker.version,
                    &worker.started_at_ms,
                    &connectors,
                ],
            )?;
            Ok(())
        })
    }

    fn forget_worker(&mut self, worker_id: &str) -> Result<(), StateError> {
        self.with(|c| {
            c.session()
                .execute("DELETE FROM workers WHERE id = $1", &[&worker_id])?;
            Ok(())
        })
    }

    fn workers(&self) -> Result<Vec<WorkerRecord>, StateError> {
        self.with(|c| read_workers(&mut c.session()))
    }

    fn leases(&self) -> Result<Vec<LeaseRecord>, StateError> {
        self.with(|c| {
            let rows = c.session().query(
                "SELECT connector, owner, token, expires_at_ms, fingerprint::text FROM leases
                 ORDER BY connector",
                &[],
            )?;
            rows.iter()
                .map(|r| {
                    Ok(LeaseRecord {
                        connector: r.get(0),
                        owner: r.get(1),
                        token: to_u64(r.get(2)),
                        expires_at_ms: r.get(3),
                        fingerprint: fingerprint(r.get(4))?,
                    })
                })
                .collect()
        })
    }

    fn release_lease(&mut self, connector: &str, token: u64) -> Result<(), StateError> {
        self.with(|c| {
            c.session().execute(
                "UPDATE leases SET expires_at_ms = 0 WHERE connector = $1 AND token = $2",
                &[&connector, &to_i64(token)],
            )?;
            Ok(())
        })
    }

    fn fenced_commits(&self) -> Result<u64, StateError> {
        self.with(|c| {
            let n: i64 = c
                .session()
                .query_one(
                    "SELECT value FROM fleet_counters WHERE name = 'fenced_commits'",
                    &[],
                )?
                .get(0);
            Ok(to_u64(n))
        })
    }

    fn clock_ms(&self) -> Result<i64, StateError> {
        self.with(|c| Ok(c.session().query_one("SELECT state_now_ms()", &[])?.get(0)))
    }
}

fn fingerprint(text: &str) -> Result<Fingerprint, Fail> {
    Ok(encoding::parse_fingerprint(text)?)
}

fn read_workers(s: &mut Session<'_, impl GenericClient>) -> Result<Vec<WorkerRecord>, Fail> {
    let rows = s.query(
        "SELECT id, host, pid, version, started_at_ms, heartbeat_at_ms, connectors::text
         FROM workers ORDER BY id",
        &[],
    )?;
    rows.iter().map(worker_record).collect()
}

fn worker_record(r: &Row) -> Result<WorkerRecord, Fail> {
    Ok(WorkerRecord {
        id: r.get(0),
        host: r.get(1),
        pid: u32::try_from(r.get::<_, i64>(2)).unwrap_or(0),
        version: r.get(3),
        started_at_ms: r.get(4),
        heartbeat_at_ms: r.get(5),
        connectors: encoding::parse_worker_connectors(r.get::<_, &str>(6))?,
    })
}

/// Locks the connector's lease row for the rest of the page's transaction
/// (so commits of one connector take turns) and says whether `fence` is
/// its token; a connector never leased has no token to commit under.
pub(crate) fn hold_for_commit(
    tx: &mut Session<'_, Transaction<'_>>,
    connector: &str,
    fence: u64,
) -> Result<bool, Fail> {
    let token: Option<i64> = tx
        .query_opt(
            "SELECT token FROM leases WHERE connector = $1 FOR UPDATE",
            &[&connector],
        )?
        .map(|row| row.get(0));
    Ok(token == Some(to_i64(fence)))
}

/// Counts a commit refused for its stale token (after its transaction was
/// rolled back).
pub(crate) fn count_fenced(s: &mut Session<'_, Client>) -> Result<(), Fail> {
    s.execute(
        "UPDATE fleet_counters SET value = value + 1 WHERE name = 'fenced_commits'",
        &[],
    )?;
    Ok(())
}

/// [`StateStore::lock_runs`](connector_state::StateStore::lock_runs): refused
/// while a live worker runs the connector with other files, taken when
/// absent, lapsed or released, else held by its owner. A taken lease is
/// renewed by a [`LeaseKeeper`] on a connection of its own.
pub(crate) fn lock_runs(
    store: &PostgresStore,
    connector: &str,
    request: &LeaseRequest,
) -> Result<LockOutcome, StateError> {
    let ours = encoding::fingerprint_json(&request.fingerprint)?;
    let ttl_ms = ms(request.ttl);
    // Measured from before the asking, so the worker never thinks its lease
    // lasts longer than the server does.
    let liveness = LeaseLiveness::new(request.ttl);
    // One transaction, the lease row locked from the fingerprint check to
    // the take: two workers with different files cannot both pass the check.
    let outcome =
        store.with(|c| c.transaction(|s| lock_runs_in(s, connector, request, ttl_ms, &ours)))?;
    let lease = match outcome {
        Ok(lease) => lease,
        Err(refused) => return Ok(refused),
    };
    let keeper = keeper(store, &lease, request.ttl, liveness.clone());
    Ok(LockOutcome::Taken(RunLock::new(lease, liveness, keeper)))
}

/// The check and the take of [`lock_runs`], inside its transaction.
fn lock_runs_in(
    s: &mut Session<'_, impl GenericClient>,
    connector: &str,
    request: &LeaseRequest,
    ttl_ms: i64,
    ours: &str,
) -> Result<Result<LeaseRecord, LockOutcome>, Fail> {
    let now: i64 = s.query_one("SELECT state_now_ms()", &[])?.get(0);
    let fleet = s.query_opt(
        "SELECT fingerprint::text FROM leases WHERE connector = $1 FOR UPDATE",
        &[&connector],
    )?;
    if let Some(row) = fleet {
        let fleet = fingerprint(row.get(0))?;
        if fleet != request.fingerprint && !fleet.is_empty() {
            let workers = read_workers(s)?;
            if let Some((differs, worker)) = fingerprint_conflict(
                connector,
                &fleet,
                &request.fingerprint,
                &request.owner,
                &workers,
                now,
                request.ttl,
            ) {
                return Ok(Err(LockOutcome::Mismatch { differs, worker }));
            }
        }
    }
    match s.query_opt(TAKE, &[&connector, &request.owner, &ttl_ms, &ours])? {
        Some(row) => Ok(Ok(LeaseRecord {
            connector: connector.to_string(),
            owner: request.owner.clone(),
            token: to_u64(row.get(0)),
            expires_at_ms: row.get(1),
            fingerprint: request.fingerprint.clone(),
        })),
        None => {
            let owner = s
                .query_opt(
                    "SELECT owner FROM leases WHERE connector = $1",
                    &[&connector],
                )?
                .map(|r| r.get(0))
                .unwrap_or_default();
            Ok(Err(LockOutcome::Held { owner }))
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Renews `lease` every third of `ttl`, on a connection of its own (opened
/// at the first renewal, and again after it is lost).
fn keeper(
    store: &PostgresStore,
    lease: &LeaseRecord,
    ttl: Duration,
    liveness: LeaseLiveness,
) -> LeaseKeeper {
    let config = store.config.clone();
    let tls = store.tls.clone();
    let connector = lease.connector.clone();
    let token = to_i64(lease.token);
    let ttl_ms = ms(ttl);
    let mut conn: Option<(Client, Statement)> = None;
    LeaseKeeper::spawn(ttl, liveness, move || {
        let unavailable = |e: postgres::Error| StateError::Unavailable {
            location: config.redacted(),
            source: Box::new(crate::PostgresError::new(e)),
        };
        if conn.is_none() {
            let mut client = config
                .client_config()
                .connect(tls.clone())
                .map_err(unavailable)?;
            let renew = client.prepare(RENEW).map_err(unavailable)?;
            conn = Some((client, renew));
        }
        let Some((client, renew)) = conn.as_mut() else {
            unreachable!("connected above");
        };
        match client.execute(&*renew, &[&connector, &token, &ttl_ms]) {
            Ok(n) => Ok(n == 1),
            Err(e) => {
                conn = None;
                Err(unavailable(e))
            }
        }
    })
}
