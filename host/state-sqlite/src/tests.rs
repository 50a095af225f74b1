use crate::schema::MIGRATIONS;
use crate::*;
use connector_email::Email;
use connector_model::Person;
use connector_state::prelude::*;
use connector_state::records::*;
use connector_state::{DEFAULT_LEASE, Fingerprint, LeaseRequest, LockOutcome};

fn entry(item: &str, mailbox: &str) -> LedgerEntry {
    LedgerEntry {
        item_id: item.to_string(),
        mailbox: mailbox.to_string(),
        message_id: format!("{item}@test.connector.invalid"),
        email_sha256: "e".repeat(64),
        source_sha256: "s".repeat(64),
        receipt: format!("{mailbox}/cur/{item}"),
        delivered_at_ms: 1_000,
    }
}

fn quarantined(item: &str, reason: &str) -> QuarantineEntry {
    QuarantineEntry {
        item_id: item.to_string(),
        message_id: format!("{item}@test.connector.invalid"),
        email: Email::from_bytes(
            format!("{item}@test.connector.invalid"),
            b"Subject: x\r\n\r\nbody\0\xff".to_vec(),
            500,
        ),
        sent_at_ms: 500,
        unmapped: vec![Person {
            id: "u-ext".to_string(),
            display_name: Some("Ext Ernal".to_string()),
            email: None,
        }],
        reason: reason.to_string(),
        source_sha256: "s".repeat(64),
    }
}

/// Takes the connector's lease (for this one commit) and gives its token.
fn lease(db: &SqliteStore, connector: &str) -> u64 {
    let request = LeaseRequest {
        owner: "test".to_string(),
        ttl: DEFAULT_LEASE,
        fingerprint: Fingerprint::new(),
    };
    match db.lock_runs(connector, &request).unwrap() {
        LockOutcome::Taken(lock) => lock.token(),
        other => panic!("lease of {connector} not taken: {other:?}"),
    }
}

fn counts(n: u64) -> RunCounts {
    RunCounts {
        pages: 1,
        items_from_source: n,
        items_for_import: 2 * n,
        imported: n,
        skipped_duplicates: 1,
        failed: 0,
        quarantined: 1,
    }
}

fn page(ledger: Vec<LedgerEntry>, checkpoint: &[u8]) -> PageCommit {
    PageCommit {
        ledger,
        quarantine: vec![quarantined("q1", "no mailbox for u-ext")],
        released: Vec::new(),
        counts: counts(2),
        checkpoint: checkpoint.to_vec(),
        ..PageCommit::default()
    }
}

#[test]
fn open_creates_a_versioned_schema_in_wal_mode_with_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let db = SqliteStore::open(&path).unwrap();
    assert_eq!(db.path(), Some(path.as_path()));
    assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
    let mode: String = db
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = db
        .conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2, "FULL");
    let timeout: i64 = db
        .conn
        .query_row("PRAGMA busy_timeout", [], |r| r.get(0))
        .unwrap();
    assert!(timeout >= 1000);
}

#[test]
fn reopening_keeps_data_and_applies_each_migration_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let mut db = SqliteStore::open(&path).unwrap();
        let run = db.begin_run("c", 1).unwrap();
        db.commit_page(
            "c",
            run,
            lease(&db, "c"),
            &page(vec![entry("m1", "a@x")], b"cp-1"),
        )
        .unwrap();
    }
    let db = SqliteStore::open(&path).unwrap();
    assert_eq!(db.checkpoint("c").unwrap(), Some(b"cp-1".to_vec()));
    assert!(db.is_delivered("c", "m1", "a@x").unwrap());
    let rows: i64 = db
        .conn
        .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, MIGRATIONS.len() as i64);
}

#[test]
fn database_from_a_newer_release_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(SqliteStore::open(&path).unwrap());
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations (version, description) VALUES (?1, 'future')",
            [SCHEMA_VERSION + 1],
        )
        .unwrap();
    }
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(err, StateError::NewerSchema { found, supported, .. } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("newer connector release"), "{text}");
}

#[test]
fn a_file_that_is_not_a_database_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StateError::Open { .. }), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()));
}

#[test]
fn a_committed_page_survives_reopening_the_file() {
    // (What every store does is in tests/tests/state_store.rs, run against
    // SQLite and PostgreSQL alike; here only what is SQLite's own.)
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut db = SqliteStore::open(&path).unwrap();
    let run = db.begin_run("c", 0).unwrap();
    db.commit_page(
        "c",
        run,
        lease(&db, "c"),
        &page(vec![entry("m1", "a@x")], b"cp"),
    )
    .unwrap();
    drop(db);
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(reopened.checkpoint("c").unwrap(), Some(b"cp".to_vec()));
}

#[test]
fn a_version_1_database_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY NOT NULL,
                description TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT 'then');",
        )
        .unwrap();
        conn.execute_batch(MIGRATIONS[0].2).unwrap();
        conn.execute_batch(
            "INSERT INTO schema_migrations (version, description) VALUES (1, 'v1');
             INSERT INTO runs (connector, started_at_ms, finished_at_ms, outcome)
                VALUES ('c', 1, 2, 'succeeded');
             INSERT INTO quarantine VALUES ('c', 'q', 'q@x', x'00', 3, '[]', 'why', 1);",
        )
        .unwrap();
    }
    let db = SqliteStore::open(&path).unwrap();
    assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
    let r = db.last_run("c").unwrap().unwrap();
    assert_eq!(r.kind, RunKind::Run);
    assert_eq!(r.pid, None);
    let q = db.quarantine("c").unwrap();
    assert_eq!(q[0].source_sha256, "");
    assert_eq!(q[0].email.bytes().unwrap()[..], [0u8]);
    assert_eq!(q[0].reason, "why");
}

