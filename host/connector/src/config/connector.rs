//! A connector's configuration: the operator's file that says which plugin to
//! run, with what configuration, what it is granted, and where mail goes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use connector_runtime::config::{ConfigError, parse_toml, read_toml, relative_to};
use connector_runtime::{Grants, PluginManifest};
use connector_secrets::SecretSource;

use super::{Delivery, Schedule, SinkConfig, TranscriptConfig};
use crate::map::{ExternalPolicy, MapError, UserMap};

const HINT: &str = "a connector file has id, plugin, optional folder, schedule and delivery, and the tables [plugin-config], [grants], [secrets], [mapping], [sink], [transcripts]; see examples/symphony/connector.toml";

/// A parsed connector configuration with its paths resolved.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConnectorConfig {
    /// Identifier of this connector; keys its state. Lower-case letters,
    /// digits and `-`.
    pub id: String,
    /// Path of the plugin's manifest.
    pub plugin: PathBuf,
    /// Name of the folder under `INBOX` that receives the mail; defaults to
    /// the plugin's display name.
    #[serde(default)]
    pub folder: Option<String>,
    /// When the daemon runs the connector: an interval such as `24h`,
    /// `30m`, `1d` (the default is `24h`), or a cron expression such as
    /// `0 2 * * *`.
    #[serde(default)]
    pub schedule: Schedule,
    /// Configuration handed to the plugin as JSON.
    #[serde(default)]
    pub plugin_config: toml::Table,
    /// What the operator allows the plugin.
    #[serde(default)]
    pub grants: Grants,
    /// Where the granted secrets' values come from.
    #[serde(default)]
    pub secrets: SecretSource,
    /// How participants become mailboxes.
    #[serde(default)]
    pub mapping: MappingConfig,
    /// Where mail is imported.
    pub sink: SinkConfig,
    /// How often a page is retried after a transient failure or throttling.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// How many partitions of a partitioned source this worker reads at
    /// once (each with its own plugin instance and sink connection).
    #[serde(default = "default_partitions_at_once")]
    pub partitions_at_once: u32,
    /// What is delivered: `messages` (one email per message, the
    /// default), `transcripts` (one email per conversation per day) or
    /// `both`.
    #[serde(default)]
    pub delivery: Delivery,
    /// How transcript days are cut and where transcripts go.
    #[serde(default)]
    pub transcripts: TranscriptConfig,
    /// Where the file was read from (not part of the file).
    #[serde(skip)]
    pub path: PathBuf,
}

fn default_retries() -> u32 {
    5
}

fn default_partitions_at_once() -> u32 {
    8
}

/// How participants are mapped to mailboxes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MappingConfig {
    /// CSV of `ExternalUserId,Mailbox`, checked before automatic mapping.
    #[serde(default)]
    pub overrides: Option<PathBuf>,
    /// Whether people without an override map by the email address the
    /// source knows (the default); `false` maps only those in `overrides`.
    #[serde(default = "yes")]
    pub by_email: bool,
    /// When set, only emails in these domains map automatically.
    #[serde(default)]
    pub domains: Vec<String>,
    /// What becomes of external participants without a mailbox: `name`
    /// (the default) or `quarantine`.
    #[serde(default)]
    pub external: ExternalPolicy,
}

fn yes() -> bool {
    true
}

impl Default for MappingConfig {
    fn default() -> MappingConfig {
        MappingConfig {
            overrides: None,
            by_email: true,
            domains: Vec::new(),
            external: ExternalPolicy::default(),
        }
    }
}

impl MappingConfig {
    /// The map these settings describe, with the override CSV's text
    /// `csv` (errors name `path`) instead of the file's.
    pub fn user_map_of(&self, path: &Path, csv: &[u8]) -> Result<UserMap, MapError> {
        Ok(self.with_settings(UserMap::from_csv(path, csv, self.domains.clone())?))
    }

    /// `map` with the external policy and e-mail matching of these settings.
    fn with_settings(&self, map: UserMap) -> UserMap {
        map.with_external(self.external)
            .with_email_matching(self.by_email)
    }
}

