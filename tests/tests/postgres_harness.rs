//! The throw-away PostgreSQL server harness (`connector_e2e::postgres`):
//! authentication, TLS, independent databases, restarts, crashes, and that
//! no server outlives its test or its test process.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_e2e::ops::process_alive;
use connector_e2e::postgres::{Postgres, PostgresError, PostgresOptions, fresh_database};
use postgres::error::SqlState;
use postgres::{Client, NoTls};

/// Set in a child test process (the test binary run again for one test):
/// what the child does instead of the test.
const CHILD_MODE: &str = "CONNECTOR_POSTGRES_HARNESS_CHILD";

fn connect(url: &str) -> Result<Client, postgres::Error> {
    Client::connect(url, NoTls)
}

fn refused(connection: Result<Client, postgres::Error>) -> postgres::Error {
    match connection {
        Ok(_) => panic!("the connection was accepted"),
        Err(e) => e,
    }
}

fn table_names(client: &mut Client) -> Vec<String> {
    client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The processes whose working folder is inside `dir`: a PostgreSQL
/// server's postmaster and backends all work in its data folder.
fn processes_in(dir: &Path) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
            (cwd.starts_with(dir) && process_alive(pid)).then_some(pid)
        })
        .collect()
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "after 15 s, still not: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn uid_of(path: impl AsRef<Path>) -> u32 {
    std::fs::metadata(path).unwrap().uid()
}

#[test]
fn a_started_server_accepts_its_password_and_refuses_a_wrong_or_missing_one() {
    let server = Postgres::shared();
    let mut client = connect(&server.url_with_password("postgres")).unwrap();
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(user, server.user());
    let port: i32 = client
        .query_one("SELECT inet_server_port()", &[])
        .unwrap()
        .get(0);
    assert_eq!(port, i32::from(server.port()));

    let wrong = refused(
        postgres::Config::from_str(&server.url("postgres"))
            .unwrap()
            .password("not-the-password")
            .connect(NoTls),
    );
    assert_eq!(wrong.code(), Some(&SqlState::INVALID_PASSWORD), "{wrong}");
    assert!(
        connect(&server.url("postgres")).is_err(),
        "a connection without a password was let in"
    );
}

#[test]
fn urls_carry_the_password_only_when_asked_and_require_tls_only_on_a_tls_server() {
    let server = Postgres::shared();
    let port = server.port();
    assert_eq!(
        server.url("app_db"),
        format!("postgres://postgres@127.0.0.1:{port}/app_db")
    );
    assert_eq!(
        server.url_with_password("app_db"),
        format!(
            "postgres://postgres:{}@127.0.0.1:{port}/app_db",
            server.password()
        )
    );
    assert!(server.password().len() >= 32, "a short password");
    assert!(server.ca_cert_pem().is_none());
}

#[test]
fn fresh_databases_are_empty_and_independent() {
    let (a, b) = (fresh_database(), fresh_database());
    assert_ne!(a, b);
    let mut a = connect(&a).unwrap();
    let mut b = connect(&b).unwrap();
    assert!(table_names(&mut a).is_empty());
    assert!(table_names(&mut b).is_empty());
    a.batch_execute("CREATE TABLE only_in_a (n int); INSERT INTO only_in_a VALUES (1)")
        .unwrap();
    assert_eq!(table_names(&mut a), ["only_in_a"]);
    assert!(table_names(&mut b).is_empty());
    let names: Vec<String> = [&mut a, &mut b]
        .into_iter()
        .map(|c| {
            c.query_one("SELECT current_database()::text", &[])
                .unwrap()
                .get(0)
        })
        .collect();
    assert_ne!(names[0], names[1]);
}

#[test]
fn fresh_database_can_be_called_from_async_tests() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let url = runtime.block_on(async { fresh_database() });
    assert!(connect(&url).is_ok());
}

#[test]
fn create_database_refuses_names_outside_lowercase_digits_and_underscore() {
    let server = Postgres::shared();
    for name in ["", "Upper", "semi;colon", "quote\"", "sp ace", "dash-ed"] {
        assert!(
            matches!(
                server.create_database(name),
                Err(PostgresError::InvalidDatabaseName(_))
            ),
            "{name:?} was accepted"
        );
    }
    server.create_database("valid_name_42").unwrap();
    assert!(connect(&server.url_with_password("valid_name_42")).is_ok());
}

