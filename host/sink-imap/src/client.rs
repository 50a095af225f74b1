//! A small blocking IMAP4rev1 client for importing mail: connection (plain,
//! implicit TLS or STARTTLS), login, folder set-up, a Message-ID listing,
//! and APPEND as MULTIAPPEND (RFC 3502), pipelined LITERAL+ (RFC 7888)
//! singles or classic synchronizing literals.
//!
//! Responses are framed here (a line, and for every `{n}` at a line's end
//! `n` raw bytes and the rest of the response); status responses are parsed
//! by [`codec::parse_status`], data responses (FETCH, LIST) by `imap-proto`.
//! The client never interprets NO or BAD: callers decide what they mean.

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use imap_proto::{AttributeValue, MailboxDatum, Response};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::codec::{self, Args, Literal, Part, Status, StatusLine};
use connector_sink::Email;

/// Longest response line (without literals) accepted from a server.
const MAX_LINE: u64 = 1 << 20;
/// Largest literal accepted from a server. The client only reads short
/// ones (a Message-ID header section, a folder name).
const MAX_LITERAL: usize = 16 << 20;

/// The transport under the client.
pub(crate) enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    /// A recorded server's bytes; what the client sends is dropped.
    #[cfg(feature = "fuzzing")]
    Replay(io::Cursor<Vec<u8>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
            #[cfg(feature = "fuzzing")]
            Conn::Replay(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
            #[cfg(feature = "fuzzing")]
            Conn::Replay(_) => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
            #[cfg(feature = "fuzzing")]
            Conn::Replay(_) => Ok(()),
        }
    }
}

/// What went wrong on a connection. Any of these leaves the connection
/// unusable: the caller drops it and reconnects later.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// Reading or writing failed, timed out, or the server closed the
    /// connection.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server said BYE.
    #[error("the server closed the connection: {0}")]
    Bye(String),
    /// The server sent something this client cannot follow.
    #[error("unexpected response from the server: {0}")]
    Protocol(String),
    /// TLS could not be set up in a way retrying does not fix (certificate
    /// not trusted, name mismatch, no STARTTLS).
    #[error("{0}")]
    Tls(String),
}

/// How a connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Security {
    /// TLS from the first byte (port 993).
    Implicit,
    /// Plain text, then STARTTLS before anything else.
    StartTls,
    /// Plain text throughout (tests on loopback only).
    None,
}

/// Where and how to connect.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub tls: Option<Arc<ClientConfig>>,
    pub timeout: Duration,
}

/// A finished command: its tagged status and the untagged data responses
/// that came with it.
#[derive(Debug)]
pub(crate) struct Completion {
    pub status: StatusLine,
    pub untagged: Vec<Vec<u8>>,
    /// Codes of untagged status responses (`* OK [UIDVALIDITY 3]`): code
    /// atom and arguments.
    pub codes: Vec<(String, String)>,
}

/// A message's UID and its Message-ID (when it has one).
pub(crate) type UidMessageId = (u32, Option<String>);

/// One response as framed off the wire.
#[derive(Debug)]
enum Framed {
    Continue,
    /// A status response, tagged or untagged (`*`).
    Status(StatusLine),
    /// Any other untagged response, complete with its literals.
    Data(Vec<u8>),
}

/// A connected IMAP session.
pub(crate) struct Client {
    reader: BufReader<Conn>,
    out: Vec<u8>,
    next_tag: u64,
    caps: HashSet<String>,
    preauth: bool,
    /// Codes of untagged status responses since the last command began.
    codes: Vec<(String, String)>,
}

impl Client {
    /// Connects, secures the connection as configured, reads the greeting
    /// and learns the capabilities.
    pub fn connect(ep: &Endpoint) -> Result<Client, ClientError> {
        let tcp = tcp_connect(&ep.host, ep.port, ep.timeout)?;
        let conn = match ep.security {
            Security::Implicit => Conn::Tls(Box::new(tls_wrap(ep, tcp)?)),
            Security::StartTls | Security::None => Conn::Plain(tcp),
        };
        let mut client = Client::over(conn)?;
        if ep.security == Security::StartTls {
            client = client.starttls(ep)?;
        }
        if client.caps.is_empty() {
            client.refresh_capabilities()?;
        }
        Ok(client)
    }

