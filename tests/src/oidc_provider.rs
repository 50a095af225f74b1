//! A real OpenID provider for the console's sign-in tests: the certified
//! `oidc-provider` package from npm, run by Node.js (`tests/oidc/provider.js`)
//! on a free loopback port, configured from a JSON file written here: its
//! clients (each must use PKCE with S256), its users and the scopes `openid
//! email profile groups`. The ID token and userinfo carry `email`, `name`
//! and `groups` (an array of strings). RS256 signing keys are made at each
//! start.
//!
//! A browser signs in on the provider's own login page
//! (`/interaction/<uid>`): the fields `username` (the user's email or sub)
//! and `password`, the button "Sign in" (`#sign-in`); a wrong pair shows
//! the form again with "Invalid username or password.", and "Cancel"
//! (`#cancel`) ends the authorization with `access_denied`. Consent is given
//! at once. The process is killed on drop; its log ([`OidcProvider::log`])
//! is printed when a test panics.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::dovecot::free_port;

/// A client (relying party) the provider knows.
#[derive(Debug, Clone, Serialize)]
pub struct OidcClient {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`, sent to the token endpoint with HTTP Basic
    /// (`client_secret_basic`).
    pub client_secret: String,
    /// The redirect URIs an authorization may return to (exact match).
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout (`end_session_endpoint`) may return to.
    pub post_logout_redirect_uris: Vec<String>,
}

/// A user who can sign in.
#[derive(Debug, Clone, Serialize)]
pub struct OidcUser {
    /// The subject (`sub`); also accepted as the username.
    pub sub: String,
    /// `email` (verified); the username on the login page.
    pub email: String,
    /// `name`.
    pub name: String,
    /// The password the login page checks.
    pub password: String,
    /// The `groups` claim.
    pub groups: Vec<String>,
}

/// What the provider serves.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OidcConfig {
    /// Its clients.
    pub clients: Vec<OidcClient>,
    /// Its users.
    pub users: Vec<OidcUser>,
}

/// A running provider; killed when dropped.
pub struct OidcProvider {
    dir: tempfile::TempDir,
    issuer: String,
    child: Option<Child>,
}

/// The Node.js program of the provider, `tests/oidc/`.
fn program_dir() -> PathBuf {
    crate::workspace_root().join("tests/oidc")
}

impl OidcProvider {
    /// Starts the provider on a free loopback port and waits until its
    /// discovery document answers. Panics, saying to run scripts/setup,
    /// when Node.js or the npm packages are missing.
    pub fn start(config: &OidcConfig) -> OidcProvider {
        let program = program_dir();
        let node_ok = Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            node_ok,
            "`node` is not installed: the browser tests' OpenID provider runs on Node.js; \
             run scripts/setup (it installs Debian's nodejs and npm)"
        );
        assert!(
            program.join("node_modules/oidc-provider").is_dir(),
            "{} has no node_modules/oidc-provider: run scripts/setup (it runs `npm ci` there)",
            program.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("connector-oidc-")
            .tempdir()
            .expect("creating a folder for the OpenID provider");
        let port = free_port();
        let issuer = format!("http://127.0.0.1:{port}");
        let mut file = serde_json::to_value(config).expect("the provider's config is JSON");
        file["issuer"] = issuer.clone().into();
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, file.to_string()).expect("writing the provider's config");
        let log = std::fs::File::create(dir.path().join("provider.log")).expect("creating a log");
        let child = Command::new("node")
            .arg(program.join("provider.js"))
            .arg(&config_path)
            .arg(port.to_string())
            .current_dir(&program)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning a file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {}/provider.js: {e}", program.display()));
        let mut provider = OidcProvider {
            dir,
            issuer,
            child: Some(child),
        };
        provider.wait_for_discovery();
        provider
    }

    fn wait_for_discovery(&mut self) {
        let url = self.discovery_url();
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(5))
            .build();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if agent.get(&url).call().is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "the OpenID provider exited ({status}) before answering:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the OpenID provider's discovery document ({url}) did not answer in 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The issuer, `http://127.0.0.1:<port>` (no trailing slash).
    pub fn issuer(&self) -> String {
        self.issuer.clone()
    }

    /// The discovery document's URL.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// The provider's log: each request line, refused logins and the
    /// errors it answered with.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("provider.log")).unwrap_or_default()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("OpenID provider log ({}):\n{}", self.issuer, self.log());
        }
    }
}