/// The first string in `value` that is an absolute path (a file or folder
/// inside the sandbox), depth first.
fn first_path(value: &toml::Value) -> Option<&str> {
    match value {
        toml::Value::String(s) if s.starts_with('/') => Some(s),
        toml::Value::Table(t) => t.values().find_map(first_path),
        toml::Value::Array(a) => a.iter().find_map(first_path),
        _ => None,
    }
}

/// Parses `90s`, `30m`, `24h`, `1d`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let unit_at = s.find(|c: char| !c.is_ascii_digit())?;
    let n: u64 = s[..unit_at].parse().ok()?;
    let secs = match &s[unit_at..] {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86400)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

impl ConnectorConfig {
    /// Reads a connector file, resolves its relative paths against the
    /// file's folder and checks it.
    pub fn load(path: &Path) -> Result<ConnectorConfig, ConfigError> {
        let cfg: ConnectorConfig = read_toml(path, HINT)?;
        cfg.resolved(path)
    }

    /// Parses a connector file's `text` as if read from `path` (which need
    /// not exist yet), and checks it like [`ConnectorConfig::load`].
    pub fn parse(path: &Path, text: &str) -> Result<ConnectorConfig, ConfigError> {
        let cfg: ConnectorConfig = parse_toml(path, text, HINT)?;
        cfg.resolved(path)
    }

    fn resolved(mut self, path: &Path) -> Result<ConnectorConfig, ConfigError> {
        let cfg = &mut self;
        cfg.path = path.to_path_buf();
        cfg.plugin = relative_to(path, &cfg.plugin);
        cfg.grants.resolve_folders(path);
        if let SecretSource::File { path: p } = &mut cfg.secrets {
            *p = relative_to(path, p);
        }
        if let Some(p) = &mut cfg.mapping.overrides {
            *p = relative_to(path, p);
        }
        match &mut cfg.sink {
            SinkConfig::Maildir(m) => m.path = relative_to(path, &m.path),
            SinkConfig::Imap(imap) => {
                if let Some(ca) = &mut imap.ca_file {
                    *ca = relative_to(path, ca);
                }
            }
            SinkConfig::Smtp(smtp) => {
                if let Some(ca) = &mut smtp.ca_file {
                    *ca = relative_to(path, ca);
                }
            }
            SinkConfig::Graph(_) => {}
        }
        cfg.validate()?;
        Ok(self)
    }

    fn invalid(&self, message: String, hint: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            message,
            hint: hint.to_string(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !connector_runtime::manifest::is_identifier(&self.id) {
            return Err(self.invalid(
                format!("id `{}` is not a connector identifier", self.id),
                "use lower-case letters, digits and `-`, starting with a letter",
            ));
        }
        if let Some(folder) = &self.folder
            && (folder.trim().is_empty() || folder.contains(['/', '.', '\\']))
        {
            return Err(self.invalid(
                format!("folder `{folder}` cannot be a folder name under INBOX"),
                "use a plain name without `/`, `.` or `\\`, e.g. `Symphony`",
            ));
        }
        if self.partitions_at_once == 0 {
            return Err(self.invalid(
                "partitions-at-once = 0 would read no partition".into(),
                "set it to 1 or more (8 when left out)",
            ));
        }
        let transcripts = &self.transcripts.folder;
        if transcripts.trim().is_empty() || transcripts.contains(['/', '.', '\\']) {
            return Err(self.invalid(
                format!("[transcripts] folder `{transcripts}` cannot be a folder name"),
                "use a plain name without `/`, `.` or `\\`, e.g. `Transcripts`",
            ));
        }
        for guest in self.grants.files.keys() {
            if !guest.starts_with('/') || guest.contains("..") {
                return Err(self.invalid(
                    format!("granted folder `{guest}` is not an absolute path inside the sandbox"),
                    "name it like \"/export\" = \"path/on/this/machine\"",
                ));
            }
        }
        Ok(())
    }

    /// Checks the grants against the plugin's manifest: everything granted
    /// must be declared, and a plugin that reads files (`files = true`)
    /// whose `[plugin-config]` names a path must be granted a folder, or it
    /// could open nothing (one that reads over HTTP needs none).
    pub fn check_grants(&self, manifest: &PluginManifest) -> Result<(), ConfigError> {
        let named_path = self.plugin_config.values().find_map(first_path);
        if let (true, true, Some(path)) = (
            manifest.permissions.files,
            self.grants.files.is_empty(),
            named_path,
        ) {
            return Err(self.invalid(
                format!(
                    "plugin `{}` reads files (its manifest declares `files = true`) and [plugin-config] names `{path}`, but this connector grants it no folder, so it could open nothing",
                    manifest.id
                ),
                "add the folder it reads under [grants], e.g. `files = { \"/export\" = \"/folder/on/disk\" }`, and name paths inside it in [plugin-config] (here `/export/...`)",
            ));
        }
        let problems = self.grants.problems(manifest);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(self.invalid(
                problems.join("; "),
                &format!(
                    "grant only what the manifest {} declares, and point folders at existing directories",
                    manifest.path.display()
                ),
            ))
        }
    }