    /// A session over an established transport: reads the greeting.
    pub fn over(conn: Conn) -> Result<Client, ClientError> {
        let mut client = Client {
            reader: BufReader::with_capacity(64 * 1024, conn),
            out: Vec::with_capacity(64 * 1024),
            next_tag: 0,
            caps: HashSet::new(),
            preauth: false,
            codes: Vec::new(),
        };
        match client.read_framed()? {
            Framed::Status(s) if s.tag == "*" && s.status == Status::Ok => {}
            Framed::Status(s) if s.tag == "*" && s.status == Status::Preauth => {
                client.preauth = true;
            }
            Framed::Status(s) if s.status == Status::Bye => {
                return Err(ClientError::Bye(s.describe()));
            }
            other => {
                return Err(ClientError::Protocol(format!(
                    "the greeting is not `* OK`: {other:?}"
                )));
            }
        }
        Ok(client)
    }

    fn starttls(mut self, ep: &Endpoint) -> Result<Client, ClientError> {
        if !self.caps.is_empty() && !self.has("STARTTLS") {
            // Some servers only list STARTTLS on request; ask once more.
            self.refresh_capabilities()?;
        }
        if self.caps.is_empty() {
            self.refresh_capabilities()?;
        }
        if !self.has("STARTTLS") {
            return Err(ClientError::Tls(
                "the server does not offer STARTTLS; use tls = \"implicit\" (port 993) or check the host and port".into(),
            ));
        }
        let done = self.command(Args::new("STARTTLS"))?;
        if done.status.status != Status::Ok {
            return Err(ClientError::Tls(format!(
                "the server refused STARTTLS: {}",
                done.status.describe()
            )));
        }
        if !self.reader.buffer().is_empty() {
            return Err(ClientError::Protocol(
                "the server sent data right after agreeing to STARTTLS (possible injection); refusing to go on".into(),
            ));
        }
        let Conn::Plain(tcp) = self.reader.into_inner() else {
            return Err(ClientError::Protocol("STARTTLS on a TLS connection".into()));
        };
        let conn = Conn::Tls(Box::new(tls_wrap(ep, tcp)?));
        let mut client = Client {
            reader: BufReader::with_capacity(64 * 1024, conn),
            out: Vec::with_capacity(64 * 1024),
            next_tag: self.next_tag,
            caps: HashSet::new(),
            preauth: false,
            codes: Vec::new(),
        };
        // Capabilities from before TLS must not be trusted.
        client.refresh_capabilities()?;
        Ok(client)
    }

    /// Changes the read and write timeout (e.g. a short one to log out).
    pub fn set_timeout(&mut self, timeout: Duration) {
        let socket = match self.reader.get_ref() {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref(),
            #[cfg(feature = "fuzzing")]
            Conn::Replay(_) => return,
        };
        let _ = socket.set_read_timeout(Some(timeout));
        let _ = socket.set_write_timeout(Some(timeout));
    }

    /// Whether the server advertises a capability (case-insensitive).
    pub fn has(&self, cap: &str) -> bool {
        self.caps.contains(&cap.to_ascii_uppercase())
    }

    /// Whether the greeting was PREAUTH (already logged in).
    pub fn is_preauthenticated(&self) -> bool {
        self.preauth
    }

    /// Asks for the capabilities again (after STARTTLS or login).
    pub fn refresh_capabilities(&mut self) -> Result<(), ClientError> {
        let done = self.command(Args::new("CAPABILITY"))?;
        if done.status.status != Status::Ok {
            return Err(ClientError::Protocol(format!(
                "CAPABILITY failed: {}",
                done.status.describe()
            )));
        }
        Ok(())
    }

    fn tag(&mut self) -> String {
        self.next_tag += 1;
        format!("a{}", self.next_tag)
    }

