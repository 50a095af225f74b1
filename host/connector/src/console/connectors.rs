//! *Data connectors*: every connector with its state, last and next run,
//! counts, and the failing reason with what to do.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use connector_console::{CsrfForm, Permission, Refusal, SignedIn, csrf_field, page};
use connector_model::time::iso;
use connector_state::AuditAction;
use maud::{Markup, html};

use super::WebContext;
use crate::status::{ConnectorStatus, RunView};

/// A state badge, and a second one while paused.
pub(super) fn state_badge(c: &ConnectorStatus) -> Markup {
    let state = c.state.as_str();
    html! {
        span class={ "state state-" (state) } data-state=(state) { (state) }
        @if let Some(p) = &c.paused {
            " " span.state.state-paused data-paused=(p.by) title={ "paused by " (p.by) " at " (p.at) } { "paused" }
        }
    }
}

/// *Run now*, *Pause* or *Resume*, for those who may change connectors.
pub(super) fn run_controls(signed_in: &SignedIn, c: &ConnectorStatus) -> Markup {
    if !signed_in.identity.may(Permission::ChangeConnectors) {
        return html! {};
    }
    let action = |path: &str, label: &str, class: &str| {
        html! {
            form method="post" action={ "/connectors/" (c.id) "/" (path) } {
                (csrf_field(signed_in))
                button class=(class) type="submit" { (label) }
            }
        }
    };
    html! {
        div.actions {
            @if c.paused.is_some() {
                (action("resume", "Resume", ""))
            } @else {
                (action("run", "Run now", ""))
                (action("pause", "Pause", "secondary"))
            }
        }
    }
}

/// A run's outcome and when it ended.
pub(super) fn run_summary(run: Option<&RunView>) -> Markup {
    match run {
        None => html! { span.muted { "never" } },
        Some(r) => html! {
            (r.outcome) br;
            span.muted { (r.finished_at.as_deref().unwrap_or(&r.started_at)) }
        },
    }
}

pub(super) async fn list(signed_in: SignedIn, State(ctx): State<Arc<WebContext>>) -> Response {
    if let Err(refused) = signed_in.require(Permission::ViewStatus) {
        return refused.into_response();
    }
    let report = match ctx.read(|ctx, db| ctx.report(db)).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let body = html! {
        h1 { "Data connectors" }
        @if ctx.may_edit(&signed_in) {
            div.actions { a.button #add-connector href="/connectors/new" { "Add connector" } }
        }
        p.muted { (report.connectors.len()) " connector(s) · updated " (report.generated_at) }
        table #connectors {
            thead { tr {
                th { "Name" } th { "Plugin" } th { "Status" } th { "Last run" } th { "Next run" }
                th.num { "Imported" } th.num { "Failed" } th.num { "In quarantine" } th { "Schedule" }
            } }
            tbody {
                @for c in &report.connectors {
                    @let last = c.current_run.as_ref().or(c.last_run.as_ref());
                    tr data-connector=(c.id) data-state=(c.state.as_str()) {
                        td { a href={ "/connectors/" (c.id) } { (c.id) } }
                        td { (c.plugin) }
                        td {
                            (state_badge(c))
                            (run_controls(&signed_in, c))
                            @if let Some(e) = &c.last_error {
                                div.advice { (e.message) br; strong { "What to do: " } (e.action) }
                            }
                        }
                        td { (run_summary(last)) }
                        td { (c.next_run_at.as_deref().unwrap_or("")) }
                        td.num { (last.map_or(0, |r| r.counts.imported)) }
                        td.num { (last.map_or(0, |r| r.counts.failed)) }
                        td.num { (c.in_quarantine) }
                        td.mono { (c.schedule) }
                    }
                }
                @if report.connectors.is_empty() {
                    tr { td colspan="9" { "No connectors configured." } }
                }
            }
        }
        @if !report.workers.is_empty() {
            h2 { "Workers" }
            p.muted { (report.fenced_commits) " commit(s) refused since a worker's lease was taken over (each stored nothing)" }
            table #workers {
                thead { tr { th { "Worker" } th { "Version" } th { "Started" } th { "Heartbeat" } th { "Runs" } th { "Configured" } } }
                tbody {
                    @for w in &report.workers {
                        tr data-worker=(w.id) data-alive=(w.alive) {
                            td.mono { (w.id) }
                            td { (w.version) }
                            td { (w.started_at) }
                            td { (format!("{:.0}", w.heartbeat_age_secs)) " s ago" @if !w.alive { " " span.state.state-failing { "gone" } } }
                            td { (w.holds.join(", ")) }
                            td { (w.configured.join(", ")) }
                        }
                    }
                }
            }
        }
    };
    page("Data connectors", Some(&signed_in), "/", body).into_response()
}

