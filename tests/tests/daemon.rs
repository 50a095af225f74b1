//! The daemon as operators run it, as a real process: connectors on their
//! schedules in their own threads (a plugin that traps on every run does not
//! hold up another connector), the status over HTTP (JSON, Prometheus
//! metrics, and an HTML page checked in a real headless browser), and a
//! clean stop on SIGTERM that loses nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
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

#[test]
fn sigterm_during_a_run_commits_the_current_page_and_the_next_run_resumes_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let chat = chat_setup(tmp.path(), "long", 400, 1, "24h");
    let daemon = start_daemon(&chat.state, &[&chat.config]);
    wait_for(Duration::from_secs(90), "the run to be under way", || {
        let c = daemon.connector("long");
        (c["state"] == "running" && c["current_run"]["counts"]["pages"].as_u64()? >= 3)
            .then_some(())
    });
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
    assert!((3..400).contains(&done), "{done}");
    let out = connector_ok(
        Path::new(BIN),
        &chat.state,
        &["run", "--once", chat.config.to_str().unwrap()],
    );
    assert!(
        out.contains(&format!("{} item(s) from source", 400 - done)),
        "resumes after the {done} committed messages: {out}"
    );
    assert!(out.contains(" 0 skipped as duplicates"), "{out}");
    assert_mailboxes_match(&chat.mail, &chat.truth);
}

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(name).output()
            && out.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    panic!("chromium is not installed: run scripts/setup (it installs Debian's `chromium`)");
}

fn browser(profile: &Path, args: &[&str], url: &str) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("running chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_status_page_shows_each_connector_and_its_state_in_a_headless_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let chat = chat_setup(tmp.path(), "chat-archive", 12, 4, "1h");
    let broken = misbehaving_config(
        tmp.path(),
        "broken-source",
        "pages = 2\nmode = \"trap\"\nat_page = 0",
        "0 3 * * *",
    );
    let daemon = start_daemon(&chat.state, &[&chat.config, &broken]);
    wait_for(
        Duration::from_secs(90),
        "both connectors to have run",
        || {
            let s = daemon.status();
            let states: Vec<&str> = s["connectors"]
                .as_array()?
                .iter()
                .map(|c| c["state"].as_str().unwrap_or(""))
                .collect();
            (states == ["idle", "failing"]).then_some(())
        },
    );
    let url = format!("http://{}/", daemon.addr());
    let profile = tmp.path().join("chromium-profile");
    let dom = browser(&profile, &["--dump-dom"], &url);
    for needle in [
        "<title>Connector status</title>",
        r#"data-connector="chat-archive" data-state="idle""#,
        r#"data-connector="broken-source" data-state="failing""#,
        r#"<span class="state state-idle">idle</span>"#,
        r#"<span class="state state-failing">failing</span>"#,
        "What to do:",
        "0 3 * * *",
    ] {
        assert!(dom.contains(needle), "rendered DOM lacks {needle}:\n{dom}");
    }
    // A screenshot for people to look at (target/test-artifacts/).
    let shots = connector_e2e::workspace_root().join("target/test-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join("status-page.png");
    let _ = std::fs::remove_file(&png);
    browser(
        &profile,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,720",
        ],
        &url,
    );
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000);
    daemon.terminate();
}
