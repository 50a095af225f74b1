//! Outbound HTTP for plugins: every request is checked against the plugin's
//! allowed origins; redirects are not followed (the plugin sees the 3xx and
//! any next hop is checked again); secret headers are filled in here.
//!
//! The checks live in [`HttpClient`]; what actually carries a request is an
//! [`HttpTransport`]: [`UreqTransport`] (real HTTP, the default) or any other
//! implementation, such as the scripted one of the plugin test harness. A
//! transport only ever sees requests that passed the allow-list.

use std::io::Read;

use base64::Engine as _;
use std::sync::Arc;
use std::time::Duration;

use connector_secrets::SecretStore;

use crate::Capabilities;
use crate::address::{AddressPolicy, refusal_in};

/// Largest body `fetch` buffers; larger ones need `send` and chunked reads.
pub const MAX_BUFFERED_BODY: u64 = 256 << 20;
/// Time limit for a request when the plugin sets none, and the cap on any.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a plugin's request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The URL's origin is not allowed for this plugin.
    Denied(String),
    /// The request is malformed (bad URL, header, or a secret that is not
    /// declared or not set).
    InvalidRequest(String),
    /// No answer within the time limit.
    Timeout,
    /// The connection failed or broke.
    Connection(String),
    /// The body exceeded the limit for buffered responses (in bytes).
    BodyTooLarge(u64),
    /// Anything else.
    Other(String),
}

/// How a downloaded body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    /// The bytes as they are.
    Identity,
    /// Base64 (standard or URL-safe, padded or not, with line breaks).
    Base64,
}

