//! Local accounts for small installs: a TOML file of names, argon2id
//! password hashes and roles, written by `connector console account`.

use std::path::{Path, PathBuf};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};

use crate::files::replace_file;
use crate::roles::Role;

/// The accounts file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalAccounts {
    /// The accounts, in the order written.
    #[serde(default, rename = "account")]
    pub accounts: Vec<LocalAccount>,
}

/// One account.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LocalAccount {
    /// The name typed at sign-in.
    pub name: String,
    /// The password's argon2id hash in PHC form (`$argon2id$v=19$…`).
    pub password: String,
    /// What the account may do.
    pub roles: Vec<Role>,
}

/// Why the accounts file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// The file could not be read or written.
    #[error("cannot use the accounts file {path}: {source}; check its path and permissions")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error(
        "the accounts file {path} is not valid: {message}; fix it or write it again with `connector console account`"
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A password hash cannot be read or made.
    #[error(
        "the password of account `{name}` {message}; set it again with `connector console account {name}`"
    )]
    Hash {
        /// The account.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// An account needs a role.
    #[error("account `{0}` has no role; give it --role viewer, connector-admin or auditor")]
    NoRole(String),
}

impl LocalAccounts {
    /// Reads the file; a missing file holds no account.
    pub fn load(path: &Path) -> Result<LocalAccounts, AccountsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(AccountsError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        toml::from_str(&text).map_err(|e| AccountsError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })
    }

    /// Writes the file (mode 0600) through a temporary file, so a crash
    /// leaves the old or the new file, never half of one.
    pub fn save(&self, path: &Path) -> Result<(), AccountsError> {
        let io = |source| AccountsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = toml::to_string(self).map_err(|e| AccountsError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        replace_file(path, text.as_bytes()).map_err(io)
    }

    /// Adds the account, or sets the password and roles of the one named so.
    pub fn set(
        &mut self,
        name: &str,
        password: &str,
        roles: Vec<Role>,
    ) -> Result<(), AccountsError> {
        if roles.is_empty() {
            return Err(AccountsError::NoRole(name.to_string()));
        }
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| AccountsError::Hash {
                name: name.to_string(),
                message: format!("cannot be hashed: {e}"),
            })?
            .to_string();
        let account = LocalAccount {
            name: name.to_string(),
            password: hash,
            roles,
        };
        match self.accounts.iter_mut().find(|a| a.name == name) {
            Some(a) => *a = account,
            None => self.accounts.push(account),
        }
        Ok(())
    }

    /// The roles of `name` when `password` is its password. An unknown
    /// name costs the same hashing time as a wrong password, so the answer
    /// time tells nothing.
    pub fn check(&self, name: &str, password: &str) -> Result<Option<Vec<Role>>, AccountsError> {
        let Some(account) = self.accounts.iter().find(|a| a.name == name) else {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            let _ = Argon2::default().hash_password(password.as_bytes(), &salt);
            return Ok(None);
        };
        let hash = PasswordHash::new(&account.password).map_err(|e| AccountsError::Hash {
            name: name.to_string(),
            message: format!("is not an argon2id hash ({e})"),
        })?;
        if hash.algorithm.as_str() != "argon2id" {
            return Err(AccountsError::Hash {
                name: name.to_string(),
                message: format!("is hashed with {}, not argon2id", hash.algorithm),
            });
        }
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
            .then(|| account.roles.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_account_signs_in_with_its_password_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.toml");
        let mut accounts = LocalAccounts::default();
        accounts
            .set("alice", "correct horse", vec![Role::Auditor])
            .unwrap();
        accounts.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("$argon2id$"), "{text}");
        assert!(!text.contains("correct horse"));
        let read = LocalAccounts::load(&path).unwrap();
        assert_eq!(
            read.check("alice", "correct horse").unwrap(),
            Some(vec![Role::Auditor])
        );
        assert_eq!(read.check("alice", "wrong").unwrap(), None);
        assert_eq!(read.check("bob", "correct horse").unwrap(), None);
    }

    #[test]
    fn a_hash_of_another_algorithm_is_refused_with_the_fix() {
        let accounts: LocalAccounts = toml::from_str(
            "[[account]]\nname = \"a\"\npassword = \"$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$L4Tu3QPUJ3hGmOq+/EPVcg\"\nroles = [\"viewer\"]\n",
        )
        .unwrap();
        let err = accounts.check("a", "x").unwrap_err().to_string();
        assert!(
            err.contains("not argon2id") && err.contains("connector console account a"),
            "{err}"
        );
    }

    #[test]
    fn an_account_without_a_role_is_refused() {
        let err = LocalAccounts::default().set("a", "pw", vec![]).unwrap_err();
        assert!(err.to_string().contains("--role"), "{err}");
    }
}
