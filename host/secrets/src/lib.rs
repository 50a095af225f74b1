//! Secret values for one connector, loaded from its secret source for the
//! granted names only. Values never reach a log line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// A secret value; its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why secrets could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The secrets file could not be read.
    #[error(
        "cannot read secrets file {path}: {source}; create it (mode 0600) with name = \"value\" lines"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The secrets file is not a TOML table of strings.
    #[error("secrets file {path} is not a TOML table of name = \"value\" strings: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file holding one secret value could not be read.
    #[error(
        "cannot read the secret file {path}: {source}; create it (mode 0600) holding the value alone"
    )]
    ReadValue {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The secrets file can be read by other users.
    #[error("secrets file {path} can be read by other users; run `chmod 600 {path}`")]
    Exposed {
        /// The file.
        path: PathBuf,
    },
}

/// The variable systemd sets to the folder of a service's credentials
/// (`LoadCredential=`, `%d` in a unit).
const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// Refuses a file other users can read (or write).
fn refuse_exposed(
    path: &std::path::Path,
    read_err: impl FnOnce(std::io::Error) -> SecretError,
) -> Result<(), SecretError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(read_err)?
            .permissions()
            .mode();
        let credentials = std::env::var_os(CREDENTIALS_DIRECTORY).map(PathBuf::from);
        if mode & forbidden_bits(path, credentials.as_deref()) != 0 {
            return Err(SecretError::Exposed {
                path: path.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// The permission bits a secret file may not have: none for group or
/// others, but for a file in the service's systemd credentials folder
/// (closed to others), where the group bits are the mask of the ACL through
/// which systemd opens the root-owned copy to the service's user alone.
#[cfg(unix)]
fn forbidden_bits(path: &std::path::Path, credentials: Option<&std::path::Path>) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let private_credential = credentials.is_some_and(|dir| {
        let closed = std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o007 == 0);
        let inside = match (path.canonicalize(), dir.canonicalize()) {
            (Ok(file), Ok(dir)) => file.parent() == Some(dir.as_path()),
            _ => false,
        };
        closed && inside
    });
    if private_credential { 0o007 } else { 0o077 }
}

/// The one secret value a file holds (a password file), without its
/// trailing line break; the file must be readable by its owner only.
pub fn read_secret_file(path: &std::path::Path) -> Result<Secret, SecretError> {
    let read_err = |source| SecretError::ReadValue {
        path: path.to_path_buf(),
        source,
    };
    refuse_exposed(path, read_err)?;
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    Ok(Secret(text.trim_end_matches(['\r', '\n']).to_string()))
}

/// The values of the secrets a connector may use.
#[derive(Debug, Clone, Default)]
pub struct SecretStore {
    values: BTreeMap<String, Secret>,
}

impl SecretStore {
    /// Loads the values of `names` from `source`; names without a value are
    /// simply absent (the plugin gets `not-set`).
    pub fn load(
        source: &SecretSource,
        names: &BTreeSet<String>,
    ) -> Result<SecretStore, SecretError> {
        let mut values = BTreeMap::new();
        match source {
            SecretSource::Env { prefix } => {
                for name in names {
                    let var = format!("{prefix}{}", name.to_ascii_uppercase().replace('-', "_"));
                    if let Ok(v) = std::env::var(&var) {
                        values.insert(name.clone(), Secret(v));
                    }
                }
            }
            SecretSource::File { path } => {
                let read_err = |source| SecretError::Read {
                    path: path.clone(),
                    source,
                };
                refuse_exposed(path, read_err)?;
                let text = std::fs::read_to_string(path).map_err(read_err)?;
                let table: BTreeMap<String, String> =
                    toml::from_str(&text).map_err(|e| SecretError::Parse {
                        path: path.clone(),
                        message: e.message().to_string(),
                    })?;
                for (k, v) in table {
                    if names.contains(&k) {
                        values.insert(k, Secret(v));
                    }
                }
            }
        }
        Ok(SecretStore { values })
    }

    /// A store holding exactly these values (tests, embedded defaults).
    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> SecretStore {
        SecretStore {
            values: pairs.into_iter().map(|(k, v)| (k, Secret(v))).collect(),
        }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.values.get(name)
    }
}

/// Where secret values come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "from", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SecretSource {
    /// Environment variables named `<prefix><NAME>`, the name upper-cased
    /// with `-` as `_`.
    Env {
        /// Prefix of the variables, e.g. `SYMPHONY_`.
        #[serde(default)]
        prefix: String,
    },
    /// A TOML file of `name = "value"` lines, readable by the owner only.
    File {
        /// The file's path.
        path: PathBuf,
    },
}

