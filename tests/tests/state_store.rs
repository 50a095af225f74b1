//! The state store's conformance suite: every behaviour of the
//! `StateStore` traits (module `behaviours`) runs against each backend, as
//! one test per (backend, behaviour): `sqlite::<behaviour>` on a SQLite
//! file in a temporary folder, `postgres::<behaviour>` on a fresh database
//! of the shared test server. Then what only PostgreSQL does
//! (`postgres_only`): its URL and TLS, schema versions, reconnecting after
//! a server restart, the ledger's month partitions and the lease keeper;
//! and what only SQLite does (`sqlite_only`): its file, upgrading older
//! schema versions in place, and a transfer between two SQLite stores.

use std::path::PathBuf;
use std::time::Duration;

use connector_e2e::postgres::{Postgres, PostgresOptions, fresh_database};
use connector_state::StateStore;
use connector_state_postgres::{PostgresConfig, PostgresStore};
use connector_state_sqlite::SqliteStore;

use behaviours::Backend;

/// The `connector` program, run as operators run it.
const BIN: &str = env!("CARGO_BIN_EXE_connector-cli");

/// A SQLite file in a folder of its own.
struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn fresh() -> Sqlite {
        Sqlite {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    fn raw(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path()).unwrap()
    }
}

impl Backend for Sqlite {
    fn open(&self) -> Box<dyn StateStore> {
        Box::new(SqliteStore::open(&self.path()).unwrap())
    }

    fn break_quarantine_inserts(&self) {
        self.raw()
            .execute_batch(
                "CREATE TRIGGER fail_quarantine BEFORE INSERT ON quarantine
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .unwrap();
    }

    fn heal_quarantine_inserts(&self) {
        self.raw()
            .execute_batch("DROP TRIGGER fail_quarantine;")
            .unwrap();
    }

    fn execute_raw(&self, sql: &str) -> Result<(), String> {
        self.raw().execute_batch(sql).map_err(|e| e.to_string())
    }

    fn drop_audit_guards(&self) {
        self.execute_raw("DROP TRIGGER audit_trail_no_update; DROP TRIGGER audit_trail_no_delete;")
            .unwrap();
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(BIN)
            .arg("--state-dir")
            .arg(self.dir.path())
            .args(args)
            .env("CONNECTOR_LOG", "warn")
            .env_remove("CONNECTOR_STATE_URL")
            .output()
            .unwrap()
    }
}

/// A fresh database on the shared PostgreSQL test server.
struct Pg {
    /// Its URL with the password, for the harness's own connections.
    url: String,
}

impl Pg {
    fn fresh() -> Pg {
        Pg {
            url: fresh_database(),
        }
    }

    fn config(&self) -> PostgresConfig {
        config_of(&self.url)
    }

    fn store(&self) -> PostgresStore {
        PostgresStore::connect(&self.config()).unwrap()
    }

    fn raw(&self) -> ::postgres::Client {
        ::postgres::Client::connect(&self.url, ::postgres::NoTls).unwrap()
    }
}

/// The store's configuration for a URL with a password in it: the URL
/// without it, the password given apart (as from a secret).
fn config_of(url_with_password: &str) -> PostgresConfig {
    let mut url = url::Url::parse(url_with_password).unwrap();
    let password = percent_encoding::percent_decode_str(url.password().unwrap())
        .decode_utf8()
        .unwrap()
        .into_owned();
    url.set_password(None).unwrap();
    PostgresConfig::parse(url.as_str())
        .unwrap()
        .with_password(password)
}

impl Backend for Pg {
    fn open(&self) -> Box<dyn StateStore> {
        Box::new(self.store())
    }

    fn break_quarantine_inserts(&self) {
        self.raw()
            .batch_execute(
                "CREATE FUNCTION fail_quarantine() RETURNS trigger LANGUAGE plpgsql AS
                    $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$;
                 CREATE TRIGGER fail_quarantine BEFORE INSERT ON quarantine
                    FOR EACH ROW EXECUTE FUNCTION fail_quarantine();",
            )
            .unwrap();
    }

    fn heal_quarantine_inserts(&self) {
        self.raw()
            .batch_execute("DROP TRIGGER fail_quarantine ON quarantine;")
            .unwrap();
    }

    fn execute_raw(&self, sql: &str) -> Result<(), String> {
        self.raw()
            .batch_execute(sql)
            .map_err(|e| match e.as_db_error() {
                Some(db) => db.message().to_string(),
                None => e.to_string(),
            })
    }

    fn drop_audit_guards(&self) {
        self.execute_raw("ALTER TABLE audit_trail DISABLE TRIGGER USER;")
            .unwrap();
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut url = url::Url::parse(&self.url).unwrap();
        let password = percent_encoding::percent_decode_str(url.password().unwrap())
            .decode_utf8()
            .unwrap()
            .into_owned();
        url.set_password(None).unwrap();
        let state_dir = tempfile::tempdir().unwrap();
        std::process::Command::new(BIN)
            .arg("--state-dir")
            .arg(state_dir.path())
            .args(["--state-url", url.as_str()])
            .args(args)
            .env("CONNECTOR_STATE_PASSWORD", password)
            .env("CONNECTOR_LOG", "warn")
            .output()
            .unwrap()
    }
}

/// Checks that `err` refuses a database one schema version newer than
/// `supported`, naming the database (`location`) and what to do.
fn assert_newer_schema_refused(err: &connector_state::StateError, supported: i64, location: &str) {
    assert!(
        matches!(err, connector_state::StateError::NewerSchema { found, supported: s, .. }
            if *found == supported + 1 && *s == supported),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains(location), "{text}");
    assert!(text.contains("newer connector release"), "{text}");
}

/// One `#[test]` per behaviour in each backend's module.
macro_rules! conformance {
    ($($behaviour:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $behaviour() {
                    super::behaviours::$behaviour(&super::Sqlite::fresh());
                }
            )*
        }

        mod postgres {
            $(
                #[test]
                fn $behaviour() {
                    super::behaviours::$behaviour(&super::Pg::fresh());
                }
            )*
        }
    };
}

conformance!(
    checkpoint_is_absent_until_a_page_stores_one_and_is_per_connector,
    runs_record_outcome_counts_and_error_newest_first,
    finishing_a_run_keeps_the_larger_of_page_counts_and_given_totals,
    finishing_an_unknown_run_is_an_error,
    unfinished_runs_can_be_marked_interrupted,
    commit_page_records_ledger_quarantine_counts_and_checkpoint_together,
    ledger_keeps_the_first_entry_of_a_pair,
    ledger_entries_of_one_item_may_differ_per_mailbox,
    commit_page_rolls_back_everything_when_a_statement_fails,
    commit_page_for_an_unknown_or_foreign_run_changes_nothing,
    a_committed_page_is_seen_at_once_by_another_store,
    delivered_set_answers_for_many_items_at_once,
    requarantining_an_item_replaces_it_and_released_items_leave,
    a_big_quarantined_email_is_streamed_into_the_database_and_back_out,
    kv_stores_reads_replaces_and_deletes_per_connector,
    kv_refuses_values_and_keys_over_their_limits,
    kv_quota_counts_all_keys_and_values_of_the_connector,
    a_page_records_what_it_saw_and_what_failed_for_the_admin_log,
    unreadable_conversations_are_those_of_the_last_complete_run_and_any_since,
    pruning_removes_old_runs_with_their_items_and_failures_but_never_the_ledger,
    connector_totals_add_finished_and_running_runs,
    described_conversations_are_remembered_and_replaced_with_the_page,
    one_holder_at_a_time,
    an_expired_lease_is_taken_with_a_higher_token,
    the_keeper_renews_the_lease_while_the_lock_is_held,
    stale_token_commit_is_refused_and_counted,
    partitions_of_one_connector_are_leased_and_fenced_apart,
    release_only_with_the_current_token,
    fingerprint_mismatch_is_refused_while_a_live_worker_runs_the_other_version,
    heartbeats_list_workers_on_the_store_clock,
    racing_stores_one_lease_exactly_one_wins,
    mailbox_slots_are_shared_by_stores_over_one_database_and_expire_unless_renewed,
    a_mailbox_rate_window_refuses_beyond_its_count_and_refills_when_it_ends,
    a_throttled_mailbox_grants_no_worker_anything_until_its_pause_ends,
    transcript_lines_are_kept_with_their_page_and_sealed_into_parts_once_their_day_is_closed,
    a_transcript_is_marked_delivered_only_by_the_commit_of_its_deliveries,
    audit_records_chain_from_zeros_and_are_listed_by_number_and_by_filter,
    the_audit_trail_refuses_changes_and_removals,
    a_changed_audit_record_is_named_by_verify_chain_and_by_the_audit_verify_command,
    a_removed_audit_record_is_found_in_the_middle_and_at_the_end,
    appends_from_several_stores_at_once_form_one_unbroken_chain,
    a_pause_is_seen_by_every_store_keeps_its_first_author_and_is_lifted_by_resume,
    a_run_request_is_taken_by_exactly_one_of_racing_stores,
);

mod postgres_only {
    use super::*;
    use connector_state::prelude::*;
    use connector_state::{
        Fingerprint, LeaseRequest, LedgerEntry, LockOutcome, PageCommit, RunLock, StateError,
    };
    use connector_state_postgres::{PostgresConfigError, SCHEMA_VERSION};

    fn take(db: &PostgresStore, connector: &str, ttl: Duration) -> RunLock {
        let request = LeaseRequest {
            owner: "w1".to_string(),
            ttl,
            fingerprint: Fingerprint::new(),
        };
        match db.lock_runs(connector, &request).unwrap() {
            LockOutcome::Taken(lock) => lock,
            other => panic!("{other:?}"),
        }
    }

    fn delivered(item: &str, at_ms: i64) -> LedgerEntry {
        LedgerEntry {
            item_id: item.to_string(),
            mailbox: "a@x".to_string(),
            message_id: format!("{item}@x"),
            email_sha256: "e".repeat(64),
            source_sha256: "s".repeat(64),
            receipt: format!("r-{item}"),
            delivered_at_ms: at_ms,
        }
    }

    fn ledger_page(entries: Vec<LedgerEntry>, checkpoint: &[u8]) -> PageCommit {
        PageCommit {
            ledger: entries,
            checkpoint: checkpoint.to_vec(),
            ..PageCommit::default()
        }
    }

    #[test]
    fn a_database_from_a_newer_release_is_refused() {
        let pg = Pg::fresh();
        let db = pg.store();
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
        drop(db);
        // Connecting again applies nothing twice.
        assert_eq!(pg.store().schema_version().unwrap(), SCHEMA_VERSION);
        pg.raw()
            .execute(
                "INSERT INTO schema_migrations (version, description) VALUES ($1, 'future')",
                &[&(SCHEMA_VERSION + 1)],
            )
            .unwrap();
        let err = PostgresStore::connect(&pg.config()).unwrap_err();
        assert_newer_schema_refused(&err, SCHEMA_VERSION, &pg.config().redacted());
    }

