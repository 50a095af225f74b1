//! A fleet of `connector daemon` workers sharing connectors through one
//! state, as real processes: each connector is run by one worker at a time
//! under a lease; a worker killed with SIGKILL or hung with SIGSTOP past its
//! lease loses its connectors to the others, and a restart of PostgreSQL
//! only delays the work. In the end every mailbox holds exactly what the
//! sources sent, once.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use connector_e2e::daemon_process::DaemonProcess;
use connector_e2e::ops::*;
use connector_e2e::postgres::{Postgres, PostgresOptions};
use connector_e2e::symphony::symphony_maildir_connector;
use connector_state::prelude::*;
use connector_state_postgres::{PostgresConfig, PostgresStore};

const BIN: &str = env!("CARGO_BIN_EXE_connector-cli");

/// Where the Symphony connector's emails are, in each Maildir.
const SYMPHONY_FOLDER: &str = ".INBOX.Symphony";

/// A Symphony connector over the simulator at `base`, in `dir`, run every
/// second, with `settings` added to its plugin's settings.
fn symphony(dir: &Path, base: &str, settings: &str) -> PathBuf {
    symphony_maildir_connector(dir, "symphony", base, "1s", settings)
}

/// The Message-IDs in each mailbox of the Symphony connector in `dir` after
/// one connector run alone over its own state (run again until a run adds
/// nothing, so a datahose is drained).
fn symphony_reference(dir: &Path, base: &str, settings: &str) -> BTreeMap<String, Vec<String>> {
    let config = symphony(dir, base, settings);
    let mut delivered = BTreeMap::new();
    loop {
        connector_ok(
            Path::new(BIN),
            &dir.join("state"),
            &["run", "--once", config.to_str().unwrap()],
        );
        let now = mailbox_contents(&dir.join("mail"), SYMPHONY_FOLDER);
        if now == delivered {
            return now;
        }
        delivered = now;
    }
}

/// A short lease, so takeovers happen within the test's time.
const LEASE_SECS: u64 = 3;

/// The workers of a fleet over one PostgreSQL database, and the connectors
/// they all run.
struct WorkerFleet {
    root: PathBuf,
    pg: Postgres,
    url: String,
    configs: Vec<PathBuf>,
    workers: Vec<DaemonProcess>,
    started: usize,
}

impl WorkerFleet {
    fn new(root: &Path, configs: Vec<PathBuf>) -> WorkerFleet {
        let pg = Postgres::start(PostgresOptions::default()).expect("a throw-away PostgreSQL");
        pg.create_database("fleet").unwrap();
        let url = pg.url("fleet");
        WorkerFleet {
            root: root.to_path_buf(),
            pg,
            url,
            configs,
            workers: Vec::new(),
            started: 0,
        }
    }

    /// The flags every worker and command is given: its own local folder,
    /// the shared state, the lease time.
    fn global_flags(&self, local: &Path) -> Vec<OsString> {
        vec![
            "--state-dir".into(),
            local.as_os_str().to_owned(),
            "--state-url".into(),
            self.url.clone().into(),
            "--lease-secs".into(),
            LEASE_SECS.to_string().into(),
        ]
    }

    fn start_worker(&mut self) {
        self.start_worker_with(&[]);
    }

    /// Starts a worker with `env` added to its environment.
    fn start_worker_with(&mut self, env: &[(&str, &str)]) {
        self.started += 1;
        let local = self.root.join(format!("worker-{}", self.started));
        let configs: Vec<&Path> = self.configs.iter().map(PathBuf::as_path).collect();
        let worker = DaemonProcess::start(
            Path::new(BIN),
            &self.global_flags(&local),
            &configs,
            &[&[("CONNECTOR_STATE_PASSWORD", self.pg.password())], env].concat(),
            &self.root.join(format!("worker-{}.log", self.started)),
        );
        self.workers.push(worker);
    }

    /// A store of the test's own on the fleet's database; its queries give
    /// up after 20 s, so that a test waiting on a lock
    /// the workers hold fails instead of hanging.
    fn store(&self) -> PostgresStore {
        let url = format!("{}?options=-c%20statement_timeout%3D20000", self.url);
        let config = PostgresConfig::parse(&url)
            .unwrap()
            .with_password(self.pg.password());
        PostgresStore::connect(&config).unwrap()
    }

    /// Runs `connector ARGS` against the shared state.
    fn command(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(self.global_flags(&self.root.join("cli")))
            .args(args)
            .env("CONNECTOR_STATE_PASSWORD", self.pg.password())
            .env("CONNECTOR_LOG", "warn")
            .output()
            .unwrap()
    }
}

