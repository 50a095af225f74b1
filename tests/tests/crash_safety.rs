//! Crash safety of the real `connector` process: it is killed with SIGKILL
//! (`kill -9`: no unwinding, no flushing) at many random points of a run —
//! right after a page is fetched, mid-conversion, with emails in the
//! mailboxes but not yet recorded, just before and just after the commit,
//! and after random delays from outside — and run again each time. In the
//! end every mailbox holds exactly the ground truth: nothing lost, nothing
//! duplicated, and the auditor's reconciliation agrees.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use connector_e2e::ops::*;

const BIN: &str = env!("CARGO_BIN_EXE_connector-cli");

/// Messages in the export at first, messages the source adds before each
/// run, and per page: small pages so that a run has many points to die at,
/// and new messages so that every run has work to die in.
const MESSAGES: usize = 120;
const ADDED_PER_RUN: usize = 3;
const PAGE_SIZE: usize = 3;

/// How a run is killed.
#[derive(Debug, Clone)]
enum Kill {
    /// The binary kills itself the Nth time it reaches a point.
    At(&'static str, u64),
    /// The test kills it after a delay.
    After(Duration),
}

/// Runs once and says whether the run was killed, and how long it took.
fn run_killed(state: &Path, config: &Path, kill: &Kill) -> (bool, Duration) {
    let start = Instant::now();
    let mut cmd = Command::new(BIN);
    cmd.arg("--state-dir")
        .arg(state)
        .args(["run", "--once"])
        .arg(config)
        .env("CONNECTOR_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Kill::At(point, n) = kill {
        cmd.env("CONNECTOR_KILL_AT", format!("{point}:{n}"));
    }
    let mut child = cmd.spawn().expect("starting the connector");
    if let Kill::After(delay) = kill {
        while start.elapsed() < *delay {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill(); // SIGKILL
    }
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    let died = match out.status.signal() {
        Some(9) => true,
        Some(other) => panic!("killed by signal {other}, expected 9 (SIGKILL)"),
        None => {
            assert!(
                out.status.success(),
                "a run that was not killed must succeed ({kill:?}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            false
        }
    };
    (died, took)
}

#[test]
fn killing_the_host_with_sigkill_at_random_points_loses_and_duplicates_nothing() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let mut s = chat_setup(tmp.path(), "crash", MESSAGES, PAGE_SIZE, "24h");
    let mut next_message = MESSAGES;
    let seed = test_seed("CRASH_SEED", "crash test");
    let mut rng = Rng::new(seed);
    // Warm the compile cache so that delays land in the run, not in compiling.
    let config = s.config.to_str().unwrap().to_string();
    let config = config.as_str();
    let (first, _) = run_killed(&s.state, &s.config, &Kill::At("fetch", 1));
    assert!(first, "the first run dies at its first page");

    let points = [
        "fetch",
        "convert",
        "deliver",
        "commit",
        "in-commit",
        "committed",
    ];
    let mut kills: Vec<(String, bool)> = Vec::new();
    let mut killed = 0;
    let mut by_point = std::collections::BTreeMap::<&str, usize>::new();
    let mut round = 0;
    // Delays from outside are drawn below the length of the latest whole
    // run, so that they land inside a run on a fast machine as on a slow one.
    let mut whole_run = Duration::from_millis(100);
    while killed < 60 {
        round += 1;
        assert!(round < 200, "too many rounds: {kills:?}");
        append_messages(&mut s, next_message, ADDED_PER_RUN);
        next_message += ADDED_PER_RUN;
        let kill = if round % 6 == 0 {
            let ceiling = (whole_run.as_millis() as u64).max(10);
            Kill::After(Duration::from_millis(rng.range(5, ceiling)))
        } else {
            // Every point in turn (the sixth rounds are the delays).
            let point = points[(round - round / 6) as usize % points.len()];
            // Pages of 3 messages, one delivery batch each: small numbers
            // so that each run gets a page or two further before it dies.
            let n = match point {
                "convert" => rng.range(1, 8),
                _ => rng.range(1, 3),
            };
            Kill::At(point, n)
        };
        let (died, took) = run_killed(&s.state, &s.config, &kill);
        if !died {
            whole_run = took;
        }
        if died {
            killed += 1;
            let name = match &kill {
                Kill::At(p, _) => p,
                Kill::After(_) => "delay",
            };
            *by_point.entry(name).or_default() += 1;
        }
        kills.push((format!("{kill:?}"), died));
    }
    eprintln!(
        "{killed} kills in {round} runs ({by_point:?}) in {:?}",
        started.elapsed()
    );
    assert!(
        by_point.len() == points.len() + 1,
        "every kind of point was hit: {by_point:?}"
    );

    // Finish the job.
    let out = connector_ok(Path::new(BIN), &s.state, &["run", "--once", config]);
    assert!(out.contains("succeeded"), "{out}");
    let total = assert_mailboxes_match(&s.mail, &s.truth);
    assert_eq!(total, s.truth.pairs());

    // The quarantine holds every item with an unmapped participant, once.
    let list = connector_ok(
        Path::new(BIN),
        &s.state,
        &["quarantine", "list", "crash", "--json"],
    );
    let list: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    let ids: std::collections::BTreeSet<String> = list
        .iter()
        .map(|q| q["item_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, s.truth.quarantined);

    // The auditor's view: a backfill over everything sees every item again,
    // imports nothing, and its reconciliation, checked against the
    // mailboxes themselves, has no mismatch.
    let out = connector_ok(
        Path::new(BIN),
        &s.state,
        &[
            "run",
            "--once",
            "--from",
            "2025-12-31",
            "--to",
            "2027-01-01",
            config,
        ],
    );
    assert!(out.contains(" 0 imported"), "{out}");
    let rec = connector_ok(
        Path::new(BIN),
        &s.state,
        &[
            "reconcile",
            "--connector",
            "crash",
            "--last",
            "--format",
            "json",
            "--check-mailboxes",
            config,
        ],
    );
    let rec: serde_json::Value = serde_json::from_str(&rec).unwrap();
    assert_eq!(rec["items_seen"], next_message);
    assert_eq!(rec["mismatches"], 0);
    let delivered = rec["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "delivered")
        .count();
    assert_eq!(delivered, s.truth.pairs());
    eprintln!("crash test done in {:?}", started.elapsed());
}
