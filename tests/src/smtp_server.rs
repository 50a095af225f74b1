//! A real SMTP server for the SMTP sink's tests: Debian's
//! `python3-aiosmtpd` (`/usr/bin/python3 -m aiosmtpd`) on a free loopback
//! port, with the handler `tests/smtp/journal.py`, which stores each
//! accepted message's bytes as received and its envelope in a folder
//! ([`SmtpServer::received`] reads them back). Optional STARTTLS with a
//! given certificate. Killed and waited for on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::dovecot::free_port;

/// The Debian system Python, which sees Debian's `python3-aiosmtpd` (a
/// `python3` first on PATH, e.g. pyenv's, may not).
pub const PYTHON: &str = "/usr/bin/python3";

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// `MAIL FROM`.
    pub mail_from: String,
    /// The accepted `RCPT TO` addresses.
    pub rcpt_tos: Vec<String>,
    /// The message's bytes as received (dot-unstuffed).
    pub bytes: Vec<u8>,
}

/// A running aiosmtpd; killed when dropped.
pub struct SmtpServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl SmtpServer {
    /// Starts the server, with STARTTLS when `tls` gives PEM certificate
    /// and key. Panics, saying how to install aiosmtpd, when it is missing.
    pub fn start(tls: Option<(&str, &str)>) -> SmtpServer {
        let ok = Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "{PYTHON} cannot import aiosmtpd: the SMTP sink's tests need a real SMTP server; \
             install it with `apt-get install python3-aiosmtpd` (scripts/setup does this)"
        );
        let dir = tempfile::Builder::new()
            .prefix("connector-smtp-")
            .tempdir()
            .expect("creating a folder for the SMTP server");
        let port = free_port();
        let handler_dir = crate::workspace_root().join("tests/smtp");
        let mut cmd = Command::new(PYTHON);
        cmd.env("PYTHONPATH", &handler_dir)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"));
        if let Some((cert, key)) = tls {
            let cert_path = dir.path().join("cert.pem");
            let key_path = dir.path().join("key.pem");
            std::fs::write(&cert_path, cert).expect("writing the certificate");
            std::fs::write(&key_path, key).expect("writing the key");
            cmd.arg("--tlscert")
                .arg(&cert_path)
                .arg("--tlskey")
                .arg(&key_path);
        }
        let log = std::fs::File::create(dir.path().join("server.log")).expect("creating a log");
        let child = cmd
            .args(["-c", "journal.Journal"])
            .arg(dir.path().join("mail"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning a file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {PYTHON} -m aiosmtpd: {e}"));
        let mut server = SmtpServer {
            dir,
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "aiosmtpd exited ({status}) before listening:\n{}",
                    server.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "aiosmtpd not listening after 15 s:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder the messages are stored in.
    pub fn mail_dir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// How many messages the server accepted so far.
    pub fn count(&self) -> usize {
        count_eml(&self.mail_dir())
    }

    /// Every accepted message, in the order received.
    pub fn received(&self) -> Vec<Received> {
        let dir = self.mail_dir();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".eml"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .map(|name| {
                let stem = name.trim_end_matches(".eml");
                let envelope: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(dir.join(format!("{stem}.json"))).expect("reading an envelope"),
                )
                .expect("an envelope is JSON");
                Received {
                    mail_from: envelope["mail_from"].as_str().unwrap_or("").to_string(),
                    rcpt_tos: envelope["rcpt_tos"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                    bytes: std::fs::read(dir.join(name)).expect("reading a message"),
                }
            })
            .collect()
    }
}

fn count_eml(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
                .count()
        })
        .unwrap_or(0)
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
