use crate::schema::MIGRATIONS;
use crate::*;
use connector_email::{DEFAULT_SPILL_ABOVE, Email};
use connector_model::Person;
use connector_model::limits::{KV_MAX_KEY_BYTES, KV_MAX_VALUE_BYTES, KV_QUOTA_BYTES};
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
fn checkpoint_is_absent_until_a_page_stores_one_and_is_per_connector() {
    let mut db = SqliteStore::open_in_memory().unwrap();
    assert_eq!(db.checkpoint("a").unwrap(), None);
    let run = db.begin_run("a", 0).unwrap();
    db.commit_page("a", run, lease(&db, "a"), &page(Vec::new(), b"one"))
        .unwrap();
    assert_eq!(db.checkpoint("a").unwrap(), Some(b"one".to_vec()));
    assert_eq!(db.checkpoint("b").unwrap(), None);

    db.commit_page("a", run, lease(&db, "a"), &page(Vec::new(), b"two"))
        .unwrap();
    assert_eq!(db.checkpoint("a").unwrap(), Some(b"two".to_vec()));

    db.clear_checkpoint("a").unwrap();
    assert_eq!(db.checkpoint("a").unwrap(), None);
}

#[test]
fn runs_record_outcome_counts_and_error_newest_first() {
    let mut db = SqliteStore::open_in_memory().unwrap();
    assert_eq!(db.last_run("c").unwrap(), None);
    let first = db.begin_run("c", 100).unwrap();
    db.finish_run(first, 200, RunOutcome::Succeeded, &counts(3), None)
        .unwrap();
    let second = db.begin_run("c", 300).unwrap();
    db.finish_run(
        second,
        400,
        RunOutcome::Failed,
        &RunCounts::default(),
        Some("source said 500"),
    )
    .unwrap();
    let third = db.begin_run("c", 500).unwrap();
    db.begin_run("other", 600).unwrap();

    let runs = db.runs("c", 10).unwrap();
    assert_eq!(
        runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        [third, second, first]
    );
    assert_eq!(runs[2].outcome, Some(RunOutcome::Succeeded));
    assert_eq!(runs[2].counts, counts(3));
    assert_eq!(runs[2].started_at_ms, 100);
    assert_eq!(runs[2].finished_at_ms, Some(200));
    assert_eq!(runs[1].outcome, Some(RunOutcome::Failed));
    assert_eq!(runs[1].error.as_deref(), Some("source said 500"));
    assert_eq!(runs[0].outcome, None);
    assert_eq!(runs[0].finished_at_ms, None);
    assert_eq!(db.runs("c", 2).unwrap().len(), 2);
    assert_eq!(db.last_run("c").unwrap().unwrap().id, third);
    assert_eq!(db.last_run("other").unwrap().unwrap().connector, "other");
}

#[test]
fn finishing_a_run_keeps_the_larger_of_page_counts_and_given_totals() {
    let mut db = SqliteStore::open_in_memory().unwrap();
    let run = db.begin_run("c", 0).unwrap();
    db.commit_page("c", run, lease(&db, "c"), &page(Vec::new(), b"x"))
        .unwrap();
    db.commit_page("c", run, lease(&db, "c"), &page(Vec::new(), b"y"))
        .unwrap();
    let mut pages_total = counts(2);
    pages_total.add(&counts(2));
    assert_eq!(db.last_run("c").unwrap().unwrap().counts, pages_total);

    // Zeros keep the committed numbers…
    db.finish_run(run, 9, RunOutcome::Interrupted, &RunCounts::default(), None)
        .unwrap();
    assert_eq!(db.last_run("c").unwrap().unwrap().counts, pages_total);
    // …and totals that include an uncommitted failure raise them.
    let mut totals = pages_total.clone();
    totals.failed += 1;
    db.finish_run(run, 9, RunOutcome::Failed, &totals, Some("boom"))
        .unwrap();
    assert_eq!(db.last_run("c").unwrap().unwrap().counts, totals);
}

