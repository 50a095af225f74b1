//! Simulator configuration: the seeded data set's shape, the registered service accounts and
//! the fault injection options.

use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::SimError;
use crate::keys::{TEST_PUBLIC_KEY_PEM, TEST_USERNAME};

/// How many streams (conversations) of each Symphony type to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCounts {
    /// One-to-one conversations (`IM`).
    pub im: usize,
    /// Multi-party instant messages (`MIM`).
    pub mim: usize,
    /// Chat rooms (`ROOM`). With two or more, the last room is left without messages.
    pub room: usize,
    /// User walls (`POST`); only their owner posts.
    pub post: usize,
}

impl Default for StreamCounts {
    fn default() -> Self {
        StreamCounts {
            im: 4,
            mim: 2,
            room: 4,
            post: 1,
        }
    }
}

impl StreamCounts {
    /// Total number of streams.
    pub fn total(&self) -> usize {
        self.im + self.mim + self.room + self.post
    }
}

/// When the generated message suppressions (deletions) take effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SuppressionMode {
    /// At start every message is listed; the planned suppressions happen when
    /// [`crate::SimHandle::apply_suppressions`] (or `POST /_sim/apply-suppressions`) is called.
    /// This lets a test archive a message first and see its suppression afterwards.
    #[default]
    Pending,
    /// The planned suppressions happened before the simulator started: those messages are
    /// absent from message lists and their `MESSAGESUPPRESSED` events are already in the
    /// event log.
    Applied,
}

/// Which streams the service accounts are members of. A pod serves a stream's messages,
/// single messages and attachments only to its members; the admin endpoints (stream list,
/// membership lists) see every stream whatever the caller's memberships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Membership {
    /// Every stream, as a service account added to each conversation.
    All,
    /// Every other stream in creation order (the first, third, ...), as on a pod where the
    /// account was added to some conversations only (the default).
    #[default]
    Half,
    /// No stream: only the datahose and the admin endpoints show anything.
    None,
}

impl Membership {
    /// Whether the service accounts are members of the stream at `index` (creation order).
    pub fn includes(self, index: usize) -> bool {
        match self {
            Membership::All => true,
            Membership::Half => index.is_multiple_of(2),
            Membership::None => false,
        }
    }
}

impl FromStr for Membership {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "all" => Ok(Membership::All),
            "half" => Ok(Membership::Half),
            "none" => Ok(Membership::None),
            _ => Err(SimError::Config(format!(
                "unknown membership {s:?} (all, half or none)"
            ))),
        }
    }
}

/// How the datahose (`POST /agent/v5/events/read`) behaves. Like a pod's: it delivers each
/// event to one of the readers sharing a tag, in no particular order (each batch is
/// shuffled), at least once (a batch whose `ackId` is not sent back within
/// [`DatahoseConfig::redeliver_after`] is delivered again), and a read with nothing to
/// deliver waits up to [`DatahoseConfig::wait`] (long poll) before answering an empty list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatahoseConfig {
    /// Whether the feed holds the pod's history: every generated message (`MESSAGESENT`,
    /// `SHAREDPOST`) and each room's joins, leaves and an update (`ROOMUPDATED`), as if it had
    /// been read since the pod started. Off by default: then it holds only what happens
    /// while the simulator runs (suppressions).
    pub history: bool,
    /// How long a read with nothing to deliver waits (default 1 s; a pod waits longer).
    pub wait: Duration,
    /// After how long a delivered batch without acknowledgement is delivered again
    /// (default 30 s, as a pod).
    pub redeliver_after: Duration,
    /// Most events in one answer (default 100).
    pub batch: usize,
}

impl Default for DatahoseConfig {
    fn default() -> Self {
        DatahoseConfig {
            history: false,
            wait: Duration::from_secs(1),
            redeliver_after: Duration::from_secs(30),
            batch: 100,
        }
    }
}

/// Streams added to the generated pod in bulk, for pods of thousands of streams: cheap to
/// generate (plain-text messages, no attachments, edits or replies) and deterministic from
/// the seed. Their messages come after every other message of the pod, so the rest of the
/// data set is the same with or without them up to the planned suppressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExtraStreams {
    /// Extra chat rooms (`ROOM`), three to five members each.
    pub rooms: usize,
    /// Extra one-to-one conversations (`IM`).
    pub ims: usize,
    /// Messages in each extra stream.
    pub messages_each: usize,
}

