//! A client of the daemon's web console over real HTTP, for the tests that
//! check what a browser cannot show plainly: status codes, headers, cookies
//! and direct POSTs without the form.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One answer.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Answer {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of the hidden `csrf` field of the first form.
    pub fn csrf(&self) -> Option<String> {
        let at = self.body.find(r#"name="csrf" value=""#)?;
        let rest = &self.body[at + r#"name="csrf" value=""#.len()..];
        Some(rest[..rest.find('"')?].to_string())
    }
}

/// A browser-like client: it keeps the session cookie and follows no
/// redirect.
pub struct ConsoleClient {
    base: String,
    agent: ureq::Agent,
    cookie: Option<String>,
}

impl ConsoleClient {
    /// A client of the console at `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> ConsoleClient {
        Self::with_agent(base, ureq::AgentBuilder::new())
    }

    /// A client of the console at `base` (`https://…`) that trusts only
    /// the CA `ca_pem`.
    pub fn trusting(base: &str, ca_pem: &str) -> ConsoleClient {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile_certs(ca_pem) {
            roots.add(cert).expect("the test CA is a certificate");
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Self::with_agent(
            base,
            ureq::AgentBuilder::new().tls_config(std::sync::Arc::new(tls)),
        )
    }

    fn with_agent(base: &str, agent: ureq::AgentBuilder) -> ConsoleClient {
        ConsoleClient {
            base: base.trim_end_matches('/').to_string(),
            agent: agent.redirects(0).build(),
            cookie: None,
        }
    }

    fn answer(&mut self, result: Result<ureq::Response, ureq::Error>) -> Answer {
        let response = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("the console did not answer: {e}"),
        };
        let headers: Vec<(String, String)> = response
            .headers_names()
            .into_iter()
            .flat_map(|n| {
                response
                    .all(&n)
                    .into_iter()
                    .map(|v| (n.to_ascii_lowercase(), v.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (name, value) in &headers {
            if name == "set-cookie"
                && let Some(pair) = value.split(';').next()
                && let Some(v) = pair.strip_prefix("connector_session=")
            {
                self.cookie = (!v.is_empty()).then(|| v.to_string());
            }
        }
        Answer {
            status: response.status(),
            headers,
            body: response.into_string().unwrap_or_default(),
        }
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let mut request = self.agent.request(method, &format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            request = request.set("Cookie", &format!("connector_session={c}"));
        }
        request
    }

    /// GET `path`.
    pub fn get(&mut self, path: &str) -> Answer {
        let result = self.request("GET", path).call();
        self.answer(result)
    }

    /// GET `path` with extra headers.
    pub fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.request("GET", path);
        for (n, v) in headers {
            request = request.set(n, v);
        }
        let result = request.call();
        self.answer(result)
    }

    /// POSTs `fields` as a URL-encoded form, with extra headers.
    pub fn post(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.request("POST", path);
        for (n, v) in headers {
            request = request.set(n, v);
        }
        let result = request.send_form(fields);
        self.answer(result)
    }

    /// Signs in with a local account.
    pub fn sign_in(&mut self, name: &str, password: &str) -> Answer {
        self.post(
            "/signin",
            &[("name", name), ("password", password), ("next", "/")],
            &[],
        )
    }

    /// Whether it holds a session cookie.
    pub fn has_session(&self) -> bool {
        self.cookie.is_some()
    }

    /// The session cookie's value.
    pub fn session(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    /// Sends `token` as the session cookie from now on.
    pub fn set_session(&mut self, token: &str) {
        self.cookie = Some(token.to_string());
    }
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

/// A name that would run as script if a page did not escape it.
pub const SCRIPT_NAME: &str = "<script>alert(1)</script>";

/// Gives participant `u-dave` of a chat setup's export [`SCRIPT_NAME`] as
/// his display name.
pub fn give_dave_a_script_name(chat: &crate::ops::ChatSetup) {
    let export = std::fs::read_to_string(&chat.export).unwrap();
    std::fs::write(
        &chat.export,
        export.replace(r#""name":"u-dave""#, &format!(r#""name":"{SCRIPT_NAME}""#)),
    )
    .unwrap();
}

/// The password every test account gets.
pub const TEST_PASSWORD: &str = "correct horse battery staple";

/// Writes `console.toml` in `dir` with local accounts (created with the
/// real `connector console account`), `extra` lines appended; returns its
/// path.
pub fn console_file(bin: &Path, dir: &Path, accounts: &[(&str, &[&str])], extra: &str) -> PathBuf {
    let accounts_file = dir.join("accounts.toml");
    for (name, roles) in accounts {
        let mut command = Command::new(bin);
        command
            .args(["console", "account", name, "--accounts"])
            .arg(&accounts_file);
        for role in *roles {
            command.args(["--role", role]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("running connector console account");
        std::io::Write::write_all(
            child.stdin.as_mut().unwrap(),
            format!("{TEST_PASSWORD}\n").as_bytes(),
        )
        .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "connector console account {name}"
        );
    }
    crate::write_file(
        dir,
        "console.toml",
        &format!("accounts = \"accounts.toml\"\n{extra}"),
    )
}
