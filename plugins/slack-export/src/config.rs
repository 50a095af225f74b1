//! The plugin's configuration, checked without I/O.

use connector_sdk::SourceError;
use serde::Deserialize;

/// Messages per page when the configuration does not say.
pub const DEFAULT_PAGE_SIZE: usize = 200;
/// Largest allowed `page_size`.
pub const MAX_PAGE_SIZE: usize = 5000;
/// The secret holding the `Authorization` value for `url_private` downloads.
pub const DEFAULT_TOKEN_SECRET: &str = "slack-token";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    path: String,
    page_size: Option<u64>,
    download_files: Option<bool>,
    token_secret: Option<String>,
}

/// A checked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Guest path of the export: a `.zip` file or an unzipped folder inside
    /// the folder the operator grants.
    pub path: String,
    /// Messages per page.
    pub page_size: usize,
    /// Whether files that are not inside the export are downloaded from
    /// their `url_private` (needs the token secret and the files host).
    pub download_files: bool,
    /// Name of the secret sent as the `Authorization` header of downloads.
    pub token_secret: String,
}

impl Config {
    /// Parses and checks `config_json`, e.g.
    /// `{"path": "/export/slack.zip", "page_size": 500, "download_files": true}`.
    pub fn parse(config_json: &str) -> Result<Config, SourceError> {
        let raw: RawConfig = connector_sdk::parse_config(config_json)?;
        if !raw.path.starts_with('/') || raw.path.split('/').any(|p| p == "..") {
            return Err(SourceError::invalid_config(format!(
                "path {:?} must be the absolute guest path of the export inside the granted \
                 folder (such as /export/slack.zip or /export/slack), without '..'",
                raw.path
            )));
        }
        let page_size = match raw.page_size {
            None => DEFAULT_PAGE_SIZE,
            Some(n) if (1..=MAX_PAGE_SIZE as u64).contains(&n) => n as usize,
            Some(n) => {
                return Err(SourceError::invalid_config(format!(
                    "page_size {n} is out of range (1 to {MAX_PAGE_SIZE})"
                )));
            }
        };
        let token_secret = raw
            .token_secret
            .unwrap_or_else(|| DEFAULT_TOKEN_SECRET.to_string());
        if token_secret.is_empty() {
            return Err(SourceError::invalid_config(
                "token_secret must not be empty",
            ));
        }
        Ok(Config {
            path: raw.path.trim_end_matches('/').to_string(),
            page_size,
            download_files: raw.download_files.unwrap_or(false),
            token_secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        let c = Config::parse(r#"{"path": "/export/slack.zip"}"#).unwrap();
        assert_eq!(c.page_size, DEFAULT_PAGE_SIZE);
        assert!(!c.download_files);
        assert_eq!(c.token_secret, "slack-token");
        for bad in [
            r#"{}"#,
            r#"{"path": "slack.zip"}"#,
            r#"{"path": "/export/../x"}"#,
            r#"{"path": "/e", "page_size": 0}"#,
            r#"{"path": "/e", "colour": 1}"#,
            r#"{"path": "/e", "token_secret": ""}"#,
        ] {
            assert!(
                matches!(Config::parse(bad), Err(SourceError::InvalidConfig(_))),
                "{bad}"
            );
        }
    }
}
