//! The daemon as operators run it, as a real process: connectors on their
//! schedules in their own threads (a plugin that traps on every run does not
//! hold up another connector), the status over HTTP (JSON and Prometheus
//! metrics; the console's pages are `console.rs`'s), and a clean stop on
//! SIGTERM that loses nothing.

use std::path::Path;
use std::time::Duration;

use connector_e2e::daemon_process::DaemonProcess;
use connector_e2e::ops::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_connector-cli");

/// A daemon over `state` running `configs`.
fn start_daemon(state: &Path, configs: &[&Path]) -> DaemonProcess {
    DaemonProcess::start(
        Path::new(BIN),
        &["--state-dir".into(), state.as_os_str().to_owned()],
        configs,
        &[],
        &state.with_file_name("daemon.log"),
    )
}

/// The value of a Prometheus sample, e.g. `connector_runs_total{connector="x",outcome="failed"}`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

#[test]
fn a_plugin_that_traps_on_every_run_does_not_stop_another_connector_under_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    // chat-export on a cron schedule, every second; the broken connector
    // every second too, trapping on its first page every time.
    let mut chat = chat_setup(tmp.path(), "chat", 30, 5, "* * * * * *");
    let broken = misbehaving_config(
        tmp.path(),
        "broken",
        "pages = 3\nper_page = 2\nmode = \"trap\"\nat_page = 0",
        "1s",
    );
    let daemon = start_daemon(&chat.state, &[&chat.config, &broken]);
    let pairs = chat.truth.pairs() as u64;
    wait_for(Duration::from_secs(90), "the first messages", || {
        (daemon.connector("chat")["deliveries_in_ledger"] == pairs).then_some(())
    });
    assert_mailboxes_match(&chat.mail, &chat.truth);

    // New messages at the source arrive with a later scheduled run, while
    // the broken connector keeps failing.
    append_messages(&mut chat, 30, 30);
    let pairs = chat.truth.pairs() as u64;
    wait_for(Duration::from_secs(90), "the appended messages", || {
        (daemon.connector("chat")["deliveries_in_ledger"] == pairs).then_some(())
    });
    assert_mailboxes_match(&chat.mail, &chat.truth);
    wait_for(Duration::from_secs(60), "three failed runs", || {
        let failed = sample(
            &daemon.metrics(),
            "connector_runs_total{connector=\"broken\",outcome=\"failed\"}",
        )?;
        (failed >= 3.0).then_some(())
    });

    let b = daemon.connector("broken");
    assert_eq!(b["state"], "failing", "{b:#}");
    let error = &b["last_error"];
    assert!(
        error["message"].as_str().unwrap().contains("trap"),
        "{error:#}"
    );
    assert!(
        error["action"]
            .as_str()
            .unwrap()
            .contains("connector run --once"),
        "{error:#}"
    );
    assert!(b["last_success_at"].is_null());
    let c = daemon.connector("chat");
    assert!(c["state"] == "idle" || c["state"] == "running", "{c:#}");
    assert!(c["last_success_at"].is_string(), "{c:#}");
    assert_eq!(c["schedule"], "* * * * * *");
    assert_eq!(c["in_quarantine"], chat.truth.quarantined.len());
    assert!(c["next_run_at"].is_string());

    let metrics = daemon.metrics();
    for needle in [
        "# TYPE connector_runs_total counter",
        "# TYPE connector_items_imported_total counter",
        "# TYPE connector_last_success_timestamp_seconds gauge",
    ] {
        assert!(metrics.contains(needle), "{needle} in\n{metrics}");
    }
    assert_eq!(
        sample(
            &metrics,
            "connector_items_imported_total{connector=\"chat\"}"
        ),
        Some(pairs as f64)
    );
    assert_eq!(
        sample(
            &metrics,
            "connector_items_quarantined_total{connector=\"chat\"}"
        ),
        Some(chat.truth.quarantined.len() as f64)
    );
    // Dave has no mailbox: one failed pair on each message he is in.
    assert_eq!(
        sample(&metrics, "connector_items_failed_total{connector=\"chat\"}"),
        Some(chat.truth.quarantined.len() as f64)
    );
    assert!(
        sample(
            &metrics,
            "connector_runs_total{connector=\"chat\",outcome=\"succeeded\"}"
        )
        .unwrap()
            >= 2.0
    );
    let last_success = sample(
        &metrics,
        "connector_last_success_timestamp_seconds{connector=\"chat\"}",
    )
    .expect("chat has a last success");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - last_success).abs() < 120.0,
        "{last_success} vs {now}"
    );
    assert_eq!(
        sample(
            &metrics,
            "connector_last_success_timestamp_seconds{connector=\"broken\"}"
        ),
        None
    );
    assert_eq!(
        sample(&metrics, "connector_failing{connector=\"broken\"}"),
        Some(1.0)
    );

    let took = daemon.terminate();
    assert!(took < Duration::from_secs(30), "stopped in {took:?}");
    assert_mailboxes_match(&chat.mail, &chat.truth);
}

