//! The global flags that say where the state is and how this worker takes
//! part in a fleet.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::pipeline::{Host, HostSettings, StateLocation, create_state_dir};
use connector_secrets::read_secret_file;
use connector_state::StateStore;
use connector_state_postgres::PostgresConfig;

/// The environment variable that may hold the PostgreSQL password (a
/// file, `--state-password-file`, is preferred).
const PASSWORD_VARIABLE: &str = "CONNECTOR_STATE_PASSWORD";

/// Where the state is.
#[derive(Args)]
pub struct StateArgs {
    /// Folder for the state database (SQLite, the default), the
    /// compiled-plugin cache and the spool.
    #[arg(
        long = "state-dir",
        global = true,
        env = "CONNECTOR_STATE_DIR",
        default_value = "state"
    )]
    pub dir: PathBuf,
    /// Keep the state in this PostgreSQL database instead, shared by every
    /// worker given the same URL: `postgres://USER@HOST:PORT/DB` with
    /// `?sslmode=require` (and `&sslrootcert=CA.pem`) for TLS. Never with
    /// the password: that comes from `--state-password-file` or
    /// CONNECTOR_STATE_PASSWORD.
    #[arg(long = "state-url", global = true, env = "CONNECTOR_STATE_URL")]
    pub url: Option<String>,
    /// A file (mode 0600) holding the PostgreSQL password alone (of
    /// `--state-url`, or of `state migrate --to`).
    #[arg(
        long = "state-password-file",
        global = true,
        env = "CONNECTOR_STATE_PASSWORD_FILE"
    )]
    pub password_file: Option<PathBuf>,
    /// How long a run's lease lasts, in seconds, without renewal (it is
    /// renewed every third of it): a worker that dies or hangs loses its
    /// connectors to another worker after this long. Every worker of a
    /// fleet should use the same value.
    #[arg(
        long = "lease-secs",
        global = true,
        env = "CONNECTOR_LEASE_SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(3..=3600)
    )]
    pub lease_secs: u64,
}

impl StateArgs {
    /// The lease time.
    pub fn lease_time(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    fn location(&self) -> Result<StateLocation> {
        let Some(url) = &self.url else {
            if self.password_file.is_some() {
                bail!(
                    "--state-password-file (CONNECTOR_STATE_PASSWORD_FILE) is the password of a PostgreSQL state: pass its `--state-url` too, or leave the password file out for the SQLite state in --state-dir"
                );
            }
            return Ok(StateLocation::Sqlite(self.sqlite_path()));
        };
        Ok(StateLocation::Postgres(Box::new(self.postgres(url)?)))
    }

    /// The SQLite database in the state folder.
    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.join("state.db")
    }

    /// The PostgreSQL database at `url`, with the password from
    /// `--state-password-file` or CONNECTOR_STATE_PASSWORD when given; a
    /// transaction frozen mid-way is ended after a lease time.
    pub fn postgres(&self, url: &str) -> Result<PostgresConfig> {
        let mut config = PostgresConfig::parse(url)?.with_idle_transaction_limit(self.lease_time());
        let password = match (&self.password_file, std::env::var(PASSWORD_VARIABLE)) {
            (Some(file), _) => Some(read_secret_file(file)?.expose().to_string()),
            (None, Ok(value)) => Some(value),
            (None, Err(_)) => None,
        };
        if let Some(password) = password {
            config = config.with_password(password);
        }
        Ok(config)
    }

    /// The host over this state, creating the state folder when absent.
    pub fn open_host(&self) -> Result<Host> {
        let settings = HostSettings {
            state: Some(self.location()?),
            lease_time: self.lease_time(),
        };
        Host::open_with(&self.dir, &settings).context("opening the state")
    }

    /// The state, which must exist (commands that only read it).
    pub fn open_db(&self) -> Result<Box<dyn StateStore>> {
        let location = self.location()?;
        if let StateLocation::Sqlite(path) = &location
            && !path.is_file()
        {
            bail!(
                "there is no state database at {}; pass the daemon's `--state-dir` (or set CONNECTOR_STATE_DIR)",
                path.display()
            );
        }
        Ok(location.open()?)
    }

    /// The state, created empty when absent (`status` before any run).
    pub fn open_db_creating(&self) -> Result<Box<dyn StateStore>> {
        create_state_dir(&self.dir)
            .with_context(|| format!("creating the state folder {}", self.dir.display()))?;
        Ok(self.location()?.open()?)
    }
}
