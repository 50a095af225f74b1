//! A local stand-in for Microsoft Graph (Exchange Online mail) and its
//! token endpoint, over real HTTP on 127.0.0.1, for the Graph sink's
//! tests. It is written from Microsoft's documentation, as strict as
//! Exchange where the documentation says what Exchange refuses:
//!
//! - client-credentials tokens for `https://graph.microsoft.com/.default`
//!   (the identity platform's rules: `crate::identity_platform`);
//!   401 `InvalidAuthenticationToken` for a missing or revoked token;
//! - 403 `ErrorAccessDenied` for every mailbox when the app lacks
//!   `Mail.ReadWrite` ("Access is denied. Check credentials and try
//!   again.") and for a mailbox an application access policy excludes
//!   ("Access to OData is disabled.", as "Limiting application permissions
//!   to specific Exchange Online mailboxes" shows); 404 `ErrorInvalidUser`
//!   for an unknown mailbox; mailbox addresses percent-decoded from the
//!   path;
//! - requests over 4 MB answered 413 ("Microsoft Graph service limits");
//! - the Outlook service's limits per app and mailbox ("Microsoft Graph
//!   service-specific throttling limits"): more than 4 requests in flight
//!   answered 429 `ApplicationThrottled` "Application is over its
//!   MailboxConcurrency limit." with `Retry-After`, and more than 10,000
//!   requests in 10 minutes answered 429 `ApplicationThrottled` with a
//!   `Retry-After` until the window ends (both counts and the window
//!   configurable, [`GraphOptions::mailbox_concurrency`] and
//!   [`GraphOptions::mailbox_requests`]); each request takes
//!   [`GraphOptions::latency`], concurrently with the others, like a
//!   remote service;
//! - "Create message": known writable properties only, extended
//!   properties in Graph's id format, a message without `MSGFLAG_UNSENT`
//!   is a received (non-draft) item, and one created without a Message-ID
//!   gets Exchange's own;
//! - "Update message": `internetMessageId`, `body`, `subject` and `replyTo`
//!   are updatable only while `isDraft`, and the Message-ID and flag
//!   properties (`0x1035`, `0x0E07`) of a received item neither: 400
//!   `ErrorInvalidPropertySet`;
//! - attachments ("Attach large files to Outlook messages"): inline or
//!   `POST …/attachments` only under 3 MB; upload sessions only from 3 MB
//!   (`ErrorAttachmentSizeShouldNotBeLessThanMinimumSize`) to 150 MB, not
//!   past the mailbox's message size limit (`ErrorMessageSizeExceeded`,
//!   35 MB by default); upload PUTs without `Authorization`, with
//!   `Content-Type: application/octet-stream`, a `Content-Range` that
//!   starts where `nextExpectedRanges` says, at most 4 MB each; the last
//!   one answered 201 with `Location`;
//! - throttling ("Microsoft Graph throttling limits"): every n-th request
//!   is answered, in turn, 429 with `Retry-After`, 429 without, 503 with
//!   `Retry-After` and 504 without — the 504 after doing what was asked,
//!   as a gateway timing out would; a request for a mailbox that comes
//!   while its `Retry-After` runs is throttled again;
//! - a folder deleted meanwhile answers 404 `ErrorItemNotFound`.
//!
//! Whatever breaks a rule is answered as Exchange would and recorded in
//! [`GraphServer::violations`] (expected refusals — unknown or excluded
//! mailboxes, throttling, 409 for an existing folder, expired tokens,
//! deleted folders — are not violations); the tests assert there are
//! none, and read back what was stored.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::identity_platform::{TokenRules, Tokens};

/// Graph's cap on a request's size (4 MB).
pub const REQUEST_MAX: usize = 4 << 20;
/// Attachments under this size go inline or by `POST …/attachments`; from
/// this size on, by upload session (3 MB).
pub const SMALL_ATTACHMENT_LIMIT: usize = 3_000_000;
/// Largest attachment an upload session takes (150 MB).
pub const UPLOAD_SESSION_MAX: usize = 150_000_000;
/// Exchange Online's default message size limit (35 MB).
pub const DEFAULT_MESSAGE_LIMIT: usize = 35_000_000;

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct GraphOptions {
    /// Mailboxes that exist.
    pub users: Vec<String>,
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: String,
    /// Throttle every n-th Graph request (cycling through 429 with and
    /// without `Retry-After: 1`, 503 with it and 504 without); 0: never.
    pub throttle_every: usize,
    /// Largest page of a message list.
    pub page_size: usize,
    /// Whether the app has the `Mail.ReadWrite` application permission.
    pub mail_read_write: bool,
    /// Mailboxes an application access policy keeps the app out of.
    pub outside_policy: Vec<String>,
    /// The mailboxes' message size limit, attachments included.
    pub message_limit: usize,
    /// How long each Graph request takes; requests in flight wait side
    /// by side (one thread per connection), as at a remote service.
    pub latency: Duration,
    /// Most requests in flight per mailbox (Exchange: 4); more are answered
    /// 429 `MailboxConcurrency` and recorded as violations.
    pub mailbox_concurrency: usize,
    /// Most requests per mailbox in one [`GraphOptions::mailbox_window`]
    /// (Exchange: 10,000); more are answered 429 with a `Retry-After` until
    /// the window ends, and recorded as violations.
    pub mailbox_requests: usize,
    /// The rate window: it opens at a mailbox's first request and, once
    /// over, at its next one (Exchange: 10 minutes).
    pub mailbox_window: Duration,
}

/// Exchange Online's limit of requests in flight per app and mailbox.
pub const MAILBOX_CONCURRENCY: usize = 4;
/// Exchange Online's limit of requests per app and mailbox in
/// [`MAILBOX_WINDOW`].
pub const MAILBOX_REQUESTS: usize = 10_000;
/// Exchange Online's rate window (10 minutes).
pub const MAILBOX_WINDOW: Duration = Duration::from_secs(600);

