//! What operators see: per connector its state (idle, running, failing), its
//! last run, counts, next run and last error with what to do about it. The
//! same report is printed by `connector status`, served by the daemon as
//! `/status.json` and as Prometheus metrics at `/metrics`, and shown by the
//! console's pages (see [`crate::console`]).

mod render;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::config::ConnectorConfig;
use crate::pipeline::RunObserver;
use connector_model::time::{iso, now_ms};
use connector_runtime::PluginManifest;
use connector_state::{
    ConnectorTotals, Fingerprint, LeaseRecord, PARTITION_MARK, RunCounts, RunId, RunKind,
    RunOutcome, RunRecord, StateError, StateStore, TranscriptBacklog, UnreadableRecord,
    WorkerRecord, fingerprint_conflict,
};

pub(crate) use render::{capitalized, lease_text, paused_text, standing, transcripts_text};
pub use render::{render_metrics, render_text, render_workers};

/// Where a connector stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectorState {
    /// Not running; the last run did not fail.
    Idle,
    /// A run is going on.
    Running,
    /// Not running; the last run failed.
    Failing,
}

impl ConnectorState {
    /// `idle`, `running` or `failing`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorState::Idle => "idle",
            ConnectorState::Running => "running",
            ConnectorState::Failing => "failing",
        }
    }
}

/// A run as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunView {
    /// The run's id (`connector log ID` writes its admin log).
    pub id: RunId,
    /// `run`, `backfill` or `redeliver`.
    pub kind: RunKind,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// End, RFC 3339 UTC; `None` while running or when the process died.
    pub finished_at: Option<String>,
    /// `succeeded`, `failed`, `interrupted`, or `running` (unfinished).
    pub outcome: String,
    /// What it did.
    pub counts: RunCounts,
}

/// The last error and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ErrorView {
    /// The failed run.
    pub run: RunId,
    /// When it ended, RFC 3339 UTC.
    pub at: String,
    /// The error, with its own advice.
    pub message: String,
    /// What to do next.
    pub action: String,
}

/// A connector's status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectorStatus {
    /// The connector's id.
    pub id: String,
    /// Its connector file.
    pub config: String,
    /// The plugin and its version, or why its manifest is unreadable.
    pub plugin: String,
    /// The schedule as written (`24h`, `0 2 * * *`).
    pub schedule: String,
    /// Idle, running or failing.
    pub state: ConnectorState,
    /// The run going on now, with what it committed so far.
    pub current_run: Option<RunView>,
    /// The last finished run (not counting redeliveries).
    pub last_run: Option<RunView>,
    /// When the last successful run finished, RFC 3339 UTC.
    pub last_success_at: Option<String>,
    /// When the next scheduled run is due, RFC 3339 UTC (a time in the past
    /// means "as soon as the daemon gets to it").
    pub next_run_at: Option<String>,
    /// (item, mailbox) pairs in the delivery ledger, by every run kept or
    /// pruned: what the mailboxes hold.
    pub deliveries_in_ledger: u64,
    /// Items in the quarantine now (a run's `quarantined` counts what that
    /// run put or kept there; redelivery takes items out).
    pub in_quarantine: u64,
    /// Partitions of a partitioned source with a checkpoint of their own.
    pub partitions: u64,
    /// Totals over the runs kept.
    pub totals: ConnectorTotals,
    /// The last run's error, when the last run failed.
    pub last_error: Option<ErrorView>,
    /// Who holds (or last held) the connector's lease.
    pub lease: Option<LeaseView>,
    /// Set when a live worker runs the connector with other files than
    /// this configuration's: which files differ, and what to do.
    pub refused: Option<String>,
    /// The conversations the source could not read in the last run (and
    /// any run since), with why and the fix; each run asks again.
    pub unreadable: Vec<UnreadableRecord>,
    /// With `delivery` `transcripts` or `both`: the days still open and
    /// the transcripts waiting to be sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcripts: Option<TranscriptBacklog>,
    /// Set while an admin has the connector paused: no run starts until
    /// it is resumed. Absent from the JSON when not paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<PauseView>,
}

