//! The HTTP side: routes, authentication, fault middleware and handlers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use percent_encoding::percent_decode_str;
use rsa::RsaPublicKey;
use serde::Serialize;
use serde_json::Value;

use crate::api::{
    ErrorBody, LogEvent, LogKind, MemberInfo, MessageSuppressionResponse, Token, UserError,
    V2AdminStreamList, V2MembershipList, V2UserList, V5Datafeed, V5EventList,
};
use crate::config::{Endpoint, SimConfig, SuppressionMode};
use crate::content;
use crate::data::{Dataset, payload_id, url_safe};
use crate::faults::{FaultEngine, Reject};
use crate::jwt;
use crate::stats::Stats;
use crate::truth::{GroundTruth, StreamType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    Session,
    KeyManager,
}

#[derive(Debug)]
struct Session {
    kind: TokenKind,
    username: String,
    created: Instant,
    served: u64,
}

/// Suppression state and the event log, which change at run time.
#[derive(Debug)]
pub(crate) struct Live {
    /// Per message: when its suppression took effect.
    pub suppressed: Vec<Option<i64>>,
    pub applied: bool,
    pub events: Vec<LogEvent>,
    /// Streams the service account was added to while running.
    pub joined: std::collections::HashSet<usize>,
    /// Streams the service account was removed from while running.
    pub removed: std::collections::HashSet<usize>,
    /// Later streams not created yet ([`SimConfig::later_streams`]): nothing shows them.
    pub unborn: std::collections::BTreeSet<usize>,
    /// Rooms deactivated (`false`) or reactivated (`true`) while running.
    pub active: HashMap<usize, bool>,
}

/// The datahose's state for one tag, shared by every reader using it.
#[derive(Debug, Default)]
struct TagReader {
    /// The next event of the log not delivered yet.
    next: usize,
    /// Batches delivered and not acknowledged: their events and when they went out.
    unacked: HashMap<String, (Vec<usize>, Instant)>,
    /// Every ackId given out (acknowledging one twice is harmless; an unknown one is 400).
    issued: std::collections::HashSet<String>,
}

/// State shared by all handlers.
pub(crate) struct Shared {
    pub ds: Dataset,
    pub cfg: SimConfig,
    accounts: Vec<(String, RsaPublicKey)>,
    sessions: Mutex<HashMap<String, Session>>,
    token_counter: AtomicU64,
    pub stats: Mutex<Stats>,
    faults: FaultEngine,
    pub live: RwLock<Live>,
    feeds: Mutex<Vec<String>>,
    datahose: Mutex<HashMap<String, TagReader>>,
    ack_counter: AtomicU64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Shared {
    pub(crate) fn new(ds: Dataset, cfg: SimConfig) -> Result<Self, crate::SimError> {
        let accounts = cfg
            .service_accounts
            .iter()
            .map(|a| {
                Ok((
                    a.username.clone(),
                    jwt::parse_public_key(&a.public_key_pem)?,
                ))
            })
            .collect::<Result<Vec<_>, crate::SimError>>()?;
        let unborn: std::collections::BTreeSet<usize> = (0..ds.streams.len())
            .filter(|&si| ds.streams[si].later)
            .collect();
        let live = Live {
            suppressed: vec![None; ds.messages.len()],
            applied: false,
            events: if cfg.datahose.history {
                let mut log = ds.history();
                log.retain(|e| !unborn.contains(&e.kind.stream(&ds)));
                log
            } else {
                Vec::new()
            },
            joined: Default::default(),
            removed: Default::default(),
            unborn,
            active: HashMap::new(),
        };
        let shared = Shared {
            ds,
            accounts,
            sessions: Mutex::new(HashMap::new()),
            token_counter: AtomicU64::new(0),
            stats: Mutex::new(Stats::default()),
            faults: FaultEngine::new(cfg.faults.clone(), cfg.seed),
            live: RwLock::new(live),
            feeds: Mutex::new(Vec::new()),
            datahose: Mutex::new(HashMap::new()),
            ack_counter: AtomicU64::new(0),
            cfg,
        };
        if shared.cfg.suppressions == SuppressionMode::Applied {
            shared.apply_suppressions();
        }
        Ok(shared)
    }

    fn apply_planned(&self, live: &mut Live) -> usize {
        let mut planned: Vec<(i64, usize, usize)> = self
            .ds
            .messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.planned_suppression.map(|(at, by)| (at, i, by)))
            .filter(|(_, i, _)| live.suppressed[*i].is_none())
            .collect();
        planned.sort();
        let n = planned.len();
        for (at, i, by) in planned {
            live.suppressed[i] = Some(at);
            let id = format!("sup-{}-{}", live.events.len(), self.ds.messages[i].id);
            live.events.push(LogEvent {
                id,
                kind: LogKind::Suppressed(i),
                at,
                initiator: by,
            });
        }
        live.applied = true;
        n
    }

    /// Applies the planned suppressions now; returns how many took effect.
    pub(crate) fn apply_suppressions(&self) -> usize {
        let mut live = self.live.write().unwrap_or_else(|e| e.into_inner());
        self.apply_planned(&mut live)
    }

    /// Suppresses one message now; `None` if unknown, `Some(false)` if it already was.
    pub(crate) fn suppress(&self, message_id: &str, by: usize) -> Option<(usize, bool)> {
        let mi = self.find_message(message_id)?;
        let mut live = self.live.write().unwrap_or_else(|e| e.into_inner());
        if live.suppressed[mi].is_some() {
            return Some((mi, false));
        }
        let at = now_ms();
        live.suppressed[mi] = Some(at);
        let id = format!("sup-{}-{}", live.events.len(), self.ds.messages[mi].id);
        live.events.push(LogEvent {
            id,
            kind: LogKind::Suppressed(mi),
            at,
            initiator: by,
        });
        Some((mi, true))
    }

