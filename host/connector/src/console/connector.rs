//! One connector: its properties, runs with a log download each, the
//! quarantine with *Redeliver*, and a run's reconciliation per mailbox and
//! day with mismatches highlighted.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use connector_console::{CsrfForm, Permission, SignedIn, csrf_field, page, refusal_page};
use connector_model::time::iso;
use connector_runtime::PluginManifest;
use connector_state::{AuditAction, RunId, RunRecord, StateStore};
use maud::{Markup, html};
use serde::Deserialize;

use super::connectors::{NoFields, run_controls, run_summary, state_badge};
use super::{PageError, WebContext};
use crate::report::{self, counts, counts::COUNTS};
use crate::status::{capitalized, lease_text, paused_text, standing, transcripts_text};

/// How many runs the page lists.
const RUNS_SHOWN: usize = 50;

fn properties(ctx: &WebContext, id: &str) -> Markup {
    let set = ctx.connectors();
    let Some(c) = set.configs.iter().find(|c| c.id == id) else {
        return html! {};
    };
    let manifest = PluginManifest::load(&c.plugin);
    let sha = set
        .fingerprints
        .get(id)
        .and_then(|f| f.get("plugin"))
        .cloned()
        .unwrap_or_default();
    let grants = &c.grants;
    html! {
        dl.props #properties {
            dt { "Plugin" }
            dd { @match &manifest {
                Ok(m) => { (m.name) " (" (m.id) ") " (m.version) },
                Err(e) => { "manifest unreadable: " (e) },
            } }
            dt { "Plugin SHA-256" } dd.mono { (sha) }
            dt { "Connector file" } dd.mono { (c.path.display()) }
            dt { "Schedule" } dd.mono { (c.schedule) }
            dt { "Hosts granted" } dd { @for h in &grants.hosts { code { (h) } " " } }
            dt { "Secrets granted" } dd { @for s in &grants.secrets { code { (s) } " " } }
            dt { "Files granted" } dd { @for (inside, outside) in &grants.files { code { (inside) " → " (outside.display()) } " " } }
            dt { "Sink" } dd { (c.sink.describe()) }
            dt { "Folder" } dd { (c.folder.as_deref().unwrap_or("(the plugin's)")) }
        }
    }
}

pub(super) async fn show(
    signed_in: SignedIn,
    State(ctx): State<Arc<WebContext>>,
    Path(id): Path<String>,
) -> Response {
    if let Err(refused) = ctx.connector_for(&signed_in, Permission::ViewStatus, &id) {
        return refused.into_response();
    }
    let wanted = id.clone();
    let loaded = ctx
        .read(move |ctx, db| {
            let report = ctx.report(db)?;
            let status = report.connectors.into_iter().find(|c| c.id == wanted);
            Ok((status, db.runs(&wanted, RUNS_SHOWN)?))
        })
        .await;
    let (Some(status), runs) = (match loaded {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    }) else {
        return refusal_page(
            StatusCode::NOT_FOUND,
            "No such connector",
            "Pick one from the list.",
        );
    };
    let may_reconcile = signed_in.identity.may(Permission::ViewReconciliation);
    let body = html! {
        h1 { (id) " " (state_badge(&status)) }
        (run_controls(&signed_in, &status))
        @if ctx.may_edit(&signed_in) {
            form method="post" action={ "/connectors/" (id) "/edit" } {
                (csrf_field(&signed_in))
                button.secondary #edit-connector type="submit" { "Edit" }
            }
        }
        @if let Some(e) = &status.last_error {
            div.advice { (e.message) br; strong { "What to do: " } (e.action) }
        }
        @if let Some(r) = &status.refused { div.advice { (r) } }
        h2 { "Properties" }
        (properties(&ctx, &id))
        h2 { "Status with the source" }
        dl.props #standing {
            dt { "Last run" } dd { (run_summary(status.last_run.as_ref())) }
            dt { "Last success" } dd { (status.last_success_at.as_deref().unwrap_or("never")) }
            dt { "Next run" } dd { (status.next_run_at.as_deref().unwrap_or("")) }
            @if let Some(p) = &status.paused { dt { "Paused" } dd { (paused_text(&status, p)) } }
            @for (label, value) in standing(&status) { dt { (capitalized(label)) } dd { (value) } }
            @if signed_in.identity.may(Permission::ViewQuarantine) {
                dt {} dd { a href={ "/connectors/" (id) "/quarantine" } { "Open the quarantine" } }
            }
            @if let Some(l) = &status.lease { dt { "Lease" } dd { (lease_text(l)) } }
            @if let Some(t) = &status.transcripts { dt { "Transcripts" } dd { (transcripts_text(t)) } }
            @for u in &status.unreadable {
                dt { "Not read" } dd { code { (u.report.conversation_id) } ": " (u.report.reason) " " strong { "Fix: " } (u.report.fix) }
            }
        }
        h2 { "Runs" }
        table #runs {
            thead { tr {
                th { "Run" } th { "Kind" } th { "Started" } th { "Outcome" }
                @for c in &COUNTS { th.num title=(c.help) { (c.column) } }
                th { "Log" }
            } }
            tbody {
                @for r in &runs {
                    tr data-run=(r.id.0) {
                        td { (r.id.0) } td { (r.kind.as_str()) } td { (iso(r.started_at_ms)) }
                        td { (r.outcome.map_or("running", |o| o.as_str())) }
                        @for c in &COUNTS { td.num data-count=(c.field) { ((c.of)(&r.counts)) } }
                        td {
                            a href={ "/connectors/" (id) "/runs/" (r.id.0) "/log.csv" } download { "Download log" }
                            @if may_reconcile {
                                " · " a href={ "/connectors/" (id) "/runs/" (r.id.0) "/reconciliation" } { "Reconciliation" }
                            }
                        }
                    }
                }
            }
        }
    };
    page(&id, Some(&signed_in), "/", body).into_response()
}