impl ExtraStreams {
    /// Number of extra streams.
    pub fn total(&self) -> usize {
        self.rooms + self.ims
    }
}

/// A service account that may log in with an RS512 JWT signed by its private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    /// The username, to be sent as the JWT's `sub` claim.
    pub username: String,
    /// Its RSA public key as PEM (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`).
    pub public_key_pem: String,
}

impl ServiceAccount {
    /// The default test account: [`TEST_USERNAME`] with [`TEST_PUBLIC_KEY_PEM`].
    pub fn test_account() -> Self {
        ServiceAccount {
            username: TEST_USERNAME.to_string(),
            public_key_pem: TEST_PUBLIC_KEY_PEM.to_string(),
        }
    }
}

/// Full simulator configuration. Build it with [`SimConfig::builder`] or start from
/// [`SimConfig::default`] and set fields. Everything generated depends only on these values:
/// the same configuration always yields the same data set and ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Seed of the data generator (and of probabilistic faults).
    pub seed: u64,
    /// Address to listen on (default `127.0.0.1`).
    pub bind: IpAddr,
    /// Port to listen on; `0` picks a free port (default).
    pub port: u16,
    /// Number of streams of each type.
    pub streams: StreamCounts,
    /// Total number of messages spread over the streams (edits count as messages).
    pub messages: usize,
    /// Users of the simulated pod's own company (every seventh is a system account without
    /// email). At least 4.
    pub internal_users: usize,
    /// Users from other companies (no email visible). May be 0 (no external streams then).
    pub external_users: usize,
    /// Unix time in milliseconds around which the message timeline starts.
    pub start_time_ms: i64,
    /// Upper bound of the ordinary attachments' sizes in bytes (they range from 1 byte up).
    pub max_small_attachment_bytes: u64,
    /// Size in bytes of one extra large attachment (0 for none), e.g. 50 MB. Its content is
    /// generated on the fly when downloaded, never stored.
    pub large_attachment_bytes: u64,
    /// Whether to include a message whose plain text is exactly 60,000 characters.
    pub max_length_message: bool,
    /// Whether every tenth ordinary message without files shows a small chart inline (an
    /// `<img>` with a `data:` URL) instead of its text; off by default, so the seeded data
    /// stays as it is.
    pub inline_images: bool,
    /// When the planned suppressions take effect.
    pub suppressions: SuppressionMode,
    /// Accounts allowed to log in (default: the test account only).
    pub service_accounts: Vec<ServiceAccount>,
    /// Lifetime of session and key-manager tokens (default: one hour, a pod's shortest
    /// setting; `None` = unlimited).
    pub session_ttl: Option<Duration>,
    /// Streams the service accounts are members of (default: half of them).
    pub membership: Membership,
    /// Status a non-member gets for a stream's messages, a single message or an attachment:
    /// 403 (default) or 400, as some agents answer.
    pub non_member_status: u16,
    /// Whether the service accounts hold the User Provisioning role, which the admin
    /// endpoints (stream list, membership lists, suppression) need (default: yes; without
    /// it they answer 403).
    pub user_provisioning: bool,
    /// Whether agent endpoints need a `keyManagerToken` (default: yes). A pod with Simplified
    /// Key Delivery takes the session token alone; a key-manager token sent anyway must
    /// still be valid.
    pub key_manager_required: bool,
    /// Whether the pod has the datahose add-on (default: yes). Without it the datahose
    /// endpoint (`POST /agent/v5/events/read`) answers 404 to an authenticated caller.
    pub datahose_addon: bool,
    /// The datahose's behaviour.
    pub datahose: DatahoseConfig,
    /// Maximum distance between now and a login JWT's `exp` (Symphony: 5 minutes).
    pub jwt_max_lifetime: Duration,
    /// Fault injection (off by default).
    pub faults: Faults,
    /// How long every API endpoint (login, pod, agent; not `/_sim`) waits before it
    /// answers, as a remote pod's round trip does (default: none).
    pub latency: Duration,
    /// Streams added in bulk (default: none).
    pub extra_streams: ExtraStreams,
    /// Streams generated with the pod but created at run time, one by one, by
    /// [`crate::SimHandle::create_stream`] (default: none): until then nothing shows them
    /// (lists, ids, datahose, ground truth). They are created after every other message,
    /// with the service account as a member, and their messages follow.
    pub later_streams: ExtraStreams,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            streams: StreamCounts::default(),
            messages: 600,
            internal_users: 14,
            external_users: 4,
            start_time_ms: 1_704_067_200_000, // 2024-01-01T00:00:00Z
            max_small_attachment_bytes: 96 * 1024,
            large_attachment_bytes: 3 * 1024 * 1024,
            max_length_message: true,
            inline_images: false,
            suppressions: SuppressionMode::Pending,
            service_accounts: vec![ServiceAccount::test_account()],
            session_ttl: Some(Duration::from_secs(3600)),
            membership: Membership::default(),
            non_member_status: 403,
            user_provisioning: true,
            key_manager_required: true,
            datahose_addon: true,
            datahose: DatahoseConfig::default(),
            jwt_max_lifetime: Duration::from_secs(300),
            faults: Faults::default(),
            latency: Duration::ZERO,
            extra_streams: ExtraStreams::default(),
            later_streams: ExtraStreams::default(),
        }
    }
}