    /// Writes a command; synchronizing literals wait for the server's `+`.
    /// Returns the tag and, when the server ended the command before a
    /// synchronizing literal was sent, its completion.
    fn write_command(
        &mut self,
        args: &Args<'_>,
        untagged: &mut Vec<Vec<u8>>,
    ) -> Result<(String, Option<StatusLine>), ClientError> {
        let tag = self.tag();
        self.out.extend_from_slice(tag.as_bytes());
        self.out.push(b' ');
        for part in &args.parts {
            match part {
                Part::Text(t) => self.out.extend_from_slice(t),
                Part::Literal { bytes, non_sync } => {
                    self.out
                        .extend_from_slice(&codec::literal_header(bytes.len(), *non_sync));
                    if !*non_sync {
                        self.flush()?;
                        loop {
                            match self.read_framed()? {
                                Framed::Continue => break,
                                Framed::Status(s) if s.tag == tag => {
                                    return Ok((tag, Some(s)));
                                }
                                Framed::Status(s) if s.tag == "*" => {
                                    self.untagged_status(&s)?;
                                }
                                Framed::Status(s) => {
                                    return Err(ClientError::Protocol(format!(
                                        "completion of {} while waiting to send a literal for {tag}",
                                        s.tag
                                    )));
                                }
                                Framed::Data(d) => untagged.push(d),
                            }
                        }
                    }
                    match bytes {
                        Literal::Bytes(b) => self.write_bytes(b)?,
                        Literal::Email(email) => match email.in_memory() {
                            Some(b) => self.write_bytes(b)?,
                            None => {
                                // A spooled email goes from its file
                                // straight to the stream.
                                self.flush()?;
                                email.write_to(self.reader.get_mut())?;
                            }
                        },
                    }
                }
            }
        }
        self.out.extend_from_slice(b"\r\n");
        Ok((tag, None))
    }

