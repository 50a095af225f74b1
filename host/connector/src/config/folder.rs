//! Where a daemon's connector files are: files named on the command line,
//! and folders whose `*.toml` files are each a connector file. A folder is
//! read again while the daemon runs, so connectors added to it, changed or
//! removed are followed without a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use connector_state::Fingerprint;

use super::ConnectorConfig;

/// A connector file that cannot be used, and why.
#[derive(Debug)]
pub struct Unreadable {
    /// The file (or folder).
    pub path: PathBuf,
    /// Why, naming the file, with what to do.
    pub error: String,
}

/// The connector files of `sources` (files as given; each folder's
/// `*.toml` files, in name order), read.
pub fn read_connectors(sources: &[PathBuf]) -> (Vec<ConnectorConfig>, Vec<Unreadable>) {
    let mut configs = Vec::new();
    let mut bad = Vec::new();
    for source in sources {
        let files = if source.is_dir() {
            match files_of(source) {
                Ok(f) => f,
                Err(e) => {
                    bad.push(Unreadable {
                        path: source.clone(),
                        error: format!(
                            "cannot list the connector folder {}: {e}; check that it exists and is readable",
                            source.display()
                        ),
                    });
                    continue;
                }
            }
        } else {
            vec![source.clone()]
        };
        for file in files {
            match ConnectorConfig::load(&file) {
                Ok(c) => configs.push(c),
                Err(e) => bad.push(Unreadable {
                    path: file,
                    error: e.to_string(),
                }),
            }
        }
    }
    (configs, bad)
}

/// Whether any source is a folder (then the daemon reads it again).
pub fn any_folder(sources: &[PathBuf]) -> bool {
    sources.iter().any(|s| s.is_dir())
}

fn files_of(folder: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// The connectors a daemon runs now, as its pages and heartbeat see them.
#[derive(Debug, Clone, Default)]
pub struct ConnectorSet {
    /// Each connector's file, read.
    pub configs: Vec<ConnectorConfig>,
    /// Each connector's files' fingerprints, by id.
    pub fingerprints: BTreeMap<String, Fingerprint>,
}

/// The set, shared with the pages and the heartbeat.
pub type SharedConnectors = Arc<RwLock<ConnectorSet>>;