impl GraphOptions {
    /// A tenant with these mailboxes and app, the app granted
    /// `Mail.ReadWrite` for all of them, no throttling, pages of 50,
    /// Exchange's default message size limit.
    pub fn new(users: &[&str], client_id: &str, client_secret: &str) -> GraphOptions {
        GraphOptions {
            users: users.iter().map(|u| u.to_string()).collect(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            throttle_every: 0,
            page_size: 50,
            mail_read_write: true,
            outside_policy: Vec::new(),
            message_limit: DEFAULT_MESSAGE_LIMIT,
            latency: Duration::from_millis(2),
            mailbox_concurrency: MAILBOX_CONCURRENCY,
            mailbox_requests: MAILBOX_REQUESTS,
            mailbox_window: MAILBOX_WINDOW,
        }
    }
}

/// An attachment as stored.
#[derive(Debug, Clone)]
pub struct StoredAttachment {
    /// Its name.
    pub name: String,
    /// Its content type.
    pub content_type: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Whether it came through an upload session.
    pub uploaded: bool,
}

/// A message as stored.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Graph's id.
    pub id: String,
    /// The folder's path from the mailbox root, e.g. `Inbox/Symphony`.
    pub folder: String,
    /// Graph's id of the folder.
    pub folder_id: String,
    /// The create request's JSON (without attachments).
    pub json: Value,
    /// Extended property id → value, after any PATCH.
    pub properties: BTreeMap<String, String>,
    /// The Message-ID with its brackets (Exchange's own when none was
    /// given).
    pub internet_message_id: String,
    /// Whether Exchange holds it as a draft.
    pub is_draft: bool,
    /// Its attachments.
    pub attachments: Vec<StoredAttachment>,
}

impl StoredMessage {
    /// Bytes of its attachments.
    fn size(&self) -> usize {
        self.attachments.iter().map(|a| a.bytes.len()).sum()
    }
}

#[derive(Debug)]
struct Folder {
    id: String,
    parent: Option<String>,
    name: String,
}

#[derive(Debug)]
struct Upload {
    mailbox: String,
    message: String,
    name: String,
    content_type: String,
    size: usize,
    received: Vec<u8>,
}

/// What the server counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Graph requests (not tokens, not upload PUTs).
    pub requests: usize,
    /// Of which answered 429, 503 or 504 on purpose.
    pub throttled: usize,
    /// Of which answered 429 for a mailbox's limits (concurrency or rate).
    pub over_limits: usize,
    /// Tokens issued.
    pub tokens: usize,
    /// Completed upload sessions.
    pub uploads: usize,
    /// Messages deleted.
    pub deleted: usize,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    tokens: Tokens,
    counts: Counts,
    folders: HashMap<String, Vec<Folder>>,
    messages: HashMap<String, Vec<StoredMessage>>,
    uploads: HashMap<String, Upload>,
    in_flight: HashMap<String, usize>,
    max_in_flight: usize,
    /// Mailbox → when its rate window opened and the requests counted in it.
    windows: HashMap<String, (Instant, usize)>,
    /// Throttling answers given in turn so far.
    turns: usize,
    /// Mailbox → (when it was throttled, until when).
    quiet: HashMap<String, (Instant, Instant)>,
    violations: Vec<String>,
    /// Answer nothing (close connections) from now on.
    down: bool,
    /// Go down once this many upload sessions are complete.
    down_after_uploads: Option<usize>,
    /// How upload sessions break (a faulty server, not Exchange's rules).
    broken_uploads: Option<BrokenUpload>,
}

/// How a broken server answers upload PUTs (for tests of a client that
/// must not trust it blindly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokenUpload {
    /// Takes every byte but answers the last PUT 200 without ranges,
    /// never 201 Created.
    NeverCreated,
    /// Stores nothing and asks for the bytes from 0 again after each PUT.
    AsksFromZeroAgain,
}

impl State {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:08}", self.next_id)
    }

    /// An answer to a request that breaks a documented rule: recorded.
    fn refuse(&mut self, status: u16, code: &str, message: &str) -> Answer {
        self.violations.push(format!("{status} {code}: {message}"));
        error(status, code, message)
    }
}

/// The running server; it stops with the test process.
pub struct GraphServer {
    origin: String,
    options: GraphOptions,
    state: Arc<Mutex<State>>,
}

/// HTTP headers: (name, value).
pub type Headers = Vec<(String, String)>;

/// Status, JSON body (`Null`: none) and extra headers.
type Answer = (u16, Value, Headers);

fn error(status: u16, code: &str, message: &str) -> Answer {
    (
        status,
        json!({"error": {"code": code, "message": message}}),
        Vec::new(),
    )
}