    /// Buffers small writes; large ones go straight to the stream.
    fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        if bytes.len() >= 256 * 1024 {
            self.flush()?;
            self.reader.get_mut().write_all(bytes)?;
        } else {
            self.out.extend_from_slice(bytes);
            if self.out.len() >= 256 * 1024 {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ClientError> {
        if !self.out.is_empty() {
            let stream = self.reader.get_mut();
            stream.write_all(&self.out)?;
            self.out.clear();
        }
        self.reader.get_mut().flush()?;
        Ok(())
    }

    /// Runs one command to its completion.
    pub fn command(&mut self, args: Args<'_>) -> Result<Completion, ClientError> {
        self.codes.clear();
        let mut untagged = Vec::new();
        let (tag, early) = self.write_command(&args, &mut untagged)?;
        let status = match early {
            Some(status) => status,
            None => {
                self.flush()?;
                self.wait_for(&tag, &mut untagged)?
            }
        };
        Ok(Completion {
            status,
            untagged,
            codes: std::mem::take(&mut self.codes),
        })
    }

    /// Writes a command whose literals are all non-synchronizing, without
    /// waiting for its completion: the server works on it while more is
    /// sent. Returns its tag, for [`Client::finish`].
    pub fn send(&mut self, args: Args<'_>) -> Result<String, ClientError> {
        debug_assert!(args.parts.iter().all(|p| match p {
            Part::Literal { non_sync, .. } => *non_sync,
            Part::Text(_) => true,
        }));
        let (tag, _) = self.write_command(&args, &mut Vec::new())?;
        self.flush()?;
        Ok(tag)
    }

    /// Reads up to the completion of `tag`, a command [`Client::send`]
    /// wrote. Commands are finished in the order they were sent: a server
    /// that completes a later one first breaks the connection (the caller
    /// drops it and finds out what arrived).
    pub fn finish(&mut self, tag: &str) -> Result<Completion, ClientError> {
        self.codes.clear();
        let mut untagged = Vec::new();
        let status = self.wait_for(tag, &mut untagged)?;
        Ok(Completion {
            status,
            untagged,
            codes: std::mem::take(&mut self.codes),
        })
    }

    /// Sends several commands before reading any answer (only
    /// non-synchronizing literals allowed) and returns their completions
    /// in order.
    pub fn pipeline(&mut self, commands: Vec<Args<'_>>) -> Result<Vec<StatusLine>, ClientError> {
        self.codes.clear();
        let mut tags = Vec::with_capacity(commands.len());
        let mut untagged = Vec::new();
        for args in &commands {
            debug_assert!(args.parts.iter().all(|p| match p {
                Part::Literal { non_sync, .. } => *non_sync,
                Part::Text(_) => true,
            }));
            let (tag, _) = self.write_command(args, &mut untagged)?;
            tags.push(tag);
        }
        self.flush()?;
        let mut done: Vec<Option<StatusLine>> = vec![None; tags.len()];
        let mut remaining = tags.len();
        while remaining > 0 {
            match self.read_framed()? {
                Framed::Continue => {
                    return Err(ClientError::Protocol(
                        "a continuation request during pipelined commands".into(),
                    ));
                }
                Framed::Status(s) if s.tag == "*" => self.untagged_status(&s)?,
                Framed::Status(s) => {
                    let Some(i) = tags.iter().position(|t| *t == s.tag) else {
                        return Err(ClientError::Protocol(format!("unknown tag {}", s.tag)));
                    };
                    if done[i].replace(s).is_none() {
                        remaining -= 1;
                    }
                }
                Framed::Data(_) => {}
            }
        }
        Ok(done.into_iter().map(|s| s.expect("all done")).collect())
    }

    fn wait_for(
        &mut self,
        tag: &str,
        untagged: &mut Vec<Vec<u8>>,
    ) -> Result<StatusLine, ClientError> {
        loop {
            match self.read_framed()? {
                Framed::Status(s) if s.tag == tag => {
                    if s.code.as_deref() == Some("CAPABILITY") {
                        self.set_caps(&s.code_args);
                    }
                    return Ok(s);
                }
                Framed::Status(s) if s.tag == "*" => self.untagged_status(&s)?,
                Framed::Status(s) => {
                    return Err(ClientError::Protocol(format!(
                        "completion of unknown tag {} while waiting for {tag}",
                        s.tag
                    )));
                }
                Framed::Continue => {
                    return Err(ClientError::Protocol(format!(
                        "unexpected continuation request while waiting for {tag}"
                    )));
                }
                Framed::Data(d) => untagged.push(d),
            }
        }
    }

    fn untagged_status(&mut self, s: &StatusLine) -> Result<(), ClientError> {
        if s.status == Status::Bye {
            return Err(ClientError::Bye(s.describe()));
        }
        if let Some(code) = &s.code {
            if code == "CAPABILITY" {
                self.set_caps(&s.code_args);
            }
            self.codes.push((code.clone(), s.code_args.clone()));
        }
        Ok(())
    }

    fn set_caps(&mut self, list: &str) {
        self.caps = list
            .split_ascii_whitespace()
            .map(|c| c.to_ascii_uppercase())
            .collect();
    }

    /// Reads one complete response.
    fn read_framed(&mut self) -> Result<Framed, ClientError> {
        let mut buf = Vec::new();
        loop {
            let start = buf.len();
            let n = (&mut self.reader)
                .take(MAX_LINE)
                .read_until(b'\n', &mut buf)?;
            if n == 0 {
                return Err(ClientError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )));
            }
            if buf.last() != Some(&b'\n') {
                return Err(ClientError::Protocol(format!(
                    "a response line longer than {MAX_LINE} bytes"
                )));
            }
            match literal_at_end(&buf[start..]) {
                Some(len) if len > MAX_LITERAL => {
                    return Err(ClientError::Protocol(format!(
                        "a literal of {len} bytes is too large"
                    )));
                }
                Some(len) => {
                    // Memory grows with what arrives, not with what is announced.
                    let read = (&mut self.reader).take(len as u64).read_to_end(&mut buf)?;
                    if read < len {
                        return Err(ClientError::Io(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the server closed the connection inside a literal",
                        )));
                    }
                }
                None => break,
            }
        }
        if buf.starts_with(b"+") {
            return Ok(Framed::Continue);
        }
        if buf.starts_with(b"* ") {
            if let Some(s) = codec::parse_status(&buf) {
                return Ok(Framed::Status(s));
            }
            if buf.len() > 13 && buf[2..13].eq_ignore_ascii_case(b"CAPABILITY ") {
                let line = String::from_utf8_lossy(&buf[13..]).trim_end().to_string();
                self.set_caps(&line);
            }
            return Ok(Framed::Data(buf));
        }
        match codec::parse_status(&buf) {
            Some(s) => Ok(Framed::Status(s)),
            None => Err(ClientError::Protocol(
                String::from_utf8_lossy(&buf[..buf.len().min(200)])
                    .trim_end()
                    .to_string(),
            )),
        }
    }

    // ---- commands ----------------------------------------------------

    /// `LOGIN user password`.
    pub fn login(&mut self, user: &str, password: &str) -> Result<Completion, ClientError> {
        let lp = self.has("LITERAL+");
        self.command(
            Args::new("LOGIN")
                .string(user.as_bytes(), lp)
                .string(password.as_bytes(), lp),
        )
    }

    /// `AUTHENTICATE <mechanism>` with one client response (already
    /// base64), sent inline when the server has SASL-IR. Any further
    /// challenge (an error report, as XOAUTH2 sends) is answered with an
    /// empty response so the server finishes the exchange.
    pub fn authenticate(
        &mut self,
        mechanism: &str,
        response_b64: &str,
    ) -> Result<Completion, ClientError> {
        self.codes.clear();
        let tag = self.tag();
        let mut sent = false;
        if self.has("SASL-IR") {
            self.out.extend_from_slice(
                format!("{tag} AUTHENTICATE {mechanism} {response_b64}\r\n").as_bytes(),
            );
            sent = true;
        } else {
            self.out
                .extend_from_slice(format!("{tag} AUTHENTICATE {mechanism}\r\n").as_bytes());
        }
        self.flush()?;
        let mut untagged = Vec::new();
        loop {
            match self.read_framed()? {
                Framed::Continue => {
                    if sent {
                        self.out.extend_from_slice(b"\r\n");
                    } else {
                        self.out.extend_from_slice(response_b64.as_bytes());
                        self.out.extend_from_slice(b"\r\n");
                        sent = true;
                    }
                    self.flush()?;
                }
                Framed::Status(s) if s.tag == tag => {
                    if s.code.as_deref() == Some("CAPABILITY") {
                        self.set_caps(&s.code_args);
                    }
                    return Ok(Completion {
                        status: s,
                        untagged,
                        codes: std::mem::take(&mut self.codes),
                    });
                }
                Framed::Status(s) if s.tag == "*" => self.untagged_status(&s)?,
                Framed::Status(s) => {
                    return Err(ClientError::Protocol(format!("unknown tag {}", s.tag)));
                }
                Framed::Data(d) => untagged.push(d),
            }
        }
    }

    /// The hierarchy delimiter, from `LIST "" "INBOX"`.
    pub fn delimiter(&mut self) -> Result<Option<char>, ClientError> {
        let done = self.command(Args::new("LIST \"\" \"INBOX\""))?;
        if done.status.status != Status::Ok {
            return Err(ClientError::Protocol(format!(
                "LIST \"\" \"INBOX\" failed: {}",
                done.status.describe()
            )));
        }
        for data in &done.untagged {
            if let Ok((_, Response::MailboxData(MailboxDatum::List { delimiter, .. }))) =
                Response::from_bytes(data)
            {
                return Ok(delimiter.and_then(|d| d.chars().next()));
            }
        }
        // No INBOX listed (unusual): assume `/`, the common default.
        Ok(Some('/'))
    }

    /// Whether a mailbox exists (`LIST "" name`).
    pub fn exists(&mut self, name: &str) -> Result<bool, ClientError> {
        let done = self.command(Args::new("LIST \"\"").string(name.as_bytes(), false))?;
        Ok(done.status.status == Status::Ok
            && done.untagged.iter().any(|d| {
                matches!(
                    Response::from_bytes(d),
                    Ok((_, Response::MailboxData(MailboxDatum::List { .. })))
                )
            }))
    }

    /// `EXAMINE name`: the number of messages and the UIDVALIDITY.
    pub fn examine(&mut self, name: &str) -> Result<Result<(u32, u32), StatusLine>, ClientError> {
        let done = self.command(Args::new("EXAMINE").string(name.as_bytes(), false))?;
        if done.status.status != Status::Ok {
            return Ok(Err(done.status));
        }
        let mut exists = 0;
        for data in &done.untagged {
            if let Ok((_, Response::MailboxData(MailboxDatum::Exists(n)))) =
                Response::from_bytes(data)
            {
                exists = n;
            }
        }
        let validity = done
            .codes
            .iter()
            .find(|(code, _)| code == "UIDVALIDITY")
            .and_then(|(_, args)| args.trim().parse().ok())
            .unwrap_or(0);
        Ok(Ok((exists, validity)))
    }

    /// Leaves the selected mailbox (UNSELECT when offered, else CLOSE,
    /// which expunges nothing after EXAMINE).
    pub fn unselect(&mut self) -> Result<(), ClientError> {
        let cmd = if self.has("UNSELECT") {
            "UNSELECT"
        } else {
            "CLOSE"
        };
        self.command(Args::new(cmd))?;
        Ok(())
    }

    /// `UID FETCH <from>:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])` in
    /// the selected mailbox: each message's UID and Message-ID (without
    /// angle brackets), for UIDs from `from` on.
    pub fn message_ids(
        &mut self,
        from: u32,
    ) -> Result<Result<Vec<UidMessageId>, StatusLine>, ClientError> {
        let done = self.command(Args::new(&format!(
            "UID FETCH {from}:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
        )))?;
        if done.status.status != Status::Ok {
            return Ok(Err(done.status));
        }
        let mut out = Vec::with_capacity(done.untagged.len());
        for data in &done.untagged {
            match Response::from_bytes(data) {
                Ok((_, Response::Fetch(_, attrs))) => {
                    let mut uid = None;
                    let mut mid = None;
                    for attr in attrs {
                        match attr {
                            AttributeValue::Uid(u) => uid = Some(u),
                            AttributeValue::BodySection {
                                data: Some(bytes), ..
                            } => mid = codec::message_id_of_header(&bytes),
                            _ => {}
                        }
                    }
                    if let Some(uid) = uid.filter(|u| *u >= from) {
                        out.push((uid, mid));
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(ClientError::Protocol(format!(
                        "cannot parse a FETCH response: {}",
                        String::from_utf8_lossy(&data[..data.len().min(200)]).trim_end()
                    )));
                }
            }
        }
        Ok(Ok(out))
    }

    /// Appends emails; each becomes ` (\Seen) "<sent date>" {n+}` and
    /// its bytes.
    pub fn append_args<'a>(folder: &str, emails: &[&'a Email], non_sync: bool) -> Args<'a> {
        let mut args = Args::new("APPEND").string(folder.as_bytes(), false);
        for email in emails {
            args = args
                .raw(format!(" (\\Seen) {} ", codec::internal_date(email.sent_at)).as_bytes())
                .literal(Literal::Email(email), non_sync);
        }
        args
    }
}

