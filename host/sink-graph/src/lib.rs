//! Imports emails into Exchange Online mailboxes through Microsoft Graph,
//! as an app (client credentials, `Mail.ReadWrite` application
//! permission).
//!
//! **Why a JSON create and not MIME.** Posting raw MIME to
//! `/messages` creates a *draft*; `importMime` is beta only (no support
//! promise, may change). So each email is parsed back (mail-parser) and
//! created with `POST /users/{mailbox}/mailFolders/{id}/messages` as JSON:
//! subject, from, to/cc, the HTML (else text) body, up to five
//! `X-Connector-*` headers, and the extended properties that make it a
//! received, read, non-draft item: `Integer 0x0E07` (PR_MESSAGE_FLAGS) = 1
//! (read, no unsent bit), `SystemTime 0x0E06` (received), `SystemTime
//! 0x0039` (sent) and `String 0x1035` (the Message-ID). The MIME bytes
//! themselves are not stored: what Graph holds is compared field by field.
//!
//! **Attachments** follow "Attach large files to Outlook messages": one
//! of [`UPLOAD_SESSION_MIN`] (3 MB) or more goes, after the create,
//! through `createUploadSession` and PUTs of byte ranges (`Content-Range`,
//! `Content-Type: application/octet-stream`, chunks of [`UPLOAD_CHUNK`],
//! under 4 MB); smaller ones go inline in the create request as long as
//! it stays within [`REQUEST_BUDGET`] (base64 and JSON counted; Graph
//! answers 413 above 4 MB), the rest one by one with `POST
//! …/attachments`. Graph refuses upload sessions under 3 MB.
//!
//! **Complete or not.** The Message-ID is set at the create (Exchange
//! refuses to change it, or the flags, on a received item). A message
//! whose attachments follow the create is created with the named property
//! [`PENDING_PROPERTY`] = 1 and PATCHed to 0 once they are all in. A
//! message still pending (a failure or crash in between) is not
//! delivered: [`Sink::contains`] does not count it, and the next delivery
//! of that email deletes it before creating the email again, so it lands
//! exactly once. A failed attempt also deletes its half-made message at
//! once when it can.
//!
//! **What is there.** Per mailbox and folder one paged query
//! (`$select=internetMessageId`, following `@odata.nextLink`) is cached for
//! the run; deliveries keep it current. Folders are found under Inbox by
//! display name (`$filter=displayName eq '…'`) or created (409 "already
//! exists" is fine).
//!
//! **Limits and errors.** At most 4 requests in flight per mailbox
//! (Exchange's limit for an app) and `max-concurrency` in all. 429, 503
//! and 504 wait for `Retry-After` (exponential backoff without one; every
//! worker holds off that mailbox) and try again (a few times, then
//! [`SinkError::Unavailable`]); a create answered 503/504 or cut off may
//! have happened, so the folder is read again before that email is sent
//! again. A folder deleted meanwhile (404 `ErrorItemNotFound`) is found or
//! created again on the retry. 401 gets a new token once, then
//! [`SinkError::Authentication`] (fatal); a refused token request is fatal
//! too. 404 for a mailbox (no such user, no Exchange mailbox) refuses that
//! mailbox ([`SinkError::Refused`] for its emails; [`Sink::contains`]
//! answers `false` so that the run goes on). 403 `ErrorAccessDenied` is
//! what Exchange answers both when the app lacks `Mail.ReadWrite` and when
//! an application access policy excludes the mailbox: it refuses that
//! mailbox once another mailbox has accepted a request (or the answer
//! names the policy), and otherwise stops the run with
//! [`SinkError::Setup`] saying to grant `Mail.ReadWrite`. 403
//! `Authorization_RequestDenied` is [`SinkError::Setup`] too.
//!
//! Receipts read `graph:<mailbox>/<folder>;id=<Graph message id>`.

mod api;
mod body;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use self::api::{Api, ApiError, Contents};
use connector_oauth::ClientCredentials;
use connector_secrets::SecretLookup;
use connector_sink::{Delivery, Email, Mailbox, Receipt, Sink, SinkError};
use serde::Deserialize;