    /// Loads the `[mapping]` override CSV and makes the map the table
    /// describes; a CSV that cannot be read is named with this file.
    pub fn user_map(&self) -> Result<UserMap, MapError> {
        let mapping = &self.mapping;
        let map =
            UserMap::load(mapping.overrides.as_deref(), mapping.domains.clone()).map_err(|e| {
                match e {
                    MapError::Read { path, source } => MapError::Overrides {
                        csv: path,
                        connector: self.path.clone(),
                        reason: source,
                    },
                    other => other,
                }
            })?;
        Ok(mapping.with_settings(map))
    }

    /// The folder under INBOX that receives mail: `folder`, or the plugin's
    /// display name.
    pub fn folder_name<'a>(&'a self, manifest: &'a PluginManifest) -> &'a str {
        self.folder.as_deref().unwrap_or(&manifest.name)
    }

    /// The logical path of the folder that receives mail, e.g.
    /// `INBOX/Symphony`.
    pub fn folder_path(&self, manifest: &PluginManifest) -> String {
        format!("INBOX/{}", self.folder_name(manifest))
    }

    /// The folder that receives transcripts: `[transcripts] folder` under
    /// [`ConnectorConfig::folder_path`].
    pub fn transcript_folder_path(&self, manifest: &PluginManifest) -> String {
        format!("{}/{}", self.folder_path(manifest), self.transcripts.folder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_sink::TlsMode;
    use connector_sink_imap::ImapAuthMethod;

    fn load(text: &str) -> Result<ConnectorConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connector.toml");
        std::fs::write(&path, text).unwrap();
        ConnectorConfig::load(&path)
    }

    const GOOD: &str = r#"
id = "demo"
plugin = "manifest.toml"
schedule = "12h"
[plugin-config]
path = "/export/chat.jsonl"
page_size = 50
[grants]
hosts = ["http://127.0.0.1:9000"]
[mapping]
domains = ["example.com"]
[sink]
kind = "maildir"
path = "mail"
"#;

    #[test]
    fn valid_config_resolves_paths_and_defaults() {
        let cfg = load(GOOD).unwrap();
        assert_eq!(
            cfg.schedule,
            Schedule::Every(Duration::from_secs(12 * 3600))
        );
        assert!(cfg.plugin.is_absolute());
        assert_eq!(cfg.retries, 5);
        let SinkConfig::Maildir(maildir) = &cfg.sink else {
            panic!("a maildir sink: {:?}", cfg.sink);
        };
        assert!(maildir.path.ends_with("mail") && maildir.path.is_absolute() && maildir.fsync);
        assert_eq!(
            cfg.plugin_config_json(),
            r#"{"page_size":50,"path":"/export/chat.jsonl"}"#
        );
    }

    #[test]
    fn delivery_is_messages_by_default_and_transcript_days_are_configurable() {
        let cfg = load(GOOD).unwrap();
        assert_eq!(cfg.delivery, Delivery::Messages);
        assert_eq!(cfg.transcripts, TranscriptConfig::default());
        assert_eq!(cfg.transcripts.grace, Duration::from_secs(3600));
        let both = GOOD.replace(
            "schedule = \"12h\"\n",
            "schedule = \"12h\"\ndelivery = \"both\"\n",
        ) + "[transcripts]\ntime-zone = \"+02:00\"\ngrace = \"0s\"\nfolder = \"Days\"\n";
        let cfg = load(&both).unwrap();
        assert_eq!(cfg.delivery, Delivery::Both);
        assert!(cfg.delivery.messages() && cfg.delivery.transcripts());
        assert_eq!(cfg.transcripts.time_zone.to_string(), "+02:00");
        assert_eq!(cfg.transcripts.grace, Duration::ZERO);
        assert_eq!(cfg.transcripts.folder, "Days");
        let named = GOOD.to_string() + "[transcripts]\ntime-zone = \"Europe/Paris\"\n";
        assert_eq!(
            load(&named).unwrap().transcripts.time_zone.to_string(),
            "Europe/Paris"
        );
        for (bad, says) in [
            ("delivery = \"daily\"", "transcripts"),
            (
                "[transcripts]\ntime-zone = \"Europe/Pariss\"",
                "Europe/London",
            ),
            ("[transcripts]\ngrace = \"soon\"", "grace period"),
            ("[transcripts]\nfolder = \"a/b\"", "plain name"),
            ("[transcripts]\nzone = \"UTC\"", "zone"),
        ] {
            let text = if bad.starts_with('[') {
                format!("{GOOD}{bad}\n")
            } else {
                GOOD.replace(
                    "schedule = \"12h\"\n",
                    &format!("schedule = \"12h\"\n{bad}\n"),
                )
            };
            let msg = load(&text).unwrap_err().to_string();
            assert!(msg.contains(says), "{bad}: {msg}");
        }
    }

    #[test]
    fn partitions_at_once_of_zero_is_refused() {
        let msg = load(&format!("partitions-at-once = 0\n{GOOD}"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("partitions-at-once = 0") && msg.contains("1 or more"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_sink_field_is_rejected_with_its_line() {
        let msg = load(&(GOOD.to_string() + "colour = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("colour"), "{msg}");
        assert!(msg.contains("connector.toml:12:"), "{msg}");
    }

    const IMAP: &str = r#"
id = "demo"
plugin = "manifest.toml"
[sink]
kind = "imap"
host = "imap.example.test"
auth = "master"
master-user = "archiver"
password-secret = "imap-master-password"
ca-file = "certs/ca.pem"
"#;

    #[test]
    fn imap_sink_has_tls_on_by_default_and_resolves_its_ca_file() {
        let cfg = load(IMAP).unwrap();
        let SinkConfig::Imap(imap) = &cfg.sink else {
            panic!("an imap sink: {:?}", cfg.sink);
        };
        assert_eq!(imap.host, "imap.example.test");
        assert_eq!(imap.tls, TlsMode::Implicit);
        assert_eq!(imap.port, None);
        assert_eq!(imap.auth, ImapAuthMethod::Master);
        assert_eq!(imap.master_user.as_deref(), Some("archiver"));
        assert_eq!(
            imap.password_secret.as_deref(),
            Some("imap-master-password")
        );
        assert_eq!(imap.master_separator, "*");
        assert_eq!(
            (
                imap.max_connections,
                imap.batch_messages,
                imap.batch_mb,
                imap.timeout_secs
            ),
            (4, 100, 32, 120)
        );
        let ca = imap.ca_file.as_ref().unwrap();
        assert!(
            ca.is_absolute() && ca.ends_with("certs/ca.pem"),
            "{}",
            ca.display()
        );
    }

    #[test]
    fn imap_sink_takes_plain_tcp_and_xoauth2_only_when_spelled_out() {
        let text = IMAP.replace(
            "auth = \"master\"",
            "auth = \"xoauth2\"\ntoken-secret = \"graph-token\"\ntls = \"none\"\nport = 10143",
        );
        let cfg = load(&text).unwrap();
        let SinkConfig::Imap(imap) = &cfg.sink else {
            panic!("an imap sink");
        };
        assert_eq!(imap.tls, TlsMode::None);
        assert_eq!(imap.port, Some(10143));
        assert_eq!(imap.auth, ImapAuthMethod::Xoauth2);
        assert_eq!(imap.token_secret.as_deref(), Some("graph-token"));

        let msg = load(&IMAP.replace("ca-file", "tls = \"plain\"\nca-file"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("plain") && msg.contains("implicit"), "{msg}");
    }

    #[test]
    fn imap_sink_takes_the_apps_credentials_for_xoauth2_and_refuses_a_client_secret_written_in_the_file()
     {
        let app = IMAP.replace(
            "auth = \"master\"\nmaster-user = \"archiver\"\npassword-secret = \"imap-master-password\"",
            "auth = \"xoauth2\"\ntenant = \"contoso.onmicrosoft.com\"\nclient-id = \"app-id\"\nclient-secret-secret = \"imap-client-secret\"\nlogin-url = \"http://127.0.0.1:1\"",
        );
        let cfg = load(&app).unwrap();
        let SinkConfig::Imap(imap) = &cfg.sink else {
            panic!("an imap sink");
        };
        assert_eq!(imap.tenant.as_deref(), Some("contoso.onmicrosoft.com"));
        assert_eq!(imap.client_id.as_deref(), Some("app-id"));
        assert_eq!(
            imap.client_secret_secret.as_deref(),
            Some("imap-client-secret")
        );
        assert_eq!(imap.login_url.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(imap.token_secret, None);

        let msg = load(&app.replace("client-secret-secret", "client-secret"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("`client-secret`"), "{msg}");
        assert!(msg.contains("client-secret-secret"), "{msg}");
    }

    #[test]
    fn imap_sink_refuses_a_password_written_in_the_file() {
        let msg = load(&(IMAP.to_string() + "password = \"hunter2\"\n"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("password"), "{msg}");
        assert!(msg.contains("password-secret"), "{msg}");
    }

    #[test]
    fn smtp_and_graph_sinks_parse_with_their_defaults() {
        let smtp = GOOD.replace(
            "kind = \"maildir\"\npath = \"mail\"",
            "kind = \"smtp\"\nhost = \"smtp.example.test\"\nfrom = \"c@example.test\"\nto = \"journal@example.test\"\nca-file = \"ca.pem\"",
        );
        let cfg = load(&smtp).unwrap();
        let SinkConfig::Smtp(s) = &cfg.sink else {
            panic!("an smtp sink: {:?}", cfg.sink);
        };
        assert_eq!(s.tls, TlsMode::Starttls);
        assert!(s.tcp_nodelay);
        assert!(s.ca_file.as_ref().unwrap().is_absolute());
        let graph = GOOD.replace(
            "kind = \"maildir\"\npath = \"mail\"",
            "kind = \"graph\"\ntenant = \"contoso.example\"\nclient-id = \"app\"\nclient-secret-secret = \"graph-secret\"",
        );
        let cfg = load(&graph).unwrap();
        let SinkConfig::Graph(g) = &cfg.sink else {
            panic!("a graph sink: {:?}", cfg.sink);
        };
        assert_eq!(g.graph_url, "https://graph.microsoft.com");
        assert_eq!(g.login_url, "https://login.microsoftonline.com");
        assert_eq!(g.max_concurrency, 400);
        assert_eq!(
            (
                g.mailbox_concurrency,
                g.mailbox_requests,
                g.mailbox_window_secs
            ),
            (4, 10_000, 600)
        );
        let msg = load(&(graph + "client-secret = \"x\"\n"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("client-secret"), "{msg}");
    }

    #[test]
    fn unknown_sink_kind_is_rejected() {
        let msg = load(&GOOD.replace("kind = \"maildir\"", "kind = \"pigeon\""))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("pigeon"), "{msg}");
    }

    #[test]
    fn bad_schedule_says_how_to_write_one() {
        let msg = load(&GOOD.replace("12h", "twice a day"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("write a number with a unit"), "{msg}");
        assert!(msg.contains(":4:"), "{msg}");
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration("0h"), None);
        assert_eq!(parse_duration("5"), None);
    }

    #[test]
    fn grants_beyond_the_manifest_are_refused() {
        let cfg = load(GOOD).unwrap();
        let manifest: PluginManifest = toml::from_str(
            r#"id = "x"
name = "X"
version = "1"
api-version = "0.1.0"
wasm = "x.wasm"
sha256 = "00"
[permissions]
hosts = ["http://127.0.0.1:9001"]"#,
        )
        .unwrap();
        let msg = cfg.check_grants(&manifest).unwrap_err().to_string();
        assert!(
            msg.contains("http://127.0.0.1:9000 is granted but the manifest does not declare it"),
            "{msg}"
        );
    }
}
