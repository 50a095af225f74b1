//! Where a host spools big emails while it delivers them:
//! `<state>/spool/<pid>-<start>-<n>/`, one folder per [`super::Host`],
//! removed when the host is dropped. A process that was killed cannot
//! remove its folder, so opening a host removes the folders of processes
//! that no longer run (a process is told by its id and its start time, so
//! a reused id is not mistaken for it).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use connector_state::StateError;

/// Tells apart the hosts of one process.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A host's spool folder; removed on drop.
#[derive(Debug)]
pub(super) struct SpoolDir {
    path: PathBuf,
}

impl SpoolDir {
    /// Creates this host's folder under `<state_dir>/spool`, first removing
    /// the folders of processes that no longer run.
    pub fn create(state_dir: &Path) -> Result<SpoolDir, StateError> {
        let root = state_dir.join("spool");
        let io = |path: &Path, e: std::io::Error| {
            StateError::Io(format!(
                "cannot create the spool folder {}: {e}; check free space and permissions in the state folder",
                path.display()
            ))
        };
        std::fs::create_dir_all(&root).map_err(|e| io(&root, e))?;
        remove_stale(&root);
        let tag =
            process_tag(std::process::id()).unwrap_or_else(|| format!("{}-0", std::process::id()));
        let path = root.join(format!("{tag}-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&path).map_err(|e| io(&path, e))?;
        Ok(SpoolDir { path })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SpoolDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `<pid>-<start time>` of a running process, from `/proc` (`None` where
/// there is no `/proc` or no such process).
fn process_tag(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields are counted
    // after its closing parenthesis, where field 3 (the state) begins; the
    // start time is field 22.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let start = after_name.split_whitespace().nth(19)?;
    Some(format!("{pid}-{start}"))
}

/// Removes the folders under `root` whose process no longer runs. Folders
/// whose names this module did not write, and every folder when `/proc`
/// cannot tell, are left alone.
fn remove_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let mut parts = name.splitn(3, '-');
        let (Some(pid), Some(start), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if start == "0" || !Path::new("/proc/self/stat").exists() {
            continue;
        }
        if process_tag(pid).as_deref() != Some(&format!("{pid}-{start}")) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_of_dead_processes_go_and_live_ones_stay() {
        let state = tempfile::tempdir().unwrap();
        let root = state.path().join("spool");
        // A process that does not run (pids never get this high on Linux).
        let dead = root.join("4294967290-12345-0");
        std::fs::create_dir_all(dead.join("x")).unwrap();
        std::fs::write(dead.join("x/email-1.eml"), b"left by a crash").unwrap();
        // Another host of this very process.
        let mine = root.join(format!("{}-7", process_tag(std::process::id()).unwrap()));
        std::fs::create_dir_all(&mine).unwrap();
        // Not written by this module.
        let other = root.join("keep-me");
        std::fs::create_dir_all(&other).unwrap();

        let spool = SpoolDir::create(state.path()).unwrap();
        assert!(spool.path().is_dir());
        assert!(!dead.exists(), "a dead process's spool is removed");
        assert!(mine.is_dir(), "a live process's spool stays");
        assert!(other.is_dir());

        let path = spool.path().to_path_buf();
        drop(spool);
        assert!(!path.exists(), "a host removes its own spool");
    }

    #[test]
    fn a_process_is_told_by_its_id_and_start_time() {
        let tag = process_tag(std::process::id()).unwrap();
        assert!(tag.starts_with(&format!("{}-", std::process::id())));
        assert_eq!(process_tag(std::process::id()), Some(tag));
        assert_eq!(process_tag(4_294_967_290), None);
    }
}
