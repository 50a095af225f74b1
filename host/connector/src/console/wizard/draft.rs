//! A connector being added or changed in the console's wizard: the
//! connector file as a TOML table that each step fills in, the user map
//! CSV beside it, and where both will be written. A draft lives in the
//! daemon's memory, belongs to the person who started it, and becomes
//! files only at *Finish*, after the whole connector passed what
//! `connector validate` checks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use connector_runtime::PluginManifest;
use toml::{Table, Value};

use crate::config::ConnectorConfig;
use crate::map::UserMap;

/// The header row a new user map starts with.
pub(super) const CSV_HEADER: &str = "ExternalUserId,Mailbox\n";

/// How long an untouched draft is kept.
const DRAFT_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Drafts one person may have open at once.
const DRAFTS_PER_PERSON: usize = 8;

/// A connector in the making.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    /// Who started it; nobody else may see or change it.
    pub owner: String,
    /// The file being changed; `None` for a new connector.
    pub editing: Option<PathBuf>,
    /// That file's text as it was: what the edit leaves alone keeps its
    /// comments and layout.
    original: Option<String>,
    /// The plugin's manifest.
    pub manifest: PluginManifest,
    /// The connector file, as built so far.
    pub doc: Table,
    /// The user map CSV's text.
    pub csv: String,
    /// Whether the admin accepted the plugin's permissions.
    pub accepted: bool,
    touched: Instant,
}

impl Draft {
    /// A new connector of the plugin `manifest`.
    pub fn new_connector(owner: &str, manifest: PluginManifest) -> Draft {
        let mut doc = Table::new();
        doc.insert(
            "plugin".into(),
            Value::String(manifest.path.display().to_string()),
        );
        Draft {
            owner: owner.to_string(),
            editing: None,
            original: None,
            manifest,
            doc,
            csv: CSV_HEADER.to_string(),
            accepted: false,
            touched: Instant::now(),
        }
    }

    /// A draft of the connector `config` as its file says it.
    pub fn of_existing(owner: &str, config: &ConnectorConfig) -> Result<Draft, String> {
        let text = std::fs::read_to_string(&config.path)
            .map_err(|e| format!("cannot read {}: {e}", config.path.display()))?;
        let doc: Table = text
            .parse()
            .map_err(|e| format!("{}: {e}", config.path.display()))?;
        let manifest = PluginManifest::load(&config.plugin).map_err(|e| e.to_string())?;
        let csv = match &config.mapping.overrides {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read the user map {}: {e}", p.display()))?,
            None => CSV_HEADER.to_string(),
        };
        Ok(Draft {
            owner: owner.to_string(),
            editing: Some(config.path.clone()),
            original: Some(text),
            manifest,
            doc,
            csv,
            accepted: true,
            touched: Instant::now(),
        })
    }

    /// The connector's id, once named.
    pub fn id(&self) -> Option<&str> {
        self.doc.get("id").and_then(Value::as_str)
    }

    /// The table `key` of the file, when there is one.
    pub fn get_table(&self, key: &str) -> Option<&Table> {
        self.doc.get(key).and_then(Value::as_table)
    }

    /// Where the file is written: the file being changed, or
    /// `<folder>/<id>.toml`.
    pub fn target(&self, folder: &Path) -> Option<PathBuf> {
        match &self.editing {
            Some(p) => Some(p.clone()),
            None => self.id().map(|id| folder.join(format!("{id}.toml"))),
        }
    }

    /// The user map's file name for a new connector, beside its file.
    pub fn csv_name(id: &str) -> String {
        format!("{id}.users.csv")
    }

    /// The connector file's text. An edit keeps the file's own text
    /// (comments, order, quoting) for every value it leaves as it was.
    pub fn text(&self) -> String {
        file_text(self.original.as_deref(), &self.doc)
    }

    /// The connector as [`ConnectorConfig::load`] would read it from
    /// `target`, with its user map taken from the draft's CSV.
    pub fn config(&self, target: &Path) -> Result<DraftConfig, String> {
        let mut config = ConnectorConfig::parse(target, &self.text()).map_err(|e| e.to_string())?;
        // The user map is the draft's until Finish writes its file.
        let csv_file = config.mapping.overrides.take();
        let users = config
            .mapping
            .user_map_of(
                csv_file.as_deref().unwrap_or(Path::new("the user map")),
                self.csv.as_bytes(),
            )
            .map_err(|e| e.to_string())?;
        Ok(DraftConfig {
            config,
            users,
            csv_file,
        })
    }
}