    /// Drops every session and key-manager token; returns how many there were.
    pub(crate) fn expire_sessions(&self) -> usize {
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let n = s.len();
        s.clear();
        n
    }

    pub(crate) fn truth(&self) -> GroundTruth {
        let live = self.live.read().unwrap_or_else(|e| e.into_inner());
        let mut truth = self.ds.truth(&live.suppressed, live.applied, &live.events);
        for &si in &live.joined {
            truth.streams[si].service_member = true;
        }
        for &si in &live.removed {
            truth.streams[si].service_member = false;
        }
        for (&si, &active) in &live.active {
            truth.streams[si].active = active;
        }
        let unborn: std::collections::HashSet<&str> = live
            .unborn
            .iter()
            .map(|&si| self.ds.streams[si].id.as_str())
            .collect();
        truth
            .streams
            .retain(|s| !unborn.contains(s.stream_id.as_str()));
        truth
            .messages
            .retain(|m| !unborn.contains(m.stream_id.as_str()));
        truth
    }

    /// A stream that exists now, by id (any base64 flavour).
    pub(crate) fn find_stream(&self, id: &str) -> Option<usize> {
        let si = self.ds.find_stream(id)?;
        let live = self.live.read().unwrap_or_else(|e| e.into_inner());
        (!live.unborn.contains(&si)).then_some(si)
    }

    /// A message of a stream that exists now, by id (any base64 flavour).
    pub(crate) fn find_message(&self, id: &str) -> Option<usize> {
        let mi = self.ds.find_message(id)?;
        let live = self.live.read().unwrap_or_else(|e| e.into_inner());
        (!live.unborn.contains(&self.ds.messages[mi].stream)).then_some(mi)
    }

    /// Whether a stream is active now (a room may have been deactivated).
    pub(crate) fn is_active(&self, si: usize) -> bool {
        let live = self.live.read().unwrap_or_else(|e| e.into_inner());
        live.active
            .get(&si)
            .copied()
            .unwrap_or(self.ds.streams[si].active)
    }

    /// Whether the service account is a member of a stream now.
    fn service_member(&self, si: usize) -> bool {
        let live = self.live.read().unwrap_or_else(|e| e.into_inner());
        (self.ds.streams[si].service_member || live.joined.contains(&si))
            && !live.removed.contains(&si)
    }

    /// Makes the service account a member of a stream; false if the id is
    /// unknown.
    pub(crate) fn add_service_account(&self, stream_id: &str) -> bool {
        let Some(si) = self.find_stream(stream_id) else {
            return false;
        };
        let mut live = self.live.write().unwrap_or_else(|e| e.into_inner());
        live.removed.remove(&si);
        live.joined.insert(si);
        true
    }

    /// Removes the service account from a stream; false if the id is unknown
    /// or it was not a member.
    pub(crate) fn remove_service_account(&self, stream_id: &str) -> bool {
        let Some(si) = self.find_stream(stream_id) else {
            return false;
        };
        if !self.service_member(si) {
            return false;
        }
        let mut live = self.live.write().unwrap_or_else(|e| e.into_inner());
        live.joined.remove(&si);
        live.removed.insert(si);
        true
    }

    /// Creates the next later stream of `kind` (in creation order): from now on it is
    /// listed, readable, in the ground truth, and its messages join the datahose's history.
    /// `None` when none of that kind is left.
    pub(crate) fn create_stream(&self, kind: StreamType) -> Option<String> {
        let mut live = self.live.write().unwrap_or_else(|e| e.into_inner());
        let si = live
            .unborn
            .iter()
            .copied()
            .find(|&si| self.ds.streams[si].kind == kind)?;
        live.unborn.remove(&si);
        if self.cfg.datahose.history {
            let mut born: Vec<LogEvent> = self
                .ds
                .history()
                .into_iter()
                .filter(|e| e.kind.stream(&self.ds) == si)
                .collect();
            live.events.append(&mut born);
        }
        Some(self.ds.streams[si].id.clone())
    }

    /// Deactivates (`active` false) or reactivates a room, as
    /// `POST /pod/v1/admin/room/{id}/setActive` does. `Err` for an unknown id or a stream
    /// that is not a room.
    pub(crate) fn set_room_active(&self, id: &str, active: bool) -> Result<usize, Invalid> {
        let si = self
            .find_stream(id)
            .ok_or_else(|| invalid(format!("Room {id} not found")))?;
        if self.ds.streams[si].kind != StreamType::Room {
            return Err(invalid(format!(
                "Stream {id} is not a room: only chat rooms are deactivated or reactivated"
            )));
        }
        let mut live = self.live.write().unwrap_or_else(|e| e.into_inner());
        live.active.insert(si, active);
        Ok(si)
    }

    pub(crate) fn stats_snapshot(&self) -> Stats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn count(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn new_token(&self, kind: TokenKind, username: String) -> String {
        let n = self.token_counter.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let digest = sha2::Sha256::new_with_prefix(format!("{}:{n}:{nanos}", self.cfg.seed));
        use sha2::Digest;
        let token = format!(
            "{}{}",
            if kind == TokenKind::Session { "s" } else { "k" },
            hex::encode(digest.finalize())
        );
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                token.clone(),
                Session {
                    kind,
                    username,
                    created: Instant::now(),
                    served: 0,
                },
            );
        token
    }

