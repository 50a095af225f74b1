//! The plugin's configuration, checked without I/O.

use connector_sdk::SourceError;
use serde::Deserialize;

/// Messages per page when the configuration does not say.
pub const DEFAULT_PAGE_SIZE: usize = 200;
/// Largest allowed `page_size`.
pub const MAX_PAGE_SIZE: usize = 5000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    path: Option<String>,
    url: Option<String>,
    page_size: Option<u64>,
}

/// Where the export is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A file, by its guest path (inside a folder the operator grants).
    Path(String),
    /// An `http` or `https` URL.
    Url(String),
}

/// A checked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where the export is.
    pub location: Location,
    /// Messages per page.
    pub page_size: usize,
}

impl Config {
    /// Parses and checks `config_json`:
    /// `{"path": "/export/chat.jsonl"}` or `{"url": "http://host/chat.jsonl"}`,
    /// with an optional `"page_size"` (1 to 5000, default 200).
    pub fn parse(config_json: &str) -> Result<Self, SourceError> {
        let raw: RawConfig = connector_sdk::parse_config(config_json)?;
        let location = match (raw.path, raw.url) {
            (Some(path), None) => {
                if !path.starts_with('/') {
                    return Err(SourceError::invalid_config(format!(
                        "path {path:?} must be absolute: the guest path of the export file \
                         inside the granted folder, such as /export/chat.jsonl"
                    )));
                }
                if path.ends_with('/') || path.split('/').any(|part| part == "..") {
                    return Err(SourceError::invalid_config(format!(
                        "path {path:?} must name a file and must not contain '..'"
                    )));
                }
                Location::Path(path)
            }
            (None, Some(url)) => {
                check_url(&url)?;
                Location::Url(url)
            }
            (Some(_), Some(_)) => {
                return Err(SourceError::invalid_config(
                    "give either \"path\" or \"url\", not both",
                ));
            }
            (None, None) => {
                return Err(SourceError::invalid_config(
                    "missing \"path\" (a file in the granted folder) or \"url\"",
                ));
            }
        };
        let page_size = match raw.page_size {
            None => DEFAULT_PAGE_SIZE,
            Some(n) if (1..=MAX_PAGE_SIZE as u64).contains(&n) => n as usize,
            Some(n) => {
                return Err(SourceError::invalid_config(format!(
                    "page_size {n} is out of range (1 to {MAX_PAGE_SIZE})"
                )));
            }
        };
        Ok(Config {
            location,
            page_size,
        })
    }
}

fn check_url(url: &str) -> Result<(), SourceError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            SourceError::invalid_config(format!("url {url:?} must start with http:// or https://"))
        })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SourceError::invalid_config(format!(
            "url {url:?} is not a valid absolute URL"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_path_and_url() {
        assert_eq!(
            Config::parse(r#"{"path": "/export/chat.jsonl"}"#).unwrap(),
            Config {
                location: Location::Path("/export/chat.jsonl".into()),
                page_size: 200
            }
        );
        assert_eq!(
            Config::parse(r#"{"url": "http://127.0.0.1:8080/chat.jsonl", "page_size": 5000}"#)
                .unwrap(),
            Config {
                location: Location::Url("http://127.0.0.1:8080/chat.jsonl".into()),
                page_size: 5000
            }
        );
    }

    #[test]
    fn rejects_bad_configs() {
        for bad in [
            "{}",
            "not json",
            r#"{"path": "chat.jsonl"}"#,
            r#"{"path": "/export/../etc/passwd"}"#,
            r#"{"path": "/export/"}"#,
            r#"{"url": "ftp://host/x"}"#,
            r#"{"url": "http:///x"}"#,
            r#"{"path": "/a", "url": "http://h/"}"#,
            r#"{"path": "/a", "page_size": 0}"#,
            r#"{"path": "/a", "page_size": 5001}"#,
            r#"{"path": "/a", "pagesize": 10}"#,
        ] {
            assert!(
                matches!(Config::parse(bad), Err(SourceError::InvalidConfig(_))),
                "{bad}"
            );
        }
    }
}
