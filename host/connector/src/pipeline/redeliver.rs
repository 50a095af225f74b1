//! Redelivering quarantined items once the mapping CSV (or a refusing
//! mailbox) is fixed: the stored unmapped participants are mapped again, the
//! stored email goes to each newly mapped mailbox through the connector's
//! sink, ledger-checked so that nothing arrives twice, and an item leaves the
//! quarantine once nobody is left without a mailbox.

use super::faults::{self, Point};
use super::{Host, RunError};
use crate::config::ConnectorConfig;
use crate::map::UserMap;
use connector_model::Mailbox;
use connector_model::time::now_ms;
use connector_runtime::PluginManifest;
use connector_sink::Delivery;
use connector_state::{
    CheckpointSlot, FailureKind, Fence, LedgerEntry, PageCommit, QuarantineEntry, RunCounts,
    RunFailure, RunId, RunKind, RunOutcome,
};

/// Quarantined items handled per committed batch.
const BATCH: usize = 100;

/// What a redelivery did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RedeliverySummary {
    /// The redelivery's run id (its admin log is `connector log RUN`).
    pub run: Option<RunId>,
    /// What the redelivery did, counted as any run's counts (its items
    /// from source are the quarantined items it examined; its quarantined
    /// items are the ones it kept in the quarantine).
    pub counts: RunCounts,
    /// Items released from the quarantine (delivered to every mailbox
    /// they lack).
    pub released: u64,
}

/// The mail store a connector file's `[sink]` table describes (for
/// reports that check the mailboxes). Nothing connects yet.
pub fn connector_sink(config: &ConnectorConfig) -> Result<Box<dyn connector_sink::Sink>, RunError> {
    Ok(config.sink.open(&config.secrets)?)
}

impl Host {
    /// Redelivers the connector's quarantined items with its current
    /// mapping and sink, recorded as a run of kind `redeliver` (the
    /// connector's checkpoint is untouched). Safe to repeat and to
    /// interrupt: the ledger and the sink's Message-ID check keep every
    /// mailbox free of duplicates.
    pub fn redeliver_quarantine(
        &self,
        config: &ConnectorConfig,
    ) -> Result<RedeliverySummary, RunError> {
        let lease = self.lock_runs(config)?;
        let manifest = PluginManifest::load(&config.plugin)?;
        let users = config.user_map()?;
        let folder = config.folder_path(&manifest);
        let entries = self.db().quarantine(&config.id)?;
        let mut summary = RedeliverySummary::default();
        if entries.is_empty() {
            return Ok(summary);
        }
        let run = self
            .db()
            .begin_run_of(&config.id, now_ms(), RunKind::Redeliver, None)?;
        summary.run = Some(run);
        let mut sink = config.sink.open(&config.secrets)?;
        self.share_budget(sink.as_mut(), &config.id, run);
        let mut totals = RunCounts::default();
        let result = (|| -> Result<(), RunError> {
            for chunk in entries.chunks(BATCH) {
                let counts = self.redeliver_batch(
                    &lease.fence(),
                    run,
                    chunk,
                    &users,
                    &folder,
                    sink.as_mut(),
                    &mut summary,
                )?;
                totals.add(&counts);
            }
            Ok(())
        })();
        let (outcome, error) = match &result {
            Ok(()) => (RunOutcome::Succeeded, None),
            Err(e) => (RunOutcome::Failed, Some(e.to_string())),
        };
        self.db()
            .finish_run(run, now_ms(), outcome, &totals, error.as_deref())?;
        summary.counts = totals;
        result.map(|()| summary)
    }

