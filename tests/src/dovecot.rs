//! A real Dovecot IMAP server for the tests: the project's own config
//! (`tests/dovecot/dovecot.conf.in`) rendered into a temporary folder with
//! its users and a master user, `/usr/sbin/dovecot -F` run as a child
//! process on a free loopback port, killed and waited for on drop.
//!
//! Also a deliberately independent, minimal IMAP reader ([`ImapReader`]) to
//! read back what landed (`UID FETCH 1:* (UID BODY.PEEK[])`), sharing no
//! code with the host's IMAP client.
//!
//! Gotchas handled here: as root Dovecot accesses mail as `nobody`, so the
//! folder and all its parents must be traversable (0755) and `mail/` and
//! `home/` owned by nobody; failed logins are answered at once
//! (`auth_failure_delay = 0`); Dovecot's children are killed with their
//! process group, and a restart waits until the old listener is gone.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `dovecot-core` installs the server.
pub const DOVECOT: &str = "/usr/sbin/dovecot";

const TEMPLATE: &str = include_str!("../dovecot/dovecot.conf.in");
/// What [`DovecotOptions::xoauth2`] adds to it.
const XOAUTH2_TEMPLATE: &str = include_str!("../dovecot/xoauth2.conf.in");

/// The master user every test server has: log in as any user with
/// `AUTHENTICATE PLAIN` (authzid = the user) or `LOGIN "user*admin"`.
pub const MASTER_USER: &str = "admin";
/// The master user's password.
pub const MASTER_PASSWORD: &str = "adminpass";

/// What a test server offers besides users and the master user.
#[derive(Debug, Clone, Default)]
pub struct DovecotOptions {
    /// Users and their passwords.
    pub users: Vec<(String, String)>,
    /// PEM certificate chain and key: enables STARTTLS on the IMAP port and
    /// an implicit-TLS listener.
    pub tls: Option<(String, String)>,
    /// Replaces the capabilities listed after login (`imap_capability`),
    /// e.g. without MULTIAPPEND to act like Exchange.
    pub capability: Option<String>,
    /// Largest message the quota plugin accepts, e.g. `100k`: larger
    /// APPENDs get `NO [OVERQUOTA]`.
    pub max_mail_size: Option<String>,
    /// `AUTHENTICATE XOAUTH2` with bearer tokens, as Exchange Online's
    /// app-only IMAP.
    pub xoauth2: Option<XOAuth2Passdb>,
}

/// Dovecot's `oauth2` passdb as Exchange Online's app-only IMAP: a bearer
/// token is valid when the introspection endpoint calls it active and its
/// username has the mailbox's domain (`username_format = %d`), i.e. the
/// app's token opens its own tenant's mailboxes; a `deny` passdb (only for
/// XOAUTH2) keeps the app out of the mailboxes that lack
/// `Add-MailboxPermission`. Both fail as Exchange does: `NO
/// [AUTHENTICATIONFAILED]` after an error challenge.
#[derive(Debug, Clone, Default)]
pub struct XOAuth2Passdb {
    /// The RFC 7662 introspection endpoint (form `token=…`, answers
    /// `active` and `username`).
    pub introspection_url: String,
    /// Mailboxes the app may not open.
    pub without_permission: Vec<String>,
}

/// A running Dovecot; killed (with all its processes) when dropped.
pub struct Dovecot {
    dir: tempfile::TempDir,
    port: u16,
    imaps_port: u16,
    child: Option<Child>,
    options: DovecotOptions,
}

/// The `[sink]` table (with its header) of a connector importing into the
/// Dovecot on `port` over plain IMAP through the master user, whose
/// password is the secret `imap-master-password`.
pub fn master_sink_table(port: u16, max_connections: usize, batch_messages: usize) -> String {
    format!(
        r#"[sink]
kind = "imap"
host = "127.0.0.1"
port = {port}
tls = "none"
auth = "master"
master-user = "{MASTER_USER}"
password-secret = "imap-master-password"
max-connections = {max_connections}
batch-messages = {batch_messages}
"#
    )
}