/// A connector's pause as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PauseView {
    /// Who paused it (a console user, `cli:<OS user>`).
    pub by: String,
    /// When, RFC 3339 UTC.
    pub at: String,
}

/// A connector's lease as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseView {
    /// The worker id of the holder.
    pub owner: String,
    /// The fencing token of its run.
    pub token: u64,
    /// Whether the lease is held now (not released or lapsed).
    pub held: bool,
}

/// A worker of the fleet (one process sharing the state).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WorkerView {
    /// `host:pid:start`.
    pub id: String,
    /// Its machine.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// The connector release it runs.
    pub version: String,
    /// When it started, RFC 3339 UTC.
    pub started_at: String,
    /// Its last heartbeat, RFC 3339 UTC.
    pub heartbeat_at: String,
    /// Seconds since its last heartbeat, on the state's clock.
    pub heartbeat_age_secs: f64,
    /// Whether it sent a heartbeat within the lease time.
    pub alive: bool,
    /// The connectors it is configured to run.
    pub configured: Vec<String>,
    /// The connectors whose lease it holds now, and how many partitions of
    /// partitioned ones (`symphony (3 partitions)`).
    pub holds: Vec<String>,
}

/// Every connector's status, and the fleet's.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatusReport {
    /// When the report was made, RFC 3339 UTC.
    pub generated_at: String,
    /// The connectors, in the order configured.
    pub connectors: Vec<ConnectorStatus>,
    /// The workers sharing the state (daemons send heartbeats).
    pub workers: Vec<WorkerView>,
    /// Page commits refused because their worker's lease had been taken
    /// over (each one stored nothing).
    pub fenced_commits: u64,
}

/// The fleet as `db` records it: each worker, alive when its heartbeat is
/// within `lease_time`, with the leases it holds.
pub fn workers(
    db: &dyn StateStore,
    lease_time: std::time::Duration,
) -> Result<Vec<WorkerView>, StateError> {
    let clock = db.clock_ms()?;
    let leases = db.leases()?;
    Ok(db
        .workers()?
        .into_iter()
        .map(|w| worker_view(w, &leases, clock, lease_time))
        .collect())
}

/// What `worker` holds of `leases` at `clock`: connectors by name, the
/// partitions of one counted together.
fn held_by(worker: &str, leases: &[LeaseRecord], clock: i64) -> Vec<String> {
    let mut partitions: BTreeMap<&str, usize> = BTreeMap::new();
    let mut holds = Vec::new();
    for l in leases
        .iter()
        .filter(|l| l.owner == worker && l.expires_at_ms > clock)
    {
        match l.connector.split_once(PARTITION_MARK) {
            Some((connector, _)) => *partitions.entry(connector).or_default() += 1,
            None => holds.push(l.connector.clone()),
        }
    }
    holds.extend(partitions.into_iter().map(|(connector, n)| {
        format!(
            "{connector} ({n} partition{})",
            if n == 1 { "" } else { "s" }
        )
    }));
    holds
}

fn worker_view(
    w: WorkerRecord,
    leases: &[LeaseRecord],
    clock: i64,
    lease_time: std::time::Duration,
) -> WorkerView {
    let age_ms = (clock - w.heartbeat_at_ms).max(0);
    WorkerView {
        holds: held_by(&w.id, leases, clock),
        alive: u128::from(age_ms.unsigned_abs()) <= lease_time.as_millis(),
        heartbeat_age_secs: age_ms as f64 / 1000.0,
        started_at: iso(w.started_at_ms),
        heartbeat_at: iso(w.heartbeat_at_ms),
        configured: w.connectors.into_keys().collect(),
        id: w.id,
        host: w.host,
        pid: w.pid,
        version: w.version,
    }
}

