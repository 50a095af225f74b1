//! Choosing a plugin to add a connector of, and opening a connector to
//! edit: each starts a draft.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use connector_console::{CsrfForm, Permission, Refusal, SignedIn, csrf_field, page};
use maud::html;
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use super::draft::Draft;
use super::{Step, Wizard, step_url};

pub(in crate::console) async fn choose(
    signed_in: SignedIn,
    State(wizard): State<Arc<Wizard>>,
) -> Response {
    if let Err(refused) = signed_in.require(Permission::ChangeConnectors) {
        return refused.into_response();
    }
    let plugins = wizard.plugins();
    let body = html! {
        h1 { "Add a connector" }
        p { "Choose the source to archive. Plugins are installed in " code { (wizard.folders.plugins.display()) } "." }
        table #plugins {
            thead { tr { th { "Source" } th { "Plugin" } th { "Version" } th { "What it reads" } th {} } }
            tbody {
                @for p in &plugins {
                    @match p {
                        Ok(m) => tr data-plugin=(m.id) {
                            td { (m.name) } td.mono { (m.id) } td { (m.version) }
                            td { (m.description.as_deref().unwrap_or("")) }
                            td { form method="post" action="/connectors/new" {
                                (csrf_field(&signed_in))
                                input type="hidden" name="plugin" value=(m.id);
                                button type="submit" { "Choose" }
                            } }
                        },
                        Err(e) => tr { td colspan="5" { p.advice { (e) } } },
                    }
                }
            }
        }
        @if plugins.is_empty() {
            p.advice { "No plugin is installed: install one with `connector package` (or `connector plugin build`) into the plugins folder." }
        }
    };
    page("Add a connector", Some(&signed_in), "/", body).into_response()
}

#[derive(Deserialize)]
pub(in crate::console) struct Chosen {
    plugin: String,
}

pub(in crate::console) async fn start(
    State(wizard): State<Arc<Wizard>>,
    CsrfForm { signed_in, form }: CsrfForm<Chosen>,
) -> Response {
    if let Err(refused) = signed_in.require(Permission::ChangeConnectors) {
        return refused.into_response();
    }
    let manifest = wizard
        .plugins()
        .into_iter()
        .flatten()
        .find(|m| m.id == form.plugin);
    let Some(manifest) = manifest else {
        return Refusal::new(
            StatusCode::NOT_FOUND,
            "No such plugin",
            &format!(
                "No plugin `{}` is installed; choose one from the list.",
                form.plugin
            ),
        )
        .into_response();
    };
    let id = wizard
        .drafts
        .add(Draft::new_connector(&signed_in.identity.name, manifest));
    Redirect::to(&step_url(&id, Step::Permissions)).into_response()
}

pub(in crate::console) async fn edit(
    State(wizard): State<Arc<Wizard>>,
    Path(id): Path<String>,
    CsrfForm { signed_in, .. }: CsrfForm<Map<String, Json>>,
) -> Response {
    let config = match wizard
        .ctx
        .connector_for(&signed_in, Permission::ChangeConnectors, &id)
    {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    match Draft::of_existing(&signed_in.identity.name, &config) {
        Ok(draft) => {
            let draft_id = wizard.drafts.add(draft);
            Redirect::to(&step_url(&draft_id, Step::Permissions)).into_response()
        }
        Err(e) => Refusal::new(
            StatusCode::CONFLICT,
            "Cannot edit this connector here",
            &format!("{e}; fix the file by hand, then edit it here."),
        )
        .into_response(),
    }
}
