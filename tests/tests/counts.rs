//! One meaning per count, everywhere (`docs/counts.md`): with the real
//! binary, a run that imports some pairs, skips some as already delivered,
//! fails some for a participant without a mailbox and some for a mailbox
//! the store refuses, then the same numbers under the same names in the
//! run summary, `connector log`, `connector status` (text and `--json`)
//! and the daemon's `/metrics` and console page.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use connector_e2e::console_client::{ConsoleClient, TEST_PASSWORD, console_file};
use connector_e2e::daemon_process::DaemonProcess;
use connector_e2e::graph_server::{GraphOptions, GraphServer};
use connector_e2e::ops::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_connector-cli");
const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const SECRET: &str = "s3cr3t~value";
/// The mailbox outside the app's access policy: Graph refuses it alone.
const REFUSING: &str = "carol@example.test";

fn bin() -> &'static Path {
    Path::new(BIN)
}

/// Each count as docs/counts.md names it: JSON field, admin log column,
/// what follows the number in the run summary and `status`, metric.
const NAMES: [(&str, &str, &str, &str); 8] = [
    (
        "items_from_source",
        "Items available from source",
        "item(s) from source",
        "connector_items_from_source_total",
    ),
    (
        "items_for_import",
        "Items available for import after fan-out",
        "for import after fan-out",
        "connector_items_for_import_total",
    ),
    (
        "imported",
        "Imported",
        "imported",
        "connector_items_imported_total",
    ),
    (
        "partially_imported",
        "Partially imported",
        "partially imported",
        "connector_items_partially_imported_total",
    ),
    (
        "skipped_duplicates",
        "Skipped as duplicates",
        "skipped as duplicates",
        "connector_items_skipped_duplicates_total",
    ),
    ("failed", "Failed", "failed", "connector_items_failed_total"),
    (
        "quarantined",
        "Quarantined",
        "quarantined",
        "connector_items_quarantined_total",
    ),
    ("pages", "Pages", "page(s)", "connector_pages_total"),
];

/// Counts by JSON field name.
type Counts = BTreeMap<&'static str, u64>;

/// The counts a summary line says (`12 imported, 3 failed, …`), each
/// found by the phrase after its number.
fn said(line: &str) -> Counts {
    let by_phrase: BTreeMap<&str, u64> = line
        .split(", ")
        .map(|part| {
            let (n, phrase) = part.split_once(' ').unwrap();
            (phrase, n.parse().unwrap())
        })
        .collect();
    NAMES
        .iter()
        .map(|(field, _, phrase, _)| {
            let n = by_phrase
                .get(phrase)
                .unwrap_or_else(|| panic!("`{phrase}` in {line:?}"));
            (*field, *n)
        })
        .collect()
}

/// The counts of `connector log`'s summary row, by column.
fn logged(csv_text: &str) -> Counts {
    let head = csv_text.split_once("\n\n").unwrap().0;
    let mut r = csv::Reader::from_reader(head.as_bytes());
    let columns: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let row = r.records().next().unwrap().unwrap();
    NAMES
        .iter()
        .map(|(field, column, _, _)| {
            let at = columns
                .iter()
                .position(|c| c == column)
                .unwrap_or_else(|| panic!("column {column} in {columns:?}"));
            (*field, row[at].parse().unwrap())
        })
        .collect()
}

/// The counts of a JSON object (`counts`, `totals`), by field.
fn in_json(v: &Value) -> Counts {
    NAMES
        .iter()
        .map(|(field, ..)| {
            let n = v[*field]
                .as_u64()
                .unwrap_or_else(|| panic!("{field} in {v:#}"));
            (*field, n)
        })
        .collect()
}

/// The connector's counters in `/metrics`.
fn metered(metrics: &str, connector: &str) -> Counts {
    NAMES
        .iter()
        .map(|(field, _, _, metric)| {
            let name = format!("{metric}{{connector=\"{connector}\"}}");
            let n = sample(metrics, &name).unwrap_or_else(|| panic!("{name} in\n{metrics}"));
            (*field, n as u64)
        })
        .collect()
}