impl Dovecot {
    /// Renders the configuration into a new temporary folder and starts the
    /// server. Panics, saying how to install Dovecot, when it is missing.
    pub fn start(options: DovecotOptions) -> Dovecot {
        assert!(
            Path::new(DOVECOT).is_file(),
            "{DOVECOT} not found: these tests need a real Dovecot IMAP server; install it with \
             `apt-get install dovecot-imapd` (scripts/setup does this)"
        );
        let dir = tempfile::Builder::new()
            .prefix("connector-dovecot-")
            .tempdir()
            .expect("creating a folder for Dovecot");
        let mut dovecot = Dovecot {
            dir,
            port: free_port(),
            imaps_port: if options.tls.is_some() {
                free_port()
            } else {
                0
            },
            child: None,
            options,
        };
        dovecot.render();
        dovecot.spawn();
        dovecot
    }

    /// The plain (and STARTTLS) IMAP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The implicit-TLS port, when TLS is on.
    pub fn imaps_port(&self) -> Option<u16> {
        (self.imaps_port != 0).then_some(self.imaps_port)
    }

    /// The folder holding the configuration, logs and mail.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The Maildir of a folder of a user, e.g. `("alice@x", "INBOX/Chat")`
    /// → `mail/alice@x/.INBOX.Chat`.
    pub fn maildir(&self, user: &str, folder: &str) -> PathBuf {
        let mut path = self.dir.path().join("mail").join(user);
        if folder != "INBOX" {
            path.push(format!(".{}", folder.replace('/', ".")));
        }
        path
    }