fn not_found() -> Answer {
    error(
        404,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

/// Message properties "Create message" lets an app write.
const CREATE_FIELDS: [&str; 17] = [
    "bccRecipients",
    "body",
    "categories",
    "ccRecipients",
    "from",
    "importance",
    "inferenceClassification",
    "internetMessageHeaders",
    "internetMessageId",
    "isRead",
    "replyTo",
    "sender",
    "subject",
    "toRecipients",
    "singleValueExtendedProperties",
    "multiValueExtendedProperties",
    "attachments",
];
/// Message properties "Update message" lets an app change.
const UPDATE_FIELDS: [&str; 18] = [
    "bccRecipients",
    "body",
    "categories",
    "ccRecipients",
    "flag",
    "from",
    "importance",
    "inferenceClassification",
    "internetMessageId",
    "isDeliveryReceiptRequested",
    "isRead",
    "isReadReceiptRequested",
    "multiValueExtendedProperties",
    "replyTo",
    "sender",
    "singleValueExtendedProperties",
    "subject",
    "toRecipients",
];
/// Of those, the ones updatable only while `isDraft`.
const DRAFT_ONLY_FIELDS: [&str; 4] = ["body", "internetMessageId", "replyTo", "subject"];
/// Extended properties Exchange does not let an app change on a saved,
/// received item: the Message-ID and the message flags.
const FROZEN_PROPERTIES: [&str; 2] = ["0x1035", "0x0e07"];
/// MAPI property types Graph accepts in an extended property's id.
const PROPERTY_TYPES: [&str; 12] = [
    "Binary",
    "Boolean",
    "Currency",
    "CLSID",
    "Double",
    "Float",
    "Integer",
    "Long",
    "Object",
    "Short",
    "String",
    "SystemTime",
];

impl GraphServer {
    /// Starts the server with these options.
    pub fn start(options: GraphOptions) -> GraphServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let origin = format!("http://{}", listener.local_addr().expect("an address"));
        let mut state = State {
            tokens: Tokens::new(TokenRules::new(
                &options.client_id,
                &options.client_secret,
                "https://graph.microsoft.com/.default",
            )),
            ..State::default()
        };
        for user in &options.users {
            let root = state.id("root-");
            let inbox = state.id("inbox-");
            state.folders.insert(
                user.clone(),
                vec![
                    Folder {
                        id: root.clone(),
                        parent: None,
                        name: String::new(),
                    },
                    Folder {
                        id: inbox,
                        parent: Some(root),
                        name: "Inbox".into(),
                    },
                ],
            );
        }
        let state = Arc::new(Mutex::new(state));
        {
            let state = state.clone();
            let options = options.clone();
            let origin = origin.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let state = state.clone();
                    let options = options.clone();
                    let origin = origin.clone();
                    std::thread::spawn(move || serve(stream, &state, &options, &origin));
                }
            });
        }
        GraphServer {
            origin,
            options,
            state,
        }
    }

    /// `graph-url` for the sink.
    pub fn graph_url(&self) -> String {
        format!("{}/graph", self.origin)
    }

    /// `login-url` for the sink.
    pub fn login_url(&self) -> String {
        format!("{}/login", self.origin)
    }

    /// A connector file's `[sink]` table for this server: tenant
    /// `contoso.example`, the app `client_id`, its secret under the name
    /// `graph-client-secret`, then `extra` lines.
    pub fn sink_table(&self, client_id: &str, extra: &str) -> String {
        format!(
            r#"[sink]
kind = "graph"
tenant = "contoso.example"
client-id = "{client_id}"
client-secret-secret = "graph-client-secret"
graph-url = "{}"
login-url = "{}"
{extra}"#,
            self.graph_url(),
            self.login_url()
        )
    }

    /// The options it runs with.
    pub fn options(&self) -> &GraphOptions {
        &self.options
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Requests that broke a rule.
    pub fn violations(&self) -> Vec<String> {
        let s = self.state();
        let mut all = s.tokens.violations().to_vec();
        all.extend(s.violations.iter().cloned());
        all
    }

    /// The messages of a mailbox.
    pub fn messages(&self, mailbox: &str) -> Vec<StoredMessage> {
        self.state()
            .messages
            .get(mailbox)
            .cloned()
            .unwrap_or_default()
    }

    /// Most requests ever in flight for one mailbox at once.
    pub fn max_in_flight_per_mailbox(&self) -> usize {
        self.state().max_in_flight
    }

    /// What the server counted so far.
    pub fn counts(&self) -> Counts {
        let s = self.state();
        Counts {
            tokens: s.tokens.issued(),
            ..s.counts
        }
    }

    /// Makes every token issued so far invalid (as an expiry would).
    pub fn revoke_tokens(&self) {
        self.state().tokens.revoke_all();
    }

    /// Issues a token as the token endpoint would, for requests a test
    /// sends itself.
    pub fn token(&self) -> String {
        self.state().tokens.issue()
    }

    /// Deletes a folder (given as its path, e.g. `Inbox/Symphony`) with
    /// its messages, as a user would.
    pub fn delete_folder(&self, mailbox: &str, path: &str) {
        let mut s = self.state();
        let Some(id) = s.folders.get(mailbox).and_then(|folders| {
            folders
                .iter()
                .find(|f| folder_path(folders, &f.id) == path)
                .map(|f| f.id.clone())
        }) else {
            panic!("{mailbox} has no folder {path}");
        };
        s.folders
            .get_mut(mailbox)
            .expect("found above")
            .retain(|f| f.id != id);
        if let Some(m) = s.messages.get_mut(mailbox) {
            m.retain(|m| m.folder_id != id);
        }
    }

    /// Stops answering (every connection is closed unanswered) as soon as
    /// `n` more upload sessions are complete: a crash between the uploads
    /// and what follows them.
    pub fn go_down_after_uploads(&self, n: usize) {
        let mut s = self.state();
        s.down_after_uploads = Some(s.counts.uploads + n);
    }

    /// Breaks upload sessions from now on (`None`: mends them).
    pub fn break_uploads(&self, how: Option<BrokenUpload>) {
        self.state().broken_uploads = how;
    }

    /// Answers again.
    pub fn come_back(&self) {
        let mut s = self.state();
        s.down = false;
        s.down_after_uploads = None;
    }

    /// Sends one request to the server (path from the origin, e.g.
    /// `/graph/v1.0/users/…`) and returns its status, JSON body and
    /// headers: for tests of the server's own rules.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Value, Headers) {
        let address = self.origin.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).expect("connecting to the Graph server");
        let host = [("Host", address)];
        let head = head(
            &format!("{method} {path} HTTP/1.1"),
            body.len(),
            host.iter().chain(headers).copied(),
        );
        stream.write_all(head.as_bytes()).expect("sending");
        stream.write_all(body).expect("sending");
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).expect("a status line");
        let status: u16 = status
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        let (headers, text) = read_head_and_body(&mut reader).expect("an answer");
        let value = serde_json::from_slice(&text).unwrap_or(Value::Null);
        (status, value, headers)
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// A parsed HTTP/1.1 request.
struct Request {
    /// When its first line came.
    arrived: Instant,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request's or answer's head: its first line, `Content-Length` and
/// these headers.
fn head<'a>(
    first: &str,
    length: usize,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut head = format!("{first}\r\nContent-Length: {length}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head + "\r\n"
}

/// Reads the headers and the body (of `Content-Length`) that follow a
/// request or status line; `None` when the connection ends first.
fn read_head_and_body(reader: &mut BufReader<TcpStream>) -> Option<(Headers, Vec<u8>)> {
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((headers, body))
}

/// Reads one request; `None` at the end of the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let arrived = Instant::now();
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let (headers, body) = read_head_and_body(reader)?;
    Some(Request {
        arrived,
        method,
        target,
        headers,
        body,
    })
}

