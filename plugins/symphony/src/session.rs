//! One sync run: log in, list the streams, then page through each stream's
//! new messages, then through the datahose's suppressions and room
//! membership events.
//!
//! Streams are visited in stream-id order, starting at the checkpoint's
//! cursor (the stream an interrupted run was on) and wrapping around, so the
//! order is stable within a run. For each stream the plugin asks
//! `GET /agent/v4/stream/{sid}/message?since=&skip=&limit=` from the
//! stream's [`Position`] (see [`crate::checkpoint`]); HTTP 204 means there is
//! nothing more. A page holds the messages of one such listing (split when it
//! carries many attachments), plus the stream's conversation the first time
//! the session mentions it, and the checkpoint after them.
//!
//! A session reads a [`Scope`]: the whole pod (streams, then the datahose),
//! or one partition of it (see [`partitions`]): one stream, or the datahose
//! alone. Every scope runs the same code; a partition's checkpoint holds its
//! own part only (one stream's position, or the `ackId`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;

use connector_sdk::http::Method;
use connector_sdk::{Conversation, Message, Page, Person, SourceError};

use crate::api::{self, Int, V4Message};
use crate::checkpoint::{self, Checkpoint, Position};
use crate::client::{Backend, CallError, Client, Server, encode_component};
use crate::config::{Config, EventsMode, StreamType};
use crate::normalize::{self, MessageParts, ParentKind};
use crate::presentation::{self, MentionedUser};

/// Streams asked per `streams/list` request (the pod's maximum).
const STREAMS_PAGE: u32 = 100;
/// Members asked per membership request (the pod's maximum).
const MEMBERS_PAGE: u32 = 1000;
/// User ids per `/v3/users` request (the pod's maximum).
const USERS_PAGE: usize = 100;
/// Requests for streams without news before a call returns an empty page.
const MAX_IDLE_REQUESTS: u32 = 50;
/// Milliseconds of such requests before a call returns an empty page.
const IDLE_BUDGET_MS: i64 = 20_000;
/// Most attachments in one page; a listing with more is split over pages.
const MAX_PAGE_ATTACHMENTS: usize = 25;
/// Most source bytes in one page; a listing with more is split over pages.
const MAX_PAGE_BYTES: usize = 32 << 20;
/// Message ids remembered to tell replies from forwards.
const MAX_REMEMBERED: usize = 200_000;
/// The host's checkpoint limit.
const MAX_CHECKPOINT: usize = 1 << 20;
/// Event types read from the datahose.
const EVENT_TYPES: [&str; 4] = [
    "MESSAGESUPPRESSED",
    "USERJOINEDROOM",
    "USERLEFTROOM",
    "ROOMUPDATED",
];
/// Event types read from the datahose with `events_messages`: the messages
/// of every conversation.
const MESSAGE_EVENT_TYPES: [&str; 2] = ["MESSAGESENT", "SHAREDPOST"];

/// Prefix of a stream partition's id: `stream:<streamId>`.
const STREAM_PARTITION: &str = "stream:";
/// Id of the datahose partition.
const DATAHOSE_PARTITION: &str = "datahose";
/// The name the run reports a missing datahose under, in the host's list
/// of what the source did not give.
const NO_DATAHOSE: &str = "datahose (suppressions, joins and leaves)";

/// What a session reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole pod: every listed stream, then the datahose.
    Whole,
    /// One stream (partition `stream:<streamId>`): its conversation and
    /// messages exactly as the whole-pod walk gives them.
    Stream(String),
    /// The datahose alone (partition `datahose`): suppressions, joins,
    /// leaves, room updates, and with `events_messages` messages.
    Datahose,
}

impl Scope {
    /// The scope of a partition id listed by [`partitions`].
    pub fn from_partition(id: &str) -> Result<Scope, SourceError> {
        if id == DATAHOSE_PARTITION {
            return Ok(Scope::Datahose);
        }
        match id.strip_prefix(STREAM_PARTITION) {
            Some(sid) if !sid.trim().is_empty() => Ok(Scope::Stream(api::canonical_id(sid))),
            _ => Err(SourceError::Permanent(format!(
                "unknown Symphony partition {id:?}: this plugin lists \"stream:<streamId>\" and \
                 \"datahose\" partitions only; the host should drop partitions the plugin no \
                 longer lists (check that the connector runs the plugin version that listed it)"
            ))),
        }
    }

    /// The partition id of this scope; `None` for the whole pod.
    pub fn partition_id(&self) -> Option<String> {
        match self {
            Scope::Whole => None,
            Scope::Stream(sid) => Some(format!("{STREAM_PARTITION}{sid}")),
            Scope::Datahose => Some(DATAHOSE_PARTITION.to_string()),
        }
    }

    /// The part of `checkpoint` this scope owns: a stream keeps its own
    /// position (also from a whole-pod checkpoint handed over on the first
    /// partitioned run), the datahose its `ackId`.
    fn narrow(&self, checkpoint: Checkpoint) -> Checkpoint {
        match self {
            Scope::Whole => checkpoint,
            Scope::Stream(sid) => Checkpoint {
                positions: checkpoint
                    .positions
                    .into_iter()
                    .filter(|(id, _)| id == sid)
                    .collect(),
                cursor: None,
                ack_id: None,
            },
            Scope::Datahose => Checkpoint {
                ack_id: checkpoint.ack_id,
                ..Checkpoint::default()
            },
        }
    }
}

/// The partitions of the pod: one per stream the configuration selects
/// (`stream:<streamId>`, in stream-id order), and `datahose` when the
/// configuration reads events. Logs in and lists the streams as a whole-pod
/// run does.
pub fn partitions<B: Backend>(config_json: &str, backend: B) -> Result<Vec<String>, SourceError> {
    let config = Config::parse(config_json)?;
    let mut client = Client::new(backend, &config);
    client.tokens()?;
    let streams = list_streams(&mut client, &config)?;
    let mut ids: Vec<String> = streams
        .into_iter()
        .filter_map(|s| Scope::Stream(s.id).partition_id())
        .collect();
    if config.events.reads() {
        ids.extend(Scope::Datahose.partition_id());
    }
    Ok(ids)
}

