//! The admins' pauses and "run now" requests as the daemon's connector
//! threads see them: one thread reads both from the state every tick (two
//! queries per worker, however many connectors it runs), and tells a run
//! under way to stop after its page when its connector is paused or the
//! daemon stops.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::pipeline::Host;

/// What the connector threads know of the controls, as of the last look.
#[derive(Debug, Default)]
pub(super) struct ControlBoard {
    inner: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Connectors paused.
    paused: HashSet<String>,
    /// Connectors with a run request no worker has taken yet.
    requested: HashSet<String>,
    /// The stop flag of each run under way, by connector.
    running: HashMap<String, Arc<AtomicBool>>,
}

impl ControlBoard {
    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the connector was paused at the last look.
    pub(super) fn is_paused(&self, connector: &str) -> bool {
        self.seen().paused.contains(connector)
    }

    /// Whether a run of the connector was requested at the last look.
    pub(super) fn is_requested(&self, connector: &str) -> bool {
        self.seen().requested.contains(connector)
    }

    /// Forgets the connector's request (another worker took it).
    pub(super) fn forget_request(&self, connector: &str) {
        self.seen().requested.remove(connector);
    }

    /// The stop flag of a run of `connector` about to start, set by
    /// [`ControlBoard::look`] when the connector is paused and by
    /// [`ControlBoard::stop_all`] when the daemon stops.
    pub(super) fn run_starting(&self, connector: &str) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.seen()
            .running
            .insert(connector.to_string(), flag.clone());
        flag
    }

    /// Forgets the stop flag of the connector's run, which ended.
    pub(super) fn run_ended(&self, connector: &str) {
        self.seen().running.remove(connector);
    }

    /// Asks every run under way to stop after its current page.
    pub(super) fn stop_all(&self) {
        for flag in self.seen().running.values() {
            flag.store(true, Ordering::SeqCst);
        }
    }

    /// Reads the pauses and requests from the state; a run under way of a
    /// connector now paused is told to stop after its page. A failed read
    /// keeps what was seen before.
    pub(super) fn look(&self, host: &Host) {
        let (paused, requested) = {
            let db = host.db();
            (db.paused_connectors(), db.run_requests())
        };
        let (paused, requested) = match (paused, requested) {
            (Ok(p), Ok(r)) => (p, r),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("cannot read the connectors' pauses and run requests: {e}");
                return;
            }
        };
        let mut seen = self.seen();
        for (connector, pause) in &paused {
            if let Some(flag) = seen.running.get(connector)
                && !flag.swap(true, Ordering::SeqCst)
            {
                tracing::info!(
                    connector = connector.as_str(),
                    "paused by {}: the run stops after its current page",
                    pause.by
                );
            }
        }
        seen.paused = paused.into_iter().map(|(c, _)| c).collect();
        seen.requested = requested.into_iter().map(|(c, _)| c).collect();
    }

    /// Looks every `tick` until `stop` is set, then stops every run.
    pub(super) fn watch(&self, host: &Host, stop: &AtomicBool, tick: Duration) {
        while !stop.load(Ordering::SeqCst) {
            self.look(host);
            std::thread::sleep(tick);
        }
        self.stop_all();
    }
}