/// Serves one connection, request after request (keep-alive).
fn serve(stream: TcpStream, state: &Mutex<State>, options: &GraphOptions, origin: &str) {
    let mut writer = stream.try_clone().expect("cloning a socket");
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader) {
        if lock(state).down {
            return;
        }
        let (status, value, headers) = handle(&request, state, options, origin);
        if lock(state).down {
            // Gone down while handling: the answer is lost.
            return;
        }
        let text = if value.is_null() {
            String::new()
        } else {
            value.to_string()
        };
        let json = [("Content-Type", "application/json")];
        let head = head(
            &format!("HTTP/1.1 {status} X"),
            text.len(),
            json.into_iter()
                .chain(headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(text.as_bytes()).is_err()
        {
            return;
        }
    }
}

/// The request's path segments, percent-decoded.
fn segments(url: &url::Url) -> Vec<String> {
    url.path_segments()
        .map(|s| {
            s.map(|seg| {
                percent_encoding::percent_decode_str(seg)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect()
        })
        .unwrap_or_default()
}

fn handle(request: &Request, state: &Mutex<State>, options: &GraphOptions, origin: &str) -> Answer {
    let Ok(url) = url::Url::parse(&format!("http://x{}", request.target)) else {
        return lock(state).refuse(400, "BadRequest", "The request URL is malformed.");
    };
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let path = segments(&url);
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    match path.as_slice() {
        ["login", tenant, "oauth2", "v2.0", "token"] if request.method == "POST" => {
            let (status, value) =
                lock(state)
                    .tokens
                    .answer(tenant, request.header("Content-Type"), &request.body);
            (status, value, Vec::new())
        }
        ["upload", id] if request.method == "PUT" => upload(&mut lock(state), id, request),
        ["graph", "v1.0", "users", user, rest @ ..] => {
            let user = user.to_string();
            let throttled = {
                let mut s = lock(state);
                s.counts.requests += 1;
                let n = s.in_flight.entry(user.clone()).or_default();
                *n += 1;
                let now = *n;
                s.max_in_flight = s.max_in_flight.max(now);
                over_limits(&mut s, options, &user, now, request.arrived)
            };
            // Let concurrent requests overlap, as a real server would.
            std::thread::sleep(options.latency);
            let answer = throttled.unwrap_or_else(|| {
                let route = Route {
                    options,
                    origin,
                    user: &user,
                    rest,
                    query: &query,
                };
                mailbox_request(state, route, request)
            });
            if let Some(n) = lock(state).in_flight.get_mut(&user) {
                *n -= 1;
            }
            answer
        }
        _ => error(404, "ResourceNotFound", "no such resource"),
    }
}

/// The 429 for a request past the mailbox's limits of concurrency
/// (`in_flight` counts it) or rate, recorded as a violation; `None` within
/// them. Requests refused here do not count toward the rate.
fn over_limits(
    s: &mut State,
    options: &GraphOptions,
    user: &str,
    in_flight: usize,
    arrived: Instant,
) -> Option<Answer> {
    if in_flight > options.mailbox_concurrency {
        s.violations
            .push(format!("{in_flight} requests in flight for {user}"));
        s.counts.over_limits += 1;
        return Some(throttled(MAILBOX_CONCURRENCY_MESSAGE, 1));
    }
    let window = options.mailbox_window;
    let (opened, used) = s.windows.entry(user.to_string()).or_insert((arrived, 0));
    if arrived >= *opened + window {
        (*opened, *used) = (arrived, 0);
    }
    if *used < options.mailbox_requests {
        *used += 1;
        return None;
    }
    let left = (*opened + window).saturating_duration_since(arrived);
    let retry_after = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    s.violations.push(format!(
        "request {} of {user} in a window of {} allowed",
        options.mailbox_requests + 1,
        options.mailbox_requests
    ));
    s.counts.over_limits += 1;
    Some(throttled(
        "Application is over its request limit for this mailbox.",
        retry_after,
    ))
}

/// What Exchange answers past a mailbox's concurrency limit.
const MAILBOX_CONCURRENCY_MESSAGE: &str = "Application is over its MailboxConcurrency limit.";

/// A 429 `ApplicationThrottled` saying `message`, with `Retry-After`.
fn throttled(message: &str, retry_after: u64) -> Answer {
    let mut a = error(429, "ApplicationThrottled", message);
    a.2.push(("Retry-After".into(), retry_after.to_string()));
    a
}

/// How late after a 429 a request of the same mailbox may still arrive
/// without counting as sent into the Retry-After (1 s here): one that a
/// sink's other connection sent just before it read the 429, delayed by a
/// busy machine. A sink that ignored Retry-After would still land most of
/// its requests in the remaining 750 ms.
pub const IN_FLIGHT_SLACK: Duration = Duration::from_millis(250);

/// Throttles the request when its turn has come or its mailbox is still
/// held off; returns the answer and whether the request is still to be
/// done first (a 504).
fn throttle(
    s: &mut State,
    options: &GraphOptions,
    user: &str,
    request: &Request,
) -> Option<(Answer, bool)> {
    let arrived = request.arrived;
    let now = Instant::now();
    if let Some(&(at, until)) = s.quiet.get(user)
        && arrived < until
    {
        // In flight while the 429 went out is fine; sent after it is not.
        if arrived > at + IN_FLIGHT_SLACK {
            s.violations.push(format!(
                "{} {} came {} ms into the Retry-After of {user}",
                request.method,
                request.target,
                (arrived - at).as_millis()
            ));
        }
        s.counts.throttled += 1;
        return Some((throttled(MAILBOX_CONCURRENCY_MESSAGE, 1), false));
    }
    if options.throttle_every == 0 || !s.counts.requests.is_multiple_of(options.throttle_every) {
        return None;
    }
    let turn = s.turns % 4;
    s.turns += 1;
    s.counts.throttled += 1;
    let (mut a, retry_after, apply) = match turn {
        0 => (
            error(429, "ApplicationThrottled", "Too many requests."),
            true,
            false,
        ),
        1 => (
            error(429, "ApplicationThrottled", "Too many requests."),
            false,
            false,
        ),
        2 => (
            error(503, "ServiceUnavailable", "The service is busy."),
            true,
            false,
        ),
        _ => (
            error(504, "GatewayTimeout", "The gateway timed out."),
            false,
            true,
        ),
    };
    if retry_after {
        a.2.push(("Retry-After".into(), "1".into()));
        s.quiet
            .insert(user.to_string(), (now, now + Duration::from_secs(1)));
    }
    Some((a, apply))
}

/// A Graph request for one mailbox, as routed.
#[derive(Clone, Copy)]
struct Route<'a> {
    options: &'a GraphOptions,
    origin: &'a str,
    user: &'a str,
    /// The path after `/users/{user}`.
    rest: &'a [&'a str],
    query: &'a HashMap<String, String>,
}

fn mailbox_request(state: &Mutex<State>, route: Route<'_>, request: &Request) -> Answer {
    let Route {
        options,
        user,
        rest,
        ..
    } = route;
    // Big bodies are parsed and checked before taking the lock, so that
    // they hold up no other request.
    let json = if request.body.is_empty() {
        Ok(Value::Null)
    } else if request.header("Content-Type") != Some("application/json") {
        Err((
            415,
            "UnsupportedMediaType",
            "A JSON body needs Content-Type: application/json.",
        ))
    } else {
        serde_json::from_slice(&request.body)
            .map_err(|_| (400, "BadRequest", "Unable to read JSON request payload."))
    };
    let pre = json
        .as_ref()
        .map_or(Precheck::None, |j| precheck(&request.method, rest, j));
    let mut s = lock(state);
    let valid = request
        .header("Authorization")
        .and_then(|b| b.strip_prefix("Bearer "))
        .is_some_and(|t| s.tokens.accepts(t));
    if !valid {
        return error(
            401,
            "InvalidAuthenticationToken",
            "Access token has expired or is not yet valid.",
        );
    }
    if request.body.len() > REQUEST_MAX {
        return s.refuse(
            413,
            "RequestBodyTooLarge",
            &format!(
                "The request of {} bytes is larger than 4 MB.",
                request.body.len()
            ),
        );
    }
    let throttled = throttle(&mut s, options, user, request);
    if let Some((answer, false)) = throttled {
        return answer;
    }
    if !options.mail_read_write {
        return error(
            403,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
        );
    }
    if !options.users.iter().any(|u| u == user) {
        return error(
            404,
            "ErrorInvalidUser",
            &format!("The requested user '{user}' is invalid."),
        );
    }
    if options.outside_policy.iter().any(|u| u == user) {
        return error(403, "ErrorAccessDenied", "Access to OData is disabled.");
    }
    let json = match json {
        Ok(json) => json,
        Err((status, code, message)) => return s.refuse(status, code, message),
    };
    let answer = mail(&mut s, route, &request.method, &json, pre);
    match throttled {
        // Done, but the answer timed out on the way back.
        Some((timeout, true)) => timeout,
        _ => answer,
    }
}

/// The id of a well-known folder name or folder id of `user`.
fn folder_id(s: &State, user: &str, name: &str) -> Option<String> {
    let folders = &s.folders[user];
    match name {
        "inbox" => folders
            .iter()
            .find(|f| f.name == "Inbox")
            .map(|f| f.id.clone()),
        "msgfolderroot" => folders
            .iter()
            .find(|f| f.parent.is_none())
            .map(|f| f.id.clone()),
        id => folders.iter().find(|f| f.id == id).map(|f| f.id.clone()),
    }
}

fn mail(s: &mut State, route: Route<'_>, method: &str, json: &Value, pre: Precheck) -> Answer {
    let Route {
        options,
        origin,
        user,
        rest,
        query,
    } = route;
    match (method, rest) {
        ("GET", ["mailFolders", parent, "childFolders"]) => {
            let Some(parent) = folder_id(s, user, parent) else {
                return not_found();
            };
            let filter = query.get("$filter").cloned().unwrap_or_default();
            let Some(name) = filter
                .strip_prefix("displayName eq '")
                .and_then(|f| f.strip_suffix('\''))
                .map(|n| n.replace("''", "'"))
            else {
                return s.refuse(
                    400,
                    "ErrorInvalidUrlQueryFilter",
                    &format!("The query filter {filter:?} is invalid."),
                );
            };
            let value: Vec<Value> = s.folders[user]
                .iter()
                .filter(|f| {
                    f.parent.as_deref() == Some(parent.as_str())
                        && f.name.eq_ignore_ascii_case(&name)
                })
                .map(|f| json!({"id": f.id, "displayName": f.name}))
                .collect();
            (200, json!({"value": value}), Vec::new())
        }
        ("POST", ["mailFolders", parent, "childFolders"]) => {
            let Some(parent) = folder_id(s, user, parent) else {
                return not_found();
            };
            let Some(name) = json["displayName"].as_str().map(str::to_string) else {
                return s.refuse(400, "ErrorInvalidRequest", "displayName is required");
            };
            if s.folders[user].iter().any(|f| {
                f.parent.as_deref() == Some(parent.as_str()) && f.name.eq_ignore_ascii_case(&name)
            }) {
                return error(
                    409,
                    "ErrorFolderExists",
                    "A folder with the specified name already exists.",
                );
            }
            let id = s.id("folder-");
            s.folders.get_mut(user).expect("a user").push(Folder {
                id: id.clone(),
                parent: Some(parent),
                name: name.clone(),
            });
            (201, json!({"id": id, "displayName": name}), Vec::new())
        }
        ("GET", ["mailFolders", folder, "messages"]) => {
            let Some(folder) = folder_id(s, user, folder) else {
                return not_found();
            };
            list(s, options, origin, user, &folder, query)
        }
        ("POST", ["mailFolders", folder, "messages"]) => {
            let Some(folder) = folder_id(s, user, folder) else {
                return not_found();
            };
            let Precheck::Message(checked) = pre else {
                unreachable!("prechecked as a message")
            };
            create(s, options, user, &folder, checked)
        }
        ("PATCH", ["messages", id]) => update(s, user, id, json),
        ("DELETE", ["messages", id]) => {
            let Some(messages) = s.messages.get_mut(user) else {
                return not_found();
            };
            let before = messages.len();
            messages.retain(|m| m.id != *id);
            if messages.len() == before {
                return not_found();
            }
            s.counts.deleted += 1;
            (204, Value::Null, Vec::new())
        }
        ("POST", ["messages", id, "attachments"]) => {
            let Precheck::Attachment(checked) = pre else {
                unreachable!("prechecked as an attachment")
            };
            let attachment = match checked {
                Ok(a) => a,
                Err((code, problem)) => return s.refuse(400, code, &problem),
            };
            let Some(m) = message_mut(s, user, id) else {
                return not_found();
            };
            if m.size() + attachment.bytes.len() > options.message_limit {
                return error(
                    400,
                    "ErrorMessageSizeExceeded",
                    "The message exceeds the maximum supported size.",
                );
            }
            m.attachments.push(attachment);
            let aid = s.id("att-");
            (201, json!({"id": aid}), Vec::new())
        }
        ("POST", ["messages", id, "attachments", "createUploadSession"]) => {
            create_upload_session(s, options, origin, user, id, json)
        }
        _ => s.refuse(
            400,
            "BadRequest",
            &format!("Unsupported request {method} {rest:?}"),
        ),
    }
}

fn message_mut<'a>(s: &'a mut State, user: &str, id: &str) -> Option<&'a mut StoredMessage> {
    s.messages
        .get_mut(user)
        .and_then(|m| m.iter_mut().find(|m| m.id == id))
}