#[test]
fn finishing_an_unknown_run_is_an_error() {
    let mut db = SqliteStore::open_in_memory().unwrap();
    let err = db
        .finish_run(
            RunId(42),
            0,
            RunOutcome::Succeeded,
            &RunCounts::default(),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(err, StateError::UnknownRun { run: RunId(42) }),
        "{err}"
    );
    assert!(err.to_string().contains("#42"));
}

#[test]
fn unfinished_runs_can_be_marked_interrupted() {
    let mut db = SqliteStore::open_in_memory().unwrap();
    let done = db.begin_run("c", 0).unwrap();
    db.finish_run(done, 1, RunOutcome::Succeeded, &RunCounts::default(), None)
        .unwrap();
    let crashed = db.begin_run("c", 2).unwrap();
    db.begin_run("other", 2).unwrap();
    assert_eq!(db.interrupt_unfinished("c", 10).unwrap(), 1);
    let run = db.last_run("c").unwrap().unwrap();
    assert_eq!(run.id, crashed);
    assert_eq!(run.outcome, Some(RunOutcome::Interrupted));
    assert_eq!(run.finished_at_ms, Some(10));
    assert!(run.error.is_some());
    assert_eq!(
        db.runs("c", 5).unwrap()[1].outcome,
        Some(RunOutcome::Succeeded)
    );
    assert_eq!(db.last_run("other").unwrap().unwrap().outcome, None);
}

#[test]
fn commit_page_records_ledger_quarantine_counts_and_checkpoint_together() {
    let mut db = SqliteStore::open_in_memory().unwrap();
    let run = db.begin_run("c", 0).unwrap();
    let entries = vec![entry("m1", "a@x"), entry("m1", "b@x"), entry("m2", "a@x")];
    db.commit_page("c", run, lease(&db, "c"), &page(entries.clone(), b"cp"))
        .unwrap();

    assert_eq!(db.delivered_count("c").unwrap(), 3);
    assert_eq!(db.delivered_count("other").unwrap(), 0);
    assert!(db.is_delivered("c", "m1", "b@x").unwrap());
    assert!(!db.is_delivered("c", "m2", "b@x").unwrap());
    assert!(!db.is_delivered("other", "m1", "a@x").unwrap());
    assert_eq!(db.ledger_entries("c").unwrap(), entries);
    assert_eq!(
        db.quarantine("c").unwrap(),
        vec![quarantined("q1", "no mailbox for u-ext")]
    );
    assert_eq!(db.quarantine_count("c").unwrap(), 1);
    assert_eq!(db.last_run("c").unwrap().unwrap().counts, counts(2));
    assert_eq!(db.checkpoint("c").unwrap(), Some(b"cp".to_vec()));
}

#[test]
fn ledger_keeps_the_first_entry_of_a_pair() {
    let mut db = SqliteStore::open_in_memory().unwrap();
    let run = db.begin_run("c", 0).unwrap();
    db.commit_page(
        "c",
        run,
        lease(&db, "c"),
        &page(vec![entry("m1", "a@x")], b"1"),
    )
    .unwrap();
    let mut again = entry("m1", "a@x");
    again.receipt = "elsewhere".to_string();
    again.delivered_at_ms = 9_999;
    db.commit_page("c", run, lease(&db, "c"), &page(vec![again], b"2"))
        .unwrap();
    assert_eq!(db.ledger_entries("c").unwrap(), vec![entry("m1", "a@x")]);
    assert_eq!(db.checkpoint("c").unwrap(), Some(b"2".to_vec()));
}

