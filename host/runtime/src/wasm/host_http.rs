//! The plugin's `http` import: requests go through the host's
//! [`HttpClient`](crate::http::HttpClient) (allow-list, secret headers), and
//! streamed bodies are resources of the plugin's store.

use std::io::Read;
use std::time::Duration;

use wasmtime::component::Resource;

use super::latest::http::{self, FullResponse, HttpError, Method, Request};
use super::sandbox::SandboxState;
use crate::http::{self as client, HttpResponse, MAX_BUFFERED_BODY, Outbound};

/// Largest chunk handed to the plugin by one `read`.
const MAX_CHUNK: u32 = 4 << 20;

impl From<client::HttpError> for HttpError {
    fn from(e: client::HttpError) -> Self {
        match e {
            client::HttpError::Denied(m) => HttpError::Denied(m),
            client::HttpError::InvalidRequest(m) => HttpError::InvalidRequest(m),
            client::HttpError::Timeout => HttpError::Timeout,
            client::HttpError::Connection(m) => HttpError::Connection(m),
            client::HttpError::BodyTooLarge(limit) => HttpError::BodyTooLarge(limit),
            client::HttpError::Other(m) => HttpError::Other(m),
        }
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
        self.http
            .send(Outbound {
                method: method_name(req.method),
                url: &req.url,
                headers: &req.headers,
                secret_headers: &req.secret_headers,
                body: req.body.as_deref(),
                timeout: req.timeout_ms.map(|ms| Duration::from_millis(ms.into())),
            })
            .map_err(HttpError::from)
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
