//! Outbound HTTP through the host.
//!
//! The host checks every request against the origins the plugin's manifest
//! declares and the operator grants, fills in secret headers (the plugin never
//! sees those values) and caps time limits and buffered body sizes.
//!
//! ```no_run
//! use connector_sdk::http::{self, Request};
//! use connector_sdk::SourceError;
//!
//! fn list_rooms() -> Result<serde_json::Value, SourceError> {
//!     let response = Request::get("https://chat.example.test/api/rooms")
//!         .header("accept", "application/json")
//!         .secret_header("authorization", "api-token")
//!         .timeout_ms(30_000)
//!         .fetch()?
//!         .error_for_status()?;
//!     response.json()
//! }
//! ```
//!
//! Use [`fetch`] for small bodies read whole and [`send`] to stream large ones
//! through [`Response::read`] or a [`BodyReader`].

use crate::SourceError;

pub use crate::bindings::connector::source::http::{
    FullResponse, HttpError, Method, Request, Response,
};

/// Sends `request` and reads the whole body (bounded by host policy: a larger
/// body fails with [`HttpError::BodyTooLarge`]; use [`send`] then).
pub fn fetch(request: &Request) -> Result<FullResponse, HttpError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::connector::source::http::fetch(request)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = request;
        Err(outside_host())
    }
}

/// Sends `request` and returns once the response headers have arrived; read
/// the body with [`Response::read`] or through a [`BodyReader`].
pub fn send(request: &Request) -> Result<Response, HttpError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::connector::source::http::send(request)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = request;
        Err(outside_host())
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn outside_host() -> HttpError {
    HttpError::Other("HTTP is only available inside the connector host".to_string())
}