    #[test]
    fn workers_starting_together_migrate_once() {
        let pg = Pg::fresh();
        let config = pg.config();
        let stores: Vec<_> = (0..4)
            .map(|_| {
                let config = config.clone();
                std::thread::spawn(move || PostgresStore::connect(&config).map(|_| ()))
            })
            .collect();
        for store in stores {
            store.join().unwrap().unwrap();
        }
        let rows: i64 = pg
            .raw()
            .query_one("SELECT COUNT(*) FROM schema_migrations", &[])
            .unwrap()
            .get(0);
        assert_eq!(rows, SCHEMA_VERSION);
    }

    #[test]
    fn a_url_with_a_password_is_refused_without_showing_it() {
        let url = fresh_database();
        let password = Postgres::shared().password().to_string();
        assert!(url.contains(&password));
        let err = PostgresConfig::parse(&url).unwrap_err();
        assert!(
            matches!(err, PostgresConfigError::PasswordInUrl { .. }),
            "{err}"
        );
        let state: StateError = err.into();
        let text = state.to_string();
        assert!(!text.contains(&password), "{text}");
        assert!(text.contains("as a secret"), "{text}");
        assert!(
            text.contains(&format!("127.0.0.1:{}", Postgres::shared().port())),
            "{text}"
        );
    }

    #[test]
    fn a_wrong_password_is_an_open_error_naming_the_server_but_not_the_password() {
        let pg = Pg::fresh();
        let config = pg.config().with_password("not-the-password");
        let err = PostgresStore::connect(&config).unwrap_err();
        assert!(matches!(err, StateError::Open { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&config.redacted()), "{text}");
        assert!(text.contains("password"), "{text}");
        assert!(!text.contains("not-the-password"), "{text}");
    }

    #[test]
    fn tls_is_verified_against_the_ca_of_sslrootcert() {
        let server = Postgres::start(PostgresOptions { tls: true }).unwrap();
        server.create_database("state").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, server.ca_cert_pem().unwrap()).unwrap();
        let url = server.url("state");
        assert!(url.contains("sslmode=require"), "{url}");

        let config = PostgresConfig::parse(&format!("{url}&sslrootcert={}", ca.display()))
            .unwrap()
            .with_password(server.password());
        let mut db = PostgresStore::connect(&config).unwrap();
        db.kv_set("c", "k", b"over TLS").unwrap();
        assert_eq!(db.kv_get("c", "k").unwrap(), Some(b"over TLS".to_vec()));

        // Without the CA, the public roots do not know the server's
        // certificate: refused, never connected unverified.
        let unverified = PostgresConfig::parse(&url)
            .unwrap()
            .with_password(server.password());
        let err = PostgresStore::connect(&unverified).unwrap_err();
        assert!(matches!(err, StateError::Open { .. }), "{err}");
        assert!(
            err.to_string().to_lowercase().contains("certificate"),
            "{err}"
        );
    }

