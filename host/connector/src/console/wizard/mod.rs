//! *Add connector* and *Edit*: a wizard in the workflow compliance admins
//! know. An installed plugin is chosen; its permissions are shown and
//! granted; the connector is named; its settings come from a form made
//! from the JSON Schema the plugin ships and are checked by the plugin's
//! own `validate-config`; the mail store is chosen; people are mapped (by
//! e-mail, by domains, by a user map CSV), with a preview of the source's
//! people and the mailbox each maps to; the review shows the connector
//! file (and, for a change, what changes), checked as `connector validate`
//! checks it. *Finish* writes the file into the folder the daemon follows,
//! which starts (or restarts) the connector without a restart, and records
//! it in the audit trail.

mod begin;
mod draft;
mod mapping;
mod name;
mod permissions;
mod review;
mod settings;
mod sink;

pub(super) use begin::{choose, edit, start};
pub(super) use review::finish;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use connector_console::{
    ConnectorFolders, CsrfForm, FormProblems, Permission, Refusal, SignedIn, csrf_field, page,
};
use connector_runtime::PluginManifest;
use maud::{Markup, html};
use toml::{Table, Value};

use super::WebContext;
use draft::{Draft, Drafts};

/// The wizard's state: the daemon's pages, its folders and open drafts.
pub(crate) struct Wizard {
    ctx: Arc<WebContext>,
    folders: ConnectorFolders,
    drafts: Drafts,
}

impl Wizard {
    pub fn new(ctx: Arc<WebContext>, folders: ConnectorFolders) -> Wizard {
        Wizard {
            ctx,
            folders,
            drafts: Drafts::default(),
        }
    }

    /// The installed plugins, each read, in name order; a broken one with
    /// its error.
    fn plugins(&self) -> Vec<Result<PluginManifest, String>> {
        let Ok(entries) = std::fs::read_dir(&self.folders.plugins) else {
            return vec![Err(format!(
                "cannot list the plugins folder {}; check [connectors] plugins in the console file",
                self.folders.plugins.display()
            ))];
        };
        let mut found: Vec<Result<PluginManifest, String>> = entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("manifest.toml"))
            .filter(|p| p.is_file())
            .map(|p| PluginManifest::load(&p).map_err(|e| e.to_string()))
            .collect();
        found.sort_by_key(|m| m.as_ref().map(|m| m.name.clone()).unwrap_or_default());
        found
    }

    fn draft(&self, id: &str, who: &SignedIn) -> Result<Draft, Refusal> {
        who.require(Permission::ChangeConnectors)?;
        self.drafts.get(id, &who.identity.name).ok_or_else(|| {
            Refusal::new(
                StatusCode::NOT_FOUND,
                "No such draft",
                "This draft is not yours, has expired (8 hours) or the daemon restarted; start again from Add connector.",
            )
        })
    }
}

/// The wizard's steps after the plugin is chosen, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Permissions,
    Name,
    Settings,
    Sink,
    Mapping,
    Review,
}

impl Step {
    const ALL: [Step; 6] = [
        Step::Permissions,
        Step::Name,
        Step::Settings,
        Step::Sink,
        Step::Mapping,
        Step::Review,
    ];

    fn slug(self) -> &'static str {
        match self {
            Step::Permissions => "permissions",
            Step::Name => "name",
            Step::Settings => "settings",
            Step::Sink => "sink",
            Step::Mapping => "mapping",
            Step::Review => "review",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Step::Permissions => "Permissions",
            Step::Name => "Name",
            Step::Settings => "Settings",
            Step::Sink => "Mail store",
            Step::Mapping => "Mapping",
            Step::Review => "Review",
        }
    }

    fn of(slug: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.slug() == slug)
    }

    fn next(self) -> Step {
        let i = Step::ALL.iter().position(|s| *s == self).unwrap_or(0);
        Step::ALL[(i + 1).min(Step::ALL.len() - 1)]
    }

    /// Whether `draft` has what this step needs from the steps before.
    fn reachable(self, draft: &Draft) -> bool {
        let named = draft.id().is_some();
        let has_sink = draft.get_table("sink").is_some();
        match self {
            Step::Permissions => true,
            Step::Name => draft.accepted,
            Step::Settings => draft.accepted && named,
            Step::Sink => draft.accepted && named && draft.get_table("plugin-config").is_some(),
            Step::Mapping | Step::Review => draft.accepted && named && has_sink,
        }
    }
}

fn step_url(draft: &str, step: Step) -> String {
    format!("/wizard/{draft}/{}", step.slug())
}

fn not_found() -> Response {
    Refusal::new(
        StatusCode::NOT_FOUND,
        "No such step",
        "Open the wizard from Add connector.",
    )
    .into_response()
}

/// The page of a step: the steps bar, then `body`.
fn step_page(who: &SignedIn, draft_id: &str, draft: &Draft, here: Step, body: Markup) -> Response {
    let title = match (&draft.editing, draft.id()) {
        (Some(_), Some(id)) => format!("Edit {id}"),
        _ => format!("Add a {} connector", draft.manifest.name),
    };
    let body = html! {
        h1 { (title) }
        ol.steps {
            @for s in Step::ALL {
                li class=(if s == here { "here" } else { "" }) {
                    @if s.reachable(draft) && s != here {
                        a href=(step_url(draft_id, s)) { (s.label()) }
                    } @else { (s.label()) }
                }
            }
        }
        (body)
    };
    page(&title, Some(who), "/", body).into_response()
}

/// `Ok` when there is no problem.
fn none_of(problems: Vec<String>) -> Result<(), Vec<String>> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn problem_list(problems: &[String]) -> Markup {
    html! {
        @for p in problems { p.advice role="alert" { (p) } }
    }
}