    /// Checks a token; `Err(true)` when it existed but expired.
    fn check_token(&self, token: Option<&str>, kind: TokenKind) -> Result<String, bool> {
        let token = token.ok_or(false)?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let s = sessions.get_mut(token).ok_or(false)?;
        if s.kind != kind {
            return Err(false);
        }
        let mut expired = self
            .cfg
            .session_ttl
            .is_some_and(|ttl| s.created.elapsed() > ttl);
        if kind == TokenKind::Session {
            s.served += 1;
            if let Some(budget) = self.faults.session_budget() {
                expired |= s.served > budget;
            }
        }
        if expired {
            sessions.remove(token);
            return Err(true);
        }
        Ok(s.username.clone())
    }
}

type St = State<Arc<Shared>>;

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        Err(e) => error(500, &format!("serialisation failed: {e}")),
    }
}

/// The spec's `Error` / `V2Error` answer.
fn error(code: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&ErrorBody {
        code,
        message: message.to_string(),
    })
    .unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn bad_request(message: &str) -> Response {
    error(400, message)
}

/// A refusal (400 unless said otherwise) as an error value (small, unlike `Response`).
#[derive(Debug)]
pub(crate) struct Invalid(u16, String);

impl IntoResponse for Invalid {
    fn into_response(self) -> Response {
        error(self.0, &self.1)
    }
}

fn invalid(message: impl Into<String>) -> Invalid {
    Invalid(400, message.into())
}

/// Parsed query string keeping raw values (for `fileId`).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (form_decode(k), v.to_string())
            })
            .collect();
        Query(pairs)
    }

    fn raw(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn get(&self, key: &str) -> Option<String> {
        self.raw(key).map(form_decode)
    }

    fn int(&self, key: &str) -> Result<Option<i64>, Invalid> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| invalid(format!("Invalid value {v:?} for query parameter {key}"))),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, Invalid> {
        match self.get(key).as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(invalid(format!(
                "Invalid value {v:?} for query parameter {key}"
            ))),
        }
    }
}

fn form_decode(s: &str) -> String {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn paging(q: &Query, default_limit: i64, max_limit: i64) -> Result<(usize, usize), Invalid> {
    let skip = q.int("skip")?.unwrap_or(0);
    let limit = q.int("limit")?.unwrap_or(default_limit);
    if skip < 0 {
        return Err(invalid("The skip parameter must not be negative"));
    }
    if limit < 1 {
        return Err(invalid("The limit parameter must be positive"));
    }
    if limit > max_limit {
        return Err(invalid(format!(
            "The limit parameter cannot exceed {max_limit}"
        )));
    }
    Ok((skip as usize, limit as usize))
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return e.into_response(),
        }
    };
}

/// Builds the application router.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let admin = Router::new()
        .route("/v2/admin/streams/list", post(streams_list))
        .route("/v1/admin/stream/{id}/membership/list", get(stream_members))
        .route("/v1/admin/room/{id}/membership/list", get(room_members))
        .route(
            "/v1/admin/messagesuppression/{id}/suppress",
            post(suppress_message),
        )
        .route("/v1/admin/room/{id}/setActive", post(set_room_active))
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            require_provisioning,
        ));
    let pod = Router::new()
        .route("/v3/users", get(users))
        .route("/v2/sessioninfo", get(session_info))
        .route("/v2/streams/{sid}/info", get(stream_info))
        .merge(admin)
        .route_layer(middleware::from_fn_with_state(shared.clone(), require_pod));
    let agent = Router::new()
        .route("/v4/stream/{sid}/message", get(messages))
        .route("/v1/message/{id}", get(message_by_id))
        .route("/v1/stream/{sid}/attachment", get(attachment))
        .route("/v5/events/read", post(datahose_read))
        .route("/v5/datafeeds", post(datafeed_create).get(datafeed_list))
        .route("/v5/datafeeds/{id}", axum::routing::delete(datafeed_delete))
        .route("/v5/datafeeds/{id}/read", post(datafeed_read))
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            require_agent,
        ));
    Router::new()
        .route("/login/pubkey/authenticate", post(login_session))
        .route("/relay/pubkey/authenticate", post(login_key_manager))
        .nest("/pod", pod)
        .nest("/agent", agent)
        .route("/_sim/stats", get(sim_stats))
        .route("/_sim/ground-truth", get(sim_truth))
        .route("/_sim/apply-suppressions", post(sim_apply))
        .route("/_sim/expire-sessions", post(sim_expire))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(shared.clone(), faults_mw))
        .layer(middleware::from_fn_with_state(shared.clone(), latency_mw))
        .layer(middleware::from_fn_with_state(shared.clone(), stats_mw))
        .with_state(shared)
}

async fn not_found() -> Response {
    error(404, "HTTP 404 Not Found")
}

async fn method_not_allowed() -> Response {
    error(405, "HTTP 405 Method Not Allowed")
}

fn classify(path: &str) -> Option<Endpoint> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    Some(match segs.as_slice() {
        ["login" | "relay", ..] => Endpoint::Login,
        ["pod", "v2", "admin", "streams", "list"] => Endpoint::StreamsList,
        [
            "pod",
            "v1",
            "admin",
            "stream" | "room",
            _,
            "membership",
            "list",
        ] => Endpoint::Membership,
        ["pod", "v3", "users"] => Endpoint::Users,
        ["agent", "v4", "stream", _, "message"] => Endpoint::Messages,
        ["agent", "v1", "stream", _, "attachment"] => Endpoint::Attachment,
        ["agent", "v5", ..] => Endpoint::Events,
        ["pod" | "agent", ..] => Endpoint::Other,
        _ => return None,
    })
}

/// Every API endpoint waits [`SimConfig::latency`] before it answers (the control
/// endpoints under `/_sim` do not).
async fn latency_mw(State(st): St, req: Request, next: Next) -> Response {
    if !st.cfg.latency.is_zero() && classify(req.uri().path()).is_some() {
        tokio::time::sleep(st.cfg.latency).await;
    }
    next.run(req).await
}