impl SimConfig {
    /// Starts a builder from the defaults.
    pub fn builder() -> SimConfigBuilder {
        SimConfigBuilder(SimConfig::default())
    }

    /// Checks the configuration is usable.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.internal_users < 4 {
            return Err(SimError::Config("internal_users must be at least 4".into()));
        }
        if self.streams.total() == 0 && self.messages > 0 {
            return Err(SimError::Config("messages need at least one stream".into()));
        }
        if self.service_accounts.is_empty() {
            return Err(SimError::Config(
                "at least one service account is needed".into(),
            ));
        }
        if self.max_small_attachment_bytes == 0 {
            return Err(SimError::Config(
                "max_small_attachment_bytes must be at least 1".into(),
            ));
        }
        if self.datahose.batch == 0 {
            return Err(SimError::Config(
                "the datahose batch must be at least 1".into(),
            ));
        }
        if !matches!(self.non_member_status, 400 | 403) {
            return Err(SimError::Config(format!(
                "non_member_status must be 400 or 403, not {}",
                self.non_member_status
            )));
        }
        self.faults.validate()
    }
}

/// Chained builder for [`SimConfig`].
#[derive(Debug, Clone)]
pub struct SimConfigBuilder(SimConfig);

impl SimConfigBuilder {
    /// Sets the generator seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }
    /// Sets the listening address.
    pub fn bind(mut self, bind: IpAddr) -> Self {
        self.0.bind = bind;
        self
    }
    /// Sets the listening port (0 = any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.0.port = port;
        self
    }
    /// Sets the number of IM, MIM, ROOM and POST streams.
    pub fn streams(mut self, im: usize, mim: usize, room: usize, post: usize) -> Self {
        self.0.streams = StreamCounts {
            im,
            mim,
            room,
            post,
        };
        self
    }
    /// Sets the total number of messages.
    pub fn messages(mut self, messages: usize) -> Self {
        self.0.messages = messages;
        self
    }
    /// Sets the number of internal and external users.
    pub fn users(mut self, internal: usize, external: usize) -> Self {
        self.0.internal_users = internal;
        self.0.external_users = external;
        self
    }
    /// Sets the timeline start (Unix ms).
    pub fn start_time_ms(mut self, ms: i64) -> Self {
        self.0.start_time_ms = ms;
        self
    }
    /// Sets the upper bound of ordinary attachment sizes.
    pub fn max_small_attachment_bytes(mut self, bytes: u64) -> Self {
        self.0.max_small_attachment_bytes = bytes;
        self
    }
    /// Sets the size of the one large attachment (0 = none).
    pub fn large_attachment_bytes(mut self, bytes: u64) -> Self {
        self.0.large_attachment_bytes = bytes;
        self
    }
    /// Includes (or not) the 60,000-character message.
    pub fn max_length_message(mut self, on: bool) -> Self {
        self.0.max_length_message = on;
        self
    }
    /// Turns on (or off) the messages showing an image inline ([`SimConfig::inline_images`]).
    pub fn inline_images(mut self, on: bool) -> Self {
        self.0.inline_images = on;
        self
    }
    /// Sets when planned suppressions take effect.
    pub fn suppressions(mut self, mode: SuppressionMode) -> Self {
        self.0.suppressions = mode;
        self
    }
    /// Registers one more service account.
    pub fn service_account(mut self, username: &str, public_key_pem: &str) -> Self {
        self.0.service_accounts.push(ServiceAccount {
            username: username.to_string(),
            public_key_pem: public_key_pem.to_string(),
        });
        self
    }
    /// Sets the session/key-manager token lifetime (`None`: tokens never expire).
    pub fn session_ttl(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.0.session_ttl = ttl.into();
        self
    }
    /// Sets the streams the service accounts are members of.
    pub fn membership(mut self, membership: Membership) -> Self {
        self.0.membership = membership;
        self
    }
    /// Sets the status non-members get for messages and attachments (400 or 403).
    pub fn non_member_status(mut self, status: u16) -> Self {
        self.0.non_member_status = status;
        self
    }
    /// Requires a key-manager token on agent endpoints, or not (Simplified Key Delivery).
    pub fn key_manager_required(mut self, on: bool) -> Self {
        self.0.key_manager_required = on;
        self
    }
    /// Sets the datahose's behaviour.
    pub fn datahose(mut self, datahose: DatahoseConfig) -> Self {
        self.0.datahose = datahose;
        self
    }
    /// Gives the pod the datahose add-on, or not.
    pub fn datahose_addon(mut self, on: bool) -> Self {
        self.0.datahose_addon = on;
        self
    }
    /// Grants or withholds the User Provisioning role.
    pub fn user_provisioning(mut self, on: bool) -> Self {
        self.0.user_provisioning = on;
        self
    }
    /// Makes every API endpoint wait `latency` before answering.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.0.latency = latency;
        self
    }
    /// Adds `rooms` rooms and `ims` IMs of `messages_each` plain messages each.
    pub fn extra_streams(mut self, rooms: usize, ims: usize, messages_each: usize) -> Self {
        self.0.extra_streams = ExtraStreams {
            rooms,
            ims,
            messages_each,
        };
        self
    }
    /// Holds back `rooms` rooms and `ims` IMs of `messages_each` plain messages each, for
    /// [`crate::SimHandle::create_stream`] to create at run time.
    pub fn later_streams(mut self, rooms: usize, ims: usize, messages_each: usize) -> Self {
        self.0.later_streams = ExtraStreams {
            rooms,
            ims,
            messages_each,
        };
        self
    }
    /// Sets the fault injection options.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.0.faults = faults;
        self
    }
    /// Finishes the configuration.
    pub fn build(self) -> SimConfig {
        self.0
    }
}

