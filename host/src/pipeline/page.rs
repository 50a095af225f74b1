//! Delivering one page: convert, map, import, then commit ledger entries,
//! quarantine records and the checkpoint in one transaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::retry::RetryPolicy;
use super::{RunError, now_ms};
use crate::convert::{Email, EmailConverter};
use crate::map::{Mailbox, UserMap};
use crate::model::Conversation;
use crate::plugin::{Page, PluginError};
use crate::sink::{Delivery, Sink, SinkError};
use crate::state::{LedgerEntry, PageCommit, QuarantineEntry, RunCounts, RunId, StateDb};

/// The per-run settings a page is delivered with.
pub(super) struct PageStage<'a> {
    pub connector: &'a str,
    pub folder: String,
    pub converter: EmailConverter,
    pub users: &'a UserMap,
    pub retry: RetryPolicy,
}

/// A message's email and who still needs it.
struct Pending {
    item_id: String,
    source_sha256: String,
    email: Email,
    mailboxes: Vec<Mailbox>,
}

impl PageStage<'_> {
    /// Delivers every message of `page` and commits the page. Returns the
    /// page's counts.
    pub fn deliver(
        &self,
        page: Page,
        conversations: &mut HashMap<String, Conversation>,
        sink: &mut dyn Sink,
        db: &Arc<Mutex<StateDb>>,
        run: RunId,
    ) -> Result<RunCounts, RunError> {
        for c in page.conversations {
            conversations.insert(c.id.clone(), c);
        }
        let mut counts = RunCounts {
            pages: 1,
            items_from_source: page.messages.len() as u64,
            ..RunCounts::default()
        };
        let mut commit = PageCommit {
            checkpoint: page.checkpoint,
            ..PageCommit::default()
        };
        let mut pending = Vec::with_capacity(page.messages.len());
        {
            let db = lock(db);
            for msg in &page.messages {
                let conv = conversations.get(&msg.conversation_id).ok_or_else(|| {
                    PluginError::Protocol(format!(
                        "message {} refers to conversation {} which was never described",
                        msg.id, msg.conversation_id
                    ))
                })?;
                let email =
                    self.converter
                        .convert(msg, conv)
                        .map_err(|source| RunError::Convert {
                            item: msg.id.clone(),
                            source,
                        })?;
                let fan = self.users.fan_out(&conv.participants, &msg.sender);
                counts.items_for_import += fan.mailboxes.len() as u64;
                if !fan.unmapped.is_empty() {
                    counts.quarantined += 1;
                    let names: Vec<&str> = fan.unmapped.iter().map(|p| p.id.as_str()).collect();
                    commit.quarantine.push(QuarantineEntry {
                        item_id: msg.id.clone(),
                        message_id: email.message_id.clone(),
                        email: email.bytes.clone(),
                        sent_at_ms: msg.sent_at,
                        unmapped: fan.unmapped.clone(),
                        reason: format!(
                            "no mailbox is mapped for participant(s) {}; add them to the mapping CSV, then redeliver",
                            names.join(", ")
                        ),
                    });
                }
                let mut needed = Vec::new();
                for mailbox in fan.mailboxes {
                    if db.is_delivered(self.connector, &msg.id, mailbox.as_str())? {
                        counts.skipped_duplicates += 1;
                    } else {
                        needed.push(mailbox);
                    }
                }
                if !needed.is_empty() {
                    pending.push(Pending {
                        item_id: msg.id.clone(),
                        source_sha256: msg.source_sha256.clone(),
                        email,
                        mailboxes: needed,
                    });
                }
            }
        }
        self.import(&pending, sink, &mut commit, &mut counts)?;
        commit.counts = counts.clone();
        lock(db).commit_page(self.connector, run, &commit)?;
        Ok(counts)
    }

    /// Imports what the ledger does not have, skipping what the mailbox
    /// already holds (a crash between import and commit leaves such items).
    fn import(
        &self,
        pending: &[Pending],
        sink: &mut dyn Sink,
        commit: &mut PageCommit,
        counts: &mut RunCounts,
    ) -> Result<(), RunError> {
        let mut batch: Vec<(&Pending, &Mailbox)> = Vec::new();
        for p in pending {
            for mailbox in &p.mailboxes {
                if self
                    .with_retries(|| sink.contains(mailbox, &self.folder, &p.email.message_id))?
                {
                    counts.skipped_duplicates += 1;
                    commit
                        .ledger
                        .push(self.entry(p, mailbox, "already in mailbox".into()));
                } else {
                    batch.push((p, mailbox));
                }
            }
        }
        let mut failures = 0;
        while !batch.is_empty() {
            let deliveries: Vec<Delivery<'_>> = batch
                .iter()
                .map(|(p, mailbox)| Delivery {
                    mailbox,
                    folder: &self.folder,
                    email: &p.email,
                })
                .collect();
            let results = sink.deliver(&deliveries);
            let mut retry_batch = Vec::new();
            let mut last_error = None;
            for ((p, mailbox), result) in batch.into_iter().zip(results) {
                match result {
                    Ok(receipt) => {
                        counts.imported += 1;
                        commit.ledger.push(self.entry(p, mailbox, receipt.0));
                    }
                    Err(e) if e.is_retryable() => {
                        retry_batch.push((p, mailbox));
                        last_error = Some(e);
                    }
                    Err(e) => {
                        counts.failed += 1;
                        tracing::warn!(item = %p.item_id, %mailbox, "mailbox refused the item: {e}");
                        self.quarantine_refused(p, mailbox, &e, commit);
                    }
                }
            }
            batch = retry_batch;
            if let Some(e) = last_error {
                if failures >= self.retry.attempts() {
                    return Err(RunError::Sink(e));
                }
                let pause = self.retry.backoff(failures);
                failures += 1;
                tracing::warn!(
                    "mailbox store unavailable: {e}; retrying {} item(s) in {pause:?}",
                    batch.len()
                );
                std::thread::sleep(pause);
            }
        }
        Ok(())
    }

    fn with_retries<T>(&self, mut f: impl FnMut() -> Result<T, SinkError>) -> Result<T, RunError> {
        let mut failures = 0;
        loop {
            match f() {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && failures < self.retry.attempts() => {
                    let pause = self.retry.backoff(failures);
                    failures += 1;
                    tracing::warn!("mailbox store unavailable: {e}; retrying in {pause:?}");
                    std::thread::sleep(pause);
                }
                Err(e) => return Err(RunError::Sink(e)),
            }
        }
    }

    fn entry(&self, p: &Pending, mailbox: &Mailbox, receipt: String) -> LedgerEntry {
        LedgerEntry {
            item_id: p.item_id.clone(),
            mailbox: mailbox.as_str().to_string(),
            message_id: p.email.message_id.clone(),
            email_sha256: p.email.sha256.clone(),
            source_sha256: p.source_sha256.clone(),
            receipt,
            delivered_at_ms: now_ms(),
        }
    }

    /// Keeps a refused item in the quarantine so it can be redelivered.
    fn quarantine_refused(
        &self,
        p: &Pending,
        mailbox: &Mailbox,
        error: &SinkError,
        commit: &mut PageCommit,
    ) {
        let reason = format!("mailbox {mailbox} refused it: {error}");
        if let Some(q) = commit
            .quarantine
            .iter_mut()
            .find(|q| q.item_id == p.item_id)
        {
            q.reason.push_str("; ");
            q.reason.push_str(&reason);
        } else {
            commit.quarantine.push(QuarantineEntry {
                item_id: p.item_id.clone(),
                message_id: p.email.message_id.clone(),
                email: p.email.bytes.clone(),
                sent_at_ms: p.email.sent_at,
                unmapped: Vec::new(),
                reason,
            });
        }
    }
}

fn lock(db: &Arc<Mutex<StateDb>>) -> std::sync::MutexGuard<'_, StateDb> {
    db.lock().unwrap_or_else(|p| p.into_inner())
}