    /// How many messages a folder holds on disk (`cur/` and `new/`).
    pub fn count_on_disk(&self, user: &str, folder: &str) -> usize {
        ["cur", "new"]
            .iter()
            .map(|sub| {
                std::fs::read_dir(self.maildir(user, folder).join(sub))
                    .map(|d| d.count())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stdout.log"), read("dovecot.log"))
    }

    /// CPU time the server's processes have used so far, with those that
    /// ended (a connection's `imap` process ends with it).
    pub fn cpu_time(&self) -> std::time::Duration {
        self.child.as_ref().map_or(std::time::Duration::ZERO, |c| {
            crate::ops::group_cpu_time(c.id())
        })
    }

    /// Kills the server and all its processes at once (as a crash would)
    /// and waits until its ports are free.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id() as i32;
        // SAFETY: signals the process group this harness created for the
        // server (its pgid is the child's pid); nothing else is in it.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = child.wait();
        for port in [self.port, self.imaps_port] {
            if port != 0 {
                wait_until_free(port);
            }
        }
    }

    /// Starts the server again on the same folder and ports (after
    /// [`Dovecot::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn render(&self) {
        let dir = self.dir.path();
        // As root, mail is accessed as nobody: it must reach the folder.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod 0755 on the Dovecot folder");
        for sub in ["run", "state", "mail", "home"] {
            std::fs::create_dir_all(dir.join(sub)).expect("creating Dovecot folders");
        }
        let root = std::fs::metadata(dir).expect("stat").uid() == 0;
        let (run_user, run_group, login_user, mail_user, mail_group) = if root {
            let mut parent = dir.parent();
            while let Some(p) = parent {
                let mode = std::fs::metadata(p).map(|m| m.mode()).unwrap_or(0o755);
                assert!(
                    mode & 0o001 != 0,
                    "{} is not traversable by others (mode {mode:o}): Dovecot reads mail as \
                     `nobody` and every login would fail with [UNAVAILABLE]; use a TMPDIR \
                     whose parents are chmod 0755",
                    p.display()
                );
                parent = p.parent();
            }
            let (uid, gid) = (
                id_of("/etc/passwd", "nobody"),
                id_of("/etc/group", "nogroup"),
            );
            for sub in ["mail", "home"] {
                std::os::unix::fs::chown(dir.join(sub), Some(uid), Some(gid))
                    .expect("chown mail/ and home/ to nobody");
            }
            (
                "dovecot".to_string(),
                "dovecot".to_string(),
                "dovenull".to_string(),
                "nobody".to_string(),
                "nogroup".to_string(),
            )
        } else {
            let user = current_user_name();
            let group = current_group_name();
            (user.clone(), group.clone(), user.clone(), user, group)
        };
        let mut extra = String::new();
        match &self.options.tls {
            Some((cert, key)) => {
                std::fs::write(dir.join("cert.pem"), cert).expect("writing cert.pem");
                std::fs::write(dir.join("key.pem"), key).expect("writing key.pem");
                extra.push_str(&format!(
                    "ssl = yes\nssl_cert = <{0}/cert.pem\nssl_key = <{0}/key.pem\n",
                    dir.display()
                ));
            }
            None => extra.push_str("ssl = no\n"),
        }
        if let Some(caps) = &self.options.capability {
            extra.push_str(&format!(
                "protocol imap {{\n  imap_capability = {caps}\n}}\n"
            ));
        }
        if let Some(x) = &self.options.xoauth2 {
            std::fs::write(
                dir.join("oauth2.conf.ext"),
                format!(
                    "introspection_mode = post\nintrospection_url = {}\n\
                     username_attribute = username\nusername_format = %d\n\
                     active_attribute = active\nactive_value = true\ntimeout_msecs = 10000\n",
                    x.introspection_url
                ),
            )
            .expect("writing oauth2.conf.ext");
            self.write_without_permission(&x.without_permission);
            extra.push_str(&XOAUTH2_TEMPLATE.replace("@DIR@", &dir.display().to_string()));
        }
        if let Some(size) = &self.options.max_mail_size {
            extra.push_str(&format!(
                "mail_plugins = $mail_plugins quota\nplugin {{\n  quota = maildir:User quota\n  quota_rule = *:storage=10G\n  quota_max_mail_size = {size}\n}}\n"
            ));
        }
        let config = TEMPLATE
            .replace("@DIR@", &dir.display().to_string())
            .replace("@PORT@", &self.port.to_string())
            .replace("@IMAPS_PORT@", &self.imaps_port.to_string())
            .replace("@RUNUSER@", &run_user)
            .replace("@RUNGROUP@", &run_group)
            .replace("@LOGINUSER@", &login_user)
            .replace("@MAILUID@", &mail_user)
            .replace("@MAILGID@", &mail_group)
            .replace("@EXTRA@", &extra);
        std::fs::write(dir.join("dovecot.conf"), config).expect("writing dovecot.conf");
        let users: String = self
            .options
            .users
            .iter()
            .map(|(u, p)| format!("{u}:{{PLAIN}}{p}::::::\n"))
            .collect();
        std::fs::write(dir.join("users"), users).expect("writing users");
        std::fs::write(
            dir.join("master-users"),
            format!("{MASTER_USER}:{{PLAIN}}{MASTER_PASSWORD}::::::\n"),
        )
        .expect("writing master-users");
        for f in ["users", "master-users", "dovecot.conf", "oauth2.conf.ext"] {
            if dir.join(f).exists() {
                std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644))
                    .expect("chmod 0644");
            }
        }
    }

    /// Lets the app open `mailbox` from now on (as `Add-MailboxPermission`
    /// does): it leaves the XOAUTH2 deny list, which Dovecot reads again
    /// when it changes.
    pub fn grant_app_permission(&mut self, mailbox: &str) {
        let xoauth2 = self
            .options
            .xoauth2
            .as_mut()
            .expect("a server with XOAUTH2");
        xoauth2.without_permission.retain(|m| m != mailbox);
        let denied = xoauth2.without_permission.clone();
        // passwd-file notices a change by its mtime (whole seconds).
        std::thread::sleep(Duration::from_millis(1100));
        self.write_without_permission(&denied);
    }

    fn write_without_permission(&self, mailboxes: &[String]) {
        let path = self.dir.path().join("no-app-permission");
        let lines: String = mailboxes.iter().map(|m| format!("{m}:::::::\n")).collect();
        std::fs::write(&path, lines).expect("writing no-app-permission");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .expect("chmod 0644");
    }

    fn spawn(&mut self) {
        let dir = self.dir.path();
        let log = std::fs::File::create(dir.join("stdout.log")).expect("creating stdout.log");
        let child = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(dir.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning a file handle"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {DOVECOT}: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "dovecot exited ({status}) before listening:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "dovecot did not listen on port {} within 15 s:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("finding a free port")
}

fn wait_until_free(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "port {port} still in use 10 s after killing dovecot"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn id_of(file: &str, name: &str) -> u32 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(name)).then(|| f.nth(1).and_then(|id| id.parse().ok()))?
        })
        .unwrap_or_else(|| panic!("no `{name}` in {file}"))
}