pub(in crate::console) async fn show(
    signed_in: SignedIn,
    State(wizard): State<Arc<Wizard>>,
    Path((draft_id, step)): Path<(String, String)>,
) -> Response {
    let draft = match wizard.draft(&draft_id, &signed_in) {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    let Some(step) = Step::of(&step) else {
        return not_found();
    };
    if !step.reachable(&draft) {
        return Redirect::to(&step_url(&draft_id, Step::Permissions)).into_response();
    }
    let body = match step {
        Step::Review => review::review_body(&wizard, &signed_in, &draft_id, &draft).await,
        _ => form_of(&signed_in, &draft_id, &draft, step, Beside::Nothing),
    };
    step_page(&signed_in, &draft_id, &draft, step, body)
}

pub(in crate::console) async fn save(
    State(wizard): State<Arc<Wizard>>,
    Path((draft_id, step)): Path<(String, String)>,
    CsrfForm { signed_in, form }: CsrfForm<Vec<(String, String)>>,
) -> Response {
    let mut draft = match wizard.draft(&draft_id, &signed_in) {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    let Some(step) = Step::of(&step) else {
        return not_found();
    };
    if !step.reachable(&draft) || step == Step::Review {
        return Redirect::to(&step_url(&draft_id, Step::Permissions)).into_response();
    }
    let answers = Answers(&form);
    let before = draft.clone();
    let outcome: Result<(), Problems> = match step {
        Step::Permissions => {
            let folder = &wizard.folders.folder;
            // A new connector's name comes later; its file's folder is known.
            let file = draft
                .target(folder)
                .unwrap_or_else(|| folder.join("new.toml"));
            permissions::save_permissions(&mut draft, &answers, &file).map_err(Problems::from)
        }
        Step::Name => name::save_name(&wizard, &mut draft, &answers).map_err(Problems::from),
        Step::Settings => settings::save_settings(&wizard, &mut draft, &form).await,
        Step::Sink => sink::save_sink(&mut draft, &answers).map_err(Problems::from),
        Step::Mapping => {
            mapping::save_mapping(&wizard, &mut draft, &answers).map_err(Problems::from)
        }
        Step::Review => unreachable!("refused above"),
    };
    match outcome {
        Err(problems) => {
            // The answers are shown again, with what is wrong.
            let body = form_of(
                &signed_in,
                &draft_id,
                &draft,
                step,
                Beside::Refused(&problems, &form),
            );
            let mut response = step_page(&signed_in, &draft_id, &before, step, body);
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            response
        }
        Ok(()) if step == Step::Mapping && answers.get("action") == Some("preview") => {
            let preview = mapping::preview(&wizard, &draft).await;
            wizard.drafts.put(&draft_id, draft.clone());
            let body = form_of(
                &signed_in,
                &draft_id,
                &draft,
                step,
                Beside::Preview(preview),
            );
            step_page(&signed_in, &draft_id, &draft, step, body)
        }
        Ok(()) => {
            wizard.drafts.put(&draft_id, draft);
            Redirect::to(&step_url(&draft_id, step.next())).into_response()
        }
    }
}

/// A posted form's fields.
struct Answers<'a>(&'a [(String, String)]);

impl Answers<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
    }

    fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or("").to_string()
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    fn lines(&self, name: &str) -> Vec<String> {
        self.text(name)
            .split(['\n', ','])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}

fn strings(values: &[String]) -> Value {
    Value::Array(values.iter().cloned().map(Value::String).collect())
}

fn listed(table: Option<&Table>, key: &str) -> Vec<String> {
    table
        .and_then(|t| t.get(key))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn text_of(table: Option<&Table>, key: &str) -> String {
    table
        .and_then(|t| t.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// What is wrong with a step's answers: said above the form and, for the
/// plugin's settings, beside each field.
#[derive(Default)]
struct Problems {
    said: Vec<String>,
    fields: FormProblems,
}

impl Problems {
    fn said(message: String) -> Problems {
        Problems::from(vec![message])
    }
}

impl From<Vec<String>> for Problems {
    fn from(said: Vec<String>) -> Problems {
        Problems {
            said,
            ..Problems::default()
        }
    }
}

/// What a step's form shows besides the draft.
enum Beside<'a> {
    Nothing,
    /// The answers just posted and what is wrong with them; a step that
    /// can shows them again as typed.
    Refused(&'a Problems, &'a [(String, String)]),
    /// The people the source's first pages map to (mapping step).
    Preview(mapping::Preview),
}

/// The form of `step`, filled from `draft`, with what goes `beside` it.
fn form_of(
    who: &SignedIn,
    draft_id: &str,
    draft: &Draft,
    step: Step,
    beside: Beside<'_>,
) -> Markup {
    let nothing_wrong = Problems::default();
    let (problems, posted, preview) = match beside {
        Beside::Nothing => (&nothing_wrong, None, None),
        Beside::Refused(problems, posted) => (problems, Some(posted), None),
        Beside::Preview(preview) => (&nothing_wrong, None, Some(preview)),
    };
    let inner = match step {
        Step::Permissions => permissions::permissions_form(draft),
        Step::Name => name::name_form(draft),
        Step::Settings => settings::settings_form(draft, &problems.fields, posted),
        Step::Sink => sink::sink_form(draft),
        Step::Mapping => mapping::mapping_form(draft, preview),
        Step::Review => html! {},
    };
    html! {
        (problem_list(&problems.said))
        form.wizard method="post" action=(step_url(draft_id, step)) {
            (csrf_field(who))
            (inner)
            div.actions { button type="submit" name="action" value="next" { "Next" } }
        }
    }
}
