//! *Audit trail*: who did what, when, from where, to which connector,
//! newest first and filtered; the chain checked on every view; CSV and
//! JSON exports (each export recorded too).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use connector_console::{Permission, SignedIn, page};
use connector_model::time::iso;
use connector_state::{AuditAction, AuditQuery};
use maud::html;
use serde::Deserialize;

use super::{PageError, WebContext};
use crate::report::audit::{
    BROKEN_TRAIL_ADVICE, TrailCheck, verify_trail, write_audit_csv, write_audit_json,
};

/// Records per page.
const PAGE: usize = 100;

#[derive(Deserialize, Default)]
pub(super) struct TrailFilter {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: String,
    before: Option<u64>,
}

fn some(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

pub(super) async fn trail(
    signed_in: SignedIn,
    State(ctx): State<Arc<WebContext>>,
    Query(filter): Query<TrailFilter>,
) -> Response {
    if let Err(refused) = signed_in.require(Permission::ViewAuditTrail) {
        return refused.into_response();
    }
    let query = AuditQuery {
        target: some(&filter.target),
        actor: some(&filter.actor),
        action: AuditAction::parse(filter.action.trim()),
        before_seq: filter.before,
        limit: PAGE,
    };
    let loaded = ctx
        .read(move |_, db| Ok((verify_trail(db)?, db.search_audit(&query)?)))
        .await;
    let (check, records) = match loaded {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let next = (records.len() == PAGE)
        .then(|| records.last().map(|r| r.seq))
        .flatten();
    let body = html! {
        h1 { "Audit trail" }
        @match &check {
            TrailCheck::Intact { records, last_sha256 } => p.notice #chain data-chain="intact" {
                "Chain intact: " (records) " record(s), each chained to the one before"
                @if let Some(sha) = last_sha256 { "; last SHA-256 " code { (sha) } }
                "."
            },
            TrailCheck::Broken(b) => p.advice #chain data-chain="broken" {
                strong { "The chain is broken at record " (b.seq()) ": " } (b) ". " (BROKEN_TRAIL_ADVICE) "."
            },
        }
        div.actions {
            a.button.secondary href="/audit.csv" download { "Export CSV" }
            a.button.secondary href="/audit.json" download { "Export JSON" }
        }
        form method="get" .actions {
            label { "Who" input type="search" name="actor" value=(filter.actor); }
            label { "Action"
                select name="action" {
                    option value="" { "any" }
                    @for a in AuditAction::ALL {
                        option value=(a.as_str()) selected[a.as_str() == filter.action] { (a.as_str()) }
                    }
                }
            }
            label { "Connector" input type="search" name="target" value=(filter.target); }
            button type="submit" { "Filter" }
        }
        table #audit {
            thead { tr { th.num { "#" } th { "When" } th { "Who" } th { "From" } th { "Action" } th { "Connector" } th { "Detail" } } }
            tbody {
                @for r in &records {
                    tr data-action=(r.entry.action.as_str()) {
                        td.num { (r.seq) } td { (iso(r.entry.at_ms)) } td { (r.entry.actor) }
                        td { (r.entry.source) } td { (r.entry.action.as_str()) } td { (r.entry.target) }
                        td { (r.entry.detail) }
                    }
                }
                @if records.is_empty() { tr { td colspan="7" { "No record matches." } } }
            }
        }
        @if let Some(before) = next {
            p { a href={ "/audit?" (serde_urlencoded::to_string([("actor", filter.actor.as_str()), ("action", filter.action.as_str()), ("target", filter.target.as_str()), ("before", &before.to_string())]).unwrap_or_default()) } { "Older records →" } }
        }
    };
    page("Audit trail", Some(&signed_in), "/audit", body).into_response()
}

async fn export(
    signed_in: SignedIn,
    ctx: Arc<WebContext>,
    json: bool,
) -> Result<Response, PageError> {
    if let Err(refused) = signed_in.require(Permission::ViewAuditTrail) {
        return Ok(refused.into_response());
    }
    let format = if json { "json" } else { "csv" };
    ctx.record(
        &signed_in,
        AuditAction::AuditExported,
        "",
        format!("as {format}"),
    )
    .await?;
    let bytes = ctx
        .read(move |_, db| {
            let mut out = Vec::new();
            if json {
                write_audit_json(db, &mut out)?;
            } else {
                write_audit_csv(db, &mut out)?;
            }
            Ok(out)
        })
        .await?;
    let content_type = if json {
        "application/json"
    } else {
        "text/csv; charset=utf-8"
    };
    Ok((
        [
            (CONTENT_TYPE, content_type.to_string()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"audit-trail.{format}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

pub(super) async fn export_csv(
    signed_in: SignedIn,
    State(ctx): State<Arc<WebContext>>,
) -> Response {
    export(signed_in, ctx, false)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn export_json(
    signed_in: SignedIn,
    State(ctx): State<Arc<WebContext>>,
) -> Response {
    export(signed_in, ctx, true)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}