impl Default for SecretSource {
    fn default() -> Self {
        SecretSource::Env {
            prefix: String::new(),
        }
    }
}

/// Where the sink's credentials come from: the operator's secret source
/// (not the plugin's grants), read when a mailbox first logs in.
pub trait SecretLookup: Send + Sync {
    /// The value of `name`, `Ok(None)` when it is not set.
    fn secret(&self, name: &str) -> Result<Option<Secret>, String>;
    /// Where an operator sets `name`, for messages.
    fn where_to_set(&self, name: &str) -> String;
}

impl SecretLookup for SecretSource {
    fn secret(&self, name: &str) -> Result<Option<Secret>, String> {
        let names = BTreeSet::from([name.to_string()]);
        let store = SecretStore::load(self, &names).map_err(|e| e.to_string())?;
        Ok(store.get(name).cloned())
    }

    fn where_to_set(&self, name: &str) -> String {
        match self {
            SecretSource::Env { prefix } => format!(
                "environment variable {prefix}{}",
                name.to_ascii_uppercase().replace('-', "_")
            ),
            SecretSource::File { path } => {
                format!("\"{name}\" = \"...\" in {}", path.display())
            }
        }
    }
}

impl SecretLookup for SecretStore {
    fn secret(&self, name: &str) -> Result<Option<Secret>, String> {
        Ok(self.get(name).cloned())
    }

    fn where_to_set(&self, name: &str) -> String {
        format!("the secret `{name}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_value() {
        let store = SecretStore::from_pairs([("key".to_string(), "hunter2".to_string())]);
        assert!(!format!("{store:?}").contains("hunter2"));
    }

    #[cfg(unix)]
    #[test]
    fn file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.toml");
        std::fs::write(&path, "token = \"x\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let names = BTreeSet::from(["token".to_string()]);
        let source = SecretSource::File { path: path.clone() };
        assert!(matches!(
            SecretStore::load(&source, &names),
            Err(SecretError::Exposed { .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let store = SecretStore::load(&source, &names).unwrap();
        assert_eq!(store.get("token").unwrap().expose(), "x");
    }

    #[cfg(unix)]
    #[test]
    fn a_systemd_credential_opened_through_its_group_bits_is_accepted_only_in_a_closed_credentials_folder()
     {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path, m| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let credentials = dir.path().join("credentials");
        std::fs::create_dir(&credentials).unwrap();
        let file = credentials.join("state-password");
        std::fs::write(&file, "pw\n").unwrap();
        mode(&file, 0o440);
        mode(&credentials, 0o550);
        assert_eq!(forbidden_bits(&file, Some(&credentials)), 0o007);
        assert_eq!(forbidden_bits(&file, None), 0o077, "elsewhere: owner only");
        let outside = dir.path().join("password");
        std::fs::write(&outside, "pw\n").unwrap();
        assert_eq!(forbidden_bits(&outside, Some(&credentials)), 0o077);
        mode(&credentials, 0o555);
        assert_eq!(
            forbidden_bits(&file, Some(&credentials)),
            0o077,
            "a credentials folder others can open is no longer private"
        );
    }

    #[test]
    fn only_granted_names_are_loaded_from_the_environment() {
        // SAFETY: the variable names are unique to this test.
        unsafe {
            std::env::set_var("SECRETTEST_API_TOKEN", "t");
            std::env::set_var("SECRETTEST_OTHER", "o");
        }
        let names = BTreeSet::from(["api-token".to_string()]);
        let source = SecretSource::Env {
            prefix: "SECRETTEST_".into(),
        };
        let store = SecretStore::load(&source, &names).unwrap();
        assert_eq!(store.get("api-token").unwrap().expose(), "t");
        assert!(store.get("other").is_none());
    }
}