#[test]
fn commit_page_rolls_back_everything_when_a_statement_fails() {
    let mut db = SqliteStore::open_in_memory().unwrap();
    let run = db.begin_run("c", 0).unwrap();
    db.commit_page(
        "c",
        run,
        lease(&db, "c"),
        &page(vec![entry("m0", "a@x")], b"before"),
    )
    .unwrap();
    let before = db.last_run("c").unwrap().unwrap().counts;
    // Make the quarantine insert fail after the ledger rows went in.
    db.conn
        .execute_batch(
            "CREATE TEMP TRIGGER fail_quarantine BEFORE INSERT ON quarantine
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    let mut failing = page(vec![entry("m1", "a@x"), entry("m2", "a@x")], b"after");
    failing.quarantine = vec![quarantined("q2", "x")];
    let err = db
        .commit_page("c", run, lease(&db, "c"), &failing)
        .unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");

    assert_eq!(db.delivered_count("c").unwrap(), 1);
    assert!(!db.is_delivered("c", "m1", "a@x").unwrap());
    assert_eq!(db.quarantine("c").unwrap().len(), 1);
    assert_eq!(db.last_run("c").unwrap().unwrap().counts, before);
    assert_eq!(db.checkpoint("c").unwrap(), Some(b"before".to_vec()));

    // The database is usable afterwards.
    db.conn
        .execute_batch("DROP TRIGGER fail_quarantine;")
        .unwrap();
    db.commit_page("c", run, lease(&db, "c"), &failing).unwrap();
    assert_eq!(db.delivered_count("c").unwrap(), 3);
}

#[test]
fn commit_page_for_an_unknown_or_foreign_run_changes_nothing() {
    let mut db = SqliteStore::open_in_memory().unwrap();
    let foreign = db.begin_run("other", 0).unwrap();
    for run in [RunId(999), foreign] {
        let err = db
            .commit_page(
                "c",
                run,
                lease(&db, "c"),
                &page(vec![entry("m1", "a@x")], b"cp"),
            )
            .unwrap_err();
        assert!(matches!(err, StateError::UnknownRun { .. }), "{err}");
    }
    assert_eq!(db.delivered_count("c").unwrap(), 0);
    assert_eq!(db.quarantine_count("c").unwrap(), 0);
    assert_eq!(db.checkpoint("c").unwrap(), None);
}

#[test]
fn a_committed_page_survives_reopening_the_file() {
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
    // A second connection (another process) sees it at once.
    let other = SqliteStore::open(&path).unwrap();
    assert!(other.is_delivered("c", "m1", "a@x").unwrap());
    assert_eq!(other.quarantine_count("c").unwrap(), 1);
    drop(db);
    drop(other);
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(reopened.checkpoint("c").unwrap(), Some(b"cp".to_vec()));
}

#[test]
fn delivered_set_answers_for_many_items_at_once() {
    let mut db = SqliteStore::open_in_memory().unwrap();
    let run = db.begin_run("c", 0).unwrap();
    let entries: Vec<LedgerEntry> = (0..1200)
        .filter(|i| i % 3 == 0)
        .map(|i| entry(&format!("m{i}"), "a@x"))
        .collect();
    db.commit_page("c", run, lease(&db, "c"), &page(entries, b"cp"))
        .unwrap();
    db.commit_page(
        "c",
        run,
        lease(&db, "c"),
        &page(vec![entry("m3", "b@x")], b"cp"),
    )
    .unwrap();
    let owned: Vec<String> = (0..1200).map(|i| format!("m{i}")).collect();
    let ids: Vec<&str> = owned.iter().map(String::as_str).collect();
    let set = db.delivered_set("c", &ids).unwrap();
    assert_eq!(set.len(), 401);
    assert!(set.contains(&("m3".to_string(), "a@x".to_string())));
    assert!(set.contains(&("m3".to_string(), "b@x".to_string())));
    assert!(set.contains(&("m1197".to_string(), "a@x".to_string())));
    assert!(!set.iter().any(|(item, _)| item == "m1"));
    assert!(db.delivered_set("other", &ids).unwrap().is_empty());
    assert!(db.delivered_set("c", &[]).unwrap().is_empty());
}

#[test]
fn requarantining_an_item_replaces_it_and_released_items_leave() {
    let mut db = SqliteStore::open_in_memory().unwrap();
    let run = db.begin_run("c", 0).unwrap();
    db.commit_page("c", run, lease(&db, "c"), &page(Vec::new(), b"1"))
        .unwrap();
    let mut again = page(Vec::new(), b"2");
    again.quarantine = vec![
        quarantined("q1", "still unmapped"),
        quarantined("q2", "new"),
    ];
    db.commit_page("c", run, lease(&db, "c"), &again).unwrap();
    let q = db.quarantine("c").unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q[0].item_id, "q1");
    assert_eq!(q[0].reason, "still unmapped");
    assert_eq!(q[0].unmapped[0].display_name.as_deref(), Some("Ext Ernal"));

    let release = PageCommit {
        ledger: vec![entry("q1", "ext@x")],
        released: vec!["q1".to_string()],
        checkpoint: db.checkpoint("c").unwrap().unwrap(),
        ..PageCommit::default()
    };
    db.commit_page("c", run, lease(&db, "c"), &release).unwrap();
    let q = db.quarantine("c").unwrap();
    assert_eq!(
        q.iter().map(|e| e.item_id.as_str()).collect::<Vec<_>>(),
        ["q2"]
    );
    assert!(db.is_delivered("c", "q1", "ext@x").unwrap());
    assert_eq!(db.checkpoint("c").unwrap(), Some(b"2".to_vec()));
}