/// A folder's messages, paged, with `$select=internetMessageId` and
/// `$expand=singleValueExtendedProperties($filter=id eq '…')`.
fn list(
    s: &mut State,
    options: &GraphOptions,
    origin: &str,
    user: &str,
    folder: &str,
    query: &HashMap<String, String>,
) -> Answer {
    let expanded = match query.get("$expand") {
        None => None,
        Some(e) => match e
            .strip_prefix("singleValueExtendedProperties($filter=id eq '")
            .and_then(|r| r.strip_suffix("')"))
        {
            Some(id) if property_id_ok(id) => Some(id.to_string()),
            _ => {
                return s.refuse(
                    400,
                    "ErrorInvalidProperty",
                    &format!("$expand={e} is not an extended property filter"),
                );
            }
        },
    };
    let top: usize = query.get("$top").and_then(|t| t.parse().ok()).unwrap_or(10);
    let skip: usize = query.get("$skip").and_then(|t| t.parse().ok()).unwrap_or(0);
    let page = top.min(options.page_size);
    let all: Vec<&StoredMessage> = s
        .messages
        .get(user)
        .map(|m| m.iter().filter(|m| m.folder_id == folder).collect())
        .unwrap_or_default();
    let value: Vec<Value> = all
        .iter()
        .skip(skip)
        .take(page)
        .map(|m| {
            let mut v = json!({"id": m.id, "internetMessageId": m.internet_message_id});
            if let Some(want) = &expanded
                && let Some((id, value)) = m
                    .properties
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(want))
            {
                v["singleValueExtendedProperties"] = json!([{"id": id, "value": value}]);
            }
            v
        })
        .collect();
    let mut out = json!({"value": value});
    if skip + page < all.len() {
        let mut next = url::Url::parse(&format!(
            "{origin}/graph/v1.0/users/{}/mailFolders/{folder}/messages",
            percent_encoding::utf8_percent_encode(user, percent_encoding::NON_ALPHANUMERIC)
        ))
        .expect("a URL");
        next.query_pairs_mut().extend_pairs(
            query
                .iter()
                .filter(|(k, _)| k.as_str() != "$skip")
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        next.query_pairs_mut()
            .append_pair("$skip", &(skip + page).to_string());
        out["@odata.nextLink"] = json!(next.to_string());
    }
    (200, out, Vec::new())
}