async fn stats_mw(State(st): St, req: Request, next: Next) -> Response {
    st.count(|s| s.requests += 1);
    let resp = next.run(req).await;
    let code = resp.status().as_u16();
    st.count(|s| *s.by_status.entry(code).or_default() += 1);
    resp
}

async fn faults_mw(State(st): St, req: Request, next: Next) -> Response {
    let Some(ep) = classify(req.uri().path()) else {
        return next.run(req).await;
    };
    let plan = st.faults.before(ep);
    if let Some(delay) = plan.delay {
        st.count(|s| s.slowed += 1);
        tokio::time::sleep(delay).await;
    }
    match plan.reject {
        Some(Reject::Throttle {
            status,
            retry_after,
        }) => {
            st.count(|s| {
                if status == 429 {
                    s.throttled_429 += 1
                } else {
                    s.throttled_400 += 1
                }
            });
            let mut resp = error(
                status,
                if status == 429 {
                    "Too Many Requests: rate limit exceeded"
                } else {
                    "Too many requests, please retry later"
                },
            );
            if let Some(secs) = retry_after {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            return resp;
        }
        Some(Reject::ServerError(code)) => {
            st.count(|s| s.server_errors += 1);
            return error(code, "Internal server error, please retry");
        }
        None => {}
    }
    let resp = next.run(req).await;
    if resp.status() != StatusCode::OK {
        return resp;
    }
    let len = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (mut parts, body) = resp.into_parts();
    let len = len.or_else(|| axum::body::HttpBody::size_hint(&body).exact());
    let Some(len) = len.filter(|&l| l > 1) else {
        return Response::from_parts(parts, body);
    };
    if !st.faults.drop_after(ep) {
        return Response::from_parts(parts, body);
    }
    st.count(|s| s.dropped_connections += 1);
    parts.headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from_str(&len.to_string()).unwrap_or(HeaderValue::from_static("0")),
    );
    Response::from_parts(parts, truncate(body, len / 2))
}

/// Passes `keep` bytes of `body`, then fails so the connection is aborted mid-body.
fn truncate(body: Body, keep: u64) -> Body {
    let stream = body.into_data_stream();
    let s =
        futures_util::stream::unfold((stream, keep, false), |(mut st, left, done)| async move {
            if done {
                return None;
            }
            if left == 0 {
                // Let hyper flush the status line, headers and partial body first, so the
                // client really receives half a response before the connection dies.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                let e = std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "symphony-sim: simulated connection drop",
                );
                return Some((Err(e), (st, 0, true)));
            }
            match st.next().await {
                Some(Ok(chunk)) => {
                    let n = chunk.len() as u64;
                    if n <= left {
                        Some((Ok(chunk), (st, left - n, false)))
                    } else {
                        Some((Ok(chunk.slice(..left as usize)), (st, 0, false)))
                    }
                }
                Some(Err(e)) => Some((Err(std::io::Error::other(e)), (st, 0, true))),
                None => None,
            }
        });
    Body::from_stream(s)
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn unauthorized(st: &Shared, expired: bool) -> Response {
    st.count(|s| {
        s.unauthorized += 1;
        if expired {
            s.expired_sessions += 1;
        }
    });
    error(401, "Invalid session")
}

/// The session user, stored by the auth middleware.
#[derive(Clone)]
struct Caller(String);

async fn require_pod(State(st): St, mut req: Request, next: Next) -> Response {
    match st.check_token(
        header_str(req.headers(), "sessionToken"),
        TokenKind::Session,
    ) {
        Ok(user) => {
            req.extensions_mut().insert(Caller(user));
            next.run(req).await
        }
        Err(expired) => unauthorized(&st, expired),
    }
}

/// Admin endpoints need the User Provisioning role (checked after the session).
async fn require_provisioning(State(st): St, req: Request, next: Next) -> Response {
    if st.cfg.user_provisioning {
        next.run(req).await
    } else {
        error(
            403,
            "Forbidden: Caller lacks necessary entitlement (User Provisioning role)",
        )
    }
}

/// The stream behind a URL's stream id, readable by the caller: a URL carries ids in the
/// URL-safe alphabet (400 otherwise), an unknown id is 400, and a stream the service
/// account is not a member of answers the configured non-member status.
fn readable_stream(st: &Shared, sid: &str) -> Result<usize, Invalid> {
    if !url_safe(sid) {
        return Err(invalid(format!(
            "Invalid stream id {sid}: URLs carry ids in URL-safe base64"
        )));
    }
    let si = st
        .find_stream(sid)
        .ok_or_else(|| invalid(format!("Invalid stream id {sid}")))?;
    if !st.service_member(si) {
        st.count(|s| s.not_member += 1);
        return Err(Invalid(
            st.cfg.non_member_status,
            format!("User is not a member of stream {sid}"),
        ));
    }
    Ok(si)
}

async fn require_agent(State(st): St, mut req: Request, next: Next) -> Response {
    let user = match st.check_token(
        header_str(req.headers(), "sessionToken"),
        TokenKind::Session,
    ) {
        Ok(user) => user,
        Err(expired) => return unauthorized(&st, expired),
    };
    let key_manager = header_str(req.headers(), "keyManagerToken");
    if (key_manager.is_some() || st.cfg.key_manager_required)
        && let Err(expired) = st.check_token(key_manager, TokenKind::KeyManager)
    {
        return unauthorized(&st, expired);
    }
    req.extensions_mut().insert(Caller(user));
    next.run(req).await
}

// ---- login ------------------------------------------------------------------------------------