    #[test]
    fn a_server_restart_fails_one_call_as_unavailable_and_the_next_reconnects() {
        let mut server = Postgres::start(PostgresOptions::default()).unwrap();
        server.create_database("state").unwrap();
        let mut db =
            PostgresStore::connect(&config_of(&server.url_with_password("state"))).unwrap();
        let lock = take(&db, "c", Duration::from_secs(60));
        let run = db.begin_run("c", 0).unwrap();
        db.commit_page(
            "c",
            run,
            lock.token(),
            &ledger_page(vec![delivered("m1", 1_000)], b"1"),
        )
        .unwrap();

        server.restart().unwrap();
        let err = db
            .commit_page(
                "c",
                run,
                lock.token(),
                &ledger_page(vec![delivered("m2", 1_000)], b"2"),
            )
            .unwrap_err();
        assert!(matches!(err, StateError::Unavailable { .. }), "{err:?}");
        assert!(err.to_string().contains("unreachable"), "{err}");
        // Reconnected: nothing of the failed commit is there, and it can be
        // made again.
        assert_eq!(db.checkpoint("c").unwrap(), Some(b"1".to_vec()));
        assert!(!db.is_delivered("c", "m2", "a@x").unwrap());
        db.commit_page(
            "c",
            run,
            lock.token(),
            &ledger_page(vec![delivered("m2", 1_000)], b"2"),
        )
        .unwrap();
        assert_eq!(db.delivered_count("c").unwrap(), 2);

        // While the server is down, every call is unavailable; once it is
        // back, calls work again.
        server.kill().unwrap();
        for _ in 0..2 {
            let err = db.checkpoint("c").unwrap_err();
            assert!(matches!(err, StateError::Unavailable { .. }), "{err:?}");
        }
        server.start_again().unwrap();
        assert_eq!(db.checkpoint("c").unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn a_young_month_partition_is_analyzed_once_commits_outgrow_its_statistics() {
        let pg = Pg::fresh();
        let mut db = pg.store();
        let lock = take(&db, "c", Duration::from_secs(60));
        let run = db.begin_run("c", 0).unwrap();
        let march = 1_709_251_200_000; // 2024-03-01T00:00:00Z
        let mut raw = pg.raw();
        let reltuples = |raw: &mut ::postgres::Client| -> f32 {
            raw.query_opt(
                "SELECT reltuples FROM pg_class WHERE relname = 'deliveries_2024_03'",
                &[],
            )
            .unwrap()
            .map_or(-1.0, |r| r.get(0))
        };
        // Statistics reach the server's counters within a second of each
        // commit, so pages go on until a commit sees them (or 15 s pass).
        let started = std::time::Instant::now();
        let mut page = 0;
        while reltuples(&mut raw) <= 0.0 {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "deliveries_2024_03 was never analyzed after {page} pages"
            );
            let entries = (0..600)
                .map(|n| delivered(&format!("p{page}-m{n}"), march + n))
                .collect();
            db.commit_page("c", run, lock.token(), &ledger_page(entries, b"x"))
                .unwrap();
            page += 1;
            std::thread::sleep(Duration::from_millis(300));
        }
        assert!(
            reltuples(&mut raw) >= 1_000.0,
            "analyzed once over 1,000 rows had changed"
        );
    }

    #[test]
    fn ledger_rows_land_in_month_partitions_and_an_old_month_can_be_detached() {
        let pg = Pg::fresh();
        let mut db = pg.store();
        let lock = take(&db, "c", Duration::from_secs(60));
        let run = db.begin_run("c", 0).unwrap();
        let january = 1_704_067_200_000; // 2024-01-01T00:00:00Z
        let february = 1_706_745_600_000; // 2024-02-01T00:00:00Z
        let entries = vec![
            delivered("m1", january + 5),
            delivered("m2", february - 1),
            delivered("m3", february),
        ];
        db.commit_page("c", run, lock.token(), &ledger_page(entries, b"1"))
            .unwrap();
        let mut raw = pg.raw();
        let per_partition = |raw: &mut ::postgres::Client, table: &str| -> Vec<(String, i64)> {
            raw.query(
                &format!(
                    "SELECT tableoid::regclass::text, COUNT(*) FROM {table} GROUP BY 1 ORDER BY 1"
                ),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
        };
        assert_eq!(
            per_partition(&mut raw, "deliveries"),
            [
                ("deliveries_2024_01".to_string(), 2),
                ("deliveries_2024_02".to_string(), 1)
            ]
        );
        assert_eq!(
            per_partition(&mut raw, "ledger_items"),
            [
                ("ledger_items_2024_01".to_string(), 2),
                ("ledger_items_2024_02".to_string(), 1)
            ]
        );

        // The operator moves January out.
        raw.batch_execute(
            "ALTER TABLE deliveries DETACH PARTITION deliveries_2024_01;
             ALTER TABLE ledger_items DETACH PARTITION ledger_items_2024_01;",
        )
        .unwrap();
        assert!(db.is_delivered("c", "m3", "a@x").unwrap());
        assert!(!db.is_delivered("c", "m1", "a@x").unwrap());
        db.commit_page(
            "c",
            run,
            lock.token(),
            &ledger_page(
                vec![
                    delivered("m4", february + 10),
                    delivered("m5", february + 40 * 86_400_000),
                ],
                b"2",
            ),
        )
        .unwrap();
        assert_eq!(db.delivered_count("c").unwrap(), 3);
        assert_eq!(
            per_partition(&mut raw, "deliveries"),
            [
                ("deliveries_2024_02".to_string(), 2),
                ("deliveries_2024_03".to_string(), 1)
            ]
        );
    }

    #[test]
    fn lease_times_are_the_server_clock_and_a_lease_taken_over_is_lost() {
        let pg = Pg::fresh();
        let db = pg.store();
        let ttl = Duration::from_millis(900);
        let lock = take(&db, "c", ttl);
        let lease = &db.leases().unwrap()[0];
        let now = db.clock_ms().unwrap();
        assert!(
            lease.expires_at_ms > now && lease.expires_at_ms <= now + 900,
            "{} vs {now}",
            lease.expires_at_ms
        );
        std::thread::sleep(ttl * 2);
        assert!(lock.is_live(), "renewed");
        assert!(db.leases().unwrap()[0].expires_at_ms > db.clock_ms().unwrap());

        // Another worker took the lease (as after a pause of this one):
        // the next renewal finds out and the lock is no longer live.
        pg.raw()
            .execute("UPDATE leases SET token = token + 1, owner = 'w2'", &[])
            .unwrap();
        std::thread::sleep(ttl / 2);
        assert!(!lock.is_live());
    }
}

/// What only the SQLite store does: its file, and the upgrade of a file
/// an older release wrote.
mod sqlite_only {
    use super::behaviours::{entry, failure, lease, page, quarantined, seen};
    use super::*;
    use connector_email::Email;
    use connector_state::prelude::*;
    use connector_state::records::*;
    use connector_state::{AuditAction, AuditEntry, StateError, verify_chain};
    use connector_state_sqlite::{SCHEMA_VERSION, migrations};

    /// A file with the `schema_migrations` table and the first `versions`
    /// migrations applied, as an older release left it.
    fn at_version(sqlite: &Sqlite, versions: usize) -> rusqlite::Connection {
        let conn = sqlite.raw();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY NOT NULL,
                description TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT 'then');",
        )
        .unwrap();
        for (version, _, sql) in &migrations()[..versions] {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations (version, description) VALUES (?1, 'old')",
                [version],
            )
            .unwrap();
        }
        conn
    }

    #[test]
    fn reopening_keeps_data_and_applies_each_migration_once() {
        let sqlite = Sqlite::fresh();
        {
            let mut db = SqliteStore::open(&sqlite.path()).unwrap();
            let run = db.begin_run("c", 1).unwrap();
            let lock = lease(&db);
            db.commit_page(
                "c",
                run,
                lock.token(),
                &page(vec![entry("m1", "a@x")], b"cp-1"),
            )
            .unwrap();
        }
        let db = SqliteStore::open(&sqlite.path()).unwrap();
        assert_eq!(db.checkpoint("c").unwrap(), Some(b"cp-1".to_vec()));
        assert!(db.is_delivered("c", "m1", "a@x").unwrap());
        let rows: i64 = sqlite
            .raw()
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, migrations().len() as i64);
    }

    #[test]
    fn a_database_from_a_newer_release_is_refused() {
        let sqlite = Sqlite::fresh();
        let path = sqlite.path();
        drop(SqliteStore::open(&path).unwrap());
        sqlite
            .raw()
            .execute(
                "INSERT INTO schema_migrations (version, description) VALUES (?1, 'future')",
                [SCHEMA_VERSION + 1],
            )
            .unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert_newer_schema_refused(&err, SCHEMA_VERSION, &path.display().to_string());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_naming_it() {
        let sqlite = Sqlite::fresh();
        let path = sqlite.path();
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, StateError::Open { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn a_version_1_database_is_upgraded_in_place() {
        let sqlite = Sqlite::fresh();
        at_version(&sqlite, 1)
            .execute_batch(
                "INSERT INTO runs (connector, started_at_ms, finished_at_ms, outcome)
                    VALUES ('c', 1, 2, 'succeeded');
                 INSERT INTO quarantine VALUES ('c', 'q', 'q@x', x'00', 3, '[]', 'why', 1);",
            )
            .unwrap();
        let db = SqliteStore::open(&sqlite.path()).unwrap();
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
    fn a_version_9_database_counts_its_runs_again_from_their_failure_rows() {
        // m1: a@x imported, c@x refused, u-d without a mailbox; m2: a@x
        // imported, an external participant named; m3: u-d only. Schema 9
        // counted the refusal alone as failed and no unmapped pair.
        let sqlite = Sqlite::fresh();
        at_version(&sqlite, 9)
            .execute_batch(
                "INSERT INTO runs (connector, started_at_ms, finished_at_ms, outcome, pages,
                    items_from_source, items_for_import, imported, failed, quarantined)
                    VALUES ('c', 1, 2, 'succeeded', 1, 3, 3, 2, 1, 2);
                 INSERT INTO run_failures (run_id, connector, item_id, source_user_id, mailbox,
                    kind, reason, at_ms) VALUES
                    (1, 'c', 'm1', 'u-c', 'c@x', 'refused', 'no', 2),
                    (1, 'c', 'm1', 'u-d', '', 'unmapped', 'none', 2),
                    (1, 'c', 'm2', 'u-e', '', 'external', 'named', 2),
                    (1, 'c', 'm3', 'u-d', '', 'unmapped', 'none', 2);
                 INSERT INTO ledger_items (item_key, connector, item_id, message_id,
                    source_sha256, email_sha256, first_delivered_at_ms) VALUES
                    (1, 'c', 'm1', 'm1@x', 's', 'e', 2), (2, 'c', 'm2', 'm2@x', 's', 'e', 2);
                 INSERT INTO deliveries (item_key, mailbox, receipt, delivered_at_ms, run_id)
                    VALUES (1, 'a@x', 'r', 2, 1), (2, 'a@x', 'r', 2, 1);",
            )
            .unwrap();
        let db = SqliteStore::open(&sqlite.path()).unwrap();
        let c = db.last_run("c").unwrap().unwrap().counts;
        assert_eq!(
            (
                c.items_for_import,
                c.imported,
                c.skipped_duplicates,
                c.failed
            ),
            (5, 2, 0, 3),
            "every pair imported, skipped or failed: {c:?}"
        );
        assert_eq!((c.quarantined, c.partially_imported), (2, 1), "{c:?}");
        assert_eq!(db.connector_totals("c").unwrap().counts, c);
    }

    #[test]
    fn a_version_5_database_keeps_its_failures_and_takes_external_ones_and_unreadable_conversations()
     {
        let sqlite = Sqlite::fresh();
        at_version(&sqlite, 5)
            .execute_batch(
                "INSERT INTO runs (connector, started_at_ms) VALUES ('c', 1);
                 INSERT INTO run_failures (run_id, connector, item_id, source_user_id, mailbox,
                    kind, reason, at_ms) VALUES (1, 'c', 'm1', 'u', '', 'unmapped', 'why', 2);",
            )
            .unwrap();
        let mut db = SqliteStore::open(&sqlite.path()).unwrap();
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
        let run = RunId(1);
        assert_eq!(
            db.run_failures(run).unwrap(),
            [failure("m1", "u", "", FailureKind::Unmapped, "why")]
        );
        let lock = lease(&db);
        let mut p = page(Vec::new(), b"1");
        p.failures = vec![failure("m2", "x", "", FailureKind::External, "named")];
        p.unreadable = vec![connector_model::Unreadable {
            conversation_id: "s1".into(),
            reason: "HTTP 403".into(),
            fix: "add the account".into(),
        }];
        db.commit_page("c", run, lock.token(), &p).unwrap();
        assert_eq!(db.run_failures(run).unwrap().len(), 2);
        assert_eq!(db.unreadable("c").unwrap().len(), 1);
    }

    #[test]
    fn a_version_4_ledger_is_split_into_items_and_deliveries_keeping_every_field() {
        let sqlite = Sqlite::fresh();
        at_version(&sqlite, 4)
            .execute_batch(
                "INSERT INTO ledger VALUES ('c', 'm1', 'a@x', 'm1@x', 'e1', 's1', 'r-a', 20, 1);
                 INSERT INTO ledger VALUES ('c', 'm1', 'b@x', 'm1@x', 'e2', 's1', 'r-b', 10, 2);
                 INSERT INTO ledger VALUES ('d', 'm1', 'a@x', 'm1@y', 'e3', 's3', 'r-c', 30, 3);",
            )
            .unwrap();
        let db = SqliteStore::open(&sqlite.path()).unwrap();
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
        let (items, own_emails): (i64, i64) = sqlite
            .raw()
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
        let lock = lease(&source);
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
        p.seen = vec![seen("i1", 's', 500, &["a@x", "b@x"], &["u-ext"])];
        p.failures = vec![failure(
            "q1",
            "u-ext",
            "",
            FailureKind::Unmapped,
            "no mailbox",
        )];
        p.unreadable = vec![connector_model::Unreadable {
            conversation_id: "s1".into(),
            reason: "HTTP 403".into(),
            fix: "add the account".into(),
        }];
        source.commit_page("c", run, lock.token(), &p).unwrap();
        drop(lock);
        source
            .finish_run(run, 200, RunOutcome::Succeeded, &RunCounts::default(), None)
            .unwrap();
        source.kv_set("c", "k", b"v").unwrap();
        for (actor, action) in [
            ("cli:ann", AuditAction::Paused),
            ("bob", AuditAction::SignIn),
        ] {
            source
                .append_audit(&AuditEntry {
                    at_ms: 5,
                    actor: actor.to_string(),
                    source: "local".to_string(),
                    action,
                    target: "c".to_string(),
                    detail: String::new(),
                })
                .unwrap();
        }
        source.pause("c", "cli:ann").unwrap();
        source.request_run("c", "bob").unwrap();

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
        assert_eq!(rows(Table::RunUnreadable), 1);
        assert_eq!(
            target.run_unreadable(run).unwrap(),
            source.run_unreadable(run).unwrap()
        );
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
        assert_eq!(rows(Table::AuditTrail), 2);
        let trail = target.audit_records(0, 100).unwrap();
        assert_eq!(trail, source.audit_records(0, 100).unwrap());
        assert_eq!(verify_chain(&trail), Ok(()));
        assert_eq!(target.audit_head().unwrap(), source.audit_head().unwrap());
        assert_eq!(target.paused("c").unwrap(), source.paused("c").unwrap());
        assert_eq!(
            target.run_requests().unwrap(),
            source.run_requests().unwrap()
        );
        let next = target.append_audit(&trail[0].entry).unwrap();
        assert_eq!(
            (next.seq, &next.prev_sha256),
            (3, &trail[1].sha256),
            "the chain goes on"
        );

        // A second transfer into it is refused; a changed row is caught.
        assert!(matches!(
            transfer::migrate(&source, &mut target, "target"),
            Err(TransferError::TargetNotEmpty { .. })
        ));
        let file = Sqlite::fresh();
        let mut copy = SqliteStore::open(&file.path()).unwrap();
        transfer::migrate(&source, &mut copy, "copy").unwrap();
        file.raw()
            .execute("UPDATE kv SET value = X'77' WHERE key = 'k'", [])
            .unwrap();
        match transfer::verify(&digests, &copy) {
            Err(TransferError::Mismatch {
                table, connector, ..
            }) => assert_eq!((table, connector.as_str()), (Table::Kv, "c")),
            other => panic!("expected a mismatch, got {other:?}"),
        }
    }
}

/// What every state store does, whatever keeps it: each function takes a
/// [`Backend`](behaviours::Backend) (a fresh, empty database of one kind) and checks one
/// behaviour through the `StateStore` traits only.
mod behaviours {

    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    use connector_email::{DEFAULT_SPILL_ABOVE, Email};
    use connector_model::limits::{KV_MAX_KEY_BYTES, KV_MAX_VALUE_BYTES, KV_QUOTA_BYTES};
    use connector_model::{Conversation, ConversationKind, Person};
    use connector_state::prelude::*;
    use connector_state::records::*;
    use connector_state::{
        AuditAction, AuditEntry, AuditHead, AuditQuery, AuditRecord, ChainBreak, ChainVerifier,
        Fingerprint, GENESIS_SHA256, LeaseRequest, LockOutcome, RunLock, RunRequest, StateError,
        WorkerRecord, record_sha256, verify_chain,
    };

    /// A kind of state database, fresh and empty for each test.
    pub trait Backend {
        /// A new handle on this test's database (another process would open
        /// one the same way).
        fn open(&self) -> Box<dyn StateStore>;

        /// Makes every later quarantine insert fail, so that a page commit
        /// breaks after its ledger rows went in.
        fn break_quarantine_inserts(&self);

        /// Undoes [`Backend::break_quarantine_inserts`].
        fn heal_quarantine_inserts(&self);

        /// Runs `sql` on the database directly, as anyone holding its
        /// credentials (or the file) could; the error's text on failure.
        fn execute_raw(&self, sql: &str) -> Result<(), String>;

        /// Removes the triggers that refuse changes to the audit trail,
        /// as someone set on hiding an action would.
        fn drop_audit_guards(&self);

        /// Runs the `connector` binary with `args` on this database.
        fn cli(&self, args: &[&str]) -> std::process::Output;
    }

    pub(super) fn entry(item: &str, mailbox: &str) -> LedgerEntry {
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

    pub(super) fn quarantined(item: &str, reason: &str) -> QuarantineEntry {
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

    fn counts(n: u64) -> RunCounts {
        RunCounts {
            pages: 1,
            items_from_source: n,
            items_for_import: 2 * n,
            imported: n,
            skipped_duplicates: 1,
            failed: 0,
            quarantined: 1,
            partially_imported: 1,
        }
    }

    pub(super) fn page(ledger: Vec<LedgerEntry>, checkpoint: &[u8]) -> PageCommit {
        PageCommit {
            ledger,
            quarantine: vec![quarantined("q1", "no mailbox for u-ext")],
            released: Vec::new(),
            counts: counts(2),
            checkpoint: checkpoint.to_vec(),
            ..PageCommit::default()
        }
    }

    fn print(connector_file: &str, plugin: &str) -> Fingerprint {
        [
            ("connector file".to_string(), connector_file.to_string()),
            ("plugin".to_string(), plugin.to_string()),
        ]
        .into()
    }

    fn request(owner: &str, ttl: Duration, fingerprint: &Fingerprint) -> LeaseRequest {
        LeaseRequest {
            owner: owner.to_string(),
            ttl,
            fingerprint: fingerprint.clone(),
        }
    }

    /// What `owner` gets when it asks for `connector` with the default files.
    fn ask(db: &dyn StateStore, connector: &str, owner: &str, ttl: Duration) -> LockOutcome {
        db.lock_runs(connector, &request(owner, ttl, &print("a", "p")))
            .unwrap()
    }

    /// The lease of `connector` for worker `owner`, which must be free.
    fn take(db: &dyn StateStore, connector: &str, owner: &str, ttl: Duration) -> RunLock {
        match ask(db, connector, owner, ttl) {
            LockOutcome::Taken(lock) => lock,
            other => panic!("{owner} could not take the lease of {connector}: {other:?}"),
        }
    }

    /// The lease a test holds to commit pages of connector `c`.
    pub(super) fn lease(db: &dyn StateStore) -> RunLock {
        take(db, "c", "test-worker", Duration::from_secs(60))
    }

    /// What a run saw of `item`: its source's SHA-256 (`sha` 64 times),
    /// the mailboxes it went to and the participants left unmapped.
    pub(super) fn seen(
        item: &str,
        sha: char,
        sent_at_ms: i64,
        mailboxes: &[&str],
        unmapped: &[&str],
    ) -> SeenItem {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        SeenItem {
            item_id: item.to_string(),
            source_sha256: sha.to_string().repeat(64),
            sent_at_ms,
            mailboxes: strings(mailboxes),
            unmapped: strings(unmapped),
        }
    }

    /// A failure to deliver `item` of participant `user` to `mailbox`.
    pub(super) fn failure(
        item: &str,
        user: &str,
        mailbox: &str,
        kind: FailureKind,
        reason: &str,
    ) -> RunFailure {
        RunFailure {
            item_id: item.to_string(),
            source_user_id: user.to_string(),
            mailbox: mailbox.to_string(),
            kind,
            reason: reason.to_string(),
        }
    }

    /// Ends `run` at `finished_at_ms` with `outcome` (and `error`), its
    /// counts those its pages added up to.
    fn end(
        db: &mut dyn StateStore,
        run: RunId,
        finished_at_ms: i64,
        outcome: RunOutcome,
        error: Option<&str>,
    ) {
        db.finish_run(run, finished_at_ms, outcome, &RunCounts::default(), error)
            .unwrap();
    }

    /// Commits `page` of run `run` of connector `c` under `lock`.
    fn commit(db: &mut dyn StateStore, lock: &RunLock, run: RunId, page: &PageCommit) {
        db.commit_page("c", run, lock.token(), page).unwrap();
    }

    fn worker(id: &str, connector: &str, fingerprint: &Fingerprint) -> WorkerRecord {
        WorkerRecord {
            id: id.to_string(),
            host: "host-1".to_string(),
            pid: 4242,
            version: "1.2.3".to_string(),
            started_at_ms: 77,
            heartbeat_at_ms: 0,
            connectors: [(connector.to_string(), fingerprint.clone())].into(),
        }
    }

    pub fn checkpoint_is_absent_until_a_page_stores_one_and_is_per_connector(b: &dyn Backend) {
        let mut db = b.open();
        let lock = lease(&*db);
        assert_eq!(db.checkpoint("a").unwrap(), None);
        let run = db.begin_run("c", 0).unwrap();
        commit(&mut *db, &lock, run, &page(Vec::new(), b"one"));
        assert_eq!(db.checkpoint("c").unwrap(), Some(b"one".to_vec()));
        assert_eq!(db.checkpoint("b").unwrap(), None);

        commit(&mut *db, &lock, run, &page(Vec::new(), b"two"));
        assert_eq!(db.checkpoint("c").unwrap(), Some(b"two".to_vec()));

        db.clear_checkpoint("c").unwrap();
        assert_eq!(db.checkpoint("c").unwrap(), None);
    }

    pub fn runs_record_outcome_counts_and_error_newest_first(b: &dyn Backend) {
        let mut db = b.open();
        assert_eq!(db.last_run("c").unwrap(), None);
        let first = db.begin_run("c", 100).unwrap();
        db.finish_run(first, 200, RunOutcome::Succeeded, &counts(3), None)
            .unwrap();
        let second = db.begin_run("c", 300).unwrap();
        end(
            &mut *db,
            second,
            400,
            RunOutcome::Failed,
            Some("source said 500"),
        );
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
        assert_eq!(db.last_finished_run("c").unwrap().unwrap().id, second);
        assert_eq!(db.last_scheduled_run("c").unwrap().unwrap().id, third);
    }

    pub fn finishing_a_run_keeps_the_larger_of_page_counts_and_given_totals(b: &dyn Backend) {
        let mut db = b.open();
        let lock = lease(&*db);
        let run = db.begin_run("c", 0).unwrap();
        commit(&mut *db, &lock, run, &page(Vec::new(), b"x"));
        commit(&mut *db, &lock, run, &page(Vec::new(), b"y"));
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

    pub fn finishing_an_unknown_run_is_an_error(b: &dyn Backend) {
        let mut db = b.open();
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

    pub fn unfinished_runs_can_be_marked_interrupted(b: &dyn Backend) {
        let mut db = b.open();
        let done = db.begin_run("c", 0).unwrap();
        end(&mut *db, done, 1, RunOutcome::Succeeded, None);
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

    pub fn commit_page_records_ledger_quarantine_counts_and_checkpoint_together(b: &dyn Backend) {
        let mut db = b.open();
        let lock = lease(&*db);
        let run = db.begin_run("c", 0).unwrap();
        let entries = vec![entry("m1", "a@x"), entry("m1", "b@x"), entry("m2", "a@x")];
        commit(&mut *db, &lock, run, &page(entries.clone(), b"cp"));

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

    pub fn ledger_keeps_the_first_entry_of_a_pair(b: &dyn Backend) {
        let mut db = b.open();
        let lock = lease(&*db);
        let run = db.begin_run("c", 0).unwrap();
        commit(&mut *db, &lock, run, &page(vec![entry("m1", "a@x")], b"1"));
        let mut again = entry("m1", "a@x");
        again.receipt = "elsewhere".to_string();
        again.delivered_at_ms = 9_999;
        // Within one page too, the first entry of a pair wins.
        let mut twice = entry("m2", "a@x");
        twice.receipt = "second".to_string();
        let page2 = page(vec![again, entry("m2", "a@x"), twice], b"2");
        commit(&mut *db, &lock, run, &page2);
        assert_eq!(
            db.ledger_entries("c").unwrap(),
            vec![entry("m1", "a@x"), entry("m2", "a@x")]
        );
        assert_eq!(db.checkpoint("c").unwrap(), Some(b"2".to_vec()));
    }

    pub fn ledger_entries_of_one_item_may_differ_per_mailbox(b: &dyn Backend) {
        let mut db = b.open();
        let lock = lease(&*db);
        let run = db.begin_run("c", 0).unwrap();
        let first = entry("m1", "a@x");
        let mut changed = entry("m1", "b@x");
        changed.email_sha256 = "f".repeat(64);
        changed.delivered_at_ms = 2_000;
        commit(&mut *db, &lock, run, &page(vec![first.clone()], b"1"));
        let later = db.begin_run("c", 1).unwrap();
        commit(&mut *db, &lock, later, &page(vec![changed.clone()], b"2"));
        assert_eq!(
            db.ledger_entries("c").unwrap(),
            [first.clone(), changed.clone()]
        );
        let pairs = db.ledger_for_items("c", &["m1", "nothing"]).unwrap();
        assert_eq!(
            pairs
                .iter()
                .map(|p| (p.entry.clone(), p.run))
                .collect::<Vec<_>>(),
            [(first, run), (changed.clone(), later)]
        );
        let of_later = db.ledger_of_run(later).unwrap();
        assert_eq!(of_later.len(), 1);
        assert_eq!(of_later[0].entry, changed);
    }

    pub fn commit_page_rolls_back_everything_when_a_statement_fails(b: &dyn Backend) {
        let mut db = b.open();
        let lock = lease(&*db);
        let run = db.begin_run("c", 0).unwrap();
        commit(
            &mut *db,
            &lock,
            run,
            &page(vec![entry("m0", "a@x")], b"before"),
        );
        let before = db.last_run("c").unwrap().unwrap().counts;
        // The quarantine insert fails after the ledger rows went in.
        b.break_quarantine_inserts();
        let mut failing = page(vec![entry("m1", "a@x"), entry("m2", "a@x")], b"after");
        failing.quarantine = vec![quarantined("q2", "x")];
        let err = db
            .commit_page("c", run, lock.token(), &failing)
            .unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");

        assert_eq!(db.delivered_count("c").unwrap(), 1);
        assert!(!db.is_delivered("c", "m1", "a@x").unwrap());
        assert_eq!(db.quarantine("c").unwrap().len(), 1);
        assert_eq!(db.last_run("c").unwrap().unwrap().counts, before);
        assert_eq!(db.checkpoint("c").unwrap(), Some(b"before".to_vec()));

        // The database is usable afterwards.
        b.heal_quarantine_inserts();
        commit(&mut *db, &lock, run, &failing);
        assert_eq!(db.delivered_count("c").unwrap(), 3);
    }

    pub fn commit_page_for_an_unknown_or_foreign_run_changes_nothing(b: &dyn Backend) {
        let mut db = b.open();
        let lock = lease(&*db);
        let foreign = db.begin_run("other", 0).unwrap();
        for run in [RunId(999), foreign] {
            let err = db
                .commit_page(
                    "c",
                    run,
                    lock.token(),
                    &page(vec![entry("m1", "a@x")], b"cp"),
                )
                .unwrap_err();
            assert!(matches!(err, StateError::UnknownRun { .. }), "{err}");
        }
        assert_eq!(db.delivered_count("c").unwrap(), 0);
        assert_eq!(db.quarantine_count("c").unwrap(), 0);
        assert_eq!(db.checkpoint("c").unwrap(), None);
    }

    pub fn a_committed_page_is_seen_at_once_by_another_store(b: &dyn Backend) {
        let mut db = b.open();
        let lock = lease(&*db);
        let run = db.begin_run("c", 0).unwrap();
        commit(&mut *db, &lock, run, &page(vec![entry("m1", "a@x")], b"cp"));
        let other = b.open();
        assert!(other.is_delivered("c", "m1", "a@x").unwrap());
        assert_eq!(other.quarantine_count("c").unwrap(), 1);
        assert_eq!(other.checkpoint("c").unwrap(), Some(b"cp".to_vec()));
    }

    pub fn delivered_set_answers_for_many_items_at_once(b: &dyn Backend) {
        let mut db = b.open();
        let lock = lease(&*db);
        let run = db.begin_run("c", 0).unwrap();
        let entries: Vec<LedgerEntry> = (0..1200)
            .filter(|i| i % 3 == 0)
            .map(|i| entry(&format!("m{i}"), "a@x"))
            .collect();
        commit(&mut *db, &lock, run, &page(entries, b"cp"));
        commit(&mut *db, &lock, run, &page(vec![entry("m3", "b@x")], b"cp"));
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
        assert_eq!(db.delivered_count("c").unwrap(), 401);
    }

    pub fn requarantining_an_item_replaces_it_and_released_items_leave(b: &dyn Backend) {
        let mut db = b.open();
        let lock = lease(&*db);
        let run = db.begin_run("c", 0).unwrap();
        commit(&mut *db, &lock, run, &page(Vec::new(), b"1"));
        let mut again = page(Vec::new(), b"2");
        again.quarantine = vec![
            quarantined("q1", "still unmapped"),
            quarantined("q2", "new"),
        ];
        commit(&mut *db, &lock, run, &again);
        let q = db.quarantine("c").unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].item_id, "q1");
        assert_eq!(q[0].reason, "still unmapped");
        assert_eq!(q[0].unmapped[0].display_name.as_deref(), Some("Ext Ernal"));
        assert!(db.is_quarantined("c", "q2").unwrap());

        let release = PageCommit {
            ledger: vec![entry("q1", "ext@x")],
            released: vec!["q1".to_string()],
            checkpoint: db.checkpoint("c").unwrap().unwrap(),
            ..PageCommit::default()
        };
        commit(&mut *db, &lock, run, &release);
        let q = db.quarantine("c").unwrap();
        assert_eq!(
            q.iter().map(|e| e.item_id.as_str()).collect::<Vec<_>>(),
            ["q2"]
        );
        assert!(!db.is_quarantined("c", "q1").unwrap());
        assert!(db.is_delivered("c", "q1", "ext@x").unwrap());
        assert_eq!(db.checkpoint("c").unwrap(), Some(b"2".to_vec()));
    }

    pub fn a_big_quarantined_email_is_streamed_into_the_database_and_back_out(b: &dyn Backend) {
        let dir = tempfile::tempdir().unwrap();
        let mut db = b.open();
        let lock = lease(&*db);
        let run = db.begin_run("c", 0).unwrap();
        let len = DEFAULT_SPILL_ABOVE + 12_345;
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let big = Email::spool_from("big@x".into(), &mut &bytes[..], dir.path(), 7).unwrap();
        assert!(big.spool_path().is_some());
        let mut first = page(Vec::new(), b"cp");
        first.quarantine = vec![QuarantineEntry {
            email: big.clone(),
            ..quarantined("big", "no mailbox")
        }];
        commit(&mut *db, &lock, run, &first);

        let q = db.quarantine("c").unwrap();
        let back = &q[0].email;
        assert!(back.spool_path().is_some(), "read back into a spool file");
        assert_eq!(back.len(), len as u64);
        assert_eq!(back.sha256, big.sha256);
        assert!(back.bytes().unwrap()[..] == bytes[..]);

        // Quarantined again (smaller), it is replaced whole.
        let mut again = page(Vec::new(), b"cp");
        again.quarantine = vec![quarantined("big", "still no mailbox")];
        commit(&mut *db, &lock, run, &again);
        let q = db.quarantine("c").unwrap();
        assert_eq!(q[0].email, quarantined("big", "").email);
        assert!(q[0].email.spool_path().is_none());
    }

    pub fn kv_stores_reads_replaces_and_deletes_per_connector(b: &dyn Backend) {
        let mut db = b.open();
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
        // Keys count in bytes, not characters.
        db.kv_set("u", "clé", b"\xff").unwrap();
        assert_eq!(db.kv_usage("u").unwrap(), 5);
    }

    pub fn kv_refuses_values_and_keys_over_their_limits(b: &dyn Backend) {
        let mut db = b.open();
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

    pub fn kv_quota_counts_all_keys_and_values_of_the_connector(b: &dyn Backend) {
        let mut db = b.open();
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

    pub fn a_page_records_what_it_saw_and_what_failed_for_the_admin_log(b: &dyn Backend) {
        let mut db = b.open();
        let lock = lease(&*db);
        let run = db
            .begin_run_of("c", 10, RunKind::Backfill, Some((1, 2)))
            .unwrap();
        let mut p = page(vec![entry("m1", "a@x")], b"1");
        p.seen = vec![
            seen("m2", 't', 6, &[], &[]),
            seen("m1", 's', 5, &["a@x", "b@x"], &["u-ext"]),
        ];
        p.failures = vec![
            failure("m1", "u-ext", "", FailureKind::Unmapped, "no mailbox"),
            failure("m1", "u-b", "b@x", FailureKind::Refused, "mailbox full"),
        ];
        p.checkpoint_slot = CheckpointSlot::Key("c#backfill:1..2".into());
        commit(&mut *db, &lock, run, &p);
        let sent_order = vec![p.seen[1].clone(), p.seen[0].clone()];
        assert_eq!(db.run_items(run).unwrap(), sent_order);
        assert_eq!(db.run_failures(run).unwrap(), p.failures);
        assert_eq!(
            db.refused_mailboxes("c", "m1").unwrap(),
            [("b@x".to_string(), "u-b".to_string())]
        );
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

        // A commit that keeps the checkpoint (redelivery) writes none, and a
        // redelivered refused mailbox is no longer refused.
        let redeliver = db.begin_run_of("c", 20, RunKind::Redeliver, None).unwrap();
        let keep = PageCommit {
            ledger: vec![entry("m1", "b@x")],
            checkpoint_slot: CheckpointSlot::Keep,
            checkpoint: b"ignored".to_vec(),
            ..PageCommit::default()
        };
        commit(&mut *db, &lock, redeliver, &keep);
        assert_eq!(db.checkpoint("c").unwrap(), None);
        assert!(db.refused_mailboxes("c", "m1").unwrap().is_empty());
        assert_eq!(db.last_run("c").unwrap().unwrap().kind, RunKind::Redeliver);
    }

    /// A line of `conversation`'s `day` for message `item`, going to
    /// `mailboxes`.
    fn line(
        conversation: &str,
        day: &str,
        item: &str,
        at: i64,
        mailboxes: &[&str],
    ) -> TranscriptLine {
        TranscriptLine {
            conversation_id: conversation.to_string(),
            day: day.to_string(),
            item_id: item.to_string(),
            sent_at_ms: at,
            mailboxes: mailboxes.iter().map(|m| m.to_string()).collect(),
            entry: format!("entry of {item}").into_bytes(),
            part: None,
        }
    }

    fn part(conversation: &str, day: &str, part: u32) -> TranscriptPart {
        TranscriptPart {
            conversation_id: conversation.to_string(),
            day: day.to_string(),
            part,
        }
    }

    /// The items of a part, in its order.
    fn items_of(db: &dyn StateStore, p: &TranscriptPart) -> Vec<String> {
        db.transcript_lines("c", p)
            .unwrap()
            .into_iter()
            .map(|l| l.item_id)
            .collect()
    }

    pub fn transcript_lines_are_kept_with_their_page_and_sealed_into_parts_once_their_day_is_closed(
        b: &dyn Backend,
    ) {
        let mut db = b.open();
        let lock = lease(&*db);
        let run = db.begin_run("c", 0).unwrap();
        let mut p = page(Vec::new(), b"t1");
        p.transcript_lines = vec![
            line("room", "2024-01-01", "m2", 20, &["a@x.test", "b@x.test"]),
            line("room", "2024-01-01", "m1", 10, &["a@x.test"]),
            line("room", "2024-01-02", "m3", 30, &["a@x.test"]),
            line("dm", "2024-01-01", "d1", 15, &["c@x.test"]),
        ];
        commit(&mut *db, &lock, run, &p);
        // A line sent again (a page read again after a crash) stays once.
        let mut again = page(Vec::new(), b"t2");
        again.transcript_lines = vec![line("room", "2024-01-01", "m1", 10, &["z@x.test"])];
        commit(&mut *db, &lock, run, &again);
        // Only closed days are to seal.
        let day = |c: &str, d: &str| (c.to_string(), d.to_string());
        assert_eq!(
            db.days_to_seal("c", "2024-01-01").unwrap(),
            [day("dm", "2024-01-01"), day("room", "2024-01-01")]
        );
        assert!(db.days_to_seal("other", "2024-12-31").unwrap().is_empty());
        assert_eq!(
            db.seal_transcript("c", "room", "2024-01-01").unwrap(),
            Some(part("room", "2024-01-01", 0))
        );
        assert_eq!(db.seal_transcript("c", "room", "2024-01-01").unwrap(), None);
        assert_eq!(
            db.days_to_seal("c", "2024-01-01").unwrap(),
            [day("dm", "2024-01-01")]
        );
        let lines = db
            .transcript_lines("c", &part("room", "2024-01-01", 0))
            .unwrap();
        assert_eq!(
            lines.iter().map(|l| l.item_id.as_str()).collect::<Vec<_>>(),
            ["m1", "m2"],
            "in sent order"
        );
        assert_eq!(lines[0].mailboxes, ["a@x.test"], "the first line kept");
        assert_eq!(lines[1].mailboxes, ["a@x.test", "b@x.test"]);
        assert_eq!(lines[1].entry, b"entry of m2");
        assert_eq!(lines[1].part, Some(0));
        // A message of the day that comes after the seal goes into the
        // next part: an addendum.
        let mut late = page(Vec::new(), b"t3");
        late.transcript_lines = vec![line("room", "2024-01-01", "m0", 5, &["a@x.test"])];
        commit(&mut *db, &lock, run, &late);
        assert_eq!(
            db.seal_transcript("c", "room", "2024-01-01").unwrap(),
            Some(part("room", "2024-01-01", 1))
        );
        assert_eq!(items_of(&*db, &part("room", "2024-01-01", 0)), ["m1", "m2"]);
        assert_eq!(items_of(&*db, &part("room", "2024-01-01", 1)), ["m0"]);
        assert_eq!(
            db.undelivered_transcripts("c").unwrap(),
            [part("room", "2024-01-01", 0), part("room", "2024-01-01", 1)]
        );
        assert_eq!(
            db.transcript_backlog("c").unwrap(),
            TranscriptBacklog {
                open_days: 2,
                unsent: 2
            },
            "room on the 2nd and dm on the 1st are open; two parts wait"
        );
    }

    pub fn a_transcript_is_marked_delivered_only_by_the_commit_of_its_deliveries(b: &dyn Backend) {
        let mut db = b.open();
        let lock = lease(&*db);
        let run = db.begin_run("c", 0).unwrap();
        let mut p = page(Vec::new(), b"t1");
        p.transcript_lines = vec![line("room", "2024-01-01", "m1", 10, &["a@x.test"])];
        commit(&mut *db, &lock, run, &p);
        let sealed = db
            .seal_transcript("c", "room", "2024-01-01")
            .unwrap()
            .unwrap();
        // A commit that fails leaves the transcript to deliver.
        b.break_quarantine_inserts();
        let mut delivery = page(vec![entry("transcript:2024-01-01:0:room", "a@x.test")], b"");
        delivery.checkpoint_slot = CheckpointSlot::Keep;
        delivery.transcripts_delivered = vec![sealed.clone()];
        let mut failing = delivery.clone();
        failing.quarantine = vec![quarantined("q1", "x")];
        assert!(db.commit_page("c", run, lock.token(), &failing).is_err());
        b.heal_quarantine_inserts();
        assert_eq!(
            db.undelivered_transcripts("c").unwrap(),
            std::slice::from_ref(&sealed)
        );
        assert!(
            !db.is_delivered("c", "transcript:2024-01-01:0:room", "a@x.test")
                .unwrap()
        );
        commit(&mut *db, &lock, run, &delivery);
        assert!(db.undelivered_transcripts("c").unwrap().is_empty());
        assert_eq!(
            db.transcript_backlog("c").unwrap(),
            TranscriptBacklog::default()
        );
        assert!(
            db.is_delivered("c", "transcript:2024-01-01:0:room", "a@x.test")
                .unwrap()
        );
        assert_eq!(
            db.checkpoint("c").unwrap().as_deref(),
            Some(&b"t1"[..]),
            "kept"
        );
        // Its lines stay, sealed: a later line of the day is an addendum.
        assert!(db.days_to_seal("c", "2024-12-31").unwrap().is_empty());
    }

    fn unreadable(conversation: &str, reason: &str) -> connector_model::Unreadable {
        connector_model::Unreadable {
            conversation_id: conversation.to_string(),
            reason: reason.to_string(),
            fix: format!("add the account to {conversation}"),
        }
    }

    /// Commits a page of `run` reporting `reports` unreadable.
    fn report(db: &mut dyn StateStore, lock: &RunLock, run: RunId, reports: &[(&str, &str)]) {
        let mut p = page(Vec::new(), b"u");
        p.unreadable = reports.iter().map(|(c, r)| unreadable(c, r)).collect();
        commit(db, lock, run, &p);
    }

    fn listed(db: &dyn StateStore) -> Vec<(String, String, RunId)> {
        db.unreadable("c")
            .unwrap()
            .into_iter()
            .map(|u| (u.report.conversation_id, u.report.reason, u.run))
            .collect()
    }

    pub fn unreadable_conversations_are_those_of_the_last_complete_run_and_any_since(
        b: &dyn Backend,
    ) {
        let mut db = b.open();
        let lock = lease(&*db);
        let first = db.begin_run("c", 0).unwrap();
        // A later report of a conversation in the same run replaces the
        // earlier one, in a page or across pages.
        report(
            &mut *db,
            &lock,
            first,
            &[("s2", "old"), ("s1", "403"), ("s2", "400")],
        );
        report(&mut *db, &lock, first, &[("s3", "403")]);
        let kept = db.run_unreadable(first).unwrap();
        assert_eq!(
            kept.iter().map(|u| u.report.clone()).collect::<Vec<_>>(),
            [
                unreadable("s1", "403"),
                unreadable("s2", "400"),
                unreadable("s3", "403")
            ]
        );
        assert!(kept.iter().all(|u| u.run == first && u.reported_at_ms > 0));
        end(&mut *db, first, 10, RunOutcome::Succeeded, None);
        let s = |c: &str, r: &str, run: RunId| (c.to_string(), r.to_string(), run);
        assert_eq!(
            listed(&*db),
            [
                s("s1", "403", first),
                s("s2", "400", first),
                s("s3", "403", first)
            ]
        );

        // A run that stops early adds what it found to the list, and drops
        // nothing it has not read yet.
        let stopped = db.begin_run("c", 20).unwrap();
        report(
            &mut *db,
            &lock,
            stopped,
            &[("s3", "timeout"), ("s4", "403")],
        );
        end(&mut *db, stopped, 30, RunOutcome::Interrupted, None);
        assert_eq!(
            listed(&*db),
            [
                s("s1", "403", first),
                s("s2", "400", first),
                s("s3", "timeout", stopped),
                s("s4", "403", stopped),
            ]
        );
        assert!(db.unreadable("other").unwrap().is_empty());

        // A run that reads the source to the end is the new list: what it
        // read without a report is readable again. A redelivery reads no
        // source and changes nothing.
        let complete = db.begin_run("c", 40).unwrap();
        report(&mut *db, &lock, complete, &[("s2", "400")]);
        end(&mut *db, complete, 50, RunOutcome::Succeeded, None);
        let redeliver = db.begin_run_of("c", 60, RunKind::Redeliver, None).unwrap();
        end(&mut *db, redeliver, 70, RunOutcome::Succeeded, None);
        assert_eq!(listed(&*db), [s("s2", "400", complete)]);
        let clean = db.begin_run("c", 80).unwrap();
        end(&mut *db, clean, 90, RunOutcome::Succeeded, None);
        assert!(listed(&*db).is_empty());
        assert_eq!(
            db.run_unreadable(complete).unwrap().len(),
            1,
            "the run's own stay"
        );

        assert_eq!(db.prune_runs_before(35).unwrap(), 2);
        assert!(db.run_unreadable(first).unwrap().is_empty());
    }

    pub fn pruning_removes_old_runs_with_their_items_and_failures_but_never_the_ledger(
        b: &dyn Backend,
    ) {
        let mut db = b.open();
        let lock = lease(&*db);
        let old = db.begin_run("c", 0).unwrap();
        let mut p = page(vec![entry("m1", "a@x")], b"1");
        p.failures = vec![failure("m1", "u", "b@x", FailureKind::Refused, "full")];
        p.seen = vec![seen("m1", 's', 5, &["a@x"], &[])];
        commit(&mut *db, &lock, old, &p);
        end(&mut *db, old, 1_000, RunOutcome::Succeeded, None);
        let new = db.begin_run("c", 5_000).unwrap();
        end(&mut *db, new, 6_000, RunOutcome::Failed, Some("x"));
        let unfinished = db.begin_run("c", 7_000).unwrap();
        assert_eq!(db.prune_runs_before(2_000).unwrap(), 1);
        assert!(db.run(old).unwrap().is_none());
        assert!(db.run_failures(old).unwrap().is_empty());
        assert!(db.run_items(old).unwrap().is_empty());
        assert!(db.run(new).unwrap().is_some());
        assert!(db.run(unfinished).unwrap().is_some());
        assert!(db.is_delivered("c", "m1", "a@x").unwrap());
        assert_eq!(db.quarantine_count("c").unwrap(), 1);
        assert_eq!(db.checkpoint("c").unwrap(), Some(b"1".to_vec()));
        let totals = db.connector_totals("c").unwrap();
        assert_eq!(totals.runs_by_outcome.get("failed"), Some(&1));
        assert_eq!(totals.last_success_ms, None);
    }

    pub fn connector_totals_add_finished_and_running_runs(b: &dyn Backend) {
        let mut db = b.open();
        let lock = lease(&*db);
        let done = db.begin_run("c", 0).unwrap();
        db.finish_run(done, 50, RunOutcome::Succeeded, &counts(4), None)
            .unwrap();
        let running = db.begin_run("c", 60).unwrap();
        commit(&mut *db, &lock, running, &page(Vec::new(), b"1"));
        db.begin_run("b-other", 0).unwrap();
        let totals = db.connector_totals("c").unwrap();
        assert_eq!(totals.runs_by_outcome.get("succeeded"), Some(&1));
        assert_eq!(totals.runs_by_outcome.len(), 1);
        assert_eq!(totals.counts.imported, 4 + 2);
        assert_eq!(totals.counts.items_from_source, 4 + 2);
        assert_eq!(totals.counts.quarantined, 2);
        assert_eq!(totals.counts.skipped_duplicates, 2);
        assert_eq!(totals.counts.partially_imported, 2);
        assert_eq!(totals.last_success_ms, Some(50));
        assert_eq!(db.connectors().unwrap(), ["b-other", "c"]);
        assert_eq!(
            db.connector_totals("none").unwrap(),
            ConnectorTotals::default()
        );
    }

    pub fn described_conversations_are_remembered_and_replaced_with_the_page(b: &dyn Backend) {
        let room = |name: &str| Conversation {
            id: "c1".into(),
            kind: ConversationKind::Room,
            name: Some(name.into()),
            participants: Vec::new(),
        };
        let mut db = b.open();
        let lock = lease(&*db);
        let run = db.begin_run("c", 0).unwrap();
        let mut first = page(Vec::new(), b"1");
        first.conversations = vec![room("Old name")];
        commit(&mut *db, &lock, run, &first);
        let mut renamed = page(Vec::new(), b"2");
        renamed.conversations = vec![room("New name")];
        commit(&mut *db, &lock, run, &renamed);
        let found = db.conversations("c", &["c1", "c2"]).unwrap();
        assert_eq!(found, [room("New name")]);
        assert!(db.conversations("other", &["c1"]).unwrap().is_empty());
    }

    pub fn one_holder_at_a_time(b: &dyn Backend) {
        let first = b.open();
        let second = b.open();
        let ttl = Duration::from_secs(30);
        let lock = take(&*first, "c", "w1", ttl);
        assert!(lock.is_live());
        assert!(lock.token() > 0);
        // (SQLite names no owner: the operating system's lock decides there.)
        assert!(
            matches!(ask(&*second, "c", "w2", ttl), LockOutcome::Held { .. }),
            "a second holder"
        );
        // Another connector is free.
        let other = take(&*second, "d", "w2", ttl);
        let leases = first.leases().unwrap();
        assert_eq!(
            leases
                .iter()
                .map(|l| (l.connector.as_str(), l.owner.as_str()))
                .collect::<Vec<_>>(),
            [("c", "w1"), ("d", "w2")]
        );
        assert_eq!(leases[0].token, lock.token());
        assert_eq!(leases[0].fingerprint, print("a", "p"));
        assert!(leases[0].expires_at_ms > first.clock_ms().unwrap());
        drop(other);
    }

    pub fn an_expired_lease_is_taken_with_a_higher_token(b: &dyn Backend) {
        let first = b.open();
        let second = b.open();
        let ttl = Duration::from_millis(400);
        let lock = take(&*first, "c", "w1", ttl);
        let token = lock.token();
        // The holder stops renewing (it hangs, or dies without releasing).
        drop(lock);
        std::thread::sleep(ttl + Duration::from_millis(200));
        let next = take(&*second, "c", "w2", ttl);
        assert!(next.token() > token, "{} after {token}", next.token());
        let lease = &second.leases().unwrap()[0];
        assert_eq!((lease.owner.as_str(), lease.token), ("w2", next.token()));
    }

    pub fn the_keeper_renews_the_lease_while_the_lock_is_held(b: &dyn Backend) {
        let first = b.open();
        let second = b.open();
        let ttl = Duration::from_millis(600);
        let lock = take(&*first, "c", "w1", ttl);
        std::thread::sleep(ttl * 2);
        assert!(lock.is_live());
        assert!(matches!(
            ask(&*second, "c", "w2", ttl),
            LockOutcome::Held { .. }
        ));
        assert!(first.leases().unwrap()[0].expires_at_ms > first.clock_ms().unwrap());
    }

    pub fn partitions_of_one_connector_are_leased_and_fenced_apart(b: &dyn Backend) {
        let mut first = b.open();
        let mut second = b.open();
        let ttl = Duration::from_millis(400);
        // Plugin-chosen ids: any text, including what a file name cannot hold.
        let (a, z) = (
            connector_state::partition_lease("c", "stream:a/b+c=="),
            connector_state::partition_lease("c", "stream:z"),
        );
        let run = first.begin_run("c", 0).unwrap();
        let on_a = take(&*first, &a, "w1", ttl);
        let on_z = take(&*second, &z, "w2", ttl);
        assert!(matches!(
            ask(&*second, &a, "w2", ttl),
            LockOutcome::Held { .. }
        ));
        let in_partition = |lease: &str, item: &str, checkpoint: &[u8]| PageCommit {
            lease: Some(lease.to_string()),
            checkpoint_slot: CheckpointSlot::Key(lease.to_string()),
            ..page(vec![entry(item, "a@x")], checkpoint)
        };
        first
            .commit_page("c", run, on_a.token(), &in_partition(&a, "m-a", b"a1"))
            .unwrap();
        second
            .commit_page("c", run, on_z.token(), &in_partition(&z, "m-z", b"z1"))
            .unwrap();
        assert_eq!(first.checkpoint(&a).unwrap(), Some(b"a1".to_vec()));
        assert_eq!(first.checkpoint(&z).unwrap(), Some(b"z1".to_vec()));
        assert_eq!(first.checkpoint("c").unwrap(), None);
        assert_eq!(second.partition_checkpoints("c").unwrap(), 2);
        assert_eq!(second.partition_checkpoints("c#partition").unwrap(), 0);
        assert_eq!(second.partition_checkpoints("other").unwrap(), 0);

        // Z's lapsed token is refused once a successor took Z.
        let stale = on_z.token();
        drop(on_z);
        std::thread::sleep(ttl + Duration::from_millis(200));
        let successor = take(&*first, &z, "w1", ttl);
        assert!(successor.token() > stale);
        assert!(
            second
                .commit_page("c", run, stale, &in_partition(&z, "m-late", b"late"))
                .is_err()
        );
        assert!(!first.is_delivered("c", "m-late", "a@x").unwrap());
        assert_eq!(first.checkpoint(&z).unwrap(), Some(b"z1".to_vec()));
        drop(on_a);
    }

    pub fn stale_token_commit_is_refused_and_counted(b: &dyn Backend) {
        let mut first = b.open();
        let mut second = b.open();
        let ttl = Duration::from_millis(400);
        let run = first.begin_run("c", 0).unwrap();
        let stale = take(&*first, "c", "w1", ttl);
        first
            .commit_page(
                "c",
                run,
                stale.token(),
                &page(vec![entry("m0", "a@x")], b"0"),
            )
            .unwrap();
        let stale_token = stale.token();
        drop(stale);
        std::thread::sleep(ttl + Duration::from_millis(200));
        let fresh = take(&*second, "c", "w2", ttl);
        assert_eq!(first.fenced_commits().unwrap(), 0);

        let err = first
            .commit_page("c", run, stale_token, &page(vec![entry("m1", "a@x")], b"1"))
            .unwrap_err();
        assert!(
            matches!(&err, StateError::Fenced { connector, token } if connector == "c" && *token == stale_token),
            "{err}"
        );
        assert!(err.to_string().contains("lease"), "{err}");
        assert_eq!(second.fenced_commits().unwrap(), 1);
        // Nothing of the refused page was stored.
        assert!(!second.is_delivered("c", "m1", "a@x").unwrap());
        assert_eq!(second.checkpoint("c").unwrap(), Some(b"0".to_vec()));
        assert_eq!(second.last_run("c").unwrap().unwrap().counts, counts(2));
        assert_eq!(second.quarantine_count("c").unwrap(), 1);

        // The holder of the current token commits.
        second
            .commit_page(
                "c",
                run,
                fresh.token(),
                &page(vec![entry("m1", "a@x")], b"1"),
            )
            .unwrap();
        assert!(first.is_delivered("c", "m1", "a@x").unwrap());
        assert_eq!(first.fenced_commits().unwrap(), 1);
    }

    pub fn release_only_with_the_current_token(b: &dyn Backend) {
        let mut first = b.open();
        let second = b.open();
        let ttl = Duration::from_secs(30);
        let expiry = |db: &dyn StateStore| db.leases().unwrap()[0].expires_at_ms;
        let lock = take(&*first, "c", "w1", ttl);
        let token = lock.token();
        // The run ends: renewals stop, then the lease is released.
        drop(lock);
        first.release_lease("c", token + 1).unwrap();
        first.release_lease("other", token).unwrap();
        assert!(expiry(&*first) > first.clock_ms().unwrap(), "still held");
        first.release_lease("c", token).unwrap();
        assert_eq!(expiry(&*first), 0);
        let next = take(&*second, "c", "w2", ttl);
        assert!(next.token() > token);
        // The old token releases nothing any more.
        first.release_lease("c", token).unwrap();
        assert!(expiry(&*first) > first.clock_ms().unwrap());
        assert!(matches!(
            ask(&*first, "c", "w1", ttl),
            LockOutcome::Held { .. }
        ));
    }

    pub fn fingerprint_mismatch_is_refused_while_a_live_worker_runs_the_other_version(
        b: &dyn Backend,
    ) {
        let mut first = b.open();
        let second = b.open();
        let ttl = Duration::from_millis(800);
        let old = print("a", "p");
        let new = print("a", "p2");
        first.heartbeat(&worker("w1", "c", &old)).unwrap();
        let lock = match first.lock_runs("c", &request("w1", ttl, &old)).unwrap() {
            LockOutcome::Taken(lock) => lock,
            other => panic!("{other:?}"),
        };
        drop(lock);
        first
            .release_lease("c", first.leases().unwrap()[0].token)
            .unwrap();
        // The lease is free, but w1 is live and runs the other files.
        match second.lock_runs("c", &request("w2", ttl, &new)).unwrap() {
            LockOutcome::Mismatch { differs, worker } => {
                assert_eq!(differs, ["plugin"]);
                assert_eq!(worker, "w1");
            }
            other => panic!("{other:?}"),
        }
        // A worker with the same files is not refused.
        let same = match second.lock_runs("c", &request("w3", ttl, &old)).unwrap() {
            LockOutcome::Taken(lock) => lock,
            other => panic!("{other:?}"),
        };
        drop(same);
        first
            .release_lease("c", first.leases().unwrap()[0].token)
            .unwrap();
        // Once w1 stops, the new version may take over.
        first.forget_worker("w1").unwrap();
        assert!(matches!(
            second.lock_runs("c", &request("w2", ttl, &new)).unwrap(),
            LockOutcome::Taken(_)
        ));
    }

    pub fn heartbeats_list_workers_on_the_store_clock(b: &dyn Backend) {
        let mut db = b.open();
        assert!(db.workers().unwrap().is_empty());
        let before = db.clock_ms().unwrap();
        db.heartbeat(&worker("w2", "c", &print("a", "p"))).unwrap();
        db.heartbeat(&worker("w1", "d", &print("b", "q"))).unwrap();
        let workers = db.workers().unwrap();
        assert_eq!(
            workers.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
            ["w1", "w2"]
        );
        let w1 = &workers[0];
        assert_eq!(w1.host, "host-1");
        assert_eq!(
            (w1.pid, w1.version.as_str(), w1.started_at_ms),
            (4242, "1.2.3", 77)
        );
        assert_eq!(w1.connectors["d"], print("b", "q"));
        // The store sets the time, on its own clock.
        assert!(
            w1.heartbeat_at_ms >= before,
            "{} < {before}",
            w1.heartbeat_at_ms
        );
        assert!(w1.heartbeat_at_ms <= db.clock_ms().unwrap());

        std::thread::sleep(Duration::from_millis(20));
        db.heartbeat(&worker("w1", "e", &print("c", "r"))).unwrap();
        let w1_again = db.workers().unwrap().remove(0);
        assert!(w1_again.heartbeat_at_ms > w1.heartbeat_at_ms);
        assert_eq!(w1_again.connectors.keys().collect::<Vec<_>>(), ["e"]);

        db.forget_worker("w2").unwrap();
        db.forget_worker("never-seen").unwrap();
        assert_eq!(
            db.workers()
                .unwrap()
                .iter()
                .map(|w| w.id.as_str())
                .collect::<Vec<_>>(),
            ["w1"]
        );
    }

    pub fn racing_stores_one_lease_exactly_one_wins(b: &dyn Backend) {
        const RACERS: usize = 6;
        let stores: Vec<Box<dyn StateStore>> = (0..RACERS).map(|_| b.open()).collect();
        let start = Arc::new(Barrier::new(RACERS));
        let handles: Vec<_> = stores
            .into_iter()
            .enumerate()
            .map(|(i, store)| {
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    let outcome = ask(&*store, "c", &format!("w{i}"), Duration::from_secs(30));
                    // Hold a won lock until every racer has asked.
                    (matches!(outcome, LockOutcome::Taken(_)), outcome, store)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners = results.iter().filter(|(won, ..)| *won).count();
        assert_eq!(
            winners,
            1,
            "{:?}",
            results.iter().map(|r| &r.1).collect::<Vec<_>>()
        );
        for (won, outcome, _) in &results {
            if !won {
                assert!(matches!(outcome, LockOutcome::Held { .. }), "{outcome:?}");
            }
        }
    }

    pub fn mailbox_slots_are_shared_by_stores_over_one_database_and_expire_unless_renewed(
        b: &dyn Backend,
    ) {
        let (mut one, mut two) = (b.open(), b.open());
        let long = Duration::from_secs(60);
        let short = Duration::from_secs(1);
        let m = "graph:app:alice@x";
        assert_eq!(
            one.take_mailbox_slots(m, "w1", 3, 4, long).unwrap(),
            [0, 1, 2]
        );
        // The other worker gets what is left, never more than the limit.
        assert_eq!(two.take_mailbox_slots(m, "w2", 4, 4, short).unwrap(), [3]);
        assert!(
            one.take_mailbox_slots(m, "w1", 1, 4, long)
                .unwrap()
                .is_empty()
        );
        // Other mailboxes are counted apart.
        assert_eq!(
            two.take_mailbox_slots("graph:app:bob@x", "w2", 4, 4, long)
                .unwrap(),
            [0, 1, 2, 3]
        );
        // Released slots are free at once; only their holder releases them.
        two.release_mailbox_slots(m, "w2", &[0, 1]).unwrap();
        one.release_mailbox_slots(m, "w1", &[1]).unwrap();
        assert_eq!(two.take_mailbox_slots(m, "w2", 4, 4, short).unwrap(), [1]);
        // Renewed slots stay; the others expire and are taken.
        assert_eq!(
            two.renew_mailbox_slots(m, "w2", &[3], long).unwrap(),
            [3],
            "still held"
        );
        std::thread::sleep(short + Duration::from_millis(100));
        assert_eq!(one.take_mailbox_slots(m, "w1", 4, 4, long).unwrap(), [1]);
        assert!(
            two.renew_mailbox_slots(m, "w2", &[1], long)
                .unwrap()
                .is_empty(),
            "an expired slot another worker took is lost"
        );
    }

    pub fn a_mailbox_rate_window_refuses_beyond_its_count_and_refills_when_it_ends(
        b: &dyn Backend,
    ) {
        let (mut one, mut two) = (b.open(), b.open());
        let window = Duration::from_millis(800);
        let m = "graph:app:alice@x";
        let first = one.reserve_mailbox_requests(m, 6, 10, window).unwrap();
        assert_eq!(first.granted, 6);
        assert!(first.window_left <= window && first.window_left > Duration::ZERO);
        // Two workers share the window: the second gets what is left.
        assert_eq!(
            two.reserve_mailbox_requests(m, 6, 10, window)
                .unwrap()
                .granted,
            4
        );
        let spent = one.reserve_mailbox_requests(m, 1, 10, window).unwrap();
        assert_eq!(spent.granted, 0, "the window is used up");
        assert_eq!(
            one.reserve_mailbox_requests("graph:app:bob@x", 10, 10, window)
                .unwrap()
                .granted,
            10,
            "windows are per mailbox"
        );
        std::thread::sleep(spent.window_left + Duration::from_millis(50));
        let refilled = two.reserve_mailbox_requests(m, 20, 10, window).unwrap();
        assert_eq!(refilled.granted, 10, "a new window, never over its count");
    }

    pub fn a_throttled_mailbox_grants_no_worker_anything_until_its_pause_ends(b: &dyn Backend) {
        let (mut one, mut two) = (b.open(), b.open());
        let window = Duration::from_secs(600);
        let m = "graph:app:alice@x";
        one.throttle_mailbox(m, Duration::from_millis(700)).unwrap();
        // A shorter pause asked later does not cut the first one short.
        two.throttle_mailbox(m, Duration::from_millis(100)).unwrap();
        let paused = two.reserve_mailbox_requests(m, 5, 10, window).unwrap();
        assert_eq!(paused.granted, 0);
        assert!(
            paused.window_left > Duration::from_millis(300)
                && paused.window_left <= Duration::from_millis(700),
            "{:?}",
            paused.window_left
        );
        assert_eq!(
            two.reserve_mailbox_requests("graph:app:bob@x", 5, 10, window)
                .unwrap()
                .granted,
            5,
            "pauses are per mailbox"
        );
        std::thread::sleep(paused.window_left + Duration::from_millis(50));
        assert_eq!(
            one.reserve_mailbox_requests(m, 5, 10, window)
                .unwrap()
                .granted,
            5
        );
    }

    fn audit_entry(n: usize, action: AuditAction, target: &str) -> AuditEntry {
        AuditEntry {
            at_ms: 1_000 + n as i64,
            actor: format!("admin-{}@example.com", n % 3),
            source: "192.0.2.7".to_string(),
            action,
            target: target.to_string(),
            detail: format!("{{\"n\":{n},\"note\":\"é \\u0000 ,\\\"\"}}"),
        }
    }

    /// Appends `n` records about `chat` and `other` in turn.
    fn appended(db: &mut dyn StateStore, n: usize) -> Vec<AuditRecord> {
        (0..n)
            .map(|i| {
                let target = if i % 2 == 0 { "chat" } else { "other" };
                db.append_audit(&audit_entry(i, AuditAction::ALL[i % 13], target))
                    .unwrap()
            })
            .collect()
    }

    fn all_records(db: &dyn StateStore) -> Vec<AuditRecord> {
        db.audit_records(0, 10_000).unwrap()
    }

    pub fn audit_records_chain_from_zeros_and_are_listed_by_number_and_by_filter(b: &dyn Backend) {
        let mut db = b.open();
        assert_eq!(db.audit_head().unwrap(), None);
        assert!(all_records(&*db).is_empty());
        let records = appended(&mut *db, 5);
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(records[0].prev_sha256, GENESIS_SHA256);
        for pair in records.windows(2) {
            assert_eq!(pair[1].prev_sha256, pair[0].sha256);
        }
        assert_eq!(
            records[2].sha256,
            record_sha256(&records[2].prev_sha256, 3, &records[2].entry)
        );
        assert_eq!(verify_chain(&records), Ok(()));

        // Read back, by another store, exactly as appended.
        let other = b.open();
        assert_eq!(all_records(&*other), records);
        assert_eq!(other.audit_records(2, 2).unwrap(), records[2..4].to_vec());
        assert_eq!(
            other.audit_head().unwrap(),
            Some(AuditHead {
                seq: 5,
                sha256: records[4].sha256.clone()
            })
        );

        // Newest first, filtered, paged by number.
        let seqs = |q: AuditQuery| -> Vec<u64> {
            other
                .search_audit(&q)
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect()
        };
        let all = AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        };
        assert_eq!(seqs(all.clone()), [5, 4, 3, 2, 1]);
        let chat = AuditQuery {
            target: Some("chat".into()),
            ..all.clone()
        };
        assert_eq!(seqs(chat.clone()), [5, 3, 1]);
        assert_eq!(
            seqs(AuditQuery {
                before_seq: Some(5),
                limit: 1,
                ..chat
            }),
            [3]
        );
        assert_eq!(
            seqs(AuditQuery {
                actor: Some("admin-1@example.com".into()),
                ..all.clone()
            }),
            [5, 2]
        );
        assert_eq!(
            seqs(AuditQuery {
                action: Some(AuditAction::SignOut),
                ..all
            }),
            [3]
        );
    }

    pub fn the_audit_trail_refuses_changes_and_removals(b: &dyn Backend) {
        let mut db = b.open();
        let records = appended(&mut *db, 2);
        for sql in [
            "UPDATE audit_trail SET actor = 'nobody' WHERE seq = 1",
            "DELETE FROM audit_trail WHERE seq = 2",
        ] {
            let err = b.execute_raw(sql).unwrap_err();
            assert!(err.contains("append-only"), "{sql}: {err}");
        }
        assert_eq!(all_records(&*db), records);
    }

    pub fn a_changed_audit_record_is_named_by_verify_chain_and_by_the_audit_verify_command(
        b: &dyn Backend,
    ) {
        let mut db = b.open();
        appended(&mut *db, 4);
        let out = b.cli(&["audit", "verify"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(stdout.contains("OK: 4 record(s)"), "{stdout}");

        b.drop_audit_guards();
        b.execute_raw("UPDATE audit_trail SET detail = 'nothing to see' WHERE seq = 2")
            .unwrap();
        let err = verify_chain(&all_records(&*db)).unwrap_err();
        assert!(
            matches!(err, ChainBreak::ContentChanged { seq: 2, .. }),
            "{err}"
        );

        let out = b.cli(&["audit", "verify"]);
        assert!(!out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("broken at record 2"), "{stderr}");
        assert!(stderr.contains("changed after it was written"), "{stderr}");
        assert!(stderr.contains("keep this state as evidence"), "{stderr}");

        // New records chain on; the break stays visible.
        db.append_audit(&audit_entry(9, AuditAction::SignIn, ""))
            .unwrap();
        assert_eq!(
            verify_chain(&all_records(&*db)).map_err(|e| e.seq()),
            Err(2)
        );
    }

    pub fn a_removed_audit_record_is_found_in_the_middle_and_at_the_end(b: &dyn Backend) {
        let mut db = b.open();
        appended(&mut *db, 4);
        b.drop_audit_guards();
        b.execute_raw("DELETE FROM audit_trail WHERE seq = 4")
            .unwrap();
        // The chain that is left is whole; the head says one is missing.
        let left = all_records(&*db);
        assert_eq!(verify_chain(&left), Ok(()));
        let mut verifier = ChainVerifier::default();
        left.iter().for_each(|r| verifier.check(r).unwrap());
        let err = verifier
            .finish(db.audit_head().unwrap().as_ref())
            .unwrap_err();
        assert!(matches!(err, ChainBreak::Missing { seq: 4, .. }), "{err}");
        let out = b.cli(&["audit", "verify"]);
        assert!(!out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("record 4 is missing"), "{stderr}");

        b.execute_raw("DELETE FROM audit_trail WHERE seq = 2")
            .unwrap();
        let err = verify_chain(&all_records(&*db)).unwrap_err();
        assert!(matches!(err, ChainBreak::Missing { seq: 2, .. }), "{err}");
        let stderr = String::from_utf8_lossy(&b.cli(&["audit", "verify"]).stderr).into_owned();
        assert!(stderr.contains("record 2 is missing"), "{stderr}");
    }

    pub fn appends_from_several_stores_at_once_form_one_unbroken_chain(b: &dyn Backend) {
        const STORES: usize = 4;
        const EACH: usize = 25;
        let start = Arc::new(Barrier::new(STORES));
        let handles: Vec<_> = (0..STORES)
            .map(|s| {
                let mut store = b.open();
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    for i in 0..EACH {
                        let mut entry = audit_entry(i, AuditAction::ConnectorChanged, "chat");
                        entry.actor = format!("store-{s}");
                        store.append_audit(&entry).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let records = all_records(&*b.open());
        assert_eq!(records.len(), STORES * EACH);
        assert_eq!(verify_chain(&records), Ok(()));
        for s in 0..STORES {
            let mine = records
                .iter()
                .filter(|r| r.entry.actor == format!("store-{s}"))
                .count();
            assert_eq!(mine, EACH, "store-{s}");
        }
        assert_eq!(
            b.open().audit_head().unwrap().map(|h| h.seq),
            Some((STORES * EACH) as u64)
        );
    }

    pub fn a_pause_is_seen_by_every_store_keeps_its_first_author_and_is_lifted_by_resume(
        b: &dyn Backend,
    ) {
        let (mut one, mut two) = (b.open(), b.open());
        assert_eq!(one.paused("chat").unwrap(), None);
        let now = one.clock_ms().unwrap();
        let first = one.pause("chat", "alice@example.com").unwrap();
        assert_eq!(first.by, "alice@example.com");
        assert!((first.at_ms - now).abs() < 60_000, "{first:?} at {now}");
        assert_eq!(two.paused("chat").unwrap(), Some(first.clone()));
        assert_eq!(two.paused("other").unwrap(), None);
        assert_eq!(two.pause("chat", "cli:bob").unwrap(), first, "kept");
        two.pause("other", "cli:bob").unwrap();
        assert_eq!(
            one.paused_connectors()
                .unwrap()
                .into_iter()
                .map(|(c, p)| (c, p.by))
                .collect::<Vec<_>>(),
            [
                ("chat".to_string(), "alice@example.com".to_string()),
                ("other".to_string(), "cli:bob".to_string())
            ]
        );
        assert_eq!(two.resume("chat").unwrap(), Some(first));
        assert_eq!(one.paused("chat").unwrap(), None);
        assert_eq!(one.resume("chat").unwrap(), None);
        assert!(one.paused("other").unwrap().is_some());
    }

    pub fn a_run_request_is_taken_by_exactly_one_of_racing_stores(b: &dyn Backend) {
        const RACERS: usize = 6;
        let mut db = b.open();
        assert_eq!(db.take_run_request("chat").unwrap(), None);
        let request = db.request_run("chat", "alice@example.com").unwrap();
        assert_eq!(request.by, "alice@example.com");
        assert_eq!(db.request_run("chat", "cli:bob").unwrap(), request, "kept");
        assert_eq!(
            db.run_requests().unwrap(),
            [("chat".to_string(), request.clone())]
        );
        let start = Arc::new(Barrier::new(RACERS));
        let handles: Vec<_> = (0..RACERS)
            .map(|_| {
                let mut store = b.open();
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    store.take_run_request("chat").unwrap()
                })
            })
            .collect();
        let taken: Vec<RunRequest> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(taken, [request]);
        assert!(db.run_requests().unwrap().is_empty());
        assert_eq!(db.take_run_request("chat").unwrap(), None);
    }
}