/// Whether `id` is an extended property id as Graph takes them:
/// `{type} 0x{tag}`, `{type} {guid} Name {name}` or `{type} {guid} Id 0x{id}`.
fn property_id_ok(id: &str) -> bool {
    let mut parts = id.splitn(4, ' ');
    let (Some(kind), Some(second)) = (parts.next(), parts.next()) else {
        return false;
    };
    if !PROPERTY_TYPES.contains(&kind) {
        return false;
    }
    let hex = |t: &str| {
        t.strip_prefix("0x")
            .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
    };
    match (parts.next(), parts.next()) {
        (None, None) => hex(second),
        (Some("Name"), Some(name)) => is_guid(second) && !name.is_empty(),
        (Some("Id"), Some(n)) => is_guid(second) && hex(n),
        _ => false,
    }
}

fn is_guid(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
        return false;
    };
    let groups: Vec<&str> = inner.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The tag (`0x1035`, lower case) of an extended property id, if it is a
/// tagged (not named) property.
fn property_tag(id: &str) -> Option<String> {
    let mut parts = id.split(' ');
    parts.next()?;
    let tag = parts.next()?;
    (parts.next().is_none()).then(|| tag.to_ascii_lowercase())
}

fn is_system_time(v: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(v).is_ok() && v.ends_with('Z')
}

/// The extended properties of a create or update body, checked.
fn extended_properties(json: &Value) -> Result<BTreeMap<String, String>, String> {
    let mut properties = BTreeMap::new();
    for p in json["singleValueExtendedProperties"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let (Some(id), Some(value)) = (p["id"].as_str(), p["value"].as_str()) else {
            return Err(format!("extended property {p} needs string id and value"));
        };
        if !property_id_ok(id) {
            return Err(format!("{id:?} is not an extended property id"));
        }
        if id.starts_with("SystemTime ") && !is_system_time(value) {
            return Err(format!("{id} = {value:?} is not a UTC ISO 8601 time"));
        }
        if id.starts_with("Integer ") && value.parse::<i64>().is_err() {
            return Err(format!("{id} = {value:?} is not an integer"));
        }
        properties.insert(id.to_string(), value.to_string());
    }
    Ok(properties)
}

fn create(
    s: &mut State,
    options: &GraphOptions,
    user: &str,
    folder: &str,
    checked: Result<Checked, Problem>,
) -> Answer {
    let (properties, attachments, message_id, json) = match checked {
        Ok(c) => c,
        Err((code, problem)) => return s.refuse(400, code, &problem),
    };
    let size: usize = attachments.iter().map(|a| a.bytes.len()).sum();
    if size > options.message_limit {
        return error(
            400,
            "ErrorMessageSizeExceeded",
            "The message exceeds the maximum supported size.",
        );
    }
    let id = s.id("msg-");
    // Without PR_MESSAGE_FLAGS, or with MSGFLAG_UNSENT, Exchange saves a
    // draft.
    let is_draft = properties
        .get("Integer 0x0E07")
        .and_then(|f| f.parse::<i64>().ok())
        .is_none_or(|f| f & 0x8 != 0);
    let internet_message_id = message_id.unwrap_or_else(|| format!("<{id}@exchange.example.test>"));
    let path = folder_path(&s.folders[user], folder);
    s.messages
        .entry(user.to_string())
        .or_default()
        .push(StoredMessage {
            id: id.clone(),
            folder: path,
            folder_id: folder.to_string(),
            json,
            properties,
            internet_message_id: internet_message_id.clone(),
            is_draft,
            attachments,
        });
    (
        201,
        json!({"id": id, "parentFolderId": folder, "isDraft": is_draft,
            "internetMessageId": internet_message_id}),
        Vec::new(),
    )
}

