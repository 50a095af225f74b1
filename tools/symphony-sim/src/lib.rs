//! # symphony-sim — a spec-true Symphony pod/agent/key-manager simulator
//!
//! Serves, over real HTTP on one origin (like an all-in-one deployment), the Symphony REST
//! endpoints an archiving connector uses, with field names, types, status codes and page
//! limits taken from the FINOS OpenAPI specs (pod 20.17, agent 25.8, login 20.14). The data
//! is generated from a seed, and [`GroundTruth`] describes exactly what was generated so tests
//! can compare an archive against it. Faults (throttling, expired sessions, 5xx, slow answers,
//! dropped connections) can be injected deterministically.
//!
//! ## Starting it
//!
//! ```no_run
//! # async fn demo() -> Result<(), symphony_sim::SimError> {
//! use symphony_sim::{SimConfig, start, jwt::sign_test_jwt};
//! let sim = start(SimConfig::builder().seed(7).messages(300).build()).await?;
//! let base = sim.base_url(); // http://127.0.0.1:<port>
//! let jwt = sign_test_jwt()?; // POST {base}/login/pubkey/authenticate {"token": jwt}
//! let truth = sim.ground_truth();
//! # let _ = (base, jwt, truth);
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Without an async runtime, [`start_blocking`] runs the server on its own thread and
//! returns a [`BlockingSim`]; dropping it stops the server.
//!
//! ## Endpoints
//!
//! | Endpoint | Answer |
//! | --- | --- |
//! | `POST /login/pubkey/authenticate` `{"token": jwt}` | `Token` `{"name":"sessionToken","token":..}`; 401 `Error` for a bad signature, unknown user, non-RS512, expired or > 5 min `exp` |
//! | `POST /relay/pubkey/authenticate` | same, `{"name":"keyManagerToken",..}` |
//! | `POST /pod/v2/admin/streams/list?skip&limit` (limit ≤ 100, default 50) | `V2AdminStreamList` filtered by `V2AdminStreamFilter` (`streamTypes`, `scope`, `origin`, `status`, `privacy`, `startDate`/`endDate` on membership changes) and `includeInactiveStreams` |
//! | `GET /pod/v1/admin/stream/{id}/membership/list?skip&limit` (≤ 1000, default 100) | `V2MembershipList`; current members, plus past ones with `includePastMembers=true` (a simulator extension; the spec defines that flag on the room list); IM, MIM and ROOM only (400 for a POST stream) |
//! | `GET /pod/v1/admin/room/{id}/membership/list?includePastMembers` | `MembershipList` (`[{id, owner, joinDate}]`), rooms only |
//! | `GET /pod/v3/users?uid=..|email=..|username=..&local&active` (≤ 100 items) | `V2UserList` `{users, errors}`; external users with their `emailAddress`, as a User Provisioning caller sees them; 204 when nothing matches |
//! | `GET /pod/v2/sessioninfo` | `UserV2` of the logged-in service account |
//! | `POST /pod/v1/admin/messagesuppression/{id}/suppress` | `MessageSuppressionResponse`; suppresses at run time |
//! | `POST /pod/v1/admin/room/{id}/setActive?active=` | `RoomDetail`; deactivates or reactivates a room (400 for other streams); a deactivated room stays listed (`isActive` false) and readable |
//! | `GET /agent/v4/stream/{sid}/message?since&until&skip&limit` (limit ≤ 500, default 50) | JSON array of `V4Message` in timestamp order, `since`/`until` inclusive; **204 with no body** when empty |
//! | `GET /agent/v1/message/{id}` | one `V4Message`; 204 if unknown or suppressed |
//! | (in both) | a wall post sharing a message carries it whole as `sharedMessage`; the shared message's files download with the wall post's stream and message ids |
//! | `GET /agent/v1/stream/{sid}/attachment?fileId&messageId` | the file, base64 (standard alphabet, padded), `application/octet-stream`, streamed with a `Content-Length`; `fileId` is percent-decoded exactly once |
//! | `POST /agent/v5/events/read` (datahose), `POST/GET /agent/v5/datafeeds`, `DELETE /agent/v5/datafeeds/{id}`, `POST /agent/v5/datafeeds/{id}/read` | `V5EventList`. The datahose long-polls, gives each batch to one reader of a tag, out of order, again when its ackId does not come back in time (at least once), and with [`DatahoseConfig::history`] holds every message (`MESSAGESENT`, `SHAREDPOST`) and room join, leave and update; suppressions (`MESSAGESUPPRESSED`) join it as they happen. Datafeeds report suppressions only |
//! | anything else under any prefix | 404 (405 for a wrong method) with the spec's `Error` body |
//!
//! Pod endpoints need the header `sessionToken`; agent endpoints need `sessionToken` and
//! `keyManagerToken`. A missing, unknown or expired token gives 401
//! `{"code":401,"message":"Invalid session"}`; tokens expire after an hour by default
//! ([`SimConfig::session_ttl`]). Invalid parameters (limit above the maximum, unknown
//! stream, > 100 users...) give 400 with the `Error` body.
//!
//! As on a pod: the admin endpoints (`/pod/v*/admin/...`) need the User Provisioning role
//! (403 without it, [`SimConfig::user_provisioning`]); a stream's messages, a single message
//! and attachments are served to members of the stream only (403, or 400 with
//! [`SimConfig::non_member_status`]), and the service account is a member of half the
//! streams by default ([`Membership`]); ids in URL paths must be URL-safe base64 (400
//! otherwise), while JSON answers carry them in standard base64 with padding.
//!
//! Simulator control (not part of Symphony): `GET /_sim/stats`, `GET /_sim/ground-truth`,
//! `POST /_sim/apply-suppressions`, `POST /_sim/expire-sessions`; on [`SimHandle`], streams
//! come and go at run time ([`SimHandle::create_stream`] of [`SimConfig::later_streams`],
//! [`SimHandle::set_room_active`], [`SimHandle::add_service_account`],
//! [`SimHandle::remove_service_account`]).
//!
//! ## Data
//!
//! See [`SimConfig`]. Stream ids and message ids are 25 bytes, like real ids: standard
//! base64 with padding in JSON answers, URL-safe without padding in URLs and in the
//! [`GroundTruth`]. Attachment ids look like real ones (`internal_<uid>/<base64>`) and are
//! listed percent-encoded (`internal_<uid>%2F...%3D%3D`); the download decodes the query
//! value once, so an id encoded twice is not found. External users have emails at their
//! companies' domains. Messages include mentions, hashtags, cashtags,
//! emoji, links, bold/italic, tables, code and pre blocks, lists, many scripts and emoji,
//! XML special characters, replies, forwards, edit chains (`replacing`, `replacedBy`,
//! `initialMessageId`, `initialTimestamp`), an attachment-only message, a 60,000-character
//! message, attachments from 1 byte up plus one large one, and same-millisecond runs across
//! the 50/100/500 page boundaries. Deletions are suppressions: see [`SuppressionMode`].
//! Room joins and leaves are not messages in Symphony's lists; they show as `joinDate` and
//! past members.
//!
//! ## Plain-text rule of [`TruthMessage::text`]
//!
//! The PresentationML text nodes in order, entities decoded; `<br/>` and the start/end of
//! each block (`p`, `li`, `tr`, `pre`, `table`, `ul`, `ol`) give one line break (none at the
//! start or end); table cells in a row are separated by a tab. [`normalize_text`] collapses
//! whitespace for tolerant comparisons.

