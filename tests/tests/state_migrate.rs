//! `connector state migrate --to postgres://…` with the real binary: a
//! SQLite state built by real runs (quarantined items, a backfill, plugin
//! values) is copied into a throw-away PostgreSQL; the copy reads the same
//! and a worker on it goes on delivering only what is new. A non-empty
//! target is refused, and a row changed after the copy is caught by the
//! hash check.

use std::path::Path;
use std::process::{Command, Output};

use connector_e2e::ops::*;
use connector_e2e::postgres::{Postgres, PostgresOptions};
use connector_email::Email;
use connector_state::StateError;
use connector_state::prelude::*;
use connector_state::transfer::{self, StateExport, StateImport, Table, TransferError};
use connector_state::{
    CheckpointSlot, DEFAULT_LEASE, Fingerprint, LeaseRequest, LockOutcome, PageCommit,
    QuarantineEntry, TranscriptLine, verify_chain,
};
use connector_state_postgres::{PostgresConfig, PostgresStore};
use connector_state_sqlite::SqliteStore;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_connector-cli");

/// Runs `connector` with `global` flags and `args`, the test server's
/// password in the environment.
fn run(pg: &Postgres, global: &[&str], args: &[&str]) -> Output {
    Command::new(BIN)
        .args(global)
        .args(args)
        .env("CONNECTOR_STATE_PASSWORD", pg.password())
        .env("CONNECTOR_LOG", "warn")
        .env_remove("CONNECTOR_STATE_URL")
        .output()
        .unwrap()
}

fn store(pg: &Postgres, db: &str) -> PostgresStore {
    let config = PostgresConfig::parse(&pg.url(db))
        .unwrap()
        .with_password(pg.password());
    PostgresStore::connect(&config).unwrap()
}

