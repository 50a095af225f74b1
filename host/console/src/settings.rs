//! The console file (`connector daemon --console FILE`): who may sign in and
//! how, where people reach the console, and its TLS certificate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use connector_secrets::{SecretLookup, SecretSource};
use serde::Deserialize;

use crate::roles::Role;

/// The console file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConsoleSettings {
    /// Where people reach the console (`https://connectors.example.com`);
    /// the OpenID Connect redirect URI is `<public-url>/signin/callback`.
    /// Needed with `[oidc]`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// How long a session lasts after sign-in.
    #[serde(default = "default_session_minutes")]
    pub session_minutes: u64,
    /// The local accounts file (names, argon2id hashes, roles), relative to
    /// the console file; read again at every sign-in, so accounts added
    /// with `connector console account` work without a restart.
    #[serde(default)]
    pub accounts: Option<PathBuf>,
    /// The name of a secret that `/healthz`, `/metrics` and `/status.json`
    /// then require as `Authorization: Bearer <value>`; without it they are
    /// open (they show no message content).
    #[serde(default)]
    pub machine_token: Option<String>,
    /// Where the secrets named here come from.
    #[serde(default)]
    pub secrets: SecretSource,
    /// Sign-in through an OpenID provider.
    #[serde(default)]
    pub oidc: Option<OidcSettings>,
    /// Serve HTTPS from these files instead of plain HTTP (leave it out
    /// behind a proxy that ends TLS).
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Where the Add-connector wizard finds plugins and writes connector
    /// files; without it connectors are added by hand.
    #[serde(default)]
    pub connectors: Option<ConnectorFolders>,
    /// The folder the file was read from; relative paths are taken from it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn default_session_minutes() -> u64 {
    8 * 60
}

/// Sign-in through an OpenID provider (Entra ID, Okta, Keycloak…), by the
/// authorization code flow with PKCE.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OidcSettings {
    /// The issuer, as its discovery document names it
    /// (`https://login.microsoftonline.com/<tenant>/v2.0`).
    pub issuer: String,
    /// The console's client id at the provider.
    pub client_id: String,
    /// The name of the secret holding the client secret; leave it out for
    /// a public client.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// The ID token claim that lists the user's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Each group's roles; a user whose groups grant none is refused.
    pub roles: BTreeMap<String, Vec<Role>>,
    /// The scopes asked for besides `openid`; add `groups` where the
    /// provider sends the groups claim only for that scope (Okta,
    /// oidc-provider).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The text of the sign-in button.
    #[serde(default = "default_button")]
    pub button: String,
}

fn default_scopes() -> Vec<String> {
    vec!["email".into(), "profile".into()]
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_button() -> String {
    "Sign in with your organization".into()
}

/// A certificate chain and its private key, both PEM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub certificate: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The folders of the Add-connector wizard, relative to the console file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConnectorFolders {
    /// Installed plugins: each sub-folder's `manifest.toml` is one.
    pub plugins: PathBuf,
    /// Where new connector files are written; the daemon must follow this
    /// folder (name it on its command line), so that it starts them.
    pub folder: PathBuf,
}

/// Why the console file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read the console file {path}: {source}; check the path given to --console")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("the console file {path} is not valid: {message}; see docs/console.md for its keys")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its place.
        message: String,
    },
    /// Nobody could sign in.
    #[error(
        "the console file {0} lets nobody sign in: add `accounts = \"accounts.toml\"` (and create accounts with `connector console account`) or an [oidc] table"
    )]
    NoSignIn(PathBuf),
    /// OpenID Connect needs the console's address.
    #[error(
        "the console file {0} has [oidc] but no public-url; set public-url to the address people open (the provider sends them back to <public-url>/signin/callback)"
    )]
    NoPublicUrl(PathBuf),
    /// `public-url` is not a URL.
    #[error(
        "public-url `{url}` in {path} is not an http(s) URL; write it like https://connectors.example.com"
    )]
    BadPublicUrl {
        /// The file.
        path: PathBuf,
        /// The value.
        url: String,
    },
    /// A secret the file names is not set.
    #[error("the console's secret `{name}` is not set: set {where_to_set}")]
    MissingSecret {
        /// The secret's name.
        name: String,
        /// Where to set it.
        where_to_set: String,
    },
    /// The secret source could not be read.
    #[error("cannot read the console's secrets: {0}")]
    Secrets(String),
}

