//! Encoding of IMAP command arguments and parsing of status responses.
//!
//! Commands are built from [`Part`]s: text, and literals that are either
//! synchronizing (`{n}`, the client waits for the server's `+`) or
//! non-synchronizing (`{n+}`, LITERAL+, RFC 7888). Mailbox names go out in
//! modified UTF-7 (RFC 3501 §5.1.3) as quoted strings; other strings are
//! quoted when they can be and sent as literals otherwise.
//!
//! Status responses (`tag OK [CODE args] text`, `* BYE text`) are parsed
//! here; data responses (FETCH, LIST) by `imap-proto` in the client.

use std::borrow::Cow;

use base64::Engine as _;

use connector_sink::{Email, mutf7};

/// One piece of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part<'a> {
    /// Bytes sent as they are.
    Text(Vec<u8>),
    /// A literal: its header `{n}` / `{n+}` is written by the sender.
    Literal {
        /// The literal's contents.
        bytes: Literal<'a>,
        /// Whether to send it without waiting for a continuation.
        non_sync: bool,
    },
}

/// What a literal holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Literal<'a> {
    /// Bytes.
    Bytes(Cow<'a, [u8]>),
    /// An email, written from memory or copied from its spool file.
    Email(&'a Email),
}

impl Literal<'_> {
    /// The literal's size in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Literal::Bytes(bytes) => bytes.len() as u64,
            Literal::Email(email) => email.len(),
        }
    }
}

/// A command's arguments, built left to right.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Args<'a> {
    pub parts: Vec<Part<'a>>,
}

impl<'a> Args<'a> {
    /// Starts with an atom or keyword text such as `APPEND`.
    pub fn new(text: &str) -> Args<'a> {
        Args {
            parts: vec![Part::Text(text.as_bytes().to_vec())],
        }
    }

    /// Appends raw text (a space is not added).
    pub fn raw(mut self, text: &[u8]) -> Args<'a> {
        match self.parts.last_mut() {
            Some(Part::Text(t)) => t.extend_from_slice(text),
            _ => self.parts.push(Part::Text(text.to_vec())),
        }
        self
    }

    /// Appends ` ` and a string as a quoted string when it can be one, else
    /// as a literal (non-synchronizing when `literal_plus`).
    pub fn string(self, value: &[u8], literal_plus: bool) -> Args<'a> {
        let this = self.raw(b" ");
        match quoted(value) {
            Some(q) => this.raw(&q),
            None => this.literal(Literal::Bytes(Cow::Owned(value.to_vec())), literal_plus),
        }
    }

    /// Appends a literal (its `{n}` header included when sent).
    pub fn literal(mut self, bytes: Literal<'a>, non_sync: bool) -> Args<'a> {
        self.parts.push(Part::Literal { bytes, non_sync });
        self
    }

    /// The bytes as they go on the wire (for tests and logs: literal
    /// contents included).
    #[cfg(test)]
    pub fn wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.extend_from_slice(t),
                Part::Literal { bytes, non_sync } => {
                    out.extend_from_slice(&literal_header(bytes.len(), *non_sync));
                    match bytes {
                        Literal::Bytes(b) => out.extend_from_slice(b),
                        Literal::Email(e) => e.write_to(&mut out).expect("readable email"),
                    }
                }
            }
        }
        out
    }
}

/// `{n}\r\n` or `{n+}\r\n`.
pub(crate) fn literal_header(len: u64, non_sync: bool) -> Vec<u8> {
    if non_sync {
        format!("{{{len}+}}\r\n").into_bytes()
    } else {
        format!("{{{len}}}\r\n").into_bytes()
    }
}

