//! The TOML files an operator and a plugin author write (a plugin's
//! manifest, a connector file): reading them, and errors that point at the
//! line and say what to change.

use std::path::{Path, PathBuf};

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}; check that the path is right and readable")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown field or a bad value.
    #[error("{path}:{line}:{column}: {message}\nhint: {hint}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What the parser said.
        message: String,
        /// What to do about it.
        hint: String,
    },
    /// The file parsed but its values do not fit together.
    #[error("{path}: {message}\nhint: {hint}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
        /// What to do about it.
        hint: String,
    },
}

/// Reads and deserializes a TOML file, turning parse errors into
/// [`ConfigError::Parse`] with line, column and a hint.
pub fn read_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    hint: &str,
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_toml(path, &text, hint)
}

/// Deserializes TOML text that came from `path`.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
    hint: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|span| line_column(text, span.start))
            .unwrap_or((1, 1));
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().trim().to_string(),
            hint: hint.to_string(),
        }
    })
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Resolves `path` against the folder of the file it was written in.
pub fn relative_to(file: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        file.parent().unwrap_or(Path::new(".")).join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("a = 1\nb = x\n", 10), (2, 5));
        assert_eq!(line_column("abc", 0), (1, 1));
    }
}
