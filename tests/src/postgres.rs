//! A real, throw-away PostgreSQL server for the tests: Debian's newest
//! `/usr/lib/postgresql/*/bin`, `initdb` into a new temporary folder with a
//! random superuser password, the `postgres` binary run as a child process
//! on a free port of 127.0.0.1, stopped and its folder removed on drop.
//!
//! Every connection needs the password (`scram-sha-256`, over TCP and over
//! the Unix socket in the folder, which the harness itself uses for
//! [`Postgres::create_database`]). With [`PostgresOptions::tls`] the server
//! has a certificate for `localhost` and 127.0.0.1 signed by its own CA
//! ([`Postgres::ca_cert_pem`]) and refuses TCP connections without TLS.
//!
//! Gotchas handled here:
//! - PostgreSQL refuses to run as root: as root, `initdb` and the server run
//!   as Debian's unprivileged `postgres` user, which owns the folder.
//! - The server never outlives the test process. It is started directly
//!   rather than through `pg_ctl start`, which would detach it, by one
//!   long-lived thread with `PR_SET_PDEATHSIG` (the kernel signals a child
//!   when the *thread* that started it ends, and test threads end early), so
//!   a test process killed outright takes its servers with it (`SIGQUIT`:
//!   PostgreSQL's immediate shutdown). A process that exits normally stops
//!   the servers still running (the [`Postgres::shared`] one, never dropped)
//!   and removes their folders at exit; folders left by killed processes are
//!   removed by the next [`Postgres::start`].
//! - `fsync = off` and `full_page_writes = off` only matter when the machine
//!   crashes: a committed transaction is still written to the OS before the
//!   commit returns, so it survives [`Postgres::kill`].
//! - After a `SIGKILL` the backends notice their postmaster's death and exit
//!   by themselves; a new server cannot start until they have, so
//!   [`Postgres::kill`] waits for them.
//! - Dynamic shared memory lives in files in the data folder, not in
//!   `/dev/shm`, so a killed server leaves nothing behind outside its
//!   folder.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};

use crate::ops::process_alive;
use std::time::{Duration, Instant};

/// Where Debian's `postgresql-NN` packages install each version, in
/// `NN/bin`.
pub const POSTGRESQL_LIB: &str = "/usr/lib/postgresql";

/// The superuser `initdb` creates; every test connects as this user.
pub const SUPERUSER: &str = "postgres";

/// The unprivileged account the server runs as when the tests run as root.
pub const SERVER_ACCOUNT: &str = "postgres";

const FOLDER_PREFIX: &str = "connector-postgres-";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// What a test server offers.
#[derive(Debug, Clone, Default)]
pub struct PostgresOptions {
    /// Serves TLS only (`ssl = on`, `hostssl` lines and no plain `host`
    /// line in `pg_hba.conf`), with a certificate for `localhost` and
    /// 127.0.0.1 signed by a CA made for this server
    /// ([`Postgres::ca_cert_pem`]).
    pub tls: bool,
}

/// Why a test server could not be started, stopped or used.
#[derive(thiserror::Error)]
pub enum PostgresError {
    /// No `initdb` under [`POSTGRESQL_LIB`]`/*/bin`.
    #[error(
        "PostgreSQL not found: no {POSTGRESQL_LIB}/*/bin/initdb; these tests need a real \
         PostgreSQL server; install it with `apt-get install postgresql` (scripts/setup does this)"
    )]
    NotInstalled,
    /// Running as root without the [`SERVER_ACCOUNT`] user to run as.
    #[error(
        "running as root, and PostgreSQL refuses to run as root, but there is no \
         `{SERVER_ACCOUNT}` user to run it as; Debian's `postgresql` package creates it: \
         `apt-get install postgresql` (scripts/setup does this)"
    )]
    NoServerAccount,
    /// A file, folder or process operation failed.
    #[error("{doing}: {cause}")]
    Io {
        /// What the harness was doing.
        doing: String,
        /// The operating system's answer.
        cause: io::Error,
    },
    /// `initdb` or the server failed, or did not start or stop in time.
    #[error("{what}\n--- {log_name} ---\n{log}")]
    Server {
        /// What went wrong.
        what: String,
        /// Which log follows.
        log_name: &'static str,
        /// The end of that log.
        log: String,
    },
    /// The CA or server certificate could not be made.
    #[error("making the TLS certificates: {0}")]
    Certificate(rcgen::Error),
    /// A statement the harness ran as the superuser failed.
    #[error("{doing}: {cause}")]
    Sql {
        /// What the harness was doing.
        doing: String,
        /// The client's or server's answer.
        cause: postgres::Error,
    },
    /// A database name other than `[a-z0-9_]+`.
    #[error("database name {0:?} is not [a-z0-9_]+")]
    InvalidDatabaseName(String),
}

