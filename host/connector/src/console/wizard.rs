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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use connector_console::{
    ConnectorFolders, CsrfForm, FormProblems, Permission, Refusal, SettingsForm, SignedIn,
    csrf_field, page, replace_file,
};
use connector_model::Person;
use connector_runtime::{Grants, PluginManifest};
use connector_state::AuditAction;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use toml::{Table, Value};

use super::draft::{CSV_HEADER, Draft, DraftConfig, Drafts};
use super::mapping::changed_lines;
use super::{PageError, WebContext};
use crate::config::{Schedule, SinkConfig};

/// The source's people and the mailbox each maps to, or why the source
/// could not be read.
type Preview = Result<Vec<(Person, Option<String>)>, String>;

/// How many pages of the source the mapping preview reads.
const PREVIEW_PAGES: usize = 3;

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

// --- Choosing a plugin --------------------------------------------------

pub(super) async fn choose(signed_in: SignedIn, State(wizard): State<Arc<Wizard>>) -> Response {
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
pub(super) struct Chosen {
    plugin: String,
}

pub(super) async fn start(
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

pub(super) async fn edit(
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

// --- The steps ------------------------------------------------------------

pub(super) async fn show(
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
        Step::Review => review_body(&wizard, &signed_in, &draft_id, &draft).await,
        _ => form_of(
            &signed_in,
            &draft_id,
            &draft,
            step,
            &Problems::default(),
            None,
        ),
    };
    step_page(&signed_in, &draft_id, &draft, step, body)
}

pub(super) async fn save(
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
        Step::Permissions => save_permissions(&mut draft, &answers).map_err(Problems::from),
        Step::Name => save_name(&wizard, &mut draft, &answers).map_err(Problems::from),
        Step::Settings => save_settings(&wizard, &mut draft, &form).await,
        Step::Sink => save_sink(&mut draft, &answers).map_err(Problems::from),
        Step::Mapping => save_mapping(&wizard, &mut draft, &answers).map_err(Problems::from),
        Step::Review => unreachable!("refused above"),
    };
    match outcome {
        Err(problems) => {
            // The answers are shown again, with what is wrong.
            let body = form_of(&signed_in, &draft_id, &draft, step, &problems, None);
            let mut response = step_page(&signed_in, &draft_id, &before, step, body);
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            response
        }
        Ok(()) if step == Step::Mapping && answers.get("action") == Some("preview") => {
            let preview = preview(&wizard, &draft).await;
            wizard.drafts.put(&draft_id, draft.clone());
            let body = form_of(
                &signed_in,
                &draft_id,
                &draft,
                step,
                &Problems::default(),
                Some(preview),
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

/// The form of `step`, filled from `draft`, with `problems`.
fn form_of(
    who: &SignedIn,
    draft_id: &str,
    draft: &Draft,
    step: Step,
    problems: &Problems,
    preview: Option<Preview>,
) -> Markup {
    let inner = match step {
        Step::Permissions => permissions_form(draft),
        Step::Name => name_form(draft),
        Step::Settings => settings_form(draft, &problems.fields),
        Step::Sink => sink_form(draft),
        Step::Mapping => mapping_form(draft, preview),
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

// Permissions -----------------------------------------------------------------

fn permissions_form(draft: &Draft) -> Markup {
    let asked = &draft.manifest.permissions;
    let grants = draft.get_table("grants");
    let secrets = draft.get_table("secrets");
    let granted_or_all = |key: &str, asked: &[String]| -> Vec<String> {
        if grants.is_some_and(|g| g.contains_key(key)) {
            listed(grants, key)
        } else {
            asked.to_vec()
        }
    };
    let hosts = listed(grants, "hosts");
    let hosts = if hosts.is_empty() && grants.is_none() {
        asked
            .hosts
            .iter()
            .map(|h| h.to_string())
            .filter(|h| !h.contains('*'))
            .collect()
    } else {
        hosts
    };
    let granted_secrets = granted_or_all("secrets", &asked.secrets);
    let granted_keys = granted_or_all("signing-keys", &asked.signing_keys);
    let folders: Vec<String> = grants
        .and_then(|g| g.get("files"))
        .and_then(Value::as_table)
        .map(|t| {
            t.iter()
                .map(|(k, v)| format!("{k} = {}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    let from = text_of(secrets, "from");
    html! {
        h2 { "What " (draft.manifest.name) " asks to be allowed" }
        p { (draft.manifest.description.as_deref().unwrap_or("")) }
        dl.props #asked {
            dt { "Plugin" } dd.mono { (draft.manifest.id) " " (draft.manifest.version) }
            dt { "SHA-256" } dd.mono { (draft.manifest.sha256) }
            dt { "Web addresses" } dd {
                @if asked.hosts.is_empty() { "none" }
                @else { @for h in &asked.hosts { code { (h.to_string()) } " " } }
            }
            dt { "Secrets it reads" } dd { @if asked.secrets.is_empty() { "none" } @else { (asked.secrets.join(", ")) } }
            dt { "Keys the host signs with" } dd { @if asked.signing_keys.is_empty() { "none" } @else { (asked.signing_keys.join(", ")) " (the plugin never sees them)" } }
            dt { "Folders" } dd { @if asked.files { "reads the folders you grant, read-only" } @else { "none" } }
            dt { "Memory and time" } dd { (asked.memory_mb) " MiB, " (asked.timeout_secs) " s per call" }
        }
        h2 { "What you grant" }
        label { "Web addresses it may reach, one origin per line (scheme://host:port, within those it asks for)"
            textarea name="hosts" rows="3" { (hosts.join("\n")) }
        }
        @if !asked.secrets.is_empty() {
            fieldset { legend { "Secrets" }
                @for s in &asked.secrets {
                    label.choice { input type="checkbox" name="secrets" value=(s) checked[granted_secrets.contains(s)]; " " (s) }
                }
            }
        }
        @if !asked.signing_keys.is_empty() {
            fieldset { legend { "Signing keys" }
                @for s in &asked.signing_keys {
                    label.choice { input type="checkbox" name="signing-keys" value=(s) checked[granted_keys.contains(s)]; " " (s) }
                }
            }
        }
        @if asked.files {
            label { "Folders, one per line: the path the plugin sees = the folder on this machine (e.g. /export = /srv/exports)"
                textarea name="files" rows="2" { (folders.join("\n")) }
            }
        }
        @if !asked.secrets.is_empty() || !asked.signing_keys.is_empty() {
            fieldset { legend { "Where the secrets' values come from" }
                label.choice { input type="radio" name="secrets-from" value="env" checked[from != "file"]; " environment variables, named with the prefix: " input type="text" name="secrets-prefix" value=(text_of(secrets, "prefix")); }
                label.choice { input type="radio" name="secrets-from" value="file" checked[from == "file"]; " a secrets file (readable by its owner only): " input type="text" name="secrets-path" value=(text_of(secrets, "path")); }
            }
        }
        label.choice { input type="checkbox" name="accept" value="yes" checked[draft.accepted]; " I accept these permissions for this connector" }
    }
}

fn save_permissions(draft: &mut Draft, answers: &Answers<'_>) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if answers.get("accept") != Some("yes") {
        problems.push("Accept the permissions to go on (tick the box at the end).".to_string());
    }
    let mut grants = draft.get_table("grants").cloned().unwrap_or_default();
    grants.insert("hosts".into(), strings(&answers.lines("hosts")));
    let asked = draft.manifest.permissions.clone();
    if !asked.secrets.is_empty() {
        grants.insert("secrets".into(), strings(&answers.all("secrets")));
    }
    if !asked.signing_keys.is_empty() {
        grants.insert("signing-keys".into(), strings(&answers.all("signing-keys")));
    }
    if asked.files {
        let mut files = Table::new();
        for line in answers
            .text("files")
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            match line.split_once('=') {
                Some((guest, host)) => {
                    files.insert(guest.trim().into(), Value::String(host.trim().into()));
                }
                None => problems.push(format!(
                    "`{line}` is not a folder grant; write it as /export = /srv/exports"
                )),
            }
        }
        grants.insert("files".into(), Value::Table(files));
    }
    match Value::Table(grants.clone()).try_into::<Grants>() {
        Ok(g) => problems.extend(g.problems(&draft.manifest)),
        Err(e) => problems.push(format!("The grants are not valid: {}", e.message())),
    }
    if !asked.secrets.is_empty() || !asked.signing_keys.is_empty() {
        let mut secrets = Table::new();
        if answers.get("secrets-from") == Some("file") {
            let path = answers.text("secrets-path");
            if path.is_empty() {
                problems
                    .push("Give the secrets file's path, or take environment variables.".into());
            }
            secrets.insert("from".into(), Value::String("file".into()));
            secrets.insert("path".into(), Value::String(path));
        } else {
            secrets.insert("from".into(), Value::String("env".into()));
            secrets.insert(
                "prefix".into(),
                Value::String(answers.text("secrets-prefix")),
            );
        }
        draft.doc.insert("secrets".into(), Value::Table(secrets));
    }
    draft.doc.insert("grants".into(), Value::Table(grants));
    draft.accepted = problems.is_empty();
    none_of(problems)
}

// Name --------------------------------------------------------------------------

fn name_form(draft: &Draft) -> Markup {
    let id = draft.id().unwrap_or("");
    let folder = draft
        .doc
        .get("folder")
        .and_then(Value::as_str)
        .unwrap_or("");
    let schedule = draft
        .doc
        .get("schedule")
        .and_then(Value::as_str)
        .unwrap_or("24h");
    html! {
        label { "Name: the connector's id (lower-case letters, digits and -); it keys its state and cannot change later"
            @if draft.editing.is_some() {
                input type="text" name="id" value=(id) readonly;
            } @else {
                input type="text" name="id" value=(id) required pattern="[a-z][a-z0-9-]*";
            }
        }
        label { "Folder under INBOX that receives the mail (empty: " (draft.manifest.name) ")"
            input type="text" name="folder" value=(folder);
        }
        label { "Schedule: an interval such as 30m, 24h, 1d, or a cron expression such as 0 2 * * *"
            input type="text" name="schedule" value=(schedule);
        }
    }
}

fn save_name(wizard: &Wizard, draft: &mut Draft, answers: &Answers<'_>) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let id = answers.text("id");
    if draft.editing.is_none() {
        if !connector_runtime::manifest::is_identifier(&id) {
            problems.push(format!(
                "`{id}` is not a connector name: use lower-case letters, digits and `-`, starting with a letter."
            ));
        } else if wizard.ctx.connectors().configs.iter().any(|c| c.id == id)
            || wizard.folders.folder.join(format!("{id}.toml")).exists()
        {
            problems.push(format!(
                "A connector `{id}` exists already; choose another name."
            ));
        }
        draft.doc.insert("id".into(), Value::String(id));
    }
    let folder = answers.text("folder");
    if folder.is_empty() {
        draft.doc.remove("folder");
    } else if folder.contains(['/', '.', '\\']) {
        problems.push(format!(
            "`{folder}` cannot be a folder name under INBOX: use a plain name without /, . or \\."
        ));
    } else {
        draft.doc.insert("folder".into(), Value::String(folder));
    }
    let schedule = answers.text("schedule");
    match Value::String(schedule.clone()).try_into::<Schedule>() {
        Ok(_) => {
            draft.doc.insert("schedule".into(), Value::String(schedule));
        }
        Err(e) => problems.push(format!(
            "The schedule `{schedule}` is not one: {}",
            e.message()
        )),
    }
    none_of(problems)
}

// Settings ------------------------------------------------------------------------

/// The plugin's settings form, or why it has none.
fn settings_schema(draft: &Draft) -> Result<Option<SettingsForm>, String> {
    let Some(text) = draft
        .manifest
        .read_settings_schema()
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    SettingsForm::parse(&text)
        .map(Some)
        .map_err(|e| e.to_string())
}

fn plugin_config_json(draft: &Draft) -> Map<String, Json> {
    let table = draft
        .get_table("plugin-config")
        .cloned()
        .unwrap_or_default();
    match serde_json::to_value(table) {
        Ok(Json::Object(m)) => m,
        _ => Map::new(),
    }
}

fn settings_form(draft: &Draft, problems: &FormProblems) -> Markup {
    let values = plugin_config_json(draft);
    html! {
        @match settings_schema(draft) {
            Ok(Some(form)) => (form.render(&values, problems)),
            Ok(None) => label { "The plugin ships no settings form: its [plugin-config] as TOML"
                textarea.mono name="plugin-config" rows="12" {
                    (draft.get_table("plugin-config").map(|t| t.to_string()).unwrap_or_default())
                }
            },
            Err(e) => p.advice { (e) },
        }
    }
}

async fn save_settings(
    wizard: &Wizard,
    draft: &mut Draft,
    form: &[(String, String)],
) -> Result<(), Problems> {
    let config: Table = match settings_schema(draft).map_err(Problems::said)? {
        Some(schema) => {
            let read = schema.read(form).map_err(|fields| Problems {
                said: vec!["Some settings are not right; see beside each.".into()],
                fields,
            })?;
            // Keys the schema does not know stay as the file had them.
            let mut table: Table = draft
                .get_table("plugin-config")
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| !schema.has(k))
                .collect();
            for (k, v) in read {
                let v = Value::try_from(v).map_err(|e| Problems::said(format!("{k}: {e}")))?;
                table.insert(k, v);
            }
            table
        }
        None => Answers(form)
            .text("plugin-config")
            .parse()
            .map_err(|e: toml::de::Error| {
                Problems::said(format!("The settings are not TOML: {}", e.message()))
            })?,
    };
    draft
        .doc
        .insert("plugin-config".into(), Value::Table(config.clone()));
    let grants: Grants = draft
        .get_table("grants")
        .cloned()
        .map(Value::Table)
        .map(|g| g.try_into())
        .transpose()
        .map_err(|e: toml::de::Error| Problems::said(e.message().to_string()))?
        .unwrap_or_default();
    let json = serde_json::to_string(&config).unwrap_or_default();
    let (host, manifest) = (wizard.ctx.host.clone(), draft.manifest.clone());
    let checked =
        tokio::task::spawn_blocking(move || host.check_plugin_config(&manifest, &grants, &json))
            .await
            .map_err(|e| Problems::said(e.to_string()))?;
    checked.map_err(|e| Problems::said(format!("The plugin does not take these settings: {e}")))
}

// Sink -----------------------------------------------------------------------------

const SINK_KINDS: [(&str, &str, &str); 4] = [
    (
        "maildir",
        "A Maildir folder on this machine",
        "path = \"/var/mail/archive\"",
    ),
    (
        "imap",
        "An IMAP server (Dovecot, Exchange Online with XOAUTH2)",
        "host = \"outlook.office365.com\"\nport = 993\nauth = \"xoauth2\"\ntenant = \"contoso.onmicrosoft.com\"\nclient-id = \"<client id>\"\nclient-secret-secret = \"imap-client-secret\"",
    ),
    (
        "graph",
        "Exchange Online through Microsoft Graph (docs/exchange.md)",
        "tenant = \"contoso.onmicrosoft.com\"\nclient-id = \"<client id>\"\nclient-secret-secret = \"graph-client-secret\"",
    ),
    (
        "smtp",
        "An archive's SMTP journaling address",
        "host = \"smtp.example.com\"\nfrom = \"archiver@example.com\"\nto = \"journal@archive.example.com\"",
    ),
];

fn sink_form(draft: &Draft) -> Markup {
    let sink = draft.get_table("sink");
    let kind = text_of(sink, "kind");
    let rest: Table = sink
        .map(|t| {
            t.iter()
                .filter(|(k, _)| *k != "kind")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    html! {
        fieldset { legend { "Where the mail goes" }
            @for (value, label, _) in SINK_KINDS {
                label.choice { input type="radio" name="kind" value=(value) checked[kind == value || (kind.is_empty() && value == "maildir")]; " " (label) }
            }
        }
        label { "Its settings, as the [sink] table of a connector file (without kind)"
            textarea.mono name="settings" rows="8" spellcheck="false" { (if rest.is_empty() { String::new() } else { rest.to_string() }) }
        }
        details { summary { "Examples" }
            @for (value, _, example) in SINK_KINDS {
                p { code { (value) } } pre.mono { (example) }
            }
        }
    }
}

fn save_sink(draft: &mut Draft, answers: &Answers<'_>) -> Result<(), Vec<String>> {
    let kind = answers.text("kind");
    if !SINK_KINDS.iter().any(|(k, _, _)| *k == kind) {
        return Err(vec!["Choose where the mail goes.".into()]);
    }
    let mut table: Table = answers
        .text("settings")
        .parse()
        .map_err(|e: toml::de::Error| {
            vec![format!(
                "The mail store's settings are not TOML: {}",
                e.message()
            )]
        })?;
    table.insert("kind".into(), Value::String(kind));
    if let Err(e) = Value::Table(table.clone()).try_into::<SinkConfig>() {
        draft.doc.insert("sink".into(), Value::Table(table));
        return Err(vec![format!(
            "The mail store's settings are not right: {}; see the examples.",
            e.message()
        )]);
    }
    draft.doc.insert("sink".into(), Value::Table(table));
    Ok(())
}

// Mapping --------------------------------------------------------------------------

fn mapping_form(draft: &Draft, preview: Option<Preview>) -> Markup {
    let mapping = draft.get_table("mapping");
    let by_email = mapping
        .and_then(|m| m.get("by-email"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let external = text_of(mapping, "external");
    html! {
        label.choice { input type="checkbox" name="by-email" value="yes" checked[by_email]; " Map people automatically by the e-mail address the source knows" }
        label { "Only these domains map by e-mail (one per line or comma-separated; empty: every domain)"
            textarea name="domains" rows="2" { (listed(mapping, "domains").join("\n")) }
        }
        label { "People of other organisations without a mailbox"
            select name="external" {
                option value="name" selected[external != "quarantine"] { "are named in the e-mail, not quarantined" }
                option value="quarantine" selected[external == "quarantine"] { "are quarantined until mapped" }
            }
        }
        label { "User map: one line per person, ExternalUserId,Mailbox (a header row first); it is checked before the e-mail"
            textarea.mono name="csv" rows="8" spellcheck="false" { (draft.csv) }
        }
        label { "…or upload a CSV file (Purview's ExternalUserId,O365UserMailbox columns are read too)"
            input type="file" accept=".csv,text/csv" data-fills="csv";
        }
        div.actions { button.secondary type="submit" name="action" value="preview" { "Preview people" } }
        @if let Some(preview) = preview {
            h2 { "The source's people" }
            @match preview {
                Ok(people) => {
                    p.muted { (people.len()) " people in the source's first " (PREVIEW_PAGES) " pages" }
                    table #preview {
                        thead { tr { th { "Id in the source" } th { "Name" } th { "E-mail" } th { "Mailbox" } } }
                        tbody {
                            @for (p, mailbox) in &people {
                                tr {
                                    td.mono { (p.id) } td { (p.display_name.as_deref().unwrap_or("")) }
                                    td { (p.email.as_deref().unwrap_or("")) }
                                    td { @match mailbox { Some(m) => (m), None => span.state.state-failing { "unmapped" } } }
                                }
                            }
                        }
                    }
                }
                Err(e) => p.advice role="alert" { "The source could not be read: " (e) },
            }
        }
    }
}

fn save_mapping(
    wizard: &Wizard,
    draft: &mut Draft,
    answers: &Answers<'_>,
) -> Result<(), Vec<String>> {
    let mut mapping = draft.get_table("mapping").cloned().unwrap_or_default();
    mapping.insert(
        "by-email".into(),
        Value::Boolean(answers.get("by-email") == Some("yes")),
    );
    mapping.insert("domains".into(), strings(&answers.lines("domains")));
    mapping.insert("external".into(), Value::String(answers.text("external")));
    let csv = answers.text("csv").replace("\r\n", "\n");
    let csv = if csv.is_empty() {
        CSV_HEADER.to_string()
    } else {
        format!("{}\n", csv.trim_end())
    };
    if !mapping.contains_key("overrides") {
        let id = draft.id().unwrap_or("connector").to_string();
        mapping.insert("overrides".into(), Value::String(Draft::csv_name(&id)));
    }
    draft.csv = csv;
    draft.doc.insert("mapping".into(), Value::Table(mapping));
    let target = draft.target(&wizard.folders.folder).unwrap_or_default();
    draft.config(&target).map(drop).map_err(|e| vec![e])
}

/// The people the source names and the mailbox each maps to.
async fn preview(wizard: &Wizard, draft: &Draft) -> Preview {
    let target = draft.target(&wizard.folders.folder).unwrap_or_default();
    let DraftConfig { config, users, .. } = draft.config(&target)?;
    let host = wizard.ctx.host.clone();
    let people = tokio::task::spawn_blocking(move || host.preview_people(&config, PREVIEW_PAGES))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(people
        .into_iter()
        .map(|p| {
            let mailbox = users.resolve(&p).map(|m| m.to_string());
            (p, mailbox)
        })
        .collect())
}

// Review and finish ------------------------------------------------------------------

/// Checks the draft as `connector validate` checks a file, with its user
/// map from the draft; returns the file's path.
async fn check_all(wizard: &Wizard, draft: &Draft) -> Result<PathBuf, String> {
    let target = draft
        .target(&wizard.folders.folder)
        .ok_or("the connector has no name yet")?;
    let config = draft.config(&target)?.config;
    let host = wizard.ctx.host.clone();
    tokio::task::spawn_blocking(move || host.validate(&config).map(drop))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(target)
}

async fn review_body(wizard: &Wizard, who: &SignedIn, draft_id: &str, draft: &Draft) -> Markup {
    let checked = check_all(wizard, draft).await;
    let text = draft.text();
    let before = draft
        .editing
        .as_ref()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default());
    html! {
        @match &checked {
            Ok(target) => p.notice role="status" { "Checked as connector validate checks it. Finish writes " code { (target.display()) } "; the daemon starts it within seconds." },
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

pub(super) async fn finish(
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
    let target = match check_all(&wizard, &draft).await {
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
    let csv_file = match draft.config(&target) {
        Ok(c) => c.csv_file,
        Err(e) => return PageError(e).into_response(),
    };
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
