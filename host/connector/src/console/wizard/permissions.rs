//! The plugin's permissions: what it asks for, what the admin grants, and
//! the acceptance without which nothing goes on.

use std::path::Path;

use connector_runtime::Grants;
use maud::{Markup, html};
use toml::{Table, Value};

use super::draft::Draft;
use super::{Answers, listed, none_of, strings, text_of};

pub(super) fn permissions_form(draft: &Draft) -> Markup {
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

/// Saves the grants; `file` is where the connector file goes, which
/// relative folder grants are read against (as `connector run` reads them).
pub(super) fn save_permissions(
    draft: &mut Draft,
    answers: &Answers<'_>,
    file: &Path,
) -> Result<(), Vec<String>> {
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
        Ok(mut g) => {
            g.resolve_folders(file);
            problems.extend(g.problems(&draft.manifest))
        }
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
