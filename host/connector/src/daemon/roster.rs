//! The connectors a daemon runs, one thread each. Connectors named by file
//! run for the daemon's life; those in a folder are followed: every
//! [`RESCAN`] the folder is read again, and a connector whose file came is
//! started, one whose file (or plugin, or user map) changed is restarted
//! with it, and one whose file went is stopped. A connector stopped or
//! restarted finishes the page it is on first, as at a daemon stop, so
//! nothing is lost or delivered twice.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use connector_state::Fingerprint;

use crate::config::ConnectorConfig;
use crate::config::folder::{ConnectorSet, SharedConnectors, read_connectors};
use crate::pipeline::fingerprint;

/// How often folders of connector files are read again.
pub const RESCAN: Duration = Duration::from_secs(2);

/// Starts a connector's thread, which runs until its flag is set.
pub(super) type Spawn =
    Box<dyn Fn(ConnectorConfig, Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> + Send>;

struct Running {
    config: ConnectorConfig,
    fingerprint: Fingerprint,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// The connector threads, and where their files are.
pub(super) struct Roster {
    sources: Vec<PathBuf>,
    follow: bool,
    running: BTreeMap<String, Running>,
    /// Threads asked to stop, each with the file (and its fingerprint) to
    /// start again once it has (a changed connector), or none (a removed
    /// one).
    leaving: Vec<(Running, Option<(ConnectorConfig, Fingerprint)>)>,
    spawn: Spawn,
    shared: SharedConnectors,
    /// The last problem logged per file, so each is logged once.
    reported: BTreeMap<PathBuf, String>,
    /// The connectors' ids in the order their files were read.
    order: Vec<String>,
}

impl Roster {
    /// Starts a thread for each connector of `shared` (read from
    /// `sources`).
    pub(super) fn start(
        sources: Vec<PathBuf>,
        spawn: Spawn,
        shared: SharedConnectors,
    ) -> Result<Roster, (String, std::io::Error)> {
        let follow = crate::config::folder::any_folder(&sources);
        let ConnectorSet {
            configs,
            mut fingerprints,
        } = shared.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut roster = Roster {
            sources,
            follow,
            running: BTreeMap::new(),
            leaving: Vec::new(),
            spawn,
            shared,
            reported: BTreeMap::new(),
            order: configs.iter().map(|c| c.id.clone()).collect(),
        };
        for config in configs {
            let id = config.id.clone();
            let print = fingerprints.remove(&id).unwrap_or_default();
            roster.launch(config, print).map_err(|e| (id, e))?;
        }
        Ok(roster)
    }

    fn launch(&mut self, config: ConnectorConfig, fingerprint: Fingerprint) -> std::io::Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (self.spawn)(config.clone(), stop.clone())?;
        self.running.insert(
            config.id.clone(),
            Running {
                fingerprint,
                config,
                stop,
                thread,
            },
        );
        Ok(())
    }

    /// Starts a connector while the daemon runs; a failure is logged.
    fn launch_logged(&mut self, config: ConnectorConfig, fingerprint: Fingerprint) {
        let id = config.id.clone();
        if let Err(e) = self.launch(config, fingerprint) {
            tracing::error!(
                connector = id,
                "cannot start its thread: {e}; the machine is out of resources"
            );
        }
    }

    /// Follows the folders until `stop` is set; then stops every
    /// connector and waits for each to finish its page.
    pub(super) fn supervise(mut self, stop: &AtomicBool, tick: Duration) {
        let mut next_scan = Instant::now() + RESCAN;
        while !stop.load(Ordering::SeqCst) {
            if self.follow && Instant::now() >= next_scan {
                self.rescan();
                next_scan = Instant::now() + RESCAN;
            }
            self.settle();
            std::thread::sleep(tick);
        }
        for r in self.running.values() {
            r.stop.store(true, Ordering::SeqCst);
        }
        for (r, _) in &self.leaving {
            r.stop.store(true, Ordering::SeqCst);
        }
        for (_, r) in std::mem::take(&mut self.running) {
            let _ = r.thread.join();
        }
        for (r, _) in self.leaving.drain(..) {
            let _ = r.thread.join();
        }
    }

    fn log_once(&mut self, path: PathBuf, problem: String) {
        if self.reported.get(&path) != Some(&problem) {
            tracing::error!("{problem}");
            self.reported.insert(path, problem);
        }
    }

    fn rescan(&mut self) {
        let (configs, unreadable) = read_connectors(&self.sources);
        let mut seen: Vec<ConnectorConfig> = Vec::new();
        let mut troubled = Vec::new();
        for bad in unreadable {
            troubled.push(bad.path.clone());
            self.log_once(
                bad.path,
                format!(
                    "{}; the connector keeps running as it was, if it ran",
                    bad.error
                ),
            );
        }
        for config in configs {
            if let Some(first) = seen.iter().find(|c| c.id == config.id) {
                let problem = format!(
                    "{} uses the id `{}` of {}; each connector needs its own id, since the id keys its checkpoint and ledger: this file is left out",
                    config.path.display(),
                    config.id,
                    first.path.display()
                );
                self.log_once(config.path.clone(), problem);
                continue;
            }
            self.reported.remove(&config.path);
            seen.push(config);
        }
        // A file that cannot be read now keeps its connector running.
        let keep: Vec<String> = self
            .running
            .iter()
            .filter(|(_, r)| troubled.contains(&r.config.path))
            .map(|(id, _)| id.clone())
            .collect();
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|id| !seen.iter().any(|c| &c.id == *id) && !keep.contains(id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(r) = self.running.remove(&id) {
                tracing::info!(connector = id, "its file is gone: stopping after its page");
                r.stop.store(true, Ordering::SeqCst);
                self.leaving.push((r, None));
            }
        }
        let mut order: Vec<String> = seen.iter().map(|c| c.id.clone()).collect();
        order.extend(keep);
        self.order = order;
        for config in seen {
            let id = config.id.clone();
            let print = fingerprint(&config);
            let waiting = self.leaving.iter_mut().find(|(r, _)| r.config.id == id);
            if let Some((_, next)) = waiting {
                *next = Some((config, print));
                continue;
            }
            match self.running.get(&id) {
                Some(r) if r.fingerprint == print => {}
                Some(_) => {
                    let r = self.running.remove(&id).expect("found above");
                    tracing::info!(
                        connector = id,
                        "its files changed: restarting after its page"
                    );
                    r.stop.store(true, Ordering::SeqCst);
                    self.leaving.push((r, Some((config, print))));
                }
                None => {
                    tracing::info!(connector = id, "new connector file: starting");
                    self.launch_logged(config, print);
                }
            }
        }
        self.publish();
    }

    /// Waits for no one: starts again the connectors whose old thread has
    /// ended.
    fn settle(&mut self) {
        let mut i = 0;
        let mut changed = false;
        while i < self.leaving.len() {
            if !self.leaving[i].0.thread.is_finished() {
                i += 1;
                continue;
            }
            let (old, next) = self.leaving.swap_remove(i);
            let _ = old.thread.join();
            changed = true;
            if let Some((config, print)) = next {
                self.launch_logged(config, print);
            }
        }
        if changed {
            self.publish();
        }
    }

    /// Tells the pages and the heartbeat which connectors run now (those
    /// restarting included).
    fn publish(&self) {
        let restarting = self
            .leaving
            .iter()
            .filter_map(|(_, next)| next.as_ref().map(|(c, p)| (c, p)));
        let mut now: Vec<(&ConnectorConfig, &Fingerprint)> = self
            .running
            .values()
            .map(|r| (&r.config, &r.fingerprint))
            .chain(restarting)
            .collect();
        now.sort_by_key(|(c, _)| {
            self.order
                .iter()
                .position(|id| *id == c.id)
                .unwrap_or(usize::MAX)
        });
        let set = ConnectorSet {
            fingerprints: now
                .iter()
                .map(|(c, p)| (c.id.clone(), (*p).clone()))
                .collect(),
            configs: now.into_iter().map(|(c, _)| c.clone()).collect(),
        };
        *self.shared.write().unwrap_or_else(|p| p.into_inner()) = set;
    }
}
