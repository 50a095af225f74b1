//! Outbound HTTP for plugins: every request is checked against the plugin's
//! allowed origins; redirects are not followed (the plugin sees the 3xx and
//! any next hop is checked again); secret headers are filled in here.

use std::io::Read;
use std::time::Duration;

use wasmtime::component::Resource;

use super::bindings::http::{self, FullResponse, HttpError, Method, Request};
use super::bindings::types::BodyEncoding;
use super::sandbox::SandboxState;
use crate::plugin::{Capabilities, SecretStore};

/// Largest body `fetch` buffers; larger ones need `send` and chunked reads.
pub const MAX_BUFFERED_BODY: u64 = 256 << 20;
/// Largest chunk handed to the plugin by one `read`.
const MAX_CHUNK: u32 = 4 << 20;
/// Time limit for a request when the plugin sets none, and the cap on any.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// The HTTP client shared by a run's plugin calls and host-side downloads.
#[derive(Clone)]
pub struct HttpClient {
    agent: ureq::Agent,
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new()
    }
}

/// A response whose body the plugin reads in chunks.
pub struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Box<dyn Read + Send + Sync>,
}

/// A request as the host performs it, before secrets are filled in.
pub(super) struct Outbound<'a> {
    pub method: &'static str,
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    pub secret_headers: &'a [(String, String)],
    pub body: Option<&'a [u8]>,
    pub timeout: Option<Duration>,
}

impl HttpClient {
    /// A client that follows no redirects.
    pub fn new() -> HttpClient {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(Duration::from_secs(30))
            .user_agent(concat!("connector-host/", env!("CARGO_PKG_VERSION")))
            .build();
        HttpClient { agent }
    }