/// A stream the run archives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// Stream id.
    pub id: String,
    /// Its type.
    pub kind: StreamType,
    /// Room name.
    pub name: Option<String>,
    /// `lastMessageDate`, when the pod gives it.
    pub last_message: Option<i64>,
    /// Creator's user id.
    pub creator: Option<i64>,
    /// Member ids the stream list gives (IM and MIM).
    pub member_ids: Vec<i64>,
}

/// What the plugin knows of a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct UserInfo {
    name: Option<String>,
    email: Option<String>,
    external: bool,
}

/// A listed message with its bytes as received.
#[derive(Debug, Clone)]
struct Listed {
    raw: String,
    msg: V4Message,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Streams,
    Events,
    Done,
}

/// A sync run over one pod, or one partition of it.
pub struct Session<B> {
    config: Config,
    scope: Scope,
    client: Client<B>,
    streams: Vec<Stream>,
    next: usize,
    pending: VecDeque<Listed>,
    /// Whether the stream `next` may have more after `pending`.
    pending_more: bool,
    checkpoint: Checkpoint,
    described: HashSet<String>,
    users: HashMap<i64, Option<UserInfo>>,
    looked_up: HashSet<i64>,
    message_streams: HashMap<String, Rc<str>>,
    phase: Phase,
    pages: u64,
    /// Streams this run could not read, with why; asked again next run.
    skipped: Vec<Skipped>,
    /// Streams reported to the host as unreadable this run.
    reported: HashSet<String>,
    /// Per described stream, the user ids of its external members (other
    /// companies): each of its messages names them as external
    /// participants.
    external_members: HashMap<String, Vec<String>>,
    /// In the datahose partition, whether the account may read a stream
    /// (asked once per stream, as a stream partition does): files of the
    /// others are named, not fetched.
    readable: HashMap<String, bool>,
}

/// A stream whose messages the pod refused to this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Stream id.
    pub stream: String,
    /// Its type, when the pod told it.
    pub kind: Option<StreamType>,
    /// The pod's answer.
    pub why: String,
}

/// What an operator can do about a stream the service account cannot read.
const UNREADABLE_FIX: &str = "add the service account to the conversation (a pod serves a \
     stream's messages to its members only), or capture the whole enterprise through the \
     datahose; the stream is asked again on every run and archived from where it stands";

/// What an operator can do about files of a stream the service account is
/// not a member of.
const NOT_MEMBER_FILES_FIX: &str = "add the service account to the conversation (a pod serves \
     a stream's files to its members only); files of later messages are then archived, and a \
     member can still download these in Symphony";

/// Why the files of a datahose message from a stream the run could not read
/// are not fetched.
const NOT_MEMBER_FILES: &str = "the service account is not a member of this conversation, and Symphony serves its files \
     to members only";

/// Why the files of a datahose message from a stream the run did not list
/// are not fetched.
const UNLISTED_FILES: &str = "the conversation was not in the stream list this run read, so the \
     service account's membership of it is unknown, and Symphony serves a conversation's files \
     to its members only";

fn parse_json<'a, T: serde::Deserialize<'a>>(what: &str, body: &'a [u8]) -> Result<T, SourceError> {
    serde_json::from_slice(body)
        .map_err(|e| SourceError::Permanent(format!("{what} answered an unexpected body: {e}")))
}

impl<B: Backend> Session<B> {
    /// Starts a run of the whole pod: checks the configuration, reads the
    /// checkpoint, logs in and lists the streams.
    pub fn open(
        config_json: &str,
        checkpoint: Option<Vec<u8>>,
        backend: B,
    ) -> Result<Session<B>, SourceError> {
        Session::open_scope(config_json, Scope::Whole, checkpoint, backend)
    }

    /// Starts a run of `scope`. A stream partition asks the pod for that
    /// stream only (`GET /pod/v2/streams/{sid}/info`); the datahose
    /// partition lists the streams, to name and type the conversations of
    /// its events.
    pub fn open_scope(
        config_json: &str,
        scope: Scope,
        checkpoint: Option<Vec<u8>>,
        backend: B,
    ) -> Result<Session<B>, SourceError> {
        let config = Config::parse(config_json)?;
        if scope == Scope::Datahose && !config.events.reads() {
            return Err(SourceError::Permanent(
                "the datahose partition was opened, but the configuration has \"events\": \
                 false; the host should list the partitions again (the plugin lists \
                 \"datahose\" only with events on)"
                    .into(),
            ));
        }
        let checkpoint = match checkpoint {
            Some(bytes) => Checkpoint::decode(&bytes).map_err(|e| {
                SourceError::Permanent(format!(
                    "the stored checkpoint cannot be read ({e}); it was not written by this \
                     plugin version: reset the connector's checkpoint to start over"
                ))
            })?,
            None => Checkpoint::default(),
        };
        let checkpoint = scope.narrow(checkpoint);
        let mut client = Client::new(backend, &config);
        client.tokens()?;
        let mut skipped = Vec::new();
        let mut streams = match &scope {
            Scope::Whole | Scope::Datahose => list_streams(&mut client, &config)?,
            Scope::Stream(sid) => match stream_info(&mut client, sid)? {
                Ok(stream) if config.wants(stream.kind) => vec![stream],
                Ok(stream) => {
                    connector_sdk::info!(
                        "Symphony stream not of a configured type; nothing to read";
                        stream = sid,
                        stream_type = stream.kind.as_str()
                    );
                    Vec::new()
                }
                Err(why) => {
                    skipped.push(Skipped {
                        stream: sid.clone(),
                        kind: None,
                        why,
                    });
                    Vec::new()
                }
            },
        };
        if let Some(cursor) = &checkpoint.cursor {
            let start = streams.partition_point(|s| s.id < *cursor);
            streams.rotate_left(start);
        }
        connector_sdk::info!(
            "Symphony session opened";
            partition = scope.partition_id().unwrap_or_else(|| "whole pod".into()),
            streams = streams.len(),
            positions = checkpoint.positions.len(),
            resume_at = checkpoint.cursor.as_deref().unwrap_or("start")
        );
        let phase = if scope == Scope::Datahose {
            Phase::Events
        } else {
            Phase::Streams
        };
        let mut session = Session {
            config,
            scope,
            client,
            streams,
            next: 0,
            pending: VecDeque::new(),
            pending_more: false,
            checkpoint,
            described: HashSet::new(),
            users: HashMap::new(),
            looked_up: HashSet::new(),
            message_streams: HashMap::new(),
            phase,
            pages: 0,
            skipped: Vec::new(),
            reported: HashSet::new(),
            external_members: HashMap::new(),
            readable: HashMap::new(),
        };
        for refused in skipped {
            session.skip(refused);
        }
        Ok(session)
    }

