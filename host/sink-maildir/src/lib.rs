//! A Maildir++ tree laid out the way Dovecot reads it.
//!
//! `<root>/<mailbox>/` is the mailbox's INBOX (with `cur/`, `new/`, `tmp/`);
//! the folder `INBOX/Symphony` is `<root>/<mailbox>/.INBOX.Symphony/` with
//! the same three folders and an empty `maildirfolder` file. So Dovecot can
//! serve the tree with `mail_location = maildir:<root>/%u`.
//!
//! Folder name components are stored as Dovecot stores them: non-ASCII
//! characters in IMAP modified UTF-7 (RFC 3501, `&` as `&-`), and the
//! hierarchy separator `.` and the escape character `\` escaped as `\2e`
//! and `\5c` — the names Dovecot shows when its storage escape character is
//! `\` (`mailbox_list_storage_escape_char = \` in 2.4, the `listescape`
//! plugin in 2.3; without it such a folder shows the escape literally).
//!
//! Each email is written to `tmp/`, given the send time as modification time
//! (Dovecot's INTERNALDATE), optionally fsynced, and renamed into `cur/` as
//! seen (`:2,S`). Its file name is `<sent secs>.K<key>.<host>,S=<size>:2,S`
//! where `<key>` is the first 32 hex digits of SHA-256 of the Message-ID, so
//! an email already present is recognised by name, in `cur/` or `new/`.
//!
//! An email delivered to several mailboxes in one batch is written once
//! and hard-linked into the other folders, as Dovecot's own delivery does
//! (mail files are never changed in place, so the copies stay
//! independent: deleting or flagging one leaves the others). Where a link
//! cannot be made (another file system), the copy is written on its own.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, FileTimes, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use connector_model::digest::hex;
use connector_sink::{Delivery, Email, Mailbox, Receipt, Sink, SinkError, mutf7};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Longest file name most file systems accept.
const MAX_NAME: usize = 255;

/// `[sink] kind = "maildir"`: a local Maildir++ tree, one maildir per
/// mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MaildirConfig {
    /// Root folder.
    pub path: PathBuf,
    /// Whether to fsync each email (on by default).
    #[serde(default = "yes")]
    pub fsync: bool,
}

fn yes() -> bool {
    true
}

/// Writes emails into a Maildir++ tree.
#[derive(Debug)]
pub struct MaildirSink {
    root: PathBuf,
    fsync: bool,
    host: String,
    /// Per folder directory: the keys of the emails it holds, as numbers
    /// (16 bytes each, so a folder of millions stays small in memory).
    index: HashMap<PathBuf, HashSet<u128>>,
    /// Folder directories whose layout has been created.
    prepared: HashSet<PathBuf>,
    /// Makes `tmp/` names unique within the process.
    counter: u64,
}

impl MaildirSink {
    /// A sink writing under `root`, which is created when needed. With
    /// `fsync`, every email and the folder entries that name it are flushed
    /// to disk before the delivery reports success.
    pub fn new(root: PathBuf, fsync: bool) -> MaildirSink {
        MaildirSink {
            root,
            fsync,
            host: host_name(),
            index: HashMap::new(),
            prepared: HashSet::new(),
            counter: 0,
        }
    }