/// The value of the sample `name` (with its labels) in Prometheus text.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

/// The last run's counts in the console's table of runs (newest first),
/// by field.
fn on_the_page(html: &str) -> Counts {
    let row = html
        .split("<tr data-run=")
        .nth(1)
        .unwrap_or_else(|| panic!("a run's row in\n{html}"));
    NAMES
        .iter()
        .map(|(field, ..)| {
            let cell = format!("data-count=\"{field}\">");
            let at = row.find(&cell).unwrap_or_else(|| panic!("{cell} in {row}")) + cell.len();
            let n = row[at..].split('<').next().unwrap().parse().unwrap();
            (*field, n)
        })
        .collect()
}

/// The line of `connector status` after `last run:`.
fn status_counts_line(text: &str) -> &str {
    let mut lines = text.lines();
    lines.find(|l| l.trim_start().starts_with("last run:"));
    lines.next().expect("the counts follow the last run").trim()
}

/// The chat setup of the operations tests (room-1: alice, bob and carol;
/// im-1: alice and bob; room-ext: alice and dave, whom nothing maps) into
/// Microsoft Graph, where carol's mailbox is outside the app's policy.
fn graph_setup(root: &Path, server: &GraphServer, n: usize) -> ChatSetup {
    let s = chat_setup(root, "counts", n, 4, "24h");
    let text = std::fs::read_to_string(&s.config).unwrap();
    let (head, _) = text.split_once("[sink]").unwrap();
    connector_e2e::write_secrets(root, &format!("graph-client-secret = \"{SECRET}\"\n"));
    std::fs::write(
        &s.config,
        format!(
            "{head}[secrets]\nfrom = \"file\"\npath = \"secrets.toml\"\n{}",
            server.sink_table(CLIENT_ID, "")
        ),
    )
    .unwrap();
    s
}

/// What a run over the messages `from..to` of the setup must count when
/// the messages before `delivered` were delivered by an earlier run.
fn expected(s: &ChatSetup, delivered: usize, to: usize) -> Counts {
    let mut c: Counts = NAMES.iter().map(|(field, ..)| (*field, 0)).collect();
    c.remove("pages");
    let mut add = |field: &'static str, n: u64| *c.entry(field).or_default() += n;
    for (i, item) in s.truth.items[..to].iter().enumerate() {
        let mid = chat_message_id(item);
        let reached = s
            .truth
            .mailboxes
            .iter()
            .filter(|(m, ids)| m.as_str() != REFUSING && ids.contains(&mid))
            .count() as u64;
        let refused = u64::from(s.truth.mailboxes[REFUSING].contains(&mid));
        let unmapped = u64::from(s.truth.quarantined.contains(item));
        add("items_from_source", 1);
        add("items_for_import", reached + refused + unmapped);
        add(
            if i < delivered {
                "skipped_duplicates"
            } else {
                "imported"
            },
            reached,
        );
        add("failed", refused + unmapped);
        let failed = refused + unmapped > 0;
        add("quarantined", u64::from(failed));
        add("partially_imported", u64::from(failed && reached > 0));
    }
    c
}

fn without_pages(mut c: Counts) -> Counts {
    c.remove("pages");
    c
}

