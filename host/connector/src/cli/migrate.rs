//! `connector state migrate --to URL`: the SQLite state of `--state-dir`
//! copied into an empty PostgreSQL database and checked, so that a fleet
//! of workers continues from it without delivering anything again.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::state_args::StateArgs;
use connector_state::prelude::*;
use connector_state::transfer::{self, TableDigest};
use connector_state::{Fingerprint, LeaseRequest, LockOutcome};
use connector_state_postgres::PostgresStore;
use connector_state_sqlite::SqliteStore;

/// Copies the SQLite state into the PostgreSQL database at `to`, holding
/// every connector's run lock on the source meanwhile, and prints the
/// counts and SHA-256s checked.
pub fn migrate(state: &StateArgs, to: &str) -> Result<ExitCode> {
    if state.url.is_some() {
        bail!(
            "`state migrate` copies the SQLite state of --state-dir into the database of --to; leave out --state-url (and unset CONNECTOR_STATE_URL)"
        );
    }
    let path = state.sqlite_path();
    if !path.is_file() {
        bail!(
            "there is no SQLite state at {} to migrate; pass the daemon's `--state-dir` (or set CONNECTOR_STATE_DIR)",
            path.display()
        );
    }
    let target_config = state.postgres(to)?;
    let location = target_config.redacted();
    let mut source = SqliteStore::open(&path).context("opening the SQLite state to migrate")?;

    // No daemon may change the source while it is read: refuse while one
    // is alive, and hold every connector's run lock during the copy.
    let ttl = state.lease_time();
    let now = source.clock_ms()?;
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    if let Some(w) = source
        .workers()?
        .into_iter()
        .find(|w| now - w.heartbeat_at_ms <= ttl_ms)
    {
        bail!(
            "a daemon is running on the SQLite state {} (worker {} on {}, process {}); stop every daemon and run using it, then run the migration again",
            path.display(),
            w.id,
            w.host,
            w.pid
        );
    }
    let request = LeaseRequest {
        owner: format!("state-migrate-{}", std::process::id()),
        ttl,
        fingerprint: Fingerprint::new(),
    };
    let mut locks = Vec::new();
    for connector in source.connectors()? {
        match source.lock_runs(&connector, &request)? {
            LockOutcome::Taken(lock) => locks.push(lock),
            LockOutcome::Held { owner } | LockOutcome::Mismatch { worker: owner, .. } => bail!(
                "connector `{connector}` is being run by {owner} on the SQLite state {}; stop every daemon and run using it, then run the migration again",
                path.display()
            ),
        }
    }

    let mut target = PostgresStore::connect(&target_config)
        .with_context(|| format!("connecting to the target {location}"))?;
    let started = Instant::now();
    let copied = transfer::migrate(&source, &mut target, &location);
    for lock in &locks {
        source.release_lease(&lock.lease().connector, lock.token())?;
    }
    drop(locks);
    let digests = copied?;
    print_digests(&digests)?;
    let rows: u64 = digests.iter().map(|d| d.rows).sum();
    writeln!(
        std::io::stdout().lock(),
        "copied {rows} rows from {} into {location} in {:.1}s, each table checked; run the workers with `--state-url {}`, and keep the SQLite state as a backup (do not run daemons on it any more)",
        path.display(),
        started.elapsed().as_secs_f64(),
        to
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The table of rows and SHA-256s checked.
fn print_digests(digests: &[TableDigest]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let width = digests
        .iter()
        .map(|d| d.connector.len())
        .max()
        .unwrap_or(0)
        .max("connector".len());
    writeln!(
        out,
        "{:<14} {:<width$} {:>10}  sha256",
        "table", "connector", "rows"
    )?;
    for d in digests {
        writeln!(
            out,
            "{:<14} {:<width$} {:>10}  {}",
            d.table.name(),
            d.connector,
            d.rows,
            d.sha256
        )?;
    }
    Ok(())
}
