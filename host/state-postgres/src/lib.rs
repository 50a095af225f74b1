//! The PostgreSQL state store, shared by a fleet of connector workers: the
//! same tables as the SQLite store behind the same traits, plus leases with
//! fencing tokens ([`Fleet`](connector_state::Fleet)) so that one worker at
//! a time runs a connector, and a ledger split into per-item and
//! per-delivery rows, both partitioned by month.
//!
//! One module per table; [`StateStore::commit_page`] writes a page across
//! them in one transaction, after locking the connector's lease row and
//! checking the page's fencing token. Every time the fleet compares
//! (lease expiry, heartbeats) is the server's clock, never a worker's.
//!
//! The connection is TLS (rustls, certificates always verified) unless the
//! URL says `sslmode=disable`; the password comes from a secret (see
//! [`PostgresConfig`]). A call that finds the connection lost fails with
//! [`StateError::Unavailable`], having stored nothing; the next call
//! connects again.

mod audit;
mod checkpoints;
mod config;
mod controls;
mod conversations;
mod fleet;
mod kv;
mod ledger;
mod mailbox;
mod quarantine;
mod runs;
mod schema;
mod transcripts;
mod transfer;

use std::cell::RefCell;
use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, GenericClient, Row, Statement, Transaction};
use tokio_postgres_rustls::MakeRustlsConnect;

pub use config::{PostgresConfig, PostgresConfigError};
pub use schema::SCHEMA_VERSION;

use connector_state::{LeaseRequest, LockOutcome, PageCommit, RunId, StateError, StateStore};
use connector_state::{encoding, faults};

/// Namespace of this store's advisory locks (the two-key form): "conn".
const LOCK_CLASS: i32 = 0x636f_6e6e;
/// Advisory lock key of schema migrations.
const LOCK_MIGRATIONS: i32 = 1;
/// Advisory lock key of ledger partition creation.
const LOCK_PARTITIONS: i32 = 2;
/// Advisory lock key of refreshing the ledger partitions' statistics.
const LOCK_STATISTICS: i32 = 3;
/// Advisory lock key of appending to the audit trail.
const LOCK_AUDIT: i32 = 4;

/// What to check when the database cannot be opened.
const OPEN_HINT: &str = "check the URL, that the server is up and reachable, the user's password (the secret) and rights on the database, and the CA certificate (sslrootcert) when the server uses TLS";

/// The state in a PostgreSQL database.
pub struct PostgresStore {
    config: PostgresConfig,
    tls: MakeRustlsConnect,
    /// The connection, `None` after it was found lost (the next call
    /// connects again).
    conn: RefCell<Option<Conn>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.config.redacted())
            .finish()
    }
}

/// A connection and the statements prepared on it.
pub(crate) struct Conn {
    client: Client,
    statements: Statements,
}

/// Statements prepared on one connection, by their SQL.
#[derive(Default)]
pub(crate) struct Statements(HashMap<&'static str, Statement>);

impl Statements {
    fn get(
        &mut self,
        client: &mut impl GenericClient,
        sql: &'static str,
    ) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.0.get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql)?;
        self.0.insert(sql, statement.clone());
        Ok(statement)
    }
}

/// Parameters of a statement.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A client (the connection, or a transaction on it) with the
/// connection's prepared statements: every query is prepared once per
/// connection.
pub(crate) struct Session<'a, C: GenericClient> {
    pub(crate) client: &'a mut C,
    statements: &'a mut Statements,
}

