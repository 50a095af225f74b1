//! Storage that fails under a run: a mail store or state folder that fills
//! up (a small tmpfs the test mounts), and a state database that is locked,
//! read-only or damaged. Each gives an error that says what to do, loses
//! nothing, and a run once the storage is mended delivers exactly what is
//! missing. The tests mount file systems, so they run as root (as CI does);
//! elsewhere they fail saying so.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use connector_e2e::ops::*;

const BIN: &str = env!("CARGO_BIN_EXE_connector-cli");

/// A tmpfs mounted over a folder for the life of the value.
struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount` reads it: `512k`, `64m`) at
    /// `at`, creating the folder.
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        mount(
            &["-t", "tmpfs", "-o", &format!("size={size},mode=0700")],
            at,
        );
        Tmpfs {
            at: at.to_path_buf(),
        }
    }

    /// Mounts it again with `options` (`size=64m`, `ro`, `rw`), keeping its
    /// files.
    fn remount(&self, options: &str) {
        mount(&["-o", &format!("remount,{options}")], &self.at);
    }

    /// Bytes in use.
    fn used(&self) -> u64 {
        let path = std::ffi::CString::new(self.at.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statvfs writes into the zeroed struct it is given.
        let stat = unsafe {
            let mut stat: libc::statvfs = std::mem::zeroed();
            assert_eq!(libc::statvfs(path.as_ptr(), &mut stat), 0);
            stat
        };
        (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

fn mount(args: &[&str], at: &Path) {
    let out = Command::new("mount")
        .args(args)
        .arg("tmpfs")
        .arg(at)
        .output()
        .expect("running mount");
    assert!(
        out.status.success(),
        "mount {args:?} {} failed: {}; these tests mount a small tmpfs to fill it, so they run as root (as CI does)",
        at.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_once(setup: &ChatSetup) -> Output {
    connector(
        Path::new(BIN),
        &setup.state,
        &["run", "--once", setup.config.to_str().unwrap()],
    )
}

/// Asserts that `out` failed and its stderr says each of `phrases`.
fn assert_failed_saying(out: &Output, phrases: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the run should fail: {stderr}");
    eprintln!("as expected, it failed saying:\n{stderr}");
    for phrase in phrases {
        assert!(
            stderr.contains(phrase),
            "the error says {phrase:?}:\n{stderr}"
        );
    }
    stderr
}

/// Emails left in any Maildir `tmp/` folder under `mail` (half-written
/// files a failed delivery should have removed).
fn half_written(mail: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![mail.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if folder.file_name().is_some_and(|n| n == "tmp") {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn a_full_mail_store_fails_the_run_saying_so_and_a_run_with_room_delivers_exactly_what_is_missing()
{
    let dir = tempfile::tempdir().unwrap();
    let setup = chat_setup(dir.path(), "chat", 400, 25, "1h");
    // About 900 emails of a page (4 KiB) each on tmpfs: 512 KiB holds some.
    let mail = Tmpfs::mount(&setup.mail, "512k");

    let out = run_once(&setup);
    assert_failed_saying(&out, &["No space left on device", "free space"]);
    assert_eq!(half_written(&setup.mail), Vec::<PathBuf>::new());

    mail.remount("size=64m");
    succeeded(run_once(&setup), "the run once there is room");
    assert_mailboxes_match(&setup.mail, &setup.truth);
    assert_eq!(half_written(&setup.mail), Vec::<PathBuf>::new());
}

#[test]
fn a_full_state_folder_fails_the_run_saying_so_and_a_run_with_room_delivers_exactly_what_is_missing()
 {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = chat_setup(dir.path(), "chat", 50, 25, "1h");
    let state = Tmpfs::mount(&setup.state, "256m");
    succeeded(run_once(&setup), "the first run");
    // Room for the state as it is and a little more: the next run's
    // ledger and run history outgrow it.
    state.remount(&format!("size={}", state.used() + 64 * 1024));
    append_messages(&mut setup, 50, 2000);

    let out = run_once(&setup);
    assert_failed_saying(&out, &["full", "free space"]);

    state.remount("size=256m");
    succeeded(run_once(&setup), "the run once there is room");
    assert_mailboxes_match(&setup.mail, &setup.truth);
}

#[test]
fn a_read_only_state_folder_is_refused_saying_so_and_nothing_is_delivered_twice_once_writable() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = chat_setup(dir.path(), "chat", 50, 25, "1h");
    let state = Tmpfs::mount(&setup.state, "256m");
    succeeded(run_once(&setup), "the first run");
    append_messages(&mut setup, 50, 50);

    state.remount("ro");
    let out = run_once(&setup);
    assert_failed_saying(&out, &["read-only"]);

    state.remount("rw");
    succeeded(run_once(&setup), "the run once writable");
    assert_mailboxes_match(&setup.mail, &setup.truth);
}

#[test]
fn a_state_database_locked_by_another_process_is_refused_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = chat_setup(dir.path(), "chat", 50, 25, "1h");
    succeeded(run_once(&setup), "the first run");
    append_messages(&mut setup, 50, 50);

    let holder = rusqlite::Connection::open(setup.state.join("state.db")).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let out = run_once(&setup);
    assert_failed_saying(&out, &["locked"]);
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);

    succeeded(run_once(&setup), "the run once the lock is gone");
    assert_mailboxes_match(&setup.mail, &setup.truth);
}

#[test]
fn a_damaged_state_database_is_refused_saying_to_restore_it_and_is_never_reset() {
    let dir = tempfile::tempdir().unwrap();
    let setup = chat_setup(dir.path(), "chat", 50, 25, "1h");
    succeeded(run_once(&setup), "the first run");
    let db = setup.state.join("state.db");
    // Let SQLite fold its write-ahead log into the file first.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    let mut bytes = std::fs::read(&db).unwrap();
    // Past the header: the schema and the tables' pages.
    for b in bytes.iter_mut().skip(100).step_by(7) {
        *b ^= 0x5a;
    }
    std::fs::write(&db, &bytes).unwrap();

    for args in [
        vec!["run", "--once", setup.config.to_str().unwrap()],
        vec!["status", setup.config.to_str().unwrap()],
    ] {
        let out = connector(Path::new(BIN), &setup.state, &args);
        assert_failed_saying(&out, &["restore", "backup"]);
        assert_eq!(
            std::fs::read(&db).unwrap(),
            bytes,
            "`connector {args:?}` left the damaged file as it was"
        );
    }
}