async fn login(st: &Shared, body: &[u8], kind: TokenKind) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return bad_request("Request body must be a JSON AuthenticateRequest");
    };
    let Some(token) = req.get("token").and_then(Value::as_str) else {
        st.count(|s| s.failed_logins += 1);
        return error(401, "Malformed authentication token: missing token");
    };
    match jwt::verify(
        token,
        &st.accounts,
        jwt::now_secs(),
        st.cfg.jwt_max_lifetime.as_secs(),
    ) {
        Ok(user) => {
            st.count(|s| s.logins += 1);
            let token = st.new_token(kind, user);
            json(
                StatusCode::OK,
                &Token {
                    name: if kind == TokenKind::Session {
                        "sessionToken"
                    } else {
                        "keyManagerToken"
                    },
                    token,
                },
            )
        }
        Err(why) => {
            st.count(|s| s.failed_logins += 1);
            error(401, &why.to_string())
        }
    }
}

async fn login_session(State(st): St, body: Bytes) -> Response {
    login(&st, &body, TokenKind::Session).await
}

async fn login_key_manager(State(st): St, body: Bytes) -> Response {
    login(&st, &body, TokenKind::KeyManager).await
}

// ---- pod --------------------------------------------------------------------------------------

fn upper_field(filter: &Value, key: &str, allowed: &[&str]) -> Result<Option<String>, Invalid> {
    match filter.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if allowed.contains(&s.to_ascii_uppercase().as_str()) => {
            Ok(Some(s.to_ascii_uppercase()))
        }
        Some(v) => Err(invalid(format!("Invalid value {v} for filter field {key}"))),
    }
}

async fn streams_list(State(st): St, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let q = Query::parse(q.as_deref());
    let (skip, limit) = tri!(paging(&q, 50, 100));
    let filter: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            _ => return bad_request("Request body must be a JSON stream filter"),
        }
    };
    let mut types = Vec::new();
    match filter.get("streamTypes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                let t = item
                    .get("type")
                    .and_then(Value::as_str)
                    .and_then(StreamType::parse);
                match t {
                    Some(t) => types.push(t),
                    None => return bad_request(&format!("Invalid stream type {item}")),
                }
            }
        }
        Some(v) => return bad_request(&format!("Invalid streamTypes {v}")),
    }
    let scope = tri!(upper_field(&filter, "scope", &["INTERNAL", "EXTERNAL"]));
    let origin = tri!(upper_field(&filter, "origin", &["INTERNAL", "EXTERNAL"]));
    let status = tri!(upper_field(&filter, "status", &["ACTIVE", "INACTIVE"]));
    let privacy = tri!(upper_field(&filter, "privacy", &["PUBLIC", "PRIVATE"]));
    let int_field = |k: &str| match filter.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid(format!("Invalid value {v} for filter field {k}"))),
    };
    let start = tri!(int_field("startDate"));
    let end = tri!(int_field("endDate"));
    let include_inactive = match filter.get("includeInactiveStreams") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(v) => return bad_request(&format!("Invalid includeInactiveStreams {v}")),
    };
    let ds = &st.ds;
    let unborn = st
        .live
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .unborn
        .clone();
    let matching: Vec<usize> = (0..ds.streams.len())
        .filter(|&i| {
            let s = &ds.streams[i];
            let creator_external = ds.users[s.creator].external;
            (types.is_empty() || types.contains(&s.kind))
                && scope
                    .as_deref()
                    .is_none_or(|v| (v == "EXTERNAL") == s.external)
                && origin
                    .as_deref()
                    .is_none_or(|v| (v == "EXTERNAL") == creator_external)
                && !unborn.contains(&i)
                && status
                    .as_deref()
                    .is_none_or(|v| (v == "ACTIVE") == st.is_active(i))
                && (include_inactive || st.is_active(i))
                && privacy
                    .as_deref()
                    .is_none_or(|v| (v == "PUBLIC") == (s.kind == StreamType::Room && s.public))
                && (start.is_none() && end.is_none() || {
                    let lo = start.unwrap_or(i64::MIN);
                    let hi = end.unwrap_or_else(now_ms);
                    s.members.iter().any(|m| {
                        (lo..=hi).contains(&m.joined)
                            || m.left.is_some_and(|l| (lo..=hi).contains(&l))
                    })
                })
        })
        .collect();
    let streams = matching
        .iter()
        .skip(skip)
        .take(limit)
        .map(|&i| {
            let mut info = ds.admin_stream_info(i);
            info.is_active = st.is_active(i);
            info
        })
        .collect();
    json(
        StatusCode::OK,
        &V2AdminStreamList {
            count: matching.len() as u64,
            skip: skip as u64,
            limit: limit as u64,
            filter,
            streams,
        },
    )
}

async fn stream_members(State(st): St, Path(id): Path<String>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    let (skip, limit) = tri!(paging(&q, 100, 1000));
    let past = tri!(q.boolean("includePastMembers")).unwrap_or(false);
    let Some(si) = st.find_stream(&id) else {
        return bad_request(&format!("Stream {id} not found"));
    };
    if st.ds.streams[si].kind == StreamType::Post {
        return bad_request(&format!(
            "Stream {id} is a POST stream: membership lists exist for IM, MIM and ROOM"
        ));
    }
    let all: Vec<_> = st.ds.streams[si]
        .members
        .iter()
        .filter(|m| past || m.left.is_none())
        .collect();
    let members = all
        .iter()
        .skip(skip)
        .take(limit)
        .map(|m| st.ds.member_info(m))
        .collect();
    json(
        StatusCode::OK,
        &V2MembershipList {
            count: all.len() as u64,
            skip: skip as u64,
            limit: limit as u64,
            members,
        },
    )
}