#[test]
fn kv_stores_reads_replaces_and_deletes_per_connector() {
    let mut db = SqliteStore::open_in_memory().unwrap();
    assert_eq!(db.kv_get("a", "k").unwrap(), None);
    db.kv_set("a", "k", b"v1").unwrap();
    db.kv_set("b", "k", b"other").unwrap();
    assert_eq!(db.kv_get("a", "k").unwrap(), Some(b"v1".to_vec()));
    db.kv_set("a", "k", b"v2").unwrap();
    assert_eq!(db.kv_get("a", "k").unwrap(), Some(b"v2".to_vec()));
    assert_eq!(db.kv_usage("a").unwrap(), 3);
    db.kv_set("a", "empty", b"").unwrap();
    assert_eq!(db.kv_get("a", "empty").unwrap(), Some(Vec::new()));
    db.kv_delete("a", "k").unwrap();
    db.kv_delete("a", "never-set").unwrap();
    assert_eq!(db.kv_get("a", "k").unwrap(), None);
    assert_eq!(db.kv_get("b", "k").unwrap(), Some(b"other".to_vec()));
}

#[test]
fn kv_refuses_values_and_keys_over_their_limits() {
    let mut db = SqliteStore::open_in_memory().unwrap();
    let big = vec![0u8; KV_MAX_VALUE_BYTES as usize + 1];
    let err = db.kv_set("c", "k", &big).unwrap_err();
    assert!(
        matches!(err, StateError::TooLarge { limit, what: "value", .. } if limit == KV_MAX_VALUE_BYTES),
        "{err}"
    );
    let long_key = "k".repeat(KV_MAX_KEY_BYTES as usize + 1);
    let err = db.kv_set("c", &long_key, b"v").unwrap_err();
    assert!(
        matches!(err, StateError::TooLarge { what: "key", .. }),
        "{err}"
    );
    db.kv_set("c", "k", &big[1..]).unwrap();
    assert_eq!(db.kv_get("c", "k").unwrap().unwrap().len(), big.len() - 1);
}

#[test]
fn kv_quota_counts_all_keys_and_values_of_the_connector() {
    let mut db = SqliteStore::open_in_memory().unwrap();
    let value = vec![7u8; KV_MAX_VALUE_BYTES as usize - 8];
    for i in 0..16 {
        db.kv_set("c", &format!("key{i:02}"), &value).unwrap();
    }
    let used = db.kv_usage("c").unwrap();
    assert!(used <= KV_QUOTA_BYTES);
    let err = db.kv_set("c", "one-more", &value).unwrap_err();
    assert!(
        matches!(err, StateError::QuotaExceeded { limit, .. } if limit == KV_QUOTA_BYTES),
        "{err}"
    );
    assert!(err.to_string().contains("quota"), "{err}");
    assert_eq!(db.kv_get("c", "one-more").unwrap(), None);
    // Replacing a value only counts its new size; other connectors are apart.
    db.kv_set("c", "key00", &value).unwrap();
    db.kv_set("other", "k", &value).unwrap();
    // Freeing space makes room again.
    db.kv_delete("c", "key00").unwrap();
    db.kv_set("c", "one-more", &value).unwrap();
}