/// Messages of connector `long`, a page each: a run of several seconds, so
/// that it is still under way when a test acts on it.
const LONG_RUN: u64 = 2000;

/// A daemon running connector `long` with three pages of its first run
/// committed.
fn long_run_under_way() -> (tempfile::TempDir, ChatSetup, DaemonProcess) {
    let tmp = tempfile::tempdir().unwrap();
    let chat = chat_setup(tmp.path(), "long", LONG_RUN as usize, 1, "24h");
    let daemon = start_daemon(&chat.state, &[&chat.config]);
    wait_for(Duration::from_secs(90), "the run to be under way", || {
        let c = daemon.connector("long");
        (c["state"] == "running" && c["current_run"]["counts"]["pages"].as_u64()? >= 3)
            .then_some(())
    });
    (tmp, chat, daemon)
}

#[test]
fn sigterm_during_a_run_commits_the_current_page_and_the_next_run_resumes_after_it() {
    let (_tmp, chat, daemon) = long_run_under_way();
    daemon.terminate();
    // The interrupted run committed whole pages only; the next one resumes
    // right after the last of them.
    let status = connector_ok(
        Path::new(BIN),
        &chat.state,
        &["status", "--json", chat.config.to_str().unwrap()],
    );
    let status: Value = serde_json::from_str(&status).unwrap();
    let last = &status["connectors"][0]["last_run"];
    assert_eq!(last["outcome"], "interrupted", "{last:#}");
    let done = last["counts"]["items_from_source"].as_u64().unwrap();
    assert!((3..LONG_RUN).contains(&done), "{done}");
    let out = connector_ok(
        Path::new(BIN),
        &chat.state,
        &["run", "--once", chat.config.to_str().unwrap()],
    );
    assert!(
        out.contains(&format!("{} item(s) from source", LONG_RUN - done)),
        "resumes after the {done} committed messages: {out}"
    );
    assert!(out.contains(" 0 skipped as duplicates"), "{out}");
    assert_mailboxes_match(&chat.mail, &chat.truth);
}

