//! The status report as plain text, as an HTML page and as Prometheus
//! metrics.

use std::fmt::Write as _;

use super::{ConnectorState, ConnectorStatus, LeaseView, PauseView, StatusReport, WorkerView};
use crate::report::counts::{COUNTS, summary};
use connector_state::{RunOutcome, TranscriptBacklog};

/// What the connector's state holds now, as the text and the page label
/// it: deliveries in the ledger and items in the quarantine (unlike a
/// run's counts, which say what that run did).
pub(crate) fn standing(c: &ConnectorStatus) -> [(&'static str, String); 2] {
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
        if let Some(p) = &c.paused {
            let _ = writeln!(out, "  paused: {}", paused_text(c, p));
        }
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

pub(crate) fn paused_text(c: &ConnectorStatus, p: &PauseView) -> String {
    format!(
        "by {} at {}; no run starts until `connector resume {}`",
        p.by, p.at, c.id
    )
}

pub(crate) fn lease_text(l: &LeaseView) -> String {
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
pub(crate) fn capitalized(label: &str) -> String {
    let mut chars = label.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// What the status says of a connector's transcripts.
pub(crate) fn transcripts_text(t: &TranscriptBacklog) -> String {
    format!(
        "{} conversation day(s) open (sent once the day ends, plus the grace period), {} transcript(s) waiting to be sent (by the next run that reads the source to the end)",
        t.open_days, t.unsent
    )
}
