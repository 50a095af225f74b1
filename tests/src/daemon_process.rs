//! A `connector daemon` as a real child process: its status over HTTP, and
//! the signals operators (and crashes) send it.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ops::{http_get, wait_for};

/// A daemon process serving its status on a free port.
pub struct DaemonProcess {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl DaemonProcess {
    /// Starts `bin` with `global` flags (`--state-dir …`, `--state-url …`),
    /// then `daemon --listen 127.0.0.1:0 CONFIGS…`, with `env` added and
    /// its log (at `warn`) in `log`; returns once it serves its status.
    pub fn start(
        bin: &Path,
        global: &[OsString],
        configs: &[&Path],
        env: &[(&str, &str)],
        log: &Path,
    ) -> DaemonProcess {
        Self::spawn(bin, global, "127.0.0.1:0", None, configs, env, log)
    }

    /// Like [`DaemonProcess::start`], serving the web console of the
    /// console file `console` too, on `listen` (`127.0.0.1:0` picks a port).
    pub fn start_with_console(
        bin: &Path,
        global: &[OsString],
        listen: &str,
        console: &Path,
        configs: &[&Path],
        env: &[(&str, &str)],
        log: &Path,
    ) -> DaemonProcess {
        Self::spawn(bin, global, listen, Some(console), configs, env, log)
    }

    fn spawn(
        bin: &Path,
        global: &[OsString],
        listen: &str,
        console: Option<&Path>,
        configs: &[&Path],
        env: &[(&str, &str)],
        log: &Path,
    ) -> DaemonProcess {
        let mut child = Command::new(bin)
            .process_group(0)
            .args(global)
            .args(["daemon", "--listen", listen])
            .args(console.iter().flat_map(|c| [Path::new("--console"), c]))
            .args(configs)
            .env("CONNECTOR_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("starting the daemon");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("status: ")
            .and_then(|u| u.split_once("://"))
            .and_then(|(_, a)| a.strip_suffix('/'))
            .unwrap_or_else(|| {
                panic!(
                    "the daemon's first line names its status address: {line:?}; log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            })
            .to_string();
        // Keep draining stdout so the daemon never blocks on it.
        std::thread::spawn(move || for _ in stdout.lines() {});
        DaemonProcess {
            child,
            addr,
            log: log.to_path_buf(),
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where its status server listens.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/status.json`.
    pub fn status(&self) -> Value {
        let (code, body) = http_get(&self.addr, "/status.json").expect("GET /status.json");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("status.json is JSON")
    }

    /// One connector of `/status.json`.
    pub fn connector(&self, id: &str) -> Value {
        self.status()["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("status lists {id}"))
    }

    /// `/metrics`.
    pub fn metrics(&self) -> String {
        let (code, body) = http_get(&self.addr, "/metrics").expect("GET /metrics");
        assert_eq!(code, 200);
        body
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} {}", self.pid());
    }

    /// SIGSTOP: the process hangs, holding whatever it held.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`DaemonProcess::pause`].
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// SIGKILL, and waits for it to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit; returns how long it took.
    pub fn terminate(mut self) -> Duration {
        let start = Instant::now();
        self.signal("TERM");
        let status = wait_for(Duration::from_secs(60), "the daemon to stop", || {
            self.child.try_wait().unwrap()
        });
        assert!(
            status.success(),
            "the daemon exits cleanly on SIGTERM: {status}; log:\n{}",
            self.log()
        );
        start.elapsed()
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- daemon log ({}) ---\n{}",
                self.log.display(),
                self.log()
            );
        }
    }
}