/// Endpoint families, used to aim faults at some endpoints only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Endpoint {
    /// `/login/pubkey/authenticate` and `/relay/pubkey/authenticate`. Faults never hit login
    /// unless a fault's `endpoints` names it explicitly.
    Login,
    /// `POST /pod/v2/admin/streams/list`.
    StreamsList,
    /// The membership lists (`/pod/v1/admin/stream/{id}/membership/list`,
    /// `/pod/v1/admin/room/{id}/membership/list`).
    Membership,
    /// `GET /pod/v3/users`.
    Users,
    /// `GET /agent/v4/stream/{sid}/message` (message pages).
    Messages,
    /// `GET /agent/v1/stream/{sid}/attachment`.
    Attachment,
    /// Datafeed/datahose event reads (`/agent/v5/...`).
    Events,
    /// Any other `/pod` or `/agent` endpoint.
    Other,
}

impl FromStr for Endpoint {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "login" => Endpoint::Login,
            "streams" | "streamslist" => Endpoint::StreamsList,
            "membership" | "members" => Endpoint::Membership,
            "users" => Endpoint::Users,
            "messages" => Endpoint::Messages,
            "attachment" | "attachments" => Endpoint::Attachment,
            "events" => Endpoint::Events,
            "other" => Endpoint::Other,
            _ => return Err(SimError::Config(format!("unknown endpoint {s:?}"))),
        })
    }
}

/// When a fault fires. Requests are counted per fault, over the requests it may hit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Trigger {
    /// Fires on the n-th, 2n-th, 3n-th... eligible request (n ≥ 1).
    EveryNth(u64),
    /// Fires on each eligible request with this probability, decided by a hash of the seed
    /// and the request's number: the same request sequence always sees the same faults.
    Probability(f64),
}