/// The length of a literal announced at the end of a response line
/// (`... {123}\r\n`), if any.
fn literal_at_end(line: &[u8]) -> Option<usize> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    let digits = &line[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || digits.len() > 12 {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ClientError> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| {
            ClientError::Io(io::Error::new(
                e.kind(),
                format!("cannot resolve {host}: {e}"),
            ))
        })?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                return Ok(s);
            }
            Err(e) => last = io::Error::new(e.kind(), format!("cannot connect to {addr}: {e}")),
        }
    }
    Err(ClientError::Io(last))
}

fn tls_wrap(
    ep: &Endpoint,
    mut tcp: TcpStream,
) -> Result<StreamOwned<ClientConnection, TcpStream>, ClientError> {
    let config = ep
        .tls
        .clone()
        .ok_or_else(|| ClientError::Tls("TLS is not configured".into()))?;
    let name = ServerName::try_from(ep.host.clone()).map_err(|e| {
        ClientError::Tls(format!("`{}` is not a valid TLS server name: {e}", ep.host))
    })?;
    let mut conn = ClientConnection::new(config, name)
        .map_err(|e| ClientError::Tls(format!("cannot start TLS: {e}")))?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            return Err(classify_tls(e));
        }
    }
    Ok(StreamOwned::new(conn, tcp))
}