/// What the daemon knows live about each connector: the run it is on, its
/// progress, and when it runs next.
#[derive(Debug, Default)]
pub struct LiveBoard {
    inner: Mutex<HashMap<String, Live>>,
}

/// A connector's live facts.
#[derive(Debug, Clone, Default)]
struct Live {
    running: Option<(RunId, i64)>,
    progress: RunCounts,
    next_due_ms: Option<i64>,
}

impl LiveBoard {
    fn with<T>(&self, connector: &str, f: impl FnOnce(&mut Live) -> T) -> T {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(connector.to_string()).or_default())
    }

    /// Records when the connector runs next.
    pub fn set_next_due(&self, connector: &str, due_ms: i64) {
        self.with(connector, |l| l.next_due_ms = Some(due_ms));
    }

    /// Records that the connector's run ended.
    pub fn finished(&self, connector: &str) {
        self.with(connector, |l| {
            l.running = None;
            l.progress = RunCounts::default();
        });
    }

    fn get(&self, connector: &str) -> Live {
        self.with(connector, |l| l.clone())
    }
}

impl RunObserver for LiveBoard {
    fn run_started(&self, connector: &str, run: RunId) {
        self.with(connector, |l| {
            l.running = Some((run, now_ms()));
            l.progress = RunCounts::default();
        });
    }

    fn page_committed(&self, connector: &str, total: &RunCounts) {
        self.with(connector, |l| l.progress = total.clone());
    }
}

fn run_view(r: &RunRecord) -> RunView {
    RunView {
        id: r.id,
        kind: r.kind,
        started_at: iso(r.started_at_ms),
        finished_at: r.finished_at_ms.map(iso),
        outcome: r.outcome.map_or("running", RunOutcome::as_str).to_string(),
        counts: r.counts.clone(),
    }
}

