//! Who maps to which mailbox, with a preview of the source's people.

use connector_model::Person;
use maud::{Markup, html};
use toml::Value;

use super::draft::{CSV_HEADER, Draft, DraftConfig};
use super::{Answers, Wizard, listed, strings, text_of};

/// The source's people and the mailbox each maps to, or why the source
/// could not be read.
pub(super) type Preview = Result<Vec<(Person, Option<String>)>, String>;

/// How many pages of the source the mapping preview reads.
const PREVIEW_PAGES: usize = 3;

pub(super) fn mapping_form(draft: &Draft, preview: Option<Preview>) -> Markup {
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

pub(super) fn save_mapping(
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
pub(super) async fn preview(wizard: &Wizard, draft: &Draft) -> Preview {
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