/// The message, so that `.unwrap()` and `.expect()` print it readably.
impl fmt::Debug for PostgresError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn io_error(doing: impl Into<String>) -> impl FnOnce(io::Error) -> PostgresError {
    let doing = doing.into();
    move |cause| PostgresError::Io { doing, cause }
}

/// A PostgreSQL server of this test process, with its data in a temporary
/// folder. Dropping it stops the server and removes the folder.
pub struct Postgres {
    folder: tempfile::TempDir,
    bin: PathBuf,
    account: Option<Account>,
    port: u16,
    password: String,
    ca_cert_pem: Option<String>,
    postmaster: Option<Child>,
    registration: u64,
}

/// The user and group the server runs as when the tests run as root.
#[derive(Debug, Clone, Copy)]
struct Account {
    uid: libc::uid_t,
    gid: libc::gid_t,
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Postgres")
            .field("folder", &self.folder.path())
            .field("port", &self.port)
            .field("tls", &self.ca_cert_pem.is_some())
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// Creates a database cluster in a new temporary folder and starts a
    /// server for it on a free port of 127.0.0.1, returning once it accepts
    /// connections. Fails, saying what to install, when PostgreSQL is
    /// missing.
    pub fn start(options: PostgresOptions) -> Result<Postgres, PostgresError> {
        let bin = newest_bin()?;
        let account = if euid() == 0 {
            Some(server_account()?)
        } else {
            None
        };
        remove_abandoned_folders();
        let folder = tempfile::Builder::new()
            .prefix(FOLDER_PREFIX)
            .tempdir()
            .map_err(io_error("creating a folder for PostgreSQL"))?;
        let dir = folder.path().to_path_buf();
        std::fs::write(dir.join("owner"), std::process::id().to_string())
            .map_err(io_error("writing the owner file"))?;
        let mut postgres = Postgres {
            folder,
            bin,
            account,
            port: 0,
            password: random_hex(16)?,
            ca_cert_pem: None,
            postmaster: None,
            registration: register(dir.clone()),
        };
        std::fs::create_dir(postgres.socket_dir())
            .map_err(io_error("creating the socket folder"))?;
        postgres.give_to_account(&dir)?;
        postgres.give_to_account(&postgres.socket_dir())?;
        postgres.initdb()?;
        postgres.configure(&options)?;
        // A port found free can be taken before the server binds it: try
        // a few.
        let mut attempts = 0;
        loop {
            attempts += 1;
            postgres.port = free_port()?;
            match postgres.start_again() {
                Err(PostgresError::Server { log, .. })
                    if attempts < 5 && log.contains("could not bind") =>
                {
                    continue;
                }
                result => break result.map(|()| postgres),
            }
        }
    }