    /// The streams of this run, in visiting order.
    pub fn streams(&self) -> &[Stream] {
        &self.streams
    }

    /// The streams this run skipped because the pod refused their messages.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// The client (tests look at its backend).
    pub fn client(&self) -> &Client<B> {
        &self.client
    }

    /// The next page.
    pub fn next_page(&mut self) -> Result<Page, SourceError> {
        self.pages += 1;
        let started = self.client.backend().now_ms();
        let mut idle = 0u32;
        loop {
            match self.phase {
                Phase::Streams => {
                    if self.next >= self.streams.len() {
                        self.checkpoint.cursor = None;
                        self.phase = if self.config.events.reads() && self.scope == Scope::Whole {
                            Phase::Events
                        } else {
                            Phase::Done
                        };
                        continue;
                    }
                    if self.pending.is_empty() {
                        let stream = &self.streams[self.next];
                        let pos = self.checkpoint.position(&stream.id, self.config.since);
                        let quiet = stream.last_message.is_some_and(|t| t < pos.ts);
                        let batch = if quiet {
                            checkpoint::Batch {
                                items: Vec::new(),
                                more: false,
                            }
                        } else {
                            idle += 1;
                            let id = stream.id.clone();
                            match self.list_new(&id, &pos) {
                                Ok(batch) => batch,
                                Err(SourceError::Permanent(why)) => {
                                    self.skip_stream(why);
                                    checkpoint::Batch {
                                        items: Vec::new(),
                                        more: false,
                                    }
                                }
                                Err(e) => return Err(e),
                            }
                        };
                        if batch.items.is_empty() {
                            self.next += 1;
                            let elapsed = self.client.backend().now_ms() - started;
                            if idle >= MAX_IDLE_REQUESTS || elapsed > IDLE_BUDGET_MS {
                                self.set_cursor(self.next);
                                return self.page(Vec::new(), Vec::new(), false);
                            }
                            continue;
                        }
                        self.pending = batch.items.into();
                        self.pending_more = batch.more;
                    }
                    return self.message_page();
                }
                Phase::Events => return self.events_page(),
                Phase::Done => return self.page(Vec::new(), Vec::new(), true),
            }
        }
    }

    /// Leaves the current stream for this run: the pod refused its messages
    /// (typically 403 or 400 because the service account is not a member).
    /// Its position stays, so the next run asks again; the other streams
    /// go on. The host lists it with the fix until a run reads it.
    fn skip_stream(&mut self, why: String) {
        let stream = &self.streams[self.next];
        let skipped = Skipped {
            stream: stream.id.clone(),
            kind: Some(stream.kind),
            why,
        };
        self.skip(skipped);
    }

    /// Reports a stream the pod refused and remembers it for the end of
    /// the run.
    fn skip(&mut self, skipped: Skipped) {
        if self.config.events.reads() && self.config.events_messages {
            self.report_unreadable(
                &skipped.stream,
                &format!(
                    "{}; its messages come from the datahose, but its files cannot be \
                     fetched (they are named in the emails)",
                    skipped.why
                ),
                NOT_MEMBER_FILES_FIX,
            );
        } else {
            self.report_unreadable(&skipped.stream, &skipped.why, UNREADABLE_FIX);
        }
        self.skipped.push(skipped);
    }

    /// Points the checkpoint's cursor at the stream `next` of the visiting
    /// order (none past the end). Only the whole-pod walk keeps a cursor: a
    /// partition has one stream or none.
    fn set_cursor(&mut self, next: usize) {
        if self.scope == Scope::Whole {
            self.checkpoint.cursor = self.streams.get(next).map(|s| s.id.clone());
        }
    }

    /// Reports `stream` to the host as unreadable, once per run.
    fn report_unreadable(&mut self, stream: &str, why: &str, fix: &str) {
        if self.reported.insert(stream.to_string()) {
            connector_sdk::report::unreadable(stream, why, fix);
        }
    }

    /// At the end of the run: how many streams were skipped, and the fix.
    fn report_skipped(&self) {
        // A partition's own report (`report_unreadable`) names its stream.
        if self.skipped.is_empty()
            || self.scope != Scope::Whole
            || (self.config.events.reads() && self.config.events_messages)
        {
            return;
        }
        let ids: Vec<&str> = self.skipped.iter().map(|s| s.stream.as_str()).collect();
        connector_sdk::warn!(
            "{} of {} Symphony streams could not be read and were skipped ({}); to archive \
             them, {UNREADABLE_FIX}",
            self.skipped.len(),
            self.streams.len().max(self.skipped.len()),
            ids.join(", ");
            skipped = self.skipped.len()
        );
    }

    fn page(
        &self,
        conversations: Vec<Conversation>,
        messages: Vec<Message>,
        complete: bool,
    ) -> Result<Page, SourceError> {
        let checkpoint = self.checkpoint.encode();
        if checkpoint.len() > MAX_CHECKPOINT {
            return Err(SourceError::Permanent(format!(
                "the checkpoint would be {} bytes, above the host's limit of {MAX_CHECKPOINT}: \
                 too many streams for one connector; split the pod over connectors with \
                 fewer stream_types each",
                checkpoint.len()
            )));
        }
        if complete {
            self.report_skipped();
        }
        connector_sdk::debug!(
            "Symphony page {}", self.pages;
            messages = messages.len(),
            conversations = conversations.len(),
            complete = complete
        );
        Ok(Page::new(checkpoint)
            .with_conversations(conversations)
            .with_messages(messages)
            .with_complete(complete))
    }

    /// New messages of a stream after `pos`.
    fn list_new(
        &mut self,
        stream_id: &str,
        pos: &Position,
    ) -> Result<checkpoint::Batch<Listed>, SourceError> {
        let limit = self.config.page_size;
        checkpoint::next_batch(
            pos,
            limit,
            |l: &Listed| (l.msg.timestamp.0, l.msg.message_id.as_str()),
            |since, skip, limit| self.fetch_listing(stream_id, since, skip, limit),
        )
    }

