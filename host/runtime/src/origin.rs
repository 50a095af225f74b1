//! Outbound HTTP origins (`scheme://host[:port]`) as written in manifests and
//! grants, and the check of a URL against them.

use std::fmt;

/// An allowed origin: a scheme, a host (`*.domain` for any subdomain, `*` for
/// any host) and a port (the scheme's default when not written, `*` for any).
/// Manifests of plugins whose server the operator chooses declare `*`; the
/// operator's grant then names the real origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(into = "String")]
pub struct Origin {
    scheme: String,
    host: String,
    /// `None` is any port.
    port: Option<u16>,
}

/// Why an origin string is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not an origin: {reason}; write it as scheme://host[:port], e.g. https://pod.example.com or http://127.0.0.1:8080"
)]
pub struct OriginError {
    input: String,
    reason: &'static str,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl Origin {
    /// Parses `scheme://host[:port]`; the host may start with `*.`.
    pub fn parse(input: &str) -> Result<Origin, OriginError> {
        let err = |reason| OriginError {
            input: input.to_string(),
            reason,
        };
        let (scheme, rest) = input.split_once("://").ok_or(err("no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default = default_port(&scheme).ok_or(err("the scheme must be http or https"))?;
        if rest.contains(['/', '?', '#', '@']) {
            return Err(err(
                "only scheme, host and port are allowed (no path, query or user)",
            ));
        }
        let (host, port) = split_host_port(rest).ok_or(err("the port is not a number or `*`"))?;
        let host = host.to_ascii_lowercase();
        if host.is_empty() || host != "*" && host.contains('*') && !host.starts_with("*.") {
            return Err(err(
                "the host is empty or its wildcard is not a leading `*.`",
            ));
        }
        if host != "*" && host[host.starts_with("*.") as usize * 2..].contains('*') {
            return Err(err("only one leading wildcard is allowed"));
        }
        Ok(Origin {
            scheme,
            host,
            port: port.unwrap_or(Some(default)),
        })
    }

    /// Whether a request to `url` stays inside this origin.
    pub fn allows(&self, url: &url::Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        url.scheme() == self.scheme
            && self
                .port
                .is_none_or(|p| url.port_or_known_default() == Some(p))
            && self.host_matches(&host.to_ascii_lowercase())
    }

    /// Whether every URL this origin allows is also allowed by `wider`.
    pub fn is_within(&self, wider: &Origin) -> bool {
        self.scheme == wider.scheme
            && (wider.port.is_none() || self.port == wider.port)
            && wider.host_matches(&self.host)
    }

    fn host_matches(&self, host: &str) -> bool {
        let own = self.host.trim_start_matches('[').trim_end_matches(']');
        if own == "*" {
            return true;
        }
        match own.strip_prefix("*.") {
            Some(domain) => {
                let host = host.strip_prefix("*.").unwrap_or(host);
                host.len() > domain.len()
                    && host.ends_with(domain)
                    && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
            }
            None => own == host,
        }
    }
}

/// Host and port; the port is `None` when absent, `Some(None)` for `*`.
fn split_host_port(rest: &str) -> Option<(&str, Option<Option<u16>>)> {
    // IPv6 literals keep their brackets: [::1]:8080
    let colon = if rest.starts_with('[') {
        rest.find(']')
            .map(|end| end + 1)
            .filter(|&i| i < rest.len())
    } else {
        rest.rfind(':')
    };
    match colon {
        Some(i) if rest.as_bytes()[i] == b':' => {
            let port = match &rest[i + 1..] {
                "*" => None,
                p => Some(p.parse().ok()?),
            };
            Some((&rest[..i], Some(port)))
        }
        _ => Some((rest, None)),
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}://{}:{port}", self.scheme, self.host),
            None => write!(f, "{}://{}:*", self.scheme, self.host),
        }
    }
}

impl From<Origin> for String {
    fn from(o: Origin) -> String {
        o.to_string()
    }
}

impl TryFrom<String> for Origin {
    type Error = OriginError;
    fn try_from(s: String) -> Result<Origin, OriginError> {
        Origin::parse(&s)
    }
}

impl<'de> serde::Deserialize<'de> for Origin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Origin, D::Error> {
        let s = String::deserialize(d)?;
        Origin::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn exact_origin_allows_only_its_scheme_host_and_port() {
        let o = Origin::parse("http://127.0.0.1:8080").unwrap();
        assert!(o.allows(&url("http://127.0.0.1:8080/a/b?c")));
        assert!(!o.allows(&url("http://127.0.0.1:8081/")));
        assert!(!o.allows(&url("https://127.0.0.1:8080/")));
        assert!(!o.allows(&url("http://127.0.0.2:8080/")));
    }

    #[test]
    fn default_port_is_implied() {
        let o = Origin::parse("https://Pod.Example.com").unwrap();
        assert!(o.allows(&url("https://pod.example.com/pod/v1")));
        assert!(o.allows(&url("https://pod.example.com:443/")));
        assert!(!o.allows(&url("https://pod.example.com:8443/")));
    }

    #[test]
    fn wildcard_matches_subdomains_but_not_the_bare_domain_or_lookalikes() {
        let o = Origin::parse("https://*.example.com").unwrap();
        assert!(o.allows(&url("https://a.example.com/")));
        assert!(o.allows(&url("https://a.b.example.com/")));
        assert!(!o.allows(&url("https://example.com/")));
        assert!(!o.allows(&url("https://evilexample.com/")));
    }

    #[test]
    fn grants_must_lie_within_declarations() {
        let declared = Origin::parse("https://*.example.com").unwrap();
        assert!(
            Origin::parse("https://pod.example.com")
                .unwrap()
                .is_within(&declared)
        );
        assert!(
            !Origin::parse("https://pod.other.com")
                .unwrap()
                .is_within(&declared)
        );
        assert!(
            !Origin::parse("http://pod.example.com")
                .unwrap()
                .is_within(&declared)
        );
    }

    #[test]
    fn operator_chosen_origins_are_declared_with_wildcards() {
        let any = Origin::parse("http://*:*").unwrap();
        assert!(any.allows(&url("http://10.1.2.3:8080/x")));
        assert!(!any.allows(&url("https://10.1.2.3:8080/x")));
        assert!(
            Origin::parse("http://127.0.0.1:9000")
                .unwrap()
                .is_within(&any)
        );
        let any_host = Origin::parse("https://*").unwrap();
        assert!(
            !Origin::parse("https://a.b:8443")
                .unwrap()
                .is_within(&any_host)
        );
    }

    #[test]
    fn ipv6_literal_with_port_parses() {
        let o = Origin::parse("http://[::1]:9000").unwrap();
        assert!(o.allows(&url("http://[::1]:9000/x")));
    }

    #[test]
    fn paths_users_and_odd_schemes_are_rejected_with_a_hint() {
        for bad in [
            "pod.example.com",
            "ftp://x",
            "https://x/path",
            "https://u@x",
            "https://x:port",
            "https://a*.b",
            "https://*x",
        ] {
            let e = Origin::parse(bad).unwrap_err();
            assert!(e.to_string().contains("scheme://host[:port]"), "{bad}: {e}");
        }
    }
}