async fn room_members(State(st): St, Path(id): Path<String>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    let past = tri!(q.boolean("includePastMembers")).unwrap_or(false);
    let Some(si) = st.find_stream(&id) else {
        return bad_request(&format!("Room {id} not found"));
    };
    let s = &st.ds.streams[si];
    if s.kind != StreamType::Room {
        return bad_request(&format!("Stream {id} is not a room"));
    }
    let list: Vec<MemberInfo> = s
        .members
        .iter()
        .filter(|m| past || m.left.is_none())
        .map(|m| MemberInfo {
            id: st.ds.users[m.user].id,
            owner: m.owner,
            join_date: m.joined,
        })
        .collect();
    json(StatusCode::OK, &list)
}

async fn users(State(st): St, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    let local = tri!(q.boolean("local")).unwrap_or(false);
    let active = tri!(q.boolean("active"));
    let lists: Vec<(&str, String)> = ["uid", "email", "username"]
        .into_iter()
        .filter_map(|k| q.get(k).map(|v| (k, v)))
        .collect();
    if lists.len() != 1 {
        return bad_request("Exactly one of the search lists uid, email or username must be given");
    }
    let (kind, list) = &lists[0];
    let items: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return bad_request(&format!("The {kind} list is empty"));
    }
    if items.len() > 100 {
        return bad_request("Search lists may contain up to 100 elements");
    }
    let ds = &st.ds;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for item in items {
        let hit = match *kind {
            "uid" => match item.parse::<i64>() {
                Ok(id) => ds.user_index.get(&id).copied(),
                Err(_) => {
                    errors.push(UserError {
                        error: "invalid.format",
                        email: None,
                        id: Some(item.to_string()),
                    });
                    continue;
                }
            },
            "email" => {
                if !item.contains('@') {
                    errors.push(UserError {
                        error: "invalid.format",
                        email: Some(item.to_string()),
                        id: None,
                    });
                    continue;
                }
                ds.users.iter().position(|u| {
                    u.email
                        .as_deref()
                        .is_some_and(|e| e.eq_ignore_ascii_case(item))
                })
            }
            _ => ds
                .users
                .iter()
                .position(|u| !u.external && u.username.as_deref() == Some(item)),
        };
        if let Some(u) = hit
            && !(local && ds.users[u].external)
            && active != Some(false)
        {
            found.push(ds.user_v2(u));
        }
    }
    if found.is_empty() && errors.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    json(
        StatusCode::OK,
        &V2UserList {
            users: found,
            errors,
        },
    )
}

/// `GET /pod/v2/streams/{sid}/info`: like a stream's messages, served to its members only.
async fn stream_info(State(st): St, Path(sid): Path<String>) -> Response {
    let si = tri!(readable_stream(&st, &sid));
    let mut attributes = st.ds.stream_attributes(si);
    attributes.active = st.is_active(si);
    json(StatusCode::OK, &attributes)
}

async fn session_info(State(st): St, req: Request) -> Response {
    let name = req
        .extensions()
        .get::<Caller>()
        .map(|c| c.0.clone())
        .unwrap_or_default();
    match st
        .ds
        .users
        .iter()
        .position(|u| u.username.as_deref() == Some(name.as_str()))
    {
        Some(u) => json(StatusCode::OK, &st.ds.user_v2(u)),
        None => error(500, "Session user not found"),
    }
}

/// `POST /pod/v1/admin/room/{id}/setActive?active=`: deactivates or reactivates a room. A
/// deactivated room stays in the admin stream list (`isActive` false; the `status` filter
/// tells them apart) and its messages stay readable by its members: the spec only says no
/// message can be sent in it and its membership is locked.
async fn set_room_active(State(st): St, Path(id): Path<String>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    let Some(active) = tri!(q.boolean("active")) else {
        return bad_request("Query parameter active is required");
    };
    if !url_safe(&id) {
        return bad_request(&format!(
            "Invalid room id {id}: URLs carry ids in URL-safe base64"
        ));
    }
    let si = tri!(st.set_room_active(&id, active));
    json(StatusCode::OK, &st.ds.room_detail(si, active))
}

async fn suppress_message(State(st): St, Path(id): Path<String>, req: Request) -> Response {
    let name = req.extensions().get::<Caller>().map(|c| c.0.clone());
    let by = name
        .and_then(|n| {
            st.ds
                .users
                .iter()
                .position(|u| u.username.as_deref() == Some(n.as_str()))
        })
        .unwrap_or(st.ds.service_user);
    match st.suppress(&id, by) {
        None => bad_request(&format!("Message {id} not found")),
        Some((mi, fresh)) => {
            let date = if fresh {
                st.live.read().unwrap_or_else(|e| e.into_inner()).suppressed[mi].unwrap_or(0)
            } else {
                0
            };
            json(
                StatusCode::OK,
                &MessageSuppressionResponse {
                    message_id: payload_id(&st.ds.messages[mi].id),
                    suppressed: true,
                    suppression_date: date,
                },
            )
        }
    }
}

// ---- agent ------------------------------------------------------------------------------------

async fn messages(State(st): St, Path(sid): Path<String>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    let Some(since) = tri!(q.int("since")) else {
        return bad_request("Query parameter since is required");
    };
    let until = tri!(q.int("until"));
    let (skip, limit) = tri!(paging(&q, 50, 500));
    let si = tri!(readable_stream(&st, &sid));
    let list = &st.ds.by_stream[si];
    let msgs = &st.ds.messages;
    let first = list.partition_point(|&mi| msgs[mi].ts < since);
    let page: Vec<usize> = {
        let live = st.live.read().unwrap_or_else(|e| e.into_inner());
        list[first..]
            .iter()
            .copied()
            .take_while(|&mi| until.is_none_or(|u| msgs[mi].ts <= u))
            .filter(|&mi| live.suppressed[mi].is_none())
            .skip(skip)
            .take(limit)
            .collect()
    };
    if page.is_empty() {
        st.count(|s| s.empty_message_pages += 1);
        return StatusCode::NO_CONTENT.into_response();
    }
    st.count(|s| s.message_pages += 1);
    let body: Vec<_> = page.into_iter().map(|mi| st.ds.v4_message(mi)).collect();
    json(StatusCode::OK, &body)
}