#[test]
fn run_counts_add_every_field() {
    let mut total = RunCounts::default();
    total.add(&counts(2));
    total.add(&RunCounts {
        pages: 1,
        items_from_source: 1,
        items_for_import: 1,
        imported: 1,
        skipped_duplicates: 1,
        failed: 1,
        quarantined: 1,
    });
    assert_eq!(
        total,
        RunCounts {
            pages: 2,
            items_from_source: 3,
            items_for_import: 5,
            imported: 3,
            skipped_duplicates: 2,
            failed: 1,
            quarantined: 2,
        }
    );
    let json = serde_json::to_value(&total).unwrap();
    assert_eq!(json["items_for_import"], 5);
}

#[test]
fn a_page_records_what_it_saw_and_what_failed_for_the_admin_log() {
    let mut db = SqliteStore::open_in_memory().unwrap();
    let run = db
        .begin_run_of("c", 10, RunKind::Backfill, Some((1, 2)))
        .unwrap();
    let mut p = page(vec![entry("m1", "a@x")], b"1");
    p.seen = vec![SeenItem {
        item_id: "m1".into(),
        source_sha256: "s".repeat(64),
        sent_at_ms: 5,
        mailboxes: vec!["a@x".into()],
        unmapped: vec!["u-ext".into()],
    }];
    p.failures = vec![RunFailure {
        item_id: "m1".into(),
        source_user_id: "u-ext".into(),
        mailbox: String::new(),
        kind: FailureKind::Unmapped,
        reason: "no mailbox".into(),
    }];
    p.checkpoint_slot = CheckpointSlot::Key("c#backfill:1..2".into());
    db.commit_page("c", run, lease(&db, "c"), &p).unwrap();
    assert_eq!(db.run_items(run).unwrap(), p.seen);
    assert_eq!(db.run_failures(run).unwrap(), p.failures);
    assert_eq!(
        db.checkpoint("c").unwrap(),
        None,
        "the connector's own is untouched"
    );
    assert_eq!(
        db.checkpoint("c#backfill:1..2").unwrap().as_deref(),
        Some(&b"1"[..])
    );
    let r = db.run(run).unwrap().unwrap();
    assert_eq!(r.kind, RunKind::Backfill);
    assert_eq!(r.range_ms, Some((1, 2)));
    assert_eq!(r.pid, Some(std::process::id()));
    assert_eq!(db.ledger_of_run(run).unwrap().len(), 1);
    assert!(db.is_quarantined("c", "q1").unwrap());
    assert_eq!(db.connectors().unwrap(), ["c"]);

    // A commit that keeps the checkpoint (redelivery) writes none.
    let redeliver = db.begin_run_of("c", 20, RunKind::Redeliver, None).unwrap();
    let keep = PageCommit {
        checkpoint_slot: CheckpointSlot::Keep,
        checkpoint: b"ignored".to_vec(),
        ..PageCommit::default()
    };
    db.commit_page("c", redeliver, lease(&db, "c"), &keep)
        .unwrap();
    assert_eq!(db.checkpoint("c").unwrap(), None);
}