fn update(s: &mut State, user: &str, id: &str, json: &Value) -> Answer {
    let Some(obj) = json.as_object() else {
        return s.refuse(400, "BadRequest", "The body is not an object.");
    };
    if let Some(key) = obj.keys().find(|k| !UPDATE_FIELDS.contains(&k.as_str())) {
        return s.refuse(
            400,
            "ErrorInvalidPropertySet",
            &format!("The property {key} cannot be updated."),
        );
    }
    let properties = match extended_properties(json) {
        Ok(p) => p,
        Err(problem) => return s.refuse(400, "ErrorInvalidProperty", &problem),
    };
    let Some(is_draft) = message_mut(s, user, id).map(|m| m.is_draft) else {
        return not_found();
    };
    if !is_draft {
        if let Some(key) = obj.keys().find(|k| DRAFT_ONLY_FIELDS.contains(&k.as_str())) {
            return s.refuse(
                400,
                "ErrorInvalidPropertySet",
                &format!("{key} can be updated only while the message is a draft."),
            );
        }
        if let Some(frozen) = properties
            .keys()
            .find(|k| property_tag(k).is_some_and(|t| FROZEN_PROPERTIES.contains(&t.as_str())))
        {
            return s.refuse(
                400,
                "ErrorInvalidPropertySet",
                &format!("{frozen} cannot be changed on a message that is not a draft."),
            );
        }
    }
    let m = message_mut(s, user, id).expect("found above");
    for (k, v) in properties {
        m.properties.insert(k, v);
    }
    for (k, v) in obj {
        if k != "singleValueExtendedProperties" {
            m.json[k] = v.clone();
        }
    }
    (200, json!({"id": id, "isDraft": is_draft}), Vec::new())
}

fn folder_path(folders: &[Folder], id: &str) -> String {
    let mut names = Vec::new();
    let mut at = folders.iter().find(|f| f.id == id);
    while let Some(f) = at {
        if f.parent.is_none() {
            break;
        }
        names.push(f.name.clone());
        at = folders.iter().find(|p| Some(&p.id) == f.parent.as_ref());
    }
    names.reverse();
    names.join("/")
}