/// A throttling fault: a burst of rejections carrying `Retry-After` (seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimitFault {
    /// When a burst starts.
    pub trigger: Trigger,
    /// How many consecutive eligible requests are rejected once triggered (≥ 1).
    pub burst: u32,
    /// Value of the `Retry-After` header, in seconds; `None` sends no header (some agents
    /// throttle with a bare 400 whose message says to retry later).
    pub retry_after_secs: Option<u64>,
    /// Endpoints it may hit (empty = every `/pod` and `/agent` endpoint).
    pub endpoints: Vec<Endpoint>,
}

/// A server error fault (HTTP 5xx with the spec's Error body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerErrorFault {
    /// When it fires.
    pub trigger: Trigger,
    /// Status to answer (500..=599).
    pub status: u16,
    /// Endpoints it may hit (empty = every `/pod` and `/agent` endpoint).
    pub endpoints: Vec<Endpoint>,
}

/// A slow response: the answer is delayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlowFault {
    /// When it fires.
    pub trigger: Trigger,
    /// Delay before the response is produced.
    pub delay: Duration,
    /// Endpoints it may hit (empty = every `/pod` and `/agent` endpoint).
    pub endpoints: Vec<Endpoint>,
}

/// A connection dropped mid-body: the status line, headers (with the full `Content-Length`)
/// and about half of the body are sent, then the connection is aborted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropFault {
    /// When it fires (counted over successful responses with a body on its endpoints).
    pub trigger: Trigger,
    /// Endpoints it may hit (empty = message pages and attachments).
    pub endpoints: Vec<Endpoint>,
}

/// Fault injection options; all off by default. Deterministic for a given seed and request
/// sequence.
///
/// Order of evaluation per request: slow, 429 burst, 400-with-Retry-After burst, 5xx, then
/// authentication (where session expiry applies), the endpoint itself, and last the dropped
/// connection.
///
/// From a string (the binary's `--faults`), comma-separated items, each `kind[:key=value]*`:
///
/// - `429[:every=N|:p=P][:burst=B][:retry=S][:on=EP+EP]` — 429 bursts with `Retry-After: S`
/// - `400[:...same keys...]` — 400 carrying `Retry-After` (older agents); `retry=none`
///   sends the 400 without the header
/// - `expire:after=N` — a session token expires after serving N requests (then 401)
/// - `5xx[:every=N|:p=P][:status=503][:on=...]` — server errors
/// - `slow[:every=N|:p=P][:ms=D][:on=...]` — responses delayed by D ms
/// - `drop[:every=N|:p=P][:on=...]` — connection dropped mid-body
///
/// `EP` is one of `login streams membership users messages attachment events other`.
/// Example: `429:every=40:burst=3:retry=1,expire:after=100,drop:every=7:on=attachment`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    /// HTTP 429 bursts with `Retry-After`.
    pub rate_limit_429: Option<RateLimitFault>,
    /// HTTP 400 bursts carrying `Retry-After`, as older agents throttle.
    pub rate_limit_400: Option<RateLimitFault>,
    /// A session token stops working (401) after it has served this many requests, so the
    /// client must log in again.
    pub session_expires_after_requests: Option<u64>,
    /// HTTP 5xx answers.
    pub server_error: Option<ServerErrorFault>,
    /// Delayed answers.
    pub slow: Option<SlowFault>,
    /// Connections dropped mid-body.
    pub drop_connection: Option<DropFault>,
}

impl Faults {
    /// True when no fault is configured.
    pub fn is_empty(&self) -> bool {
        *self == Faults::default()
    }

    fn validate(&self) -> Result<(), SimError> {
        let check = |t: &Trigger| match t {
            Trigger::EveryNth(0) => Err(SimError::Config("every=0 is not allowed".into())),
            Trigger::Probability(p) if !(0.0..=1.0).contains(p) => Err(SimError::Config(format!(
                "probability {p} is outside 0..=1"
            ))),
            _ => Ok(()),
        };
        for f in [&self.rate_limit_429, &self.rate_limit_400]
            .into_iter()
            .flatten()
        {
            check(&f.trigger)?;
            if f.burst == 0 {
                return Err(SimError::Config("burst must be at least 1".into()));
            }
        }
        if let Some(f) = &self.server_error {
            check(&f.trigger)?;
            if !(500..=599).contains(&f.status) {
                return Err(SimError::Config(format!(
                    "{} is not a 5xx status",
                    f.status
                )));
            }
        }
        if let Some(f) = &self.slow {
            check(&f.trigger)?;
        }
        if let Some(f) = &self.drop_connection {
            check(&f.trigger)?;
        }
        if self.session_expires_after_requests == Some(0) {
            return Err(SimError::Config("expire:after must be at least 1".into()));
        }
        Ok(())
    }
}