#[test]
fn a_pause_during_a_run_stops_it_after_its_page_and_run_now_after_resume_continues_from_there() {
    let bin = Path::new(BIN);
    let (_tmp, chat, daemon) = long_run_under_way();
    connector_ok(bin, &chat.state, &["pause", "long"]);
    let last = wait_for(Duration::from_secs(30), "the run to stop", || {
        let c = daemon.connector("long");
        c["current_run"].is_null().then(|| c["last_run"].clone())
    });
    assert_eq!(last["outcome"], "interrupted", "{last:#}");
    let done = last["counts"]["items_from_source"].as_u64().unwrap();
    assert!((3..LONG_RUN).contains(&done), "{done}");

    // Not due for a day: resumed, it waits; asked, it runs at once from
    // the last committed page.
    connector_ok(bin, &chat.state, &["resume", "long"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(daemon.connector("long")["last_run"]["id"], last["id"]);
    connector_ok(bin, &chat.state, &["run-now", "long"]);
    let next = wait_for(Duration::from_secs(90), "the requested run to end", || {
        let r = daemon.connector("long")["last_run"].clone();
        (r["id"] != last["id"]).then_some(r)
    });
    assert_eq!(next["outcome"], "succeeded", "{next:#}");
    assert_eq!(
        next["counts"]["items_from_source"],
        LONG_RUN - done,
        "{next:#}"
    );
    assert_eq!(next["counts"]["skipped_duplicates"], 0, "{next:#}");
    daemon.terminate();
    assert_mailboxes_match(&chat.mail, &chat.truth);
}

/// The id of the connector's last finished run, from the daemon's status.
fn last_run_id(daemon: &DaemonProcess, connector: &str) -> Option<i64> {
    daemon.connector(connector)["last_run"]["id"].as_i64()
}

#[test]
fn pause_stops_scheduled_runs_resume_restarts_them_and_run_now_runs_a_connector_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = Path::new(BIN);
    // One connector due every second, one due a day after its first run.
    let every = chat_setup(tmp.path(), "every", 6, 3, "* * * * * *");
    let daily = chat_setup(tmp.path(), "daily", 6, 3, "24h");
    let daemon = start_daemon(&every.state, &[&every.config, &daily.config]);
    wait_for(
        Duration::from_secs(90),
        "both connectors to have run",
        || {
            (last_run_id(&daemon, "every")? >= 2 && last_run_id(&daemon, "daily")? >= 1)
                .then_some(())
        },
    );

    // Paused: the status says so, and no run starts.
    let out = connector_ok(bin, &every.state, &["pause", "every"]);
    assert!(out.contains("paused by cli:"), "{out}");
    let paused = &daemon.connector("every")["paused"];
    assert!(
        paused["by"].as_str().unwrap().starts_with("cli:"),
        "{paused:#}"
    );
    assert!(paused["at"].is_string(), "{paused:#}");
    let text = connector_ok(
        bin,
        &every.state,
        &["status", every.config.to_str().unwrap()],
    );
    assert!(text.contains("  paused: by cli:"), "{text}");
    assert!(text.contains("connector resume every"), "{text}");
    // A run under way when the pause arrived stops after its page.
    std::thread::sleep(Duration::from_secs(1));
    wait_for(Duration::from_secs(30), "no run in progress", || {
        daemon.connector("every")["current_run"]
            .is_null()
            .then_some(())
    });
    let frozen = last_run_id(&daemon, "every");
    std::thread::sleep(Duration::from_secs(4));
    let c = daemon.connector("every");
    assert_eq!(c["last_run"]["id"].as_i64(), frozen, "no run while paused");
    assert!(c["current_run"].is_null(), "{c:#}");

    // Resumed: it runs on its schedule again.
    let out = connector_ok(bin, &every.state, &["resume", "every"]);
    assert!(out.contains("resumed"), "{out}");
    wait_for(Duration::from_secs(30), "a run after the resume", || {
        (last_run_id(&daemon, "every")? > frozen?).then_some(())
    });
    assert!(daemon.connector("every")["paused"].is_null());

    // Run now: the daily connector runs at once, a day before it is due.
    let before = last_run_id(&daemon, "daily");
    let asked = std::time::Instant::now();
    let out = connector_ok(bin, &every.state, &["run-now", "daily"]);
    assert!(out.contains("requested"), "{out}");
    wait_for(Duration::from_secs(30), "the requested run", || {
        (last_run_id(&daemon, "daily")? > before?).then_some(())
    });
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "ran {:?} after the request",
        asked.elapsed()
    );
    daemon.terminate();

    // The audit trail names each action, by whom and from where.
    let export = connector_ok(bin, &every.state, &["audit", "export", "--format", "json"]);
    let records: Vec<Value> = serde_json::from_str(&export).unwrap();
    let actions: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r["action"].as_str().unwrap(), r["target"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("paused", "every"),
            ("resumed", "every"),
            ("run-started", "daily")
        ]
    );
    for r in &records {
        assert!(r["actor"].as_str().unwrap().starts_with("cli:"), "{r:#}");
        assert_eq!(r["source"], "local", "{r:#}");
    }
    let csv = connector_ok(bin, &every.state, &["audit", "export"]);
    assert!(csv.starts_with("Seq,Time,"), "{csv}");
    assert_eq!(csv.lines().count(), 4, "{csv}");
    let verified = connector_ok(bin, &every.state, &["audit", "verify"]);
    assert!(verified.contains("OK: 3 record(s)"), "{verified}");
}

#[test]
fn connectors_in_a_folder_start_restart_and_stop_as_their_files_come_change_and_go() {
    let tmp = tempfile::tempdir().unwrap();
    let first = chat_setup(tmp.path(), "first", 6, 10, "24h");
    let daemon = start_daemon(&first.state, &[tmp.path()]);
    let ids = || -> Vec<String> {
        daemon.status()["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    wait_for(Duration::from_secs(60), "the first connector's run", || {
        (daemon.connector("first")["last_run"]["outcome"] == "succeeded").then_some(())
    });

    // A new file: its connector starts and runs, without a restart.
    let second = chat_setup(tmp.path(), "second", 6, 10, "24h");
    wait_for(Duration::from_secs(60), "the new connector's run", || {
        (ids() == ["first", "second"]
            && daemon.connector("second")["last_run"]["outcome"] == "succeeded")
            .then_some(())
    });
    assert_mailboxes_match(&second.mail, &first.truth);

    // A file that does not parse is named in the log; the others go on.
    std::fs::write(tmp.path().join("broken.toml"), "id = \n").unwrap();
    // A changed file: its connector restarts with it.
    let text = std::fs::read_to_string(&first.config).unwrap();
    std::fs::write(
        &first.config,
        text.replace("schedule = \"24h\"", "schedule = \"0 3 * * *\""),
    )
    .unwrap();
    wait_for(Duration::from_secs(30), "the new schedule", || {
        (daemon.connector("first")["schedule"] == "0 3 * * *").then_some(())
    });
    assert!(daemon.log().contains("broken.toml"), "{}", daemon.log());

    // A removed file: its connector stops and leaves the status.
    std::fs::remove_file(&second.config).unwrap();
    wait_for(
        Duration::from_secs(30),
        "the removed connector to leave",
        || (ids() == ["first"]).then_some(()),
    );
    let took = daemon.terminate();
    assert!(took < Duration::from_secs(30), "stopped in {took:?}");
}