    #[allow(clippy::too_many_arguments)]
    fn redeliver_batch(
        &self,
        fence: &Fence,
        run: RunId,
        entries: &[QuarantineEntry],
        users: &UserMap,
        folder: &str,
        sink: &mut dyn connector_sink::Sink,
        summary: &mut RedeliverySummary,
    ) -> Result<RunCounts, RunError> {
        let mut commit = PageCommit {
            checkpoint_slot: CheckpointSlot::Keep,
            ..PageCommit::default()
        };
        let connector = fence.connector();
        fence.ensure_live()?;
        let mut counts = RunCounts {
            items_from_source: entries.len() as u64,
            ..RunCounts::default()
        };
        for q in entries {
            let email = q.email.clone();
            // Who still needs the email: newly mapped participants, and
            // mailboxes that refused it before.
            let mut targets: Vec<(Mailbox, String)> = Vec::new();
            let mut unmapped = Vec::new();
            for person in &q.unmapped {
                match users.resolve(person) {
                    Some(mailbox) => {
                        if !targets.iter().any(|(m, _)| *m == mailbox) {
                            targets.push((mailbox, person.id.clone()));
                        }
                    }
                    None => unmapped.push(person.clone()),
                }
            }
            for (mailbox, person) in self.db().refused_mailboxes(connector, &q.item_id)? {
                if let Ok(mailbox) = Mailbox::new(&mailbox)
                    && !targets.iter().any(|(m, _)| *m == mailbox)
                {
                    targets.push((mailbox, person));
                }
            }
            // Participants still without a mailbox are pairs that fail
            // again (their failure rows are written below).
            counts.items_for_import += (targets.len() + unmapped.len()) as u64;
            counts.failed += unmapped.len() as u64;
            let delivered = self.db().delivered_set(connector, &[q.item_id.as_str()])?;
            let mut refused = 0;
            for (mailbox, person) in &targets {
                let entry = |receipt: String| LedgerEntry {
                    item_id: q.item_id.clone(),
                    mailbox: mailbox.to_string(),
                    message_id: q.message_id.clone(),
                    email_sha256: email.sha256.clone(),
                    source_sha256: q.source_sha256.clone(),
                    receipt,
                    delivered_at_ms: now_ms(),
                };
                if delivered.contains(&(q.item_id.clone(), mailbox.to_string())) {
                    counts.skipped_duplicates += 1;
                    continue;
                }
                if sink.contains(mailbox, folder, &q.message_id)? {
                    counts.skipped_duplicates += 1;
                    commit.ledger.push(entry("already in mailbox".into()));
                    continue;
                }
                let result = sink
                    .deliver(&[Delivery {
                        mailbox,
                        folder,
                        email: &email,
                    }])
                    .pop();
                faults::reached(Point::Deliver);
                match result {
                    Some(Ok(receipt)) => {
                        counts.imported += 1;
                        commit.ledger.push(entry(receipt.0));
                    }
                    Some(Err(e)) if e.is_retryable() => return Err(RunError::Sink(e)),
                    Some(Err(e)) => {
                        refused += 1;
                        counts.failed += 1;
                        commit.failures.push(RunFailure {
                            item_id: q.item_id.clone(),
                            source_user_id: person.clone(),
                            mailbox: mailbox.to_string(),
                            kind: FailureKind::Refused,
                            reason: format!(
                                "{e}; the item stays in the quarantine: fix the mailbox, then redeliver again"
                            ),
                        });
                    }
                    None => {
                        return Err(RunError::Sink(connector_sink::SinkError::Unavailable {
                            target: sink.describe(),
                            message: "the sink returned no result for a delivery".into(),
                        }));
                    }
                }
            }
            for person in &unmapped {
                commit.failures.push(RunFailure {
                    item_id: q.item_id.clone(),
                    source_user_id: person.id.clone(),
                    mailbox: String::new(),
                    kind: FailureKind::Unmapped,
                    reason: format!(
                        "participant {} still has no mailbox; add `{},<mailbox>` to the mapping CSV, then redeliver again",
                        person.id, person.id
                    ),
                });
            }
            counts.count_item_outcome(
                targets.len() as u64 - refused,
                refused + unmapped.len() as u64,
            );
            if unmapped.is_empty() && refused == 0 {
                commit.released.push(q.item_id.clone());
                summary.released += 1;
            } else if unmapped.len() != q.unmapped.len() {
                let names: Vec<&str> = unmapped.iter().map(|p| p.id.as_str()).collect();
                commit.quarantine.push(QuarantineEntry {
                        unmapped: unmapped.clone(),
                        reason: if names.is_empty() {
                            q.reason.clone()
                        } else {
                            format!(
                                "no mailbox is mapped for participant(s) {}; add them to the mapping CSV, then run `connector quarantine redeliver`",
                                names.join(", ")
                            )
                        },
                        ..q.clone()
                    });
            }
        }
        commit.counts = counts.clone();
        faults::reached(Point::Commit);
        self.db()
            .commit_page(connector, run, fence.token(), &commit)?;
        Ok(counts)
    }
}