/// A refusal: Graph's error code and what is wrong.
type Problem = (&'static str, String);

/// Checks one `fileAttachment` (inline or posted): under 3 MB.
fn check_attachment(a: &Value) -> Result<StoredAttachment, Problem> {
    let invalid = |m: String| ("ErrorInvalidRequest", m);
    if a["@odata.type"].as_str() != Some("#microsoft.graph.fileAttachment") {
        return Err(invalid(format!("attachment of type {}", a["@odata.type"])));
    }
    let name = a["name"]
        .as_str()
        .ok_or_else(|| invalid("attachment without name".into()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(
            a["contentBytes"]
                .as_str()
                .ok_or_else(|| invalid("attachment without contentBytes".into()))?,
        )
        .map_err(|e| invalid(format!("contentBytes of {name} is not base64: {e}")))?;
    if bytes.len() >= SMALL_ATTACHMENT_LIMIT {
        return Err((
            "ErrorAttachmentSizeShouldNotBeGreaterThanMaximumSize",
            format!(
                "{name} has {} bytes: attachments of 3 MB or more need an upload session",
                bytes.len()
            ),
        ));
    }
    Ok(StoredAttachment {
        name: name.to_string(),
        content_type: a["contentType"].as_str().unwrap_or("").to_string(),
        bytes,
        uploaded: false,
    })
}

/// A checked create body: its extended properties, attachments, Message-ID
/// (if it names one) and the body itself without the attachments.
type Checked = (
    BTreeMap<String, String>,
    Vec<StoredAttachment>,
    Option<String>,
    Value,
);

/// What is checked of a request's body before the server's lock is taken.
enum Precheck {
    None,
    Message(Result<Checked, Problem>),
    Attachment(Result<StoredAttachment, Problem>),
}

fn precheck(method: &str, rest: &[&str], json: &Value) -> Precheck {
    match (method, rest) {
        ("POST", ["mailFolders", _, "messages"]) => Precheck::Message(check_message(json)),
        ("POST", ["messages", _, "attachments"]) => Precheck::Attachment(check_attachment(json)),
        _ => Precheck::None,
    }
}

/// Checks a create body.
fn check_message(json: &Value) -> Result<Checked, Problem> {
    let invalid = |m: String| ("ErrorInvalidRequest", m);
    let obj = json
        .as_object()
        .ok_or_else(|| invalid("the body is not an object".into()))?;
    if let Some(key) = obj.keys().find(|k| !CREATE_FIELDS.contains(&k.as_str())) {
        return Err(invalid(format!("unknown or read-only property `{key}`")));
    }
    if let Some(body) = obj.get("body") {
        match body["contentType"].as_str() {
            Some("text" | "html") => {}
            other => return Err(invalid(format!("body.contentType is {other:?}"))),
        }
        body["content"]
            .as_str()
            .ok_or_else(|| invalid("body.content is not a string".into()))?;
    }
    for one in ["from", "sender"] {
        if let Some(r) = obj.get(one)
            && r["emailAddress"]["address"].as_str().is_none()
        {
            return Err(invalid(format!("{one} without emailAddress.address")));
        }
    }
    for list in ["toRecipients", "ccRecipients", "bccRecipients", "replyTo"] {
        for r in json[list].as_array().into_iter().flatten() {
            if r["emailAddress"]["address"].as_str().is_none() {
                return Err(invalid(format!(
                    "{list} entry without emailAddress.address"
                )));
            }
        }
    }
    let properties =
        extended_properties(json).map_err(|problem| ("ErrorInvalidProperty", problem))?;
    let message_id = match (
        json["internetMessageId"].as_str(),
        properties.get("String 0x1035").map(String::as_str),
    ) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid(format!(
                "internetMessageId {a:?} and String 0x1035 {b:?} differ"
            )));
        }
        (Some(mid), _) | (None, Some(mid)) => {
            if !(mid.starts_with('<') && mid.ends_with('>') && mid.contains('@')) {
                return Err((
                    "ErrorInvalidInternetMessageHeader",
                    format!("{mid:?} is not a <Message-ID>"),
                ));
            }
            Some(mid.to_string())
        }
        (None, None) => None,
    };
    if let Some(headers) = json["internetMessageHeaders"].as_array() {
        if headers.len() > 5 {
            return Err(invalid("more than 5 internetMessageHeaders".into()));
        }
        for h in headers {
            if !h["name"]
                .as_str()
                .is_some_and(|n| n.to_ascii_lowercase().starts_with("x-"))
            {
                return Err((
                    "InvalidInternetMessageHeader",
                    format!("internetMessageHeaders entry {h}: only x- headers"),
                ));
            }
        }
    }
    let attachments = json["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(check_attachment)
        .collect::<Result<Vec<_>, _>>()?;
    let mut stored = json.clone();
    if let Some(obj) = stored.as_object_mut() {
        obj.remove("attachments");
    }
    Ok((properties, attachments, message_id, stored))
}

fn create_upload_session(
    s: &mut State,
    options: &GraphOptions,
    origin: &str,
    user: &str,
    id: &str,
    json: &Value,
) -> Answer {
    let item = &json["AttachmentItem"];
    let (Some("file"), Some(name), Some(size)) = (
        item["attachmentType"].as_str(),
        item["name"].as_str(),
        item["size"].as_u64(),
    ) else {
        return s.refuse(
            400,
            "ErrorInvalidRequest",
            &format!("AttachmentItem needs attachmentType file, name and size: {item}"),
        );
    };
    let size = size as usize;
    if size < SMALL_ATTACHMENT_LIMIT {
        return s.refuse(
            400,
            "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
            &format!("{name} has {size} bytes: upload sessions take 3 MB or more"),
        );
    }
    if size > UPLOAD_SESSION_MAX {
        return s.refuse(
            400,
            "ErrorAttachmentSizeShouldNotBeGreaterThanMaximumSize",
            &format!("{name} has {size} bytes: upload sessions take up to 150 MB"),
        );
    }
    let Some(m) = message_mut(s, user, id) else {
        return not_found();
    };
    if m.size() + size > options.message_limit {
        return error(
            400,
            "ErrorMessageSizeExceeded",
            "The message exceeds the maximum supported size.",
        );
    }
    let sid = s.id("upload-");
    s.uploads.insert(
        sid.clone(),
        Upload {
            mailbox: user.to_string(),
            message: id.to_string(),
            name: name.to_string(),
            content_type: item["contentType"]
                .as_str()
                .unwrap_or("application/octet-stream")
                .to_string(),
            size,
            received: Vec::new(),
        },
    );
    (
        201,
        json!({"uploadUrl": format!("{origin}/upload/{sid}"),
            "expirationDateTime": "2099-01-01T00:00:00Z", "nextExpectedRanges": ["0-"]}),
        Vec::new(),
    )
}

fn upload(s: &mut State, id: &str, request: &Request) -> Answer {
    if request.header("Authorization").is_some() {
        return s.refuse(
            400,
            "InvalidAuthenticationToken",
            "An upload PUT carries no Authorization header: the URL is pre-authenticated.",
        );
    }
    if request.header("Content-Type") != Some("application/octet-stream") {
        return s.refuse(
            400,
            "ErrorInvalidRequest",
            &format!(
                "an upload PUT needs Content-Type: application/octet-stream, not {:?}",
                request.header("Content-Type")
            ),
        );
    }
    let body = &request.body;
    if body.len() > REQUEST_MAX {
        return s.refuse(
            413,
            "RequestBodyTooLarge",
            &format!("a chunk of {} bytes: at most 4 MB per PUT", body.len()),
        );
    }
    let Some(upload) = s.uploads.get(id) else {
        return s.refuse(404, "ErrorItemNotFound", "no such upload session");
    };
    let range = request.header("Content-Range");
    let parsed = range.and_then(|r| {
        let r = r.strip_prefix("bytes ")?;
        let (span, total) = r.split_once('/')?;
        let (a, b) = span.split_once('-')?;
        Some((
            a.parse::<usize>().ok()?,
            b.parse::<usize>().ok()?,
            total.parse::<usize>().ok()?,
        ))
    });
    let problem = match parsed {
        None => Some(format!("Content-Range {range:?}")),
        Some((a, b, total)) => {
            if total != upload.size {
                Some(format!(
                    "total {total} but the session is for {}",
                    upload.size
                ))
            } else if a != upload.received.len() {
                Some(format!(
                    "range starts at {a}, expected {}",
                    upload.received.len()
                ))
            } else if b < a || b - a + 1 != body.len() || b >= total {
                Some(format!("range {a}-{b} for {} bytes", body.len()))
            } else {
                None
            }
        }
    };
    if let Some(problem) = problem {
        return s.refuse(416, "InvalidRange", &format!("upload {id}: {problem}"));
    }
    let broken = s.broken_uploads;
    let upload = s.uploads.get_mut(id).expect("found above");
    match broken {
        Some(BrokenUpload::AsksFromZeroAgain) => {
            return (
                200,
                json!({"expirationDateTime": "2099-01-01T00:00:00Z", "nextExpectedRanges": ["0-"]}),
                Vec::new(),
            );
        }
        Some(BrokenUpload::NeverCreated) if upload.received.len() + body.len() >= upload.size => {
            return (
                200,
                json!({"expirationDateTime": "2099-01-01T00:00:00Z", "nextExpectedRanges": []}),
                Vec::new(),
            );
        }
        _ => {}
    }
    upload.received.extend_from_slice(body);
    if upload.received.len() < upload.size {
        let next = upload.received.len();
        return (
            200,
            json!({"expirationDateTime": "2099-01-01T00:00:00Z", "nextExpectedRanges": [next.to_string()]}),
            Vec::new(),
        );
    }
    let upload = s.uploads.remove(id).expect("present above");
    s.counts.uploads += 1;
    if s.down_after_uploads == Some(s.counts.uploads) {
        s.down = true;
    }
    let aid = s.id("att-");
    let location = format!(
        "/users('{}')/messages('{}')/attachments('{aid}')",
        upload.mailbox, upload.message
    );
    if let Some(m) = message_mut(s, &upload.mailbox, &upload.message) {
        m.attachments.push(StoredAttachment {
            name: upload.name,
            content_type: upload.content_type,
            bytes: upload.received,
            uploaded: true,
        });
    }
    (201, Value::Null, vec![("Location".into(), location)])
}