#![warn(missing_docs)]

mod api;
mod config;
mod content;
mod data;
mod error;
mod faults;
pub mod jwt;
mod keys;
mod presentation;
mod server;
mod stats;
mod truth;

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

pub use config::{
    DatahoseConfig, DropFault, Endpoint, ExtraStreams, Faults, Membership, RateLimitFault,
    ServerErrorFault, ServiceAccount, SimConfig, SimConfigBuilder, SlowFault, StreamCounts,
    SuppressionMode, Trigger,
};
pub use error::SimError;
pub use keys::{TEST_PRIVATE_KEY_PEM, TEST_PUBLIC_KEY_PEM, TEST_USERNAME, test_private_key_path};
pub use stats::Stats;
pub use truth::{
    GroundTruth, Relation, StreamType, TruthAttachment, TruthEvent, TruthInlineImage, TruthMember,
    TruthMessage, TruthStream, TruthUser, normalize_text,
};

/// Generates the data set of `config` and builds its ground truth without serving anything
/// (e.g. to write it to a file).
pub fn generate_ground_truth(config: &SimConfig) -> Result<GroundTruth, SimError> {
    config.validate()?;
    let shared = server::Shared::new(data::generate(config), config.clone())?;
    Ok(shared.truth())
}

/// A handle on a running simulator: its address, ground truth, counters and run-time
/// controls. Cheap to clone.
#[derive(Clone)]
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<server::Shared>,
}

impl SimHandle {
    /// The origin serving `/login`, `/relay`, `/pod` and `/agent`, e.g.
    /// `http://127.0.0.1:41234` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The ground truth, with the current suppression state.
    pub fn ground_truth(&self) -> GroundTruth {
        self.shared.truth()
    }