impl<C: GenericClient> Session<'_, C> {
    pub(crate) fn execute(&mut self, sql: &'static str, params: Params<'_>) -> Result<u64, Fail> {
        let statement = self.statements.get(self.client, sql)?;
        Ok(self.client.execute(&statement, params)?)
    }

    pub(crate) fn query(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, Fail> {
        let statement = self.statements.get(self.client, sql)?;
        Ok(self.client.query(&statement, params)?)
    }

    pub(crate) fn query_one(&mut self, sql: &'static str, params: Params<'_>) -> Result<Row, Fail> {
        let statement = self.statements.get(self.client, sql)?;
        Ok(self.client.query_one(&statement, params)?)
    }

    pub(crate) fn query_opt(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Option<Row>, Fail> {
        let statement = self.statements.get(self.client, sql)?;
        Ok(self.client.query_opt(&statement, params)?)
    }
}

impl Conn {
    fn open(config: &PostgresConfig, tls: &MakeRustlsConnect) -> Result<Conn, postgres::Error> {
        let mut client = config.client_config().connect(tls.clone())?;
        // '0' is no limit: the server, database and role set none.
        client.execute(
            "SELECT set_config('idle_in_transaction_session_timeout', $1, false)
             WHERE current_setting('idle_in_transaction_session_timeout') = '0'",
            &[&config.idle_transaction_setting()],
        )?;
        Ok(Conn {
            client,
            statements: Statements::default(),
        })
    }

    /// Queries outside a transaction.
    pub(crate) fn session(&mut self) -> Session<'_, Client> {
        Session {
            client: &mut self.client,
            statements: &mut self.statements,
        }
    }

    /// Runs `f` in a transaction, committed when it returns `Ok` and
    /// rolled back otherwise.
    pub(crate) fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Session<'_, Transaction<'_>>) -> Result<T, Fail>,
    ) -> Result<T, Fail> {
        let mut tx = self.client.transaction()?;
        let value = f(&mut Session {
            client: &mut tx,
            statements: &mut self.statements,
        })?;
        tx.commit()?;
        Ok(value)
    }
}

/// Why a call failed: the database's error (a lost connection among them)
/// or one of the store's own.
#[derive(Debug)]
pub(crate) enum Fail {
    Pg(postgres::Error),
    State(StateError),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Fail {
        Fail::Pg(e)
    }
}

impl From<StateError> for Fail {
    fn from(e: StateError) -> Fail {
        Fail::State(e)
    }
}

/// A stored value that cannot be read back.
pub(crate) fn corrupt(what: &'static str, e: impl std::fmt::Display) -> Fail {
    Fail::State(StateError::Corrupt {
        what,
        message: e.to_string(),
    })
}

/// Whether `e` means the connection is gone (the server restarted or is
/// unreachable), rather than a query failing on a working connection.
fn connection_lost(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(state) = e.code() {
        let code = state.code();
        // Class 08: connection exception; 57P01-57P03: the server is
        // shutting down, crashed or not yet accepting connections.
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The client's error worded with what the server said: the client's own
/// message is only "db error" for everything the server refuses.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PostgresError {
    message: String,
    #[source]
    source: postgres::Error,
}

impl PostgresError {
    /// What went wrong, as the client and the server say.
    pub(crate) fn new(source: postgres::Error) -> PostgresError {
        let message = match source.as_db_error() {
            Some(db) => {
                let mut message = format!("{} (SQLSTATE {})", db.message(), db.code().code());
                if let Some(detail) = db.detail() {
                    message.push_str(&format!("; {detail}"));
                }
                if let Some(hint) = db.hint() {
                    message.push_str(&format!("; {hint}"));
                }
                message
            }
            None => match std::error::Error::source(&source) {
                Some(cause) => format!("{source}: {cause}"),
                None => source.to_string(),
            },
        };
        PostgresError { message, source }
    }

    /// The server's SQLSTATE, when the server refused something.
    pub fn code(&self) -> Option<&str> {
        self.source.code().map(|c| c.code())
    }
}

/// A query's failure on a working connection.
pub(crate) fn query_error(e: postgres::Error) -> StateError {
    StateError::Query {
        source: Box::new(PostgresError::new(e)),
        hint: connector_state::POSTGRES_HINT,
    }
}

pub(crate) use connector_state::encoding::{to_i64, to_u64};

impl PostgresStore {
    /// Connects to the database of `config` and brings its schema up to
    /// date: the migrations it lacks are applied in one transaction, under
    /// an advisory lock (so that workers starting together apply them
    /// once). A database written by a newer release is refused with
    /// [`StateError::NewerSchema`].
    pub fn connect(config: &PostgresConfig) -> Result<PostgresStore, StateError> {
        let tls = config.tls()?;
        let location = config.redacted();
        let open_error = |e: postgres::Error| StateError::Open {
            location: location.clone(),
            source: Box::new(PostgresError::new(e)),
            hint: OPEN_HINT,
        };
        let mut conn = Conn::open(config, &tls).map_err(open_error)?;
        migrate(&mut conn, &location).map_err(|e| match e {
            Fail::Pg(e) => open_error(e),
            Fail::State(e) => e,
        })?;
        Ok(PostgresStore {
            config: config.clone(),
            tls,
            conn: RefCell::new(Some(conn)),
        })
    }

    /// Where the database is, without any secret.
    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StateError> {
        self.with(|c| {
            Ok(c.session()
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                    &[],
                )?
                .get(0))
        })
    }

    /// Runs `f` on the connection, connecting first when the last call
    /// found it lost. When `f` fails because the connection is gone, the
    /// call fails with [`StateError::Unavailable`] and the connection is
    /// dropped, for the next call to open a new one.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, Fail>,
    ) -> Result<T, StateError> {
        let mut slot = self.conn.borrow_mut();
        if slot.is_none() {
            let conn = Conn::open(&self.config, &self.tls).map_err(|e| self.unavailable(e))?;
            *slot = Some(conn);
        }
        let Some(conn) = slot.as_mut() else {
            unreachable!("connected above");
        };
        let result = f(conn);
        let closed = conn.client.is_closed();
        match result {
            Ok(value) => Ok(value),
            Err(Fail::Pg(e)) if closed || connection_lost(&e) => {
                *slot = None;
                Err(self.unavailable(e))
            }
            Err(fail) => {
                if closed {
                    *slot = None;
                }
                Err(match fail {
                    Fail::Pg(e) => query_error(e),
                    Fail::State(e) => e,
                })
            }
        }
    }

    fn unavailable(&self, e: postgres::Error) -> StateError {
        StateError::Unavailable {
            location: self.config.redacted(),
            source: Box::new(PostgresError::new(e)),
        }
    }
}