#[test]
fn a_tls_server_refuses_plain_connections_and_accepts_tls_that_trusts_its_ca() {
    let server = Postgres::start(PostgresOptions { tls: true }).unwrap();
    server.create_database("over_tls").unwrap();
    let url = server.url_with_password("over_tls");
    assert!(
        server
            .url("over_tls")
            .ends_with("/over_tls?sslmode=require")
    );
    assert!(url.ends_with("?sslmode=require"));

    let plain = refused(
        postgres::Config::from_str(&url)
            .unwrap()
            .ssl_mode(postgres::config::SslMode::Disable)
            .connect(NoTls),
    );
    assert_eq!(
        plain.code(),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{plain}"
    );

    let tls = |roots: rustls::RootCertStore| {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        tokio_postgres_rustls::MakeRustlsConnect::new(config)
    };
    let untrusting = Client::connect(&url, tls(rustls::RootCertStore::empty()));
    assert!(untrusting.is_err(), "TLS without the CA was accepted");

    use rustls::pki_types::pem::PemObject;
    let ca = rustls::pki_types::CertificateDer::from_pem_slice(
        server
            .ca_cert_pem()
            .expect("a TLS server has a CA")
            .as_bytes(),
    )
    .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let mut client = Client::connect(&url, tls(roots)).unwrap();
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(ssl);
}

#[test]
fn restart_keeps_the_data_and_the_port_and_old_clients_get_an_error_then_reconnect() {
    let mut server = Postgres::start(PostgresOptions::default()).unwrap();
    server.create_database("kept").unwrap();
    let url = server.url_with_password("kept");
    let mut old = connect(&url).unwrap();
    old.batch_execute("CREATE TABLE t (n int); INSERT INTO t VALUES (7)")
        .unwrap();
    let (port, pid) = (server.port(), server.pid());

    server.restart().unwrap();
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), pid, "the same postmaster");
    assert!(old.query_one("SELECT n FROM t", &[]).is_err());
    let mut new = connect(&url).unwrap();
    let n: i32 = new.query_one("SELECT n FROM t", &[]).unwrap().get(0);
    assert_eq!(n, 7);

    server.stop().unwrap();
    assert!(server.pid().is_none());
    assert!(connect(&url).is_err());
    server.stop().unwrap();
    server.start_again().unwrap();
    assert!(connect(&url).is_ok());
}

