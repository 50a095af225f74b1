//! `ledger`: what a delivery costs the state, in each store: bytes on disk
//! per (item, mailbox) row of the ledger, and committed deliveries per
//! second, with pages as the host commits them.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use connector_e2e::postgres::{Postgres, PostgresOptions};
use connector_model::digest::sha256_hex;
use connector_state::{
    DEFAULT_LEASE, LeaseRequest, LedgerEntry, LockOutcome, PageCommit, StateStore,
};
use connector_state_postgres::{PostgresConfig, PostgresStore};
use connector_state_sqlite::SqliteStore;

/// Mailboxes each item goes to, as in the estimate.
const FAN_OUT: usize = 5;
/// Deliveries per committed page.
const PER_PAGE: usize = 1_000;

/// A page of `PER_PAGE` deliveries starting at item `first`, with fields
/// of the sizes real ones have: a 32-character item id, a Message-ID, two
/// SHA-256s, mailboxes of a bank's domain and Maildir-style receipts.
fn page(first: usize) -> PageCommit {
    let mut ledger = Vec::with_capacity(PER_PAGE);
    for n in first..first + PER_PAGE / FAN_OUT {
        let item_id = format!("msg-{n:012}-{}", &sha256_hex(&n.to_le_bytes())[..15]);
        let email_sha256 = sha256_hex(item_id.as_bytes());
        for m in 0..FAN_OUT {
            let mailbox = format!("user{:05}@bank.example", (n * 7 + m * 131) % 20_000);
            ledger.push(LedgerEntry {
                receipt: format!("{mailbox}/cur/{}:2,S", &email_sha256[..32]),
                mailbox,
                message_id: format!("<{}@symphony.connector.invalid>", &email_sha256[..24]),
                email_sha256: email_sha256.clone(),
                source_sha256: sha256_hex(&email_sha256.as_bytes()[..8]),
                item_id: item_id.clone(),
                delivered_at_ms: 1_790_000_000_000 + n as i64 * 1_000,
            });
        }
    }
    PageCommit {
        ledger,
        ..PageCommit::default()
    }
}

/// Commits `deliveries` into `store`, one page at a time under a lease, as
/// the host does; returns the time the commits took.
fn fill(store: &mut dyn StateStore, deliveries: usize) -> Result<Duration> {
    let request = LeaseRequest {
        owner: "bench".into(),
        ttl: DEFAULT_LEASE,
        fingerprint: Default::default(),
    };
    let LockOutcome::Taken(lock) = store.lock_runs("bench", &request)? else {
        anyhow::bail!("the bench connector's lease is held");
    };
    let run = store.begin_run("bench", 0)?;
    let mut spent = Duration::ZERO;
    for first in (0..deliveries / FAN_OUT).step_by(PER_PAGE / FAN_OUT) {
        let page = page(first);
        let start = Instant::now();
        store.commit_page("bench", run, lock.token(), &page)?;
        spent += start.elapsed();
    }
    Ok(spent)
}

fn report(store: &str, deliveries: usize, bytes: u64, spent: Duration) {
    println!(
        "ledger {store:<10} {deliveries} deliveries: {:>6.1} bytes/delivery on disk, {:>8.0} deliveries/s committed ({} per page)",
        bytes as f64 / deliveries as f64,
        deliveries as f64 / spent.as_secs_f64(),
        PER_PAGE
    );
}

/// The SQLite file's growth (after the last connection closed, which folds
/// the write-ahead log into it).
fn sqlite(dir: &Path, deliveries: usize) -> Result<()> {
    let path = dir.join("state.db");
    drop(SqliteStore::open(&path)?);
    let empty = std::fs::metadata(&path)?.len();
    let mut store = SqliteStore::open(&path)?;
    let spent = fill(&mut store, deliveries)?;
    drop(store);
    let full = std::fs::metadata(&path)?.len();
    report("SQLite", deliveries, full - empty, spent);
    Ok(())
}

/// The size of the ledger's tables in a throw-away PostgreSQL (every month
/// partition, with its indexes and TOAST), after a VACUUM; and the
/// write-ahead log the commits wrote, which replicas and backups carry.
fn postgres(deliveries: usize) -> Result<()> {
    let server = Postgres::start(PostgresOptions::default())?;
    server.create_database("bench")?;
    let config = PostgresConfig::parse(&server.url("bench"))?.with_password(server.password());
    let mut store = PostgresStore::connect(&config)?;
    let mut client = postgres::Client::connect(&server.url_with_password("bench"), postgres::NoTls)
        .context("connecting to measure the ledger")?;
    let wal_start: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])?
        .get(0);
    let spent = fill(&mut store, deliveries)?;
    drop(store);
    let wal: i64 = client
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint",
            &[&wal_start],
        )?
        .get(0);
    client.batch_execute("VACUUM ANALYZE")?;
    let bytes: i64 = client
        .query_one(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind = 'r'
               AND (c.relname LIKE 'ledger_items%' OR c.relname LIKE 'deliveries%')",
            &[],
        )?
        .get(0);
    report("PostgreSQL", deliveries, bytes as u64, spent);
    println!(
        "ledger PostgreSQL  write-ahead log written: {:>6.1} bytes/delivery",
        wal as f64 / deliveries as f64
    );
    Ok(())
}

/// Both stores, `deliveries` each.
pub fn ledger(tmp: tempfile::TempDir, deliveries: usize) -> Result<()> {
    let deliveries = deliveries.max(PER_PAGE) / PER_PAGE * PER_PAGE;
    sqlite(tmp.path(), deliveries)?;
    postgres(deliveries)
}