async fn message_by_id(State(st): St, Path(id): Path<String>) -> Response {
    if !url_safe(&id) {
        return bad_request(&format!(
            "Invalid message id {id}: URLs carry ids in URL-safe base64"
        ));
    }
    let Some(mi) = st.find_message(&id) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let stream = &st.ds.streams[st.ds.messages[mi].stream];
    tri!(readable_stream(&st, &stream.id));
    if st.live.read().unwrap_or_else(|e| e.into_inner()).suppressed[mi].is_some() {
        return StatusCode::NO_CONTENT.into_response();
    }
    json(StatusCode::OK, &st.ds.v4_message(mi))
}

async fn attachment(State(st): St, Path(sid): Path<String>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    let (Some(raw_file), Some(message_id)) = (q.raw("fileId"), q.get("messageId")) else {
        return bad_request("Query parameters fileId and messageId are required");
    };
    let si = tri!(readable_stream(&st, &sid));
    let Some(mi) = st.find_message(&message_id) else {
        return bad_request(&format!("Message {message_id} not found"));
    };
    if st.ds.messages[mi].stream != si {
        return bad_request(&format!("Message {message_id} is not in stream {sid}"));
    }
    if st.live.read().unwrap_or_else(|e| e.into_inner()).suppressed[mi].is_some() {
        return bad_request(&format!("Message {message_id} has been suppressed"));
    }
    // The query value is decoded exactly once: the id as listed (percent-encoded) is found,
    // an id encoded twice is not.
    let once = percent_decode_str(raw_file)
        .decode_utf8_lossy()
        .into_owned();
    // A wall post's download also serves the files of the message it shares.
    let shared = st.ds.messages[mi].shares;
    let file = st
        .ds
        .file(&once)
        .filter(|(m, _)| *m == mi || Some(*m) == shared)
        .map(|(_, f)| f);
    let Some(file) = file else {
        return bad_request("Attachment not found in this message");
    };
    st.count(|s| s.attachment_downloads += 1);
    let chunks = content::base64_chunks(file.key, file.size).map(Ok::<_, std::io::Error>);
    let mut resp = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from_str(&content::base64_len(file.size).to_string())
            .unwrap_or(HeaderValue::from_static("0")),
    );
    resp
}

const EVENT_TYPES: &[&str] = &[
    "MESSAGESENT",
    "MESSAGESUPPRESSED",
    "SYMPHONYELEMENTSACTION",
    "SHAREDPOST",
    "INSTANTMESSAGECREATED",
    "ROOMCREATED",
    "ROOMUPDATED",
    "ROOMDEACTIVATED",
    "ROOMREACTIVATED",
    "USERREQUESTEDTOJOINROOM",
    "USERJOINEDROOM",
    "USERLEFTROOM",
    "ROOMMEMBERPROMOTEDTOOWNER",
    "ROOMMEMBERDEMOTEDFROMOWNER",
    "CONNECTIONREQUESTED",
    "CONNECTIONACCEPTED",
];

fn parse_ack(ack: Option<&Value>) -> Result<usize, Invalid> {
    match ack {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) if s.is_empty() => Ok(0),
        Some(Value::String(s)) => s
            .strip_prefix("sim-ack-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| invalid("Invalid ackId")),
        Some(_) => Err(invalid("Invalid ackId")),
    }
}

/// A datafeed read (the simulator's datafeeds report suppressions only), from an offset
/// in the log.
fn read_events(st: &Shared, from: usize) -> Response {
    let live = st.live.read().unwrap_or_else(|e| e.into_inner());
    let from = from.min(live.events.len());
    let to = (from + 100).min(live.events.len());
    let events = live.events[from..to]
        .iter()
        .filter(|e| matches!(e.kind, LogKind::Suppressed(_)))
        .map(|e| st.ds.v4_event(e))
        .collect();
    json(
        StatusCode::OK,
        &V5EventList {
            events,
            ack_id: format!("sim-ack-{to}"),
        },
    )
}

/// What one datahose read takes for `tag`: the acknowledged batch leaves the unacknowledged
/// ones, batches unacknowledged for too long come again, then new events of the wanted
/// types. `Err` for an ackId never given out.
fn take_events(
    st: &Shared,
    tag: &str,
    ack: &str,
    wanted: &dyn Fn(&LogEvent) -> bool,
) -> Result<Vec<usize>, Invalid> {
    let mut readers = st.datahose.lock().unwrap_or_else(|e| e.into_inner());
    let reader = readers.entry(tag.to_string()).or_default();
    if !ack.is_empty() {
        if !reader.issued.contains(ack) {
            return Err(invalid(format!(
                "Invalid ackId {ack}: it was not given out for this tag"
            )));
        }
        reader.unacked.remove(ack);
    }
    let due: Vec<String> = reader
        .unacked
        .iter()
        .filter(|(_, (_, sent))| sent.elapsed() >= st.cfg.datahose.redeliver_after)
        .map(|(ack, _)| ack.clone())
        .collect();
    let mut taken = Vec::new();
    for ack in due {
        if let Some((events, _)) = reader.unacked.remove(&ack) {
            st.count(|s| s.redelivered_events += events.len() as u64);
            taken.extend(events);
        }
    }
    let live = st.live.read().unwrap_or_else(|e| e.into_inner());
    while taken.len() < st.cfg.datahose.batch && reader.next < live.events.len() {
        if wanted(&live.events[reader.next]) {
            taken.push(reader.next);
        }
        reader.next += 1;
    }
    Ok(taken)
}

