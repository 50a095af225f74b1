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
//! **Limits and errors.** Exchange allows an app 4 requests in flight and
//! 10,000 requests per 10 minutes per mailbox (`mailbox-concurrency`,
//! `mailbox-requests`, `mailbox-window-secs`). The sink keeps those limits
//! in a [`MailboxBudget`](connector_sink::MailboxBudget): the host's state
//! store, shared by every worker writing to the same mailboxes as the same
//! app (in-process without one). Per mailbox it takes slots for as many
//! requests at once as it has work for (never more than the limit, all
//! workers together), runs that many lanes of emails one request after
//! another, renews the slots while it holds them and frees each when its
//! lane runs out of work; requests come from the mailbox's rate window,
//! reserved in chunks. All mailboxes of a batch are worked at once, as
//! asynchronous tasks on a few threads (tokio, hyper), at most
//! `max-concurrency` requests in flight in all. 429, 503
//! and 504 wait for `Retry-After` (exponential backoff without one; every
//! request to that mailbox holds off, the others go on) and try again (a few times, then
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

pub mod answers;
mod api;
mod body;
mod lanes;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use self::answers::Contents;
use self::api::{Api, ApiError};
use connector_oauth::ClientCredentials;
use connector_secrets::SecretLookup;
use connector_sink::budget::{MailboxBudget, MailboxLimits};
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
/// Exchange Online's limits per app and mailbox ("Microsoft Graph
/// service-specific throttling limits", Outlook service): 4 requests in
/// flight, 10,000 requests per 10 minutes.
pub const EXCHANGE_LIMITS: MailboxLimits = MailboxLimits {
    concurrency: 4,
    requests: 10_000,
    window: Duration::from_secs(600),
};
/// Upload-session chunk size: under Outlook's 4 MB per PUT, and a
/// multiple of 320 KiB (12 × 320 KiB) for servers that want that.
pub const UPLOAD_CHUNK: usize = 320 * 1024 * 12;
/// The named extended property that marks a message whose attachments are
/// still being added ("1") or complete ("0"); absent on messages created
/// whole.
pub const PENDING_PROPERTY: &str =
    "Integer {6f1c3c8e-53b1-4c5e-9a51-8d6c0b1e2a47} Name ConnectorAttachmentsPending";
/// Threads that drive the sink's requests, however many are in flight.
const THREADS: usize = 2;

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
    /// Most requests in flight at once, all mailboxes together (400: 100
    /// mailboxes at their limit).
    #[serde(default = "default_graph_concurrency")]
    pub max_concurrency: u32,
    /// Most requests in flight per mailbox, all workers together (4,
    /// Exchange's limit; 1 to 4).
    #[serde(default = "default_mailbox_concurrency")]
    pub mailbox_concurrency: u32,
    /// Most requests per mailbox in `mailbox-window-secs`, all workers
    /// together (10,000, Exchange's limit).
    #[serde(default = "default_mailbox_requests")]
    pub mailbox_requests: u32,
    /// The rate window in seconds (600).
    #[serde(default = "default_mailbox_window_secs")]
    pub mailbox_window_secs: u32,
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
    400
}

fn default_mailbox_concurrency() -> u32 {
    EXCHANGE_LIMITS.concurrency
}

fn default_mailbox_requests() -> u32 {
    EXCHANGE_LIMITS.requests
}

