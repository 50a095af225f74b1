//! The plugin's settings: a form made from its JSON Schema, checked by
//! its own `validate-config`.

use connector_console::{FormProblems, SettingsForm};
use connector_runtime::Grants;
use maud::{Markup, html};
use serde_json::{Map, Value as Json};
use toml::{Table, Value};

use super::draft::Draft;
use super::{Answers, Problems, Wizard};

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

/// The settings form, filled from `draft`, or with the answers `posted`
/// when some of them were refused (`problems`).
pub(super) fn settings_form(
    draft: &Draft,
    problems: &FormProblems,
    posted: Option<&[(String, String)]>,
) -> Markup {
    let values = plugin_config_json(draft);
    html! {
        @match (settings_schema(draft), posted) {
            (Ok(Some(form)), Some(posted)) if !problems.is_empty() => {
                (form.render_typed(posted, problems))
            }
            (Ok(Some(form)), _) => (form.render(&values, problems)),
            (Ok(None), _) => label { "The plugin ships no settings form: its [plugin-config] as TOML"
                textarea.mono name="plugin-config" rows="12" {
                    (draft.get_table("plugin-config").map(|t| t.to_string()).unwrap_or_default())
                }
            },
            (Err(e), _) => p.advice { (e) },
        }
    }
}

pub(super) async fn save_settings(
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