/// `"value"` with `\` and `"` escaped, or `None` when the value holds
/// bytes a quoted string cannot carry (CR, LF, NUL, 8-bit) or is too long
/// to be a sensible quoted string.
pub(crate) fn quoted(value: &[u8]) -> Option<Vec<u8>> {
    if value.len() > 1000
        || value
            .iter()
            .any(|&b| b == b'\r' || b == b'\n' || b == 0 || b >= 0x80)
    {
        return None;
    }
    let mut out = Vec::with_capacity(value.len() + 2);
    out.push(b'"');
    for &b in value {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
    Some(out)
}

/// The server's name of a logical folder path (`/`-separated, e.g.
/// `INBOX/Symphony`): components in modified UTF-7 joined by the server's
/// hierarchy delimiter, `INBOX` in upper case. `Err` says why the path
/// cannot be a mailbox name on this server.
pub(crate) fn server_folder_name(folder: &str, delimiter: Option<char>) -> Result<String, String> {
    if folder.is_empty() {
        return Err("it is empty".into());
    }
    let components: Vec<&str> = folder.split('/').collect();
    if components.iter().any(|c| c.is_empty()) {
        return Err("it has an empty component (a leading, trailing or doubled `/`)".into());
    }
    if components.len() > 1 && delimiter.is_none() {
        return Err("the server has no folder hierarchy (its delimiter is NIL)".into());
    }
    let mut names = Vec::with_capacity(components.len());
    for (i, c) in components.iter().enumerate() {
        if c.chars().any(|ch| ch.is_control()) {
            return Err(format!("component `{c}` contains a control character"));
        }
        if let Some(d) = delimiter
            && c.contains(d)
        {
            return Err(format!(
                "component `{c}` contains the server's hierarchy delimiter `{d}`"
            ));
        }
        if c.contains(['*', '%']) {
            return Err(format!(
                "component `{c}` contains `*` or `%`, which IMAP reserves for wildcards"
            ));
        }
        if i == 0 && c.eq_ignore_ascii_case("INBOX") {
            names.push("INBOX".to_string());
        } else {
            names.push(mutf7::encode(c));
        }
    }
    let sep = delimiter.map(String::from).unwrap_or_default();
    Ok(names.join(&sep))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// An IMAP `date-time` for APPEND (`"04-Mar-2024 08:05:00 +0000"`, quoted)
/// from milliseconds since the Unix epoch, in UTC. Times before year 1 are
/// given as 01-Jan-0001.
pub(crate) fn internal_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if y < 1 {
        return "\"01-Jan-0001 00:00:00 +0000\"".to_string();
    }
    format!(
        "\"{d:>2}-{}-{y:04} {:02}:{:02}:{:02} +0000\"",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month (1-12), day (1-31) of a day number counted from 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The status of a status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Ok,
    No,
    Bad,
    Bye,
    Preauth,
}

/// A parsed status response: `<tag|*> <status> [<code>] <text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatusLine {
    /// The tag, or `*` for an untagged one.
    pub tag: String,
    pub status: Status,
    /// The response code's atom, upper-cased (`APPENDUID`, `OVERQUOTA`).
    pub code: Option<String>,
    /// What follows the code's atom inside the brackets.
    pub code_args: String,
    /// The human-readable text.
    pub text: String,
}

impl StatusLine {
    /// `[CODE args] text` as the server said it, for messages.
    pub fn describe(&self) -> String {
        match &self.code {
            Some(code) if self.code_args.is_empty() => format!("[{code}] {}", self.text),
            Some(code) => format!("[{code} {}] {}", self.code_args, self.text),
            None => self.text.clone(),
        }
    }
}

/// Parses a status response line (without its CRLF); `None` when the line
/// is not one (a data response such as `* 3 EXISTS`).
pub(crate) fn parse_status(line: &[u8]) -> Option<StatusLine> {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end_matches(['\r', '\n']);
    let (tag, rest) = line.split_once(' ')?;
    let (word, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let status = match word.to_ascii_uppercase().as_str() {
        "OK" => Status::Ok,
        "NO" => Status::No,
        "BAD" => Status::Bad,
        "BYE" => Status::Bye,
        "PREAUTH" => Status::Preauth,
        _ => return None,
    };
    let (code, code_args, text) = match rest.strip_prefix('[') {
        Some(inner) => match inner.find(']') {
            Some(end) => {
                let body = &inner[..end];
                let (atom, args) = body.split_once(' ').unwrap_or((body, ""));
                (
                    Some(atom.to_ascii_uppercase()),
                    args.to_string(),
                    inner[end + 1..].trim_start().to_string(),
                )
            }
            None => (None, String::new(), rest.to_string()),
        },
        None => (None, String::new(), rest.to_string()),
    };
    Some(StatusLine {
        tag: tag.to_string(),
        status,
        code,
        code_args,
        text,
    })
}

/// Expands an RFC 4315 `uid-set` (`4`, `4:7`, `4,9:10`) into its UIDs in
/// the order they were assigned; `None` when it is malformed or absurdly
/// large.
pub(crate) fn parse_uid_set(set: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for item in set.split(',') {
        match item.split_once(':') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                let (lo, hi) = (a.min(b), a.max(b));
                if a == 0 || b == 0 || (hi - lo) as usize + out.len() > 1_000_000 {
                    return None;
                }
                out.extend(lo..=hi);
            }
            None => {
                let uid: u32 = item.parse().ok()?;
                if uid == 0 {
                    return None;
                }
                out.push(uid);
            }
        }
    }
    Some(out)
}

/// `APPENDUID <uidvalidity> <uid-set>` arguments.
pub(crate) fn parse_append_uid(args: &str) -> Option<(u32, Vec<u32>)> {
    let (validity, set) = args.trim().split_once(' ')?;
    Some((validity.parse().ok()?, parse_uid_set(set.trim())?))
}

/// The Message-ID in a `HEADER.FIELDS (MESSAGE-ID)` section: the first
/// `Message-ID:` header, unfolded, without angle brackets.
pub(crate) fn message_id_of_header(section: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(section);
    let mut value: Option<String> = None;
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        match &mut value {
            None => {
                if let Some((name, rest)) = line.split_once(':')
                    && name.trim().eq_ignore_ascii_case("message-id")
                {
                    value = Some(rest.to_string());
                }
            }
            Some(v) => {
                if line.starts_with([' ', '\t']) {
                    v.push_str(line);
                } else {
                    break;
                }
            }
        }
    }
    let v = value?;
    let v = v.trim();
    let v = v.strip_prefix('<').unwrap_or(v);
    let v = match v.find('>') {
        Some(end) => &v[..end],
        None => v,
    };
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// The SASL PLAIN message `authzid NUL authcid NUL password`, base64.
pub(crate) fn sasl_plain(authzid: &str, authcid: &str, password: &str) -> String {
    let raw = format!("{authzid}\0{authcid}\0{password}");
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// The SASL XOAUTH2 initial response
/// `user=<user>^Aauth=Bearer <token>^A^A`, base64.
pub(crate) fn sasl_xoauth2(user: &str, token: &str) -> String {
    let raw = format!("user={user}\x01auth=Bearer {token}\x01\x01");
    base64::engine::general_purpose::STANDARD.encode(raw)
}