    /// One `GET /agent/v4/stream/{sid}/message`; `None` for HTTP 204. Halves
    /// the limit while the body is too large for the host to buffer.
    fn fetch_listing(
        &mut self,
        stream_id: &str,
        since: i64,
        skip: u32,
        limit: u32,
    ) -> Result<Option<(Vec<Listed>, u32)>, SourceError> {
        let mut limit = limit;
        loop {
            let url = self.client.agent_url(&format!(
                "/agent/v4/stream/{}/message?since={since}&skip={skip}&limit={limit}",
                encode_component(stream_id, false)
            ));
            let response = match self.client.call(Server::Agent, Method::Get, &url, None) {
                Ok(r) => r,
                Err(CallError::TooLarge(_)) if limit > 1 => {
                    limit /= 2;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if response.status == 204 || response.body.iter().all(u8::is_ascii_whitespace) {
                return Ok(None);
            }
            let what = "GET /agent/v4/stream/{sid}/message";
            let items: Vec<&serde_json::value::RawValue> = parse_json(what, &response.body)?;
            let mut listed = Vec::with_capacity(items.len());
            for raw in items {
                let msg: V4Message = serde_json::from_str(raw.get()).map_err(|e| {
                    SourceError::Permanent(format!(
                        "{what} listed a message of stream {stream_id} that cannot be read \
                         ({e}): {}",
                        raw.get().chars().take(200).collect::<String>()
                    ))
                })?;
                listed.push(Listed {
                    raw: raw.get().to_string(),
                    msg,
                });
            }
            if listed.is_empty() {
                return Ok(None);
            }
            return Ok(Some((listed, limit)));
        }
    }

    /// Builds a page from the pending messages of the current stream.
    fn message_page(&mut self) -> Result<Page, SourceError> {
        let stream = self.streams[self.next].clone();
        let mut take = Vec::new();
        let (mut attachments, mut bytes) = (0usize, 0usize);
        while let Some(front) = self.pending.front() {
            let a = front.msg.files().count();
            if !take.is_empty()
                && (attachments + a > MAX_PAGE_ATTACHMENTS
                    || bytes + front.raw.len() > MAX_PAGE_BYTES)
            {
                break;
            }
            attachments += a;
            bytes += front.raw.len();
            take.extend(self.pending.pop_front());
        }
        let mut conversations = Vec::new();
        if !self.described.contains(&stream.id) {
            conversations.push(self.describe(&stream)?);
            self.described.insert(stream.id.clone());
        }
        let mut messages: Vec<Message> = Vec::with_capacity(take.len());
        for message in self.convert(&take, &stream)? {
            if !messages.iter().any(|m| m.id == message.id) {
                messages.push(message);
            }
        }
        for listed in &take {
            self.checkpoint
                .positions
                .entry(stream.id.clone())
                .or_insert_with(|| Position::start(self.config.since))
                .advance(listed.msg.timestamp.0, &listed.msg.message_id);
        }
        if self.pending.is_empty() && !self.pending_more {
            // The listing was short: the stream is drained for this run, and
            // a resumed run starts at the next one.
            self.next += 1;
        }
        self.set_cursor(self.next);
        connector_sdk::info!(
            "Symphony messages";
            stream = stream.id,
            stream_type = stream.kind.as_str(),
            messages = messages.len(),
            attachments = attachments
        );
        self.page(conversations, messages, false)
    }

    /// Listed messages of `stream` as WIT messages: their users looked up,
    /// their parents placed (reply or forward), their files to be fetched
    /// by the host with the session's headers.
    fn convert(&mut self, take: &[Listed], stream: &Stream) -> Result<Vec<Message>, SourceError> {
        self.convert_with(take, stream, None)
    }

    /// [`Session::convert`]; with `unfetched` (why the files cannot be
    /// fetched: a pod serves a stream's files to its members only), the
    /// files are named in the body and in the property
    /// `Unfetched-Attachments` instead of fetched, and the stream is
    /// reported to the host.
    fn convert_with(
        &mut self,
        take: &[Listed],
        stream: &Stream,
        unfetched: Option<&str>,
    ) -> Result<Vec<Message>, SourceError> {
        let fetchable = unfetched.is_none();
        self.learn_users(take)?;
        let mut parents = Vec::with_capacity(take.len());
        for listed in take {
            parents.push(
                match listed
                    .msg
                    .parent_message_id
                    .as_deref()
                    .filter(|p| !p.is_empty())
                {
                    Some(p) => Some(self.parent_kind(p, &stream.id)?),
                    None => None,
                },
            );
            // Later messages of this page may answer this one.
            self.remember(&listed.msg.message_id, Rc::from(stream.id.as_str()));
        }
        // The session the pages are read with serves the host's attachment
        // downloads too: it is kept until the pod says it expired (a 401),
        // since every login shows in the pod's audit (sessions last an hour
        // or more). A download meeting a 401 fails the page, which the host
        // fetches again from its checkpoint, logging in anew.
        let tokens = if fetchable && take.iter().any(|l| l.msg.files().next().is_some()) {
            Some(self.client.tokens()?)
        } else {
            None
        };
        let mut messages = Vec::with_capacity(take.len());
        for (listed, parent) in take.iter().zip(parents) {
            let msg = &listed.msg;
            let mut rendered = self.render(msg);
            if let Some(shared) = &msg.shared_message {
                let author = self.author(shared);
                rendered = normalize::with_shared(rendered, &self.render(shared), &author);
            }
            let unfetched_files: Vec<String> = match unfetched {
                Some(_) => msg
                    .files()
                    .map(|a| {
                        format!(
                            "{} ({} bytes, id {})",
                            a.name.as_deref().unwrap_or("unnamed"),
                            a.size.map_or(0, |s| s.0),
                            a.id
                        )
                    })
                    .collect(),
                None => Vec::new(),
            };
            if let Some(why) = unfetched.filter(|_| !unfetched_files.is_empty()) {
                rendered = normalize::with_unfetched(
                    rendered,
                    &unfetched_files,
                    why,
                    NOT_MEMBER_FILES_FIX,
                );
                self.report_unreadable(
                    &stream.id,
                    &format!("files of its messages from the datahose are not fetched: {why}"),
                    NOT_MEMBER_FILES_FIX,
                );
            }
            let files = match &tokens {
                Some(tokens) => msg
                    .files()
                    .enumerate()
                    .map(|(i, a)| {
                        let url = normalize::attachment_url(
                            &self.config.agent_url,
                            &stream.id,
                            &a.id,
                            &msg.message_id,
                        );
                        normalize::attachment(i, a, url, tokens)
                    })
                    .collect(),
                None => Vec::new(),
            };
            let known_sender = msg
                .user
                .as_ref()
                .and_then(|u| u.user_id)
                .and_then(|id| self.users.get(&id.0).cloned().flatten())
                .map(|u| (u.email, u.name));
            let mut message = normalize::message(
                msg,
                MessageParts {
                    raw: &listed.raw,
                    stream_id: &stream.id,
                    stream_type: stream.kind,
                    parent,
                    known_sender,
                    rendered,
                    attachments: files,
                },
            );
            if let Some(ids) = self.external_members.get(&stream.id) {
                message = message.with_external_participants(ids.iter());
            }
            if !unfetched_files.is_empty() {
                message
                    .properties
                    .push(("Unfetched-Attachments".into(), unfetched_files.join("; ")));
            }
            messages.push(message);
        }
        Ok(messages)
    }

    /// A message's PresentationML as text and HTML, mentions named from
    /// what the session knows of users.
    fn render(&self, msg: &V4Message) -> presentation::Rendered {
        let entities = presentation::parse_entities(msg.data.as_deref());
        let lookup = |id: i64| -> Option<MentionedUser> {
            let info = self.users.get(&id)?.as_ref()?;
            Some(MentionedUser {
                name: info.name.clone().unwrap_or_else(|| id.to_string()),
                email: info.email.clone(),
            })
        };
        presentation::render(msg.message.as_deref().unwrap_or(""), &entities, &lookup)
    }

    /// Who wrote a message, as `Name <email>` where known.
    fn author(&self, msg: &V4Message) -> String {
        let id = msg.user.as_ref().and_then(|u| u.user_id).map(|id| id.0);
        let known = id.and_then(|id| self.users.get(&id).cloned().flatten());
        let person = normalize::person(
            msg.user.as_ref(),
            known.as_ref().and_then(|k| k.email.clone()),
            known.and_then(|k| k.name),
        );
        match (person.display_name, person.email) {
            (Some(name), Some(email)) => format!("{name} <{email}>"),
            (Some(name), None) => name,
            (None, Some(email)) => email,
            (None, None) => person.id,
        }
    }

    fn remember(&mut self, message_id: &str, stream: Rc<str>) {
        if self.message_streams.len() >= MAX_REMEMBERED {
            self.message_streams.clear();
        }
        self.message_streams.insert(message_id.to_string(), stream);
    }

    /// Whether `parent` is in `stream` (a reply) or elsewhere (a forward),
    /// looking it up with `GET /agent/v1/message/{id}` when this run has not
    /// seen it.
    fn parent_kind(&mut self, parent: &str, stream: &str) -> Result<ParentKind, SourceError> {
        if let Some(s) = self.message_streams.get(parent) {
            return Ok(if **s == *stream {
                ParentKind::Reply
            } else {
                ParentKind::Forward
            });
        }
        let url = self.client.agent_url(&format!(
            "/agent/v1/message/{}",
            encode_component(parent, false)
        ));
        let response = match self.client.call(Server::Agent, Method::Get, &url, None) {
            Ok(r) => r,
            Err(CallError::Refused(_, why) | CallError::Source(SourceError::Permanent(why))) => {
                connector_sdk::debug!("parent message not visible"; parent = parent, why = why);
                return Ok(ParentKind::Unknown);
            }
            Err(e) => return Err(e.into()),
        };
        if response.status == 204 {
            return Ok(ParentKind::Unknown);
        }
        let found: Option<String> = serde_json::from_slice::<V4Message>(&response.body)
            .ok()
            .and_then(|m| m.stream)
            .and_then(|s| s.stream_id);
        Ok(match found {
            Some(s) => {
                let kind = if s == stream {
                    ParentKind::Reply
                } else {
                    ParentKind::Forward
                };
                self.remember(parent, Rc::from(s.as_str()));
                kind
            }
            None => ParentKind::Unknown,
        })
    }

    /// Looks up the users these messages mention, and senders whose email
    /// the messages do not give, that the session does not know yet.
    fn learn_users(&mut self, listed: &[Listed]) -> Result<(), SourceError> {
        let mut wanted = Vec::new();
        let messages = listed
            .iter()
            .flat_map(|l| std::iter::once(&l.msg).chain(l.msg.shared_message.as_deref()));
        for msg in messages {
            let entities = presentation::parse_entities(msg.data.as_deref());
            wanted.extend(presentation::mentioned_users(&entities));
            if let Some(user) = &msg.user
                && let Some(id) = user.user_id
                && api::clean_email(user.email.as_deref()).is_none()
            {
                wanted.push(id.0);
            }
        }
        wanted.retain(|id| self.needs_lookup(*id));
        wanted.sort_unstable();
        wanted.dedup();
        self.lookup_users(&wanted)
    }

    /// Whether `/v3/users` may tell more about a user: not asked yet, and
    /// neither an email nor the mark of an external user is known.
    fn needs_lookup(&self, id: i64) -> bool {
        !self.looked_up.contains(&id)
            && match self.users.get(&id) {
                None | Some(None) => true,
                Some(Some(u)) => u.email.is_none() && !u.external,
            }
    }

    /// `GET /pod/v3/users?uid=...&local=false` in batches; users not found
    /// are remembered as unknown.
    fn lookup_users(&mut self, ids: &[i64]) -> Result<(), SourceError> {
        for chunk in ids.chunks(USERS_PAGE) {
            let list = chunk
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let url = self
                .client
                .pod_url(&format!("/pod/v3/users?uid={list}&local=false"));
            match self.client.call(Server::Pod, Method::Get, &url, None) {
                Ok(response) if response.status != 204 => {
                    let found: api::UserList = parse_json("GET /pod/v3/users", &response.body)?;
                    for u in found.users {
                        let info = UserInfo {
                            name: api::display_name(
                                u.display_name.as_deref(),
                                u.first_name.as_deref(),
                                u.last_name.as_deref(),
                            ),
                            email: api::clean_email(u.email_address.as_deref()),
                            external: false,
                        };
                        let merged = match self.users.get(&u.id.0).cloned().flatten() {
                            Some(old) => UserInfo {
                                name: info.name.or(old.name),
                                email: info.email.or(old.email),
                                external: old.external,
                            },
                            None => info,
                        };
                        self.users.insert(u.id.0, Some(merged));
                    }
                }
                Ok(_) => {}
                Err(
                    CallError::Refused(_, why) | CallError::Source(SourceError::Permanent(why)),
                ) => {
                    connector_sdk::warn!("user lookup failed"; why = why);
                }
                Err(e) => return Err(e.into()),
            }
            for id in chunk {
                self.looked_up.insert(*id);
                self.users.entry(*id).or_insert(None);
            }
        }
        Ok(())
    }

    /// The conversation of a stream: every member, current and past,
    /// external ones included (without email).
    fn describe(&mut self, stream: &Stream) -> Result<Conversation, SourceError> {
        let mut order: Vec<i64> = Vec::new();
        let add = |order: &mut Vec<i64>, id: i64| {
            if !order.contains(&id) {
                order.push(id);
            }
        };
        let mut skip = 0u32;
        // Membership lists exist for IM, MIM and ROOM; a wall's people are
        // its owner and the members the stream list gives.
        let mut listed = stream.kind != StreamType::Post;
        while listed {
            let url = self.client.pod_url(&format!(
                "/pod/v1/admin/stream/{}/membership/list?skip={skip}&limit={MEMBERS_PAGE}&includePastMembers=true",
                encode_component(&stream.id, false)
            ));
            match self.client.call(Server::Pod, Method::Get, &url, None) {
                Ok(response) => {
                    if response.status == 204 {
                        break;
                    }
                    let list: api::MembershipList = parse_json(
                        "GET /pod/v1/admin/stream/{id}/membership/list",
                        &response.body,
                    )?;
                    let n = list.members.len() as u32;
                    for member in list.members {
                        let Some(u) = member.user else { continue };
                        let id = u.user_id.0;
                        add(&mut order, id);
                        let mut info = UserInfo {
                            name: api::display_name(
                                u.display_name.as_deref(),
                                u.first_name.as_deref(),
                                u.last_name.as_deref(),
                            ),
                            email: api::clean_email(u.email.as_deref()),
                            external: u.is_external.unwrap_or(false),
                        };
                        if let Some(Some(old)) = self.users.get(&id) {
                            info.name = info.name.or(old.name.clone());
                            info.email = info.email.or(old.email.clone());
                        }
                        self.users.insert(id, Some(info));
                    }
                    skip += n;
                    if n < MEMBERS_PAGE || list.count.is_some_and(|c| u64::from(skip) >= c) {
                        break;
                    }
                }
                Err(
                    CallError::Refused(_, why) | CallError::Source(SourceError::Permanent(why)),
                ) => {
                    connector_sdk::warn!(
                        "membership list unavailable, using the stream list's members";
                        stream = stream.id,
                        why = why
                    );
                    listed = false;
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !listed || order.is_empty() {
            for id in stream.member_ids.iter().chain(stream.creator.iter()) {
                add(&mut order, *id);
            }
        }
        if stream.kind == StreamType::Room {
            // The spec defines includePastMembers on the room list only.
            let url = self.client.pod_url(&format!(
                "/pod/v1/admin/room/{}/membership/list?includePastMembers=true",
                encode_component(&stream.id, false)
            ));
            match self.client.call(Server::Pod, Method::Get, &url, None) {
                Ok(response) if response.status != 204 => {
                    let list: Vec<api::RoomMember> = parse_json(
                        "GET /pod/v1/admin/room/{id}/membership/list",
                        &response.body,
                    )?;
                    for m in list {
                        add(&mut order, m.id.0);
                    }
                }
                Ok(_) => {}
                Err(
                    CallError::Refused(_, why) | CallError::Source(SourceError::Permanent(why)),
                ) => {
                    connector_sdk::warn!("room membership list unavailable"; stream = stream.id, why = why);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let wanted: Vec<i64> = order
            .iter()
            .copied()
            .filter(|id| self.needs_lookup(*id))
            .collect();
        self.lookup_users(&wanted)?;
        let external: Vec<String> = order
            .iter()
            .filter(|id| matches!(self.users.get(id), Some(Some(u)) if u.external))
            .map(i64::to_string)
            .collect();
        if !external.is_empty() {
            self.external_members.insert(stream.id.clone(), external);
        }
        let participants: Vec<Person> = order
            .iter()
            .map(|id| {
                let info = self.users.get(id).cloned().flatten().unwrap_or_default();
                Person::new(id.to_string())
                    .with_name(info.name)
                    .with_email(info.email)
            })
            .collect();
        let name = match stream.kind {
            StreamType::Room => stream.name.clone().filter(|n| !n.trim().is_empty()),
            _ => None,
        };
        Ok(
            Conversation::new(&stream.id, stream.kind.conversation_kind())
                .with_name(name)
                .with_participants(participants),
        )
    }

    /// `POST /agent/v5/events/read` with the checkpoint's `ackId`. A 400
    /// refuses the request, not the add-on: with an `ackId` it is taken as
    /// stale (the datahose forgets them), dropped, and the read made afresh
    /// once; 403 and 404 mean the datahose is not there for this account:
    /// with `events = "auto"` the answer is `None` (the run goes on without
    /// events, reported by [`Session::report_no_datahose`]), with `true` a
    /// failure.
    fn read_events(&mut self) -> Result<Option<connector_sdk::http::FullResponse>, SourceError> {
        let url = self.client.agent_url("/agent/v5/events/read");
        loop {
            let ack = self.checkpoint.ack_id.clone().unwrap_or_default();
            let body = serde_json::json!({
                "type": "datahose",
                "tag": self.config.events_tag,
                "eventTypes": self.event_types(),
                "ackId": ack,
                "updatePresence": false,
            });
            return match self
                .client
                .call(Server::Agent, Method::Post, &url, Some(&body))
            {
                Ok(r) => Ok(Some(r)),
                Err(CallError::Refused(400, why)) if !ack.is_empty() => {
                    connector_sdk::warn!(
                        "the datahose refused the stored ackId ({why}); reading afresh: events \
                         it held for the old ackId and not yet delivered are lost to this \
                         connector";
                        tag = self.config.events_tag
                    );
                    self.checkpoint.ack_id = None;
                    continue;
                }
                Err(CallError::Refused(400, why)) => Err(SourceError::Permanent(format!(
                    "{why}; the datahose refused the read request itself: check \
                     \"events_tag\" (1 to 80 characters) in the plugin configuration"
                ))),
                Err(CallError::Refused(403 | 404, why))
                    if self.config.events == EventsMode::Auto =>
                {
                    self.report_no_datahose(&why);
                    Ok(None)
                }
                Err(CallError::Refused(403 | 404, why)) => Err(SourceError::Permanent(format!(
                    "{why}; suppressions and room joins/leaves are read from the datahose \
                     (an add-on of the pod): enable it for the service account, or set \
                     \"events\": false in the plugin configuration to archive without them"
                ))),
                Err(e) => Err(e.into()),
            };
        }
    }

    /// Reports, as a standing warning the host lists with the run (status,
    /// status page, admin log), that the pod has no datahose for the
    /// account and what the archive therefore lacks.
    fn report_no_datahose(&mut self, why: &str) {
        self.report_unreadable(
            NO_DATAHOSE,
            &format!(
                "{why}: the pod has no datahose (a paid add-on) for the service account, so \
                 message suppressions (deletions) and room joins and leaves are not captured; \
                 messages are archived as usual"
            ),
            "ask Symphony to enable the datahose for the pod and the service account (the next \
             run then reads them), or set \"events\" = false in the plugin configuration to \
             archive messages alone without this warning",
        );
    }

    /// Whether the account may read a listed stream's messages and files.
    /// The whole-pod walk knows it from the streams it read before the
    /// datahose; the datahose partition asks the pod once per stream, as
    /// the stream's own partition does.
    fn may_read(&mut self, stream: &str) -> Result<bool, SourceError> {
        if self.skipped.iter().any(|s| s.stream == stream) {
            return Ok(false);
        }
        if self.scope != Scope::Datahose {
            return Ok(true);
        }
        if let Some(known) = self.readable.get(stream) {
            return Ok(*known);
        }
        let readable = stream_info(&mut self.client, stream)?.is_ok();
        self.readable.insert(stream.to_string(), readable);
        Ok(readable)
    }

    /// The event types the datahose is asked for.
    fn event_types(&self) -> Vec<&'static str> {
        let mut types = EVENT_TYPES.to_vec();
        if self.config.events_messages {
            types.extend(MESSAGE_EVENT_TYPES);
        }
        types
    }

    /// The stream an event happened in: one the run lists, or one it learns
    /// of from the event; `None` when its type is not archived.
    fn event_stream(
        &self,
        id: &str,
        kind: Option<StreamType>,
        room_name: Option<String>,
    ) -> Option<Stream> {
        let stream = match self.streams.iter().find(|s| s.id == id) {
            Some(s) => s.clone(),
            None => Stream {
                id: id.to_string(),
                kind: kind.unwrap_or(if room_name.is_some() {
                    StreamType::Room
                } else {
                    StreamType::Mim
                }),
                name: room_name,
                last_message: None,
                creator: None,
                member_ids: Vec::new(),
            },
        };
        self.config.wants(stream.kind).then_some(stream)
    }

    /// The message a `MESSAGESENT` or `SHAREDPOST` event carries, as
    /// received, with the message a wall post shares.
    fn sent_message(raw: &str) -> Option<Listed> {
        let event: api::SentEvent = serde_json::from_str(raw).ok()?;
        let payload = event.payload?;
        let sent = payload.message_sent.or(payload.shared_post)?;
        let message = sent.message?;
        let mut msg: V4Message = serde_json::from_str(message.get()).ok()?;
        if msg.shared_message.is_none() {
            msg.shared_message = sent.shared_message;
        }
        Some(Listed {
            raw: message.get().to_string(),
            msg,
        })
    }

    /// One datahose read: suppressions, joins, leaves and room updates, and
    /// with `events_messages` the messages of every conversation. Delivery
    /// is at least once and in no order: a message this run already has is
    /// left out (the host's ledger keeps later runs from delivering it
    /// again), and the page is in time order.
    fn events_page(&mut self) -> Result<Page, SourceError> {
        let Some(response) = self.read_events()? else {
            self.phase = Phase::Done;
            return self.page(Vec::new(), Vec::new(), true);
        };
        let what = "POST /agent/v5/events/read";
        let (raw_events, ack): (Vec<String>, Option<String>) = if response.status == 204 {
            (Vec::new(), None)
        } else {
            let list: api::EventList<'_> = parse_json(what, &response.body)?;
            (
                list.events.iter().map(|r| r.get().to_string()).collect(),
                list.ack_id,
            )
        };
        let unchanged = ack.is_none() || ack == self.checkpoint.ack_id;
        let mut conversations = Vec::new();
        let mut messages: Vec<Message> = Vec::new();
        let mut sent: Vec<(Listed, Stream)> = Vec::new();
        for raw in &raw_events {
            let ev: api::V4Event = match serde_json::from_str(raw) {
                Ok(ev) => ev,
                Err(e) => {
                    connector_sdk::warn!("skipping an unreadable event"; why = e);
                    continue;
                }
            };
            if MESSAGE_EVENT_TYPES.contains(&ev.kind.as_deref().unwrap_or_default()) {
                let Some(listed) = Self::sent_message(raw) else {
                    connector_sdk::warn!("skipping a message event without its message"; event = ev.id.unwrap_or_default());
                    continue;
                };
                let facts = listed.msg.stream.clone();
                let stream = facts.as_ref().and_then(|f| {
                    self.event_stream(
                        f.stream_id.as_deref()?,
                        f.stream_type.as_deref().and_then(StreamType::parse),
                        f.room_name.clone(),
                    )
                });
                let id = &listed.msg.message_id;
                let seen = self.message_streams.contains_key(id.as_str())
                    || sent.iter().any(|(l, _)| l.msg.message_id == *id);
                if let Some(stream) = stream
                    && !seen
                {
                    sent.push((listed, stream));
                }
                continue;
            }
            let Some(em) = normalize::event(raw, &ev) else {
                continue;
            };
            let Some(stream) = self.event_stream(&em.stream_id, em.stream_type, em.room_name)
            else {
                continue;
            };
            let mut message = em.message;
            message.conversation_id = stream.id.clone();
            if !self.described.contains(&stream.id) {
                conversations.push(self.describe(&stream)?);
                self.described.insert(stream.id.clone());
            }
            if let Ok(id) = message.sender.id.parse::<i64>()
                && let Some(Some(info)) = self.users.get(&id)
            {
                if message.sender.email.is_none() {
                    message.sender.email = info.email.clone();
                }
                if message.sender.display_name.is_none() {
                    message.sender.display_name = info.name.clone();
                }
            }
            if !messages.iter().any(|m| m.id == message.id) {
                messages.push(message);
            }
        }
        // Messages in time order, so that a parent comes before its replies.
        sent.sort_by_key(|(l, _)| l.msg.timestamp.0);
        for (listed, stream) in sent {
            let listed_stream = self.streams.iter().any(|s| s.id == stream.id);
            // Partitioned, a stream the account reads is its own
            // partition's: its messages come from there, never from here
            // too (partitions are read at the same time).
            if self.scope == Scope::Datahose && listed_stream && self.may_read(&stream.id)? {
                continue;
            }
            if !self.described.contains(&stream.id) {
                conversations.push(self.describe(&stream)?);
                self.described.insert(stream.id.clone());
            }
            // Files of a stream the account cannot read cannot be fetched.
            let unfetched = if !listed_stream {
                Some(UNLISTED_FILES)
            } else if !self.may_read(&stream.id)? {
                Some(NOT_MEMBER_FILES)
            } else {
                None
            };
            messages.extend(self.convert_with(
                std::slice::from_ref(&listed),
                &stream,
                unfetched,
            )?);
        }
        messages.sort_by_key(|m| m.sent_at);
        if let Some(ack) = ack {
            self.checkpoint.ack_id = Some(ack);
        }
        let complete = raw_events.is_empty() || unchanged;
        if complete {
            if !raw_events.is_empty() {
                connector_sdk::warn!("the datahose repeated its ackId; ending the run");
            }
            self.phase = Phase::Done;
        }
        connector_sdk::info!("Symphony events"; events = raw_events.len(), archived = messages.len());
        self.page(conversations, messages, complete)
    }
}

/// One stream as its members see it: `GET /pod/v2/streams/{sid}/info`.
/// The inner error is the pod's refusal (400 or 403: the account is not a
/// member), which a run treats as the whole-pod walk treats a refused
/// message list: the stream is skipped and reported.
fn stream_info<B: Backend>(
    client: &mut Client<B>,
    sid: &str,
) -> Result<Result<Stream, String>, SourceError> {
    let what = "GET /pod/v2/streams/{sid}/info";
    let url = client.pod_url(&format!(
        "/pod/v2/streams/{}/info",
        encode_component(sid, false)
    ));
    let response = match client.call(Server::Pod, Method::Get, &url, None) {
        Ok(r) => r,
        Err(CallError::Refused(_, why) | CallError::Source(SourceError::Permanent(why))) => {
            return Ok(Err(why));
        }
        Err(e) => return Err(e.into()),
    };
    let info: api::StreamDetails = parse_json(what, &response.body)?;
    let type_name = info.stream_type.and_then(|t| t.kind).unwrap_or_default();
    let kind = StreamType::parse(&type_name).ok_or_else(|| {
        SourceError::Permanent(format!(
            "{what} gave stream {sid} the type {type_name:?}, none of IM, MIM, ROOM and POST; \
             report this pod answer to the plugin's maintainers"
        ))
    })?;
    Ok(Ok(Stream {
        id: sid.to_string(),
        kind,
        name: info.room_attributes.and_then(|r| r.name),
        last_message: info.last_message_date.map(|t| t.0),
        creator: None,
        member_ids: info
            .stream_attributes
            .and_then(|a| a.members)
            .unwrap_or_default()
            .into_iter()
            .map(|Int(id)| id)
            .collect(),
    }))
}

/// `POST /pod/v2/admin/streams/list`, every page, filtered to the
/// configured types, sorted by id.
fn list_streams<B: Backend>(
    client: &mut Client<B>,
    config: &Config,
) -> Result<Vec<Stream>, SourceError> {
    // The spec's filter knows IM, MIM and ROOM: with POST wanted, list
    // everything and filter here.
    let filter = if config.wants(StreamType::Post) {
        serde_json::json!({})
    } else {
        serde_json::json!({
            "streamTypes": config
                .stream_types
                .iter()
                .map(|t| serde_json::json!({ "type": t.as_str() }))
                .collect::<Vec<_>>()
        })
    };
    let mut streams: Vec<Stream> = Vec::new();
    let mut seen = HashSet::new();
    let mut skip = 0u64;
    loop {
        let url = client.pod_url(&format!(
            "/pod/v2/admin/streams/list?skip={skip}&limit={STREAMS_PAGE}"
        ));
        let response = client.call(Server::Pod, Method::Post, &url, Some(&filter))?;
        if response.status == 204 {
            break;
        }
        let list: api::StreamList = parse_json("POST /pod/v2/admin/streams/list", &response.body)?;
        let n = list.streams.len() as u64;
        for info in list.streams {
            let Some(kind) = info.kind.as_deref().and_then(StreamType::parse) else {
                continue;
            };
            if !config.wants(kind) || info.id.is_empty() || !seen.insert(info.id.clone()) {
                continue;
            }
            let attrs = info.attributes.unwrap_or_default();
            streams.push(Stream {
                id: info.id,
                kind,
                name: attrs.room_name,
                last_message: attrs.last_message_date.map(|t| t.0),
                creator: attrs.created_by_user_id.map(|t| t.0),
                member_ids: attrs
                    .members
                    .unwrap_or_default()
                    .into_iter()
                    .map(|Int(id)| id)
                    .collect(),
            });
        }
        skip += n;
        if n < u64::from(STREAMS_PAGE) || list.count.is_some_and(|c| skip >= c) {
            break;
        }
    }
    streams.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(streams)
}

#[cfg(test)]
mod tests;
