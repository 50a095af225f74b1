//! A local stand-in for Microsoft Graph and its token endpoint, over real
//! HTTP on 127.0.0.1, for the Graph sink's tests. It speaks Graph's request
//! and error shapes (`{"error":{"code":…,"message":…}}`) and checks every
//! request it gets: the client-credentials form, the bearer token, folder
//! lookups by `$filter`, the JSON of each created message (known fields
//! only, the four extended properties and their formats, inline
//! `fileAttachment`s up to 3 MB in a request under 4 MB), upload sessions
//! (no token on the upload URL, `Content-Range` in order, chunks of a
//! multiple of 320 KiB), paging with `@odata.nextLink`, and no more than
//! four requests in flight per mailbox. Every 97th Graph request is
//! answered 429 with `Retry-After: 1` (configurable). A request that breaks
//! a rule gets 400 and is recorded in [`GraphServer::violations`]; the
//! tests assert there are none, and read back what was stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct GraphOptions {
    /// Mailboxes that exist.
    pub users: Vec<String>,
    /// The app's client id and secret.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: String,
    /// Answer every n-th Graph request 429 (`Retry-After: 1`); 0: never.
    pub throttle_every: usize,
    /// Largest page of a message list.
    pub page_size: usize,
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
    /// The create request's JSON (without attachments).
    pub json: Value,
    /// Extended property id → value, after any PATCH.
    pub properties: BTreeMap<String, String>,
    /// Its attachments.
    pub attachments: Vec<StoredAttachment>,
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

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    tokens: Vec<String>,
    tokens_issued: usize,
    requests: usize,
    throttled: usize,
    folders: HashMap<String, Vec<Folder>>,
    messages: HashMap<String, Vec<StoredMessage>>,
    uploads: HashMap<String, Upload>,
    in_flight: HashMap<String, usize>,
    max_in_flight: usize,
    violations: Vec<String>,
    uploads_done: usize,
}

impl State {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:08}", self.next_id)
    }
}

/// The running server; it stops with the test process.
pub struct GraphServer {
    origin: String,
    options: GraphOptions,
    state: Arc<Mutex<State>>,
}

type Answer = (u16, Value, Vec<(String, String)>);

fn error(status: u16, code: &str, message: &str) -> Answer {
    (
        status,
        json!({"error": {"code": code, "message": message}}),
        Vec::new(),
    )
}

const MESSAGE_FIELDS: [&str; 10] = [
    "subject",
    "body",
    "from",
    "sender",
    "toRecipients",
    "ccRecipients",
    "isRead",
    "singleValueExtendedProperties",
    "internetMessageHeaders",
    "attachments",
];
const PROPERTIES: [&str; 4] = [
    "Integer 0x0E07",
    "SystemTime 0x0E06",
    "SystemTime 0x0039",
    "String 0x1035",
];
const CHUNK_UNIT: usize = 320 * 1024;

impl GraphServer {
    /// Starts the server with these options.
    pub fn start(options: GraphOptions) -> GraphServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let origin = format!("http://{}", listener.local_addr().expect("an address"));
        let mut state = State::default();
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

    /// The options it runs with.
    pub fn options(&self) -> &GraphOptions {
        &self.options
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requests that broke a rule.
    pub fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
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

    /// (Graph requests, of which answered 429, tokens issued, completed
    /// upload sessions).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let s = self.state();
        (s.requests, s.throttled, s.tokens_issued, s.uploads_done)
    }

    /// Makes every token issued so far invalid (as an expiry would).
    pub fn revoke_tokens(&self) {
        self.state().tokens.clear();
    }
}

/// The HTTP method of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Other(String),
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::Get => f.write_str("GET"),
            Method::Post => f.write_str("POST"),
            Method::Put => f.write_str("PUT"),
            Method::Patch => f.write_str("PATCH"),
            Method::Delete => f.write_str("DELETE"),
            Method::Other(m) => f.write_str(m),
        }
    }
}