/// Kills, one hang past the lease and at most one database restart, at
/// seeded random moments of a fleet's life.
struct Chaos {
    hang_at: u64,
    restart_at: Option<u64>,
    hung: Option<(usize, Instant)>,
}

impl Chaos {
    fn new(rng: &mut Rng, restart: bool) -> Chaos {
        Chaos {
            hang_at: rng.range(2, 5),
            restart_at: restart.then(|| rng.range(8, 12)),
            hung: None,
        }
    }

    /// What happens to the fleet at `step` (about a second apart): the
    /// hang, its end once the lease has run out, the restart, and every
    /// fourth step a SIGKILL of a random live worker and a new worker.
    fn step(&mut self, fleet: &mut WorkerFleet, rng: &mut Rng, step: u64) {
        if step == self.hang_at {
            let victim = rng.range(0, 2) as usize;
            fleet.workers[victim].pause();
            self.hung = Some((victim, Instant::now()));
        }
        if let Some((victim, since)) = self.hung
            && since.elapsed() > Duration::from_secs(LEASE_SECS + 2)
        {
            fleet.workers[victim].resume();
            self.hung = None;
        }
        if Some(step) == self.restart_at {
            fleet.pg.restart().unwrap();
        }
        if step % 4 == 3 {
            let live: Vec<usize> = (0..fleet.workers.len())
                .filter(|i| self.hung.map(|(h, _)| h) != Some(*i))
                .collect();
            let victim = live[rng.range(0, live.len() as u64 - 1) as usize];
            fleet.workers.remove(victim).kill();
            if let Some((h, since)) = self.hung
                && h > victim
            {
                self.hung = Some((h - 1, since));
            }
            fleet.start_worker();
        }
    }

    /// Resumes the hung worker, if any.
    fn end(self, fleet: &mut WorkerFleet) {
        if let Some((victim, _)) = self.hung {
            fleet.workers[victim].resume();
        }
    }
}

/// Starts three workers, puts them through twelve steps of kills and a
/// hang, waits until the `symphony` connector delivered `pairs` (generous:
/// on 2 busy cores three workers' partitions take turns), and stops them;
/// returns the test's store on the fleet's state.
fn symphony_through_chaos(fleet: &mut WorkerFleet, rng: &mut Rng, pairs: usize) -> PostgresStore {
    for _ in 0..3 {
        fleet.start_worker();
    }
    let mut chaos = Chaos::new(rng, false);
    for step in 0..12u64 {
        std::thread::sleep(Duration::from_millis(rng.range(600, 1400)));
        chaos.step(fleet, rng, step);
    }
    chaos.end(fleet);
    let store = fleet.store();
    wait_for_deliveries(&store, "symphony", pairs as u64, Duration::from_secs(240));
    for worker in std::mem::take(&mut fleet.workers) {
        worker.terminate();
    }
    store
}

/// Asserts that `connector` was run by more than one worker, and that its
/// reconciliation agrees.
fn assert_shared_and_reconciled(fleet: &WorkerFleet, store: &PostgresStore, connector: &str) {
    let pids: BTreeSet<u32> = store
        .runs(connector, 100_000)
        .unwrap()
        .iter()
        .filter_map(|r| r.pid)
        .collect();
    assert!(
        pids.len() >= 2,
        "{connector} was run by more than one worker: {pids:?}"
    );
    let reconcile = fleet.command(&["reconcile", "--connector", connector, "--last"]);
    assert!(
        reconcile.status.success(),
        "reconciliation of {connector} agrees: {}",
        String::from_utf8_lossy(&reconcile.stderr)
    );
}