/// Attachments of this size or more go through an upload session, smaller
/// ones in a create or `POST …/attachments` request: Graph documents
/// upload sessions for 3 MB to 150 MB and refuses them below
/// (`ErrorAttachmentSizeShouldNotBeLessThanMinimumSize`).
pub const UPLOAD_SESSION_MIN: usize = 3_000_000;
/// Most bytes of JSON the sink puts in one request: Graph refuses requests
/// over 4 MB (413); 16 KiB are left for the request line and headers.
pub const REQUEST_BUDGET: usize = (4 << 20) - (16 << 10);
/// Exchange's limit of concurrent requests per app and mailbox.
pub const PER_MAILBOX_CONCURRENCY: usize = 4;
/// Upload-session chunk size: under Outlook's 4 MB per PUT, and a
/// multiple of 320 KiB (12 × 320 KiB) for servers that want that.
pub const UPLOAD_CHUNK: usize = 320 * 1024 * 12;
/// The named extended property that marks a message whose attachments are
/// still being added ("1") or complete ("0"); absent on messages created
/// whole.
pub const PENDING_PROPERTY: &str =
    "Integer {6f1c3c8e-53b1-4c5e-9a51-8d6c0b1e2a47} Name ConnectorAttachmentsPending";

/// `[sink] kind = "graph"`: Exchange Online through Microsoft Graph with
/// an app registration (client credentials).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GraphSinkConfig {
    /// Directory (tenant) id or domain.
    pub tenant: String,
    /// Application (client) id of the app registration.
    pub client_id: String,
    /// Name of the secret holding the app's client secret.
    pub client_secret_secret: String,
    /// Graph's base URL (`https://graph.microsoft.com` when absent).
    #[serde(default = "default_graph_url")]
    pub graph_url: String,
    /// The identity platform's base URL
    /// (`https://login.microsoftonline.com` when absent).
    #[serde(default = "default_login_url")]
    pub login_url: String,
    /// Most requests in flight at once, all mailboxes together (8); never
    /// more than 4 per mailbox, Exchange's own limit.
    #[serde(default = "default_graph_concurrency")]
    pub max_concurrency: u32,
    /// Seconds to wait for one request (120).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u32,
}

fn default_graph_url() -> String {
    "https://graph.microsoft.com".to_string()
}

fn default_login_url() -> String {
    connector_oauth::DEFAULT_LOGIN_URL.to_string()
}

fn default_graph_concurrency() -> u32 {
    8
}

fn default_timeout_secs() -> u32 {
    connector_sink::DEFAULT_TIMEOUT_SECS
}

/// The scope of Graph's app tokens.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Resolved settings of a Graph sink.
#[derive(Debug, Clone)]
pub struct GraphSettings {
    /// The app's credentials, for tokens of [`GRAPH_SCOPE`].
    pub credentials: ClientCredentials,
    /// Graph base URL, without trailing `/`.
    pub graph_url: String,
    /// Most requests in flight at once.
    pub max_concurrency: usize,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl GraphSettings {
    /// Settings from the connector file's `[sink]` table, checked.
    pub fn from_config(config: &GraphSinkConfig) -> Result<GraphSettings, String> {
        let timeout = Duration::from_secs(u64::from(config.timeout_secs.max(1)));
        let credentials = ClientCredentials::from_keys(
            &config.tenant,
            &config.client_id,
            &config.client_secret_secret,
            &config.login_url,
            GRAPH_SCOPE,
            timeout,
        )?;
        connector_oauth::check_http_url("graph-url", &config.graph_url)?;
        Ok(GraphSettings {
            credentials,
            graph_url: config.graph_url.trim().trim_end_matches('/').to_string(),
            max_concurrency: config.max_concurrency.max(1) as usize,
            timeout,
        })
    }
}

/// What the sink knows of one folder of one mailbox.
#[derive(Debug, Default)]
struct FolderState {
    /// Graph's folder id.
    id: String,
    /// Message-ID → Graph message id of complete messages.
    known: HashMap<String, String>,
    /// Message-ID → messages still pending: not delivered, deleted before
    /// the email is created again.
    incomplete: HashMap<String, Vec<String>>,
    /// A create may have happened unseen: read the folder again.
    stale: bool,
}

/// Imports emails through Microsoft Graph; see the module documentation.
pub struct GraphSink {
    api: Arc<Api>,
    folders: HashMap<(Mailbox, String), FolderState>,
    /// Mailboxes Graph refused for this sink's life (unknown, or access
    /// denied): their emails are refused without asking again.
    refused: HashMap<Mailbox, Refusal>,
}

/// Why a mailbox was refused.
#[derive(Debug, Clone)]
enum Refusal {
    /// 403 `ErrorAccessDenied` that may mean a missing permission: judged
    /// when reported (see [`ApiError::Denied`]).
    Denied(String),
    /// Refused for good (unknown mailbox, access policy).
    Refused(String),
}

impl fmt::Debug for GraphSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphSink")
            .field("target", &self.api.target)
            .field("folders", &self.folders.len())
            .finish()
    }
}

