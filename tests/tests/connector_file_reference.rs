//! `docs/connector-file.md` lists every key of the connector file in one
//! table. These tests keep it true without a copy of the key list: a file
//! holding every documented key (with its example) must load, and every key
//! the configuration types accept must be documented.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde::de::{Deserializer, Visitor};

use connector_host::config::{ConnectorConfig, MappingConfig, TranscriptConfig};
use connector_runtime::Grants;
use connector_sink_graph::GraphSinkConfig;
use connector_sink_imap::ImapSinkConfig;
use connector_sink_maildir::MaildirConfig;
use connector_sink_smtp::SmtpSinkConfig;

/// One row of the reference table.
#[derive(Debug, Clone)]
struct Row {
    /// `""` for the top of the file, else a header such as `[grants]`.
    header: String,
    /// The line choosing the kind the key belongs to (`kind = "imap"`).
    kind: Option<String>,
    key: String,
    example: String,
}

/// The rows of the table under "## Every key".
fn documented() -> Vec<Row> {
    let path = connector_e2e::workspace_root().join("docs/connector-file.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let section = text
        .split("## Every key")
        .nth(1)
        .expect("docs/connector-file.md has a section `## Every key`");
    let untick = |cell: &str| cell.trim().trim_matches('`').to_string();
    section
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("| Table") && !l.starts_with("| ---"))
        .map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            assert!(cells.len() >= 5, "a row of five cells: {line}");
            let table = cells[0].trim_start_matches('|').trim();
            let (header, kind) = match table.split_once("` ") {
                Some((header, kind)) => (untick(header), Some(kind.trim().to_string())),
                None => (untick(table), None),
            };
            Row {
                header,
                kind,
                key: untick(cells[1]),
                example: untick(cells[2]),
            }
        })
        .collect()
}

/// The connector file of every documented key, with the `[secrets]` and
/// `[sink]` rows of the kinds `secrets` and `sink` only.
fn file_with(rows: &[Row], secrets: &str, sink: &str) -> String {
    let mut sections: Vec<(String, Option<String>)> = Vec::new();
    for row in rows {
        let section = (row.header.clone(), row.kind.clone());
        if !sections.contains(&section) {
            sections.push(section);
        }
    }
    let mut text = String::new();
    for (header, kind) in sections {
        let chosen = match header.as_str() {
            "[secrets]" => kind.as_deref() == Some(secrets),
            "[sink]" => kind.as_deref() == Some(sink),
            _ => true,
        };
        if !chosen {
            continue;
        }
        if !header.is_empty() {
            text.push_str(&format!("{header}\n"));
        }
        if let Some(kind) = &kind {
            text.push_str(&format!("{kind}\n"));
        }
        for row in rows.iter().filter(|r| r.header == header && r.kind == kind) {
            text.push_str(&format!("{} = {}\n", row.key, row.example));
        }
    }
    text
}

/// The kind lines documented under `header`.
fn kinds(rows: &[Row], header: &str) -> BTreeSet<String> {
    rows.iter()
        .filter(|r| r.header == header)
        .filter_map(|r| r.kind.clone())
        .collect()
}

#[test]
fn a_connector_file_with_every_documented_key_loads() {
    let rows = documented();
    let secrets = kinds(&rows, "[secrets]");
    let sinks = kinds(&rows, "[sink]");
    assert_eq!(secrets.len(), 2, "env and file: {secrets:?}");
    assert_eq!(sinks.len(), 4, "maildir, imap, smtp, graph: {sinks:?}");
    let first_sink = sinks.iter().next().unwrap();
    let first_secrets = secrets.iter().next().unwrap();
    let files = secrets
        .iter()
        .map(|s| file_with(&rows, s, first_sink))
        .chain(sinks.iter().map(|k| file_with(&rows, first_secrets, k)));
    for text in files {
        if let Err(e) = toml::from_str::<ConnectorConfig>(&text) {
            panic!(
                "docs/connector-file.md documents a key or example the connector file refuses: {e}\nin:\n{text}"
            );
        }
    }
}

/// The keys serde accepts for the struct `T`: the field names its derived
/// `Deserialize` hands to `deserialize_struct`.
fn keys_of<T: for<'de> Deserialize<'de>>() -> BTreeSet<String> {
    struct Names<'a>(&'a mut Vec<&'static str>);
    impl<'de> Deserializer<'de> for Names<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("only a struct's names are read"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.extend(fields);
            Err(serde::de::Error::custom("names read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut names = Vec::new();
    let _ = T::deserialize(Names(&mut names));
    assert!(
        !names.is_empty(),
        "{} is a struct",
        std::any::type_name::<T>()
    );
    names.into_iter().map(String::from).collect()
}

#[test]
fn every_key_the_configuration_types_accept_is_documented() {
    let rows = documented();
    let documented_in = |header: &str, kind: Option<&str>| -> BTreeSet<String> {
        rows.iter()
            .filter(|r| r.header == header && r.kind.as_deref() == kind)
            .map(|r| r.key.clone())
            .collect()
    };
    let tables = ["grants", "secrets", "mapping", "sink", "transcripts"];
    let top: BTreeSet<String> = keys_of::<ConnectorConfig>()
        .into_iter()
        .filter(|k| !tables.contains(&k.as_str()))
        .collect();
    let checks = [
        ("the top of the file", top, documented_in("", None)),
        (
            "[grants]",
            keys_of::<Grants>(),
            documented_in("[grants]", None),
        ),
        (
            "[mapping]",
            keys_of::<MappingConfig>(),
            documented_in("[mapping]", None),
        ),
        (
            "[transcripts]",
            keys_of::<TranscriptConfig>(),
            documented_in("[transcripts]", None),
        ),
        (
            "[sink] maildir",
            keys_of::<MaildirConfig>(),
            documented_in("[sink]", Some("kind = \"maildir\"")),
        ),
        (
            "[sink] imap",
            keys_of::<ImapSinkConfig>(),
            documented_in("[sink]", Some("kind = \"imap\"")),
        ),
        (
            "[sink] smtp",
            keys_of::<SmtpSinkConfig>(),
            documented_in("[sink]", Some("kind = \"smtp\"")),
        ),
        (
            "[sink] graph",
            keys_of::<GraphSinkConfig>(),
            documented_in("[sink]", Some("kind = \"graph\"")),
        ),
    ];
    for (table, accepted, documented) in checks {
        let missing: Vec<&String> = accepted.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "{table}: {missing:?} accepted but not in docs/connector-file.md; add a row for each"
        );
    }
}