#[derive(serde::Deserialize)]
pub(super) struct NoFields {}

/// What a control does to the state, and the audit detail; `Err` refuses.
type Control =
    fn(&mut dyn connector_state::StateStore, &str, &str) -> Result<Option<String>, Refusal>;

async fn control(
    ctx: Arc<WebContext>,
    id: String,
    signed_in: SignedIn,
    action: AuditAction,
    apply: Control,
) -> Response {
    if let Err(refused) = ctx.connector_for(&signed_in, Permission::ChangeConnectors, &id) {
        return refused.into_response();
    }
    let (target, by) = (id.clone(), signed_in.identity.name.clone());
    let applied = ctx.read(move |_, db| Ok(apply(db, &target, &by))).await;
    match applied {
        Ok(Ok(Some(detail))) => {
            if let Err(e) = ctx.record(&signed_in, action, &id, detail).await {
                return e.into_response();
            }
            Redirect::to(&format!("/connectors/{id}")).into_response()
        }
        // Nothing changed (already paused, not paused): nothing to record.
        Ok(Ok(None)) => Redirect::to(&format!("/connectors/{id}")).into_response(),
        Ok(Err(refused)) => refused.into_response(),
        Err(e) => e.into_response(),
    }
}

fn state_failed(e: connector_state::StateError) -> Refusal {
    Refusal::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Not done",
        &format!("{e}; nothing was changed, try again"),
    )
}

pub(super) async fn run_now(
    State(ctx): State<Arc<WebContext>>,
    Path(id): Path<String>,
    CsrfForm { signed_in, .. }: CsrfForm<NoFields>,
) -> Response {
    control(ctx, id, signed_in, AuditAction::RunStarted, |db, id, by| {
        if let Some(p) = db.paused(id).map_err(state_failed)? {
            return Err(Refusal::new(
                StatusCode::CONFLICT,
                "Paused",
                &format!(
                    "{id} is paused (by {} at {}); resume it first, then run it.",
                    p.by,
                    iso(p.at_ms)
                ),
            ));
        }
        let request = db.request_run(id, by).map_err(state_failed)?;
        Ok(Some(format!("requested at {}", iso(request.at_ms))))
    })
    .await
}

pub(super) async fn pause(
    State(ctx): State<Arc<WebContext>>,
    Path(id): Path<String>,
    CsrfForm { signed_in, .. }: CsrfForm<NoFields>,
) -> Response {
    control(ctx, id, signed_in, AuditAction::Paused, |db, id, by| {
        if db.paused(id).map_err(state_failed)?.is_some() {
            return Ok(None);
        }
        db.pause(id, by).map_err(state_failed)?;
        Ok(Some(String::new()))
    })
    .await
}

pub(super) async fn resume(
    State(ctx): State<Arc<WebContext>>,
    Path(id): Path<String>,
    CsrfForm { signed_in, .. }: CsrfForm<NoFields>,
) -> Response {
    control(ctx, id, signed_in, AuditAction::Resumed, |db, id, _| {
        Ok(db
            .resume(id)
            .map_err(state_failed)?
            .map(|p| format!("paused by {} at {}", p.by, iso(p.at_ms))))
    })
    .await
}