#[test]
fn pruning_removes_old_runs_with_their_items_and_failures_but_never_the_ledger() {
    let mut db = SqliteStore::open_in_memory().unwrap();
    let old = db.begin_run("c", 0).unwrap();
    let mut p = page(vec![entry("m1", "a@x")], b"1");
    p.failures = vec![RunFailure {
        item_id: "m1".into(),
        source_user_id: "u".into(),
        mailbox: "b@x".into(),
        kind: FailureKind::Refused,
        reason: "full".into(),
    }];
    db.commit_page("c", old, lease(&db, "c"), &p).unwrap();
    db.finish_run(
        old,
        1_000,
        RunOutcome::Succeeded,
        &RunCounts::default(),
        None,
    )
    .unwrap();
    let new = db.begin_run("c", 5_000).unwrap();
    db.finish_run(
        new,
        6_000,
        RunOutcome::Failed,
        &RunCounts::default(),
        Some("x"),
    )
    .unwrap();
    let unfinished = db.begin_run("c", 7_000).unwrap();
    assert_eq!(db.prune_runs_before(2_000).unwrap(), 1);
    assert!(db.run(old).unwrap().is_none());
    assert!(db.run_failures(old).unwrap().is_empty());
    assert!(db.run(new).unwrap().is_some());
    assert!(db.run(unfinished).unwrap().is_some());
    assert!(db.is_delivered("c", "m1", "a@x").unwrap());
    let totals = db.connector_totals("c").unwrap();
    assert_eq!(totals.runs_by_outcome.get("failed"), Some(&1));
    assert_eq!(totals.last_success_ms, None);
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
fn a_big_quarantined_email_is_streamed_into_the_database_and_back_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let run = db.begin_run("c", 0).unwrap();
    let len = DEFAULT_SPILL_ABOVE + 12_345;
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let big = Email::spool_from("big@x".into(), &mut &bytes[..], dir.path(), 7).unwrap();
    assert!(big.spool_path().is_some());
    let mut commit = page(Vec::new(), b"cp");
    commit.quarantine = vec![QuarantineEntry {
        email: big.clone(),
        ..quarantined("big", "no mailbox")
    }];
    db.commit_page("c", run, lease(&db, "c"), &commit).unwrap();

    let q = db.quarantine("c").unwrap();
    let back = &q[0].email;
    assert!(back.spool_path().is_some(), "read back into a spool file");
    assert_eq!(back.len(), len as u64);
    assert_eq!(back.sha256, big.sha256);
    assert!(back.bytes().unwrap()[..] == bytes[..]);
}

#[test]
fn described_conversations_are_remembered_and_replaced_with_the_page() {
    use connector_model::{Conversation, ConversationKind};
    let room = |name: &str| Conversation {
        id: "c1".into(),
        kind: ConversationKind::Room,
        name: Some(name.into()),
        participants: Vec::new(),
    };
    let mut db = SqliteStore::open_in_memory().unwrap();
    let run = db.begin_run("c", 0).unwrap();
    let mut first = page(Vec::new(), b"1");
    first.conversations = vec![room("Old name")];
    db.commit_page("c", run, lease(&db, "c"), &first).unwrap();
    let mut renamed = page(Vec::new(), b"2");
    renamed.conversations = vec![room("New name")];
    db.commit_page("c", run, lease(&db, "c"), &renamed).unwrap();
    let found = db.conversations("c", &["c1", "c2"]).unwrap();
    assert_eq!(found, [room("New name")]);
    assert!(db.conversations("other", &["c1"]).unwrap().is_empty());
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
fn a_second_process_cannot_take_a_held_lease_and_a_stale_token_cannot_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut first = SqliteStore::open(&path).unwrap();
    let second = SqliteStore::open(&path).unwrap();
    let request = LeaseRequest {
        owner: "w1".to_string(),
        ttl: DEFAULT_LEASE,
        fingerprint: Fingerprint::new(),
    };
    let LockOutcome::Taken(lock) = first.lock_runs("c", &request).unwrap() else {
        panic!("first lease refused");
    };
    assert!(matches!(
        second.lock_runs("c", &request).unwrap(),
        LockOutcome::Held { .. }
    ));
    let stale = lock.token();
    drop(lock);
    let LockOutcome::Taken(next) = second.lock_runs("c", &request).unwrap() else {
        panic!("a released lock was not taken");
    };
    assert_eq!(next.token(), stale + 1);
    let run = first.begin_run("c", 0).unwrap();
    let err = first
        .commit_page("c", run, stale, &page(vec![entry("m1", "a@x")], b"cp"))
        .unwrap_err();
    assert!(
        matches!(err, StateError::Fenced { token, .. } if token == stale),
        "{err}"
    );
    assert!(err.to_string().contains("--lease-secs"), "{err}");
    assert!(!first.is_delivered("c", "m1", "a@x").unwrap());
    assert_eq!(first.checkpoint("c").unwrap(), None);
    assert_eq!(second.fenced_commits().unwrap(), 1);
}