#[test]
fn three_workers_share_six_connectors_through_kills_a_hang_and_a_database_restart_delivering_everything_once()
 {
    let dir = tempfile::tempdir().unwrap();
    let seed = test_seed("FLEET_SEED", "fleet chaos");
    let mut rng = Rng::new(seed);
    // The Symphony connector's truth: what one run over its own state
    // delivers from the same simulated pod.
    let pod = symphony_sim::start_blocking(
        symphony_sim::SimConfig::builder()
            .seed(seed)
            .messages(300)
            .large_attachment_bytes(0)
            .membership(symphony_sim::Membership::All)
            .build(),
    )
    .expect("the Symphony simulator starts");
    let symphony_truth =
        symphony_reference(&dir.path().join("symphony-reference"), &pod.base_url(), "");
    let symphony_pairs: usize = symphony_truth.values().map(Vec::len).sum();
    let symphony_dir = dir.path().join("symphony");
    let symphony_config = symphony(&symphony_dir, &pod.base_url(), "");

    let mut setups: Vec<(ChatSetup, usize)> = (0..5)
        .map(|i| {
            let id = format!("chat{i}");
            (chat_setup(&dir.path().join(&id), &id, 120, 5, "1s"), 120)
        })
        .collect();
    let configs = setups
        .iter()
        .map(|(s, _)| s.config.clone())
        .chain([symphony_config])
        .collect();
    let mut fleet = WorkerFleet::new(dir.path(), configs);
    for _ in 0..3 {
        fleet.start_worker();
    }

    // Twenty seconds of new messages, kills, one hang past the lease and
    // one database restart, at seeded random moments.
    let mut chaos = Chaos::new(&mut rng, true);
    for step in 0..20u64 {
        std::thread::sleep(Duration::from_millis(rng.range(600, 1400)));
        let (setup, next) = &mut setups[rng.range(0, 4) as usize];
        append_messages(setup, *next, 15);
        *next += 15;
        chaos.step(&mut fleet, &mut rng, step);
    }
    chaos.end(&mut fleet);

    let store = fleet.store();
    wait_for_deliveries(
        &store,
        "symphony",
        symphony_pairs as u64,
        Duration::from_secs(120),
    );
    for (setup, _) in &setups {
        let id = connector_id(setup);
        let pairs = setup.truth.pairs() as u64;
        wait_for_deliveries(&store, &id, pairs, Duration::from_secs(120));
    }
    let workers_seen = fleet.command(&["workers"]);
    assert!(workers_seen.status.success());
    let listing = String::from_utf8_lossy(&workers_seen.stdout).into_owned();
    for worker in &fleet.workers {
        let pid = format!(":{}:", worker.pid());
        assert!(
            listing
                .lines()
                .any(|l| l.contains(&pid) && l.contains(": alive")),
            "`connector workers` lists worker {pid} as alive:\n{listing}"
        );
    }
    let stopped: Vec<String> = fleet
        .workers
        .iter()
        .map(|w| format!(":{}:", w.pid()))
        .collect();
    for worker in std::mem::take(&mut fleet.workers) {
        worker.terminate();
    }

    for (setup, _) in &setups {
        let delivered = assert_mailboxes_match(&setup.mail, &setup.truth);
        assert_eq!(delivered, setup.truth.pairs());
    }
    let ids = setups
        .iter()
        .map(|(s, _)| connector_id(s))
        .chain(["symphony".to_string()]);
    for id in ids {
        assert_shared_and_reconciled(&fleet, &store, &id);
    }
    assert_eq!(
        mailbox_contents(&symphony_dir.join("mail"), SYMPHONY_FOLDER),
        symphony_truth,
        "the Symphony mailboxes hold what one run alone delivers, each email once"
    );
    let fenced = store.fenced_commits().unwrap();
    eprintln!("commits refused for a stale fencing token: {fenced}");
    let left = store.workers().unwrap();
    assert!(
        left.iter()
            .all(|w| !stopped.iter().any(|pid| w.id.contains(pid))),
        "workers that stop cleanly leave the list, killed ones stay (gone): {left:?}"
    );
}

#[test]
fn three_workers_reading_one_datahose_tag_through_kills_and_a_hang_archive_every_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(test_seed("FLEET_SEED", "datahose fleet"));
    // The account is in half the streams: the others reach the archive
    // only through the datahose, which gives an unacknowledged batch again
    // after 1.5 s, to whichever reader of the tag asks next.
    let pod = symphony_sim::start_blocking(
        symphony_sim::SimConfig::builder()
            .seed(rng.next_u64())
            .messages(400)
            .large_attachment_bytes(0)
            .max_small_attachment_bytes(8 * 1024)
            .membership(symphony_sim::Membership::Half)
            .datahose(symphony_sim::DatahoseConfig {
                history: true,
                wait: Duration::from_millis(300),
                redeliver_after: Duration::from_millis(1500),
                batch: 40,
            })
            .build(),
    )
    .expect("the Symphony simulator starts");
    let settings = |tag: &str| format!("events_messages = true\nevents_tag = \"{tag}\"\n");
    let truth = symphony_reference(
        &dir.path().join("reference"),
        &pod.base_url(),
        &settings("reference"),
    );
    let pairs: usize = truth.values().map(Vec::len).sum();
    let unreadable = pod
        .ground_truth()
        .streams
        .iter()
        .filter(|s| !s.service_member)
        .count();
    assert!(unreadable > 0, "some streams are only on the datahose");

    let archive = dir.path().join("fleet");
    let config = symphony(&archive, &pod.base_url(), &settings("fleet"));
    let mut fleet = WorkerFleet::new(dir.path(), vec![config]);
    // A reader of the same tag that dies holding a batch.
    assert_eq!(pod.take_datahose_batch_without_ack("fleet"), 40);
    let store = symphony_through_chaos(&mut fleet, &mut rng, pairs);
    assert!(
        pod.stats().redelivered_events >= 40,
        "the datahose gave batches again: {:?}",
        pod.stats()
    );
    assert_shared_and_reconciled(&fleet, &store, "symphony");
    assert_eq!(
        mailbox_contents(&archive.join("mail"), SYMPHONY_FOLDER),
        truth,
        "every mailbox holds what one reader alone archives, each email once"
    );
}