impl Shared {
    /// Registers a delivered batch for `tag` and returns its ackId.
    fn deliver(&self, tag: &str, taken: Vec<usize>) -> String {
        let ack_id = format!(
            "dh-{}",
            self.ack_counter.fetch_add(1, Ordering::Relaxed) + 1
        );
        let mut readers = self.datahose.lock().unwrap_or_else(|e| e.into_inner());
        let reader = readers.entry(tag.to_string()).or_default();
        reader.issued.insert(ack_id.clone());
        if !taken.is_empty() {
            reader
                .unacked
                .insert(ack_id.clone(), (taken, Instant::now()));
        }
        ack_id
    }

    /// A datahose reader for `tag` that takes one batch and never acknowledges it (a
    /// worker that died); returns how many events it took.
    pub(crate) fn take_without_ack(&self, tag: &str) -> usize {
        let taken = take_events(self, tag, "", &|_| true).unwrap_or_default();
        let n = taken.len();
        self.deliver(tag, taken);
        n
    }
}

async fn datahose_read(State(st): St, body: Bytes) -> Response {
    if !st.cfg.datahose_addon {
        return error(
            404,
            "HTTP 404 Not Found: the datahose is not enabled on this pod",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("Request body must be a JSON V5EventsReadBody");
    };
    if body.get("type").and_then(Value::as_str) != Some("datahose") {
        return bad_request("Field type must be \"datahose\"");
    }
    let tag = match body.get("tag").and_then(Value::as_str) {
        Some(t) if (1..=80).contains(&t.chars().count()) => t.to_string(),
        _ => return bad_request("Field tag is required (1 to 80 characters)"),
    };
    let wanted_types: Option<Vec<String>> = match body.get("eventTypes") {
        None | Some(Value::Null) => None,
        Some(Value::Array(types)) if !types.is_empty() => {
            let mut wanted = Vec::new();
            for t in types {
                match t.as_str() {
                    Some(t) if EVENT_TYPES.contains(&t) => wanted.push(t.to_string()),
                    _ => return bad_request(&format!("Invalid event type {t}")),
                }
            }
            Some(wanted)
        }
        Some(_) => return bad_request("eventTypes needs at least one value"),
    };
    let ack = match body.get("ackId") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(a)) => a.clone(),
        Some(_) => return bad_request("Invalid ackId"),
    };
    let wanted = |e: &LogEvent| {
        wanted_types
            .as_ref()
            .is_none_or(|w| w.iter().any(|t| t == e.kind.wire_name(&st.ds)))
    };
    // Long poll: with nothing to deliver, wait for events (or a redelivery) a while.
    let started = Instant::now();
    let mut ack_to_send = ack;
    let taken = loop {
        let taken = tri!(take_events(&st, &tag, &ack_to_send, &wanted));
        ack_to_send.clear();
        if !taken.is_empty() || started.elapsed() >= st.cfg.datahose.wait {
            break taken;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // No order: each batch goes out with neighbours swapped.
    let mut order = taken.clone();
    for pair in order.chunks_mut(2) {
        pair.reverse();
    }
    let events = {
        let live = st.live.read().unwrap_or_else(|e| e.into_inner());
        order
            .iter()
            .map(|&i| st.ds.v4_event(&live.events[i]))
            .collect()
    };
    let ack_id = st.deliver(&tag, taken);
    json(StatusCode::OK, &V5EventList { events, ack_id })
}

async fn datafeed_create(State(st): St) -> Response {
    let mut feeds = st.feeds.lock().unwrap_or_else(|e| e.into_inner());
    let id = format!(
        "{:032x}_f",
        feeds.len() as u128 + 0x5eed_0000 + st.cfg.seed as u128
    );
    feeds.push(id.clone());
    json(StatusCode::CREATED, &V5Datafeed { id, kind: "fanout" })
}

async fn datafeed_list(State(st): St) -> Response {
    let feeds = st.feeds.lock().unwrap_or_else(|e| e.into_inner());
    let list: Vec<V5Datafeed> = feeds
        .iter()
        .map(|id| V5Datafeed {
            id: id.clone(),
            kind: "fanout",
        })
        .collect();
    json(StatusCode::OK, &list)
}

async fn datafeed_delete(State(st): St, Path(id): Path<String>) -> Response {
    let mut feeds = st.feeds.lock().unwrap_or_else(|e| e.into_inner());
    match feeds.iter().position(|f| *f == id) {
        Some(i) => {
            feeds.remove(i);
            StatusCode::NO_CONTENT.into_response()
        }
        None => bad_request("The datafeed does not exist"),
    }
}

async fn datafeed_read(State(st): St, Path(id): Path<String>, body: Bytes) -> Response {
    if !st
        .feeds
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&id)
    {
        return bad_request("The feed no longer exists, please create a new feed");
    }
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return bad_request("Request body must be a JSON AckId"),
        }
    };
    let from = tri!(parse_ack(body.get("ackId")));
    read_events(&st, from)
}

// ---- simulator control ----------------------------------------------------------------------------

async fn sim_stats(State(st): St) -> Response {
    json(StatusCode::OK, &st.stats_snapshot())
}

async fn sim_truth(State(st): St) -> Response {
    json(StatusCode::OK, &st.truth())
}

async fn sim_apply(State(st): St) -> Response {
    let n = st.apply_suppressions();
    json(StatusCode::OK, &serde_json::json!({ "applied": n }))
}

async fn sim_expire(State(st): St) -> Response {
    let n = st.expire_sessions();
    json(StatusCode::OK, &serde_json::json!({ "expired": n }))
}