impl GraphSink {
    /// The sink a `[sink] kind = "graph"` table describes, with the client
    /// secret from `secrets`. Nothing connects yet.
    pub fn open(
        config: &GraphSinkConfig,
        secrets: Arc<dyn SecretLookup>,
    ) -> Result<GraphSink, SinkError> {
        let settings = GraphSettings::from_config(config).map_err(|reason| SinkError::Setup {
            target: config.graph_url.clone(),
            reason,
        })?;
        Ok(GraphSink::new(settings, secrets))
    }

    /// A sink for these settings; the client secret comes from `secrets`.
    /// Nothing is requested until the first call.
    pub fn new(settings: GraphSettings, secrets: Arc<dyn SecretLookup>) -> GraphSink {
        GraphSink {
            api: Arc::new(Api::new(settings, secrets)),
            folders: HashMap::new(),
            refused: HashMap::new(),
        }
    }

    /// The error to report for an email to a refused mailbox.
    fn refusal(
        &self,
        refusal: &Refusal,
        mailbox: &Mailbox,
        message_id: &str,
        folder: &str,
    ) -> SinkError {
        let e = match refusal {
            Refusal::Denied(said) => ApiError::Denied(said.clone()),
            Refusal::Refused(said) => ApiError::Refused(said.clone()),
        };
        self.api.sink_error(e, mailbox, message_id, folder)
    }

    /// Readies the folder; a refused mailbox is remembered (and reported
    /// with its emails) rather than returned.
    fn try_folder(&mut self, mailbox: &Mailbox, folder: &str) -> Result<bool, SinkError> {
        if self.refused.contains_key(mailbox) {
            return Ok(false);
        }
        match self.ready_folder(mailbox, folder) {
            Ok(()) => Ok(true),
            Err(ApiError::Denied(said)) => {
                self.refused.insert(mailbox.clone(), Refusal::Denied(said));
                Ok(false)
            }
            Err(ApiError::Refused(said)) => {
                self.refused.insert(mailbox.clone(), Refusal::Refused(said));
                Ok(false)
            }
            Err(e) => Err(self.api.sink_error(e, mailbox, "", folder)),
        }
    }

    /// The folder's state, found or created and read when needed.
    fn ready_folder(&mut self, mailbox: &Mailbox, folder: &str) -> Result<(), ApiError> {
        let key = (mailbox.clone(), folder.to_string());
        if self.folders.get(&key).is_some_and(|f| !f.stale) {
            return Ok(());
        }
        // Found again when stale too: it may have been deleted meanwhile.
        let id = self.api.folder_id(mailbox, folder)?;
        let Contents {
            complete,
            incomplete,
        } = self.api.folder_contents(mailbox, &id)?;
        tracing::debug!(
            %mailbox,
            folder,
            messages = complete.len(),
            incomplete = incomplete.len(),
            "Graph folder read"
        );
        self.folders.insert(
            key,
            FolderState {
                id,
                known: complete,
                incomplete,
                stale: false,
            },
        );
        Ok(())
    }
}

