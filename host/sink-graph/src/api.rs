//! Graph requests, asynchronous (hyper over rustls on the sink's few
//! threads): the app token, the mailbox's share of its rate window,
//! retries on 429/503, error shapes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use super::answers::{self, Contents, MAX_WAIT, throttle_wait};
use super::{GraphSettings, PENDING_PROPERTY, UPLOAD_CHUNK, body};
use connector_oauth::{AppTokens, TokenError};
use connector_secrets::SecretLookup;
use connector_sink::budget::{LocalBudget, MailboxBudget, Pauses};
use connector_sink::{Mailbox, SinkError};

/// Bytes of JSON up to which a body is built and written on the sink's own
/// thread; bigger ones go to a blocking thread, so the other mailboxes'
/// requests go on meanwhile.
pub(super) const INLINE_WORK: usize = 64 << 10;
/// How often a throttled (429/503) request is tried before giving up.
const ATTEMPTS: u32 = 6;
/// What a mailbox address keeps unencoded in a URL path: letters, digits,
/// `-`, `.`, `_`, `~` and `@`; everything else (`#`, `?`, `/`, `+`, `%`,
/// non-ASCII) is percent-encoded.
const MAILBOX_IN_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');
/// What Exchange says when an application access policy excludes the
/// mailbox (documented in "Limiting application permissions to specific
/// Exchange Online mailboxes"); a missing permission says something else
/// with the same code.
const POLICY_DENIAL: &str = "access to odata is disabled";

/// What went wrong with a request, before it is tied to an email.
#[derive(Debug, Clone)]
pub(super) enum ApiError {
    /// The email cannot be turned into a Graph message.
    Invalid(String),
    /// Try again later; `maybe_done` when the request may have taken
    /// effect (a create cut off or answered 5xx).
    Unavailable { message: String, maybe_done: bool },
    /// Graph refused this item or mailbox.
    Refused(String),
    /// 403 `ErrorAccessDenied` before any mailbox answered: either the app
    /// lacks `Mail.ReadWrite` (then every mailbox answers so) or an
    /// application access policy excludes this mailbox.
    Denied(String),
    /// The folder is gone (deleted meanwhile): find or create it again.
    FolderGone(String),
    /// The app's credentials are refused or missing.
    Authentication { reason: String, fix: String },
    /// The app cannot work with this tenant as set up.
    Setup(String),
}

impl ApiError {
    /// Whether the request may have created something (or left a pending
    /// copy that could not be deleted yet), or the folder must be found
    /// again: either way the folder is read again before the next attempt.
    pub(super) fn maybe_done(&self) -> bool {
        matches!(
            self,
            ApiError::Unavailable {
                maybe_done: true,
                ..
            } | ApiError::FolderGone(_)
        )
    }
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Graph client shared by the sink's mailboxes.
pub(super) struct Api {
    pub(super) settings: GraphSettings,
    pub(super) target: String,
    client: HttpClient,
    tokens: AppTokens,
    /// Some mailbox answered a mail request: the app has its permission.
    answered: AtomicBool,
    /// Mailbox → when Graph's last `Retry-After` for it ends; every
    /// request to it waits for it, not only the one that was throttled.
    quiet_until: Arc<Pauses>,
    /// Requests in flight, all mailboxes together
    /// ([`GraphSettings::max_concurrency`]).
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Where the mailboxes' slots and rate windows are kept.
    budget: Mutex<Arc<dyn MailboxBudget>>,
    /// Budget key → requests reserved from its rate window and not sent
    /// yet.
    allowances: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Allowance>>>>,
}

/// Requests of one mailbox's rate window that this sink may still send.
#[derive(Debug)]
struct Allowance {
    left: u32,
    until: Instant,
}

/// An answer: status, `Retry-After` seconds, body.
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: String,
}