/// The per-connector counts `status --json` reports.
fn counts(status: &str) -> Vec<(String, u64, u64)> {
    let v: Value = serde_json::from_str(status).unwrap();
    v["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["deliveries_in_ledger"].as_u64().unwrap(),
                c["in_quarantine"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_migrated_state_reads_the_same_and_a_worker_on_it_delivers_only_what_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = chat_setup(&dir.path().join("chat"), "chat", 40, 5, "1h");
    let config = s.config.to_str().unwrap().to_string();
    let sqlite_dir = s.state.to_str().unwrap().to_string();
    let bin = Path::new(BIN);

    // A SQLite state from real runs: a scheduled run, a backfill, and a
    // plugin value.
    connector_ok(bin, &s.state, &["run", "--once", &config]);
    connector_ok(
        bin,
        &s.state,
        &["run", "--once", "--from", "2020-01-01", &config],
    );
    let sqlite_path = s.state.join("state.db");
    {
        let mut db = SqliteStore::open(&sqlite_path).unwrap();
        db.kv_set("chat", "note", b"kept across the move").unwrap();
    }
    // Admin actions: a pause kept, and the audit trail's chain.
    for action in ["pause", "resume", "pause"] {
        connector_ok(bin, &s.state, &[action, "other"]);
    }
    assert!(!s.truth.quarantined.is_empty(), "the export quarantines");
    assert_mailboxes_match(&s.mail, &s.truth);
    let status_before = connector_ok(bin, &s.state, &["status", "--json", &config]);
    let quarantine_before = connector_ok(bin, &s.state, &["quarantine", "list", "--json"]);
    let source_digests = {
        let db = SqliteStore::open(&sqlite_path).unwrap();
        transfer::digest(&db).unwrap()
    };

    let pg = Postgres::start(PostgresOptions::default()).expect("a throw-away PostgreSQL");
    pg.create_database("migrated").unwrap();
    let url = pg.url("migrated");
    let started = std::time::Instant::now();
    let out = succeeded(
        run(
            &pg,
            &["--state-dir", &sqlite_dir],
            &["state", "migrate", "--to", &url],
        ),
        "state migrate",
    );
    eprintln!("migrate took {:?}:\n{out}", started.elapsed());
    for table in ["runs", "ledger_items", "deliveries", "quarantine", "kv"] {
        assert!(out.contains(table), "{table} in the report:\n{out}");
    }

    // The source is unchanged, and the target holds exactly its rows.
    {
        let db = SqliteStore::open(&sqlite_path).unwrap();
        assert_eq!(transfer::digest(&db).unwrap(), source_digests);
        let target = store(&pg, "migrated");
        transfer::verify(&source_digests, &target).unwrap();
        assert_eq!(
            target.checkpoint("chat").unwrap(),
            db.checkpoint("chat").unwrap()
        );
        assert_eq!(
            target.kv_get("chat", "note").unwrap().as_deref(),
            Some(&b"kept across the move"[..])
        );
        assert!(target.leases().unwrap().is_empty(), "leases start afresh");
        let trail = target.audit_records(0, 100).unwrap();
        assert_eq!(trail, db.audit_records(0, 100).unwrap());
        assert_eq!(trail.len(), 3);
        assert_eq!(verify_chain(&trail), Ok(()));
        assert_eq!(target.audit_head().unwrap(), db.audit_head().unwrap());
        assert_eq!(target.paused("other").unwrap(), db.paused("other").unwrap());
        assert!(target.paused("other").unwrap().is_some());
    }

    // The same counts and quarantine over --state-url.
    let worker = dir.path().join("worker");
    let worker_dir = worker.to_str().unwrap();
    let pg_flags = ["--state-dir", worker_dir, "--state-url", url.as_str()];
    let status_after = succeeded(
        run(&pg, &pg_flags, &["status", "--json", &config]),
        "status",
    );
    assert_eq!(counts(&status_after), counts(&status_before));
    let quarantine_after = succeeded(
        run(&pg, &pg_flags, &["quarantine", "list", "--json"]),
        "quarantine list",
    );
    assert_eq!(
        serde_json::from_str::<Value>(&quarantine_after).unwrap(),
        serde_json::from_str::<Value>(&quarantine_before).unwrap()
    );
    let last_copied_run = store(&pg, "migrated").last_run("chat").unwrap().unwrap().id;
    let verified = succeeded(run(&pg, &pg_flags, &["audit", "verify"]), "audit verify");
    assert!(verified.contains("OK: 3 record(s)"), "{verified}");
    succeeded(run(&pg, &pg_flags, &["resume", "other"]), "resume");
    let verified = succeeded(run(&pg, &pg_flags, &["audit", "verify"]), "audit verify");
    assert!(
        verified.contains("OK: 4 record(s)"),
        "the chain goes on: {verified}"
    );

    // New messages: a run over the copy delivers them, and nothing twice.
    append_messages(&mut s, 40, 12);
    succeeded(
        run(&pg, &pg_flags, &["run", "--once", &config]),
        "run --once over the copy",
    );
    assert_mailboxes_match(&s.mail, &s.truth);
    let new_run = store(&pg, "migrated").last_run("chat").unwrap().unwrap().id;
    assert!(
        new_run > last_copied_run,
        "{new_run} after {last_copied_run}"
    );

    // The copied quarantine is redelivered once the mapping is fixed.
    let out = s.redeliver_quarantine_to_dave(|| {
        succeeded(
            run(&pg, &pg_flags, &["quarantine", "redeliver", &config]),
            "quarantine redeliver",
        )
    });
    let n = s.truth.quarantined.len();
    assert!(out.contains(&format!("{n} imported")), "{out}");

    // A target that holds state is refused, saying what to do.
    let refused = run(
        &pg,
        &["--state-dir", &sqlite_dir],
        &["state", "migrate", "--to", &url],
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("not empty") && stderr.contains("empty database"),
        "{stderr}"
    );
}

#[test]
fn a_row_changed_in_the_copy_fails_the_check_naming_its_table_and_connector() {
    let dir = tempfile::tempdir().unwrap();
    let s = chat_setup(&dir.path().join("chat"), "chat", 12, 5, "1h");
    let config = s.config.to_str().unwrap().to_string();
    connector_ok(Path::new(BIN), &s.state, &["run", "--once", &config]);
    let mut source = SqliteStore::open(&s.state.join("state.db")).unwrap();
    // A quarantined email too big for memory, which travels spooled and
    // is stored in chunks.
    let big = vec![b'x'; connector_email::DEFAULT_SPILL_ABOVE + 100];
    let email = Email::spool_from(
        "big@test.invalid".to_string(),
        &mut &big[..],
        &std::env::temp_dir(),
        1_000,
    )
    .unwrap();
    let run = source.begin_run("chat", 1_000).unwrap();
    let request = LeaseRequest {
        owner: "test".to_string(),
        ttl: DEFAULT_LEASE,
        fingerprint: Fingerprint::new(),
    };
    let LockOutcome::Taken(lock) = source.lock_runs("chat", &request).unwrap() else {
        panic!("the lease is free");
    };
    let page = PageCommit {
        quarantine: vec![QuarantineEntry {
            item_id: "big".to_string(),
            message_id: "big@test.invalid".to_string(),
            email,
            sent_at_ms: 1_000,
            unmapped: Vec::new(),
            reason: "refused".to_string(),
            source_sha256: String::new(),
        }],
        checkpoint_slot: CheckpointSlot::Keep,
        // Two days of a conversation, one of them sealed into its
        // transcript: both travel, with the part.
        transcript_lines: ["2024-01-01", "2024-01-02"]
            .iter()
            .enumerate()
            .map(|(n, day)| TranscriptLine {
                conversation_id: "room".to_string(),
                day: day.to_string(),
                item_id: format!("m{n}"),
                sent_at_ms: 1_000 + n as i64,
                mailboxes: vec!["a@test.invalid".to_string(), "b@test.invalid".to_string()],
                entry: vec![0, 1, 2, n as u8],
                part: None,
            })
            .collect(),
        ..PageCommit::default()
    };
    source
        .commit_page("chat", run, lock.token(), &page)
        .unwrap();
    source
        .seal_transcript("chat", "room", "2024-01-01")
        .unwrap();
    source.release_lease("chat", lock.token()).unwrap();
    drop(lock);

    let pg = Postgres::start(PostgresOptions::default()).expect("a throw-away PostgreSQL");
    pg.create_database("copy").unwrap();
    let mut target = store(&pg, "copy");
    let digests = transfer::migrate(&source, &mut target, "copy").unwrap();
    assert!(
        digests
            .iter()
            .any(|d| d.table == Table::Deliveries && d.rows > 0)
    );

    assert_eq!(
        target.quarantine("chat").unwrap(),
        source.quarantine("chat").unwrap(),
        "the big email comes back whole"
    );
    assert_eq!(
        target.undelivered_transcripts("chat").unwrap(),
        source.undelivered_transcripts("chat").unwrap(),
    );
    let sealed = &source.undelivered_transcripts("chat").unwrap()[0];
    assert_eq!(
        target.transcript_lines("chat", sealed).unwrap(),
        source.transcript_lines("chat", sealed).unwrap()
    );
    assert_eq!(
        target.days_to_seal("chat", "2024-12-31").unwrap(),
        [("room".to_string(), "2024-01-02".to_string())]
    );
    // Back from PostgreSQL into SQLite, the same rows again.
    let mut back = SqliteStore::open_in_memory().unwrap();
    assert_eq!(
        transfer::migrate(&target, &mut back, ":memory:").unwrap(),
        digests
    );

    // An import stopped half-way stores nothing: the database is still
    // empty and a migration into it can be retried.
    pg.create_database("interrupted").unwrap();
    let mut interrupted = store(&pg, "interrupted");
    let stopped = interrupted.import_state(&mut |into| {
        let mut rows = 0;
        source.export_state(&mut |row| {
            rows += 1;
            if rows > 50 {
                return Err(StateError::Io("stopped half-way".to_string()));
            }
            into.push(row)
        })
    });
    assert!(stopped.is_err());
    assert_eq!(interrupted.held_state().unwrap(), None);
    transfer::migrate(&source, &mut interrupted, "interrupted").unwrap();

    // Then one row of the copy is changed.
    let mut raw =
        postgres::Client::connect(&pg.url_with_password("copy"), postgres::NoTls).unwrap();
    // The deliveries table is partitioned: one row is found by its item
    // and mailbox.
    let changed = raw
        .execute(
            "UPDATE deliveries SET receipt = receipt || '-tampered'
             WHERE (item, mailbox) = (SELECT item, mailbox FROM deliveries
                                      ORDER BY item, mailbox LIMIT 1)",
            &[],
        )
        .unwrap();
    assert_eq!(changed, 1);
    match transfer::verify(&digests, &target) {
        Err(TransferError::Mismatch {
            table, connector, ..
        }) => {
            assert_eq!(table, Table::Deliveries);
            assert_eq!(connector, "chat");
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    // And a second migration into it is refused.
    assert!(matches!(
        transfer::migrate(&source, &mut target, "copy"),
        Err(TransferError::TargetNotEmpty { .. })
    ));
}
