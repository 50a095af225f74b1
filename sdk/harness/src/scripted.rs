//! The scripted HTTP transport: answers from rules, records every request.

use std::fmt;
use std::io::Cursor;
use std::sync::Mutex;

use connector_runtime::http::{HttpTransport, TransportError, TransportRequest, TransportResponse};

/// Request methods a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
    /// Any method.
    Any,
}

impl Method {
    fn matches(self, method: &str) -> bool {
        self == Method::Any || self.as_str() == method
    }

    /// The upper-case name (`*` for [`Method::Any`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Any => "*",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the plugin (or the host, for a `fetch` attachment) made.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Upper-case method.
    pub method: String,
    /// The full URL.
    pub url: String,
    /// Headers as sent, secret values filled in by the host.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Option<Vec<u8>>,
    /// Whether a scripted rule answered it.
    pub scripted: bool,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
enum Answer {
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    Error(TransportError),
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    method: Method,
    pattern: String,
    answer: Answer,
    once: bool,
    used: bool,
}

impl Rule {
    pub(crate) fn response(
        method: Method,
        pattern: &str,
        status: u16,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        once: bool,
    ) -> Rule {
        Rule {
            method,
            pattern: pattern.to_string(),
            answer: Answer::Response {
                status,
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
                    .collect(),
                body,
            },
            once,
            used: false,
        }
    }

    pub(crate) fn error(method: Method, pattern: &str, error: TransportError) -> Rule {
        Rule {
            method,
            pattern: pattern.to_string(),
            answer: Answer::Error(error),
            once: true,
            used: false,
        }
    }

    pub(crate) fn describe(&self) -> String {
        format!("{} {}", self.method, self.pattern)
    }
}

/// `*` matches any run of characters; everything else literally.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// Answers requests from rules, in order; records every request.
pub(crate) struct ScriptedTransport {
    rules: Mutex<Vec<Rule>>,
    requests: Mutex<Vec<RecordedRequest>>,
    /// Origins (`scheme://host:port`) whose unscripted requests go to the
    /// real server there (a local simulator), and the transport to send them.
    forward: Vec<String>,
    network: connector_runtime::http::UreqTransport,
}

impl ScriptedTransport {
    pub(crate) fn new(rules: Vec<Rule>, forward: Vec<String>) -> ScriptedTransport {
        ScriptedTransport {
            rules: Mutex::new(rules),
            requests: Mutex::new(Vec::new()),
            forward,
            network: connector_runtime::http::UreqTransport::new(),
        }
    }

    /// Whether `url` is on an origin whose requests are forwarded.
    fn forwarded(&self, url: &str) -> bool {
        self.forward.iter().any(|origin| {
            url.strip_prefix(origin.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl HttpTransport for ScriptedTransport {
    fn send(&self, request: TransportRequest<'_>) -> Result<TransportResponse, TransportError> {
        let url = request.url.as_str().to_string();
        let answer = {
            let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
            rules
                .iter_mut()
                .find(|r| {
                    !(r.once && r.used)
                        && r.method.matches(request.method)
                        && glob_match(&r.pattern, &url)
                })
                .map(|r| {
                    r.used = true;
                    r.answer.clone()
                })
        };
        let forwarded = answer.is_none() && self.forwarded(&url);
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(RecordedRequest {
                method: request.method.to_string(),
                url: url.clone(),
                headers: request.headers.clone(),
                body: request.body.map(<[u8]>::to_vec),
                scripted: answer.is_some() || forwarded,
            });
        if forwarded {
            return self.network.send(request);
        }
        match answer {
            Some(Answer::Response {
                status,
                headers,
                body,
            }) => Ok(TransportResponse {
                status,
                headers,
                body: Box::new(Cursor::new(body)),
            }),
            Some(Answer::Error(e)) => Err(e),
            None => Err(TransportError::Other(format!(
                "the test harness has no scripted response for {} {url}",
                request.method
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("https://a.test/x", "https://a.test/x"));
        assert!(!glob_match("https://a.test/x", "https://a.test/xy"));
        assert!(glob_match("https://a.test/*", "https://a.test/x?y=1"));
        assert!(glob_match("*", ""));
        assert!(glob_match("https://*.test/*/z", "https://a.test/b/c/z"));
        assert!(!glob_match("https://*.test/*/z", "https://a.test/b/c/zz"));
        assert!(glob_match("a*a", "aa"));
        assert!(!glob_match("a*a", "a"));
    }
}
