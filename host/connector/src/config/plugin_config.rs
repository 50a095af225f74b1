//! The `[plugin-config]` table: handed to the plugin as JSON, and a
//! plugin's complaint about that JSON pointed back at the connector file.

use super::ConnectorConfig;

impl ConnectorConfig {
    /// The plugin configuration as JSON text.
    pub fn plugin_config_json(&self) -> String {
        serde_json::to_string(&self.plugin_config).expect("a TOML table is valid JSON")
    }

    /// A plugin's "invalid configuration" `message`, with the place it
    /// names in the JSON the host built (`at line 1 column C`) replaced by
    /// the connector file, the line and the `[plugin-config]` key the value
    /// comes from; an error at no key (a missing field, reported at the end
    /// of the JSON) names the table and its line. A message that names no
    /// place is returned as it is.
    pub fn locate_plugin_config_error(&self, message: &str) -> String {
        let Some((before, line, column)) = json_position(message) else {
            return message.to_string();
        };
        let key = (line == 1)
            .then(|| self.key_at(column.saturating_sub(1)))
            .flatten();
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let place = match plugin_config_line(&text, key) {
            Some(line) => format!("{}:{line}", self.path.display()),
            None => self.path.display().to_string(),
        };
        let table = match key {
            Some(key) => format!("`{key}` in [plugin-config]"),
            None => "[plugin-config]".to_string(),
        };
        format!("{place}: {table}: {}", before.trim_end())
    }

    /// The top-level key whose `"key":value` covers `offset` in
    /// [`ConnectorConfig::plugin_config_json`] (keys and values are
    /// serialized in the table's order, with no spaces).
    /// An offset at the closing `}` (where a missing field is reported) is
    /// at no key.
    fn key_at(&self, offset: usize) -> Option<&str> {
        if offset + 1 >= self.plugin_config_json().len() {
            return None;
        }
        let mut at = 1; // `{`
        for (key, value) in &self.plugin_config {
            let end = at
                + serde_json::to_string(key).ok()?.len()
                + 1
                + serde_json::to_string(value).ok()?.len();
            if offset <= end {
                return Some(key);
            }
            at = end + 1; // `,`
        }
        None
    }
}

/// `message` without its trailing ` at line L column C`, and L and C.
fn json_position(message: &str) -> Option<(&str, usize, usize)> {
    let at = message.rfind(" at line ")?;
    let rest = &message[at + " at line ".len()..];
    let (line, rest) = rest.split_once(" column ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((&message[..at], line.parse().ok()?, column.parse().ok()?))
}

/// The 1-based line in the connector file `text` where `key` of the
/// `[plugin-config]` table is written (by toml's spans, however it is
/// written: `key = …`, a dotted key, a `[plugin-config.key]` header), or
/// where the table itself is when `key` is `None` or not found there.
fn plugin_config_line(text: &str, key: Option<&str>) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let (name, table) = doc
        .get_ref()
        .iter()
        .find(|(name, _)| name.get_ref() == "plugin-config")?;
    let at = match (key, table.get_ref()) {
        (Some(key), DeValue::Table(entries)) => entries
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map_or(name.span().start, |(k, _)| k.span().start),
        _ => name.span().start,
    };
    Some(connector_runtime::config::line_column(text, at).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_complaint_points_at_the_line_of_the_connector_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let text = "id = \"c\"\nplugin = \"m.toml\"\n\n[plugin-config]\npath = \"/export/x\"\npage_size = \"ten\"\n\n[sink]\nkind = \"maildir\"\npath = \"mail\"\n";
        std::fs::write(&path, text).unwrap();
        let cfg = ConnectorConfig::load(&path).unwrap();
        let json = cfg.plugin_config_json();
        let column = json.find("\"ten\"").unwrap() + 2;
        let message = format!(
            "invalid configuration: invalid type: string \"ten\", expected u32 at line 1 column {column}"
        );
        let located = cfg.locate_plugin_config_error(&message);
        assert_eq!(
            located,
            format!(
                "{}:6: `page_size` in [plugin-config]: invalid configuration: invalid type: string \"ten\", expected u32",
                path.display()
            )
        );
        assert_eq!(cfg.locate_plugin_config_error("no position"), "no position");
        let missing = format!(
            "invalid configuration: missing field `export` at line 1 column {}",
            json.len()
        );
        assert_eq!(
            cfg.locate_plugin_config_error(&missing),
            format!(
                "{}:4: [plugin-config]: invalid configuration: missing field `export`",
                path.display()
            )
        );
    }
}
