//! The status report as plain text, as an HTML page and as Prometheus
//! metrics.

use std::fmt::Write as _;

use super::{ConnectorState, ConnectorStatus, LeaseView, RunView, StatusReport, WorkerView};
use crate::report::counts::{COUNTS, summary};
use connector_state::{RunOutcome, TranscriptBacklog};

/// What the connector's state holds now, as the text and the page label
/// it: deliveries in the ledger and items in the quarantine (unlike a
/// run's counts, which say what that run did).
fn standing(c: &ConnectorStatus) -> [(&'static str, String); 2] {
    [
        (
            "in the ledger",
            format!("{} (item, mailbox) delivery(ies)", c.deliveries_in_ledger),
        ),
        ("in quarantine now", format!("{} item(s)", c.in_quarantine)),
    ]
}

/// The report for a terminal.
pub fn render_text(report: &StatusReport) -> String {
    let mut out = String::new();
    for c in &report.connectors {
        let _ = writeln!(out, "connector {} (plugin {})", c.id, c.plugin);
        let _ = writeln!(out, "  state: {}", c.state.as_str());
        let _ = writeln!(out, "  schedule: {}", c.schedule);
        if let Some(r) = &c.current_run {
            let _ = writeln!(
                out,
                "  running: {} {} since {} — {} so far",
                r.kind.as_str(),
                r.id,
                r.started_at,
                summary(&r.counts)
            );
        }
        match &c.last_run {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "  last run: {} {} {} → {}, {}",
                    r.kind.as_str(),
                    r.id,
                    r.started_at,
                    r.finished_at.as_deref().unwrap_or("?"),
                    r.outcome
                );
                let _ = writeln!(out, "    {}", summary(&r.counts));
            }
            None => {
                let _ = writeln!(out, "  last run: none yet");
            }
        }
        let _ = writeln!(
            out,
            "  last success: {}",
            c.last_success_at.as_deref().unwrap_or("never")
        );
        if c.state != ConnectorState::Running {
            let _ = writeln!(
                out,
                "  next run: {}",
                c.next_run_at.as_deref().unwrap_or("not scheduled")
            );
        }
        let [ledger, quarantine] = standing(c);
        let _ = writeln!(
            out,
            "  {}: {}; {}: {}",
            ledger.0, ledger.1, quarantine.0, quarantine.1
        );
        if c.partitions > 0 {
            let _ = writeln!(out, "  partitions: {} with a checkpoint", c.partitions);
        }
        if let Some(l) = c.lease.as_ref().filter(|l| l.held) {
            let _ = writeln!(out, "  lease: {}", lease_text(l));
        }
        if let Some(refused) = &c.refused {
            let _ = writeln!(out, "  refused: {refused}");
        }
        if let Some(t) = &c.transcripts {
            let _ = writeln!(out, "  transcripts: {}", transcripts_text(t));
        }
        if !c.unreadable.is_empty() {
            let _ = writeln!(
                out,
                "  not read: {} conversation(s) the source refused (asked again every run):",
                c.unreadable.len()
            );
            for u in &c.unreadable {
                let r = &u.report;
                let _ = writeln!(
                    out,
                    "    {} ({}): {}; fix: {}",
                    r.conversation_id, u.run, r.reason, r.fix
                );
            }
        }
        if let Some(e) = &c.last_error {
            let _ = writeln!(out, "  last error ({} at {}): {}", e.run, e.at, e.message);
            let _ = writeln!(out, "  what to do: {}", e.action);
        }
    }
    if !report.workers.is_empty() {
        out.push_str(&render_workers(&report.workers));
    }
    if report.fenced_commits > 0 {
        let _ = writeln!(
            out,
            "{} commit(s) refused for a stale lease (each stored nothing)",
            report.fenced_commits
        );
    }
    out
}

fn lease_text(l: &LeaseView) -> String {
    format!(
        "{} by {} (token {})",
        if l.held { "held" } else { "last held" },
        l.owner,
        l.token
    )
}