    /// Counters of what has been served so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats_snapshot()
    }

    /// Username of the default service account.
    pub fn service_account(&self) -> &str {
        &self.shared.cfg.service_accounts[0].username
    }

    /// The configuration the simulator runs with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.cfg
    }

    /// Invalidates every session and key-manager token now; the next request with one of them
    /// gets 401. Returns how many tokens there were.
    pub fn expire_sessions(&self) -> usize {
        self.shared.expire_sessions()
    }

    /// Makes the planned suppressions take effect now (see [`SuppressionMode::Pending`]):
    /// the messages leave the message lists and `MESSAGESUPPRESSED` events are queued.
    /// Returns how many suppressions took effect.
    pub fn apply_suppressions(&self) -> usize {
        self.shared.apply_suppressions()
    }

    /// Reads one batch of the datahose for `tag` and never acknowledges it, as a fleet
    /// worker that dies mid-batch: those events go to the tag's readers again after
    /// [`DatahoseConfig::redeliver_after`]. Returns how many events it took.
    pub fn take_datahose_batch_without_ack(&self, tag: &str) -> usize {
        self.shared.take_without_ack(tag)
    }

    /// Adds the service account to a stream now, as an administrator
    /// would: from then on its messages and files are served to it. Returns
    /// false if the id is unknown.
    pub fn add_service_account(&self, stream_id: &str) -> bool {
        self.shared.add_service_account(stream_id)
    }

    /// Removes the service account from a stream now, as an administrator would: from then
    /// on its messages and files are refused to it (the configured non-member status). The
    /// stream stays in the admin stream list, which lists every stream of the enterprise.
    /// Returns false if the id is unknown or the account was not a member.
    pub fn remove_service_account(&self, stream_id: &str) -> bool {
        self.shared.remove_service_account(stream_id)
    }

    /// Creates the next of the [`SimConfig::later_streams`] of `kind` (`Room` or `Im`) now,
    /// as its members would (a room created, an IM opened) and then write in it: from now on
    /// it is listed, its messages are served, it is in the ground truth, and with
    /// [`DatahoseConfig::history`] its messages join the datahose. Returns its id (URL-safe),
    /// or `None` when no such stream is left.
    pub fn create_stream(&self, kind: StreamType) -> Option<String> {
        self.shared.create_stream(kind)
    }

    /// Deactivates (`active` false) or reactivates a room now, as
    /// `POST /pod/v1/admin/room/{id}/setActive?active=` does: it stays in the admin stream
    /// list with `isActive` false, and its messages stay readable by its members. Returns
    /// false if the id is unknown or not a room's.
    pub fn set_room_active(&self, room_id: &str, active: bool) -> bool {
        self.shared.set_room_active(room_id, active).is_ok()
    }

    /// Suppresses one message now (as `POST /pod/v1/admin/messagesuppression/{id}/suppress`
    /// does). Returns false if the id is unknown or the message already was suppressed.
    pub fn suppress(&self, message_id: &str) -> bool {
        matches!(
            self.shared.suppress(message_id, self.shared.ds.officer),
            Some((_, true))
        )
    }
}

/// A simulator running on the caller's tokio runtime. Stops when dropped or on
/// [`RunningSim::shutdown`]. Dereferences to [`SimHandle`].
pub struct RunningSim {
    handle: SimHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Deref for RunningSim {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl RunningSim {
    /// A cloneable handle; the server still stops when this `RunningSim` is dropped.
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// Stops the server, letting in-flight requests finish for up to two seconds.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Generates the data and starts serving on `config.bind:config.port` (port 0 = a free
/// port). Must be called within a tokio runtime.
pub async fn start(config: SimConfig) -> Result<RunningSim, SimError> {
    config.validate()?;
    let cfg = config.clone();
    let shared =
        tokio::task::spawn_blocking(move || server::Shared::new(data::generate(&cfg), cfg.clone()))
            .await
            .map_err(|e| SimError::Task(e.to_string()))??;
    let shared = Arc::new(shared);
    let listener = tokio::net::TcpListener::bind((config.bind, config.port)).await?;
    let addr = listener.local_addr()?;
    let app = server::router(shared.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(RunningSim {
        handle: SimHandle { addr, shared },
        stop: Some(stop),
        task: Some(task),
    })
}

/// A simulator running on its own thread and tokio runtime, for tests without async.
/// Stops (and joins its thread) when dropped. Dereferences to [`SimHandle`].
pub struct BlockingSim {
    handle: SimHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Deref for BlockingSim {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

impl BlockingSim {
    /// A cloneable handle (valid while this value lives).
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }
}

impl Drop for BlockingSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Like [`start`], but runs the server on a dedicated thread with its own tokio runtime;
/// returns once it is listening. Usable from plain `#[test]` functions.
pub fn start_blocking(config: SimConfig) -> Result<BlockingSim, SimError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<SimHandle, SimError>>();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("symphony-sim".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("symphony-sim-worker")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(SimError::Io(e)));
                    return;
                }
            };
            rt.block_on(async move {
                match start(config).await {
                    Ok(sim) => {
                        let _ = ready_tx.send(Ok(sim.handle()));
                        let _ = stopped.await;
                        sim.shutdown().await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
        })?;
    match ready_rx.recv() {
        Ok(Ok(handle)) => Ok(BlockingSim {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(SimError::Task(
                "simulator thread ended before starting".into(),
            ))
        }
    }
}
