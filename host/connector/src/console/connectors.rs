//! *Data connectors*: every connector with its state, last and next run,
//! counts, and the failing reason with what to do.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use connector_console::{Permission, SignedIn, page};
use maud::{Markup, html};

use super::WebContext;
use crate::status::{ConnectorStatus, RunView};

/// A state badge.
pub(super) fn state_badge(c: &ConnectorStatus) -> Markup {
    let state = c.state.as_str();
    html! { span class={ "state state-" (state) } data-state=(state) { (state) } }
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
        p.muted { (report.connectors.len()) " connector(s) · updated " (report.generated_at) }
        table #connectors {
            thead { tr {
                th { "Name" } th { "Plugin" } th { "Status" } th { "Last run" } th { "Next run" }
                th.num { "Imported" } th.num { "Quarantined" } th.num { "Failed" } th { "Schedule" }
            } }
            tbody {
                @for c in &report.connectors {
                    @let last = c.current_run.as_ref().or(c.last_run.as_ref());
                    tr data-connector=(c.id) data-state=(c.state.as_str()) {
                        td { a href={ "/connectors/" (c.id) } { (c.id) } }
                        td { (c.plugin) }
                        td {
                            (state_badge(c))
                            @if let Some(e) = &c.last_error {
                                div.advice { (e.message) br; strong { "What to do: " } (e.action) }
                            }
                        }
                        td { (run_summary(last)) }
                        td { (c.next_run_at.as_deref().unwrap_or("")) }
                        td.num { (last.map_or(0, |r| r.counts.imported)) }
                        td.num { (c.quarantined) }
                        td.num { (last.map_or(0, |r| r.counts.failed)) }
                        td.mono { (c.schedule) }
                    }
                }
                @if report.connectors.is_empty() {
                    tr { td colspan="9" { "No connectors configured." } }
                }
            }
        }
    };
    page("Data connectors", Some(&signed_in), "/", body).into_response()
}