/// A draft read as a connector file.
pub(crate) struct DraftConfig {
    /// The connector, without `[mapping] overrides` (its file may not
    /// exist yet): checks and previews take `users` instead.
    pub config: ConnectorConfig,
    /// The user map of the draft's CSV.
    pub users: UserMap,
    /// Where the CSV is written at Finish.
    pub csv_file: Option<PathBuf>,
}

/// The drafts open in this daemon, by id.
/// The text of a connector file holding `doc`: `original` (the file as
/// it was) with what changed put in, or, for a new file, `doc` alone.
fn file_text(original: Option<&str>, doc: &Table) -> String {
    let fresh = toml::to_string_pretty(doc).unwrap_or_default();
    let (Some(Ok(mut kept)), Ok(changed)) = (
        original.map(str::parse::<toml_edit::DocumentMut>),
        fresh.parse::<toml_edit::DocumentMut>(),
    ) else {
        return fresh;
    };
    keep_unchanged(kept.as_table_mut(), changed.as_table());
    kept.to_string()
}

/// Makes `old` hold what `new` holds, leaving every value that did not
/// change (and its comments) as it was.
fn keep_unchanged(old: &mut toml_edit::Table, new: &toml_edit::Table) {
    old.retain(|key, _| new.contains_key(key));
    for (key, item) in new.iter() {
        match (old.get_mut(key), item) {
            (Some(toml_edit::Item::Table(kept)), toml_edit::Item::Table(changed)) => {
                keep_unchanged(kept, changed)
            }
            (Some(kept), changed)
                if value_of(kept).is_some_and(|v| Some(v) == value_of(changed)) => {}
            _ => {
                old.insert(key, item.clone());
            }
        }
    }
}

/// The value an item holds, whatever its layout.
fn value_of(item: &toml_edit::Item) -> Option<Value> {
    let table: Table = toml::from_str(&format!("v = {}", item.as_value()?)).ok()?;
    table.get("v").cloned()
}

#[derive(Default)]
pub(crate) struct Drafts {
    open: Mutex<HashMap<String, Draft>>,
}

impl Drafts {
    /// Keeps `draft`; returns its id.
    pub fn add(&self, draft: Draft) -> String {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, d| d.touched.elapsed() < DRAFT_LIFETIME);
        let mine: Vec<(String, Instant)> = open
            .iter()
            .filter(|(_, d)| d.owner == draft.owner)
            .map(|(id, d)| (id.clone(), d.touched))
            .collect();
        if mine.len() >= DRAFTS_PER_PERSON
            && let Some((oldest, _)) = mine.iter().min_by_key(|(_, t)| *t)
        {
            open.remove(oldest);
        }
        let id = connector_console::random_token();
        open.insert(id.clone(), draft);
        id
    }

    /// A copy of draft `id` when `owner` started it.
    pub fn get(&self, id: &str, owner: &str) -> Option<Draft> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(id)
            .filter(|d| d.owner == owner && d.touched.elapsed() < DRAFT_LIFETIME)
            .cloned()
    }

    /// Stores `draft` back as `id`.
    pub fn put(&self, id: &str, mut draft: Draft) {
        draft.touched = Instant::now();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.insert(id.to_string(), draft);
    }

    /// Forgets draft `id`.
    pub fn remove(&self, id: &str) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# The desk's chat, archived nightly.
id = "desk"
plugin = 'plugins/chat-export/manifest.toml'   # pinned by its SHA-256
folder = "Chat"

[plugin-config]
# The export the desk's tool writes at midnight.
path = "/export/chat.jsonl"
page_size = 20  # small pages: the export is big

[sink]
kind = "maildir"
path = "mail"
"#;

    #[test]
    fn an_edit_changes_only_what_was_changed_and_keeps_the_files_comments() {
        let mut doc: Table = FILE.parse().unwrap();
        let config = doc["plugin-config"].as_table_mut().unwrap();
        config.insert("page_size".into(), Value::Integer(50));
        doc.remove("folder");
        doc.insert("schedule".into(), Value::String("1h".into()));
        let text = file_text(Some(FILE), &doc);
        assert_eq!(
            text,
            r#"# The desk's chat, archived nightly.
id = "desk"
plugin = 'plugins/chat-export/manifest.toml'   # pinned by its SHA-256
schedule = "1h"

[plugin-config]
# The export the desk's tool writes at midnight.
path = "/export/chat.jsonl"
page_size = 50

[sink]
kind = "maildir"
path = "mail"
"#
        );
        let reread: Table = text.parse().unwrap();
        assert_eq!(reread, doc, "the text holds the draft");
    }

    #[test]
    fn a_new_file_is_the_draft_alone() {
        let doc: Table = FILE.parse().unwrap();
        let text = file_text(None, &doc);
        assert!(!text.contains('#'), "{text}");
        assert_eq!(text.parse::<Table>().unwrap(), doc);
    }
}