/// Certificate problems are configuration errors; anything else during
/// the handshake (resets, timeouts) may pass.
fn classify_tls(e: io::Error) -> ClientError {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(reason)) => ClientError::Tls(format!(
            "the server's TLS certificate is not accepted ({reason:?}); if it is signed by a private CA, set `ca-file` to that CA's PEM file"
        )),
        Some(
            other @ (rustls::Error::PeerIncompatible(_) | rustls::Error::NoCertificatesPresented),
        ) => ClientError::Tls(format!("TLS handshake failed: {other}")),
        _ => ClientError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// A client over a loopback connection whose server says `script`.
    fn client_of(script: &'static [u8]) -> Result<Client, ClientError> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let _ = stream.write_all(script);
        });
        Client::over(Conn::Plain(
            TcpStream::connect(("127.0.0.1", port)).unwrap(),
        ))
    }

    #[test]
    fn a_literal_announced_larger_than_the_limit_is_refused_before_reading_it() {
        // Found by the imap_responses fuzz target: the announced size was
        // allocated at once, up to 2 GiB, before any of it arrived.
        let err = client_of(b"* OK {900000000}\r\nshort")
            .err()
            .expect("refused");
        assert!(
            matches!(&err, ClientError::Protocol(m) if m.contains("900000000 bytes is too large")),
            "{err}"
        );
    }

    #[test]
    fn a_literal_cut_short_by_a_closed_connection_is_an_error() {
        let err = client_of(b"* OK {10}\r\nshort").err().expect("an error");
        assert!(
            matches!(&err, ClientError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof),
            "{err}"
        );
    }
}
