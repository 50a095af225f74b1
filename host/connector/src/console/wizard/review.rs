//! The connector file as it will be written, checked as `connector
//! validate` checks it, and *Finish*, which writes it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use connector_console::{CsrfForm, Refusal, SignedIn, csrf_field, replace_file};
use connector_state::AuditAction;
use maud::{Markup, html};
use serde_json::{Map, Value as Json};

use super::draft::{Draft, DraftConfig};
use super::{Step, Wizard, step_url};
use crate::console::PageError;
use crate::console::mapping::changed_lines;

/// Where a checked draft is written: the connector file, and its user map
/// when it names one.
struct Targets {
    file: PathBuf,
    csv_file: Option<PathBuf>,
}

/// Checks the draft as `connector validate` checks a file, with its user
/// map from the draft; returns where it is written.
async fn check_all(wizard: &Wizard, draft: &Draft) -> Result<Targets, String> {
    let file = draft
        .target(&wizard.folders.folder)
        .ok_or("the connector has no name yet")?;
    let DraftConfig {
        config, csv_file, ..
    } = draft.config(&file)?;
    let host = wizard.ctx.host.clone();
    tokio::task::spawn_blocking(move || host.validate(&config).map(drop))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(Targets { file, csv_file })
}

pub(super) async fn review_body(
    wizard: &Wizard,
    who: &SignedIn,
    draft_id: &str,
    draft: &Draft,
) -> Markup {
    let checked = check_all(wizard, draft).await;
    let text = draft.text();
    let before = draft
        .editing
        .as_ref()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default());
    html! {
        @match &checked {
            Ok(targets) => p.notice role="status" { "Checked as connector validate checks it. Finish writes " code { (targets.file.display()) } "; the daemon starts it within seconds." },
            Err(e) => p.advice role="alert" { (e) " Go back to the step concerned and change it." },
        }
        @if let Some(before) = &before {
            h2 { "What changes" }
            pre.mono #diff { (changed_lines(before, &text)) }
        }
        h2 { "The connector file" }
        pre.mono #connector-file { (text) }
        h2 { "The user map" }
        pre.mono #user-map { (draft.csv) }
        @if checked.is_ok() {
            form method="post" action={ "/wizard/" (draft_id) "/finish" } {
                (csrf_field(who))
                div.actions { button type="submit" { "Finish" } }
            }
        }
    }
}

pub(in crate::console) async fn finish(
    State(wizard): State<Arc<Wizard>>,
    Path(draft_id): Path<String>,
    CsrfForm { signed_in, .. }: CsrfForm<Map<String, Json>>,
) -> Response {
    let draft = match wizard.draft(&draft_id, &signed_in) {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    if !Step::Review.reachable(&draft) {
        return Redirect::to(&step_url(&draft_id, Step::Permissions)).into_response();
    }
    let Targets {
        file: target,
        csv_file,
    } = match check_all(&wizard, &draft).await {
        Ok(t) => t,
        Err(e) => {
            return Refusal::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Not finished",
                &format!("{e}; go back to the review and change what it names."),
            )
            .into_response();
        }
    };
    let id = draft.id().unwrap_or_default().to_string();
    if draft.editing.is_none() && target.exists() {
        return Refusal::new(
            StatusCode::CONFLICT,
            "Not finished",
            &format!(
                "{} exists already; go back and choose another name.",
                target.display()
            ),
        )
        .into_response();
    }
    let before = draft
        .editing
        .as_ref()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default());
    let text = draft.text();
    let written = tokio::task::spawn_blocking({
        let (target, text, csv) = (target.clone(), text.clone(), draft.csv.clone());
        move || -> std::io::Result<()> {
            // The user map first: the connector file names it.
            if let Some(p) = csv_file {
                replace_file(&p, csv.as_bytes())?;
            }
            replace_file(&target, text.as_bytes())
        }
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return PageError(format!("cannot write {}: {e}", target.display())).into_response();
        }
        Err(e) => return PageError::from(e).into_response(),
    }
    wizard.drafts.remove(&draft_id);
    let (action, detail) = match &before {
        Some(before) => (AuditAction::ConnectorChanged, changed_lines(before, &text)),
        None => (AuditAction::ConnectorCreated, text.clone()),
    };
    if let Err(e) = wizard.ctx.record(&signed_in, action, &id, detail).await {
        return e.into_response();
    }
    // The daemon reads its folders every 2 s; the page waits for it.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if wizard.ctx.connectors().configs.iter().any(|c| c.id == id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Redirect::to(&format!("/connectors/{id}")).into_response()
}