/// Run `run` of connector `id`.
fn run_of(db: &dyn StateStore, id: &str, run: i64) -> Result<RunRecord, PageError> {
    let record = report::pick_run(db, Some(RunId(run)), None)?;
    if record.connector != id {
        return Err(PageError(format!("run {run} is not a run of {id}")));
    }
    Ok(record)
}

pub(super) async fn download_log(
    signed_in: SignedIn,
    State(ctx): State<Arc<WebContext>>,
    Path((id, run)): Path<(String, i64)>,
) -> Response {
    if let Err(refused) = signed_in.require(Permission::DownloadLogs) {
        return refused.into_response();
    }
    let wanted = id.clone();
    let csv = ctx
        .read(move |_, db| {
            let record = run_of(db, &wanted, run)?;
            let log = report::admin_log(db, &record)?;
            let mut out = Vec::new();
            report::write_admin_log_csv(&log, &mut out)?;
            Ok(out)
        })
        .await;
    let csv = match csv {
        Ok(bytes) => ctx
            .record(
                &signed_in,
                AuditAction::LogDownloaded,
                &id,
                format!("run {run}"),
            )
            .await
            .map(|()| bytes),
        Err(e) => Err(e),
    };
    match csv {
        Ok(bytes) => (
            [
                (CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{id}-run-{run}.csv\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) async fn reconciliation(
    signed_in: SignedIn,
    State(ctx): State<Arc<WebContext>>,
    Path((id, run)): Path<(String, i64)>,
) -> Response {
    if let Err(refused) = signed_in.require(Permission::ViewReconciliation) {
        return refused.into_response();
    }
    let wanted = id.clone();
    let rec = ctx
        .read(move |_, db| {
            let record = run_of(db, &wanted, run)?;
            Ok(report::reconcile(db, &record, None)?)
        })
        .await;
    let rec = match rec {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let body = html! {
        h1 { "Reconciliation of run " (run) }
        p { a href={ "/connectors/" (id) } { "← " (id) } }
        p.notice {
            (rec.items_seen) " item(s) seen at the source · "
            strong { (rec.mismatches) " mismatch(es)" }
            " · compared with the ledger (`connector reconcile --check-mailboxes` also asks the mailboxes)"
        }
        h2 { "Per mailbox and day" }
        table #reconciliation {
            thead { tr { th { "Day" } th { "Mailbox" } th.num { "Seen" } th.num { "Delivered" } th.num { "In quarantine" } th.num { "Mismatches" } } }
            tbody {
                @for d in &rec.days {
                    tr class=[(d.mismatches > 0).then_some("mismatch")] {
                        td { (d.day) } td { @if d.mailbox.is_empty() { span.muted { "(no mailbox)" } } @else { (d.mailbox) } }
                        td.num { (d.seen) } td.num { (d.delivered) } td.num { (d.in_quarantine) } td.num { (d.mismatches) }
                    }
                }
            }
        }
        @if rec.mismatches > 0 {
            h2 { "Mismatches" }
            table {
                thead { tr { th { "Day" } th { "Mailbox" } th { "Item" } th { "Status" } th { "Message-ID" } } }
                tbody {
                    @for r in rec.rows.iter().filter(|r| r.mismatch) {
                        tr.mismatch { td { (r.day) } td { (r.mailbox) } td.mono { (r.item_id) } td { (r.status.as_str()) } td.mono { (r.message_id) } }
                    }
                }
            }
        }
    };
    page("Reconciliation", Some(&signed_in), "/", body).into_response()
}

#[derive(Deserialize)]
pub(super) struct QuarantineFilter {
    #[serde(default)]
    q: String,
}

pub(super) async fn quarantine(
    signed_in: SignedIn,
    State(ctx): State<Arc<WebContext>>,
    Path(id): Path<String>,
    Query(filter): Query<QuarantineFilter>,
) -> Response {
    if let Err(refused) = ctx.connector_for(&signed_in, Permission::ViewQuarantine, &id) {
        return refused.into_response();
    }
    let wanted = id.clone();
    let entries = match ctx.read(move |_, db| Ok(db.quarantine(&wanted)?)).await {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    let needle = filter.q.to_lowercase();
    let shown: Vec<_> = entries
        .iter()
        .filter(|e| {
            needle.is_empty()
                || e.item_id.to_lowercase().contains(&needle)
                || e.reason.to_lowercase().contains(&needle)
                || e.unmapped.iter().any(|p| {
                    p.id.to_lowercase().contains(&needle)
                        || p.email
                            .as_deref()
                            .is_some_and(|m| m.to_lowercase().contains(&needle))
                        || p.display_name
                            .as_deref()
                            .is_some_and(|n| n.to_lowercase().contains(&needle))
                })
        })
        .collect();
    let body = html! {
        h1 { "Quarantine of " (id) }
        p { a href={ "/connectors/" (id) } { "← " (id) } }
        p.notice {
            "Items wait here when a participant has no mailbox or a mailbox refused them. Fix the mapping (the connector's user map or domains), then redeliver: each item goes to the mailboxes it now maps to, never twice."
        }
        @if signed_in.identity.may(Permission::ChangeConnectors) {
            div.actions {
                a.button.secondary href={ "/connectors/" (id) "/mapping" } { "Fix the mapping" }
                form method="post" action={ "/connectors/" (id) "/redeliver" } data-confirm="Redeliver every quarantined item with the current mapping?" {
                    (csrf_field(&signed_in))
                    button type="submit" { "Redeliver" }
                }
            }
        }
        form method="get" {
            label { "Filter" input type="search" name="q" value=(filter.q) placeholder="user, e-mail, item or reason"; }
        }
        p.muted { (shown.len()) " of " (entries.len()) " item(s)" }
        table #quarantine {
            thead { tr { th { "Item" } th { "Sent" } th { "Participants without a mailbox" } th { "Reason" } } }
            tbody {
                @for e in &shown {
                    tr {
                        td.mono { (e.item_id) }
                        td { (iso(e.sent_at_ms)) }
                        td { @for p in &e.unmapped {
                            (p.display_name.as_deref().unwrap_or(&p.id))
                            @if let Some(m) = &p.email { " <" (m) ">" }
                            br;
                        } }
                        td { (e.reason) }
                    }
                }
            }
        }
    };
    page("Quarantine", Some(&signed_in), "/", body).into_response()
}

pub(super) async fn redeliver(
    State(ctx): State<Arc<WebContext>>,
    Path(id): Path<String>,
    CsrfForm { signed_in, .. }: CsrfForm<NoFields>,
) -> Response {
    let config = match ctx.connector_for(&signed_in, Permission::ChangeConnectors, &id) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let host = ctx.host.clone();
    let done = tokio::task::spawn_blocking(move || host.redeliver_quarantine(&config)).await;
    let summary = match done {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return refusal_page(
                StatusCode::CONFLICT,
                "Redelivery did not finish",
                &format!("{e}. Nothing delivered twice; try again."),
            );
        }
        Err(e) => return PageError::from(e).into_response(),
    };
    let detail = format!(
        "run {}: {}, {} released from the quarantine",
        summary.run.map_or("none".to_string(), |r| r.0.to_string()),
        counts::summary(&summary.counts),
        summary.released
    );
    if let Err(e) = ctx
        .record(&signed_in, AuditAction::Redelivered, &id, detail)
        .await
    {
        return e.into_response();
    }
    let body = html! {
        h1 { "Redelivered" }
        p { a href={ "/connectors/" (id) "/quarantine" } { "← the quarantine of " (id) } }
        dl.props #redelivery {
            dt { "Run" } dd { (summary.run.map_or("none (the quarantine was empty)".to_string(), |r| r.0.to_string())) }
            @for c in &COUNTS { dt { (c.column) } dd data-count=(c.field) { ((c.of)(&summary.counts)) } }
            dt { "Released from the quarantine" } dd { (summary.released) }
        }
    };
    page("Redelivered", Some(&signed_in), "/", body).into_response()
}