impl ConsoleSettings {
    /// Reads and checks a console file.
    pub fn load(path: &Path) -> Result<ConsoleSettings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut settings = ConsoleSettings::parse(&text, path)?;
        settings.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(settings)
    }

    /// Parses and checks the text of a console file read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<ConsoleSettings, SettingsError> {
        let settings: ConsoleSettings = toml::from_str(text).map_err(|e| SettingsError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        if settings.accounts.is_none() && settings.oidc.is_none() {
            return Err(SettingsError::NoSignIn(path.to_path_buf()));
        }
        if let Some(url) = &settings.public_url {
            let good = url::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !good {
                return Err(SettingsError::BadPublicUrl {
                    path: path.to_path_buf(),
                    url: url.clone(),
                });
            }
        } else if settings.oidc.is_some() {
            return Err(SettingsError::NoPublicUrl(path.to_path_buf()));
        }
        Ok(settings)
    }

    /// How long a session lasts.
    pub fn session_lifetime(&self) -> Duration {
        Duration::from_secs(self.session_minutes.max(1) * 60)
    }

    /// The accounts file, resolved against the console file's folder.
    pub fn accounts_path(&self) -> Option<PathBuf> {
        self.accounts.as_ref().map(|p| self.base_dir.join(p))
    }

    /// The TLS files, resolved against the console file's folder.
    /// The wizard's folders, resolved against the console file's folder.
    pub fn connector_folders(&self) -> Option<ConnectorFolders> {
        self.connectors.as_ref().map(|c| ConnectorFolders {
            plugins: self.base_dir.join(&c.plugins),
            folder: self.base_dir.join(&c.folder),
        })
    }

    pub fn tls_files(&self) -> Option<TlsFiles> {
        self.tls.as_ref().map(|t| TlsFiles {
            certificate: self.base_dir.join(&t.certificate),
            key: self.base_dir.join(&t.key),
        })
    }

    /// The value of a secret the file names.
    pub fn secret(&self, name: &str) -> Result<String, SettingsError> {
        match self.secrets.secret(name) {
            Ok(Some(v)) => Ok(v.expose().to_string()),
            Ok(None) => Err(SettingsError::MissingSecret {
                name: name.to_string(),
                where_to_set: self.secrets.where_to_set(name),
            }),
            Err(e) => Err(SettingsError::Secrets(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConsoleSettings, String> {
        ConsoleSettings::parse(text, Path::new("console.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name() {
        let err = parse("accounts = \"a.toml\"\nsession-minute = 5\n").unwrap_err();
        assert!(err.contains("unknown field `session-minute`"), "{err}");
        assert!(err.contains("docs/console.md"), "{err}");
    }

    #[test]
    fn a_file_that_lets_nobody_sign_in_is_refused() {
        let err = parse("session-minutes = 5\n").unwrap_err();
        assert!(err.contains("lets nobody sign in"), "{err}");
    }

    #[test]
    fn oidc_without_a_public_url_is_refused() {
        let err = parse(
            "[oidc]\nissuer = \"https://id.example\"\nclient-id = \"c\"\n[oidc.roles]\nadmins = [\"connector-admin\"]\n",
        )
        .unwrap_err();
        assert!(err.contains("no public-url"), "{err}");
    }

    #[test]
    fn an_unknown_role_is_refused() {
        let err = parse(
            "public-url = \"https://c.example\"\n[oidc]\nissuer = \"https://id.example\"\nclient-id = \"c\"\n[oidc.roles]\nadmins = [\"admin\"]\n",
        )
        .unwrap_err();
        assert!(err.contains("unknown variant `admin`"), "{err}");
    }
}