#[test]
fn a_version_4_ledger_is_split_into_items_and_deliveries_keeping_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY NOT NULL,
                description TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT 'then');",
        )
        .unwrap();
        for (version, _, sql) in &MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations (version, description) VALUES (?1, 'old')",
                [version],
            )
            .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO ledger VALUES ('c', 'm1', 'a@x', 'm1@x', 'e1', 's1', 'r-a', 20, 1);
             INSERT INTO ledger VALUES ('c', 'm1', 'b@x', 'm1@x', 'e2', 's1', 'r-b', 10, 2);
             INSERT INTO ledger VALUES ('d', 'm1', 'a@x', 'm1@y', 'e3', 's3', 'r-c', 30, 3);",
        )
        .unwrap();
    }
    let db = SqliteStore::open(&path).unwrap();
    let mut c = db.ledger_entries("c").unwrap();
    c.sort_by(|x, y| x.mailbox.cmp(&y.mailbox));
    let got: Vec<_> = c
        .iter()
        .map(|e| {
            (
                e.mailbox.as_str(),
                e.email_sha256.as_str(),
                e.receipt.as_str(),
                e.delivered_at_ms,
            )
        })
        .collect();
    assert_eq!(got, [("a@x", "e1", "r-a", 20), ("b@x", "e2", "r-b", 10)]);
    assert_eq!(db.ledger_entries("d").unwrap()[0].message_id, "m1@y");
    let (items, own_emails): (i64, i64) = db
        .conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM ledger_items),
                    (SELECT COUNT(*) FROM deliveries WHERE email_sha256 IS NOT NULL)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(items, 2, "one row per (connector, item)");
    assert_eq!(
        own_emails, 1,
        "only the delivery whose email differs keeps its SHA-256"
    );
}

#[test]
fn a_transfer_copies_every_table_with_big_emails_and_catches_a_changed_row() {
    use connector_state::transfer::{self, Table, TransferError};
    let mut source = SqliteStore::open_in_memory().unwrap();
    let run = source.begin_run("c", 100).unwrap();
    let token = lease(&source, "c");
    let mut p = page(
        vec![entry("i1", "a@x"), entry("i1", "b@x"), entry("i2", "a@x")],
        b"cp",
    );
    let big = vec![b'x'; connector_email::DEFAULT_SPILL_ABOVE + 10];
    let email = Email::spool_from(
        "big@test.connector.invalid".to_string(),
        &mut &big[..],
        &std::env::temp_dir(),
        600,
    )
    .unwrap();
    p.quarantine.push(QuarantineEntry {
        email,
        ..quarantined("q2", "no mailbox for u-ext")
    });
    p.seen = vec![SeenItem {
        item_id: "i1".to_string(),
        source_sha256: "s".repeat(64),
        sent_at_ms: 500,
        mailboxes: vec!["a@x".to_string(), "b@x".to_string()],
        unmapped: vec!["u-ext".to_string()],
    }];
    p.failures = vec![RunFailure {
        item_id: "q1".to_string(),
        source_user_id: "u-ext".to_string(),
        mailbox: String::new(),
        kind: FailureKind::Unmapped,
        reason: "no mailbox".to_string(),
    }];
    source.commit_page("c", run, token, &p).unwrap();
    source
        .finish_run(run, 200, RunOutcome::Succeeded, &RunCounts::default(), None)
        .unwrap();
    source.kv_set("c", "k", b"v").unwrap();

    let mut target = SqliteStore::open_in_memory().unwrap();
    let digests = transfer::migrate(&source, &mut target, ":memory:").unwrap();
    let rows = |table| {
        digests
            .iter()
            .find(|d| d.table == table && d.connector == "c")
            .map_or(0, |d| d.rows)
    };
    assert_eq!(rows(Table::LedgerItems), 2);
    assert_eq!(rows(Table::Deliveries), 3);
    assert_eq!(rows(Table::Quarantine), 2);
    assert_eq!(rows(Table::RunItems), 1);
    assert_eq!(rows(Table::RunFailures), 1);
    assert_eq!(
        target.quarantine("c").unwrap(),
        source.quarantine("c").unwrap()
    );
    assert_eq!(
        target.ledger_entries("c").unwrap(),
        source.ledger_entries("c").unwrap()
    );
    assert_eq!(target.run(run).unwrap(), source.run(run).unwrap());
    assert!(target.begin_run("c", 300).unwrap() > run, "ids go on");

    // A second transfer into it is refused; a changed row is caught.
    assert!(matches!(
        transfer::migrate(&source, &mut target, "target"),
        Err(TransferError::TargetNotEmpty { .. })
    ));
    let mut copy = SqliteStore::open_in_memory().unwrap();
    transfer::migrate(&source, &mut copy, "copy").unwrap();
    copy.conn
        .execute("UPDATE kv SET value = X'77' WHERE key = 'k'", [])
        .unwrap();
    match transfer::verify(&digests, &copy) {
        Err(TransferError::Mismatch {
            table, connector, ..
        }) => assert_eq!((table, connector.as_str()), (Table::Kv, "c")),
        other => panic!("expected a mismatch, got {other:?}"),
    }
}