/// The fleet's workers as `connector workers` prints them: one line each.
pub fn render_workers(workers: &[WorkerView]) -> String {
    let mut out = String::new();
    for w in workers {
        let _ = writeln!(
            out,
            "worker {} ({}, version {}): {}, last heartbeat {} ({:.1} s ago); holds: {}; configured: {}",
            w.id,
            w.host,
            w.version,
            if w.alive { "alive" } else { "gone" },
            w.heartbeat_at,
            w.heartbeat_age_secs,
            list(&w.holds),
            list(&w.configured)
        );
    }
    out
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

fn esc(s: &str) -> String {
    connector_model::html::escape_all_quotes(s)
}

const CSS: &str = "
:root { color-scheme: light; --ok: #1a7f37; --run: #0969da; --bad: #cf222e; --muted: #57606a; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #1f2328; background: #f6f8fa; }
header { background: #24292f; color: #fff; padding: 14px 24px; }
header h1 { margin: 0; font-size: 19px; font-weight: 600; }
header p { margin: 2px 0 0; color: #c9d1d9; font-size: 13px; }
main { padding: 20px 24px; display: grid; gap: 16px; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); align-items: start; }
.card { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 16px 18px; min-width: 0; }
.card h2 { margin: 0 0 4px; font-size: 17px; display: flex; align-items: center; gap: 10px; }
.plugin { color: var(--muted); font-size: 13px; margin: 0 0 10px; }
.state { font-size: 12px; font-weight: 600; text-transform: uppercase; letter-spacing: .04em; padding: 2px 9px; border-radius: 999px; color: #fff; }
.state-idle { background: var(--ok); }
.state-running { background: var(--run); }
.state-failing { background: var(--bad); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 3px 14px; margin: 0; font-size: 14px; }
dt { color: var(--muted); }
dd { margin: 0; }
table { border-collapse: collapse; margin-top: 12px; width: 100%; font-size: 13px; }
th, td { text-align: right; padding: 3px 6px; border-top: 1px solid #eaeef2; }
th:first-child, td:first-child { text-align: left; }
th { color: var(--muted); font-weight: 500; }
.error { margin-top: 12px; border-left: 4px solid var(--bad); background: #fff5f5; padding: 8px 12px; font-size: 13px; }
.error p { margin: 4px 0; overflow-wrap: anywhere; }
.error summary { cursor: pointer; color: var(--muted); margin-top: 4px; }
.error pre { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 16em; overflow: auto; margin: 6px 0 0; font-size: 12px; background: #fff; border: 1px solid #eaeef2; padding: 6px 8px; }
.error code, .hint code { background: #eaeef2; padding: 0 4px; border-radius: 4px; }
footer { padding: 0 24px 20px; color: var(--muted); font-size: 12px; }
footer a { color: var(--run); }
";

fn workers_card(report: &StatusReport) -> String {
    let mut rows = String::new();
    for w in &report.workers {
        let _ = write!(
            rows,
            "<tr data-worker=\"{id}\"><td>{id}</td><td>{version}</td><td>{state}</td><td>{age:.1} s</td><td>{holds}</td></tr>",
            id = esc(&w.id),
            version = esc(&w.version),
            state = if w.alive { "alive" } else { "gone" },
            age = w.heartbeat_age_secs,
            holds = esc(&list(&w.holds)),
        );
    }
    format!(
        "<section class=\"card\" id=\"workers\"><h2>Workers</h2>\
         <p class=\"plugin\">{} commit(s) refused for a stale lease</p>\
         <table><tr><th>worker</th><th>version</th><th>state</th><th>heartbeat</th><th>holds</th></tr>{rows}</table></section>",
        report.fenced_commits
    )
}

fn counts_row(label: &str, r: &RunView) -> String {
    let mut row = format!("<tr><td>{}</td>", esc(label));
    for c in &COUNTS {
        let _ = write!(
            row,
            "<td data-count=\"{}\">{}</td>",
            c.field,
            (c.of)(&r.counts)
        );
    }
    row + "</tr>"
}

fn card(c: &ConnectorStatus) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<section class=\"card\" id=\"connector-{id}\" data-connector=\"{id}\" data-state=\"{state}\">\
         <h2><span class=\"name\">{id}</span><span class=\"state state-{state}\">{state}</span></h2>\
         <p class=\"plugin\">{plugin} · schedule <code>{schedule}</code></p><dl>",
        id = esc(&c.id),
        state = c.state.as_str(),
        plugin = esc(&c.plugin),
        schedule = esc(&c.schedule),
    );
    let mut row = |k: &str, v: String| {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", esc(k), v);
    };
    if let Some(r) = &c.current_run {
        row(
            "Running",
            format!(
                "{} {} since {} — {} so far",
                r.kind.as_str(),
                r.id,
                esc(&r.started_at),
                esc(&summary(&r.counts))
            ),
        );
    }
    match &c.last_run {
        Some(r) => row(
            "Last run",
            format!(
                "{} <b>{}</b> · {} → {}",
                r.id,
                esc(&r.outcome),
                esc(&r.started_at),
                esc(r.finished_at.as_deref().unwrap_or("?"))
            ),
        ),
        None => row("Last run", "none yet".into()),
    }
    row(
        "Last success",
        esc(c.last_success_at.as_deref().unwrap_or("never")),
    );
    if c.state != ConnectorState::Running {
        row(
            "Next run",
            esc(c.next_run_at.as_deref().unwrap_or("not scheduled")),
        );
    }
    for (label, value) in standing(c) {
        row(&capitalized(label), esc(&value));
    }
    if c.partitions > 0 {
        row("Partitions", format!("{} with a checkpoint", c.partitions));
    }
    if let Some(l) = &c.lease {
        row("Lease", esc(&lease_text(l)));
    }
    if let Some(refused) = &c.refused {
        row("Refused", format!("<b>{}</b>", esc(refused)));
    }
    h.push_str("</dl>");
    let mut rows = String::new();
    if let Some(r) = &c.current_run {
        rows.push_str(&counts_row("current run", r));
    }
    if let Some(r) = &c.last_run {
        rows.push_str(&counts_row("last run", r));
    }
    if !rows.is_empty() {
        h.push_str("<table class=\"counts\"><tr><th></th>");
        for c in &COUNTS {
            let _ = write!(h, "<th title=\"{}\">{}</th>", esc(c.help), esc(c.phrase));
        }
        let _ = write!(h, "</tr>{rows}</table>");
    }
    if let Some(t) = &c.transcripts {
        let _ = write!(
            h,
            "<p><b>Transcripts</b>: {}</p>",
            esc(&transcripts_text(t))
        );
    }
    if !c.unreadable.is_empty() {
        let _ = write!(
            h,
            "<div class=\"unreadable\"><p><b>Not read</b>: {} conversation(s) the source refused (asked again every run)</p>\
             <table><tr><th>conversation</th><th>run</th><th>reason</th><th>fix</th></tr>",
            c.unreadable.len()
        );
        for u in &c.unreadable {
            let r = &u.report;
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.conversation_id),
                u.run,
                esc(&r.reason),
                esc(&r.fix)
            );
        }
        h.push_str("</table></div>");
    }
    if let Some(e) = &c.last_error {
        let summary = compact(&e.message, 600);
        let more = summary != e.message.trim();
        let _ = write!(
            h,
            "<div class=\"error\"><p><b>Last error</b> ({} at {}): {}{}</p><p class=\"hint\"><b>What to do:</b> {}</p>",
            e.run,
            esc(&e.at),
            esc(&summary),
            if more { " …" } else { "" },
            esc(&e.action)
        );
        if more {
            let _ = write!(
                h,
                "<details><summary>Full error</summary><pre>{}</pre></details>",
                esc(&e.message)
            );
        }
        h.push_str("</div>");
    }
    h.push_str("</section>");
    h
}

/// An error message on a few lines: without backtrace frames and Rust's
/// backtrace notes, joined, and cut at `max` characters.
fn compact(message: &str, max: usize) -> String {
    let frame = |l: &str| {
        l.split_once(':').is_some_and(|(n, rest)| {
            n.chars().all(|c| c.is_ascii_digit()) && rest.trim_start().starts_with("0x")
        })
    };
    let text = message
        .lines()
        .map(|l| {
            l.replace(
                "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
                "",
            )
        })
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !frame(l))
        .collect::<Vec<_>>()
        .join(" ");
    if text.chars().count() > max {
        text.chars().take(max).collect::<String>() + " …"
    } else {
        text
    }
}

/// A small self-contained status page (no scripts, no external assets);
/// it reloads itself every 15 seconds.
pub fn render_html(report: &StatusReport) -> String {
    let failing = report
        .connectors
        .iter()
        .filter(|c| c.state == ConnectorState::Failing)
        .count();
    let running = report
        .connectors
        .iter()
        .filter(|c| c.state == ConnectorState::Running)
        .count();
    let mut body = String::new();
    for c in &report.connectors {
        body.push_str(&card(c));
    }
    if report.connectors.is_empty() {
        body.push_str("<section class=\"card\">No connectors configured.</section>");
    }
    if !report.workers.is_empty() {
        body.push_str(&workers_card(report));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"15\">\
         <title>Connector status</title><style>{CSS}</style></head><body>\
         <header><h1>Connector status</h1><p>{n} connector(s) · {running} running · {failing} failing · updated {at}</p></header>\
         <main>{body}</main>\
         <footer>Also as <a href=\"/status.json\">status.json</a> and <a href=\"/metrics\">Prometheus metrics</a>.</footer>\
         </body></html>\n",
        n = report.connectors.len(),
        at = esc(&report.generated_at),
    )
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The report in the Prometheus text exposition format (version 0.0.4).
pub fn render_metrics(report: &StatusReport) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    let per = |f: &dyn Fn(&ConnectorStatus) -> Option<String>| -> Vec<(String, String)> {
        report
            .connectors
            .iter()
            .filter_map(|c| f(c).map(|v| (format!("connector=\"{}\"", label(&c.id)), v)))
            .collect()
    };
    let mut runs = Vec::new();
    for c in &report.connectors {
        for outcome in [
            RunOutcome::Succeeded,
            RunOutcome::Failed,
            RunOutcome::Interrupted,
        ] {
            let n = c
                .totals
                .runs_by_outcome
                .get(outcome.as_str())
                .copied()
                .unwrap_or(0);
            runs.push((
                format!(
                    "connector=\"{}\",outcome=\"{}\"",
                    label(&c.id),
                    outcome.as_str()
                ),
                n.to_string(),
            ));
        }
    }
    family(
        "connector_runs_total",
        "counter",
        "Finished runs, by outcome.",
        runs,
    );
    for count in &COUNTS {
        family(
            count.metric,
            "counter",
            count.help,
            per(&|c| Some((count.of)(&c.totals.counts).to_string())),
        );
    }
    family(
        "connector_ledger_deliveries",
        "gauge",
        "(item, mailbox) pairs in the delivery ledger now.",
        per(&|c| Some(c.deliveries_in_ledger.to_string())),
    );
    family(
        "connector_quarantine_items",
        "gauge",
        "Items in the quarantine now.",
        per(&|c| Some(c.in_quarantine.to_string())),
    );
    family(
        "connector_last_success_timestamp_seconds",
        "gauge",
        "When the last successful run finished (Unix time).",
        per(&|c| {
            c.totals
                .last_success_ms
                .map(|ms| format!("{:.3}", ms as f64 / 1000.0))
        }),
    );
    family(
        "connector_running",
        "gauge",
        "1 while a run is going on.",
        per(&|c| Some(u8::from(c.state == ConnectorState::Running).to_string())),
    );
    family(
        "connector_failing",
        "gauge",
        "1 when the last run failed.",
        per(&|c| Some(u8::from(c.state == ConnectorState::Failing).to_string())),
    );
    family(
        "connector_lease_held",
        "gauge",
        "1 while a worker holds the connector's lease, by worker.",
        report
            .connectors
            .iter()
            .filter_map(|c| {
                let l = c.lease.as_ref()?;
                Some((
                    format!(
                        "connector=\"{}\",worker=\"{}\"",
                        label(&c.id),
                        label(&l.owner)
                    ),
                    u8::from(l.held).to_string(),
                ))
            })
            .collect(),
    );
    family(
        "connector_worker_heartbeat_age_seconds",
        "gauge",
        "Seconds since each worker's last heartbeat.",
        report
            .workers
            .iter()
            .map(|w| {
                (
                    format!("worker=\"{}\",host=\"{}\"", label(&w.id), label(&w.host)),
                    format!("{:.3}", w.heartbeat_age_secs),
                )
            })
            .collect(),
    );
    let _ = writeln!(
        out,
        "# HELP connector_fenced_commits_total Page commits refused because their lease was taken over.\n\
         # TYPE connector_fenced_commits_total counter\nconnector_fenced_commits_total {}",
        report.fenced_commits
    );
    out
}

/// `label` with its first letter upper case, as the page's labels are.
fn capitalized(label: &str) -> String {
    let mut chars = label.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// What the status says of a connector's transcripts.
fn transcripts_text(t: &TranscriptBacklog) -> String {
    format!(
        "{} conversation day(s) open (sent once the day ends, plus the grace period), {} transcript(s) waiting to be sent (by the next run that reads the source to the end)",
        t.open_days, t.unsent
    )
}