    /// The sink a `[sink] kind = "maildir"` table describes.
    pub fn open(config: &MaildirConfig) -> MaildirSink {
        MaildirSink::new(config.path.clone(), config.fsync)
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of a folder, relative to the root.
    fn folder_dir(mailbox: &Mailbox, folder: &str) -> Result<PathBuf, SinkError> {
        let mut dir = PathBuf::from(mailbox_dir_name(mailbox)?);
        if let Some(name) = folder_dir_name(folder)? {
            dir.push(name);
        }
        Ok(dir)
    }

    /// Calls `visit` with the sub-folder (`cur` or `new`) and name of each
    /// mail file of a folder, one at a time, until it returns a value; a
    /// sub-folder not there yet holds none.
    fn find_mail_file<T>(
        &self,
        dir: &Path,
        mut visit: impl FnMut(&'static str, &str) -> Option<T>,
    ) -> Result<Option<T>, SinkError> {
        for sub in ["cur", "new"] {
            let path = self.root.join(dir).join(sub);
            let entries = match fs::read_dir(&path) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(SinkError::io(path, source)),
            };
            for entry in entries {
                let entry = entry.map_err(|source| SinkError::io(path.clone(), source))?;
                if let Some(found) = entry.file_name().to_str().and_then(|name| visit(sub, name)) {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// The key index of a folder, read from disk the first time.
    fn folder_index(&mut self, dir: &Path) -> Result<&mut HashSet<u128>, SinkError> {
        if !self.index.contains_key(dir) {
            let mut keys = HashSet::new();
            self.find_mail_file(dir, |_, name| {
                keys.extend(key_in_name(name).map(key_number));
                None::<()>
            })?;
            self.index.insert(dir.to_path_buf(), keys);
        }
        Ok(self.index.get_mut(dir).expect("inserted above"))
    }

    /// Creates the maildir folders of `dir` (and of the mailbox's INBOX).
    fn prepare(&mut self, dir: &Path) -> Result<(), SinkError> {
        if self.prepared.contains(dir) {
            return Ok(());
        }
        let mut maildirs = vec![dir.to_path_buf()];
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            maildirs.insert(0, parent.to_path_buf());
        }
        for maildir in &maildirs {
            let abs = self.root.join(maildir);
            for sub in ["cur", "new", "tmp"] {
                let path = abs.join(sub);
                fs::create_dir_all(&path).map_err(|source| SinkError::io(path, source))?;
            }
            if maildir.parent().is_some_and(|p| !p.as_os_str().is_empty()) {
                let path = abs.join("maildirfolder");
                OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(|source| SinkError::io(path, source))?;
            }
            if self.fsync {
                sync_dir(&abs)?;
                if let Some(parent) = abs.parent() {
                    sync_dir(parent)?;
                }
            }
        }
        self.prepared.insert(dir.to_path_buf());
        Ok(())
    }

    /// Stores one delivery. `copies` holds the files this batch already
    /// wrote, by Message-ID and hash: another mailbox's copy of the same
    /// email becomes a hard link to it (as Dovecot's own delivery does), so
    /// an email sent to many mailboxes is written once.
    fn deliver_one(
        &mut self,
        delivery: &Delivery<'_>,
        copies: &mut HashMap<(String, String), PathBuf>,
    ) -> Result<Receipt, SinkError> {
        let dir = Self::folder_dir(delivery.mailbox, delivery.folder)?;
        let email = delivery.email;
        let key = key_of(&email.message_id);
        let secs = email.sent_at.div_euclid(1000).max(0);
        let name = format!("{secs}.K{key}.{},S={}:2,S", self.host, email.len());
        if self.folder_index(&dir)?.contains(&key_number(&key)) {
            return self.existing_receipt(&dir, &name, &key);
        }
        self.prepare(&dir)?;
        let abs = self.root.join(&dir);
        let target = abs.join("cur").join(&name);
        let copy_key = (email.message_id.clone(), email.sha256.clone());
        if let Some(first) = copies.get(&copy_key)
            && fs::hard_link(first, &target).is_ok()
        {
            // Any failure (another file system, too many links, the first
            // copy renamed meanwhile) falls through to writing a new file.
            if self.fsync {
                sync_dir(&abs.join("cur"))?;
            }
            self.folder_index(&dir)?.insert(key_number(&key));
            return Ok(Receipt(receipt_path(&dir, "cur", &name)));
        }

        self.counter += 1;
        let tmp_name = format!(
            "{secs}.K{key}.P{}Q{}.{}",
            std::process::id(),
            self.counter,
            self.host
        );
        let tmp = abs.join("tmp").join(tmp_name);
        if let Err(e) = self.write_file(&tmp, email, mtime(email.sent_at)) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if let Err(source) = fs::rename(&tmp, &target) {
            let _ = fs::remove_file(&tmp);
            return Err(SinkError::io(target, source));
        }
        if self.fsync {
            sync_dir(&abs.join("cur"))?;
        }
        let receipt = receipt_path(&dir, "cur", &name);
        self.folder_index(&dir)?.insert(key_number(&key));
        copies.insert(copy_key, target);
        Ok(Receipt(receipt))
    }

    /// The receipt of the file already holding the email with `key`: the
    /// name this sink gives it (the same email delivered again), else the
    /// file found by its key in `cur/` or `new/`.
    fn existing_receipt(&self, dir: &Path, name: &str, key: &str) -> Result<Receipt, SinkError> {
        if self.root.join(dir).join("cur").join(name).is_file() {
            return Ok(Receipt(receipt_path(dir, "cur", name)));
        }
        let found = self.find_mail_file(dir, |sub, file| {
            (key_in_name(file) == Some(key)).then(|| receipt_path(dir, sub, file))
        })?;
        Ok(Receipt(
            found.unwrap_or_else(|| receipt_path(dir, "cur", name)),
        ))
    }

    fn write_file(
        &self,
        path: &Path,
        email: &Email,
        modified: SystemTime,
    ) -> Result<(), SinkError> {
        let io = |source| SinkError::io(path.to_path_buf(), source);
        let mut file = File::create(path).map_err(io)?;
        email.write_to(&mut file).map_err(io)?;
        file.set_times(
            FileTimes::new()
                .set_modified(modified)
                .set_accessed(modified),
        )
        .map_err(io)?;
        if self.fsync {
            file.sync_all().map_err(io)?;
        }
        Ok(())
    }
}

impl Sink for MaildirSink {
    fn describe(&self) -> String {
        format!("maildir {}", self.root.display())
    }

    fn contains(
        &mut self,
        mailbox: &Mailbox,
        folder: &str,
        message_id: &str,
    ) -> Result<bool, SinkError> {
        let dir = Self::folder_dir(mailbox, folder)?;
        let key = key_of(message_id);
        Ok(self.folder_index(&dir)?.contains(&key_number(&key)))
    }

    fn deliver(&mut self, batch: &[Delivery<'_>]) -> Vec<Result<Receipt, SinkError>> {
        let mut copies = HashMap::new();
        batch
            .iter()
            .map(|d| self.deliver_one(d, &mut copies))
            .collect()
    }
}

/// The key of a Message-ID: first 32 hex digits of its SHA-256.
fn key_of(message_id: &str) -> String {
    hex(&Sha256::digest(message_id.as_bytes())[..16])
}

/// A key (32 lower-case hex digits) as the number the index holds.
fn key_number(key: &str) -> u128 {
    u128::from_str_radix(key, 16).unwrap_or_default()
}

/// The key in a file name written by this sink, if any.
fn key_in_name(name: &str) -> Option<&str> {
    name.match_indices(".K").find_map(|(at, _)| {
        let key = name.get(at + 2..at + 34)?;
        let after = name.get(at + 34..at + 35)?;
        (after == "."
            && key
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then_some(key)
    })
}

/// `dir/sub/name` with `/` separators.
fn receipt_path(dir: &Path, sub: &str, name: &str) -> String {
    let mut parts: Vec<String> = dir
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.push(sub.to_string());
    parts.push(name.to_string());
    parts.join("/")
}

/// The send time as a file time.
fn mtime(sent_at_ms: i64) -> SystemTime {
    let offset = Duration::from_millis(sent_at_ms.unsigned_abs());
    if sent_at_ms >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    }
    .unwrap_or(UNIX_EPOCH)
}

fn sync_dir(path: &Path) -> Result<(), SinkError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| SinkError::io(path.to_path_buf(), source))
}

/// This machine's name for file names: letters, digits, `-`, `_` and `.`
/// kept, anything else (such as Maildir's `/` and `:`) as `_`.
fn host_name() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

/// The mailbox's directory name, refusing anything that could leave the
/// root or hide as a dot folder.
fn mailbox_dir_name(mailbox: &Mailbox) -> Result<&str, SinkError> {
    let name = mailbox.as_str();
    let refuse = |reason: &str| SinkError::InvalidMailbox {
        mailbox: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(refuse("it is empty"));
    }
    if name.len() > MAX_NAME {
        return Err(refuse("it is longer than 255 bytes"));
    }
    if name.starts_with('.') {
        return Err(refuse("it starts with a dot"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(refuse("it contains `/`, `\\` or a control character"));
    }
    Ok(name)
}

/// The Maildir++ directory of a logical folder: `None` for `INBOX` (the
/// mailbox's own maildir), else `.` followed by the encoded components
/// joined with `.`.
fn folder_dir_name(folder: &str) -> Result<Option<String>, SinkError> {
    let refuse = |reason: String| SinkError::InvalidFolder {
        folder: folder.to_string(),
        reason,
    };
    let components: Vec<&str> = folder.split('/').collect();
    if components.iter().any(|c| c.is_empty()) {
        return Err(refuse(
            "it has an empty component (a leading, trailing or double `/`)".to_string(),
        ));
    }
    if let Some(c) = components.iter().find(|c| c.chars().any(char::is_control)) {
        return Err(refuse(format!(
            "component `{}` contains a control character",
            c.escape_debug()
        )));
    }
    if components.len() == 1 && components[0].eq_ignore_ascii_case("INBOX") {
        return Ok(None);
    }
    let mut name = String::from(".");
    for (i, component) in components.iter().enumerate() {
        if i > 0 {
            name.push('.');
        }
        if i == 0 && component.eq_ignore_ascii_case("INBOX") {
            name.push_str("INBOX");
        } else {
            encode_component(component, &mut name);
        }
    }
    if name.len() > MAX_NAME {
        return Err(refuse(format!(
            "its directory name would be {} bytes, more than the 255 a file system allows",
            name.len()
        )));
    }
    Ok(Some(name))
}

/// One folder name component as Dovecot stores it (see the module docs).
fn encode_component(component: &str, out: &mut String) {
    mutf7::encode_into(component, out, |c, out| match c {
        '.' => {
            out.push_str("\\2e");
            true
        }
        '\\' => {
            out.push_str("\\5c");
            true
        }
        _ => false,
    });
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use connector_email::EmailConverter;

    fn mailbox(s: &str) -> Mailbox {
        Mailbox::new(s).unwrap()
    }

    fn email(id: &str, sent_at: i64) -> Email {
        let message_id = EmailConverter::new("test", "Test").message_id(id);
        let bytes = format!("Message-ID: <{message_id}>\r\nSubject: {id}\r\n\r\nbody of {id}\r\n")
            .into_bytes();
        Email::from_bytes(message_id, bytes, sent_at)
    }

    fn deliver_ok(sink: &mut MaildirSink, mb: &Mailbox, folder: &str, e: &Email) -> Receipt {
        let mut results = sink.deliver(&[Delivery {
            mailbox: mb,
            folder,
            email: e,
        }]);
        results.pop().unwrap().unwrap()
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn layout_is_dovecot_maildir_plus_plus() {
        let root = tempfile::tempdir().unwrap();
        let mut sink = MaildirSink::new(root.path().to_path_buf(), true);
        let mb = mailbox("alice@example.com");
        let e = email("m1", 1_700_000_000_999);
        let receipt = deliver_ok(&mut sink, &mb, "INBOX/Symphony", &e);

        let user = root.path().join("alice@example.com");
        for sub in ["cur", "new", "tmp"] {
            assert!(user.join(sub).is_dir(), "INBOX {sub}");
        }
        assert!(!user.join("maildirfolder").exists());
        let folder = user.join(".INBOX.Symphony");
        assert_eq!(files(&folder), ["cur", "maildirfolder", "new", "tmp"]);
        assert_eq!(fs::metadata(folder.join("maildirfolder")).unwrap().len(), 0);
        assert!(files(&folder.join("new")).is_empty());
        assert!(files(&folder.join("tmp")).is_empty());

        let names = files(&folder.join("cur"));
        assert_eq!(names.len(), 1);
        let name = &names[0];
        let expected_prefix = format!("1700000000.K{}.", key_of(&e.message_id));
        assert!(name.starts_with(&expected_prefix), "{name}");
        assert!(name.ends_with(&format!(",S={}:2,S", e.len())), "{name}");
        assert_eq!(
            receipt.0,
            format!("alice@example.com/.INBOX.Symphony/cur/{name}")
        );
        assert_eq!(
            fs::read(root.path().join(&receipt.0)).unwrap(),
            e.in_memory().unwrap()
        );
        assert!(sink.describe().contains(&root.path().display().to_string()));
    }

    #[test]
    fn inbox_folder_is_the_mailbox_maildir_itself() {
        let root = tempfile::tempdir().unwrap();
        let mut sink = MaildirSink::new(root.path().to_path_buf(), false);
        let mb = mailbox("bob@example.com");
        let receipt = deliver_ok(&mut sink, &mb, "INBOX", &email("m", 5_000));
        assert!(
            receipt.0.starts_with("bob@example.com/cur/5.K"),
            "{}",
            receipt.0
        );
        let receipt = deliver_ok(&mut sink, &mb, "Archive/Chat", &email("m", 5_000));
        assert!(
            receipt.0.starts_with("bob@example.com/.Archive.Chat/cur/"),
            "{}",
            receipt.0
        );
    }

    #[test]
    fn folder_names_are_encoded_like_dovecot() {
        let cases = [
            ("INBOX/Symphony", ".INBOX.Symphony"),
            ("inbox/Chat", ".INBOX.Chat"),
            ("INBOX/Entwürfe", ".INBOX.Entw&APw-rfe"),
            ("INBOX/日本語", ".INBOX.&ZeVnLIqe-"),
            ("INBOX/R&D", ".INBOX.R&-D"),
            ("INBOX/v1.2", ".INBOX.v1\\2e2"),
            ("INBOX/a\\b", ".INBOX.a\\5cb"),
            ("INBOX/Chat 😀", ".INBOX.Chat &2D3eAA-"),
            ("Team/Room ~x", ".Team.Room ~x"),
        ];
        for (folder, dir) in cases {
            assert_eq!(
                folder_dir_name(folder).unwrap().as_deref(),
                Some(dir),
                "{folder}"
            );
        }
        assert_eq!(folder_dir_name("INBOX").unwrap(), None);
        assert_eq!(folder_dir_name("Inbox").unwrap(), None);
    }

    #[test]
    fn invalid_folders_are_refused_and_not_retryable() {
        let long = format!("INBOX/{}", "x".repeat(300));
        for folder in [
            "",
            "/",
            "INBOX/",
            "/INBOX",
            "INBOX//x",
            "INBOX/a\nb",
            long.as_str(),
        ] {
            let err = folder_dir_name(folder).unwrap_err();
            assert!(matches!(err, SinkError::InvalidFolder { .. }), "{folder:?}");
            assert!(!err.is_retryable());
            assert!(err.to_string().contains("`folder` setting"), "{err}");
        }
        let root = tempfile::tempdir().unwrap();
        let mut sink = MaildirSink::new(root.path().to_path_buf(), false);
        let mb = mailbox("a@example.com");
        assert!(sink.contains(&mb, "INBOX//x", "id@x").is_err());
    }

    #[test]
    fn unsafe_mailbox_names_are_refused() {
        for name in ["../etc@x", ".hidden@x", "a/b@x", "a\\b@x", ""] {
            let mb = Mailbox::new_unchecked(name);
            let err = mailbox_dir_name(&mb).unwrap_err();
            assert!(matches!(err, SinkError::InvalidMailbox { .. }), "{name}");
            assert!(!err.is_retryable());
        }
        let root = tempfile::tempdir().unwrap();
        let mut sink = MaildirSink::new(root.path().join("store"), false);
        let bad = Mailbox::new_unchecked("../escape@x");
        let e = email("m", 0);
        let results = sink.deliver(&[Delivery {
            mailbox: &bad,
            folder: "INBOX",
            email: &e,
        }]);
        assert!(results[0].is_err());
        assert!(!root.path().join("escape@x").exists());
        assert!(!root.path().join("store").exists());
    }

    #[test]
    fn delivering_twice_keeps_one_copy_and_returns_its_receipt() {
        let root = tempfile::tempdir().unwrap();
        let mb = mailbox("alice@example.com");
        let e = email("m1", 1_000);
        let mut sink = MaildirSink::new(root.path().to_path_buf(), false);
        let first = deliver_ok(&mut sink, &mb, "INBOX/Chat", &e);
        let second = deliver_ok(&mut sink, &mb, "INBOX/Chat", &e);
        assert_eq!(first, second);

        // A new sink (a new run) finds it on disk.
        let mut fresh = MaildirSink::new(root.path().to_path_buf(), false);
        assert!(fresh.contains(&mb, "INBOX/Chat", &e.message_id).unwrap());
        assert_eq!(deliver_ok(&mut fresh, &mb, "INBOX/Chat", &e), first);
        let cur = root.path().join("alice@example.com/.INBOX.Chat/cur");
        assert_eq!(files(&cur).len(), 1);

        // Another folder or mailbox is another copy.
        let other = deliver_ok(&mut fresh, &mb, "INBOX/Other", &e);
        assert_ne!(other, first);
        let bob = deliver_ok(&mut fresh, &mailbox("bob@example.com"), "INBOX/Chat", &e);
        assert_ne!(bob, first);
    }

    #[test]
    fn batch_gives_one_result_per_delivery_in_order() {
        let root = tempfile::tempdir().unwrap();
        let mut sink = MaildirSink::new(root.path().to_path_buf(), false);
        let mb = mailbox("alice@example.com");
        let (a, b) = (email("a", 1_000), email("b", 2_000));
        let batch = [
            Delivery {
                mailbox: &mb,
                folder: "INBOX/Chat",
                email: &a,
            },
            Delivery {
                mailbox: &mb,
                folder: "INBOX//bad",
                email: &b,
            },
            Delivery {
                mailbox: &mb,
                folder: "INBOX/Chat",
                email: &b,
            },
            Delivery {
                mailbox: &mb,
                folder: "INBOX/Chat",
                email: &a,
            },
        ];
        let results = sink.deliver(&batch);
        assert_eq!(results.len(), 4);
        assert!(results[0].as_ref().unwrap().0.contains(".K"));
        assert!(matches!(results[1], Err(SinkError::InvalidFolder { .. })));
        assert!(
            results[2]
                .as_ref()
                .unwrap()
                .0
                .starts_with("alice@example.com/.INBOX.Chat/cur/2.K")
        );
        assert_eq!(results[3].as_ref().unwrap(), results[0].as_ref().unwrap());
    }

    #[test]
    fn contains_finds_delivered_mail_in_cur_and_new_and_caches_per_folder() {
        let root = tempfile::tempdir().unwrap();
        let mb = mailbox("alice@example.com");
        let (a, b) = (email("a", 1_000), email("b", 2_000));
        let mut sink = MaildirSink::new(root.path().to_path_buf(), false);
        assert!(!sink.contains(&mb, "INBOX/Chat", &a.message_id).unwrap());
        // Reading an absent folder creates nothing.
        assert!(!root.path().join("alice@example.com").exists());
        deliver_ok(&mut sink, &mb, "INBOX/Chat", &a);
        assert!(sink.contains(&mb, "INBOX/Chat", &a.message_id).unwrap());
        assert!(!sink.contains(&mb, "INBOX", &a.message_id).unwrap());

        // A message Dovecot left in new/ counts too.
        let new_dir = root.path().join("alice@example.com/.INBOX.Chat/new");
        fs::write(
            new_dir.join(format!("2.K{}.otherhost,S=10", key_of(&b.message_id))),
            b"x",
        )
        .unwrap();
        let mut fresh = MaildirSink::new(root.path().to_path_buf(), false);
        assert!(fresh.contains(&mb, "INBOX/Chat", &b.message_id).unwrap());
        let receipt = deliver_ok(&mut fresh, &mb, "INBOX/Chat", &b);
        assert!(receipt.0.contains("/new/"), "{}", receipt.0);

        // The first sink read the folder once and does not see later files.
        assert!(!sink.contains(&mb, "INBOX/Chat", &b.message_id).unwrap());
    }

    #[test]
    fn crash_leftovers_in_tmp_are_ignored() {
        let root = tempfile::tempdir().unwrap();
        let mb = mailbox("alice@example.com");
        let e = email("m", 3_000);
        let tmp = root.path().join("alice@example.com/.INBOX.Chat/tmp");
        fs::create_dir_all(&tmp).unwrap();
        let leftover = tmp.join(format!("3.K{}.P1Q1.host", key_of(&e.message_id)));
        fs::write(&leftover, b"half an ema").unwrap();

        let mut sink = MaildirSink::new(root.path().to_path_buf(), true);
        assert!(!sink.contains(&mb, "INBOX/Chat", &e.message_id).unwrap());
        let receipt = deliver_ok(&mut sink, &mb, "INBOX/Chat", &e);
        assert!(receipt.0.contains("/cur/"));
        assert_eq!(
            fs::read(root.path().join(&receipt.0)).unwrap(),
            e.in_memory().unwrap()
        );
        assert!(leftover.exists(), "other files in tmp/ are left alone");
    }

    #[test]
    fn file_time_is_the_send_time() {
        let root = tempfile::tempdir().unwrap();
        let mut sink = MaildirSink::new(root.path().to_path_buf(), true);
        let mb = mailbox("alice@example.com");
        let receipt = deliver_ok(&mut sink, &mb, "INBOX", &email("m", 1_600_000_000_250));
        let meta = fs::metadata(root.path().join(&receipt.0)).unwrap();
        assert_eq!(meta.mtime(), 1_600_000_000);
        assert_eq!(meta.mtime_nsec(), 250_000_000);

        let old = deliver_ok(&mut sink, &mb, "INBOX", &email("old", -10_000));
        assert!(old.0.starts_with("alice@example.com/cur/0.K"), "{}", old.0);
        let meta = fs::metadata(root.path().join(&old.0)).unwrap();
        assert_eq!(meta.mtime(), -10);
    }

    #[test]
    fn concurrent_sinks_deliver_to_many_folders_safely() {
        let root = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let root = root.path().to_path_buf();
                std::thread::spawn(move || {
                    let mut sink = MaildirSink::new(root, true);
                    let mb = mailbox("alice@example.com");
                    for i in 0..20 {
                        let folder = format!("INBOX/Room {}", i % 3);
                        let e = email(&format!("t{t}-m{i}"), 1_000 * i);
                        deliver_ok(&mut sink, &mb, &folder, &e);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let user = root.path().join("alice@example.com");
        let total: usize = (0..3)
            .map(|i| files(&user.join(format!(".INBOX.Room {i}/cur"))).len())
            .sum();
        assert_eq!(total, 80);
        for i in 0..3 {
            assert!(files(&user.join(format!(".INBOX.Room {i}/tmp"))).is_empty());
        }
    }

    #[test]
    fn unwritable_root_is_a_retryable_io_error() {
        let root = tempfile::tempdir().unwrap();
        let file_root = root.path().join("not-a-dir");
        fs::write(&file_root, b"").unwrap();
        let mut sink = MaildirSink::new(file_root, false);
        let mb = mailbox("alice@example.com");
        let e = email("m", 0);
        let results = sink.deliver(&[Delivery {
            mailbox: &mb,
            folder: "INBOX",
            email: &e,
        }]);
        let err = results.into_iter().next().unwrap().unwrap_err();
        assert!(matches!(err, SinkError::Io { .. }), "{err}");
        assert!(err.is_retryable());
        assert!(err.to_string().contains("retries on its own"), "{err}");
    }

    #[test]
    fn keys_are_found_only_in_names_this_sink_writes() {
        let key = "0123456789abcdef0123456789abcdef";
        assert_eq!(key_in_name(&format!("1.K{key}.host,S=1:2,S")), Some(key));
        assert_eq!(key_in_name(&format!("1.K{key}.P1Q1.host")), Some(key));
        assert_eq!(key_in_name("1700000000.M1P2.host,S=10:2,S"), None);
        assert_eq!(key_in_name(&format!("1.K{}.host", &key[..31])), None);
        assert_eq!(
            key_in_name(&format!("1.K{}.host", key.to_uppercase())),
            None
        );
    }

    #[test]
    fn one_email_for_many_mailboxes_is_written_once_and_linked() {
        use std::os::unix::fs::MetadataExt;
        let root = tempfile::tempdir().unwrap();
        let mut sink = MaildirSink::new(root.path().to_path_buf(), true);
        let e = email("m1", 1_700_000_000_000);
        let other = email("m2", 1_700_000_000_000);
        let boxes = [
            mailbox("a@x.test"),
            mailbox("b@x.test"),
            mailbox("c@x.test"),
        ];
        let mut batch: Vec<Delivery<'_>> = boxes
            .iter()
            .map(|mb| Delivery {
                mailbox: mb,
                folder: "INBOX/Chat",
                email: &e,
            })
            .collect();
        batch.push(Delivery {
            mailbox: &boxes[0],
            folder: "INBOX/Chat",
            email: &other,
        });
        let receipts: Vec<Receipt> = sink
            .deliver(&batch)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let meta: Vec<fs::Metadata> = receipts
            .iter()
            .map(|r| fs::metadata(root.path().join(&r.0)).unwrap())
            .collect();
        assert_eq!(meta[0].ino(), meta[1].ino());
        assert_eq!(meta[0].ino(), meta[2].ino());
        assert_eq!(meta[0].nlink(), 3);
        assert_ne!(meta[3].ino(), meta[0].ino(), "another email, another file");
        for r in &receipts[..3] {
            assert_eq!(
                fs::read(root.path().join(&r.0)).unwrap(),
                e.in_memory().unwrap()
            );
        }
        // Deleting one mailbox's copy leaves the others.
        fs::remove_file(root.path().join(&receipts[0].0)).unwrap();
        assert!(root.path().join(&receipts[1].0).is_file());
    }

    #[test]
    fn a_copy_is_written_on_its_own_when_the_first_one_is_gone() {
        let root = tempfile::tempdir().unwrap();
        let mut sink = MaildirSink::new(root.path().to_path_buf(), false);
        let e = email("m1", 1_700_000_000_000);
        let (a, b) = (mailbox("a@x.test"), mailbox("b@x.test"));
        let mut copies = HashMap::new();
        let first = sink
            .deliver_one(
                &Delivery {
                    mailbox: &a,
                    folder: "INBOX/Chat",
                    email: &e,
                },
                &mut copies,
            )
            .unwrap();
        // Renamed away (say, a flag changed) before the next copy.
        fs::remove_file(root.path().join(&first.0)).unwrap();
        let second = sink
            .deliver_one(
                &Delivery {
                    mailbox: &b,
                    folder: "INBOX/Chat",
                    email: &e,
                },
                &mut copies,
            )
            .unwrap();
        assert_eq!(
            fs::read(root.path().join(&second.0)).unwrap(),
            e.in_memory().unwrap()
        );
    }
}
