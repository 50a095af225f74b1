//! The connector's id, folder under INBOX and schedule.

use maud::{Markup, html};
use toml::Value;

use super::draft::Draft;
use super::{Answers, Wizard, none_of};
use crate::config::Schedule;

pub(super) fn name_form(draft: &Draft) -> Markup {
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

pub(super) fn save_name(
    wizard: &Wizard,
    draft: &mut Draft,
    answers: &Answers<'_>,
) -> Result<(), Vec<String>> {
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