/// An attachment the host downloads itself, under the plugin's grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSpec {
    /// The URL.
    pub url: String,
    /// Headers to send.
    pub headers: Vec<(String, String)>,
    /// Headers whose values are the named secrets.
    pub secret_headers: Vec<(String, String)>,
    /// How the body is encoded.
    pub encoding: BodyEncoding,
}

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
    /// Which addresses the connection may go to.
    pub addresses: AddressPolicy,
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
    /// The name resolved only to addresses the plugin may not reach.
    #[error("{0}")]
    AddressRefused(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl From<TransportError> for HttpError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Timeout => HttpError::Timeout,
            TransportError::Connection(m) => HttpError::Connection(m),
            TransportError::AddressRefused(m) => HttpError::Denied(m),
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

/// Real HTTP over `ureq`, following no redirects, connecting only to the
/// addresses the request's [`AddressPolicy`] allows.
pub struct UreqTransport {
    public_only: ureq::Agent,
    private_networks: ureq::Agent,
}

impl Default for UreqTransport {
    fn default() -> Self {
        UreqTransport::new()
    }
}

impl UreqTransport {
    /// A transport with a 30 s connect timeout that follows no redirects.
    pub fn new() -> UreqTransport {
        let agent = |policy: AddressPolicy| {
            ureq::AgentBuilder::new()
                .redirects(0)
                .timeout_connect(Duration::from_secs(30))
                .user_agent(concat!("connector-host/", env!("CARGO_PKG_VERSION")))
                .resolver(move |netloc: &str| policy.resolve(netloc))
                .build()
        };
        UreqTransport {
            public_only: agent(AddressPolicy::PublicOnly),
            private_networks: agent(AddressPolicy::PrivateNetworksAllowed),
        }
    }
}

impl HttpTransport for UreqTransport {
    fn send(&self, req: TransportRequest<'_>) -> Result<TransportResponse, TransportError> {
        let agent = match req.addresses {
            AddressPolicy::PublicOnly => &self.public_only,
            AddressPolicy::PrivateNetworksAllowed => &self.private_networks,
        };
        let mut request = agent.request_url(req.method, req.url).timeout(req.timeout);
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

/// What carries a run's plugin requests and host-side downloads; a
/// [`PluginHttp`] puts the plugin's allow-list and secret checks in front of
/// it.
#[derive(Clone)]
pub struct HttpClient {
    transport: Arc<dyn HttpTransport>,
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new()
    }
}

/// A plugin's outbound HTTP: the host's client with the plugin's grants
/// and secrets, so that every request it makes (and every download the host
/// makes for it) is checked the same way.
#[derive(Clone)]
pub struct PluginHttp {
    /// The plugin, for logs and refusals.
    pub plugin_id: String,
    /// What the plugin may reach.
    pub caps: Arc<Capabilities>,
    /// The secrets it may put in headers.
    pub secrets: Arc<SecretStore>,
    /// What carries the requests.
    pub client: HttpClient,
}

impl PluginHttp {
    /// The HTTP of plugin `plugin_id`, with its capabilities and secrets,
    /// carried by `client`.
    pub fn new(
        plugin_id: &str,
        caps: Capabilities,
        secrets: SecretStore,
        client: HttpClient,
    ) -> PluginHttp {
        PluginHttp {
            plugin_id: plugin_id.to_string(),
            caps: Arc::new(caps),
            secrets: Arc::new(secrets),
            client,
        }
    }

    /// Sends a request if the plugin's capabilities allow its origin, with
    /// its secret headers filled in.
    pub(crate) fn send(&self, req: Outbound<'_>) -> Result<HttpResponse, HttpError> {
        let (plugin_id, caps) = (self.plugin_id.as_str(), &self.caps);
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
            let value = self.secrets.get(secret).ok_or_else(|| {
                HttpError::InvalidRequest(format!("secret `{secret}` has no value set"))
            })?;
            headers.push((name.clone(), value.expose().to_string()));
        }
        let response = self.client.transport.send(TransportRequest {
            method: req.method,
            url: &url,
            headers,
            body: req.body,
            timeout,
            addresses: caps.addresses,
        })?;
        Ok(HttpResponse {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
    }

    /// Downloads a file for the host itself (an attachment's `fetch`),
    /// under the plugin's permissions, decoding base64 when asked.
    pub(crate) fn download(
        &self,
        spec: &FetchSpec,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, DownloadError> {
        let response = self
            .send(Outbound {
                method: "GET",
                url: &spec.url,
                headers: &spec.headers,
                secret_headers: &spec.secret_headers,
                body: None,
                timeout: Some(MAX_TIMEOUT),
            })
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
                let mut decoder = Base64Reader::new(response.body);
                std::io::copy(&mut decoder, out)
            }
        };
        copied.map_err(DownloadError::Body)
    }
}

/// A response whose body the plugin reads in chunks.
pub struct HttpResponse {
    pub(crate) status: u16,
    /// Names in lower case.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Box<dyn Read + Send + Sync>,
}

/// A request as the host performs it, before secrets are filled in.
pub(crate) struct Outbound<'a> {
    pub method: &'static str,
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    /// Header names and the secrets whose values they carry.
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
            DownloadError::Body(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::FileTooLarge
            ),
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
    if let Some(refused) = std::error::Error::source(t).and_then(refusal_in) {
        return TransportError::AddressRefused(refused.to_string());
    }
    let text = t.to_string();
    if text.contains("timed out") || text.contains("Timeout") {
        TransportError::Timeout
    } else {
        TransportError::Connection(text)
    }
}

/// Decodes base64 (standard or URL-safe alphabet, padded or not, with line
/// breaks) while reading.
struct Base64Reader<R> {
    inner: R,
    pending: Vec<u8>,
    decoded: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read> Base64Reader<R> {
    fn new(inner: R) -> Self {
        Base64Reader {
            inner,
            pending: Vec::new(),
            decoded: Vec::new(),
            pos: 0,
            done: false,
        }
    }

    fn refill(&mut self) -> std::io::Result<()> {
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let mut raw = [0u8; 64 << 10];
        while !self.done && self.pending.len() < 4 {
            let n = self.inner.read(&mut raw)?;
            if n == 0 {
                self.done = true;
            }
            self.pending
                .extend(raw[..n].iter().filter_map(|&b| match b {
                    b'-' => Some(b'+'),
                    b'_' => Some(b'/'),
                    b'=' | b'\r' | b'\n' | b' ' | b'\t' => None,
                    b => Some(b),
                }));
        }
        let take = if self.done {
            self.pending.len()
        } else {
            self.pending.len() / 4 * 4
        };
        self.decoded.clear();
        self.pos = 0;
        engine
            .decode_vec(&self.pending[..take], &mut self.decoded)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        self.pending.drain(..take);
        Ok(())
    }
}

impl<R: Read> Read for Base64Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.decoded.len() {
            if self.done && self.pending.is_empty() {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = buf.len().min(self.decoded.len() - self.pos);
        buf[..n].copy_from_slice(&self.decoded[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
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

#[cfg(test)]
mod base64_reader_tests {
    use super::*;

    fn decode(input: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Base64Reader::new(input).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn base64_reader_decodes_any_alphabet_with_line_breaks() {
        let data: Vec<u8> = (0..=255u8).cycle().take(200_003).collect();
        let std = base64::engine::general_purpose::STANDARD.encode(&data);
        let wrapped: String = std
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap().to_string() + "\r\n")
            .collect();
        assert_eq!(decode(wrapped.as_bytes()).unwrap(), data);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&data);
        assert_eq!(decode(url.as_bytes()).unwrap(), data);
    }

    #[test]
    fn base64_reader_rejects_garbage() {
        assert!(decode(b"not*base64!").is_err());
    }
}