    /// Sends a request if `caps` allow its origin.
    pub(super) fn send(
        &self,
        plugin_id: &str,
        caps: &Capabilities,
        secrets: &SecretStore,
        req: Outbound<'_>,
    ) -> Result<HttpResponse, HttpError> {
        let url = url::Url::parse(req.url)
            .map_err(|e| HttpError::InvalidRequest(format!("bad URL `{}`: {e}", req.url)))?;
        if !caps.allows(&url) {
            let origin = url.origin().ascii_serialization();
            tracing::warn!(
                plugin = plugin_id,
                %origin,
                "denied a request to an origin the plugin is not granted"
            );
            return Err(HttpError::Denied(format!(
                "{origin} is not granted to plugin {plugin_id}; the operator can add it to [grants] hosts if the manifest declares it"
            )));
        }
        let timeout = req.timeout.unwrap_or(DEFAULT_TIMEOUT).min(MAX_TIMEOUT);
        let mut request = self.agent.request_url(req.method, &url).timeout(timeout);
        for (name, value) in req.headers {
            request = request.set(name, value);
        }
        for (name, secret) in req.secret_headers {
            if !caps.secrets.contains(secret) {
                return Err(HttpError::InvalidRequest(format!(
                    "secret `{secret}` is not declared by the plugin or not granted by the operator"
                )));
            }
            let value = secrets.get(secret).ok_or_else(|| {
                HttpError::InvalidRequest(format!("secret `{secret}` has no value set"))
            })?;
            request = request.set(name, value.expose());
        }
        let result = match req.body {
            Some(body) => request.send_bytes(body),
            None => request.call(),
        };
        let response = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return Err(transport_error(&t)),
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .flat_map(|name| {
                response
                    .all(&name)
                    .into_iter()
                    .map(|v| (name.to_ascii_lowercase(), v.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok(HttpResponse {
            status,
            headers,
            body: response.into_reader(),
        })
    }

    /// Downloads a file for the host itself (an attachment's `fetch`), under
    /// the plugin's permissions, decoding base64 when asked.
    pub(super) fn download(
        &self,
        plugin_id: &str,
        caps: &Capabilities,
        secrets: &SecretStore,
        spec: &super::bindings::types::FetchSpec,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, String> {
        let response = self
            .send(
                plugin_id,
                caps,
                secrets,
                Outbound {
                    method: "GET",
                    url: &spec.url,
                    headers: &spec.headers,
                    secret_headers: &spec.secret_headers,
                    body: None,
                    timeout: Some(MAX_TIMEOUT),
                },
            )
            .map_err(|e| format!("{e:?}"))?;
        if response.status != 200 {
            return Err(format!("download answered HTTP {}", response.status));
        }
        let copied = match spec.encoding {
            BodyEncoding::Identity => std::io::copy(&mut { response.body }, out),
            BodyEncoding::Base64 => {
                let mut decoder = crate::wasm::convert::Base64Reader::new(response.body);
                std::io::copy(&mut decoder, out)
            }
        };
        copied.map_err(|e| format!("download broke off: {e}"))
    }
}

fn transport_error(t: &ureq::Transport) -> HttpError {
    let text = t.to_string();
    if text.contains("timed out") || text.contains("Timeout") {
        HttpError::Timeout
    } else {
        HttpError::Connection(text)
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    }
}

impl SandboxState {
    fn outbound_send(&mut self, req: &Request) -> Result<HttpResponse, HttpError> {
        self.http.send(
            &self.plugin_id,
            &self.caps,
            &self.secrets,
            Outbound {
                method: method_name(req.method),
                url: &req.url,
                headers: &req.headers,
                secret_headers: &req.secret_headers,
                body: req.body.as_deref(),
                timeout: req.timeout_ms.map(|ms| Duration::from_millis(ms.into())),
            },
        )
    }
}

fn read_error(e: std::io::Error) -> HttpError {
    if e.kind() == std::io::ErrorKind::TimedOut {
        HttpError::Timeout
    } else {
        HttpError::Connection(format!("reading the body: {e}"))
    }
}

impl http::Host for SandboxState {
    fn fetch(&mut self, req: Request) -> Result<FullResponse, HttpError> {
        let response = self.outbound_send(&req)?;
        let mut body = Vec::new();
        let read = response
            .body
            .take(MAX_BUFFERED_BODY + 1)
            .read_to_end(&mut body)
            .map_err(read_error)?;
        if read as u64 > MAX_BUFFERED_BODY {
            return Err(HttpError::BodyTooLarge(MAX_BUFFERED_BODY));
        }
        Ok(FullResponse {
            status: response.status,
            headers: response.headers,
            body,
        })
    }

    fn send(&mut self, req: Request) -> Result<Resource<HttpResponse>, HttpError> {
        let response = self.outbound_send(&req)?;
        self.table
            .push(response)
            .map_err(|e| HttpError::Other(format!("too many open responses: {e}")))
    }
}

impl http::HostResponse for SandboxState {
    fn status(&mut self, this: Resource<HttpResponse>) -> u16 {
        self.table.get(&this).map_or(0, |r| r.status)
    }

    fn headers(&mut self, this: Resource<HttpResponse>) -> Vec<(String, String)> {
        self.table
            .get(&this)
            .map_or_else(|_| Vec::new(), |r| r.headers.clone())
    }

    fn read(
        &mut self,
        this: Resource<HttpResponse>,
        max_bytes: u32,
    ) -> Result<Option<Vec<u8>>, HttpError> {
        let response = self
            .table
            .get_mut(&this)
            .map_err(|e| HttpError::Other(format!("unknown response: {e}")))?;
        let mut buf = vec![0; max_bytes.clamp(1, MAX_CHUNK) as usize];
        let mut filled = 0;
        // Fill the chunk unless the body ends, so plugins see few tiny reads.
        while filled < buf.len() {
            match response.body.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(e)),
            }
        }
        if filled == 0 {
            return Ok(None);
        }
        buf.truncate(filled);
        Ok(Some(buf))
    }

    fn drop(&mut self, this: Resource<HttpResponse>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