fn current_user_name() -> String {
    std::env::var("USER").unwrap_or_else(|_| {
        let out = Command::new("id")
            .arg("-un")
            .output()
            .expect("running id -un");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

fn current_group_name() -> String {
    let out = Command::new("id")
        .arg("-gn")
        .output()
        .expect("running id -gn");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A minimal IMAP reader, independent of the host's client: logs in as a
/// user through the master user and reads whole messages back.
pub struct ImapReader {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
}

impl ImapReader {
    /// Connects to 127.0.0.1:`port` and logs in as `user` via the master
    /// user.
    pub fn login(port: u16, user: &str) -> ImapReader {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to dovecot");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut r = ImapReader {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            tag: 0,
        };
        let mut greeting = String::new();
        r.reader.read_line(&mut greeting).unwrap();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        r.run(&format!(
            "LOGIN \"{user}*{MASTER_USER}\" \"{MASTER_PASSWORD}\""
        ));
        r
    }

    /// Runs a command and returns its untagged responses (literals
    /// inline); panics unless it ends in OK.
    pub fn run(&mut self, command: &str) -> Vec<Vec<u8>> {
        self.tag += 1;
        let tag = format!("r{}", self.tag);
        write!(self.writer, "{tag} {command}\r\n").unwrap();
        let mut out = Vec::new();
        loop {
            let mut response = Vec::new();
            loop {
                let start = response.len();
                self.reader.read_until(b'\n', &mut response).unwrap();
                let line = &response[start..];
                let text = String::from_utf8_lossy(line);
                let text = text.trim_end();
                match text.rfind('{').filter(|_| text.ends_with('}')) {
                    Some(open) => {
                        let n: usize = text[open + 1..text.len() - 1].parse().unwrap();
                        let at = response.len();
                        response.resize(at + n, 0);
                        self.reader.read_exact(&mut response[at..]).unwrap();
                    }
                    None => break,
                }
            }
            if response.starts_with(format!("{tag} ").as_bytes()) {
                let text = String::from_utf8_lossy(&response);
                assert!(text.starts_with(&format!("{tag} OK")), "{command}: {text}");
                return out;
            }
            out.push(response);
        }
    }

    /// Every message of a folder: (UID, bytes), by UID.
    pub fn messages(&mut self, folder: &str) -> Vec<(u32, Vec<u8>)> {
        let selected = self.run(&format!("EXAMINE \"{folder}\""));
        let empty = selected.iter().any(|r| r.starts_with(b"* 0 EXISTS"));
        if empty {
            return Vec::new();
        }
        let mut out = Vec::new();
        for response in self.run("UID FETCH 1:* (UID BODY.PEEK[])") {
            let Some(open) = response.iter().position(|&b| b == b'{') else {
                continue;
            };
            let head = String::from_utf8_lossy(&response[..open]).to_string();
            let uid: u32 = head
                .split("UID ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no UID in {head}"));
            let close = open + response[open..].iter().position(|&b| b == b'}').unwrap();
            let n: usize = std::str::from_utf8(&response[open + 1..close])
                .unwrap()
                .parse()
                .unwrap();
            let body_at = close + 3;
            out.push((uid, response[body_at..body_at + n].to_vec()));
        }
        out.sort_by_key(|(uid, _)| *uid);
        out
    }

    /// The folder names the user has subscribed to.
    pub fn subscribed(&mut self) -> Vec<String> {
        self.run("LSUB \"\" \"*\"")
            .iter()
            .filter_map(|r| {
                let text = String::from_utf8_lossy(r).trim_end().to_string();
                text.rsplit_once(' ')
                    .map(|(_, name)| name.trim_matches('"').to_string())
            })
            .collect()
    }
}