#[test]
fn the_summary_admin_log_status_json_page_and_metrics_give_a_run_the_same_counts() {
    let server = GraphServer::start(GraphOptions {
        outside_policy: vec![REFUSING.to_string()],
        ..GraphOptions::new(
            &["alice@example.test", "bob@example.test", REFUSING],
            CLIENT_ID,
            SECRET,
        )
    });
    let tmp = tempfile::tempdir().unwrap();
    let n = 21;
    let s = graph_setup(tmp.path(), &server, n);
    let config = s.config.to_str().unwrap();

    // The first run delivers the first 2 pages (8 messages); the second, a
    // backfill over everything, finds those delivered and imports the rest.
    let first = connector_ok(
        bin(),
        &s.state,
        &["run", "--once", "--max-pages", "2", config],
    );
    let second = connector_ok(
        bin(),
        &s.state,
        &["run", "--once", "--from", "2020-01-01", config],
    );
    let summary_of = |out: &str| {
        let line = out.lines().find(|l| l.starts_with("counts: run ")).unwrap();
        line.split_once(" — ").unwrap().1.to_string()
    };
    let runs: Vec<Counts> = [&first, &second].map(|o| said(&summary_of(o))).into();
    assert_eq!(
        without_pages(runs[0].clone()),
        expected(&s, 0, 8),
        "{first}"
    );
    let want = expected(&s, 8, n);
    assert_eq!(without_pages(runs[1].clone()), want, "{second}");
    for kind in [
        "imported",
        "skipped_duplicates",
        "failed",
        "partially_imported",
    ] {
        assert!(want[kind] > 0, "the run has {kind} pairs: {want:?}");
    }
    assert_eq!(
        want["items_for_import"],
        want["imported"] + want["skipped_duplicates"] + want["failed"]
    );

    // The admin log of each run.
    for (run, counts) in runs.iter().enumerate() {
        let log = connector_ok(bin(), &s.state, &["log", &(run + 1).to_string()]);
        assert_eq!(&logged(&log), counts, "run {}:\n{log}", run + 1);
        let failure_rows = log
            .split("\n\n")
            .nth(1)
            .unwrap()
            .lines()
            .skip(1)
            .filter(|l| l.contains(",unmapped,") || l.contains(",refused,"))
            .count() as u64;
        assert_eq!(failure_rows, counts["failed"], "one row per failed pair");
    }

    // `connector status`, as text and JSON.
    let text = connector_ok(bin(), &s.state, &["status", config]);
    assert_eq!(said(status_counts_line(&text)), runs[1], "{text}");
    let json: Value = serde_json::from_str(&connector_ok(
        bin(),
        &s.state,
        &["status", "--json", config],
    ))
    .unwrap();
    let c = &json["connectors"][0];
    assert_eq!(in_json(&c["last_run"]["counts"]), runs[1], "{c:#}");
    let mut totals = runs[0].clone();
    for (field, n) in &runs[1] {
        *totals.get_mut(field).unwrap() += n;
    }
    assert_eq!(in_json(&c["totals"]), totals, "{c:#}");
    // Every item with a failed pair stays in the quarantine.
    let quarantined = s
        .truth
        .items
        .iter()
        .filter(|i| {
            s.truth.quarantined.contains(*i)
                || s.truth.mailboxes[REFUSING].contains(&chat_message_id(i))
        })
        .count();
    assert_eq!(c["in_quarantine"], quarantined, "{c:#}");
    let reached: u64 = runs.iter().map(|r| r["imported"]).sum();
    assert_eq!(c["deliveries_in_ledger"], reached, "{c:#}");

    // The daemon: metrics are the totals over both runs, the page shows
    // the last run's counts.
    let console = console_file(bin(), tmp.path(), &[("viewer", &["viewer"])], "");
    let daemon = DaemonProcess::start_with_console(
        bin(),
        &[OsString::from("--state-dir"), s.state.clone().into()],
        "127.0.0.1:0",
        &console,
        &[s.config.as_path()],
        &[],
        &tmp.path().join("daemon.log"),
    );
    let metrics = daemon.metrics();
    assert_eq!(metered(&metrics, "counts"), totals, "{metrics}");
    assert_eq!(
        sample(&metrics, "connector_quarantine_items{connector=\"counts\"}"),
        Some(quarantined as f64)
    );
    assert_eq!(
        sample(
            &metrics,
            "connector_ledger_deliveries{connector=\"counts\"}"
        ),
        Some(reached as f64)
    );
    let mut viewer = ConsoleClient::new(&format!("http://{}", daemon.addr()));
    assert_eq!(viewer.sign_in("viewer", TEST_PASSWORD).status, 200);
    let page = viewer.get("/connectors/counts");
    assert_eq!(page.status, 200);
    assert_eq!(on_the_page(&page.body), runs[1]);
    daemon.terminate();
    assert!(server.violations().is_empty(), "{:#?}", server.violations());
}
