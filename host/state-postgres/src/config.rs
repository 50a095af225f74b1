//! Where the state database is and how to reach it: the URL (never with a
//! password in it), the password from a secret, and TLS with rustls.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use postgres::config::{Host, SslMode};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How long connecting waits when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the PostgreSQL state database is: a URL of the form
/// `postgres://user@host:port/db[?sslmode=disable|prefer|require][&sslrootcert=/path/ca.pem]`,
/// and the password, which comes from a secret (a file or an environment
/// variable the host reads), never from the URL or the command line.
///
/// TLS certificates are always verified: against the CA of `sslrootcert`
/// when the URL names one (as libpq does), against the public web roots
/// otherwise. `sslmode=verify-full` and `verify-ca` are taken as `require`.
/// Displayed (and in every error), the location shows no secret.
#[derive(Clone)]
pub struct PostgresConfig {
    /// The URL as given, without `sslrootcert` (and with `verify-*` modes
    /// read as `require`).
    url: String,
    /// The password, from a secret.
    password: Option<String>,
    /// The CA file to trust instead of the public roots.
    root_cert: Option<PathBuf>,
    /// The URL as parsed, without password.
    parsed: postgres::Config,
    /// How long the server lets a transaction of this store wait for its
    /// client (see [`PostgresConfig::with_idle_transaction_limit`]).
    idle_transaction_limit: Duration,
}

/// A state database URL that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PostgresConfigError {
    /// The URL carries a password.
    #[error(
        "the PostgreSQL URL {location} contains a password; remove it from the URL and give the password as a secret instead (a file or an environment variable), so it never shows in the process list, the shell history or the configuration"
    )]
    PasswordInUrl {
        /// The URL without the password.
        location: String,
    },
    /// The URL does not parse.
    #[error(
        "the PostgreSQL URL is not valid ({reason}); write it as postgres://user@host:port/database[?sslmode=disable|prefer|require][&sslrootcert=/path/ca.pem]"
    )]
    Invalid {
        /// What is wrong with it.
        reason: String,
    },
    /// The CA file of `sslrootcert` cannot be used.
    #[error(
        "cannot use the CA certificate file {path} (sslrootcert of {location}): {reason}; check that the file exists, is readable and holds PEM certificates"
    )]
    RootCert {
        /// The file.
        path: PathBuf,
        /// The URL without any secret.
        location: String,
        /// What went wrong.
        reason: String,
    },
}

impl From<PostgresConfigError> for connector_state::StateError {
    fn from(e: PostgresConfigError) -> connector_state::StateError {
        let location = match &e {
            PostgresConfigError::PasswordInUrl { location }
            | PostgresConfigError::RootCert { location, .. } => location.clone(),
            PostgresConfigError::Invalid { .. } => "(unparsable URL)".to_string(),
        };
        connector_state::StateError::Open {
            location,
            source: Box::new(e),
            hint: "fix the state database URL in the configuration",
        }
    }
}

impl PostgresConfig {
    /// Parses `url`; a URL with a password in it is refused (see
    /// [`PostgresConfigError::PasswordInUrl`]): give it to
    /// [`PostgresConfig::with_password`].
    pub fn parse(url: &str) -> Result<PostgresConfig, PostgresConfigError> {
        let (url, root_cert) = split_root_cert(url)?;
        let parsed: postgres::Config =
            url.parse()
                .map_err(|e: postgres::Error| PostgresConfigError::Invalid {
                    // The client's message never repeats the password.
                    reason: e.to_string(),
                })?;
        let config = PostgresConfig {
            url,
            password: None,
            root_cert,
            parsed,
            idle_transaction_limit: connector_state::DEFAULT_LEASE,
        };
        if config.parsed.get_password().is_some() {
            return Err(PostgresConfigError::PasswordInUrl {
                location: config.redacted(),
            });
        }
        Ok(config)
    }

    /// The same location, logging in with `password` (from a secret).
    pub fn with_password(mut self, password: impl Into<String>) -> PostgresConfig {
        self.password = Some(password.into());
        self
    }

    /// A worker frozen in the middle of a commit (a paused VM, a debugger)
    /// keeps its transaction's locks, among them its connector's lease row,
    /// and so holds back the worker that takes its lease over. The store
    /// asks the server to end any of its transactions left waiting on the
    /// client for longer than `limit` (`idle_in_transaction_session_timeout`;
    /// the ended transaction is rolled back and stores nothing), unless the
    /// server, database or role sets a limit of its own. It is the lease
    /// time by default: give a fleet's workers their `--lease-secs`.
    pub fn with_idle_transaction_limit(mut self, limit: Duration) -> PostgresConfig {
        self.idle_transaction_limit = limit;
        self
    }

    /// The limit of [`PostgresConfig::with_idle_transaction_limit`], as a
    /// setting's value.
    pub(crate) fn idle_transaction_setting(&self) -> String {
        format!("{}ms", self.idle_transaction_limit.as_millis().max(1))
    }

    /// The URL as given (without `sslrootcert`); it never holds a password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA file trusted instead of the public roots, if the URL names one.
    pub fn root_cert(&self) -> Option<&Path> {
        self.root_cert.as_deref()
    }