#[test]
fn three_workers_share_the_partitions_of_a_pod_of_a_thousand_streams_through_kills_and_a_hang_each_email_once()
 {
    let dir = tempfile::tempdir().unwrap();
    let seed = test_seed("FLEET_SEED", "partitioned fleet");
    let mut rng = Rng::new(seed);
    let pod = symphony_sim::start_blocking(
        symphony_sim::SimConfig::builder()
            .seed(seed)
            .messages(200)
            .large_attachment_bytes(0)
            .membership(symphony_sim::Membership::All)
            .extra_streams(500, 500, 2)
            .build(),
    )
    .expect("the Symphony simulator starts");
    let streams: Vec<String> = pod
        .ground_truth()
        .streams
        .iter()
        .map(|s| s.stream_id.clone())
        .collect();
    assert!(streams.len() > 1_000, "{} streams", streams.len());
    let truth = symphony_reference(&dir.path().join("reference"), &pod.base_url(), "");
    let pairs: usize = truth.values().map(Vec::len).sum();

    let archive = dir.path().join("fleet");
    let config = symphony(&archive, &pod.base_url(), "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("partitions-at-once = 4\n{text}")).unwrap();
    let mut fleet = WorkerFleet::new(dir.path(), vec![config]);
    let store = symphony_through_chaos(&mut fleet, &mut rng, pairs);
    assert_shared_and_reconciled(&fleet, &store, "symphony");
    assert_eq!(
        mailbox_contents(&archive.join("mail"), SYMPHONY_FOLDER),
        truth,
        "every mailbox holds what one run alone archives, each email once"
    );
    let without = streams
        .iter()
        .filter(|sid| {
            let key = connector_state::partition_lease("symphony", &format!("stream:{sid}"));
            store.checkpoint(&key).unwrap().is_none()
        })
        .count();
    assert_eq!(without, 0, "every stream's partition has its checkpoint");
}

#[test]
fn a_worker_frozen_before_its_commit_is_refused_by_the_store_after_its_successor_delivered_everything_once()
 {
    let dir = tempfile::tempdir().unwrap();
    // Its first page is in the mailboxes and about to be committed when
    // the worker freezes, holding its lease until the lease runs out.
    let (setup, mut fleet, store) = frozen_then_succeeded(dir.path(), "commit:1");
    assert_eq!(store.fenced_commits().unwrap(), 0);

    fleet.workers[0].resume();
    wait_for(
        Duration::from_secs(30),
        "the woken worker's commit to be refused",
        || (store.fenced_commits().ok()? == 1).then_some(()),
    );
    stop_and_check_each_email_once(&mut fleet, &store, &setup);
    let status = fleet.command(&["status", "--json", setup.config.to_str().unwrap()]);
    assert!(status.status.success(), "{status:?}");
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(report["fenced_commits"], 1, "{report}");
}

#[test]
fn a_worker_frozen_inside_its_commit_transaction_is_cut_off_by_the_server_and_its_successor_delivers_everything_once()
 {
    let dir = tempfile::tempdir().unwrap();
    // Frozen with its first page in the mailboxes and half-way through the
    // page's transaction: it holds the lease row and the new month's
    // ledger partitions locked.
    let (setup, mut fleet, store) = frozen_then_succeeded(dir.path(), "in-commit:1");
    assert!(
        fleet
            .pg
            .log()
            .contains("terminating connection due to idle-in-transaction timeout"),
        "the server ended the frozen transaction:\n{}",
        fleet.pg.log()
    );

    fleet.workers[0].resume();
    // The woken worker finds its transaction gone; give it a few of its
    // schedule's runs to do anything it might wrongly do.
    std::thread::sleep(Duration::from_secs(3 * LEASE_SECS));
    stop_and_check_each_email_once(&mut fleet, &store, &setup);
}

/// A fleet over one chat connector whose first worker froze at `point`
/// (`CONNECTOR_FREEZE_AT`), and a second worker started then, which has
/// delivered everything; with the test's own store.
fn frozen_then_succeeded(root: &Path, point: &str) -> (ChatSetup, WorkerFleet, PostgresStore) {
    let setup = chat_setup(&root.join("chat"), "chat", 60, 20, "1s");
    let mut fleet = WorkerFleet::new(root, vec![setup.config.clone()]);
    fleet.start_worker_with(&[("CONNECTOR_FREEZE_AT", point)]);
    let frozen = fleet.workers[0].pid();
    wait_for(
        Duration::from_secs(60),
        "the first worker to freeze",
        || process_state(frozen).filter(|s| *s == 'T'),
    );
    fleet.start_worker();
    let store = fleet.store();
    let pairs = setup.truth.pairs() as u64;
    wait_for_deliveries(
        &store,
        &connector_id(&setup),
        pairs,
        Duration::from_secs(60),
    );
    (setup, fleet, store)
}

/// Stops every worker, then checks that the ledger and the mailboxes hold
/// each of the chat connector's emails once: the frozen worker's first
/// page delivered by it, recorded by its successor.
fn stop_and_check_each_email_once(
    fleet: &mut WorkerFleet,
    store: &PostgresStore,
    setup: &ChatSetup,
) {
    for worker in std::mem::take(&mut fleet.workers) {
        worker.terminate();
    }
    let pairs = setup.truth.pairs();
    assert_eq!(
        store.delivered_count(&connector_id(setup)).unwrap(),
        pairs as u64
    );
    assert_eq!(assert_mailboxes_match(&setup.mail, &setup.truth), pairs);
}

/// Waits until the ledger of `connector` holds `pairs` deliveries; on
/// timeout says how many it held (more is a duplicate, fewer a loss).
fn wait_for_deliveries(store: &PostgresStore, connector: &str, pairs: u64, timeout: Duration) {
    let start = Instant::now();
    loop {
        let held = store.delivered_count(connector);
        if matches!(held, Ok(n) if n == pairs) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "after {timeout:?} the ledger of {connector} holds {held:?} deliveries, not {pairs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn connector_id(setup: &ChatSetup) -> String {
    setup
        .config
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_pause_holds_every_worker_of_the_fleet_and_a_run_now_request_is_run_once_by_one_of_them() {
    let root = tempfile::tempdir().unwrap();
    let setup = chat_setup(&root.path().join("chat"), "daily", 12, 4, "24h");
    let mut fleet = WorkerFleet::new(root.path(), vec![setup.config.clone()]);
    let store = fleet.store();
    // Paused before any worker starts: none of them runs it, although a
    // connector that never ran is due at once.
    succeeded(fleet.command(&["pause", "daily"]), "pause");
    fleet.start_worker();
    fleet.start_worker();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        store.last_run("daily").unwrap(),
        None,
        "no run while paused"
    );

    // Resumed: one worker runs it; its next run is a day away.
    succeeded(fleet.command(&["resume", "daily"]), "resume");
    let pairs = setup.truth.pairs() as u64;
    wait_for_deliveries(&store, "daily", pairs, Duration::from_secs(60));
    let finished_runs = |n: usize| {
        let runs = store.runs("daily", 10).unwrap();
        (runs.len() == n && runs.iter().all(|r| r.outcome.is_some())).then_some(())
    };
    wait_for(Duration::from_secs(30), "the first run to end", || {
        finished_runs(1)
    });

    // Run now: exactly one run more, by whichever worker took the request.
    let asked = Instant::now();
    succeeded(fleet.command(&["run-now", "daily"]), "run-now");
    wait_for(Duration::from_secs(30), "the requested run", || {
        finished_runs(2)
    });
    assert!(asked.elapsed() < Duration::from_secs(15), "{asked:?}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        store.runs("daily", 10).unwrap().len(),
        2,
        "one run per request"
    );
    assert!(store.run_requests().unwrap().is_empty());
    stop_and_check_each_email_once(&mut fleet, &store, &setup);

    let trail = store.audit_records(0, 10).unwrap();
    let actions: Vec<&str> = trail.iter().map(|r| r.entry.action.as_str()).collect();
    assert_eq!(actions, ["paused", "resumed", "run-started"]);
    assert_eq!(connector_state::verify_chain(&trail), Ok(()));
}