/// Hands out work so that no mailbox has more than
/// [`PER_MAILBOX_CONCURRENCY`] requests in flight.
struct Scheduler {
    queue: Mutex<(Vec<Job>, HashMap<Mailbox, usize>)>,
    freed: Condvar,
}

struct Job {
    index: usize,
    mailbox: Mailbox,
}

impl Scheduler {
    /// The next job whose mailbox has room, waiting while every queued
    /// job's mailbox is busy; `None` when no job is left.
    fn next(&self) -> Option<Job> {
        let mut guard = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let (jobs, busy) = &mut *guard;
            if jobs.is_empty() {
                return None;
            }
            let at = jobs
                .iter()
                .position(|j| busy.get(&j.mailbox).copied().unwrap_or(0) < PER_MAILBOX_CONCURRENCY);
            if let Some(at) = at {
                let job = jobs.remove(at);
                *busy.entry(job.mailbox.clone()).or_default() += 1;
                return Some(job);
            }
            guard = self.freed.wait(guard).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn done(&self, mailbox: &Mailbox) {
        let mut guard = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = guard.1.get_mut(mailbox) {
            *n = n.saturating_sub(1);
        }
        self.freed.notify_all();
    }
}

impl Sink for GraphSink {
    fn describe(&self) -> String {
        format!(
            "graph {} (tenant {}, app {})",
            self.api.settings.graph_url,
            self.api.settings.credentials.tenant,
            self.api.settings.credentials.client_id
        )
    }

    fn contains(
        &mut self,
        mailbox: &Mailbox,
        folder: &str,
        message_id: &str,
    ) -> Result<bool, SinkError> {
        if !self.try_folder(mailbox, folder)? {
            // Refused: its emails are reported by `deliver`.
            return Ok(false);
        }
        Ok(self.folders[&(mailbox.clone(), folder.to_string())]
            .known
            .contains_key(message_id))
    }