    /// The location to show: `postgres://user@host:port/database`, with the
    /// TLS mode, and never a secret.
    pub fn redacted(&self) -> String {
        let p = &self.parsed;
        let mut out = String::from("postgres://");
        if let Some(user) = p.get_user() {
            out.push_str(user);
            out.push('@');
        }
        let ports = p.get_ports();
        let hosts: Vec<String> = p
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let name = match host {
                    Host::Tcp(name) => name.clone(),
                    Host::Unix(path) => path.display().to_string(),
                };
                match ports.get(i).or(ports.first()) {
                    Some(port) => format!("{name}:{port}"),
                    None => name,
                }
            })
            .collect();
        out.push_str(&hosts.join(","));
        out.push('/');
        out.push_str(p.get_dbname().unwrap_or(""));
        let mode = match p.get_ssl_mode() {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            _ => "prefer",
        };
        out.push_str("?sslmode=");
        out.push_str(mode);
        if let Some(ca) = &self.root_cert {
            out.push_str("&sslrootcert=");
            out.push_str(&ca.display().to_string());
        }
        out
    }

    /// The client's configuration, with the password and a connect timeout.
    pub(crate) fn client_config(&self) -> postgres::Config {
        let mut config = self.parsed.clone();
        if let Some(password) = &self.password {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("connector-state");
        }
        config
    }

    /// The TLS connector: rustls, certificates always verified.
    pub(crate) fn tls(&self) -> Result<MakeRustlsConnect, PostgresConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                let error = |reason: String| PostgresConfigError::RootCert {
                    path: path.clone(),
                    location: self.redacted(),
                    reason,
                };
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| error(e.to_string()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| error(e.to_string()))?;
                if certs.is_empty() {
                    return Err(error("it holds no certificate".to_string()));
                }
                for cert in certs {
                    roots.add(cert).map_err(|e| error(e.to_string()))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PostgresConfigError::Invalid {
                reason: format!("TLS setup: {e}"),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
}

impl fmt::Display for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("location", &self.redacted())
            .field("password", &self.password.as_ref().map(|_| "(secret)"))
            .finish()
    }
}

/// The URL without its `sslrootcert` parameter (which the client does not
/// know) and with `sslmode=verify-full`/`verify-ca` as `require`, and the
/// CA file it named.
fn split_root_cert(url: &str) -> Result<(String, Option<PathBuf>), PostgresConfigError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut root_cert = None;
    let mut kept = Vec::new();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        match key {
            "sslrootcert" => root_cert = Some(PathBuf::from(percent_decode(value)?)),
            "sslmode" if matches!(value, "verify-full" | "verify-ca") => {
                kept.push("sslmode=require".to_string());
            }
            _ => kept.push(param.to_string()),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, root_cert))
}

/// `%XX` escapes of a URL parameter, decoded.
fn percent_decode(text: &str) -> Result<String, PostgresConfigError> {
    let invalid = || PostgresConfigError::Invalid {
        reason: format!("bad %-escape in `{text}`"),
    };
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or_else(invalid)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| invalid())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_with_a_password_is_refused_without_showing_it() {
        let err = PostgresConfig::parse("postgres://app:s3cret@db.example:5432/state").unwrap_err();
        assert!(
            matches!(err, PostgresConfigError::PasswordInUrl { .. }),
            "{err}"
        );
        let text = err.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            text.contains("postgres://app@db.example:5432/state"),
            "{text}"
        );
        assert!(text.contains("secret"), "{text}");
        let err = PostgresConfig::parse("postgres://app@db/state?password=s3cret").unwrap_err();
        assert!(
            matches!(err, PostgresConfigError::PasswordInUrl { .. }),
            "{err}"
        );
    }

    #[test]
    fn sslrootcert_is_taken_out_of_the_url_and_shown_in_the_location() {
        let config = PostgresConfig::parse(
            "postgres://app@db.example:6432/state?sslmode=require&sslrootcert=/etc/ca%20dir/ca.pem",
        )
        .unwrap();
        assert_eq!(config.root_cert(), Some(Path::new("/etc/ca dir/ca.pem")));
        assert_eq!(
            config.url(),
            "postgres://app@db.example:6432/state?sslmode=require"
        );
        assert_eq!(
            config.redacted(),
            "postgres://app@db.example:6432/state?sslmode=require&sslrootcert=/etc/ca dir/ca.pem"
        );
        let config = config.with_password("pw");
        assert!(!format!("{config:?}{config}").contains("pw@"));
        assert_eq!(config.client_config().get_password(), Some(&b"pw"[..]));
    }

    #[test]
    fn verify_modes_are_require_and_other_modes_are_refused() {
        let config = PostgresConfig::parse("postgres://a@h/d?sslmode=verify-full").unwrap();
        assert_eq!(config.client_config().get_ssl_mode(), SslMode::Require);
        let err = PostgresConfig::parse("postgres://a@h/d?sslmode=sometimes").unwrap_err();
        assert!(matches!(err, PostgresConfigError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("postgres://user@host"), "{err}");
    }

    #[test]
    fn a_missing_ca_file_names_it() {
        let config =
            PostgresConfig::parse("postgres://a@h/d?sslrootcert=/nonexistent/ca.pem").unwrap();
        let err = config.tls().err().unwrap();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let config = PostgresConfig::parse("postgres://a@h/d").unwrap();
        assert!(config.tls().is_ok());
    }
}