impl FromStr for Faults {
    type Err = SimError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut faults = Faults::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let mut parts = item.split(':');
            let kind = parts.next().unwrap_or_default().to_ascii_lowercase();
            let mut trigger = None;
            let mut burst = 3u32;
            let mut retry = Some(1u64);
            let mut status = 503u16;
            let mut ms = 500u64;
            let mut after = None;
            let mut endpoints = Vec::new();
            for kv in parts {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| SimError::Config(format!("expected key=value in {kv:?}")))?;
                let bad = |_| SimError::Config(format!("bad value in {kv:?}"));
                match k {
                    "every" => trigger = Some(Trigger::EveryNth(v.parse().map_err(bad)?)),
                    "p" => {
                        trigger = Some(Trigger::Probability(
                            v.parse()
                                .map_err(|_| SimError::Config(format!("bad {kv:?}")))?,
                        ))
                    }
                    "burst" => burst = v.parse().map_err(bad)?,
                    "retry" if v == "none" => retry = None,
                    "retry" => retry = Some(v.parse().map_err(bad)?),
                    "status" => status = v.parse().map_err(bad)?,
                    "ms" => ms = v.parse().map_err(bad)?,
                    "after" => after = Some(v.parse().map_err(bad)?),
                    "on" => {
                        for ep in v.split('+') {
                            endpoints.push(ep.parse()?);
                        }
                    }
                    _ => return Err(SimError::Config(format!("unknown key {k:?} in {item:?}"))),
                }
            }
            let trigger = trigger.unwrap_or(Trigger::EveryNth(10));
            match kind.as_str() {
                "429" | "400" => {
                    let f = RateLimitFault {
                        trigger,
                        burst,
                        retry_after_secs: retry,
                        endpoints,
                    };
                    if kind == "429" {
                        faults.rate_limit_429 = Some(f);
                    } else {
                        faults.rate_limit_400 = Some(f);
                    }
                }
                "expire" => {
                    faults.session_expires_after_requests = Some(
                        after
                            .ok_or_else(|| SimError::Config("expire needs after=N".to_string()))?,
                    )
                }
                "5xx" | "500" | "503" => {
                    faults.server_error = Some(ServerErrorFault {
                        trigger,
                        status: if kind == "5xx" {
                            status
                        } else {
                            kind.parse().unwrap_or(500)
                        },
                        endpoints,
                    })
                }
                "slow" => {
                    faults.slow = Some(SlowFault {
                        trigger,
                        delay: Duration::from_millis(ms),
                        endpoints,
                    })
                }
                "drop" => faults.drop_connection = Some(DropFault { trigger, endpoints }),
                other => return Err(SimError::Config(format!("unknown fault kind {other:?}"))),
            }
        }
        faults.validate()?;
        Ok(faults)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_spec_string_parses_every_kind() {
        let f: Faults = "429:every=40:burst=2:retry=3,400:p=0.5,expire:after=9,5xx:every=5:status=502,slow:every=3:ms=20,drop:every=7:on=attachment+messages"
            .parse()
            .unwrap();
        let r = f.rate_limit_429.unwrap();
        assert_eq!(r.trigger, Trigger::EveryNth(40));
        assert_eq!((r.burst, r.retry_after_secs), (2, Some(3)));
        assert_eq!(f.rate_limit_400.unwrap().trigger, Trigger::Probability(0.5));
        assert_eq!(f.session_expires_after_requests, Some(9));
        assert_eq!(f.server_error.unwrap().status, 502);
        assert_eq!(f.slow.unwrap().delay, Duration::from_millis(20));
        assert_eq!(
            f.drop_connection.unwrap().endpoints,
            vec![Endpoint::Attachment, Endpoint::Messages]
        );
        let bare: Faults = "400:every=2:retry=none".parse().unwrap();
        assert_eq!(bare.rate_limit_400.unwrap().retry_after_secs, None);
        assert!("bogus".parse::<Faults>().is_err());
        assert!("429:every=0".parse::<Faults>().is_err());
        assert!("".parse::<Faults>().unwrap().is_empty());
    }
}