#[test]
fn a_killed_server_recovers_its_committed_data_when_started_again() {
    let mut server = Postgres::start(PostgresOptions::default()).unwrap();
    server.create_database("crashy").unwrap();
    let url = server.url_with_password("crashy");
    let mut client = connect(&url).unwrap();
    client
        .batch_execute("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        .unwrap();
    let pid = server.pid().unwrap();

    server.kill().unwrap();
    assert!(!process_alive(pid), "the postmaster survived");
    assert!(
        processes_in(&server.dir().join("data")).is_empty(),
        "backends survived"
    );
    assert!(client.query_one("SELECT 1", &[]).is_err());
    assert!(connect(&url).is_err());
    server.start_again().unwrap();
    let mut client = connect(&url).unwrap();
    client.batch_execute("INSERT INTO t VALUES (2)").unwrap();

    // Killed again, then restarted rather than started.
    server.kill().unwrap();
    server.restart().unwrap();
    let mut client = connect(&url).unwrap();
    let sum: i64 = client
        .query_one("SELECT sum(n)::bigint FROM t", &[])
        .unwrap()
        .get(0);
    assert_eq!(sum, 3);
    assert!(server.log().contains("database system was interrupted"));
}

#[test]
fn dropping_the_server_removes_its_folder_and_its_processes() {
    let server = Postgres::start(PostgresOptions::default()).unwrap();
    let _client = connect(&server.url_with_password("postgres")).unwrap();
    let (dir, pid, port) = (
        server.dir().to_path_buf(),
        server.pid().unwrap(),
        server.port(),
    );
    assert!(processes_in(&dir).len() > 1, "no backends seen");
    drop(server);
    assert!(!dir.exists());
    assert!(!process_alive(pid));
    assert!(processes_in(&dir).is_empty());
    assert!(port_free(port));

    // A killed server that is then dropped leaves nothing either.
    let mut server = Postgres::start(PostgresOptions::default()).unwrap();
    server.kill().unwrap();
    let dir = server.dir().to_path_buf();
    drop(server);
    assert!(!dir.exists());
}

#[test]
fn the_server_runs_as_the_unprivileged_postgres_user_under_root_else_as_the_current_user() {
    let server = Postgres::shared();
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    let expected = if euid == 0 {
        let out = Command::new("id")
            .args(["-u", "postgres"])
            .output()
            .unwrap();
        let uid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert_ne!(uid, 0);
        uid
    } else {
        euid
    };
    let pid = server.pid().unwrap();
    assert_eq!(uid_of(format!("/proc/{pid}")), expected, "the postmaster");
    let _client = connect(&server.url_with_password("postgres")).unwrap();
    let processes = processes_in(&server.dir().join("data"));
    assert!(processes.len() > 1, "no backends seen");
    for process in processes {
        assert_eq!(
            uid_of(format!("/proc/{process}")),
            expected,
            "pid {process}"
        );
    }
    assert_eq!(
        uid_of(server.dir().join("data")),
        expected,
        "the data folder"
    );
}

/// A run of this test binary for one test in a [`CHILD_MODE`], and what it
/// printed about its server.
struct ChildRun {
    child: std::process::Child,
    stderr: tempfile::NamedTempFile,
    pid: u32,
    port: u16,
    dir: PathBuf,
}

impl ChildRun {
    /// Runs the test `name` in `mode` and waits until it has printed its
    /// server: postmaster pid, port, folder.
    fn start(name: &str, mode: &str) -> ChildRun {
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_MODE, mode)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            // libtest prints the test's name on the same line first.
            if let Some((_, rest)) = line.split_once("SERVER ") {
                let fields: Vec<&str> = rest.splitn(3, ' ').collect();
                // Keep reading: a child writing to a closed pipe fails.
                std::thread::spawn(move || lines.for_each(drop));
                return ChildRun {
                    child,
                    stderr,
                    pid: fields[0].parse().unwrap(),
                    port: fields[1].parse().unwrap(),
                    dir: PathBuf::from(fields[2]),
                };
            }
        }
        let status = child.wait().unwrap();
        panic!(
            "the child ({status}) printed no server:\n{}",
            std::fs::read_to_string(stderr.path()).unwrap_or_default()
        );
    }

    /// Waits for the child; panics with its stderr unless it succeeded.
    fn succeeds(&mut self) {
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "the child failed ({status}):\n{}",
            std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
        );
    }
}

fn print_server(server: &Postgres) {
    println!(
        "SERVER {} {} {}",
        server.pid().unwrap(),
        server.port(),
        server.dir().display()
    );
}

#[test]
fn a_test_process_killed_outright_leaves_no_server_running() {
    if std::env::var(CHILD_MODE).as_deref() == Ok("hold") {
        let server = Postgres::start(PostgresOptions::default()).unwrap();
        print_server(&server);
        std::thread::sleep(Duration::from_secs(60));
        panic!("not killed within 60 s");
    }
    let ChildRun {
        mut child,
        pid,
        port,
        dir,
        ..
    } = ChildRun::start(
        "a_test_process_killed_outright_leaves_no_server_running",
        "hold",
    );
    assert!(process_alive(pid));
    // SAFETY: kills the child this test started and has not reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
    }
    child.wait().unwrap();
    wait_until("the postmaster and backends exited", || {
        !process_alive(pid) && processes_in(&dir).is_empty()
    });
    wait_until("the port is free", || port_free(port));
    assert!(dir.exists(), "nobody was left to remove the folder");
    // The next server started removes the abandoned folder.
    let _next = Postgres::start(PostgresOptions::default()).unwrap();
    assert!(!dir.exists(), "the abandoned folder is still there");
}

#[test]
fn a_test_process_that_exits_stops_the_shared_server_and_removes_its_folder() {
    if std::env::var(CHILD_MODE).as_deref() == Ok("exit") {
        let url = fresh_database();
        connect(&url).unwrap();
        print_server(Postgres::shared());
        return;
    }
    let mut run = ChildRun::start(
        "a_test_process_that_exits_stops_the_shared_server_and_removes_its_folder",
        "exit",
    );
    run.succeeds();
    let ChildRun { pid, port, dir, .. } = run;
    assert!(
        !process_alive(pid),
        "the shared postmaster outlived its process"
    );
    assert!(processes_in(&dir).is_empty(), "its backends outlived it");
    assert!(!dir.exists(), "its folder was left behind");
    assert!(port_free(port));
}
