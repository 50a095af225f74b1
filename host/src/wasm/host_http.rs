//! Outbound HTTP for plugins: every request is checked against the plugin's
//! allowed origins; redirects are not followed (the plugin sees the 3xx and
//! any next hop is checked again); secret headers are filled in here.
//!
//! The checks live in [`HttpClient`]; what actually carries a request is an
//! [`HttpTransport`]: [`UreqTransport`] (real HTTP, the default) or any other
//! implementation, such as the scripted one of the plugin test harness. A
//! transport only ever sees requests that passed the allow-list.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Resource;

use super::latest::http::{self, FullResponse, HttpError, Method, Request};
use super::latest::types::BodyEncoding;
use super::sandbox::SandboxState;
use crate::plugin::{Capabilities, SecretStore};

/// Largest body `fetch` buffers; larger ones need `send` and chunked reads.
pub const MAX_BUFFERED_BODY: u64 = 256 << 20;
/// Largest chunk handed to the plugin by one `read`.
const MAX_CHUNK: u32 = 4 << 20;
/// Time limit for a request when the plugin sets none, and the cap on any.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// A request that passed the allow-list, with secret headers filled in, as
/// handed to an [`HttpTransport`].
#[derive(Debug, Clone)]
pub struct TransportRequest<'a> {
    /// Upper-case method name (`GET`, `POST`, …).
    pub method: &'static str,
    /// The parsed, allowed URL.
    pub url: &'a url::Url,
    /// Every header to send, secret values included.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Option<&'a [u8]>,
    /// Time limit for the whole exchange (already capped by the host).
    pub timeout: Duration,
}

/// A response from an [`HttpTransport`]: status, headers (names in lower
/// case) and a body read as it arrives.
pub struct TransportResponse {
    /// Status code.
    pub status: u16,
    /// Response headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Box<dyn Read + Send + Sync>,
}

/// Why a transport got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No answer within the time limit.
    #[error("timed out")]
    Timeout,
    /// The connection failed or broke.
    #[error("connection failed: {0}")]
    Connection(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl From<TransportError> for HttpError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Timeout => HttpError::Timeout,
            TransportError::Connection(m) => HttpError::Connection(m),
            TransportError::Other(m) => HttpError::Other(m),
        }
    }
}

/// What carries a checked request to the network (or pretends to).
///
/// Implementations must not follow redirects: the plugin sees a 3xx and
/// asks again, and that next request is checked against the allow-list too.
pub trait HttpTransport: Send + Sync {
    /// Sends `request` and returns once the response headers are in.
    fn send(&self, request: TransportRequest<'_>) -> Result<TransportResponse, TransportError>;
}

/// Real HTTP over `ureq`, following no redirects.
pub struct UreqTransport {
    agent: ureq::Agent,
}

impl Default for UreqTransport {
    fn default() -> Self {
        UreqTransport::new()
    }
}

impl UreqTransport {
    /// A transport with a 30 s connect timeout that follows no redirects.
    pub fn new() -> UreqTransport {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(Duration::from_secs(30))
            .user_agent(concat!("connector-host/", env!("CARGO_PKG_VERSION")))
            .build();
        UreqTransport { agent }
    }
}

impl HttpTransport for UreqTransport {
    fn send(&self, req: TransportRequest<'_>) -> Result<TransportResponse, TransportError> {
        let mut request = self
            .agent
            .request_url(req.method, req.url)
            .timeout(req.timeout);
        for (name, value) in &req.headers {
            request = request.set(name, value);
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
        Ok(TransportResponse {
            status,
            headers,
            body: response.into_reader(),
        })
    }
}

/// The HTTP client shared by a run's plugin calls and host-side downloads:
/// the allow-list and secret checks in front of an [`HttpTransport`].
#[derive(Clone)]
pub struct HttpClient {
    transport: Arc<dyn HttpTransport>,
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
pub(crate) struct Outbound<'a> {
    pub method: &'static str,
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    pub secret_headers: &'a [(String, String)],
    pub body: Option<&'a [u8]>,
    pub timeout: Option<Duration>,
}

impl HttpClient {
    /// A client over real HTTP ([`UreqTransport`]) that follows no redirects.
    pub fn new() -> HttpClient {
        HttpClient::with_transport(Arc::new(UreqTransport::new()))
    }