fn default_mailbox_window_secs() -> u32 {
    EXCHANGE_LIMITS.window.as_secs() as u32
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
    /// Each mailbox's limits, all workers together.
    pub limits: MailboxLimits,
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
        if !(1..=EXCHANGE_LIMITS.concurrency).contains(&config.mailbox_concurrency) {
            return Err(format!(
                "`mailbox-concurrency = {}` is outside 1 to {}: Exchange Online answers a fifth concurrent request per mailbox with 429; set 1 to {}",
                config.mailbox_concurrency,
                EXCHANGE_LIMITS.concurrency,
                EXCHANGE_LIMITS.concurrency
            ));
        }
        if config.mailbox_requests == 0 || config.mailbox_window_secs == 0 {
            return Err(format!(
                "`mailbox-requests = {}` and `mailbox-window-secs = {}` must both be at least 1 (Exchange Online: 10000 requests per 600 seconds)",
                config.mailbox_requests, config.mailbox_window_secs
            ));
        }
        if config.max_concurrency == 0 {
            return Err(
                "`max-concurrency = 0` would send nothing; set at least 1 (400 when absent)".into(),
            );
        }
        Ok(GraphSettings {
            credentials,
            graph_url: config.graph_url.trim().trim_end_matches('/').to_string(),
            max_concurrency: config.max_concurrency as usize,
            limits: MailboxLimits {
                concurrency: config.mailbox_concurrency,
                requests: config.mailbox_requests,
                window: Duration::from_secs(u64::from(config.mailbox_window_secs)),
            },
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
    /// Drives the requests; dropped after `api`, whose connections live
    /// in it.
    runtime: tokio::runtime::Runtime,
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
        GraphSink::new(settings, secrets)
    }

    /// A sink for these settings; the client secret comes from `secrets`.
    /// Nothing is requested until the first call.
    pub fn new(
        settings: GraphSettings,
        secrets: Arc<dyn SecretLookup>,
    ) -> Result<GraphSink, SinkError> {
        let target = settings.graph_url.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(THREADS)
            .thread_name("graph-sink")
            .enable_all()
            .build()
            .map_err(|e| SinkError::Setup {
                target,
                reason: format!(
                    "cannot start the sink's threads: {e}; the machine is out of threads or memory"
                ),
            })?;
        let api = {
            let _inside = runtime.enter();
            Api::new(settings, secrets)?
        };
        Ok(GraphSink {
            runtime,
            api: Arc::new(api),
            folders: HashMap::new(),
            refused: HashMap::new(),
        })
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

    /// Readies the folders of `wanted` that are not ready yet, every
    /// mailbox at once (each under one of its slots); a refused mailbox is
    /// remembered (and reported with its emails). Returns the folders that
    /// failed otherwise.
    fn ready_folders(
        &mut self,
        wanted: &[(&Mailbox, &str)],
    ) -> HashMap<(Mailbox, String), SinkError> {
        let mut by_mailbox: HashMap<&Mailbox, Vec<&str>> = HashMap::new();
        for (mailbox, folder) in wanted {
            let key = ((*mailbox).clone(), folder.to_string());
            let ready = self.folders.get(&key).is_some_and(|f| !f.stale);
            if ready || self.refused.contains_key(*mailbox) {
                continue;
            }
            let folders = by_mailbox.entry(mailbox).or_default();
            if !folders.contains(folder) {
                folders.push(folder);
            }
        }
        let api = &self.api;
        let read = self.runtime.block_on(lanes::each_mailbox(
            api,
            by_mailbox,
            |mailbox, folders| async move {
                let mut out = Vec::new();
                for folder in folders {
                    let read = read_folder(api, mailbox, folder).await;
                    let refused = matches!(read, Err(ApiError::Denied(_) | ApiError::Refused(_)));
                    out.push((folder, read));
                    if refused {
                        break;
                    }
                }
                out
            },
        ));
        let mut failed = HashMap::new();
        for (mailbox, outcome) in read {
            let folders = match outcome {
                Ok(folders) => folders,
                Err(e) => {
                    // No slot could be had: every folder of it failed.
                    for (m, folder) in wanted.iter().filter(|(m, _)| *m == mailbox) {
                        let e = self.api.sink_error(e.clone(), m, "", folder);
                        failed.insert(((*m).clone(), folder.to_string()), e);
                    }
                    continue;
                }
            };
            for (folder, read) in folders {
                match read {
                    Ok(state) => {
                        self.folders
                            .insert((mailbox.clone(), folder.to_string()), state);
                    }
                    Err(ApiError::Denied(said)) => {
                        self.refused.insert(mailbox.clone(), Refusal::Denied(said));
                    }
                    Err(ApiError::Refused(said)) => {
                        self.refused.insert(mailbox.clone(), Refusal::Refused(said));
                    }
                    Err(e) => {
                        let error = self.api.sink_error(e, mailbox, "", folder);
                        failed.insert((mailbox.clone(), folder.to_string()), error);
                    }
                }
            }
        }
        failed
    }
}

/// Finds (or creates) a folder and reads what it holds.
async fn read_folder(api: &Api, mailbox: &Mailbox, folder: &str) -> Result<FolderState, ApiError> {
    // Found again when stale too: it may have been deleted meanwhile.
    let id = api.folder_id(mailbox, folder).await?;
    let Contents {
        complete,
        incomplete,
    } = api.folder_contents(mailbox, &id).await?;
    tracing::debug!(
        %mailbox,
        folder,
        messages = complete.len(),
        incomplete = incomplete.len(),
        "Graph folder read"
    );
    Ok(FolderState {
        id,
        known: complete,
        incomplete,
        stale: false,
    })
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
        self.contains_each(&[(mailbox, folder, message_id)])
            .pop()
            .expect("one answer per query")
    }

    fn contains_each(
        &mut self,
        queries: &[(&Mailbox, &str, &str)],
    ) -> Vec<Result<bool, SinkError>> {
        let wanted: Vec<(&Mailbox, &str)> = queries.iter().map(|(m, f, _)| (*m, *f)).collect();
        let failed = self.ready_folders(&wanted);
        queries
            .iter()
            .map(|(mailbox, folder, message_id)| {
                let key = ((*mailbox).clone(), folder.to_string());
                if let Some(e) = failed.get(&key) {
                    return Err(e.clone());
                }
                // A refused mailbox's emails are reported by `deliver`.
                Ok(self
                    .folders
                    .get(&key)
                    .is_some_and(|f| f.known.contains_key(*message_id)))
            })
            .collect()
    }

    fn share_budget(&mut self, budget: Arc<dyn MailboxBudget>) {
        self.api.share_budget(budget);
    }

    fn deliver(&mut self, batch: &[Delivery<'_>]) -> Vec<Result<Receipt, SinkError>> {
        let mut results: Vec<Option<Result<Receipt, SinkError>>> =
            (0..batch.len()).map(|_| None).collect();
        let receipt = |d: &Delivery<'_>, id: &str| {
            Receipt(format!("graph:{}/{};id={id}", d.mailbox, d.folder))
        };
        let wanted: Vec<(&Mailbox, &str)> = batch.iter().map(|d| (d.mailbox, d.folder)).collect();
        let failed_folders = self.ready_folders(&wanted);
        // What is already there, or twice in the batch, is not sent again.
        let mut jobs: HashMap<&Mailbox, Vec<Job>> = HashMap::new();
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
            let folder = &self.folders[&key];
            if let Some(id) = folder.known.get(&d.email.message_id) {
                results[i] = Some(Ok(receipt(d, id)));
                continue;
            }
            let dup = (key.0, key.1, d.email.message_id.clone());
            if let Some(&first) = first_of.get(&dup) {
                repeats.push((i, first));
                continue;
            }
            first_of.insert(dup, i);
            // The folder's id and the pending copies to delete first.
            jobs.entry(d.mailbox).or_default().push(Job {
                index: i,
                email: d.email,
                folder_id: folder.id.clone(),
                pending: folder
                    .incomplete
                    .get(&d.email.message_id)
                    .cloned()
                    .unwrap_or_default(),
            });
        }
        let api = &self.api;
        let (done, unrun) =
            self.runtime
                .block_on(lanes::each_job(api, jobs, |mailbox, job| async move {
                    let created = redo(api, mailbox, &job.folder_id, &job.pending, job.email);
                    (job.index, created.await)
                }));
        let unrun = unrun.into_iter().map(|(job, e)| (job.index, Err(e)));
        for (i, result) in done.into_iter().chain(unrun) {
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

/// One email to create in one mailbox: where, and the pending copies a
/// stopped attempt left to delete first.
struct Job<'a> {
    index: usize,
    email: &'a Email,
    folder_id: String,
    pending: Vec<String>,
}

/// Deletes the pending copies a stopped attempt left of `email`, then
/// creates it; returns its Graph id.
async fn redo(
    api: &Api,
    mailbox: &Mailbox,
    folder_id: &str,
    pending: &[String],
    email: &Email,
) -> Result<String, ApiError> {
    for id in pending {
        api.delete_message(mailbox, id).await?;
        tracing::info!(%mailbox, id, message_id = %email.message_id, "deleted an incomplete copy before creating the email again");
    }
    create(api, mailbox, folder_id, email).await
}

/// Creates one email in a folder, with the attachments that follow the
/// create; returns its Graph id.
async fn create(
    api: &Api,
    mailbox: &Mailbox,
    folder_id: &str,
    email: &Email,
) -> Result<String, ApiError> {
    // A big email is built on a blocking thread: turning big attachments
    // into JSON takes a while, and the other mailboxes' requests go on.
    let built = if email.len() > api::INLINE_WORK as u64 {
        let owned = email.clone();
        tokio::task::spawn_blocking(move || body::message_json(&owned))
            .await
            .map_err(|e| ApiError::Invalid(format!("building the message stopped: {e}")))?
    } else {
        body::message_json(email)
    }
    .map_err(ApiError::Invalid)?;
    let id = api.create_message(mailbox, folder_id, built.json).await?;
    if built.posted.is_empty() && built.uploaded.is_empty() {
        return Ok(id);
    }
    let finished = async {
        for att in &built.posted {
            api.post_attachment(mailbox, &id, att).await?;
        }
        for att in &built.uploaded {
            api.upload_attachment(mailbox, &id, att).await?;
        }
        api.mark_complete(mailbox, &id).await
    }
    .await;
    if let Err(e) = finished {
        // Still pending, the half-made item is not counted; remove it now
        // if possible (else the retry, which reads the folder again, does).
        if let Err(d) = api.delete_message(mailbox, &id).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> GraphSinkConfig {
        toml::from_str(&format!(
            "tenant = \"t.example\"\nclient-id = \"app\"\nclient-secret-secret = \"s\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn mailbox_limits_default_to_exchanges_and_are_refused_outside_what_it_allows() {
        let settings = GraphSettings::from_config(&config("")).unwrap();
        assert_eq!(settings.limits, EXCHANGE_LIMITS);
        let lower = GraphSettings::from_config(&config(
            "mailbox-concurrency = 2\nmailbox-requests = 500\nmailbox-window-secs = 60",
        ))
        .unwrap();
        assert_eq!(
            lower.limits,
            MailboxLimits {
                concurrency: 2,
                requests: 500,
                window: Duration::from_secs(60)
            }
        );
        let fifth = GraphSettings::from_config(&config("mailbox-concurrency = 5")).unwrap_err();
        assert!(fifth.contains("set 1 to 4"), "{fifth}");
        let none = GraphSettings::from_config(&config("mailbox-requests = 0")).unwrap_err();
        assert!(none.contains("at least 1"), "{none}");
    }
}