impl Api {
    /// A client for `settings`; it must be made inside the sink's tokio
    /// runtime.
    pub(super) fn new(
        settings: GraphSettings,
        secrets: Arc<dyn SecretLookup>,
    ) -> Result<Api, SinkError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| SinkError::Setup {
                target: settings.graph_url.clone(),
                reason: format!("TLS cannot be set up: {e}"),
            })?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(Api {
            target: settings.graph_url.clone(),
            tokens: AppTokens::new(settings.credentials.clone(), secrets),
            in_flight: Arc::new(tokio::sync::Semaphore::new(settings.max_concurrency)),
            settings,
            client,
            answered: AtomicBool::new(false),
            quiet_until: Arc::default(),
            budget: Mutex::new(Arc::new(LocalBudget::default())),
            allowances: Mutex::new(HashMap::new()),
        })
    }

    /// Keeps the mailboxes' limits in `budget` from now on.
    pub(super) fn share_budget(&self, budget: Arc<dyn MailboxBudget>) {
        *lock(&self.budget) = budget;
        lock(&self.allowances).clear();
    }

    /// The budget the mailboxes' limits are kept in.
    pub(super) fn budget(&self) -> Arc<dyn MailboxBudget> {
        lock(&self.budget).clone()
    }

    /// The mailbox's key in the budget: Exchange's limits are per app and
    /// mailbox.
    pub(super) fn budget_key(&self, mailbox: &Mailbox) -> String {
        format!(
            "graph {} {}",
            self.settings.credentials.client_id,
            mailbox.as_str().to_ascii_lowercase()
        )
    }

    /// Takes one request from the mailbox's share of its rate window,
    /// reserving a chunk from the budget when none is left, and waiting
    /// (this mailbox only) while the window is used up.
    async fn allow(&self, mailbox: &Mailbox) -> Result<(), ApiError> {
        let key = self.budget_key(mailbox);
        let cell = lock(&self.allowances)
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Allowance {
                    left: 0,
                    until: Instant::now(),
                }))
            })
            .clone();
        let mut allowance = cell.lock().await;
        loop {
            if allowance.left > 0 && Instant::now() < allowance.until {
                allowance.left -= 1;
                return Ok(());
            }
            let limits = self.settings.limits;
            let chunk = (limits.requests / 100).clamp(1, 100);
            let (budget, key) = (self.budget(), key.clone());
            let asked = Instant::now();
            let grant = blocking(move || budget.reserve_requests(&key, chunk, &limits)).await?;
            if grant.granted > 0 {
                allowance.left = grant.granted;
                allowance.until = asked + grant.window_left;
            } else {
                tracing::info!(%mailbox, wait = ?grant.window_left, "the mailbox's request window is used up; waiting for the next");
                tokio::time::sleep(grant.window_left.max(Duration::from_millis(10))).await;
            }
        }
    }

    /// `…/v1.0/users/{mailbox}` with the address percent-encoded.
    fn users(&self, mailbox: &Mailbox) -> String {
        format!(
            "{}/v1.0/users/{}",
            self.settings.graph_url,
            utf8_percent_encode(mailbox.as_str(), MAILBOX_IN_PATH)
        )
    }

    /// Whether some mailbox has answered a mail request in this run.
    pub(super) fn has_answered(&self) -> bool {
        self.answered.load(Ordering::Relaxed)
    }

    /// Leaves `mailbox` alone for `wait` (every request to it).
    /// Leaves `mailbox` alone for `wait`: this sink's requests to it at
    /// once, every worker's once they next reserve from its window.
    fn hold_off(&self, mailbox: &Mailbox, wait: Duration) {
        self.quiet_until.hold(mailbox.as_str(), wait);
        let (budget, key) = (self.budget(), self.budget_key(mailbox));
        tokio::task::spawn_blocking(move || {
            if let Err(e) = budget.throttle(&key, wait) {
                tracing::warn!("cannot share a mailbox's Retry-After with the other workers: {e}");
            }
        });
    }

    /// The sink error for `e` while working on `message_id` (empty when
    /// none) in `folder` of `mailbox`.
    pub(super) fn sink_error(
        &self,
        e: ApiError,
        mailbox: &Mailbox,
        message_id: &str,
        folder: &str,
    ) -> SinkError {
        let target = self.target.clone();
        match e {
            ApiError::Denied(said) if !self.has_answered() => SinkError::Setup {
                target,
                reason: format!(
                    "{said}; no mailbox has accepted a request so far, so the app most likely lacks the Mail.ReadWrite application permission: grant Mail.ReadWrite (Application, not Delegated) to app {} and give admin consent; if it has it, its application access policy excludes every mailbox tried (check with Test-ApplicationAccessPolicy)",
                    self.settings.credentials.client_id
                ),
            },
            ApiError::Denied(said) => SinkError::Refused {
                target,
                mailbox: mailbox.to_string(),
                message_id: format!("(folder {folder})"),
                reason: format!(
                    "{said}; other mailboxes accept the app, so an application access policy excludes this one: add it to the policy's group or fix the mapping"
                ),
            },
            ApiError::FolderGone(message) => SinkError::Unavailable { target, message },
            ApiError::Invalid(reason) | ApiError::Refused(reason) => SinkError::Refused {
                target,
                mailbox: mailbox.to_string(),
                message_id: if message_id.is_empty() {
                    format!("(folder {folder})")
                } else {
                    message_id.to_string()
                },
                reason,
            },
            ApiError::Unavailable { message, .. } => SinkError::Unavailable { target, message },
            ApiError::Authentication { reason, fix } => SinkError::Authentication {
                target,
                mailbox: mailbox.to_string(),
                reason,
                fix,
            },
            ApiError::Setup(reason) => SinkError::Setup { target, reason },
        }
    }

    /// A valid app token, requested when missing or about to expire. The
    /// request is synchronous: it holds up the sink's other requests, which
    /// would wait for the token anyway.
    fn token(&self) -> Result<String, ApiError> {
        self.tokens.token().map_err(|e| match e {
            TokenError::Credentials { reason, fix } => ApiError::Authentication { reason, fix },
            e @ TokenError::NotAnEndpoint { .. } => ApiError::Setup(e.to_string()),
            e @ TokenError::Unavailable { .. } => ApiError::Unavailable {
                message: e.to_string(),
                maybe_done: false,
            },
        })
    }

    /// Sends a Graph request for `mailbox` with the app token. 429, 503
    /// and 504 wait for `Retry-After` (or back off exponentially without
    /// one) and try again, except a 503/504 to a request that `creates`
    /// (it may have taken effect: the caller reads the folder again
    /// first); 401 gets a new token once.
    async fn call(
        &self,
        mailbox: &Mailbox,
        method: &str,
        url: &str,
        body: Option<Value>,
        creates: bool,
    ) -> Result<Value, ApiError> {
        // Serialized once, before waiting, on a blocking thread (a big
        // body takes a while): what goes out right after the wait is then
        // only the sending.
        let text = match body {
            Some(v) if body::json_len(&v) > INLINE_WORK => {
                Some(off_thread(move || Bytes::from(v.to_string())).await?)
            }
            Some(v) => Some(Bytes::from(v.to_string())),
            None => None,
        };
        let mut renewed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.token()?;
            self.allow(mailbox).await?;
            let mut headers = vec![
                ("Authorization", format!("Bearer {token}")),
                ("Accept", "application/json".to_string()),
            ];
            if text.is_some() {
                headers.push(("Content-Type", "application/json".to_string()));
            }
            let body = text.clone().unwrap_or_default();
            let sent = self.send(Some(mailbox), method, url, &headers, body).await;
            let answer = match sent {
                Ok(a) => a,
                Err(message) => {
                    return Err(ApiError::Unavailable {
                        message: format!("{method} {url}: {message}"),
                        maybe_done: creates,
                    });
                }
            };
            let status = answer.status;
            if (200..300).contains(&status) {
                self.answered.store(true, Ordering::Relaxed);
                return Ok(answers::body(&answer.body));
            }
            let (code, message) = answers::error(&answer.body);
            let said = format!("{method} {url} answered {status} {code}: {message}");
            match status {
                401 if !renewed => {
                    renewed = true;
                    self.tokens.forget(&token);
                    continue;
                }
                401 => {
                    return Err(ApiError::Authentication {
                        reason: said,
                        fix: "check that the app registration has the Mail.ReadWrite application permission with admin consent and that its client secret is current".into(),
                    });
                }
                429 | 503 | 504 if attempt < ATTEMPTS && !(creates && status != 429) => {
                    let wait = throttle_wait(answer.retry_after, attempt);
                    self.hold_off(mailbox, wait);
                    tracing::info!(url, status, code, ?wait, "Graph throttled; waiting");
                    continue;
                }
                429 | 500..=599 => {
                    if let Some(seconds) = answer.retry_after {
                        self.hold_off(mailbox, Duration::from_secs(seconds).min(MAX_WAIT));
                    }
                    return Err(ApiError::Unavailable {
                        message: said,
                        maybe_done: creates && status != 429,
                    });
                }
                413 => {
                    return Err(ApiError::Refused(format!(
                        "{said}; the request was over Graph's 4 MB limit"
                    )));
                }
                403 if code == "Authorization_RequestDenied"
                    || message
                        .to_ascii_lowercase()
                        .contains("insufficient privileges") =>
                {
                    return Err(ApiError::Setup(format!(
                        "{said}; the app lacks the Mail.ReadWrite application permission or its admin consent: grant it in the app registration's API permissions and consent as an administrator"
                    )));
                }
                403 if code == "ErrorAccessDenied"
                    && !message.to_ascii_lowercase().contains(POLICY_DENIAL) =>
                {
                    return Err(ApiError::Denied(said));
                }
                403 => {
                    return Err(ApiError::Refused(format!(
                        "{said}; the app's application access policy excludes this mailbox: add it to the policy's group (New-ApplicationAccessPolicy -PolicyScopeGroupId) or fix the mapping"
                    )));
                }
                404 if code == "ErrorItemNotFound" => return Err(ApiError::FolderGone(said)),
                404 if matches!(
                    code.as_str(),
                    "ErrorInvalidUser" | "MailboxNotEnabledForRESTAPI" | "MailboxNotFound"
                ) =>
                {
                    return Err(ApiError::Refused(format!(
                        "{said}; check the mapping: no Exchange Online mailbox has this address"
                    )));
                }
                _ => return Err(ApiError::Refused(said)),
            }
        }
    }

    /// The id of `folder` (`INBOX/Name/...`), created where missing.
    pub(super) async fn folder_id(
        &self,
        mailbox: &Mailbox,
        folder: &str,
    ) -> Result<String, ApiError> {
        let mut segments: Vec<&str> = folder.split('/').filter(|s| !s.is_empty()).collect();
        let mut parent = "msgfolderroot".to_string();
        if segments
            .first()
            .is_some_and(|s| s.eq_ignore_ascii_case("inbox"))
        {
            parent = "inbox".to_string();
            segments.remove(0);
        }
        for name in segments {
            let base = format!("{}/mailFolders/{parent}/childFolders", self.users(mailbox));
            parent = match self.find_child(mailbox, &base, name).await? {
                Some(id) => id,
                None => {
                    let create = json!({"displayName": name});
                    match self.call(mailbox, "POST", &base, Some(create), false).await {
                        Ok(created) => answers::id(&created)
                            .ok_or_else(|| ApiError::Refused(format!("{base}: no folder id")))?,
                        Err(ApiError::Refused(said)) if said.contains(" 409 ") => self
                            .find_child(mailbox, &base, name)
                            .await?
                            .ok_or(ApiError::Refused(said))?,
                        Err(e) => return Err(e),
                    }
                }
            };
        }
        Ok(parent)
    }

    async fn find_child(
        &self,
        mailbox: &Mailbox,
        base: &str,
        name: &str,
    ) -> Result<Option<String>, ApiError> {
        let mut url = url::Url::parse(base).map_err(|e| ApiError::Setup(e.to_string()))?;
        url.query_pairs_mut().append_pair(
            "$filter",
            &format!("displayName eq '{}'", name.replace('\'', "''")),
        );
        let found = self.call(mailbox, "GET", url.as_str(), None, false).await?;
        Ok(answers::first_id(&found))
    }

    /// What a folder holds, following `@odata.nextLink`.
    pub(super) async fn folder_contents(
        &self,
        mailbox: &Mailbox,
        folder_id: &str,
    ) -> Result<Contents, ApiError> {
        let mut out = Contents::default();
        let mut first = url::Url::parse(&format!(
            "{}/mailFolders/{folder_id}/messages",
            self.users(mailbox)
        ))
        .map_err(|e| ApiError::Setup(e.to_string()))?;
        first
            .query_pairs_mut()
            .append_pair("$select", "internetMessageId")
            .append_pair(
                "$expand",
                &format!("singleValueExtendedProperties($filter=id eq '{PENDING_PROPERTY}')"),
            )
            .append_pair("$top", "1000");
        let mut next = Some(first.to_string());
        while let Some(url) = next.take() {
            let page = self.call(mailbox, "GET", &url, None, false).await?;
            next = out.add_page(&page);
        }
        Ok(out)
    }

    /// Creates a message in a folder; returns its id.
    pub(super) async fn create_message(
        &self,
        mailbox: &Mailbox,
        folder_id: &str,
        json: Value,
    ) -> Result<String, ApiError> {
        let url = format!("{}/mailFolders/{folder_id}/messages", self.users(mailbox));
        let created = self.call(mailbox, "POST", &url, Some(json), true).await?;
        answers::id(&created).ok_or_else(|| ApiError::Unavailable {
            message: format!("POST {url} answered without a message id"),
            maybe_done: true,
        })
    }

    /// Adds one attachment under 3 MB with `POST …/attachments`. Not
    /// repeated after a 503/504 or a cut-off answer (it may have been
    /// added): the caller deletes the message and creates it again.
    pub(super) async fn post_attachment(
        &self,
        mailbox: &Mailbox,
        message: &str,
        attachment: &body::Attachment,
    ) -> Result<(), ApiError> {
        let url = format!("{}/messages/{message}/attachments", self.users(mailbox));
        let json = {
            let attachment = attachment.clone();
            off_thread(move || attachment.json()).await?
        };
        self.call(mailbox, "POST", &url, Some(json), true)
            .await
            .map(|_| ())
    }

    /// Marks a message complete ([`PENDING_PROPERTY`] = 0) once its
    /// attachments are in: a named property, which Exchange lets an app
    /// change on a received item (unlike the Message-ID or the flags).
    pub(super) async fn mark_complete(&self, mailbox: &Mailbox, id: &str) -> Result<(), ApiError> {
        let url = format!("{}/messages/{id}", self.users(mailbox));
        let patch = json!({"singleValueExtendedProperties": [body::pending_property("0")]});
        self.call(mailbox, "PATCH", &url, Some(patch), false)
            .await
            .map(|_| ())
    }

    /// Deletes a message; one already gone is fine.
    pub(super) async fn delete_message(&self, mailbox: &Mailbox, id: &str) -> Result<(), ApiError> {
        let url = format!("{}/messages/{id}", self.users(mailbox));
        match self.call(mailbox, "DELETE", &url, None, false).await {
            Ok(_) | Err(ApiError::FolderGone(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Uploads one attachment of 3 MB or more through an upload session,
    /// in chunks of [`UPLOAD_CHUNK`] with `Content-Type:
    /// application/octet-stream` and no token (the upload URL carries its
    /// own authorization).
    pub(super) async fn upload_attachment(
        &self,
        mailbox: &Mailbox,
        message: &str,
        attachment: &body::Attachment,
    ) -> Result<(), ApiError> {
        let body::Attachment {
            name,
            content_type,
            bytes,
        } = attachment;
        let url = format!(
            "{}/messages/{message}/attachments/createUploadSession",
            self.users(mailbox)
        );
        let session = self
            .call(
                mailbox,
                "POST",
                &url,
                Some(json!({"AttachmentItem": {
                    "attachmentType": "file",
                    "name": name,
                    "size": bytes.len(),
                    "contentType": content_type,
                }})),
                false,
            )
            .await?;
        let upload = answers::upload_url(&session)
            .ok_or_else(|| ApiError::Refused(format!("POST {url} answered without uploadUrl")))?;
        let total = bytes.len();
        let mut start = 0;
        let mut attempt = 0;
        // Answers that sent the upload back to bytes it had sent already.
        let mut stalls = 0;
        let mut created = false;
        while !created {
            if start >= total {
                // Every byte was taken, yet no 201 said the attachment is whole.
                return Err(ApiError::Unavailable {
                    message: format!(
                        "uploading {name}: the upload session took all {total} bytes but never answered 201 Created; the message is retried from the start"
                    ),
                    maybe_done: false,
                });
            }
            let end = (start + UPLOAD_CHUNK).min(total);
            let range = format!("bytes {start}-{}/{total}", end - 1);
            let headers = [
                ("Content-Type", "application/octet-stream".to_string()),
                ("Content-Range", range),
            ];
            let chunk = Bytes::copy_from_slice(&bytes[start..end]);
            let answer = self
                .send(None, "PUT", &upload, &headers, chunk)
                .await
                .map_err(|message| ApiError::Unavailable {
                    message: format!("PUT to the upload session of {name}: {message}"),
                    maybe_done: false,
                })?;
            match answer.status {
                201 => created = true,
                200 | 202 => {
                    attempt = 0;
                    // The server says where to go on (normally `end`).
                    let next = answers::next_upload_start(answer.status, &answer.body, end, total);
                    stalls = if next <= start { stalls + 1 } else { 0 };
                    if stalls >= ATTEMPTS {
                        return Err(ApiError::Unavailable {
                            message: format!(
                                "uploading {name}: the upload session asked {stalls} times in a row for bytes from {next} on, which it had been sent; the message is retried from the start"
                            ),
                            maybe_done: false,
                        });
                    }
                    start = next;
                }
                429 | 503 | 504 if attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(throttle_wait(answer.retry_after, attempt)).await;
                }
                status => {
                    let (code, message) = answers::error(&answer.body);
                    let said = format!(
                        "uploading {name} (bytes {start}-{}/{total}) answered {status} {code}: {message}",
                        end - 1
                    );
                    return Err(if status == 429 || status >= 500 {
                        ApiError::Unavailable {
                            message: said,
                            maybe_done: false,
                        }
                    } else {
                        ApiError::Refused(said)
                    });
                }
            }
        }
        Ok(())
    }
}

impl Api {
    /// Sends one request (within [`GraphSettings::max_concurrency`] and
    /// its timeout; for `mailbox`, once Graph's `Retry-After` for it has
    /// run) and reads the answer: its status, `Retry-After` and body, or
    /// why there is none.
    async fn send(
        &self,
        mailbox: Option<&Mailbox>,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Answer, String> {
        let mut request = hyper::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        let permit = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        // A task of its own on the runtime's threads, so that it is sent
        // the moment the mailbox may be asked and its Retry-After is kept
        // the moment it comes, whatever the caller's thread is busy with.
        let (client, quiet, timeout) = (
            self.client.clone(),
            self.quiet_until.clone(),
            self.settings.timeout,
        );
        let shared = mailbox.map(|m| (self.budget(), self.budget_key(m)));
        let mailbox = mailbox.map(|m| m.to_string());
        let exchange = async move {
            let _permit = permit;
            if let Some(mailbox) = &mailbox {
                sleep_while_paused(|| quiet.left(mailbox)).await;
            }
            // A pause another sink of this process was asked for.
            if let Some((budget, key)) = &shared {
                sleep_while_paused(|| budget.paused_for(key)).await;
            }
            let response =
                client
                    .request(request)
                    .await
                    .map_err(|e| match std::error::Error::source(&e) {
                        Some(cause) => format!("{e}: {cause}"),
                        None => e.to_string(),
                    })?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("Retry-After")
                .and_then(|v| v.to_str().ok())
                .and_then(answers::retry_after);
            if let (Some(mailbox), Some(seconds), 429 | 503 | 504) = (&mailbox, retry_after, status)
            {
                quiet.hold(mailbox, Duration::from_secs(seconds).min(MAX_WAIT));
            }
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok(Answer {
                status,
                retry_after,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            })
        };
        let sent = tokio::spawn(tokio::time::timeout(timeout, exchange));
        match sent.await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(format!("no answer within {timeout:?}")),
            Err(e) => Err(format!("the request stopped: {e}")),
        }
    }
}

/// Waits while a mailbox is paused (`left`: how long it still is), looking
/// again after each wait (another request may have been throttled
/// meanwhile).
async fn sleep_while_paused(left: impl Fn() -> Option<Duration>) {
    while let Some(wait) = left() {
        tokio::time::sleep(wait).await;
    }
}

/// Runs CPU-heavy or blocking work on a blocking thread, so that the
/// requests of other mailboxes go on meanwhile.
async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Unavailable {
            message: format!("the sink's work stopped: {e}"),
            maybe_done: false,
        })
}

/// Runs a call to the budget (which may wait for its database) on a
/// blocking thread.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SinkError> + Send + 'static,
) -> Result<T, ApiError> {
    off_thread(f).await?.map_err(|e| ApiError::Unavailable {
        message: e.to_string(),
        maybe_done: false,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