    /// A client over `transport`; the allow-list and secret checks stay in
    /// front of it.
    pub fn with_transport(transport: Arc<dyn HttpTransport>) -> HttpClient {
        HttpClient { transport }
    }

    /// Sends a request if `caps` allow its origin.
    pub(crate) fn send(
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
        let mut headers = req.headers.to_vec();
        for (name, secret) in req.secret_headers {
            if !caps.secrets.contains(secret) {
                return Err(HttpError::InvalidRequest(format!(
                    "secret `{secret}` is not declared by the plugin or not granted by the operator"
                )));
            }
            let value = secrets.get(secret).ok_or_else(|| {
                HttpError::InvalidRequest(format!("secret `{secret}` has no value set"))
            })?;
            headers.push((name.clone(), value.expose().to_string()));
        }
        let response = self.transport.send(TransportRequest {
            method: req.method,
            url: &url,
            headers,
            body: req.body,
            timeout,
        })?;
        Ok(HttpResponse {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
    }

    /// Downloads a file for the host itself (an attachment's `fetch`), under
    /// the plugin's permissions, decoding base64 when asked.
    pub(crate) fn download(
        &self,
        plugin_id: &str,
        caps: &Capabilities,
        secrets: &SecretStore,
        spec: &super::latest::types::FetchSpec,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, DownloadError> {
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
            .map_err(DownloadError::Request)?;
        if response.status != 200 {
            let retry_after = response
                .headers
                .iter()
                .find(|(name, _)| name == "retry-after")
                .and_then(|(_, v)| v.trim().parse().ok());
            return Err(DownloadError::Status {
                status: response.status,
                retry_after,
            });
        }
        let copied = match spec.encoding {
            BodyEncoding::Identity => std::io::copy(&mut { response.body }, out),
            BodyEncoding::Base64 => {
                let mut decoder = crate::wasm::convert::Base64Reader::new(response.body);
                std::io::copy(&mut decoder, out)
            }
        };
        copied.map_err(DownloadError::Body)
    }
}

/// Why a host-side download failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DownloadError {
    /// The request was refused before or while sending.
    #[error("request failed: {0:?}")]
    Request(HttpError),
    /// The server answered with another status than 200.
    #[error("the server answered HTTP {status}")]
    Status {
        /// The status.
        status: u16,
        /// Its `Retry-After` in seconds, when given.
        retry_after: Option<u64>,
    },
    /// The body broke off or was not valid base64.
    #[error("the download broke off: {0}")]
    Body(std::io::Error),
}

impl DownloadError {
    /// Whether the same download may succeed if tried again shortly: the
    /// connection broke, the server was busy or throttled, or it failed.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            DownloadError::Request(e) => {
                matches!(e, HttpError::Timeout | HttpError::Connection(_))
            }
            DownloadError::Status { status, .. } => {
                *status == 429 || *status == 408 || *status >= 500
            }
            DownloadError::Body(e) => e.kind() != std::io::ErrorKind::InvalidData,
        }
    }

    /// How long the server asked to wait, when it did.
    pub(crate) fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            DownloadError::Status {
                retry_after: Some(secs),
                ..
            } => Some(std::time::Duration::from_secs(*secs)),
            _ => None,
        }
    }
}

fn transport_error(t: &ureq::Transport) -> TransportError {
    let text = t.to_string();
    if text.contains("timed out") || text.contains("Timeout") {
        TransportError::Timeout
    } else {
        TransportError::Connection(text)
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

#[cfg(test)]
mod download_error_tests {
    use super::*;

    #[test]
    fn busy_or_broken_downloads_are_retried_and_refusals_are_not() {
        let status = |status, retry_after| DownloadError::Status {
            status,
            retry_after,
        };
        assert!(status(503, None).is_retryable());
        assert!(status(429, Some(3)).is_retryable());
        assert_eq!(
            status(429, Some(3)).retry_after(),
            Some(Duration::from_secs(3))
        );
        assert!(!status(404, None).is_retryable());
        assert!(!status(401, None).is_retryable());
        assert!(DownloadError::Request(HttpError::Timeout).is_retryable());
        assert!(!DownloadError::Request(HttpError::Denied("x".into())).is_retryable());
        let broken = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(DownloadError::Body(broken).is_retryable());
        let garbage = std::io::Error::new(std::io::ErrorKind::InvalidData, "not base64");
        assert!(!DownloadError::Body(garbage).is_retryable());
    }
}