/// Whether a process with this id is alive (Linux: `/proc/<pid>` exists).
fn process_alive(pid: u32) -> bool {
    pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Builds the status of `configs` from the database and, in the daemon, the
/// live board. Without a board a run counts as running while the process
/// that started it is alive.
/// `lease_time` is the fleet's: a worker whose last heartbeat is older is
/// shown as gone. `fingerprints` are the configs' files
/// ([`crate::pipeline::fingerprints`]), compared with the fleet's.
pub fn collect(
    db: &dyn StateStore,
    configs: &[ConnectorConfig],
    live: Option<&LiveBoard>,
    lease_time: std::time::Duration,
    fingerprints: &BTreeMap<String, Fingerprint>,
) -> Result<StatusReport, StateError> {
    let clock = db.clock_ms()?;
    let leases = db.leases()?;
    let worker_records = db.workers()?;
    let mut connectors = Vec::with_capacity(configs.len());
    for c in configs {
        let lease = leases.iter().find(|l| l.connector == c.id);
        let refused = lease.and_then(|l| {
            let (differs, worker) = fingerprint_conflict(
                &c.id,
                &l.fingerprint,
                fingerprints.get(&c.id)?,
                "",
                &worker_records,
                clock,
                lease_time,
            )?;
            Some(format!(
                "worker {worker} runs this connector with a different {}; workers with this configuration refuse it. Deploy the same files on every worker",
                differs.join(", ")
            ))
        });
        let plugin = PluginManifest::load(&c.plugin)
            .map(|m| format!("{} {}", m.id, m.version))
            .unwrap_or_else(|e| format!("manifest unreadable: {e}"));
        let last_finished = db.last_finished_run(&c.id)?;
        let latest = db.last_run(&c.id)?;
        let live_facts = live.map(|b| b.get(&c.id));
        let current_run = match &live_facts {
            Some(l) => l.running.map(|(run, started)| {
                let stored = db.run(run).ok().flatten();
                RunView {
                    id: run,
                    kind: stored.as_ref().map_or(RunKind::Run, |r| r.kind),
                    started_at: iso(stored.as_ref().map_or(started, |r| r.started_at_ms)),
                    finished_at: None,
                    outcome: "running".to_string(),
                    counts: l.progress.clone(),
                }
            }),
            None => latest
                .as_ref()
                .filter(|r| r.outcome.is_none() && r.pid.is_some_and(process_alive))
                .map(run_view),
        };
        let failed = last_finished
            .as_ref()
            .is_some_and(|r| r.outcome == Some(RunOutcome::Failed));
        let state = if current_run.is_some() {
            ConnectorState::Running
        } else if failed {
            ConnectorState::Failing
        } else {
            ConnectorState::Idle
        };
        let next_due = live_facts
            .as_ref()
            .and_then(|l| l.next_due_ms)
            .unwrap_or_else(|| {
                c.schedule.next_due(
                    db.last_scheduled_run(&c.id)
                        .ok()
                        .flatten()
                        .map(|r| r.started_at_ms),
                )
            })
            .max(now_ms());
        let totals = db.connector_totals(&c.id)?;
        let last_error = last_finished.as_ref().filter(|_| failed).map(|r| ErrorView {
            run: r.id,
            at: iso(r.finished_at_ms.unwrap_or(r.started_at_ms)),
            message: r.error.clone().unwrap_or_else(|| "unknown error".into()),
            action: format!(
                "Nothing of the failed page was committed, so nothing is lost. Fix the cause the error names; the daemon retries at the next scheduled run ({}), or run `connector run --once {}` now. `connector log {}` lists what the run did.",
                iso(next_due),
                c.path.display(),
                r.id.0
            ),
        });
        connectors.push(ConnectorStatus {
            id: c.id.clone(),
            config: c.path.display().to_string(),
            plugin,
            schedule: c.schedule.to_string(),
            state,
            current_run,
            last_run: last_finished.as_ref().map(run_view),
            last_success_at: totals.last_success_ms.map(iso),
            next_run_at: Some(iso(next_due)),
            deliveries_in_ledger: db.delivered_count(&c.id)?,
            in_quarantine: db.quarantine_count(&c.id)?,
            partitions: db.partition_checkpoints(&c.id)?,
            totals,
            last_error,
            lease: lease.map(|l| LeaseView {
                owner: l.owner.clone(),
                token: l.token,
                held: l.expires_at_ms > clock,
            }),
            refused,
            unreadable: db.unreadable(&c.id)?,
            transcripts: if c.delivery.transcripts() {
                Some(db.transcript_backlog(&c.id)?)
            } else {
                None
            },
            paused: db.paused(&c.id)?.map(|p| PauseView {
                by: p.by,
                at: iso(p.at_ms),
            }),
        });
    }
    Ok(StatusReport {
        generated_at: iso(now_ms()),
        connectors,
        workers: worker_records
            .into_iter()
            .map(|w| worker_view(w, &leases, clock, lease_time))
            .collect(),
        fenced_commits: db.fenced_commits()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(name: &str, owner: &str, expires_at_ms: i64) -> LeaseRecord {
        LeaseRecord {
            connector: name.to_string(),
            owner: owner.to_string(),
            token: 1,
            expires_at_ms,
            fingerprint: Fingerprint::new(),
        }
    }

    #[test]
    fn a_worker_holds_connectors_by_name_and_partitions_counted_per_connector() {
        let p = |id: &str| connector_state::partition_lease("symphony", id);
        let leases = [
            lease("chat", "w1", 100),
            lease(&p("stream:a"), "w1", 100),
            lease(&p("stream:b"), "w1", 100),
            lease(&p("datahose"), "w2", 100),
            lease(&p("stream:c"), "w1", 5),
        ];
        assert_eq!(
            held_by("w1", &leases, 10),
            ["chat", "symphony (2 partitions)"]
        );
        assert_eq!(held_by("w2", &leases, 10), ["symphony (1 partition)"]);
    }
}
