//! Where the mail goes: the `[sink]` table.

use maud::{Markup, html};
use toml::{Table, Value};

use super::draft::Draft;
use super::{Answers, text_of};
use crate::config::SinkConfig;

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

pub(super) fn sink_form(draft: &Draft) -> Markup {
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
        label { "Its settings, as the [sink] table of a connector file without kind (each key is in docs/connector-file.md)"
            textarea.mono name="settings" rows="8" spellcheck="false" { (if rest.is_empty() { String::new() } else { rest.to_string() }) }
        }
        details { summary { "Examples" }
            @for (value, _, example) in SINK_KINDS {
                p { code { (value) } } pre.mono { (example) }
            }
        }
    }
}

pub(super) fn save_sink(draft: &mut Draft, answers: &Answers<'_>) -> Result<(), Vec<String>> {
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