/// Applies the migrations the database lacks, in one transaction.
fn migrate(conn: &mut Conn, location: &str) -> Result<(), Fail> {
    let mut tx = conn.client.transaction()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_CLASS, &LOCK_MIGRATIONS],
    )?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version bigint PRIMARY KEY,
            description text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(Fail::State(StateError::NewerSchema {
            location: location.to_string(),
            found: current,
            supported: SCHEMA_VERSION,
        }));
    }
    for (version, description, sql) in schema::MIGRATIONS {
        if *version <= current {
            continue;
        }
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
            &[version, description],
        )?;
    }
    tx.commit()?;
    Ok(())
}

impl StateStore for PostgresStore {
    fn commit_page(
        &mut self,
        connector: &str,
        run: RunId,
        fence: u64,
        page: &PageCommit,
    ) -> Result<(), StateError> {
        let unmapped = encoding::unmapped_lists(&page.quarantine)?;
        let lease = page.lease.as_deref().unwrap_or(connector);
        self.with(|conn| {
            let result = conn.transaction(|tx| {
                if !fleet::hold_for_commit(tx, lease, fence)? {
                    return Err(Fail::State(encoding::fenced(lease, fence)));
                }
                ledger::insert(tx, connector, run, &page.ledger)?;
                faults::reached(faults::Point::InCommit);
                quarantine::insert(tx, connector, run, &page.quarantine, &unmapped)?;
                quarantine::release(tx, connector, &page.released)?;
                runs::add_page(tx, connector, run, page)?;
                checkpoints::store(tx, connector, run, &page.checkpoint_slot, &page.checkpoint)?;
                conversations::store(tx, connector, &page.conversations)?;
                transcripts::store(
                    tx,
                    connector,
                    &page.transcript_lines,
                    &page.transcripts_delivered,
                )?;
                Ok(())
            });
            if let Err(Fail::State(StateError::Fenced { .. })) = &result {
                // Rolled back; the refusal is counted on its own.
                fleet::count_fenced(&mut conn.session())?;
            }
            result
        })
    }

    fn lock_runs(
        &self,
        connector: &str,
        request: &LeaseRequest,
    ) -> Result<LockOutcome, StateError> {
        fleet::lock_runs(self, connector, request)
    }
}
