//! A connector's mapping: the domains that map by e-mail, and the user
//! map CSV (participant id → mailbox), which a connector admin edits here.
//! A CSV that does not parse is refused with its line and what to change,
//! and the file is left as it was; a saved change is recorded in the audit
//! trail with the lines added and removed. Quarantined items then go to
//! their new mailboxes with *Redeliver*.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use connector_console::{CsrfForm, Permission, Refusal, SignedIn, csrf_field, page, replace_file};
use connector_state::AuditAction;
use maud::html;
use serde::Deserialize;

use super::{PageError, WebContext};
use crate::map::UserMap;

#[derive(Deserialize)]
pub(super) struct Shown {
    #[serde(default)]
    saved: Option<String>,
}

pub(super) async fn show(
    signed_in: SignedIn,
    State(ctx): State<Arc<WebContext>>,
    Path(id): Path<String>,
    Query(shown): Query<Shown>,
) -> Response {
    let config = match ctx.connector_for(&signed_in, Permission::ViewQuarantine, &id) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let csv = config
        .mapping
        .overrides
        .as_ref()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default());
    let may_change = signed_in.identity.may(Permission::ChangeConnectors);
    let body = html! {
        h1 { "Mapping of " (id) }
        p { a href={ "/connectors/" (id) } { "← " (id) } " · " a href={ "/connectors/" (id) "/quarantine" } { "the quarantine" } }
        @if shown.saved.is_some() {
            p.notice role="status" { "Saved. Redeliver the quarantine to send its items to the mailboxes they map to now." }
        }
        dl.props {
            dt { "Domains mapped by e-mail" }
            dd { @if config.mapping.domains.is_empty() { "every domain" } @else { (config.mapping.domains.join(", ")) } }
            dt { "User map" }
            dd.mono { @match &config.mapping.overrides { Some(p) => (p.display()), None => "none" } }
        }
        @match (&csv, may_change) {
            (None, _) => p.advice {
                "This connector has no user map file: add overrides = \"users.csv\" under [mapping] in "
                code { (config.path.display()) } " to map people by id."
            },
            (Some(text), true) => form method="post" action={ "/connectors/" (id) "/mapping" } {
                (csrf_field(&signed_in))
                label { "One line per person: ExternalUserId,Mailbox (a header row first)"
                    textarea name="csv" rows="16" cols="80" spellcheck="false" { (text) }
                }
                label { "…or upload a CSV file"
                    input type="file" accept=".csv,text/csv" data-fills="csv";
                }
                div.actions { button type="submit" { "Save mapping" } }
            },
            (Some(text), false) => pre.mono #mapping { (text) },
        }
    };
    page("Mapping", Some(&signed_in), "/", body).into_response()
}

#[derive(Deserialize)]
pub(super) struct MappingForm {
    csv: String,
}

/// The lines of `after` not in `before` (`+`) and of `before` not in
/// `after` (`-`), for the audit trail.
pub(super) fn changed_lines(before: &str, after: &str) -> String {
    let lines = |t: &str| -> BTreeSet<String> {
        t.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (before, after) = (lines(before), lines(after));
    let added = after.difference(&before).map(|l| format!("+{l}"));
    let removed = before.difference(&after).map(|l| format!("-{l}"));
    added.chain(removed).collect::<Vec<_>>().join("\n")
}

pub(super) async fn save(
    State(ctx): State<Arc<WebContext>>,
    Path(id): Path<String>,
    CsrfForm { signed_in, form }: CsrfForm<MappingForm>,
) -> Response {
    let config = match ctx.connector_for(&signed_in, Permission::ChangeConnectors, &id) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let Some(path) = config.mapping.overrides.clone() else {
        return Refusal::new(
            StatusCode::CONFLICT,
            "No user map",
            &format!(
                "{id} has no user map file; add overrides = \"users.csv\" under [mapping] in {} first.",
                config.path.display()
            ),
        )
        .into_response();
    };
    let text = form.csv.replace("\r\n", "\n");
    let text = if text.ends_with('\n') {
        text
    } else {
        text + "\n"
    };
    if let Err(e) = UserMap::check_csv(&path, text.as_bytes()) {
        return Refusal::new(
            StatusCode::BAD_REQUEST,
            "Mapping not saved",
            &format!("{e}. The mapping was left as it was; go back, correct it and save again."),
        )
        .into_response();
    }
    let before = std::fs::read_to_string(&path).unwrap_or_default();
    let written = tokio::task::spawn_blocking({
        let (path, text) = (path.clone(), text.clone());
        move || replace_file(&path, text.as_bytes())
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return PageError::from(e).into_response(),
        Err(e) => return PageError::from(e).into_response(),
    }
    let detail = changed_lines(&before, &text);
    if let Err(e) = ctx
        .record(&signed_in, AuditAction::MappingChanged, &id, detail)
        .await
    {
        return e.into_response();
    }
    Redirect::to(&format!("/connectors/{id}/mapping?saved=1")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_detail_lists_the_lines_added_and_removed() {
        let before = "ExternalUserId,Mailbox\nu-a,a@example.test\nu-b,b@example.test\n";
        let after = "ExternalUserId,Mailbox\nu-a,a@example.test\nu-c,c@example.test\n";
        assert_eq!(
            changed_lines(before, after),
            "+u-c,c@example.test\n-u-b,b@example.test"
        );
    }
}