/// A parsed HTTP/1.1 request.
struct Request {
    method: Method,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Reads one request; `None` at the end of the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = match parts.next()? {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        other => Method::Other(other.to_string()),
    };
    let target = parts.next()?.to_string();
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
    Some(Request {
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
        let (status, value, headers) = handle(&request, state, options, origin);
        let text = if value.is_null() {
            String::new()
        } else {
            value.to_string()
        };
        let mut head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            text.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(text.as_bytes()).is_err()
        {
            return;
        }
    }
}

fn handle(request: &Request, state: &Mutex<State>, options: &GraphOptions, origin: &str) -> Answer {
    let body = &request.body;
    let url = url::Url::parse(&format!("http://x{}", request.target)).expect("a request URL");
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    // Mailbox addresses, ids and names here need no percent-decoding.
    let path: Vec<String> = url
        .path_segments()
        .map(|s| s.map(str::to_string).collect())
        .unwrap_or_default();
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let method = request.method.clone();
    let answer: Answer = match path.as_slice() {
        ["login", _tenant, "oauth2", "v2.0", "token"] if method == Method::Post => {
            token(state, options, body)
        }
        ["upload", id] if method == Method::Put => {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            if header("Authorization").is_some() {
                s.violations
                    .push("an upload PUT carried an Authorization header".into());
            }
            upload(&mut s, id, header("Content-Range"), body)
        }
        ["graph", "v1.0", "users", user, rest @ ..] => {
            let user = user.to_string();
            {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                s.requests += 1;
                let n = s.in_flight.entry(user.clone()).or_default();
                *n += 1;
                let now = *n;
                s.max_in_flight = s.max_in_flight.max(now);
                if now > 4 {
                    s.violations
                        .push(format!("{now} requests in flight for {user}"));
                }
            }
            // Let concurrent requests overlap, as a real server would.
            std::thread::sleep(std::time::Duration::from_millis(2));
            let answer = graph(
                state, options, origin, &method, &user, rest, &query, &header, body,
            );
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = s.in_flight.get_mut(&user) {
                *n -= 1;
            }
            answer
        }
        _ => error(404, "ResourceNotFound", "no such resource"),
    };
    answer
}

fn token(state: &Mutex<State>, options: &GraphOptions, body: &[u8]) -> Answer {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    if form.get("grant_type").map(String::as_str) != Some("client_credentials")
        || form.get("scope").map(String::as_str) != Some("https://graph.microsoft.com/.default")
    {
        s.violations
            .push(format!("token request with form {:?}", form.keys()));
        return (400, json!({"error": "invalid_request"}), Vec::new());
    }
    if form.get("client_id") != Some(&options.client_id)
        || form.get("client_secret") != Some(&options.client_secret)
    {
        return (
            401,
            json!({"error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided."}),
            Vec::new(),
        );
    }
    let token = s.id("token-");
    s.tokens.push(token.clone());
    s.tokens_issued += 1;
    (
        200,
        json!({"token_type": "Bearer", "expires_in": 3599, "access_token": token}),
        Vec::new(),
    )
}

#[allow(clippy::too_many_arguments)]
fn graph(
    state: &Mutex<State>,
    options: &GraphOptions,
    origin: &str,
    method: &Method,
    user: &str,
    rest: &[&str],
    query: &HashMap<String, String>,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
) -> Answer {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let bearer = header("Authorization").unwrap_or_default();
    let valid = bearer
        .strip_prefix("Bearer ")
        .is_some_and(|t| s.tokens.iter().any(|k| k == t));
    if !valid {
        return error(
            401,
            "InvalidAuthenticationToken",
            "Access token has expired or is not yet valid.",
        );
    }
    if options.throttle_every > 0 && s.requests.is_multiple_of(options.throttle_every) {
        s.throttled += 1;
        let mut a = error(
            429,
            "ApplicationThrottled",
            "Application is over its MailboxConcurrency limit.",
        );
        a.2.push(("Retry-After".into(), "1".into()));
        return a;
    }
    if !options.users.iter().any(|u| u == user) {
        return error(
            404,
            "ErrorInvalidUser",
            &format!("The requested user '{user}' is invalid."),
        );
    }
    let json: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                s.violations.push(format!("a body that is not JSON: {e}"));
                return error(400, "BadRequest", "Unable to read JSON request payload.");
            }
        }
    };
    if !json.is_null() && header("Content-Type").as_deref() != Some("application/json") {
        s.violations.push("JSON without Content-Type".into());
    }
    let folder_id = |s: &State, name: &str| -> Option<String> {
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
    };
    match (method, rest) {
        (Method::Get, ["mailFolders", parent, "childFolders"]) => {
            let Some(parent) = folder_id(&s, parent) else {
                return error(
                    404,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                );
            };
            let filter = query.get("$filter").cloned().unwrap_or_default();
            let Some(name) = filter
                .strip_prefix("displayName eq '")
                .and_then(|f| f.strip_suffix('\''))
                .map(|n| n.replace("''", "'"))
            else {
                s.violations.push(format!(
                    "childFolders without a displayName filter: {filter:?}"
                ));
                return error(
                    400,
                    "ErrorInvalidUrlQueryFilter",
                    "The query filter is invalid.",
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
        (Method::Post, ["mailFolders", parent, "childFolders"]) => {
            let Some(parent) = folder_id(&s, parent) else {
                return error(
                    404,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                );
            };
            let Some(name) = json["displayName"].as_str().map(str::to_string) else {
                s.violations
                    .push("childFolders POST without displayName".into());
                return error(400, "ErrorInvalidRequest", "displayName is required");
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
            s.folders.get_mut(user).unwrap().push(Folder {
                id: id.clone(),
                parent: Some(parent),
                name: name.clone(),
            });
            (201, json!({"id": id, "displayName": name}), Vec::new())
        }
        (Method::Get, ["mailFolders", folder, "messages"]) => {
            let Some(folder) = folder_id(&s, folder) else {
                return error(
                    404,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                );
            };
            if query.get("$select").map(String::as_str) != Some("internetMessageId") {
                s.violations.push(format!(
                    "message list without $select=internetMessageId: {query:?}"
                ));
            }
            let top: usize = query.get("$top").and_then(|t| t.parse().ok()).unwrap_or(10);
            let skip: usize = query.get("$skip").and_then(|t| t.parse().ok()).unwrap_or(0);
            let page = top.min(options.page_size);
            let all: Vec<&StoredMessage> = s
                .messages
                .get(user)
                .map(|m| {
                    m.iter()
                        .filter(|m| m.json["parentFolderId"] == folder)
                        .collect()
                })
                .unwrap_or_default();
            let value: Vec<Value> = all
                .iter()
                .skip(skip)
                .take(page)
                .map(
                    |m| json!({"id": m.id, "internetMessageId": m.properties.get("String 0x1035")}),
                )
                .collect();
            let mut out = json!({"value": value});
            if skip + page < all.len() {
                out["@odata.nextLink"] = json!(format!(
                    "{origin}/graph/v1.0/users/{user}/mailFolders/{folder}/messages?%24select=internetMessageId&%24top={top}&%24skip={}",
                    skip + page
                ));
            }
            (200, out, Vec::new())
        }
        (Method::Post, ["mailFolders", folder, "messages"]) => {
            let Some(folder) = folder_id(&s, folder) else {
                return error(
                    404,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                );
            };
            if body.len() > 4 << 20 {
                s.violations
                    .push(format!("a create request of {} bytes", body.len()));
                return error(
                    413,
                    "RequestBodyTooLarge",
                    "The request is larger than 4 MB.",
                );
            }
            match check_message(&json) {
                Ok((properties, attachments)) => {
                    let id = s.id("msg-");
                    let path = folder_path(&s.folders[user], &folder);
                    let mut stored = json.clone();
                    stored.as_object_mut().unwrap().remove("attachments");
                    stored["parentFolderId"] = json!(folder);
                    s.messages
                        .entry(user.to_string())
                        .or_default()
                        .push(StoredMessage {
                            id: id.clone(),
                            folder: path,
                            json: stored,
                            properties,
                            attachments,
                        });
                    (
                        201,
                        json!({"id": id, "parentFolderId": folder, "isDraft": false}),
                        Vec::new(),
                    )
                }
                Err(problem) => {
                    s.violations.push(format!("create: {problem}"));
                    error(400, "ErrorInvalidRequest", &problem)
                }
            }
        }
        (Method::Patch, ["messages", id]) => {
            let Some(props) = json["singleValueExtendedProperties"].as_array().cloned() else {
                s.violations
                    .push("PATCH without singleValueExtendedProperties".into());
                return error(400, "ErrorInvalidRequest", "nothing to update");
            };
            let Some(m) = s
                .messages
                .get_mut(user)
                .and_then(|m| m.iter_mut().find(|m| m.id == *id))
            else {
                return error(
                    404,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                );
            };
            for p in props {
                if let (Some(k), Some(v)) = (p["id"].as_str(), p["value"].as_str()) {
                    m.properties.insert(k.to_string(), v.to_string());
                }
            }
            (200, json!({"id": id}), Vec::new())
        }
        (Method::Delete, ["messages", id]) => {
            if let Some(m) = s.messages.get_mut(user) {
                m.retain(|m| m.id != *id);
            }
            (204, Value::Null, Vec::new())
        }
        (Method::Post, ["messages", id, "attachments", "createUploadSession"]) => {
            if !s
                .messages
                .get(user)
                .is_some_and(|m| m.iter().any(|m| m.id == *id))
            {
                return error(
                    404,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                );
            }
            let item = &json["AttachmentItem"];
            let (Some("file"), Some(name), Some(size)) = (
                item["attachmentType"].as_str(),
                item["name"].as_str(),
                item["size"].as_u64(),
            ) else {
                s.violations
                    .push(format!("createUploadSession with {item}"));
                return error(
                    400,
                    "ErrorInvalidRequest",
                    "AttachmentItem needs attachmentType, name and size",
                );
            };
            let sid = s.id("upload-");
            let upload = Upload {
                mailbox: user.to_string(),
                message: id.to_string(),
                name: name.to_string(),
                content_type: item["contentType"]
                    .as_str()
                    .unwrap_or("application/octet-stream")
                    .to_string(),
                size: size as usize,
                received: Vec::new(),
            };
            s.uploads.insert(sid.clone(), upload);
            (
                201,
                json!({"uploadUrl": format!("{origin}/upload/{sid}"),
                    "expirationDateTime": "2099-01-01T00:00:00Z", "nextExpectedRanges": ["0-"]}),
                Vec::new(),
            )
        }
        _ => {
            s.violations.push(format!("unexpected {method} {rest:?}"));
            error(400, "BadRequest", "Unsupported request")
        }
    }
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

fn is_system_time(v: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(v).is_ok() && v.ends_with('Z')
}

/// Checks a create body; returns its extended properties and attachments.
fn check_message(
    json: &Value,
) -> Result<(BTreeMap<String, String>, Vec<StoredAttachment>), String> {
    let obj = json.as_object().ok_or("the body is not an object")?;
    for key in obj.keys() {
        if !MESSAGE_FIELDS.contains(&key.as_str()) {
            return Err(format!("unknown or read-only property `{key}`"));
        }
    }
    json["subject"].as_str().ok_or("subject is not a string")?;
    match json["body"]["contentType"].as_str() {
        Some("text" | "html") => {}
        other => return Err(format!("body.contentType is {other:?}")),
    }
    json["body"]["content"]
        .as_str()
        .ok_or("body.content is not a string")?;
    json["from"]["emailAddress"]["address"]
        .as_str()
        .ok_or("from.emailAddress.address missing")?;
    for list in ["toRecipients", "ccRecipients"] {
        for r in json[list].as_array().into_iter().flatten() {
            r["emailAddress"]["address"]
                .as_str()
                .ok_or(format!("{list} entry without emailAddress.address"))?;
        }
    }
    let mut properties = BTreeMap::new();
    for p in json["singleValueExtendedProperties"]
        .as_array()
        .ok_or("no singleValueExtendedProperties")?
    {
        let (Some(id), Some(value)) = (p["id"].as_str(), p["value"].as_str()) else {
            return Err(format!("extended property {p} needs string id and value"));
        };
        if !PROPERTIES.contains(&id) {
            return Err(format!("unexpected extended property {id}"));
        }
        properties.insert(id.to_string(), value.to_string());
    }
    let flags: i64 = properties
        .get("Integer 0x0E07")
        .ok_or("no Integer 0x0E07 (PR_MESSAGE_FLAGS): the message would be a draft")?
        .parse()
        .map_err(|_| "Integer 0x0E07 is not an integer")?;
    if flags & 0x8 != 0 {
        return Err("PR_MESSAGE_FLAGS has MSGFLAG_UNSENT: a draft".into());
    }
    for id in ["SystemTime 0x0E06", "SystemTime 0x0039"] {
        let v = properties.get(id).ok_or(format!("no {id}"))?;
        if !is_system_time(v) {
            return Err(format!("{id} = {v:?} is not a UTC ISO 8601 time"));
        }
    }
    if let Some(mid) = properties.get("String 0x1035")
        && !(mid.starts_with('<') && mid.ends_with('>') && mid.contains('@'))
    {
        return Err(format!("String 0x1035 = {mid:?} is not a <Message-ID>"));
    }
    if let Some(headers) = json["internetMessageHeaders"].as_array() {
        if headers.len() > 5 {
            return Err("more than 5 internetMessageHeaders".into());
        }
        for h in headers {
            if !h["name"].as_str().is_some_and(|n| n.starts_with("X-")) {
                return Err(format!("internetMessageHeaders entry {h}: only X- headers"));
            }
        }
    }
    let mut attachments = Vec::new();
    for a in json["attachments"].as_array().into_iter().flatten() {
        if a["@odata.type"].as_str() != Some("#microsoft.graph.fileAttachment") {
            return Err(format!("attachment of type {}", a["@odata.type"]));
        }
        let name = a["name"].as_str().ok_or("attachment without name")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(
                a["contentBytes"]
                    .as_str()
                    .ok_or("attachment without contentBytes")?,
            )
            .map_err(|e| format!("contentBytes of {name} is not base64: {e}"))?;
        if bytes.len() > 3 << 20 {
            return Err(format!(
                "inline attachment {name} of {} bytes: use an upload session",
                bytes.len()
            ));
        }
        attachments.push(StoredAttachment {
            name: name.to_string(),
            content_type: a["contentType"].as_str().unwrap_or("").to_string(),
            bytes,
            uploaded: false,
        });
    }
    Ok((properties, attachments))
}

fn upload(s: &mut State, id: &str, range: Option<String>, body: &[u8]) -> Answer {
    let Some(upload) = s.uploads.get_mut(id) else {
        return error(404, "ItemNotFound", "no such upload session");
    };
    let parsed = range.as_deref().and_then(|r| {
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
            } else if b < a || b - a + 1 != body.len() {
                Some(format!("range {a}-{b} for {} bytes", body.len()))
            } else if b + 1 != total && !body.len().is_multiple_of(CHUNK_UNIT) {
                Some(format!(
                    "a chunk of {} bytes is not a multiple of 320 KiB",
                    body.len()
                ))
            } else if body.len() > 60 << 20 {
                Some("a chunk over 60 MiB".into())
            } else {
                None
            }
        }
    };
    if let Some(problem) = problem {
        s.violations.push(format!("upload {id}: {problem}"));
        return error(416, "InvalidRange", &problem);
    }
    upload.received.extend_from_slice(body);
    if upload.received.len() < upload.size {
        let next = upload.received.len();
        return (
            200,
            json!({"expirationDateTime": "2099-01-01T00:00:00Z", "nextExpectedRanges": [format!("{next}-")]}),
            Vec::new(),
        );
    }
    let upload = s.uploads.remove(id).expect("present above");
    s.uploads_done += 1;
    if let Some(m) = s
        .messages
        .get_mut(&upload.mailbox)
        .and_then(|m| m.iter_mut().find(|m| m.id == upload.message))
    {
        m.attachments.push(StoredAttachment {
            name: upload.name,
            content_type: upload.content_type,
            bytes: upload.received,
            uploaded: true,
        });
    }
    (201, Value::Null, Vec::new())
}