    fn deliver(&mut self, batch: &[Delivery<'_>]) -> Vec<Result<Receipt, SinkError>> {
        let mut results: Vec<Option<Result<Receipt, SinkError>>> =
            (0..batch.len()).map(|_| None).collect();
        let receipt = |d: &Delivery<'_>, id: &str| {
            Receipt(format!("graph:{}/{};id={id}", d.mailbox, d.folder))
        };
        // Folders first (sequential: a few requests each).
        let mut failed_folders: HashMap<(Mailbox, String), SinkError> = HashMap::new();
        for d in batch {
            let key = (d.mailbox.clone(), d.folder.to_string());
            if failed_folders.contains_key(&key) {
                continue;
            }
            if let Err(e) = self.try_folder(d.mailbox, d.folder) {
                failed_folders.insert(key, e);
            }
        }
        // What is already there, or twice in the batch, is not sent again.
        let mut jobs = Vec::new();
        let mut first_of: HashMap<(Mailbox, String, String), usize> = HashMap::new();
        let mut repeats = Vec::new();
        for (i, d) in batch.iter().enumerate() {
            let key = (d.mailbox.clone(), d.folder.to_string());
            if let Some(e) = failed_folders.get(&key) {
                results[i] = Some(Err(e.clone()));
                continue;
            }
            if let Some(refusal) = self.refused.get(d.mailbox) {
                results[i] = Some(Err(self.refusal(
                    refusal,
                    d.mailbox,
                    &d.email.message_id,
                    d.folder,
                )));
                continue;
            }
            if let Some(id) = self.folders[&key].known.get(&d.email.message_id) {
                results[i] = Some(Ok(receipt(d, id)));
                continue;
            }
            let dup = (key.0, key.1, d.email.message_id.clone());
            if let Some(&first) = first_of.get(&dup) {
                repeats.push((i, first));
                continue;
            }
            first_of.insert(dup, i);
            jobs.push(Job {
                index: i,
                mailbox: d.mailbox.clone(),
            });
        }
        let workers = self.api.settings.max_concurrency.min(jobs.len()).max(1);
        // Each job's folder id and the pending copies it deletes first.
        let plans: HashMap<usize, (String, Vec<String>)> = jobs
            .iter()
            .map(|j| {
                let d = &batch[j.index];
                let folder = &self.folders[&(d.mailbox.clone(), d.folder.to_string())];
                let stale = folder
                    .incomplete
                    .get(&d.email.message_id)
                    .cloned()
                    .unwrap_or_default();
                (j.index, (folder.id.clone(), stale))
            })
            .collect();
        let scheduler = Scheduler {
            queue: Mutex::new((jobs, HashMap::new())),
            freed: Condvar::new(),
        };
        let api = &self.api;
        let done: Mutex<Vec<(usize, Result<String, ApiError>)>> = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    while let Some(job) = scheduler.next() {
                        let d = &batch[job.index];
                        let (folder_id, pending) = &plans[&job.index];
                        let result = redo(api, d.mailbox, folder_id, pending, d.email);
                        scheduler.done(&job.mailbox);
                        done.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((job.index, result));
                    }
                });
            }
        });
        let done = done.into_inner().unwrap_or_else(|p| p.into_inner());
        for (i, result) in done {
            let d = &batch[i];
            let key = (d.mailbox.clone(), d.folder.to_string());
            results[i] = Some(match result {
                Ok(id) => {
                    if let Some(f) = self.folders.get_mut(&key) {
                        f.incomplete.remove(&d.email.message_id);
                        f.known.insert(d.email.message_id.clone(), id.clone());
                    }
                    Ok(receipt(d, &id))
                }
                Err(e) => {
                    if e.maybe_done()
                        && let Some(f) = self.folders.get_mut(&key)
                    {
                        // What the attempt may have left is found (and a
                        // pending copy deleted) on the retry.
                        f.stale = true;
                    }
                    Err(self
                        .api
                        .sink_error(e, d.mailbox, &d.email.message_id, d.folder))
                }
            });
        }
        for (i, first) in repeats {
            results[i] = Some(match results[first].as_ref().expect("sent first") {
                Ok(r) => Ok(r.clone()),
                Err(e) => Err(e.clone()),
            });
        }
        results
            .into_iter()
            .map(|r| r.expect("every delivery has a result"))
            .collect()
    }
}

/// Deletes the pending copies a stopped attempt left of `email`, then
/// creates it; returns its Graph id.
fn redo(
    api: &Api,
    mailbox: &Mailbox,
    folder_id: &str,
    pending: &[String],
    email: &Email,
) -> Result<String, ApiError> {
    for id in pending {
        api.delete_message(mailbox, id)?;
        tracing::info!(%mailbox, id, message_id = %email.message_id, "deleted an incomplete copy before creating the email again");
    }
    create(api, mailbox, folder_id, email)
}

/// Creates one email in a folder, with the attachments that follow the
/// create; returns its Graph id.
fn create(
    api: &Api,
    mailbox: &Mailbox,
    folder_id: &str,
    email: &Email,
) -> Result<String, ApiError> {
    let built = body::message_json(email).map_err(ApiError::Invalid)?;
    let id = api.create_message(mailbox, folder_id, &built.json)?;
    if built.posted.is_empty() && built.uploaded.is_empty() {
        return Ok(id);
    }
    let finished = built
        .posted
        .iter()
        .try_for_each(|att| api.post_attachment(mailbox, &id, att))
        .and_then(|()| {
            built
                .uploaded
                .iter()
                .try_for_each(|att| api.upload_attachment(mailbox, &id, att))
        })
        .and_then(|()| api.mark_complete(mailbox, &id));
    if let Err(e) = finished {
        // Still pending, the half-made item is not counted; remove it now
        // if possible (else the retry, which reads the folder again, does).
        if let Err(d) = api.delete_message(mailbox, &id) {
            tracing::warn!(%mailbox, id, "cannot delete a half-made message yet: {d:?}");
            if let ApiError::Unavailable { message, .. } = e {
                return Err(ApiError::Unavailable {
                    message,
                    maybe_done: true,
                });
            }
        }
        return Err(e);
    }
    Ok(id)
}
