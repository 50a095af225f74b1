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
    /// the connector file, the line and the key the value comes from. A
    /// message that names no place is returned as it is.
    pub fn locate_plugin_config_error(&self, message: &str) -> String {
        let Some((before, line, column)) = json_position(message) else {
            return message.to_string();
        };
        let Some(key) = (line == 1)
            .then(|| self.key_at(column.saturating_sub(1)))
            .flatten()
        else {
            return message.to_string();
        };
        let file_line = key_line(&self.path, key).unwrap_or(1);
        format!(
            "{}:{file_line}: `{key}` in [plugin-config]: {}",
            self.path.display(),
            before.trim_end()
        )
    }

    /// The top-level key whose `"key":value` covers `offset` in
    /// [`ConnectorConfig::plugin_config_json`] (keys and values are
    /// serialized in the table's order, with no spaces).
    fn key_at(&self, offset: usize) -> Option<&str> {
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

/// The 1-based line of `key` in the `[plugin-config]` table of the file, or
/// of the table's header when the key is written another way (a dotted key,
/// an inline table).
fn key_line(path: &std::path::Path, key: &str) -> Option<usize> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut in_table = false;
    let mut header = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            in_table = line == "[plugin-config]";
            if in_table {
                header = Some(n + 1);
            }
            continue;
        }
        let name = line
            .split('=')
            .next()
            .map(|k| k.trim().trim_matches('"'))
            .unwrap_or_default();
        if in_table && name == key && line.contains('=') {
            return Some(n + 1);
        }
    }
    header
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
    }
}