impl Request {
    /// A request with `method` to `url`, without headers, body or time limit.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            secret_headers: Vec::new(),
            body: None,
            timeout_ms: None,
        }
    }

    /// A `GET` request to `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// A `HEAD` request to `url`.
    pub fn head(url: impl Into<String>) -> Self {
        Self::new(Method::Head, url)
    }

    /// A `POST` request to `url`.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// A `PUT` request to `url`.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::Put, url)
    }

    /// A `PATCH` request to `url`.
    pub fn patch(url: impl Into<String>) -> Self {
        Self::new(Method::Patch, url)
    }

    /// A `DELETE` request to `url`.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::Delete, url)
    }

    crate::records::header_setters!(header, secret_header);

    /// Sets the request body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets the body to `value` as JSON and the `content-type` header to
    /// `application/json`.
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<Self, SourceError> {
        let body = serde_json::to_vec(value)
            .map_err(|e| SourceError::Permanent(format!("cannot encode request body: {e}")))?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Sets the time limit for the whole exchange (the host may lower it).
    pub fn timeout_ms(mut self, timeout_ms: u32) -> Self {
        self.timeout_ms = Some(timeout_ms);
        self
    }

    /// Sends the request with [`fetch`].
    pub fn fetch(&self) -> Result<FullResponse, HttpError> {
        fetch(self)
    }

    /// Sends the request with [`send`].
    pub fn send(&self) -> Result<Response, HttpError> {
        send(self)
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl FullResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Returns the response if its status is 2xx, otherwise the error
    /// [`classify_status`] gives, with the start of the body in its message.
    pub fn error_for_status(self) -> Result<Self, SourceError> {
        match classify_status_with_body(self.status, &self.headers, &self.body) {
            Ok(()) => Ok(self),
            Err(e) => Err(e),
        }
    }

    /// The body as UTF-8 text (a permanent error if it is not).
    pub fn text(&self) -> Result<&str, SourceError> {
        std::str::from_utf8(&self.body)
            .map_err(|e| SourceError::Permanent(format!("response body is not UTF-8: {e}")))
    }

    /// The body parsed as JSON (a permanent error if it does not fit `T`).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, SourceError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| SourceError::Permanent(format!("unexpected response body: {e}")))
    }
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        find_header(&self.headers(), name).map(str::to_string)
    }

    /// Returns the response if its status is 2xx, otherwise the error
    /// [`classify_status`] gives, with the start of the body in its message.
    pub fn error_for_status(self) -> Result<Self, SourceError> {
        let status = self.status();
        if (200..300).contains(&status) {
            return Ok(self);
        }
        // Read a little of the body for the message; errors here do not matter.
        let snippet = self.read(512).ok().flatten().unwrap_or_default();
        match classify_status_with_body(status, &self.headers(), &snippet) {
            Ok(()) => Ok(self),
            Err(e) => Err(e),
        }
    }

    /// Reads the rest of the body, failing permanently past `limit` bytes.
    pub fn read_to_end(&self, limit: usize) -> Result<Vec<u8>, SourceError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.read(64 * 1024)? {
            if body.len() + chunk.len() > limit {
                return Err(SourceError::Permanent(format!(
                    "response body exceeds {limit} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Wraps the response in a [`BodyReader`] (an [`std::io::Read`]).
    pub fn into_reader(self) -> BodyReader {
        BodyReader::new(self)
    }
}

/// An [`std::io::Read`] over a streamed [`Response`] body.
///
/// Failures are `std::io::Error`s wrapping the [`HttpError`]; converting them
/// with `SourceError::from` keeps the HTTP classification.
pub struct BodyReader {
    response: Response,
    chunk_size: u32,
    buffer: Vec<u8>,
    position: usize,
    done: bool,
}

impl BodyReader {
    /// Reads `response` in chunks of up to 256 KiB.
    pub fn new(response: Response) -> Self {
        Self::with_chunk_size(response, 256 * 1024)
    }

    /// Reads `response` in chunks of up to `chunk_size` bytes.
    pub fn with_chunk_size(response: Response, chunk_size: u32) -> Self {
        BodyReader {
            response,
            chunk_size: chunk_size.max(1),
            buffer: Vec::new(),
            position: 0,
            done: false,
        }
    }

    /// The response being read.
    pub fn response(&self) -> &Response {
        &self.response
    }
}

impl std::io::Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.position >= self.buffer.len() {
            if self.done {
                return Ok(0);
            }
            match self.response.read(self.chunk_size) {
                Ok(Some(chunk)) => {
                    self.buffer = chunk;
                    self.position = 0;
                }
                Ok(None) => {
                    self.done = true;
                    return Ok(0);
                }
                Err(e) => {
                    let kind = match e {
                        HttpError::Timeout => std::io::ErrorKind::TimedOut,
                        HttpError::Connection(_) => std::io::ErrorKind::ConnectionAborted,
                        _ => std::io::ErrorKind::Other,
                    };
                    return Err(std::io::Error::new(kind, e));
                }
            }
        }
        let n = out.len().min(self.buffer.len() - self.position);
        out[..n].copy_from_slice(&self.buffer[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

/// Classifies an HTTP status: `Ok(())` for 2xx; otherwise
///
/// * 429, or 400 with a `Retry-After` header → [`SourceError::RateLimited`]
///   with the delay in seconds when `Retry-After` gives one (seconds or an
///   HTTP date);
/// * 401 and 403 → [`SourceError::Auth`];
/// * 5xx → [`SourceError::Transient`];
/// * any other status (other 4xx, 1xx, 3xx) → [`SourceError::Permanent`].
pub fn classify_status(status: u16, headers: &[(String, String)]) -> Result<(), SourceError> {
    classify_status_with_body(status, headers, &[])
}

/// Like [`classify_status`], quoting the start of `body` in the message.
pub fn classify_status_with_body(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), SourceError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let retry_after = find_header(headers, "retry-after");
    if status == 429 || (status == 400 && retry_after.is_some()) {
        return Err(SourceError::RateLimited(
            retry_after.and_then(parse_retry_after),
        ));
    }
    let mut message = format!("HTTP status {status}");
    let snippet = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let snippet = snippet.trim();
    if !snippet.is_empty() {
        message.push_str(": ");
        message.push_str(snippet);
    }
    Err(match status {
        401 | 403 => SourceError::Auth(message),
        500..=599 => SourceError::Transient(message),
        _ => SourceError::Permanent(message),
    })
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date (seconds from
/// now, at least 0). `None` when it is neither.
pub fn parse_retry_after(value: &str) -> Option<u32> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs.min(u32::MAX as u64) as u32);
    }
    let at_ms = crate::time::parse_http_date(value)?;
    let now_ms = crate::time::now_ms();
    let secs = ((at_ms - now_ms).max(0) as u64).div_ceil(1000);
    Some(secs.min(u32::MAX as u64) as u32)
}

/// How host HTTP errors map: `denied`, `invalid-request` and
/// `body-too-large` are permanent (retrying cannot help; the message says
/// what the operator or plugin must change), `timeout`, `connection` and
/// `other` are transient.
impl From<HttpError> for SourceError {
    fn from(err: HttpError) -> Self {
        match err {
            HttpError::Denied(why) => SourceError::Permanent(format!("HTTP request denied: {why}")),
            HttpError::InvalidRequest(why) => {
                SourceError::Permanent(format!("invalid HTTP request: {why}"))
            }
            HttpError::BodyTooLarge(limit) => SourceError::Permanent(format!(
                "HTTP response body exceeds the host's limit of {limit} bytes"
            )),
            HttpError::Timeout => SourceError::Transient("HTTP request timed out".to_string()),
            HttpError::Connection(why) => {
                SourceError::Transient(format!("HTTP connection failed: {why}"))
            }
            HttpError::Other(why) => SourceError::Transient(format!("HTTP request failed: {why}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: &str) -> Vec<(String, String)> {
        vec![(name.to_string(), value.to_string())]
    }

    #[test]
    fn statuses() {
        assert_eq!(classify_status(200, &[]), Ok(()));
        assert_eq!(classify_status(204, &[]), Ok(()));
        assert_eq!(
            classify_status(429, &[]),
            Err(SourceError::RateLimited(None))
        );
        assert_eq!(
            classify_status(429, &h("Retry-After", "12")),
            Err(SourceError::RateLimited(Some(12)))
        );
        assert_eq!(
            classify_status(400, &h("retry-after", "3")),
            Err(SourceError::RateLimited(Some(3)))
        );
        assert!(matches!(
            classify_status(400, &[]),
            Err(SourceError::Permanent(_))
        ));
        assert!(matches!(
            classify_status(401, &[]),
            Err(SourceError::Auth(_))
        ));
        assert!(matches!(
            classify_status(403, &[]),
            Err(SourceError::Auth(_))
        ));
        assert!(matches!(
            classify_status(404, &[]),
            Err(SourceError::Permanent(_))
        ));
        assert!(matches!(
            classify_status(503, &[]),
            Err(SourceError::Transient(_))
        ));
        assert!(matches!(
            classify_status(302, &[]),
            Err(SourceError::Permanent(_))
        ));
        assert_eq!(
            classify_status(429, &h("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")),
            Err(SourceError::RateLimited(Some(0)))
        );
        assert_eq!(
            classify_status(429, &h("retry-after", "soon")),
            Err(SourceError::RateLimited(None))
        );
    }

    #[test]
    fn body_in_message() {
        let err = classify_status_with_body(500, &[], b" upstream down\n").unwrap_err();
        assert_eq!(
            err,
            SourceError::Transient("HTTP status 500: upstream down".to_string())
        );
    }

    #[test]
    fn http_errors() {
        assert!(matches!(
            SourceError::from(HttpError::Denied("http://a".into())),
            SourceError::Permanent(_)
        ));
        assert!(matches!(
            SourceError::from(HttpError::InvalidRequest("x".into())),
            SourceError::Permanent(_)
        ));
        assert!(matches!(
            SourceError::from(HttpError::Timeout),
            SourceError::Transient(_)
        ));
        assert!(matches!(
            SourceError::from(HttpError::Connection("reset".into())),
            SourceError::Transient(_)
        ));
    }

    #[test]
    fn builder() {
        let r = Request::post("http://h/x")
            .header("a", "b")
            .secret_header("authorization", "token")
            .body("hi")
            .timeout_ms(5);
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.headers, h("a", "b"));
        assert_eq!(r.secret_headers, h("authorization", "token"));
        assert_eq!(r.body.as_deref(), Some(b"hi".as_slice()));
        assert_eq!(r.timeout_ms, Some(5));
        assert!(fetch(&r).is_err());
    }
}