    /// The server of this test process that tests share: plain TCP, started
    /// on first use, never stopped before the process exits. Give each test
    /// its own database with [`fresh_database`]. Panics when the server
    /// cannot start.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(|| {
            Postgres::start(PostgresOptions::default())
                .unwrap_or_else(|e| panic!("starting the shared PostgreSQL server: {e}"))
        })
    }

    /// Same as the free function [`fresh_database`].
    pub fn fresh_database() -> String {
        fresh_database()
    }

    /// The TCP port on 127.0.0.1, kept across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's name ([`SUPERUSER`]).
    pub fn user(&self) -> &str {
        SUPERUSER
    }

    /// The superuser's password, random for each server.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`, without the password (give
    /// it separately), with `?sslmode=require` when the server is TLS-only.
    pub fn url(&self, db: &str) -> String {
        self.url_for(SUPERUSER, db)
    }

    /// [`Postgres::url`] with the password in it:
    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/DB`.
    pub fn url_with_password(&self, db: &str) -> String {
        self.url_for(&format!("{SUPERUSER}:{}", self.password), db)
    }

    fn url_for(&self, userinfo: &str, db: &str) -> String {
        const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'_')
            .remove(b'-')
            .remove(b'.');
        let db = percent_encoding::utf8_percent_encode(db, PATH_SEGMENT);
        let query = if self.ca_cert_pem.is_some() {
            "?sslmode=require"
        } else {
            ""
        };
        format!("postgres://{userinfo}@127.0.0.1:{}/{db}{query}", self.port)
    }

    /// The PEM certificate of the CA that signed the server's certificate:
    /// what a TLS client must trust. `None` without TLS.
    pub fn ca_cert_pem(&self) -> Option<&str> {
        self.ca_cert_pem.as_deref()
    }

    /// Creates an empty database owned by the superuser. `name` must be
    /// `[a-z0-9_]+`. Runs on a thread of its own (the synchronous client
    /// blocks), so async tests may call it too.
    pub fn create_database(&self, name: &str) -> Result<(), PostgresError> {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(PostgresError::InvalidDatabaseName(name.to_string()));
        }
        let sql = format!("CREATE DATABASE \"{name}\"");
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let doing = || format!("creating database {name} on port {}", self.port);
                    let mut client = postgres::Config::new()
                        .host_path(self.socket_dir())
                        .port(self.port)
                        .user(SUPERUSER)
                        .password(&self.password)
                        .dbname("postgres")
                        .connect_timeout(Duration::from_secs(10))
                        .connect(postgres::NoTls)
                        .map_err(|cause| PostgresError::Sql {
                            doing: doing(),
                            cause,
                        })?;
                    client
                        .batch_execute(&sql)
                        .map_err(|cause| PostgresError::Sql {
                            doing: doing(),
                            cause,
                        })
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// The temporary folder: `data/` (the cluster), `socket/`,
    /// `postgres.log` and `initdb.log`.
    pub fn dir(&self) -> &Path {
        self.folder.path()
    }

    /// The postmaster's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.postmaster.as_ref().map(Child::id)
    }

    /// The server's log so far (all its runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("postgres.log")).unwrap_or_default()
    }

    /// Stops the server the way an administrator would (fast shutdown:
    /// clients are disconnected, the data is checkpointed). Does nothing
    /// when it is not running.
    pub fn stop(&mut self) -> Result<(), PostgresError> {
        let Some(mut postmaster) = self.postmaster.take() else {
            return Ok(());
        };
        set_pid(self.registration, None);
        let pid = postmaster.id() as libc::pid_t;
        for (signal, wait) in [
            (libc::SIGINT, STOP_TIMEOUT),
            (libc::SIGQUIT, Duration::from_secs(10)),
            (libc::SIGKILL, Duration::from_secs(10)),
        ] {
            // SAFETY: signals the postmaster this harness started and has
            // not reaped yet, so the pid is still its.
            unsafe {
                libc::kill(pid, signal);
            }
            let deadline = Instant::now() + wait;
            while Instant::now() < deadline {
                if postmaster.try_wait().ok().flatten().is_some() {
                    if signal == libc::SIGINT {
                        return Ok(());
                    }
                    return Err(self.server_error(format!(
                        "PostgreSQL on port {} did not stop within {} s of a fast shutdown \
                         request; it was killed",
                        self.port,
                        STOP_TIMEOUT.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Err(self.server_error(format!(
            "PostgreSQL (pid {pid}) on port {} survived SIGKILL",
            self.port
        )))
    }

    /// Stops the server and starts it again on the same port and data.
    /// Connections open before see an error; new ones succeed.
    pub fn restart(&mut self) -> Result<(), PostgresError> {
        self.stop()?;
        self.start_again()
    }

    /// Kills the postmaster with `SIGKILL`, as a crash would, and returns
    /// once its backends have exited too. [`Postgres::start_again`] or
    /// [`Postgres::restart`] recovers the data.
    pub fn kill(&mut self) -> Result<(), PostgresError> {
        let Some(mut postmaster) = self.postmaster.take() else {
            return Ok(());
        };
        set_pid(self.registration, None);
        // SAFETY: signals the postmaster this harness started and has not
        // reaped yet, so the pid is still its.
        unsafe {
            libc::kill(postmaster.id() as libc::pid_t, libc::SIGKILL);
        }
        postmaster
            .wait()
            .map_err(io_error("waiting for the killed postmaster"))?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.shared_memory_attached() {
            if Instant::now() > deadline {
                return Err(self.server_error(format!(
                    "the backends of the killed PostgreSQL on port {} were still running 15 s \
                     later",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Starts the server again on the same port and data after
    /// [`Postgres::stop`] or [`Postgres::kill`] (after a kill it recovers
    /// from its write-ahead log first). Does nothing when it is running.
    pub fn start_again(&mut self) -> Result<(), PostgresError> {
        if self.postmaster.is_some() {
            return Ok(());
        }
        let dir = self.dir().to_path_buf();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("postgres.log"))
            .map_err(io_error("opening postgres.log"))?;
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(dir.join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .stdout(log.try_clone().map_err(io_error("cloning a file handle"))?)
            .stderr(log);
        let log_start = self.log().len();
        let postmaster = spawn_child(command).map_err(io_error(format!(
            "starting {}",
            self.bin.join("postgres").display()
        )))?;
        let pid = postmaster.id();
        self.postmaster = Some(postmaster);
        set_pid(self.registration, Some(pid));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .postmaster
                .as_mut()
                .and_then(|p| p.try_wait().ok().flatten())
            {
                self.postmaster = None;
                set_pid(self.registration, None);
                let mut error = self.server_error(format!(
                    "PostgreSQL exited ({status}) before accepting connections on port {}",
                    self.port
                ));
                if let PostgresError::Server { log, .. } = &mut error {
                    // This run's lines: what `start` looks at to retry.
                    let all = self.log();
                    *log = tail(all.get(log_start..).unwrap_or(&all));
                }
                return Err(error);
            }
            if let Some((file_pid, status)) = self.postmaster_pid_file()
                && file_pid == pid
                && status == "ready"
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let error = self.server_error(format!(
                    "PostgreSQL did not accept connections on port {} within {} s",
                    self.port,
                    START_TIMEOUT.as_secs()
                ));
                let _ = self.kill();
                return Err(error);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir().join("socket")
    }

    /// A command for one of the server's programs, run in the folder, as
    /// the server account when root.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .env("LC_ALL", "C");
        if let Some(Account { uid, gid }) = self.account {
            // SAFETY: only async-signal-safe system calls between fork and
            // exec.
            unsafe {
                command.pre_exec(move || {
                    if libc::setgroups(1, &gid) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        command
    }

    /// Hands a file or folder to the server account when root.
    fn give_to_account(&self, path: &Path) -> Result<(), PostgresError> {
        match self.account {
            Some(Account { uid, gid }) => std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(io_error(format!(
                    "handing {} to the `{SERVER_ACCOUNT}` user",
                    path.display()
                ))),
            None => Ok(()),
        }
    }

    /// Writes a file only the server can read.
    fn write_private(&self, path: &Path, contents: &str) -> Result<(), PostgresError> {
        let doing = || format!("writing {}", path.display());
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut f| f.write_all(contents.as_bytes()))
            .map_err(io_error(doing()))?;
        self.give_to_account(path)
    }

    fn initdb(&self) -> Result<(), PostgresError> {
        let dir = self.dir();
        let pwfile = dir.join("pwfile");
        self.write_private(&pwfile, &self.password)?;
        let mut command = self.command("initdb");
        command
            .arg("-D")
            .arg(dir.join("data"))
            .arg("-U")
            .arg(SUPERUSER)
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-A", "scram-sha-256", "-E", "UTF8", "--locale=C", "-N"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let initdb = self.bin.join("initdb");
        let output = spawn_child(command)
            .and_then(Child::wait_with_output)
            .map_err(io_error(format!("running {}", initdb.display())))?;
        let _ = std::fs::remove_file(&pwfile);
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let _ = std::fs::write(dir.join("initdb.log"), &log);
        if !output.status.success() {
            return Err(PostgresError::Server {
                what: format!("{} failed ({})", initdb.display(), output.status),
                log_name: "initdb output",
                log: tail(&log),
            });
        }
        Ok(())
    }

    /// Appends the harness's settings to `postgresql.conf`, replaces
    /// `pg_hba.conf` and, for TLS, writes the certificates.
    fn configure(&mut self, options: &PostgresOptions) -> Result<(), PostgresError> {
        let data = self.dir().join("data");
        let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let mut settings = format!(
            "\n# Added by the connector tests' harness (tests/src/postgres.rs).\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = {}\n\
             unix_socket_permissions = 0700\n\
             password_encryption = 'scram-sha-256'\n\
             fsync = off\n\
             full_page_writes = off\n\
             dynamic_shared_memory_type = mmap\n",
            quote(&self.socket_dir().display().to_string())
        );
        let host_lines = if options.tls {
            let (ca, cert, key) = certificates()?;
            self.write_private(&data.join("server.crt"), &cert)?;
            self.write_private(&data.join("server.key"), &key)?;
            self.ca_cert_pem = Some(ca);
            settings
                .push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
            "hostssl   all all 127.0.0.1/32 scram-sha-256\n\
             hostnossl all all 127.0.0.1/32 reject\n"
        } else {
            settings.push_str("ssl = off\n");
            "host      all all 127.0.0.1/32 scram-sha-256\n"
        };
        let append = |path: PathBuf, text: &str| {
            std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(io_error(format!("writing {}", path.display())))
        };
        append(data.join("postgresql.conf"), &settings)?;
        let hba = data.join("pg_hba.conf");
        std::fs::write(
            &hba,
            format!(
                "# Written by the connector tests' harness (tests/src/postgres.rs).\n\
                 # TYPE   DATABASE USER ADDRESS    METHOD\n\
                 local     all all              scram-sha-256\n\
                 {host_lines}"
            ),
        )
        .map_err(io_error(format!("writing {}", hba.display())))
    }

    /// Line 1 (the postmaster's pid) and line 8 (its status, `ready` once
    /// it accepts connections) of `data/postmaster.pid`: what `pg_ctl -w`
    /// waits on.
    fn postmaster_pid_file(&self) -> Option<(u32, String)> {
        let text = std::fs::read_to_string(self.dir().join("data/postmaster.pid")).ok()?;
        let lines: Vec<&str> = text.lines().collect();
        let pid = lines.first()?.trim().parse().ok()?;
        Some((pid, lines.get(7).map(|s| s.trim().to_string())?))
    }

    /// Whether a process still has the cluster's System V shared memory
    /// segment (id on line 7 of `postmaster.pid`) attached: a new server
    /// refuses to start until none has.
    fn shared_memory_attached(&self) -> bool {
        let Some(id) = self.shared_memory_id() else {
            return false;
        };
        // SAFETY: IPC_STAT only fills the struct given.
        unsafe {
            let mut ds: libc::shmid_ds = std::mem::zeroed();
            libc::shmctl(id, libc::IPC_STAT, &mut ds) == 0 && ds.shm_nattch > 0
        }
    }

    fn shared_memory_id(&self) -> Option<libc::c_int> {
        let text = std::fs::read_to_string(self.dir().join("data/postmaster.pid")).ok()?;
        text.lines().nth(6)?.split_whitespace().nth(1)?.parse().ok()
    }

    fn server_error(&self, what: String) -> PostgresError {
        PostgresError::Server {
            what,
            log_name: "postgres.log",
            log: tail(&self.log()),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("{e}");
        }
        // A killed server that was not started again leaves its segment.
        if let Some(id) = self.shared_memory_id()
            && !self.shared_memory_attached()
        {
            // SAFETY: removes this cluster's segment, which nothing uses.
            unsafe {
                libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
            }
        }
        unregister(self.registration);
        // The TempDir removes the folder.
    }
}

/// A new, empty database with a unique name on [`Postgres::shared`], as a
/// [`Postgres::url_with_password`]: tests of one process running in
/// parallel each get their own. Panics when the server or the database
/// cannot be made.
pub fn fresh_database() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let server = Postgres::shared();
    let name = format!("fresh_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    server
        .create_database(&name)
        .unwrap_or_else(|e| panic!("creating a fresh database on the shared server: {e}"));
    server.url_with_password(&name)
}

/// The `bin` folder of the newest version under [`POSTGRESQL_LIB`].
fn newest_bin() -> Result<PathBuf, PostgresError> {
    let version = |name: &str| -> Option<Vec<u32>> {
        name.split('.').map(|part| part.parse().ok()).collect()
    };
    std::fs::read_dir(POSTGRESQL_LIB)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = version(entry.file_name().to_str()?)?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .ok_or(PostgresError::NotInstalled)
}

/// The user and group of [`SERVER_ACCOUNT`], from `/etc/passwd`.
fn server_account() -> Result<Account, PostgresError> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&SERVER_ACCOUNT)).then_some(())?;
            Some(Account {
                uid: fields.get(2)?.parse().ok()?,
                gid: fields.get(3)?.parse().ok()?,
            })
        })
        .filter(|account| account.uid != 0)
        .ok_or(PostgresError::NoServerAccount)
}

fn euid() -> libc::uid_t {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

fn certificates() -> Result<(String, String, String), PostgresError> {
    crate::loopback_certificates().map_err(PostgresError::Certificate)
}

/// `bytes` random bytes from the kernel, in hex.
fn random_hex(bytes: usize) -> Result<String, PostgresError> {
    let mut buf = vec![0; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(io_error("reading /dev/urandom"))?;
    Ok(hex::encode(buf))
}

fn free_port() -> Result<u16, PostgresError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io_error("finding a free port on 127.0.0.1"))
}

/// The last 60 lines of a log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Removes the folders of servers whose test process died without cleaning
/// up (killed outright: its servers were signalled by the kernel).
fn remove_abandoned_folders() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let is_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(FOLDER_PREFIX));
        let path = entry.path();
        // No owner file yet: a server being made right now.
        let Some(owner) = std::fs::read_to_string(path.join("owner"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
        else {
            continue;
        };
        if !is_ours || process_alive(owner) {
            continue;
        }
        let postmaster = std::fs::read_to_string(path.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next()?.trim().parse().ok());
        if postmaster.is_some_and(process_alive) {
            continue;
        }
        let _ = std::fs::remove_dir_all(&path);
    }
}

/// Spawns a child that receives `SIGQUIT` when this process ends (however
/// it ends). `PR_SET_PDEATHSIG` fires when the *thread* that forked the
/// child ends, so every child is forked by one thread that lives as long as
/// the process.
fn spawn_child(mut command: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe system calls between fork and exec.
    // Runs after the closures added before (a change of user clears the
    // death signal, so it is set last).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The process may have ended between fork and prctl.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("postgres-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("starting the thread that starts PostgreSQL");
        requests
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .send((command, reply))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

/// One server's folder and running postmaster, for the clean-up at exit.
struct Registered {
    dir: PathBuf,
    pid: Option<u32>,
}

fn registry() -> &'static Mutex<BTreeMap<u64, Registered>> {
    static REGISTRY: OnceLock<Mutex<BTreeMap<u64, Registered>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        // SAFETY: registers a plain function with the C library.
        unsafe {
            libc::atexit(clean_up_at_exit);
        }
        Mutex::new(BTreeMap::new())
    })
}

fn register(dir: PathBuf) -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    registry()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, Registered { dir, pid: None });
    id
}

fn set_pid(id: u64, pid: Option<u32>) {
    if let Some(entry) = registry()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(&id)
    {
        entry.pid = pid;
    }
}

fn unregister(id: u64) {
    registry()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
}

/// At exit: stops the servers still running (fast shutdown, then kill) and
/// removes the folders of those never dropped.
extern "C" fn clean_up_at_exit() {
    let entries = std::mem::take(&mut *registry().lock().unwrap_or_else(|p| p.into_inner()));
    for entry in entries.values() {
        if let Some(pid) = entry.pid {
            // SAFETY: a postmaster of this process, not reaped yet.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGINT);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for entry in entries.values() {
        let Some(pid) = entry.pid else { continue };
        loop {
            // SAFETY: reaps (or polls) a child of this process.
            let reaped =
                unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG) };
            if reaped != 0 || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if process_alive(pid) {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
                libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
            }
        }
    }
    for entry in entries.values() {
        let _ = std::fs::remove_dir_all(&entry.dir);
    }
}
